import assert from 'node:assert/strict';
import type { Detector } from '../../../src/detection/types.ts';
import { detectorReadiness } from '../../../src/main/readiness.ts';

const detector = {
  engine: 'onnx',
  backend: 'cpu',
  device: 'cpu',
  modelInfo: { names: ['person', 'car'], imgsz: [640, 640], stride: 32 },
} as unknown as Detector;

describe('detectorReadiness (/readyz "model" check)', () => {
  it('shows why the engine was picked, so an auto fallback is visible', async () => {
    const reason = 'auto: TFJS_BACKEND=node-gpu needs @tensorflow/tfjs-node-gpu, which is not installed; using ONNX Runtime on the CPU';
    const result = await detectorReadiness(detector, { engine: 'onnx', reason }).check();
    assert.deepEqual(result, { ok: true, detail: { engine: 'onnx', backend: 'cpu', device: 'cpu', classes: 2, imgsz: [640, 640], reason } });
  });

  it('leaves the reason out when the detector was handed in rather than picked', async () => {
    const result = await detectorReadiness(detector).check();
    assert.equal((result.detail as Record<string, unknown>).reason, undefined);
  });
});
