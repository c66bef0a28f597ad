/**
 * npm run bench — a fixed real video through the whole pipeline (real API and worker processes,
 * Redis, PostgreSQL, ffmpeg, YOLOv8), then, in the same run, the bare detector on the same frames.
 * Prints one JSON line.
 *
 * The bare detector runs in this process on the same JPEG frames, read into memory first: decode +
 * letterbox + inference + postprocess, as a detector given those frames does (Ultralytics counts
 * preprocess in its speed too). `ratio` = pipelineFps / detectorFps. `inferenceOnlyFps` leaves decoding
 * out (frames prepared beforehand; the model's in-graph normalisation counts as inference) and
 * `ratioVsInferenceOnly` compares with that, the stricter measure.
 *
 * `preprocessOneCore` is the preprocessing alone: the stored frames (as extraction wrote them, FRAME_SIZE)
 * read from memory and prepared one at a time (decode + letterbox into the model's input bytes) on one
 * thread, as wall and CPU milliseconds per frame, with the worker's decoder (FRAME_DECODER, default auto:
 * libjpeg-turbo where it loads) and, side by side in the same run, with libvips.
 *
 * `cpuSeconds` is where the pipeline's CPU went, in core-seconds over the upload-to-completion window (from
 * /proc, sampled every 200 ms): the detection lanes' threads, the worker's main and other threads, the
 * extractor, its ffmpeg, the API and its upload checks, PostgreSQL, Redis, this process, the rest, and the
 * idle time; beside `lanesBare`, what the bare lanes need for the same frames.
 *
 * The pipeline runs an extractor (WORKER_ROLES=extract) beside a detection worker, as compose deploys it;
 * BENCH_ROLES=combined runs one worker taking both kinds.
 *
 * Environment: BENCH_VIDEO (default opencv-doc's vtest.avi), BENCH_FPS (default 5; "all" = every frame),
 * BATCH_SIZE (default 16), ORT_THREADS (default 0 = ONNX Runtime decides), FRAME_DECODER (the workers' and
 * this process's; default auto), BENCH_LOGS (a directory: each
 * process's log lines and the upload's start time are written there, for a timeline of the run).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createClient } from 'redis';
import { accountCpu, processesOfInterest, sampleCpu, type CpuSample } from './cpu-account.ts';
import { createDetector } from '../src/detection/create-detector.ts';
import { availableCores, planLanes } from '../src/detection/detector-pool.ts';
import { jpegFrameSize, prepareFrame, tuneImageDecoding, useFrameDecoder } from '../src/detection/letterbox.ts';
import type { PreparedFrame } from '../src/detection/types.ts';
import type { StageTimings } from '../src/services/detection.service.ts';
import { LocalStorage } from '../src/storage/local-storage.ts';
import { apiFetch } from '../test/helpers/api-client.ts';
import { createTestDatabase } from '../test/helpers/database.ts';
import { deleteKeys, uniquePrefix } from '../test/helpers/redis.ts';
import { freePort, ServiceProcess, waitFor } from '../test/helpers/service.ts';

const video = process.env.BENCH_VIDEO ?? '/usr/share/doc/opencv-doc/examples/data/vtest.avi';
const fps = process.env.BENCH_FPS ?? '5';
const batchSize = Number(process.env.BATCH_SIZE ?? 16);
const ortThreads = Number(process.env.ORT_THREADS ?? 0);
const modelPath = path.resolve(process.env.MODEL_PATH ?? 'models/yolov8n.onnx');
const frameDecoder = (process.env.FRAME_DECODER ?? 'auto') as 'auto' | 'libjpeg-turbo' | 'libvips';


/** Peak resident memory of a live process, from the kernel's high-water mark. */
async function peakRssMb(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
  return Math.round(kb / 1024);
}

function logField<T>(logs: string[], message: string, field: string): T {
  const line = logs.find((l) => l.includes(`"message":"${message}"`));
  if (!line) throw new Error(`no "${message}" log line`);
  return (JSON.parse(line) as Record<string, T>)[field]!;
}

const round = (value: number, digits = 1) => Number(value.toFixed(digits));

