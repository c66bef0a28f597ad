import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { hwcToChw, prepareFrame } from '../../src/detection/letterbox.ts';
import { OnnxDetector } from '../../src/detection/onnx-detector.ts';
import { readOnnxModelInfo } from '../../src/detection/onnx-metadata.ts';
import { decodeYoloOutput, iou } from '../../src/detection/postprocess.ts';
import { convertOnnxFile } from '../../src/detection/tfjs/convert-file.ts';
import { readModelJson } from '../../src/detection/tfjs/model-files.ts';
import { readOnnxModel } from '../../src/detection/tfjs/onnx-reader.ts';
import { TfjsDetector } from '../../src/detection/tfjs/tfjs-detector.ts';
import type { DetectOptions, Detection, PreparedFrame } from '../../src/detection/types.ts';
import { frameJpegAt, VTEST_AVI } from '../helpers/media-fixtures.ts';

const MODEL = 'models/yolov8n.onnx';
const PHOTOS = {
  astronaut: '/usr/lib/python3/dist-packages/skimage/data/astronaut.png',
  motorcycle: '/usr/lib/python3/dist-packages/skimage/data/motorcycle_left.png',
};
/** The walking-people clip; two frames well apart (as test/integration/onnx-batch.spec.ts takes) join the photos for batch tests. */
const VIDEO_SECONDS = [0.1, 4];
const OPTIONS: DetectOptions = { confidenceThreshold: 0.25, iouThreshold: 0.7 };
const ANCHORS = 8400;
/**
 * Bounds on |tfjs-wasm - onnxruntime| over output0. Box rows are pixels in the 640x640 input (float32
 * rounding of sums over thousands of products; measured about 0.003); class rows are sigmoid scores
 * in [0, 1] (measured about 1e-5).
 */
const MAX_BOX_DELTA = 0.02;
const MAX_SCORE_DELTA = 1e-4;

