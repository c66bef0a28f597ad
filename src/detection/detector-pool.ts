import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { LaneReply, LaneRequest, LaneSettings } from './detector-thread.ts';
import type { DetectOptions, DetectTimings, Detection, Detector, ModelInfo, PreparedFrame } from './types.ts';

export interface DetectorPoolOptions {
  modelPath: string;
  /** ONNX Runtime sessions, each on a worker thread of its own; calls beyond that wait for a free lane. */
  lanes: number;
  /** ONNX Runtime intra-op threads of each lane. */
  threadsPerLane: number;
  framesPerRun?: number;
  onFixedBatch?: (reason: string) => void;
  onFloatInput?: (reason: string) => void;
  /** Starts a lane's thread; tests wrap the default to reach the threads (and end one). */
  spawnThread?: (settings: LaneSettings) => Worker;
}

/** Most lanes the automatic plan makes: beyond that a lane's extra threads are cheaper than another session's memory. */
const MAX_AUTO_LANES = 4;

/**
 * How many lanes, and ORT threads in each, for `cores` cores. DETECT_LANES and ORT_THREADS win when set (> 0);
 * ORT_THREADS alone keeps one lane of that many threads, as before there were lanes. With neither, one lane
 * per core up to four, the cores shared out among them: on this project's 2-core hosts two one-thread sessions
 * ran 1.2-1.9x the frames/s of one two-thread session, whose threads wait on each other at every operator
 * (README "Performance").
 */
export function planLanes(cores: number, lanesSetting = 0, threadsSetting = 0): { lanes: number; threadsPerLane: number } {
  const available = Math.max(1, Math.floor(cores));
  const lanes = lanesSetting > 0 ? lanesSetting : threadsSetting > 0 ? 1 : Math.min(available, MAX_AUTO_LANES);
  const threadsPerLane = threadsSetting > 0 ? threadsSetting : Math.max(1, Math.floor(available / lanes));
  return { lanes, threadsPerLane };
}

/**
 * Cores this process may use: the CPU affinity (os.availableParallelism), lowered to a cgroup v2 CPU quota
 * when one is set (a container's `cpus:` or a pod's CPU limit), which Node and ONNX Runtime do not read.
 */
export async function availableCores(cpuMaxFile = '/sys/fs/cgroup/cpu.max'): Promise<number> {
  const affinity = os.availableParallelism();
  try {
    const [quota, period] = (await readFile(cpuMaxFile, 'utf8')).trim().split(/\s+/);
    const cores = Number(quota) / Number(period);
    return quota === 'max' || !Number.isFinite(cores) || cores <= 0 ? affinity : Math.max(1, Math.min(affinity, Math.ceil(cores)));
  } catch {
    return affinity; // no cgroup v2 CPU controller here
  }
}

interface Call {
  resolve: (reply: Extract<LaneReply, { type: 'result' }>) => void;
  reject: (error: Error) => void;
}

/** One worker thread holding one ONNX Runtime session; at most one call in flight. */
class Lane {
  private call: Call | undefined;
  /**
   * The lane's input memory: the frames are copied into it and it is moved (transferred) to the thread, which
   * moves it back with its answer. Measured for a 16-frame job of 640×640 frames: 4 ms a job; posting the
   * frames as they are cost 167 ms (the structured clone copies a job's whole buffer once per frame that views
   * it), and a fresh buffer each job 38 ms (page faults).
   */
  private input: ArrayBuffer | undefined;
  /** Set once the thread is gone (crashed or closed): the pool replaces the lane. */
  gone: Error | undefined;

  private constructor(private readonly thread: Worker) {
    thread.on('message', (reply: LaneReply) => {
      if (reply.type !== 'result' && reply.type !== 'error') return;
      this.input = reply.input;
      const call = this.call;
      this.call = undefined;
      if (reply.type === 'result') call?.resolve(reply);
      else call?.reject(new Error(reply.error));
    });
    const lost = (error: Error) => {
      this.gone ??= error;
      this.call?.reject(this.gone);
      this.call = undefined;
    };
    thread.on('error', (error) => lost(error));
    thread.on('exit', (code) => lost(new Error(`the detector thread exited (code ${code})`)));
  }

