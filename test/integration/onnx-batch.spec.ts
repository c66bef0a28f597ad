import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { createDetector } from '../../src/detection/create-detector.ts';
import { hwcToChw, packBatch, prepareFrame } from '../../src/detection/letterbox.ts';
import { makeBatchDynamic } from '../../src/detection/onnx-batch.ts';
import { readOnnxModelInfo } from '../../src/detection/onnx-metadata.ts';
import { decodeYoloOutput } from '../../src/detection/postprocess.ts';
import { readOnnxModel, type OnnxModel, type OnnxNode } from '../../src/detection/tfjs/onnx-reader.ts';
import type { DetectOptions, ModelInfo, PreparedFrame } from '../../src/detection/types.ts';
import { frameJpegAt, VTEST_AVI } from '../helpers/media-fixtures.ts';

const PHOTOS = ['/usr/lib/python3/dist-packages/skimage/data/astronaut.png', '/usr/lib/python3/dist-packages/skimage/data/motorcycle_left.png'];
const OPTIONS: DetectOptions = { confidenceThreshold: 0.25, iouThreshold: 0.7 };
/** Largest |Δ| allowed between a batch-4 run of the rewritten model and batch-1 runs of the original (output0 is in pixels and 0..1 scores). */
const MAX_ABS_DIFF = 1e-3;
const SESSION_OPTIONS: ort.InferenceSession.SessionOptions = { executionProviders: ['cpu'], graphOptimizationLevel: 'all', executionMode: 'sequential' };
const ANCHORS = 8400;
const HEAD_SHAPES = [[1, 144, -1], [1, 4, 16, 8400], [1, 4, 8400]];

/**
 * The official exports. yolov8n was run through onnx-simplifier: its head Reshape shapes are initializers
 * (one [1,144,-1] shared by the three levels) and every activation has a value_info. s and m were not:
 * their shapes are Constant nodes (one per Reshape), they have no value_info, and the head computes the
 * Slice bounds of `distance.chunk(2, 1)` in the graph (Shape -> Gather index 1 -> Add/Div/Mul), which the
 * rewrite must recognise as reading dimension 1, not the batch.
 */
const SIZES = [
  { size: 'n', reshapeShapes: 3, valueInfos: 241, shapeArithmetic: false },
  { size: 's', reshapeShapes: 5, valueInfos: 0, shapeArithmetic: true },
  { size: 'm', reshapeShapes: 5, valueInfos: 0, shapeArithmetic: true },
] as const;

/** The stock float input: the frames' bytes as NCHW in [0, 1]. */
function batchTensor(frames: PreparedFrame[]): ort.Tensor {
  return new ort.Tensor('float32', hwcToChw(packBatch(frames, [640, 640]), 640 * 640), [frames.length, 3, 640, 640]);
}

/** The constant shape of each Reshape, from an initializer or a Constant node, by the shape's name. */
function reshapeShapes(model: OnnxModel): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  for (const node of model.graph.nodes) {
    if (node.opType !== 'Reshape') continue;
    const name = node.inputs[1]!;
    const initializer = model.graph.initializers.get(name);
    const attribute = model.graph.nodes.find((n) => n.opType === 'Constant' && n.outputs[0] === name)?.attributes.get('value');
    const tensor = initializer ?? (attribute?.kind === 'tensor' ? attribute.value : undefined);
    assert.ok(tensor?.kind === 'int', `Reshape shape ${name} is an integer constant`);
    shapes.set(name, tensor.values);
  }
  return shapes;
}

/** The nodes with the value of the given Constant nodes left out, to compare everything else. */
const withoutValues = (nodes: OnnxNode[], constants: Set<string>): OnnxNode[] =>
  nodes.map((n) => (n.opType === 'Constant' && constants.has(n.outputs[0]!) ? { ...n, attributes: new Map() } : n));

/** Two photos and two frames of the walking-people clip, well apart, as JPEGs. */
async function testJpegs(): Promise<Buffer[]> {
  const jpegs = await Promise.all(PHOTOS.map((file) => sharp(file).removeAlpha().jpeg({ quality: 90 }).toBuffer()));
  for (const seconds of [0.1, 4]) jpegs.push(await frameJpegAt(VTEST_AVI, seconds));
  return jpegs;
}

let jpegs: Promise<Buffer[]> | undefined;

