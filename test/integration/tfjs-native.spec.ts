import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';
import { createDetector } from '../../src/detection/create-detector.ts';
import { prepareFrame } from '../../src/detection/letterbox.ts';
import { OnnxDetector } from '../../src/detection/onnx-detector.ts';
import { iou } from '../../src/detection/postprocess.ts';
import { convertOnnxFile } from '../../src/detection/tfjs/convert-file.ts';
import { importModule, packageInstalled } from '../../src/detection/tfjs/tfjs-backend.ts';
import { TfjsDetector } from '../../src/detection/tfjs/tfjs-detector.ts';
import type { Detector, PreparedFrame } from '../../src/detection/types.ts';

const MODEL = 'models/yolov8n.onnx';
const PHOTO = '/usr/lib/python3/dist-packages/skimage/data/astronaut.png';
const MOTORCYCLE = '/usr/lib/python3/dist-packages/skimage/data/motorcycle_left.png';
const OPTIONS = { confidenceThreshold: 0.25, iouThreshold: 0.7 };

/**
 * Whether a package is installed, without importing it (no libtensorflow load): the service's own probe.
 * Not import.meta.resolve: mocha loads these specs through tsx's CommonJS path, where it is not a function,
 * so every check here answered "not installed" even with tfjs-node installed.
 */
const installed = packageInstalled;