async function main(): Promise<void> {
  // The bare detector below decodes as the worker does.
  const decoder = useFrameDecoder(frameDecoder);
  const db = await createTestDatabase();
  const prefix = uniquePrefix();
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-bench-'));
  const redis = createClient({ url: 'redis://127.0.0.1:6379' });
  await redis.connect();
  const port = await freePort();
  const env = {
    DATABASE_URL: db.url,
    QUEUE_PREFIX: prefix,
    STORAGE_DIR: path.join(tmp, 'storage'),
    // The bare detector below reads the frames after the pipeline is done with them.
    KEEP_FRAMES: 'true',
    PORT: String(port),
    HOST: '127.0.0.1',
    BATCH_SIZE: String(batchSize),
    ORT_THREADS: String(ortThreads),
    MODEL_PATH: modelPath,
    LOG_LEVEL: 'info',
  };
  const processes: ServiceProcess[] = [];
  try {
    const api = ServiceProcess.start('api', env);
    // As compose deploys it: an extractor (WORKER_ROLES=extract) beside a detection worker, so ffmpeg and
    // the frames' writes never wait on the detector's event loop (ONNX Runtime's run holds it per batch).
    // BENCH_ROLES=combined runs one worker that takes both kinds instead.
    const combined = process.env.BENCH_ROLES === 'combined';
    const worker = ServiceProcess.start('worker', { ...env, WORKER_ROLES: combined ? 'extract,detect' : 'detect' });
    const extractor = combined ? worker : ServiceProcess.start('worker', { ...env, WORKER_ROLES: 'extract' });
    processes.push(api, worker, ...(combined ? [] : [extractor]));
    await Promise.all([api.waitForLog('api listening', 120_000), ...[...new Set([worker, extractor])].map((p) => p.waitForLog('worker started', 120_000))]);

    // Where the CPU goes during the pipeline: /proc sampled every 200 ms, every process once a second and
    // the ones already seen in between (benchSampling: the sampler's own CPU), the window ending at the last
    // sample before the recorded completion.
    const cpuRoles = {
      api: api.child.pid!,
      worker: worker.child.pid!,
      extractor: extractor.child.pid!,
      laneThreadIds: logField<number[] | undefined>(worker.logs, 'detector ready', 'laneThreadIds') ?? [],
      bench: process.pid,
    };
    const cpuThreads = { pid: cpuRoles.worker, tids: [cpuRoles.worker, ...cpuRoles.laneThreadIds] };
    const cpuSamples: CpuSample[] = [];

    // Pipeline: from the upload's first byte to the 'completed' status.
    const body = new FormData();
    body.append('fps', fps);
    body.append('video', new Blob([await fs.readFile(video)]), path.basename(video));
    let samplingCpu = 0;
    let followed: number[] = [];
    const sample = () => {
      const before = process.cpuUsage();
      const full = cpuSamples.length % 5 === 0;
      const taken = sampleCpu(cpuThreads, full ? undefined : followed);
      if (full) followed = processesOfInterest(taken, cpuRoles);
      cpuSamples.push(taken);
      const used = process.cpuUsage(before);
      samplingCpu += (used.user + used.system) / 1e6;
    };
    sample();
    const sampling = setInterval(sample, 200);
    const startedAt = Date.now();
    const res = await apiFetch(`http://127.0.0.1:${port}/videos`, { method: 'POST', body });
    if (res.status !== 202) throw new Error(`upload refused: ${res.status} ${await res.text()}`);
    const { id } = (await res.json()) as { id: string };
    const done = await waitFor('completion', async () => {
      const status = (await (await apiFetch(`http://127.0.0.1:${port}/videos/${id}`)).json()) as {
        status: string;
        framesTotal: number;
        error: string;
        source: { width: number; height: number };
        completedAt: string;
      };
      if (status.status === 'failed') throw new Error(status.error);
      return status.status === 'completed' ? status : undefined;
    }, 30 * 60_000, 500);
    // The end is the completion time PostgreSQL recorded (same host clock), so the poll can be slow: polling
    // every 50 ms took ~0.1 of the 2 cores (API + this process) away from the pipeline it measures.
    const pipelineMs = Date.parse(done.completedAt) - startedAt;
    const frames = done.framesTotal;
    clearInterval(sampling);
    const cpu = accountCpu(cpuSamples.filter((taken, i) => i === 0 || taken.at <= Date.parse(done.completedAt)), cpuRoles);

    const workerRssMb = await peakRssMb(worker.child.pid!);
    await Promise.all([worker.stop(), extractor.stop(), api.stop()]);
    if (process.env.BENCH_LOGS) {
      await fs.mkdir(process.env.BENCH_LOGS, { recursive: true });
      const named = { api, worker, ...(combined ? {} : { extractor }) };
      for (const [name, service] of Object.entries(named)) await fs.writeFile(path.join(process.env.BENCH_LOGS, `${name}.log`), service.logs.join('\n') + '\n');
      await fs.writeFile(path.join(process.env.BENCH_LOGS, 'upload-started'), new Date(startedAt).toISOString() + '\n');
    }
    const stages = logField<StageTimings>(worker.logs, 'detection stage timings', 'stageTimings');
    const extractMs = logField<number>(extractor.logs, 'extraction finished', 'ms');

    // The bare detector on the same stored frames, same batch size, in this process, with the engine's
    // default threads (its best alone). Two measures: inference + postprocess on already letterboxed
    // tensors (the strict one), and decode + letterbox + inference + postprocess from the JPEG bytes in
    // memory (what a detector given these frames does). Run twice and averaged, since a shared machine drifts.
    const storage = new LocalStorage(env.STORAGE_DIR);
    const detector = await createDetector({ modelPath });
    const keys = await storage.list(`videos/${id}/frames`);
    const jpegs = await Promise.all(keys.map((key) => storage.read(key)));
    const options = { confidenceThreshold: 0.25, iouThreshold: 0.7 };
    const imgsz = detector.modelInfo.imgsz;
    const source = { width: done.source.width, height: done.source.height };
    const prepare = (jpeg: Buffer) => prepareFrame(jpeg, imgsz, undefined, source);
    await detector.detectBatch([await prepare(jpegs[0]!)], options); // warm-up, as the worker had
    const inferenceOnlyMs: number[] = [];
    const withDecodeMs: number[] = [];
    for (let round = 0; round < 2; round += 1) {
      let elapsed = 0;
      const decodeStarted = performance.now();
      for (let i = 0; i < jpegs.length; i += batchSize) {
        const prepared: PreparedFrame[] = [];
        for (const jpeg of jpegs.slice(i, i + batchSize)) prepared.push(await prepare(jpeg));
        const started = performance.now();
        await detector.detectBatch(prepared, options);
        elapsed += performance.now() - started;
      }
      withDecodeMs.push(performance.now() - decodeStarted);
      inferenceOnlyMs.push(elapsed);
    }
    await detector.close();

    // The same inference as the worker runs it: its lanes (DETECT_LANES / ORT_THREADS, planned from the cores
    // as the worker plans them), each fed batches of the prepared frames, all lanes at once. The better of this
    // and the single session above is the inference-only figure the pipeline is held against.
    const plan = planLanes(await availableCores(), Number(process.env.DETECT_LANES ?? 0), ortThreads);
    const pool = await createDetector({ modelPath, onnxLanes: plan });
    const prepared = await Promise.all(jpegs.map((jpeg) => prepare(jpeg)));
    const batches: PreparedFrame[][] = [];
    for (let i = 0; i < prepared.length; i += batchSize) batches.push(prepared.slice(i, i + batchSize));
    await Promise.all(Array.from({ length: plan.lanes }, () => pool.detectBatch([prepared[0]!], options))); // warm-up of every lane
    const lanesMs: number[] = [];
    for (let round = 0; round < 2; round += 1) {
      const queue = [...batches];
      const started = performance.now();
      await Promise.all(
        Array.from({ length: plan.lanes }, async () => {
          for (let batch = queue.shift(); batch; batch = queue.shift()) await pool.detectBatch(batch, options);
        }),
      );
      lanesMs.push(performance.now() - started);
    }
    await pool.close();

    // Preprocessing alone, one frame at a time on one thread (one libvips thread): read from memory, decode,
    // letterbox into bytes; the worker's decoder, then libvips, in turn.
    tuneImageDecoding(1);
    const slot = { batch: new Uint8Array(3 * imgsz[0] * imgsz[1]), index: 0 };
    const preprocessAlone = async (name: typeof decoder) => {
      useFrameDecoder(name);
      for (const jpeg of jpegs.slice(0, 8)) await prepareFrame(jpeg, imgsz, slot, source);
      const cpuBefore = process.cpuUsage();
      const started = performance.now();
      for (const jpeg of jpegs) await prepareFrame(jpeg, imgsz, slot, source);
      const wallMs = performance.now() - started;
      const cpu = process.cpuUsage(cpuBefore);
      return { decoder: name, msPerFrame: round(wallMs / jpegs.length, 2), cpuMsPerFrame: round((cpu.user + cpu.system) / 1000 / jpegs.length, 2) };
    };
    const preprocessWorkers = await preprocessAlone(decoder);
    const preprocessLibvips = decoder === 'libvips' ? preprocessWorkers : await preprocessAlone('libvips');
    const stored = jpegFrameSize(jpegs[0]!);
    const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
    const oneSessionFps = jpegs.length / (mean(inferenceOnlyMs) / 1000);
    const lanesFps = jpegs.length / (mean(lanesMs) / 1000);
    const inferenceOnlyFps = Math.max(oneSessionFps, lanesFps);
    const detectorFps = jpegs.length / (mean(withDecodeMs) / 1000);

    const pipelineFps = frames / (pipelineMs / 1000);
    console.log(
      JSON.stringify({
        video: path.basename(video),
        fps,
        frames,
        batchSize,
        cpus: os.cpus().length,
        engine: detector.engine,
        roles: combined ? 'one worker: extract,detect' : 'extractor + detection worker',
        pipelineFps: round(pipelineFps, 2),
        detectorFps: round(detectorFps, 2),
        ratio: round(pipelineFps / detectorFps, 3),
        inferenceOnlyFps: round(inferenceOnlyFps, 2),
        ratioVsInferenceOnly: round(pipelineFps / inferenceOnlyFps, 3),
        inferenceOnly: {
          oneSessionFps: round(oneSessionFps, 2),
          lanes: plan.lanes,
          threadsPerLane: plan.threadsPerLane,
          lanesFps: round(lanesFps, 2),
          lanesRoundsMs: lanesMs.map((ms) => round(ms)),
        },
        preview: process.env.PREVIEW_CODEC ?? 'h264',
        previewCpuPolicy: process.env.PREVIEW_CPU_POLICY ?? 'idle',
        detectorRoundsMs: withDecodeMs.map((ms) => round(ms)),
        pipelineMs: round(pipelineMs),
        stagesMs: {
          extract: round(extractMs),
          queueWait: round(stages.queueWaitMs),
          readDecodeLetterbox: round(stages.readDecodeMs),
          inference: round(stages.inferenceMs),
          postprocess: round(stages.postprocessMs),
          insert: round(stages.insertMs),
        },
        perFrameMs: {
          readDecodeLetterbox: round(stages.readDecodeMs / stages.frames, 2),
          inference: round(stages.inferenceMs / stages.frames, 2),
          postprocess: round(stages.postprocessMs / stages.frames, 2),
          insert: round(stages.insertMs / stages.frames, 2),
          bareDetector: round(1000 / detectorFps, 2),
          bareInferenceOnly: round(1000 / inferenceOnlyFps, 2),
        },
        frameDecoder: decoder,
        preprocessOneCore: {
          frameSize: stored ? `${stored.width}x${stored.height}` : 'unknown',
          ...preprocessWorkers,
          libvips: { msPerFrame: preprocessLibvips.msPerFrame, cpuMsPerFrame: preprocessLibvips.cpuMsPerFrame },
        },
        // Core-seconds from the upload to the last sample before completion (at most 0.2 s short of it);
        // lanesBare: what the bare lanes (inferenceOnly.lanesFps) need for the pipeline's frames.
        cpuSeconds: { ...cpu, benchSampling: round(samplingCpu, 2), lanesBare: round((frames / lanesFps) * plan.lanes, 2) },
        workerPeakRssMb: workerRssMb,
        loadAverage: os.loadavg().map((v) => round(v, 2)),
      }),
    );
  } finally {
    await Promise.all(processes.map((p) => p.stop()));
    await deleteKeys(redis, prefix);
    await redis.quit();
    await db.drop();
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