for (const { size, reshapeShapes: shapeCount, valueInfos, shapeArithmetic } of SIZES) {
  const MODEL = `models/yolov8${size}.onnx`;

  describe(`makeBatchDynamic on yolov8${size}.onnx`, function () {
    this.timeout(300_000);
    let original: Uint8Array;
    let dynamic: Uint8Array;
    let info: ModelInfo;
    let originalSession: ort.InferenceSession;
    let dynamicSession: ort.InferenceSession;
    const frames: PreparedFrame[] = [];
    /** output0 of the original model, one batch-1 run per frame. */
    const singles: Float32Array[] = [];

    before(async function () {
      if (!existsSync(MODEL)) {
        throw new Error(`${MODEL} is missing: run \`npm run fetch-model -- n s m\` (scripts/setup fetches it when MODEL_SIZES includes "${size}")`);
      }
      original = await readFile(MODEL);
      dynamic = makeBatchDynamic(original);
      info = readOnnxModelInfo(original);
      jpegs ??= testJpegs(); // extracted once for the three sizes
      for (const jpeg of await jpegs) frames.push(await prepareFrame(jpeg, info.imgsz));
      originalSession = await ort.InferenceSession.create(original, SESSION_OPTIONS);
      dynamicSession = await ort.InferenceSession.create(dynamic, SESSION_OPTIONS);
      for (const frame of frames) {
        const single = (await originalSession.run({ images: batchTensor([frame]) })).output0!;
        assert.deepEqual(single.dims, [1, 84, ANCHORS]);
        singles.push(single.data as Float32Array);
      }
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
      assert.deepEqual(after.graph.outputs[0]?.shape, ['batch', 84, ANCHORS]);
      assert.equal(after.graph.valueInfo.size, valueInfos);
      assert.ok([...after.graph.valueInfo.values()].every((v) => v.shape?.[0] === 'batch'), 'every activation value_info has a symbolic batch');
      assert.deepEqual(after.metadata, before.metadata);
      assert.deepEqual([after.irVersion, after.opsets, after.producerName, after.producerVersion], [before.irVersion, before.opsets, before.producerName, before.producerVersion]);

      const shapesBefore = reshapeShapes(before);
      const shapesAfter = reshapeShapes(after);
      assert.equal(shapesBefore.size, shapeCount);
      assert.deepEqual(new Set([...shapesBefore.values()].map((s) => JSON.stringify(s))), new Set(HEAD_SHAPES.map((s) => JSON.stringify(s))));
      assert.deepEqual(shapesAfter, new Map([...shapesBefore].map(([name, [, ...rest]]) => [name, [0, ...rest]])), 'a leading 1 becomes 0');
      const shapeNames = new Set(shapesBefore.keys());
      assert.deepEqual(withoutValues(after.graph.nodes, shapeNames), withoutValues(before.graph.nodes, shapeNames));
      for (const [name, tensor] of before.graph.initializers) if (!shapeNames.has(name)) assert.deepEqual(after.graph.initializers.get(name), tensor, name);
      // The in-graph size arithmetic of s and m is left as it is: it reads dimension 1 (the 4 box sides), not the batch.
      const gathers = before.graph.nodes.filter((n) => n.opType === 'Gather');
      assert.equal(gathers.length, shapeArithmetic ? 1 : 0);
      for (const gather of gathers) {
        assert.equal(before.graph.nodes.find((n) => n.outputs[0] === gather.inputs[0])?.opType, 'Shape');
        const indices = before.graph.nodes.find((n) => n.outputs[0] === gather.inputs[1])?.attributes.get('value');
        assert.ok(indices?.kind === 'tensor');
        assert.deepEqual(indices.value.values, [1]);
      }
      // dim_value 1 (2 bytes) -> dim_param "batch" (7 bytes) in the input, the output and the value_infos.
      assert.equal(dynamic.length - original.length, 5 * (1 + 1 + valueInfos));
      assert.equal(makeBatchDynamic(dynamic), dynamic, 'a second pass leaves it alone');
    });

    it('runs 4 real frames in one batch with the output of 4 batch-1 runs of the original model', async () => {
      assert.equal(frames.length, 4);
      assert.deepEqual(dynamicSession.inputMetadata[0]?.isTensor && dynamicSession.inputMetadata[0].shape, ['batch', 3, 640, 640]);
      const started = performance.now();
      const batched = (await dynamicSession.run({ images: batchTensor(frames) })).output0!;
      const batchMs = performance.now() - started;
      assert.deepEqual(batched.dims, [4, 84, ANCHORS]);
      const perImage = 84 * ANCHORS;
      let maxDiff = 0;
      for (const [i, frame] of frames.entries()) {
        const expected = singles[i]!;
        const actual = (batched.data as Float32Array).subarray(i * perImage, (i + 1) * perImage);
        for (let j = 0; j < perImage; j++) maxDiff = Math.max(maxDiff, Math.abs(actual[j]! - expected[j]!));
        const want = decodeYoloOutput(expected, ANCHORS, 80, frame, info.names, OPTIONS);
        const got = decodeYoloOutput(actual, ANCHORS, 80, frame, info.names, OPTIONS);
        assert.ok(want.length > 0, `frame ${i}: the original model finds something`);
        assert.deepEqual(
          got.map((d) => [d.className, d.box.map((v) => v.toFixed(2)), d.confidence.toFixed(4)]),
          want.map((d) => [d.className, d.box.map((v) => v.toFixed(2)), d.confidence.toFixed(4)]),
          `frame ${i}: detections`,
        );
      }
      console.log(
        `      yolov8${size}: max |Δ| output0, batch 4 (rewritten) vs 4 x batch 1 (original): ${maxDiff.toExponential(3)} (bound ${MAX_ABS_DIFF}); batch-4 run ${batchMs.toFixed(0)} ms`,
      );
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
          const want = decodeYoloOutput(singles[i]!, ANCHORS, 80, frame, info.names, OPTIONS);
          assert.deepEqual(batch[i]!.map((d) => [d.className, d.box.map((v) => v.toFixed(2))]), want.map((d) => [d.className, d.box.map((v) => v.toFixed(2))]));
        }
      } finally {
        proto.run = run;
        await detector.close();
      }
    });
  });
}
