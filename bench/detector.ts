/**
 * Detector benchmark: every engine × backend × batch size available here, side by side in one run,
 * on the same real video frames (JPEG, as the worker sees them). Prints one JSON line per config:
 * engine, backend, batch, msPerFrame (detectBatch wall time over the measured frames: inference and
 * postprocess, not JPEG decoding), framesPerSecond, peakRssMb, ratioToOnnxBatch1 (this config's
 * msPerFrame over ONNX Runtime CPU at batch 1: above 1 is slower), plus device, frames and timings.
 *
 * Each config runs in its own child process so peakRssMb (the process's peak resident set) is that
 * config's alone, and tfjs's process-wide backend does not leak between configs.
 *
 * batch is frames per engine run: ONNX_FRAMES_PER_RUN for ONNX Runtime, maxBatch (frames per graph
 * execute) for tfjs; each result also says framesPerRun.
 *
 * Configs: onnx/cpu and tfjs/wasm at batch 1, 4, 16; tfjs/cpu (pure JavaScript, very slow) at batch 1
 * on --cpu-frames frames only (0 leaves it out); tfjs/node and tfjs/node-gpu at 1, 4, 16 when @tensorflow/tfjs-node(-gpu)
 * is installed (never both in one process: each config has its own).
 *
 * Usage: tsx bench/detector.ts [--frames N] [--cpu-frames N] [--batches 1,4,16] [--threads T] [--video path] [--model path]
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { createDetector } from '../src/detection/create-detector.ts';
import { prepareFrame } from '../src/detection/letterbox.ts';
import { packageInstalled } from '../src/detection/tfjs/tfjs-backend.ts';
import type { TfjsBackendName } from '../src/detection/tfjs/tfjs-backend.ts';
import type { DetectTimings, PreparedFrame } from '../src/detection/types.ts';

const { values: args } = parseArgs({
  options: {
    frames: { type: 'string', default: '16' },
    'cpu-frames': { type: 'string', default: '1' },
    batches: { type: 'string', default: '1,4,16' },
    threads: { type: 'string', default: '0' },
    video: { type: 'string', default: '/usr/share/doc/opencv-doc/examples/data/vtest.avi' },
    model: { type: 'string', default: 'models/yolov8n.onnx' },
    // internal: run one config in this process; value "engine:backend:batch:frames:jpegDir"
    child: { type: 'string' },
  },
});
const threads = Number(args.threads);
const round = (v: number) => Math.round(v * 100) / 100;

interface Config {
  engine: 'onnx' | 'tfjs';
  backend: 'cpu' | TfjsBackendName;
  batch: number;
  frames: number;
}

interface Result extends Config {
  device: string;
  /** Frames per session.run / graph execute, averaged over the measured runs. */
  framesPerRun: number;
  msPerFrame: number;
  framesPerSecond: number;
  peakRssMb: number;
  inferenceMsPerFrame: number;
  postprocessMsPerFrame: number;
  detectionsPerFrame: number;
}

if (args.child) {
  const [engine, backend, batch, frames, jpegDir] = args.child.split(':') as [Config['engine'], Config['backend'], string, string, string];
  console.log(JSON.stringify(await runConfig({ engine, backend, batch: Number(batch), frames: Number(frames) }, jpegDir)));
} else {
  await main();
}

