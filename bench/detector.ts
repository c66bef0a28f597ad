/**
 * Detector micro-benchmark: prepareFrame and ONNX inference at batch 1 over real video frames.
 * Usage: tsx bench/detector.ts [--frames N] [--threads T] [--video path] [--model path]
 * Prints one JSON line.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseArgs } from 'node:util';
import { createDetector } from '../src/detection/create-detector.ts';
import { prepareFrame } from '../src/detection/letterbox.ts';
import type { DetectTimings, PreparedFrame } from '../src/detection/types.ts';

const { values: args } = parseArgs({
  options: {
    frames: { type: 'string', default: '50' },
    threads: { type: 'string', default: '0' },
    video: { type: 'string', default: '/usr/share/doc/opencv-doc/examples/data/vtest.avi' },
    model: { type: 'string', default: 'models/yolov8n.onnx' },
  },
});
const frameCount = Number(args.frames);
const threads = Number(args.threads);

const dir = await mkdtemp(path.join(os.tmpdir(), 'bench-detector-'));
try {
  // JPEG frames, as the worker sees them (the extractor writes JPEGs too).
  await promisify(execFile)('ffmpeg', ['-loglevel', 'error', '-i', args.video, '-frames:v', String(frameCount), '-q:v', '3', path.join(dir, '%05d.jpg')]);
  const files = (await readdir(dir)).filter((f) => f.endsWith('.jpg')).sort();
  const jpegs = await Promise.all(files.map((f) => readFile(path.join(dir, f))));

  const detector = await createDetector({ modelPath: args.model, threads });
  const options = { confidenceThreshold: 0.25, iouThreshold: 0.7 };
  // Warm-up: the first run allocates ORT's arenas and JIT-compiles the JS hot loops.
  await detector.detectBatch([await prepareFrame(jpegs[0]!, detector.modelInfo.imgsz)], options);

  // Sequential on purpose: per-frame cost, not throughput under concurrency.
  const frames: PreparedFrame[] = [];
  const prepStarted = performance.now();
  for (const jpeg of jpegs) frames.push(await prepareFrame(jpeg, detector.modelInfo.imgsz));
  const prepareMs = performance.now() - prepStarted;

  const timings: DetectTimings = { inferenceMs: 0, postprocessMs: 0 };
  let detections = 0;
  const detectStarted = performance.now();
  for (const frame of frames) detections += (await detector.detectBatch([frame], options, timings))[0]!.length;
  const detectMs = performance.now() - detectStarted;
  await detector.close();

  const n = frames.length;
  const round = (v: number) => Math.round(v * 100) / 100;
  console.log(
    JSON.stringify({
      engine: detector.engine,
      device: detector.device,
      threads,
      frames: n,
      size: `${frames[0]!.sourceWidth}x${frames[0]!.sourceHeight}`,
      prepareMsPerFrame: round(prepareMs / n),
      inferenceMsPerFrame: round(timings.inferenceMs / n),
      postprocessMsPerFrame: round(timings.postprocessMs / n),
      msPerFrame: round(detectMs / n),
      detectionsPerFrame: round(detections / n),
      cpus: os.cpus().length,
    }),
  );
} finally {
  await rm(dir, { recursive: true, force: true });
}