describe('tfjs-node (TFJS_BACKEND=node) against ONNX Runtime', function () {
  this.timeout(120_000);
  const pkg = '@tensorflow/tfjs-node';

  it('detects the same objects as ONNX Runtime on the tensorflow backend', async function () {
    if (!installed(pkg)) {
      // Optional dependency; its install downloads libtensorflow from outside the npm registry.
      console.log(`      (skipped: ${pkg} is not installed: bash scripts/install-tfjs-node, which npm test runs)`);
      this.skip();
    }
    const dir = await mkdtemp(path.join(os.tmpdir(), 'vidsense-tfjs-node-'));
    let tfjs: Detector | undefined;
    let onnx: OnnxDetector | undefined;
    try {
      tfjs = await createDetector({ engine: 'tfjs', modelPath: MODEL, tfjs: { modelDir: dir, backend: 'node' }, importer: importModule });
      assert.equal(tfjs.engine, 'tfjs');
      assert.match(tfjs.device, /^tensorflow-(cpu|gpu)$/);
      assert.equal(tf.getBackend(), 'tensorflow');
      onnx = await OnnxDetector.create(MODEL);
      const frame = await prepareFrame(await sharp(PHOTO).removeAlpha().jpeg({ quality: 90 }).toBuffer(), onnx.modelInfo.imgsz);
      const [expected] = await onnx.detectBatch([frame], OPTIONS);
      const [actual] = await tfjs.detectBatch([frame], OPTIONS);
      assert.ok(expected!.length > 0);
      assert.equal(actual!.length, expected!.length);
      actual!.forEach((d, i) => {
        assert.equal(d.className, expected![i]!.className);
        assert.ok(iou(d.box, expected![i]!.box) > 0.99);
      });
    } finally {
      await tfjs?.close();
      await onnx?.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('DETECTOR_ENGINE=auto with the real module importer', function () {
  this.timeout(60_000);

  it('picks ONNX Runtime when @tensorflow/tfjs-node-gpu is not installed, and says why', async function () {
    if (installed('@tensorflow/tfjs-node-gpu')) {
      console.log('      (skipped: @tensorflow/tfjs-node-gpu is installed here; the fallback branch is covered by the unit tests)');
      this.skip();
    }
    let reason = '';
    const detector = await createDetector({
      engine: 'auto',
      modelPath: MODEL,
      tfjs: { modelDir: path.join(os.tmpdir(), 'vidsense-unused-tfjs-model'), backend: 'wasm' },
      onChoice: (choice) => (reason = choice.reason),
    });
    try {
      assert.equal(detector.engine, 'onnx');
      assert.equal(detector.device, 'cpu');
      assert.match(reason, /^auto: TFJS_BACKEND=node-gpu needs @tensorflow\/tfjs-node-gpu, which is not installed/);
    } finally {
      await detector.close();
    }
  });
});

/**
 * The same leak check as test/unit/detection/tfjs/tfjs-detector-memory.spec.ts (which runs here, on wasm
 * and cpu, with a tiny YOLOv8-shaped graph), on the real yolov8n and libtensorflow's kernels. Batches of
 * mixed sizes including 4: 100 of them are about 250 frames, minutes on tfjs-wasm but seconds on tfjs-node.
 */
describe('tfjs-node memory over 100 batches of mixed sizes (real yolov8n)', function () {
  this.timeout(600_000);
  const pkg = '@tensorflow/tfjs-node';
  let dir: string | undefined;
  let detector: TfjsDetector | undefined;
  const frames: PreparedFrame[] = [];

  before(async function () {
    if (!installed(pkg)) {
      console.log(`      (skipped: ${pkg} is not installed (bash scripts/install-tfjs-node, which npm test runs); the mixed-batch leak check runs on wasm and cpu in test/unit/detection/tfjs/tfjs-detector-memory.spec.ts)`);
      this.skip();
    }
    if (!existsSync(MODEL)) throw new Error(`${MODEL} is missing: run \`npm run fetch-model\``);
    dir = await mkdtemp(path.join(os.tmpdir(), 'vidsense-tfjs-mem-'));
    await convertOnnxFile(MODEL, dir);
    detector = await TfjsDetector.create(dir, { backend: 'node', importer: importModule });
    for (const photo of [PHOTO, MOTORCYCLE]) {
      frames.push(await prepareFrame(await sharp(photo).removeAlpha().jpeg({ quality: 90 }).toBuffer(), detector.modelInfo.imgsz));
    }
  });

  after(async () => {
    await detector?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('leaves tf.memory().numTensors unchanged after 100 batches of 1 to 4 frames', async () => {
    const batch = (size: number) => Array.from({ length: size }, (_, i) => frames[i % frames.length]!);
    await detector!.detectBatch(batch(4), OPTIONS); // warm-up: anything allocated once is counted before
    const tensors = tf.memory().numTensors;
    const bytes = tf.memory().numBytes;
    let detections = 0;
    for (let i = 0; i < 100; i++) {
      for (const list of await detector!.detectBatch(batch([1, 4, 2, 3][i % 4]!), OPTIONS)) detections += list.length;
    }
    assert.equal(tf.memory().numTensors, tensors);
    assert.equal(tf.memory().numBytes, bytes);
    assert.ok(detections > 0);
  });
});

/** Where scripts/export-saved-model writes the SavedModel of MODEL (run by `npm test`; see the README's "Engines"). */
const EXPORTED_SAVED_MODEL = 'models/yolov8n_saved_model';

/**
 * Loads a SavedModel through the detector on tfjs-node (tf.node.loadSavedModel) and compares its detections on
 * two real photos, run as one batch, with ONNX Runtime's on MODEL: the same classes in the same order, boxes
 * above `minIou`, confidences within `maxConfidenceDelta`.
 */
async function compareSavedModelWithOnnx(savedModelDir: string, minIou: number, maxConfidenceDelta: number): Promise<void> {
  let tfjs: Detector | undefined;
  let onnx: OnnxDetector | undefined;
  try {
    tfjs = await createDetector({ engine: 'tfjs', modelPath: MODEL, tfjs: { modelDir: savedModelDir, backend: 'node' }, importer: importModule });
    assert.equal(tfjs.engine, 'tfjs');
    assert.equal(tf.getBackend(), 'tensorflow');
    onnx = await OnnxDetector.create(MODEL);
    assert.deepEqual(tfjs.modelInfo.names, onnx.modelInfo.names);
    assert.deepEqual(tfjs.modelInfo.imgsz, onnx.modelInfo.imgsz);
    const frames = [];
    for (const photo of [PHOTO, MOTORCYCLE]) frames.push(await prepareFrame(await sharp(photo).removeAlpha().jpeg({ quality: 90 }).toBuffer(), onnx.modelInfo.imgsz));
    const expected = await onnx.detectBatch(frames, OPTIONS);
    const actual = await tfjs.detectBatch(frames, OPTIONS);
    expected.forEach((reference, f) => {
      assert.ok(reference.length > 0);
      assert.equal(actual[f]!.length, reference.length, `${JSON.stringify(actual[f])} vs ${JSON.stringify(reference)}`);
      actual[f]!.forEach((d, i) => {
        assert.equal(d.className, reference[i]!.className);
        assert.ok(iou(d.box, reference[i]!.box) > minIou, `${d.className}: IoU ${iou(d.box, reference[i]!.box)}`);
        assert.ok(Math.abs(d.confidence - reference[i]!.confidence) < maxConfidenceDelta, `${d.className}: ${d.confidence} vs ${reference[i]!.confidence}`);
      });
    });
  } finally {
    await tfjs?.close();
    await onnx?.close();
  }
}

describe('TF SavedModel on tfjs-node against ONNX Runtime (tf.node.loadSavedModel through the detector)', function () {
  this.timeout(120_000);
  const pkg = '@tensorflow/tfjs-node';

  beforeEach(function () {
    if (!installed(pkg)) {
      console.log(`      (skipped: ${pkg} is not installed; tf.node.loadSavedModel exists only in tfjs-node(-gpu): bash scripts/install-tfjs-node)`);
      this.skip();
    }
  });

  /**
   * The export TensorFlow 2.21's Python makes of the converted graph (scripts/export-saved-model.py): Ultralytics'
   * signature layout (NHWC `images` in, [batch, 84, 8400] out, metadata.yaml), float weights in variables/, a
   * dynamic batch. The same network as the converted graph run by TensorFlow's graph executor, so it is held to
   * the converted graph's agreement with ONNX Runtime.
   */
  it('runs the SavedModel exported from the converted graph by TensorFlow (scripts/export-saved-model), batched', async function () {
    if (!existsSync(path.join(EXPORTED_SAVED_MODEL, 'saved_model.pb'))) {
      console.log(`      (skipped: ${EXPORTED_SAVED_MODEL} does not exist: bash scripts/export-saved-model, which npm test runs where Python 3.11 and tensorflow-cpu 2.21.0 from pip's index are available)`);
      this.skip();
    }
    const metadata = await readFile(path.join(EXPORTED_SAVED_MODEL, 'metadata.yaml'), 'utf8');
    const sha256 = createHash('sha256').update(await readFile(MODEL)).digest('hex');
    assert.match(metadata, new RegExp(`^export_stamp: '${sha256} / `, 'm'), `${EXPORTED_SAVED_MODEL} is not an export of ${MODEL}: run bash scripts/export-saved-model`);
    assert.ok(existsSync(path.join(EXPORTED_SAVED_MODEL, 'variables', 'variables.index')), 'the weights are variables, restored by the loader');
    await compareSavedModelWithOnnx(EXPORTED_SAVED_MODEL, 0.99, 1e-3);
  });

  /**
   * An Ultralytics export (`yolo export model=yolov8n.pt format=saved_model`: saved_model.pb, variables/,
   * metadata.yaml) of the same weights as MODEL. Nothing here can produce one (no Ultralytics, no onnx2tf in pip's
   * index), hence the SAVED_MODEL_DIR switch. It goes through onnx2tf's graph, so its detections are compared with
   * looser bounds: boxes at IoU > 0.95, confidences within 0.02.
   */
  it('runs an Ultralytics format=saved_model export of yolov8n named by SAVED_MODEL_DIR', async function () {
    const savedModelDir = process.env.SAVED_MODEL_DIR;
    if (!savedModelDir || !existsSync(path.join(savedModelDir, 'saved_model.pb'))) {
      console.log(
        `      (skipped: SAVED_MODEL_DIR ${savedModelDir ? `(${savedModelDir}) has no saved_model.pb` : 'is not set'}; point it at an Ultralytics ` +
          '`format=saved_model` export of yolov8n, with its metadata.yaml)',
      );
      this.skip();
    }
    await compareSavedModelWithOnnx(savedModelDir, 0.95, 0.02);
  });
});
