import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createDetector } from '../../src/detection/create-detector.ts';
import { prepareFrame } from '../../src/detection/letterbox.ts';
import { iou } from '../../src/detection/postprocess.ts';
import { packageInstalled } from '../../src/detection/tfjs/tfjs-backend.ts';
import { cutClip, VTEST_AVI } from '../helpers/media-fixtures.ts';
import { Stack } from '../helpers/stack.ts';

/**
 * The worker on TensorFlow.js: wasm (ships inside npm, always here), and with TFJS_BACKEND left at auto, which
 * takes @tensorflow/tfjs-node when it is installed (`npm test` installs it: scripts/install-tfjs-node).
 */
const RUNS = [
  { title: 'TFJS_BACKEND=wasm', env: { TFJS_BACKEND: 'wasm' }, backend: 'wasm', device: 'wasm', needs: undefined },
  { title: 'TFJS_BACKEND=auto with tfjs-node installed', env: { TFJS_BACKEND: 'auto' }, backend: 'tensorflow', device: 'tensorflow-cpu', needs: '@tensorflow/tfjs-node' },
] as const;

for (const run of RUNS) {
  describe(`pipeline end to end with DETECTOR_ENGINE=tfjs, ${run.title}`, function () {
    this.timeout(240_000);

    let tmp: string;
    let stack: Stack | undefined;

    before(async function () {
      if (run.needs && !packageInstalled(run.needs)) {
        console.log(`      (skipped: ${run.needs} is not installed: bash scripts/install-tfjs-node)`);
        this.skip();
      }
      tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-tfjs-'));
    });
    after(async () => {
      await stack?.stop();
      if (tmp) await fs.rm(tmp, { recursive: true, force: true });
    });

    it('converts the model at start-up, completes a real clip, and agrees with ONNX Runtime on the same frames', async () => {
      const modelDir = path.join(tmp, 'web_model');
      stack = await Stack.start(tmp, { DETECTOR_ENGINE: 'tfjs', TFJS_MODEL_DIR: modelDir, BATCH_SIZE: '2', ...run.env });
      await stack.startApi();
      const worker = await stack.startWorker();
      const ready = (line: string) => line.includes('"detector ready"') && line.includes('"engine":"tfjs"') && line.includes(`"backend":"${run.backend}"`) && line.includes(`"device":"${run.device}"`);
      assert.ok(worker.logs.some(ready), worker.logs.join('\n'));
      await fs.access(path.join(modelDir, 'model.json'));

      const clip = await cutClip(VTEST_AVI, 2, path.join(tmp, 'vtest-2s.mp4'));
      const id = await stack.upload(clip, '2'); // 4 frames: wasm runs ~0.4 s a frame here, tfjs-node ~0.2 s
      const video = await stack.waitCompleted(id);
      assert.deepEqual([video.status, video.framesDone], ['completed', 4]);

      const onnx = await createDetector({ modelPath: path.resolve('models/yolov8n.onnx') });
      try {
        const rows = await stack.db.sql<{ frame_index: number; class_id: number; confidence: number; x1: number; y1: number; x2: number; y2: number }[]>`
          SELECT frame_index, class_id, confidence, x1, y1, x2, y2 FROM detections WHERE video_id = ${id} ORDER BY frame_index, confidence DESC`;
        for (let index = 0; index < 4; index += 1) {
          const jpeg = await fs.readFile(path.join(stack.storageDir, 'videos', id, 'frames', `${String(index).padStart(6, '0')}.jpg`));
          const [expected] = await onnx.detectBatch([await prepareFrame(jpeg, onnx.modelInfo.imgsz)], { confidenceThreshold: 0.25, iouThreshold: 0.7 });
          const actual = rows.filter((row) => row.frame_index === index);
          assert.equal(actual.length, expected!.length, `frame ${index}: tfjs found ${actual.length}, onnx ${expected!.length}`);
          assert.ok(actual.some((row) => row.class_id === 0), `frame ${index} has no person`);
          for (const want of expected!) {
            const match = actual.find((row) => row.class_id === want.classId && iou([row.x1, row.y1, row.x2, row.y2], want.box) > 0.99);
            assert.ok(match, `frame ${index}: no tfjs box for ${want.className} ${want.box.map((v) => v.toFixed(1))}`);
            assert.ok(Math.abs(match.confidence - want.confidence) < 1e-3);
          }
        }
      } finally {
        await onnx.close();
      }
    });
  });
}