describe('ONNX to TensorFlow.js conversion of yolov8n (wasm backend vs ONNX Runtime)', function () {
  this.timeout(120_000);
  let dir: string;
  let tfjs: TfjsDetector;
  let onnx: OnnxDetector;
  let reference: ort.InferenceSession;
  const frames = {} as Record<keyof typeof PHOTOS, PreparedFrame>;
  const videoFrames: PreparedFrame[] = [];

  before(async function () {
    if (!existsSync(MODEL)) throw new Error(`${MODEL} is missing: run \`npm run fetch-model\``);
    dir = await mkdtemp(path.join(os.tmpdir(), 'vidsense-tfjs-'));
    const result = await convertOnnxFile(MODEL, dir);
    assert.equal(result.converted, true);
    tfjs = await TfjsDetector.create(dir, { backend: 'wasm' });
    onnx = await OnnxDetector.create(MODEL);
    reference = await ort.InferenceSession.create(MODEL);
    for (const [key, file] of Object.entries(PHOTOS) as [keyof typeof PHOTOS, string][]) {
      frames[key] = await prepareFrame(await sharp(file).removeAlpha().jpeg({ quality: 90 }).toBuffer(), tfjs.modelInfo.imgsz);
    }
    for (const seconds of VIDEO_SECONDS) videoFrames.push(await prepareFrame(await frameJpegAt(VTEST_AVI, seconds), tfjs.modelInfo.imgsz));
  });

  after(async () => {
    await tfjs?.close();
    await onnx?.close();
    await reference?.release();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('reads the ONNX graph, initializers and metadata with protobufjs', async () => {
    const model = readOnnxModel(await readFile(MODEL));
    assert.equal(model.opsets.get(''), 17);
    assert.deepEqual(model.graph.inputs.map((i) => [i.name, i.shape]), [['images', [1, 3, 640, 640]]]);
    assert.deepEqual(model.graph.outputs.map((o) => [o.name, o.shape]), [['output0', [1, 84, 8400]]]);
    assert.equal(model.metadata.get('stride'), '32');
    const weight = model.graph.initializers.get('model.22.dfl.conv.weight');
    assert.ok(weight?.kind === 'float');
    assert.deepEqual(weight.dims, [1, 16, 1, 1]);
    // The DFL conv is fixed to 0..15, the expectation over the 16 distance bins.
    assert.deepEqual(Array.from(weight.values), Array.from({ length: 16 }, (_, i) => i));
    assert.deepEqual(model.graph.initializers.get('/model.22/dfl/Constant_output_0')?.values, [1, 4, 16, 8400]);
  });

  it('writes an NHWC graph with a dynamic batch, the metadata, and is idempotent', async () => {
    const json = await readModelJson(dir);
    const ops = json.modelTopology.node.map((n) => n.op);
    // Transposes only at the two ends: NCHW input to NHWC, and [N, 8400, 84] back to ONNX's [N, 84, 8400].
    assert.equal(ops.filter((op) => op === 'Transpose').length, 2);
    assert.equal(ops.filter((op) => op === '_FusedConv2D' || op === 'Conv2D').length, 64);
    const placeholder = json.modelTopology.node.find((n) => n.op === 'Placeholder');
    assert.deepEqual(placeholder?.attr?.shape?.shape?.dim?.map((d) => Number(d.size)), [-1, 3, 640, 640]);
    assert.equal(json.userDefinedMetadata.names?.length, 80);
    assert.deepEqual(json.userDefinedMetadata.imgsz, [640, 640]);
    assert.equal(json.userDefinedMetadata.stride, 32);
    // The converter takes the metadata from protobufjs's decoding; the ONNX engine's wire reader agrees with it.
    assert.deepEqual(json.userDefinedMetadata.names, readOnnxModelInfo(await readFile(MODEL)).names);
    assert.deepEqual(json.weightsManifest[0]!.paths, ['group1-shard1of4.bin', 'group1-shard2of4.bin', 'group1-shard3of4.bin', 'group1-shard4of4.bin']);

    const modelJsonStat = await stat(path.join(dir, 'model.json'));
    const again = await convertOnnxFile(MODEL, dir);
    assert.equal(again.converted, false, 'an up-to-date conversion is left alone');
    assert.equal((await stat(path.join(dir, 'model.json'))).mtimeMs, modelJsonStat.mtimeMs);
  });

  it('matches ONNX Runtime on output0 within the stated bounds', async () => {
    for (const key of ['astronaut', 'motorcycle'] as const) {
      const { box, score } = await compareWithOnnxRuntime(tfjs, reference, frames[key]);
      console.log(`      ${key}: max |Δ| boxes ${box.toExponential(2)} px, scores ${score.toExponential(2)}`);
      assert.ok(box < MAX_BOX_DELTA, `${key}: box rows differ by ${box}`);
      assert.ok(score < MAX_SCORE_DELTA, `${key}: score rows differ by ${score}`);
    }
  });

  it('gives the same detections after NMS as the ONNX Runtime detector', async () => {
    const ours = await tfjs.detectBatch([frames.astronaut, frames.motorcycle], OPTIONS);
    const theirs = await onnx.detectBatch([frames.astronaut, frames.motorcycle], OPTIONS);
    assert.equal(ours.length, 2);
    for (let i = 0; i < 2; i++) {
      assert.ok(theirs[i]!.length > 0);
      assertSameDetections(ours[i]!, theirs[i]!);
    }
    assert.ok(ours[0]!.some((d) => d.className === 'person'));
    assert.ok(ours[1]!.some((d) => d.className === 'motorcycle' && d.confidence > 0.5));
  });

  it('runs a batch of 4 distinct real frames in one execution with the same results as four batches of 1', async () => {
    const four = [frames.motorcycle, videoFrames[0]!, frames.astronaut, videoFrames[1]!];
    // Four different images: two photos and two frames of the clip 3.9 s apart.
    for (let i = 0; i < four.length; i++) {
      for (let j = i + 1; j < four.length; j++) assert.notDeepEqual(four[i]!.pixels, four[j]!.pixels, `frames ${i} and ${j} differ`);
    }
    const timings = { inferenceMs: 0, postprocessMs: 0, runs: 0 };
    const batch = await tfjs.detectBatch(four, OPTIONS, timings);
    assert.equal(timings.runs, 1, 'one graph execution for the four frames');
    const single = [];
    for (const frame of four) single.push((await tfjs.detectBatch([frame], OPTIONS))[0]!);
    assert.deepEqual(batch, single);
    assert.ok(single.every((detections) => detections.length > 0));
    assert.ok(single[1]!.some((d) => d.className === 'person') && single[3]!.some((d) => d.className === 'person'));
    assert.deepEqual(await tfjs.detectBatch([], OPTIONS), []);
  });

  it('leaves no tensors behind across repeated batches', async () => {
    await tfjs.detectBatch([frames.astronaut], OPTIONS);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) await tfjs.detectBatch([frames.astronaut, frames.motorcycle], OPTIONS);
    assert.equal(tf.memory().numTensors, before);
  });

  it('reports engine and device, and refuses frames of the wrong size', async () => {
    assert.equal(tfjs.engine, 'tfjs');
    assert.equal(tfjs.device, 'wasm');
    assert.deepEqual(tfjs.modelInfo.names.slice(0, 2), ['person', 'bicycle']);
    const before = tf.memory().numTensors;
    const small = { ...frames.astronaut, pixels: new Uint8Array(3 * 320 * 320) };
    await assert.rejects(tfjs.detectBatch([small], OPTIONS), /640x640x3/);
    assert.equal(tf.memory().numTensors, before);
  });
});

/**
 * The larger sizes, as published: not run through onnx-simplifier, so unlike yolov8n their head keeps
 * the tensor-shape arithmetic of `distance.chunk(2, 1)` (Shape, Gather, integer Add/Div/Mul feeding two
 * Slices) and uses Split, which the converter evaluates at conversion time. One real image at batch 1
 * keeps the cost down (yolov8m is about 2 s a frame on tfjs-wasm); n above covers batching and tensors.
 */
const LARGER_SIZES = [
  { size: 's', convolutions: 64 },
  { size: 'm', convolutions: 84 },
] as const;

for (const { size, convolutions } of LARGER_SIZES) {
  const model = `models/yolov8${size}.onnx`;

  describe(`ONNX to TensorFlow.js conversion of yolov8${size}, an unsimplified export (wasm backend vs ONNX Runtime)`, function () {
    this.timeout(120_000);
    let dir: string;
    let tfjs: TfjsDetector;
    let reference: ort.InferenceSession;
    let frame: PreparedFrame;

    before(async function () {
      if (!existsSync(model)) {
        throw new Error(
          `${model} is missing: run \`npm run fetch-model -- n s m\` (scripts/setup fetches it when MODEL_SIZES includes "${size}")`,
        );
      }
      dir = await mkdtemp(path.join(os.tmpdir(), `vidsense-tfjs-${size}-`));
      const result = await convertOnnxFile(model, dir);
      assert.equal(result.converted, true);
      // The backend is process-wide: this selects wasm for this block's tests, as the yolov8n block does.
      tfjs = await TfjsDetector.create(dir, { backend: 'wasm' });
      reference = await ort.InferenceSession.create(model);
      frame = await prepareFrame(await sharp(PHOTOS.astronaut).removeAlpha().jpeg({ quality: 90 }).toBuffer(), tfjs.modelInfo.imgsz);
    });

    after(async () => {
      await tfjs?.close();
      await reference?.release();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('folds the shape arithmetic away: only the two layout transposes and the convolutions remain', async () => {
      const ops = (await readModelJson(dir)).modelTopology.node.map((n) => n.op);
      assert.equal(ops.filter((op) => op === 'Transpose').length, 2);
      assert.equal(ops.filter((op) => op === '_FusedConv2D' || op === 'Conv2D').length, convolutions);
      assert.deepEqual(ops.filter((op) => /Shape|Gather/.test(op)), []);
      assert.equal(tfjs.modelInfo.names.length, 80);
    });

    it('matches ONNX Runtime on output0 within the stated bounds, with the same detections after NMS', async () => {
      assert.equal(tfjs.device, 'wasm');
      assert.equal(tf.getBackend(), 'wasm');
      const { ours, expected, box, score } = await compareWithOnnxRuntime(tfjs, reference, frame);
      // Both outputs decoded as both detectors decode them (OnnxDetector and TfjsDetector share decodeYoloOutput).
      const names = tfjs.modelInfo.names;
      const detections = decodeYoloOutput(ours, ANCHORS, 80, frame, names, OPTIONS);
      const referenceDetections = decodeYoloOutput(expected, ANCHORS, 80, frame, names, OPTIONS);
      console.log(`      astronaut: max |Δ| boxes ${box.toExponential(2)} px, scores ${score.toExponential(2)}; ${detections.length} detections`);
      assert.ok(box < MAX_BOX_DELTA, `box rows differ by ${box}`);
      assert.ok(score < MAX_SCORE_DELTA, `score rows differ by ${score}`);
      assert.ok(referenceDetections.length > 0);
      assertSameDetections(detections, referenceDetections);
      assert.ok(detections.some((d) => d.className === 'person' && d.confidence > 0.5));
    });
  });
}

/**
 * output0 of one frame at batch 1 from the tfjs detector and from ONNX Runtime, with the largest |Δ|
 * over the box rows (the first 4 x ANCHORS values, in pixels) and over the class-score rows.
 */
async function compareWithOnnxRuntime(
  tfjs: TfjsDetector,
  reference: ort.InferenceSession,
  frame: PreparedFrame,
): Promise<{ ours: Float32Array; expected: Float32Array; box: number; score: number }> {
  const { values: ours, dims } = await tfjs.runRaw([frame]);
  assert.deepEqual(dims, [1, 84, ANCHORS]);
  const result = await reference.run({ images: new ort.Tensor('float32', hwcToChw(frame.pixels, 640 * 640), [1, 3, 640, 640]) });
  const expected = result.output0!.data as Float32Array;
  assert.equal(ours.length, expected.length);
  let box = 0;
  let score = 0;
  for (let i = 0; i < ours.length; i++) {
    const delta = Math.abs(ours[i]! - expected[i]!);
    if (i < 4 * ANCHORS) box = Math.max(box, delta);
    else score = Math.max(score, delta);
  }
  return { ours, expected, box, score };
}

/** Same count and order of classes; boxes overlap at IoU > 0.99 and confidences agree to 1e-3. */
function assertSameDetections(ours: Detection[], theirs: Detection[]): void {
  assert.equal(ours.length, theirs.length, `${JSON.stringify(ours)} vs ${JSON.stringify(theirs)}`);
  ours.forEach((det, i) => {
    const ref = theirs[i]!;
    assert.equal(det.classId, ref.classId);
    assert.ok(iou(det.box, ref.box) > 0.99, `${det.className}: IoU ${iou(det.box, ref.box)}`);
    assert.ok(Math.abs(det.confidence - ref.confidence) < 1e-3, `${det.className}: ${det.confidence} vs ${ref.confidence}`);
  });
}
