import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { createDetector } from '../../src/detection/create-detector.ts';
import { prepareFrame } from '../../src/detection/letterbox.ts';
import { makeBatchDynamic } from '../../src/detection/onnx-batch.ts';
import { readOnnxModelInfo } from '../../src/detection/onnx-metadata.ts';
import { decodeYoloOutput } from '../../src/detection/postprocess.ts';
import { readOnnxModel } from '../../src/detection/tfjs/onnx-reader.ts';
import type { DetectOptions, ModelInfo, PreparedFrame } from '../../src/detection/types.ts';

const MODEL = 'models/yolov8n.onnx';
const PHOTOS = ['/usr/lib/python3/dist-packages/skimage/data/astronaut.png', '/usr/lib/python3/dist-packages/skimage/data/motorcycle_left.png'];
const VIDEO = '/usr/share/doc/opencv-doc/examples/data/vtest.avi';
const OPTIONS: DetectOptions = { confidenceThreshold: 0.25, iouThreshold: 0.7 };
/** Largest |Δ| allowed between a batch-4 run of the rewritten model and batch-1 runs of the original (output0 is in pixels and 0..1 scores). */
const MAX_ABS_DIFF = 1e-3;
const SESSION_OPTIONS: ort.InferenceSession.SessionOptions = { executionProviders: ['cpu'], graphOptimizationLevel: 'all', executionMode: 'sequential' };
const SHAPES = ['/model.22/Constant_output_0', '/model.22/dfl/Constant_output_0', '/model.22/dfl/Constant_1_output_0'];

function batchTensor(frames: PreparedFrame[]): ort.Tensor {
  const size = frames[0]!.tensor.length;
  const data = new Float32Array(frames.length * size);
  frames.forEach((frame, i) => data.set(frame.tensor, i * size));
  return new ort.Tensor('float32', data, [frames.length, 3, 640, 640]);
}

