import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { ensureInt8Model, type QuantizeStats } from '../../src/detection/int8-model.ts';
import { prepareFrame } from '../../src/detection/letterbox.ts';
import { OnnxDetector } from '../../src/detection/onnx-detector.ts';
import { getModelType } from '../../src/detection/tfjs/onnx-reader.ts';
import type { Detection, PreparedFrame } from '../../src/detection/types.ts';
import { resolveMediaBinaries } from '../../src/media/binaries.ts';
import { MediaRepository } from '../../src/media/media.repository.ts';
import { calibrationFrames, calibrationId } from '../../src/services/calibration.service.ts';
import { detectionAgreement } from '../helpers/detection-agreement.ts';
import { SKIMAGE_PHOTOS as PHOTOS, VTEST_AVI } from '../helpers/media-fixtures.ts';

const MODEL = 'models/yolov8n.onnx';
const OPTIONS = { confidenceThreshold: 0.25, iouThreshold: 0.7 };
/** A small calibration set keeps the test's quantization short; the service takes 32 frames by default. */
const CALIBRATION = { video: VTEST_AVI, frames: 8, frameSize: { width: 640, height: 640 } };
// What int8 honestly meets against fp32 here (measured with 8 calibration frames: see the log lines).
const MIN_RECALL = 0.95;
const MIN_PRECISION = 0.95;
const MIN_IOU = 0.5;
const MIN_CONFIDENCE = 0.5;

/** Node op types of the graph ONNX Runtime actually runs (its optimized model, written at session creation). */
async function optimizedOps(modelPath: string, dir: string): Promise<Map<string, number>> {
  const file = path.join(dir, `optimized-${path.basename(modelPath)}`);
  const detector = await OnnxDetector.create(modelPath, { sessionOptions: { optimizedModelFilePath: file } });
  await detector.close();
  const model = getModelType().decode(await readFile(file)) as unknown as { graph: { node: { op_type: string }[] } };
  const ops = new Map<string, number>();
  for (const node of model.graph.node) ops.set(node.op_type, (ops.get(node.op_type) ?? 0) + 1);
  return ops;
}

describe('MODEL_PRECISION=int8: static QDQ quantization of yolov8n', function () {
  this.timeout(900_000);
  let dir: string;
  let int8Path: string;
  let stats: QuantizeStats | undefined;
  let quantizeMs: number;
  let media: MediaRepository;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'vidsense-int8-'));
    media = new MediaRepository(await resolveMediaBinaries({}));
    const started = performance.now();
    const result = await ensureInt8Model({
      modelPath: MODEL,
      cachePath: path.join(dir, 'yolov8n.int8.onnx'),
      calibrationId: await calibrationId(CALIBRATION),
      calibrationFrames: () => calibrationFrames(media, CALIBRATION, [640, 640]),
    });
    quantizeMs = performance.now() - started;
    int8Path = result.path;
    stats = result.quantized;
    console.log(`      quantized in ${(quantizeMs / 1000).toFixed(1)} s (calibration on ${stats?.frames} frames: ${((stats?.calibrationMs ?? 0) / 1000).toFixed(1)} s)`);
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('quantizes the backbone and neck, keeps the detection head in float, and ONNX Runtime runs QLinear kernels', async () => {
    assert.ok(stats, 'quantized on the first call');
    assert.equal(stats.frames, CALIBRATION.frames);
    const ops = await optimizedOps(int8Path, dir);
    const float = await optimizedOps(MODEL, dir);
    // Every convolution outside the head (64 Conv, of which the 6 last 1x1 of the branches and the DFL stay float).
    assert.equal(ops.get('QLinearConv'), 57, JSON.stringify(Object.fromEntries(ops)));
    assert.ok((ops.get('QLinearMul') ?? 0) >= 57 && (ops.get('QLinearSigmoid') ?? 0) >= 57, 'SiLU runs on 8-bit values');
    assert.ok(!float.has('QLinearConv'));
    // The head: its float Conv nodes, Softmax (DFL) and the final Concat producing output0.
    assert.equal(ops.get('Conv'), 7);
    assert.ok(ops.has('Softmax'));
    const model = getModelType().decode(await readFile(int8Path)) as unknown as { graph: { node: { op_type: string; output: string[] }[]; input: { name: string; type: { tensor_type: { elem_type: number } } }[] } };
    assert.equal(model.graph.node.find((n) => n.output.includes('output0'))?.op_type, 'Concat', 'the final Concat is not quantized');
    assert.equal(model.graph.input[0]!.type.tensor_type.elem_type, 2, 'the input is the RGB bytes (uint8)');
  });

  it(`agrees with fp32 on vtest.avi and on photos it was not calibrated on: recall and precision >= ${MIN_RECALL} at IoU >= ${MIN_IOU}, confidence >= ${MIN_CONFIDENCE}`, async () => {
    const fp32 = await OnnxDetector.create(MODEL);
    const int8 = await OnnxDetector.create(int8Path);
    try {
      const video = await calibrationFrames(media, { ...CALIBRATION, frames: 40 }, [640, 640]);
      const photos: PreparedFrame[] = [];
      for (const photo of PHOTOS) photos.push(await prepareFrame(await readFile(photo), [640, 640]));
      for (const [label, frames] of [['vtest.avi', video], ['photos', photos]] as const) {
        const expected: Detection[][] = await fp32.detectBatch(frames, OPTIONS);
        const ours = await int8.detectBatch(frames, OPTIONS);
        const agreement = detectionAgreement(expected, ours, MIN_IOU, MIN_CONFIDENCE);
        console.log(`      ${label}: recall ${agreement.recall.toFixed(4)}, precision ${agreement.precision.toFixed(4)} (${agreement.matched} matched of ${agreement.reference} fp32 / ${agreement.candidate} int8 detections, ${agreement.images} images)`);
        assert.ok(agreement.reference > 0);
        assert.ok(agreement.recall >= MIN_RECALL, `${label}: recall ${agreement.recall}`);
        assert.ok(agreement.precision >= MIN_PRECISION, `${label}: precision ${agreement.precision}`);
      }
    } finally {
      await Promise.all([fp32.close(), int8.close()]);
    }
  });

  it('reuses the cached model, and quantizes again when the model or the calibration set changes', async () => {
    const refuse = async (): Promise<PreparedFrame[]> => {
      throw new Error('asked for calibration frames');
    };
    const cachePath = path.join(dir, 'yolov8n.int8.onnx');
    const id = await calibrationId(CALIBRATION);
    const again = await ensureInt8Model({ modelPath: MODEL, cachePath, calibrationId: id, calibrationFrames: refuse });
    assert.deepEqual(again, { path: cachePath });
    await assert.rejects(ensureInt8Model({ modelPath: MODEL, cachePath, calibrationId: await calibrationId({ ...CALIBRATION, frames: 9 }), calibrationFrames: refuse }), /asked for calibration frames/);
    // A different model file (the same graph with one more metadata entry) is a different model.
    const changed = path.join(dir, 'changed.onnx');
    // metadata_props (field 14) entry {key: "x"} appended to the ModelProto.
    await writeFile(changed, Buffer.concat([await readFile(MODEL), Buffer.from([0x72, 0x03, 0x0a, 0x01, 0x78])]));
    await assert.rejects(ensureInt8Model({ modelPath: changed, cachePath, calibrationId: id, calibrationFrames: refuse }), /asked for calibration frames/);
    // The cache is still the model made above: a refused quantization leaves it alone.
    assert.ok(await ort.InferenceSession.create(cachePath).then((s) => s.release().then(() => true)));
  });
});
