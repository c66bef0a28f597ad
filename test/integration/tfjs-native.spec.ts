import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';
import { createDetector } from '../../src/detection/create-detector.ts';
import { prepareFrame } from '../../src/detection/letterbox.ts';
import { OnnxDetector } from '../../src/detection/onnx-detector.ts';
import { iou } from '../../src/detection/postprocess.ts';
import { convertOnnxFile } from '../../src/detection/tfjs/convert-file.ts';
import { importModule } from '../../src/detection/tfjs/tfjs-backend.ts';
import { TfjsDetector } from '../../src/detection/tfjs/tfjs-detector.ts';
import type { Detector, PreparedFrame } from '../../src/detection/types.ts';

const MODEL = 'models/yolov8n.onnx';
const PHOTO = '/usr/lib/python3/dist-packages/skimage/data/astronaut.png';
const OPTIONS = { confidenceThreshold: 0.25, iouThreshold: 0.7 };

/** Resolves whether a package can be imported here, without importing it (no libtensorflow load). */
function installed(pkg: string): boolean {
  try {
    import.meta.resolve(pkg);
    return true;
  } catch {
    return false;
  }
}

describe('tfjs-node (TFJS_BACKEND=node) against ONNX Runtime', function () {
  this.timeout(120_000);
  const pkg = '@tensorflow/tfjs-node';

  it('detects the same objects as ONNX Runtime on the tensorflow backend', async function () {
    if (!installed(pkg)) {
      // Optional dependency; its install downloads libtensorflow from outside the npm registry.
      console.log(`      (skipped: ${pkg} is not installed; \`npm install ${pkg}\` downloads libtensorflow from storage.googleapis.com)`);
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

describe('tfjs-wasm memory over many batches', function () {
  this.timeout(180_000);
  let dir: string;
  let detector: TfjsDetector;
  let frame: PreparedFrame;

  before(async function () {
    if (!existsSync(MODEL)) throw new Error(`${MODEL} is missing: run \`npm run fetch-model\``);
    dir = await mkdtemp(path.join(os.tmpdir(), 'vidsense-tfjs-mem-'));
    await convertOnnxFile(MODEL, dir);
    detector = await TfjsDetector.create(dir, { backend: 'wasm' });
    frame = await prepareFrame(await sharp(PHOTO).removeAlpha().jpeg({ quality: 90 }).toBuffer(), detector.modelInfo.imgsz);
  });

  after(async () => {
    await detector?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('leaves tf.memory().numTensors unchanged after 100 batches of 1 on the real yolov8n', async () => {
    await detector.detectBatch([frame], OPTIONS); // warm-up: anything allocated once is counted before
    const tensors = tf.memory().numTensors;
    const bytes = tf.memory().numBytes;
    let detections = 0;
    for (let i = 0; i < 100; i++) detections += (await detector.detectBatch([frame], OPTIONS))[0]!.length;
    assert.equal(tf.memory().numTensors, tensors);
    assert.equal(tf.memory().numBytes, bytes);
    assert.ok(detections > 0);
  });
});
