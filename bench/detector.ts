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
 * Configs: onnx/cpu (fp32) and tfjs/wasm at batch 1, 4, 16; onnx/cpu int8 (MODEL_PRECISION=int8: the model
 * quantized by src/detection/onnx-quantize.ts, cached beside it, calibrated on 32 frames of the video) at
 * --int8-batches (default 1); tfjs/cpu (pure JavaScript, very slow) at batch 1
 * on --cpu-frames frames only (0 leaves it out); tfjs/node and tfjs/node-gpu at 1, 4, 16 when @tensorflow/tfjs-node(-gpu)
 * is installed (never both in one process: each config has its own).
 *
 * Each onnx line also lists the op types of the graph ONNX Runtime runs after its optimizations (ortOps:
 * QLinearConv and the like show the int8 kernels in use).
 *
 * A last line compares int8 with fp32 (batch 1, this run): frames/s of each and the speed-up, and the
 * agreement of int8 detections with fp32 ones (recall and precision at IoU >= 0.5, confidence >= 0.5) on 40
 * frames spread over the video and on six photos (python3-skimage's) that calibration never saw.
 *
 * Usage: tsx bench/detector.ts [--frames N] [--cpu-frames N] [--batches 1,4,16] [--int8-batches 1] [--threads T] [--video path] [--model path]
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { createDetector } from '../src/detection/create-detector.ts';
import type { QuantizeStats } from '../src/detection/int8-model.ts';
import { prepareFrame } from '../src/detection/letterbox.ts';
import { OnnxDetector } from '../src/detection/onnx-detector.ts';
import { getModelType } from '../src/detection/tfjs/onnx-reader.ts';
import { packageInstalled } from '../src/detection/tfjs/tfjs-backend.ts';
import { resolveMediaBinaries } from '../src/media/binaries.ts';
import { MediaRepository } from '../src/media/media.repository.ts';
import { calibrationFrames, int8ModelFor } from '../src/services/calibration.service.ts';
import { detectionAgreement } from '../test/helpers/detection-agreement.ts';
import { SKIMAGE_PHOTOS } from '../test/helpers/media-fixtures.ts';
import type { TfjsBackendName } from '../src/detection/tfjs/tfjs-backend.ts';
import type { DetectTimings, PreparedFrame } from '../src/detection/types.ts';

const { values: args } = parseArgs({
  options: {
    frames: { type: 'string', default: '16' },
    'cpu-frames': { type: 'string', default: '1' },
    batches: { type: 'string', default: '1,4,16' },
    'int8-batches': { type: 'string', default: '1' },
    threads: { type: 'string', default: '0' },
    video: { type: 'string', default: '/usr/share/doc/opencv-doc/examples/data/vtest.avi' },
    model: { type: 'string', default: 'models/yolov8n.onnx' },
    // internal: run one config in this process; value "engine:backend:precision:batch:frames:jpegDir"
    child: { type: 'string' },
    // internal: the model file of the config (the int8 one for int8)
    'config-model': { type: 'string' },
  },
});
const threads = Number(args.threads);
const round = (v: number) => Math.round(v * 100) / 100;

interface Config {
  engine: 'onnx' | 'tfjs';
  backend: 'cpu' | TfjsBackendName;
  precision: 'fp32' | 'int8';
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
  /** onnx: op types of the graph ONNX Runtime runs (after its fusions), with counts. */
  ortOps?: Record<string, number>;
}

if (args.child) {
  const [engine, backend, precision, batch, frames, jpegDir] = args.child.split(':') as [Config['engine'], Config['backend'], Config['precision'], string, string, string];
  console.log(JSON.stringify(await runConfig({ engine, backend, precision, batch: Number(batch), frames: Number(frames) }, jpegDir, args['config-model'] ?? args.model)));
} else {
  await main();
}

async function main(): Promise<void> {
  const frameCount = Number(args.frames);
  const batches = args.batches.split(',').map(Number);
  const configs: Config[] = [];
  for (const batch of batches) configs.push({ engine: 'onnx', backend: 'cpu', precision: 'fp32', batch, frames: frameCount });
  for (const batch of args['int8-batches'].split(',').filter(Boolean).map(Number)) configs.push({ engine: 'onnx', backend: 'cpu', precision: 'int8', batch, frames: frameCount });
  for (const batch of batches) configs.push({ engine: 'tfjs', backend: 'wasm', precision: 'fp32', batch, frames: frameCount });
  if (Number(args['cpu-frames']) > 0) configs.push({ engine: 'tfjs', backend: 'cpu', precision: 'fp32', batch: 1, frames: Number(args['cpu-frames']) });
  for (const [backend, pkg] of [['node', '@tensorflow/tfjs-node'], ['node-gpu', '@tensorflow/tfjs-node-gpu']] as const) {
    if (packageInstalled(pkg)) for (const batch of batches) configs.push({ engine: 'tfjs', backend, precision: 'fp32', batch, frames: frameCount });
    else console.error(`bench: skipping tfjs/${backend}: ${pkg} is not installed (${backend === 'node' ? 'bash scripts/install-tfjs-node' : 'its install downloads libtensorflow from outside the npm registry'})`);
  }

  // The int8 model, from its cache beside the model or quantized now (timed), calibrated as the worker does by default.
  const media = new MediaRepository(await resolveMediaBinaries({}));
  const calibration = { video: args.video, frames: 32, frameSize: { width: 640, height: 640 } };
  const quantizeStarted = performance.now();
  const int8 = await int8ModelFor(args.model, media, calibration);
  const quantization: (QuantizeStats & { ms: number }) | 'cached' = int8.quantized ? { ...int8.quantized, ms: round(performance.now() - quantizeStarted) } : 'cached';

  const dir = await mkdtemp(path.join(os.tmpdir(), 'bench-detector-'));
  try {
    await promisify(execFile)('ffmpeg', ['-loglevel', 'error', '-i', args.video, '-frames:v', String(frameCount), '-q:v', '3', path.join(dir, '%05d.jpg')]);
    let reference: number | undefined;
    const fps = { fp32: NaN, int8: NaN };
    for (const config of configs) {
      const result = await runChild(config, dir, config.precision === 'int8' ? int8.path : args.model);
      if (config.engine === 'onnx' && config.precision === 'fp32' && config.batch === 1) reference = result.msPerFrame;
      if (config.engine === 'onnx' && config.batch === 1) fps[config.precision] = result.framesPerSecond;
      const { engine, backend, precision, batch, msPerFrame, framesPerSecond, peakRssMb, ...rest } = result;
      console.log(
        JSON.stringify({
          engine,
          backend,
          precision,
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
    console.log(
      JSON.stringify({
        comparison: 'int8 vs fp32, onnx/cpu batch 1',
        fp32FramesPerSecond: fps.fp32,
        int8FramesPerSecond: fps.int8,
        speedup: round(fps.int8 / fps.fp32),
        agreement: await int8Agreement(media, int8.path),
        quantization,
        int8Model: path.relative(process.cwd(), int8.path),
        loadAverage: os.loadavg().map(round),
      }),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Recall and precision of int8 detections against fp32 ones (IoU >= 0.5, confidence >= 0.5), on the video and on the photos. */
async function int8Agreement(media: MediaRepository, int8Path: string) {
  const fp32 = await OnnxDetector.create(args.model, { threads });
  const int8 = await OnnxDetector.create(int8Path, { threads });
  try {
    const imgsz = fp32.modelInfo.imgsz;
    const video = await calibrationFrames(media, { video: args.video, frames: 40, frameSize: { width: 640, height: 640 } }, imgsz);
    const photos = await Promise.all(SKIMAGE_PHOTOS.map(async (photo) => prepareFrame(await readFile(photo), imgsz)));
    const options = { confidenceThreshold: 0.25, iouThreshold: 0.7 };
    const result: Record<string, { recall: number; precision: number; fp32Detections: number; int8Detections: number; images: number }> = {};
    for (const [label, frames] of [[path.basename(args.video), video], ['photos', photos]] as const) {
      const a = detectionAgreement(await fp32.detectBatch(frames, options), await int8.detectBatch(frames, options), 0.5, 0.5);
      result[label] = { recall: round(a.recall * 1000) / 1000, precision: round(a.precision * 1000) / 1000, fp32Detections: a.reference, int8Detections: a.candidate, images: a.images };
    }
    return result;
  } finally {
    await Promise.all([fp32.close(), int8.close()]);
  }
}

/** Runs one config in a fresh Node process with the same loader (tsx) and returns its JSON line. */
async function runChild(config: Config, jpegDir: string, modelPath: string): Promise<Result> {
  const self = fileURLToPath(import.meta.url);
  const childArgs = [...process.execArgv, self, '--child', `${config.engine}:${config.backend}:${config.precision}:${config.batch}:${config.frames}:${jpegDir}`];
  childArgs.push('--threads', String(threads), '--model', args.model, '--config-model', modelPath);
  const child = spawn(process.execPath, childArgs, { stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const line = stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  if (code !== 0 || !line) throw new Error(`bench config ${config.engine}/${config.backend}/batch ${config.batch} failed (exit ${code})`);
  return JSON.parse(line) as Result;
}

async function runConfig(config: Config, jpegDir: string, modelPath: string): Promise<Result> {
  const files = (await readdir(jpegDir)).filter((f) => f.endsWith('.jpg')).sort().slice(0, config.frames);
  const jpegs = await Promise.all(files.map((f) => readFile(path.join(jpegDir, f))));
  const modelDir = await mkdtemp(path.join(os.tmpdir(), 'bench-detector-model-'));
  try {
    const optimized = path.join(modelDir, 'ort-optimized.onnx');
    const detector = await createDetector({
      engine: config.engine,
      modelPath,
      threads,
      onnxSessionOptions: { optimizedModelFilePath: optimized },
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
      ...(config.engine === 'onnx' ? { ortOps: await opCounts(optimized) } : {}),
    };
  } finally {
    await rm(modelDir, { recursive: true, force: true });
  }
}

/** Op types of a model file, most frequent first. */
async function opCounts(file: string): Promise<Record<string, number>> {
  const model = getModelType().decode(await readFile(file)) as unknown as { graph: { node: { op_type: string }[] } };
  const counts = new Map<string, number>();
  for (const node of model.graph.node) counts.set(node.op_type, (counts.get(node.op_type) ?? 0) + 1);
  return Object.fromEntries([...counts].sort((a, b) => b[1] - a[1]));
}