  /** Starts a thread and waits until its session is loaded; rejects with the load's error. */
  static start(settings: LaneSettings, spawn: (settings: LaneSettings) => Worker): Promise<{ lane: Lane; ready: Extract<LaneReply, { type: 'ready' }> }> {
    const thread = spawn(settings);
    return new Promise((resolve, reject) => {
      const failed = (error: Error) => {
        stopListening();
        void thread.terminate();
        reject(error);
      };
      const exited = (code: number) => failed(new Error(`the detector thread exited before its model loaded (code ${code})`));
      const answered = (reply: LaneReply) => {
        if (reply.type !== 'ready') {
          failed(new Error(reply.type === 'failed' ? reply.error : `unexpected first message from a detector thread: ${reply.type}`));
          return;
        }
        stopListening();
        resolve({ lane: new Lane(thread), ready: reply });
      };
      const stopListening = () => {
        thread.off('error', failed);
        thread.off('exit', exited);
        thread.off('message', answered);
      };
      thread.on('error', failed);
      thread.on('exit', exited);
      thread.on('message', answered);
    });
  }

  detect(frames: PreparedFrame[], options: DetectOptions): Promise<Extract<LaneReply, { type: 'result' }>> {
    if (this.gone) return Promise.reject(this.gone);
    if (this.call) return Promise.reject(new Error('a detector lane was given a second call'));
    const bytes = frames.reduce((total, frame) => total + frame.pixels.length, 0);
    const input = this.input && this.input.byteLength >= bytes ? this.input : new ArrayBuffer(bytes);
    this.input = undefined; // the thread's until it answers
    let offset = 0;
    const request: LaneRequest = {
      type: 'detect',
      frames: frames.map((frame) => {
        const pixels = new Uint8Array(input, offset, frame.pixels.length);
        pixels.set(frame.pixels);
        offset += frame.pixels.length;
        return { ...frame, pixels };
      }),
      options,
    };
    return new Promise((resolve, reject) => {
      this.call = { resolve, reject };
      this.thread.postMessage(request, [input]);
    });
  }

  /**
   * Asks the thread to close its session and end; terminates it only if it has not ended after `timeoutMs`.
   * Lanes are closed idle: terminating one in the middle of a run makes onnxruntime-node throw from native
   * code, which aborts the process.
   */
  async close(timeoutMs: number): Promise<void> {
    if (this.gone) return;
    const exited = new Promise<void>((resolve) => this.thread.once('exit', () => resolve()));
    this.thread.postMessage({ type: 'close' } satisfies LaneRequest);
    const timer = setTimeout(() => void this.thread.terminate(), timeoutMs);
    await exited;
    clearTimeout(timer);
  }
}

/**
 * YOLOv8 on ONNX Runtime's CPU provider in `lanes` sessions, each on a worker thread of its own. Two things
 * follow: the process's event loop never waits on an inference (heartbeats, extraction in the same process
 * and the next job's decoding go on beside it), and several batches infer at once, each session on fewer
 * threads, which on a few cores gets more frames/s out of them than one session spread over all of them.
 * A lane whose thread dies fails its call (the job is retried) and is replaced.
 */
export class DetectorPool implements Detector {
  readonly engine = 'onnx';
  readonly backend = 'cpu';
  readonly device = 'cpu';
  private readonly idle: Lane[] = [];
  private readonly waiting: Array<{ resolve: (lane: Lane) => void; reject: (error: Error) => void }> = [];
  private live: number;
  private closed = false;

  private constructor(
    private readonly settings: LaneSettings,
    private readonly spawn: (settings: LaneSettings) => Worker,
    lanes: Lane[],
    readonly modelInfo: ModelInfo,
  ) {
    this.idle.push(...lanes);
    this.live = lanes.length;
  }

  /** How a lane's thread starts unless spawnThread says otherwise. */
  static readonly defaultSpawn = spawnThread;

  /** Lanes this pool runs: detectBatch calls that infer at once. */
  get lanes(): number {
    return this.live;
  }