describe('makeBatchDynamic on yolov8n.onnx', function () {
  this.timeout(300_000);
  let original: Uint8Array;
  let dynamic: Uint8Array;
  let info: ModelInfo;
  let originalSession: ort.InferenceSession;
  let dynamicSession: ort.InferenceSession;
  const frames: PreparedFrame[] = [];

  before(async function () {
    if (!existsSync(MODEL)) throw new Error(`${MODEL} is missing: run \`npm run fetch-model\``);
    original = await readFile(MODEL);
    dynamic = makeBatchDynamic(original);
    info = readOnnxModelInfo(original);
    const jpegs = await Promise.all(PHOTOS.map((file) => sharp(file).removeAlpha().jpeg({ quality: 90 }).toBuffer()));
    const dir = await mkdtemp(path.join(tmpdir(), 'onnx-batch-'));
    try {
      // Two frames of the walking-people clip, well apart.
      for (const [i, seconds] of [1, 40].entries()) {
        const file = path.join(dir, `frame${i}.jpg`);
        await execa('ffmpeg', ['-nostdin', '-hide_banner', '-loglevel', 'error', '-ss', String(seconds / 10), '-i', VIDEO, '-frames:v', '1', '-q:v', '2', file]);
        jpegs.push(await readFile(file));
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    for (const jpeg of jpegs) frames.push(await prepareFrame(jpeg, info.imgsz));
    originalSession = await ort.InferenceSession.create(original, SESSION_OPTIONS);
    dynamicSession = await ort.InferenceSession.create(dynamic, SESSION_OPTIONS);
  });

  after(async () => {
    await originalSession?.release();
    await dynamicSession?.release();
  });

  it('changes only the batch dims and the head Reshape shapes', () => {
    const before = readOnnxModel(original);
    const after = readOnnxModel(dynamic);
    assert.deepEqual(before.graph.inputs[0]?.shape, [1, 3, 640, 640]);
    assert.deepEqual(after.graph.inputs[0]?.shape, ['batch', 3, 640, 640]);
    assert.deepEqual(after.graph.outputs[0]?.shape, ['batch', 84, 8400]);
    assert.ok([...after.graph.valueInfo.values()].every((v) => v.shape?.[0] === 'batch'), 'every activation value_info has a symbolic batch');
    assert.deepEqual(after.graph.nodes, before.graph.nodes);
    assert.deepEqual(after.metadata, before.metadata);
    assert.deepEqual([after.irVersion, after.opsets, after.producerName, after.producerVersion], [before.irVersion, before.opsets, before.producerName, before.producerVersion]);
    const shapes = SHAPES.map((name) => [before.graph.initializers.get(name), after.graph.initializers.get(name)] as const);
    assert.deepEqual(shapes.map(([b]) => b?.kind === 'int' && b.values), [[1, 144, -1], [1, 4, 16, 8400], [1, 4, 8400]]);
    assert.deepEqual(shapes.map(([, a]) => a?.kind === 'int' && a.values), [[0, 144, -1], [0, 4, 16, 8400], [0, 4, 8400]]);
    for (const [name, tensor] of before.graph.initializers) if (!SHAPES.includes(name)) assert.deepEqual(after.graph.initializers.get(name), tensor, name);
    // dim_value 1 (2 bytes) -> dim_param "batch" (7 bytes) in the input, the output and the 241 value_infos.
    assert.equal(dynamic.length - original.length, 5 * (1 + 1 + after.graph.valueInfo.size));
    assert.equal(makeBatchDynamic(dynamic), dynamic, 'a second pass leaves it alone');
  });

  it('runs 4 real frames in one batch with the output of 4 batch-1 runs of the original model', async () => {
    assert.equal(frames.length, 4);
    const batched = (await dynamicSession.run({ images: batchTensor(frames) })).output0!;
    assert.deepEqual(batched.dims, [4, 84, 8400]);
    const perImage = 84 * 8400;
    let maxDiff = 0;
    for (const [i, frame] of frames.entries()) {
      const single = (await originalSession.run({ images: batchTensor([frame]) })).output0!;
      assert.deepEqual(single.dims, [1, 84, 8400]);
      const expected = single.data as Float32Array;
      const actual = (batched.data as Float32Array).subarray(i * perImage, (i + 1) * perImage);
      for (let j = 0; j < perImage; j++) maxDiff = Math.max(maxDiff, Math.abs(actual[j]! - expected[j]!));
      const want = decodeYoloOutput(expected, 8400, 80, frame, info.names, OPTIONS);
      const got = decodeYoloOutput(actual, 8400, 80, frame, info.names, OPTIONS);
      assert.ok(want.length > 0, `frame ${i}: the original model finds something`);
      assert.deepEqual(
        got.map((d) => [d.className, d.box.map((v) => v.toFixed(2)), d.confidence.toFixed(4)]),
        want.map((d) => [d.className, d.box.map((v) => v.toFixed(2)), d.confidence.toFixed(4)]),
        `frame ${i}: detections`,
      );
    }
    console.log(`      max |Δ| output0, batch 4 (rewritten) vs 4 x batch 1 (original): ${maxDiff.toExponential(3)} (bound ${MAX_ABS_DIFF})`);
    assert.ok(maxDiff <= MAX_ABS_DIFF, `max |Δ| ${maxDiff}`);
  });

  it('lets OnnxDetector take a whole batch in one run when asked to', async () => {
    const detector = await createDetector({ modelPath: MODEL, onnxFramesPerRun: 4 });
    // The typings describe a factory; at run time InferenceSession is a class whose prototype has run().
    const proto = (ort.InferenceSession as unknown as { prototype: ort.InferenceSession }).prototype;
    const run = proto.run;
    let runs = 0;
    try {
      proto.run = function (this: ort.InferenceSession, ...args: Parameters<typeof run>) {
        runs++;
        return run.apply(this, args);
      } as typeof run;
      const batch = await detector.detectBatch(frames, OPTIONS);
      proto.run = run;
      assert.equal(runs, 1, 'one session.run for the four frames');
      for (const [i, frame] of frames.entries()) {
        const single = (await originalSession.run({ images: batchTensor([frame]) })).output0!;
        const want = decodeYoloOutput(single.data as Float32Array, 8400, 80, frame, info.names, OPTIONS);
        assert.deepEqual(batch[i]!.map((d) => [d.className, d.box.map((v) => v.toFixed(2))]), want.map((d) => [d.className, d.box.map((v) => v.toFixed(2))]));
      }
    } finally {
      proto.run = run;
      await detector.close();
    }
  });
});