async function main(): Promise<void> {
  const frameCount = Number(args.frames);
  const batches = args.batches.split(',').map(Number);
  const configs: Config[] = [];
  for (const batch of batches) configs.push({ engine: 'onnx', backend: 'cpu', batch, frames: frameCount });
  for (const batch of batches) configs.push({ engine: 'tfjs', backend: 'wasm', batch, frames: frameCount });
  if (Number(args['cpu-frames']) > 0) configs.push({ engine: 'tfjs', backend: 'cpu', batch: 1, frames: Number(args['cpu-frames']) });
  for (const [backend, pkg] of [['node', '@tensorflow/tfjs-node'], ['node-gpu', '@tensorflow/tfjs-node-gpu']] as const) {
    if (packageInstalled(pkg)) for (const batch of batches) configs.push({ engine: 'tfjs', backend, batch, frames: frameCount });
    else console.error(`bench: skipping tfjs/${backend}: ${pkg} is not installed (${backend === 'node' ? 'bash scripts/install-tfjs-node' : 'its install downloads libtensorflow from outside the npm registry'})`);
  }

  const dir = await mkdtemp(path.join(os.tmpdir(), 'bench-detector-'));
  try {
    await promisify(execFile)('ffmpeg', ['-loglevel', 'error', '-i', args.video, '-frames:v', String(frameCount), '-q:v', '3', path.join(dir, '%05d.jpg')]);
    let reference: number | undefined;
    for (const config of configs) {
      const result = await runChild(config, dir);
      if (config.engine === 'onnx' && config.batch === 1) reference = result.msPerFrame;
      const { engine, backend, batch, msPerFrame, framesPerSecond, peakRssMb, ...rest } = result;
      console.log(
        JSON.stringify({
          engine,
          backend,
          batch,
          msPerFrame,
          framesPerSecond,
          peakRssMb,
          ratioToOnnxBatch1: reference ? round(msPerFrame / reference) : null,
          ...rest,
          threads,
          cpus: os.cpus().length,
        }),
      );
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Runs one config in a fresh Node process with the same loader (tsx) and returns its JSON line. */
async function runChild(config: Config, jpegDir: string): Promise<Result> {
  const self = fileURLToPath(import.meta.url);
  const childArgs = [...process.execArgv, self, '--child', `${config.engine}:${config.backend}:${config.batch}:${config.frames}:${jpegDir}`];
  childArgs.push('--threads', String(threads), '--model', args.model);
  const child = spawn(process.execPath, childArgs, { stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const line = stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  if (code !== 0 || !line) throw new Error(`bench config ${config.engine}/${config.backend}/batch ${config.batch} failed (exit ${code})`);
  return JSON.parse(line) as Result;
}

async function runConfig(config: Config, jpegDir: string): Promise<Result> {
  const files = (await readdir(jpegDir)).filter((f) => f.endsWith('.jpg')).sort().slice(0, config.frames);
  const jpegs = await Promise.all(files.map((f) => readFile(path.join(jpegDir, f))));
  const modelDir = await mkdtemp(path.join(os.tmpdir(), 'bench-detector-model-'));
  try {
    const detector = await createDetector({
      engine: config.engine,
      modelPath: args.model,
      threads,
      // Each batch size is one run of the engine (one session.run, one graph execute), so the figures compare
      // per-run batching on both engines; TfjsDetector would otherwise split runs at its default maxBatch (8).
      onnxFramesPerRun: config.batch,
      tfjs: config.engine === 'tfjs' ? { modelDir, backend: config.backend as TfjsBackendName, maxBatch: config.batch } : undefined,
    });
    const options = { confidenceThreshold: 0.25, iouThreshold: 0.7 };
    const frames: PreparedFrame[] = [];
    for (const jpeg of jpegs) frames.push(await prepareFrame(jpeg, detector.modelInfo.imgsz));
    // Warm-up at the config's batch size, at least 4 frames: first runs allocate arenas and JIT-compile the hot loops.
    for (let i = 0; i < Math.ceil(4 / config.batch); i++) await detector.detectBatch(frames.slice(0, config.batch), options);

    const timings: DetectTimings = { inferenceMs: 0, postprocessMs: 0, runs: 0 };
    let detections = 0;
    const started = performance.now();
    for (let start = 0; start < frames.length; start += config.batch) {
      for (const list of await detector.detectBatch(frames.slice(start, start + config.batch), options, timings)) detections += list.length;
    }
    const elapsed = performance.now() - started;
    await detector.close();
    const n = frames.length;
    return {
      ...config,
      frames: n,
      device: detector.device,
      // Measured, not configured: the frames over the engine runs the detectors counted.
      framesPerRun: round(n / (timings.runs || 1)),
      msPerFrame: round(elapsed / n),
      framesPerSecond: round((1000 * n) / elapsed),
      // maxRSS is in KiB on Linux.
      peakRssMb: round(process.resourceUsage().maxRSS / 1024),
      inferenceMsPerFrame: round(timings.inferenceMs / n),
      postprocessMsPerFrame: round(timings.postprocessMs / n),
      detectionsPerFrame: round(detections / n),
    };
  } finally {
    await rm(modelDir, { recursive: true, force: true });
  }
}
