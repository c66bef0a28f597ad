import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { createDetector } from '../../src/detection/create-detector.ts';
import { hwcToChw, prepareFrame } from '../../src/detection/letterbox.ts';
import { OnnxDetector } from '../../src/detection/onnx-detector.ts';
import type { DetectOptions, Detection, Detector, PreparedFrame } from '../../src/detection/types.ts';

const MODEL = 'models/yolov8n.onnx';
const PHOTOS = {
  astronaut: '/usr/lib/python3/dist-packages/skimage/data/astronaut.png',
  motorcycle: '/usr/lib/python3/dist-packages/skimage/data/motorcycle_left.png',
};
const OPTIONS: DetectOptions = { confidenceThreshold: 0.25, iouThreshold: 0.7 };

type Box = [number, number, number, number];

/**
 * Reference decode written independently of src/detection/postprocess.ts: the plain anchor-by-anchor
 * reading of Ultralytics' non_max_suppression, no typed-array tricks.
 */
function referenceDecode(raw: Float32Array, dims: readonly number[], frame: PreparedFrame, names: string[], opts: DetectOptions): Detection[] {
  const channels = dims[1]!;
  const anchors = dims[2]!;
  const get = (c: number, a: number) => raw[c * anchors + a]!;
  const candidates: { cls: number; score: number; box: Box }[] = [];
  for (let a = 0; a < anchors; a++) {
    let cls = -1;
    let score = -Infinity;
    for (let c = 4; c < channels; c++) {
      if (get(c, a) > score) {
        score = get(c, a);
        cls = c - 4;
      }
    }
    if (score <= opts.confidenceThreshold) continue;
    const [cx, cy, w, h] = [get(0, a), get(1, a), get(2, a), get(3, a)];
    candidates.push({ cls, score, box: [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2] });
  }
  candidates.sort((p, q) => q.score - p.score);
  const kept: typeof candidates = [];
  for (const cand of candidates) {
    if (kept.some((k) => k.cls === cand.cls && boxIou(k.box, cand.box) > opts.iouThreshold)) continue;
    kept.push(cand);
  }
  const unmap = (v: number, pad: number, max: number) => Math.min(Math.max((v - pad) / frame.scale, 0), max);
  return kept.slice(0, 300).map((k) => ({
    classId: k.cls,
    className: names[k.cls]!,
    confidence: k.score,
    box: [
      unmap(k.box[0], frame.padLeft, frame.sourceWidth),
      unmap(k.box[1], frame.padTop, frame.sourceHeight),
      unmap(k.box[2], frame.padLeft, frame.sourceWidth),
      unmap(k.box[3], frame.padTop, frame.sourceHeight),
    ],
  }));
}

function boxIou(a: Box, b: Box): number {
  const iw = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const ih = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const inter = iw * ih;
  return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter);
}

/** Same count; each detection pairs with a same-class reference detection at IoU > 0.9 and confidence within 0.01. */
function assertAgree(ours: Detection[], reference: Detection[], label: string): void {
  assert.equal(ours.length, reference.length, `${label}: detection count`);
  const unmatched = [...reference];
  for (const det of ours) {
    let bestIndex = -1;
    let bestIou = 0;
    unmatched.forEach((ref, i) => {
      const overlap = ref.classId === det.classId ? boxIou(ref.box, det.box) : 0;
      if (overlap > bestIou) [bestIndex, bestIou] = [i, overlap];
    });
    assert.ok(bestIndex >= 0 && bestIou > 0.9, `${label}: no reference match for ${det.className} ${det.box.map(Math.round)} (best IoU ${bestIou.toFixed(3)})`);
    const [ref] = unmatched.splice(bestIndex, 1);
    assert.ok(Math.abs(ref!.confidence - det.confidence) < 0.01, `${label}: ${det.className} confidence ${det.confidence} vs ${ref!.confidence}`);
  }
}