  static async create(options: DetectorPoolOptions): Promise<DetectorPool> {
    if (!Number.isSafeInteger(options.lanes) || options.lanes < 1) throw new RangeError(`lanes must be a whole number of at least 1, got ${options.lanes}`);
    const settings: LaneSettings = { modelPath: options.modelPath, threads: options.threadsPerLane, framesPerRun: options.framesPerRun };
    const spawn = options.spawnThread ?? spawnThread;
    const started = await Promise.allSettled(Array.from({ length: options.lanes }, () => Lane.start(settings, spawn)));
    const lanes = started.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
    const failure = started.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failure) {
      await Promise.all(lanes.map(({ lane }) => lane.close(5000)));
      throw failure.reason instanceof Error ? failure.reason : new Error(String(failure.reason));
    }
    const ready = lanes[0]!.ready;
    if (ready.fixedBatch !== undefined) options.onFixedBatch?.(ready.fixedBatch);
    if (ready.floatInput !== undefined) options.onFloatInput?.(ready.floatInput);
    return new DetectorPool(settings, spawn, lanes.map(({ lane }) => lane), ready.modelInfo);
  }

  /**
   * Runs the batch on a free lane, waiting for one when all are busy; lanes that are idle at that moment join
   * in, each taking a contiguous share of the frames. So a lone job (the first and last of a video, a worker
   * with one video) keeps every core busy, and with a job for every lane each runs on its own.
   */
  async detectBatch(frames: PreparedFrame[], options: DetectOptions, timings?: DetectTimings): Promise<Detection[][]> {
    if (frames.length === 0) return [];
    const lanes = [await this.acquire(), ...this.takeIdle(frames.length - 1)];
    // Shares differ by at most one frame, none empty (there are never more lanes than frames).
    const start = (i: number) => Math.floor((i * frames.length) / lanes.length);
    // Each lane goes back as soon as its share is done, not when the slowest share is.
    const replies = await Promise.allSettled(
      lanes.map(async (lane, i) => {
        try {
          return await lane.detect(frames.slice(start(i), start(i + 1)), options);
        } finally {
          this.release(lane);
        }
      }),
    );
    const failed = replies.find((reply): reply is PromiseRejectedResult => reply.status === 'rejected');
    if (failed) throw failed.reason;
    const results = replies.map((reply) => (reply as PromiseFulfilledResult<Extract<LaneReply, { type: 'result' }>>).value);
    if (timings) {
      for (const { timings: lane } of results) {
        timings.inferenceMs += lane.inferenceMs;
        timings.postprocessMs += lane.postprocessMs;
        if (timings.runs !== undefined) timings.runs += lane.runs;
      }
    }
    return results.flatMap((reply) => reply.detections);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const waiter of this.waiting.splice(0)) waiter.reject(new Error('the detector is closed'));
    await Promise.all(this.idle.splice(0).map((lane) => lane.close(10_000)));
  }

  private acquire(): Promise<Lane> {
    if (this.closed) return Promise.reject(new Error('the detector is closed'));
    if (this.live === 0) return Promise.reject(new Error('every detector thread failed to restart'));
    // A lane whose thread died while idle is replaced rather than handed a call it can only fail.
    for (let lane = this.idle.pop(); lane; lane = this.idle.pop()) {
      if (!lane.gone) return Promise.resolve(lane);
      this.replace();
    }
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  /** Up to `most` lanes that are idle now, without waiting. */
  private takeIdle(most: number): Lane[] {
    const taken: Lane[] = [];
    while (taken.length < most) {
      const lane = this.idle.pop();
      if (!lane) break;
      if (lane.gone) this.replace();
      else taken.push(lane);
    }
    return taken;
  }

  private release(lane: Lane): void {
    if (this.closed) {
      void lane.close(10_000);
      return;
    }
    if (lane.gone) {
      this.replace();
      return;
    }
    const waiter = this.waiting.shift();
    if (waiter) waiter.resolve(lane);
    else this.idle.push(lane);
  }

  /** Starts a thread in place of one that died; the new lane goes to a waiting call or the idle ones. */
  private replace(): void {
    Lane.start(this.settings, this.spawn).then(
      ({ lane }) => this.release(lane),
      (error: unknown) => {
        this.live -= 1;
        if (this.live > 0) return;
        const reason = new Error(`every detector thread failed to restart: ${error instanceof Error ? error.message : String(error)}`);
        for (const waiter of this.waiting.splice(0)) waiter.reject(reason);
      },
    );
  }
}

/**
 * The lane's thread runs detector-thread beside this module: the compiled .js in the images, the .ts itself
 * under tsx (development and tests), where the thread registers tsx's loader first (Node 20 does not pass
 * the main thread's loader hooks on to worker threads).
 */
function spawnThread(settings: LaneSettings): Worker {
  const entry = new URL(`./detector-thread${path.extname(fileURLToPath(import.meta.url))}`, import.meta.url);
  if (!entry.pathname.endsWith('.ts')) return new Worker(entry, { workerData: settings });
  const bootstrap = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}); })`;
  return new Worker(bootstrap, { eval: true, workerData: settings });
}