describe('OnnxDetector with yolov8n.onnx', function () {
  this.timeout(120_000);
  let detector: Detector;
  let reference: ort.InferenceSession;
  const frames: Record<keyof typeof PHOTOS, PreparedFrame> = {} as never;
  const jpegs: Record<string, Buffer> = {};

  before(async function () {
    if (!existsSync(MODEL)) throw new Error(`${MODEL} is missing: run \`npm run fetch-model\``);
    detector = await createDetector({ modelPath: MODEL });
    reference = await ort.InferenceSession.create(MODEL);
    for (const [key, file] of Object.entries(PHOTOS) as [keyof typeof PHOTOS, string][]) {
      jpegs[key] = await sharp(file).removeAlpha().jpeg({ quality: 90 }).toBuffer();
      frames[key] = await prepareFrame(jpegs[key], detector.modelInfo.imgsz);
    }
  });

  after(async () => {
    await detector?.close();
    await reference?.release();
  });

  it('takes class names, input size and stride from the model metadata', () => {
    assert.equal(detector.engine, 'onnx');
    assert.equal(detector.device, 'cpu');
    assert.equal(detector.modelInfo.names.length, 80);
    assert.equal(detector.modelInfo.names[0], 'person');
    assert.equal(detector.modelInfo.names[79], 'toothbrush');
    assert.deepEqual(detector.modelInfo.imgsz, [640, 640]);
    assert.equal(detector.modelInfo.stride, 32);
  });

  it('agrees with an independent run and decode of the raw output0', async () => {
    const timings = { inferenceMs: 0, postprocessMs: 0 };
    const ours = await detector.detectBatch([frames.astronaut, frames.motorcycle], OPTIONS, timings);
    assert.equal(ours.length, 2);
    assert.ok(timings.inferenceMs > 0 && timings.postprocessMs > 0, 'timings accumulated');
    for (const [i, key] of (['astronaut', 'motorcycle'] as const).entries()) {
      const frame = frames[key];
      const input = new ort.Tensor('float32', hwcToChw(frame.pixels, 640 * 640), [1, 3, 640, 640]);
      const result = await reference.run({ images: input });
      const output0 = result.output0!;
      assert.deepEqual(output0.dims, [1, 84, 8400]);
      const expected = referenceDecode(output0.data as Float32Array, output0.dims, frame, detector.modelInfo.names, OPTIONS);
      assert.ok(expected.length > 0, `${key}: reference found something`);
      assertAgree(ours[i]!, expected, key);
    }
  });

  it('finds the astronaut (a person inside the image) and the motorcycle', async () => {
    const [astronaut, motorcycle] = await detector.detectBatch([frames.astronaut, frames.motorcycle], OPTIONS);
    const person = astronaut!.find((d) => d.className === 'person');
    assert.ok(person, `no person in ${JSON.stringify(astronaut)}`);
    const [x1, y1, x2, y2] = person.box;
    assert.ok(0 <= x1 && x1 < x2 && x2 <= 512 && 0 <= y1 && y1 < y2 && y2 <= 512, `box ${person.box}`);
    assert.ok((x2 - x1) * (y2 - y1) > 0.3 * 512 * 512, 'the astronaut fills much of the picture');
    assert.ok(motorcycle!.some((d) => d.className === 'motorcycle' && d.confidence > 0.5), JSON.stringify(motorcycle));
  });

  it('returns the same detections frame by frame as in one batch, in order', async () => {
    const batch = await detector.detectBatch([frames.motorcycle, frames.astronaut, frames.motorcycle], OPTIONS);
    const single = await detector.detectBatch([frames.motorcycle], OPTIONS);
    assert.equal(batch.length, 3);
    assert.deepEqual(batch[0], single[0]);
    assert.deepEqual(batch[2], single[0]);
    assert.deepEqual(await detector.detectBatch([], OPTIONS), []);
  });

  it('runs frames decoded straight into one batch buffer (views into it; letterbox.spec checks that packBatch does not copy them) as it runs frames decoded alone', async () => {
    const batch = new Uint8Array(2 * 3 * 640 * 640);
    const slotted = [await prepareFrame(jpegs.astronaut!, [640, 640], { batch, index: 0 }), await prepareFrame(jpegs.motorcycle!, [640, 640], { batch, index: 1 })];
    const alone = [frames.astronaut, frames.motorcycle];
    // One frame a run (the default: each run's input is a view into the buffer), and both in one run (the buffer itself).
    assert.deepEqual(await detector.detectBatch(slotted, OPTIONS), await detector.detectBatch(alone, OPTIONS));
    const twoPerRun = await OnnxDetector.create(MODEL, { framesPerRun: 2 });
    try {
      assert.deepEqual(await twoPerRun.detectBatch(slotted, OPTIONS), await twoPerRun.detectBatch(alone, OPTIONS));
    } finally {
      await twoPerRun.close();
    }
  });

  it('explains a missing model file', async () => {
    await assert.rejects(createDetector({ modelPath: 'models/does-not-exist.onnx' }), /npm run fetch-model/);
  });
});
