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
  /** Frames a lane is given at a time; by default one session.run's worth (see detectBatch). */
  chunkFrames?: number;
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
   * moves it back with its answer. Measured for calls of 16 frames of 640×640: 4 ms a call; posting the frames
   * as they were cost 167 ms (the structured clone copied the job's whole batch buffer once per frame viewing
   * it), and a fresh buffer each call 38 ms (page faults).
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

/** One detectBatch call: its frames go to the lanes in chunks, and it is answered once every chunk is. */
interface PoolCall {
  /** Detections of each chunk, in the chunks' order. */
  results: Detection[][][];
  pending: number;
  failed: boolean;
  timings?: DetectTimings;
  resolve: (detections: Detection[][]) => void;
  reject: (error: Error) => void;
}

interface Chunk {
  call: PoolCall;
  index: number;
  frames: PreparedFrame[];
  options: DetectOptions;
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
  /** Chunks no lane has taken yet, the oldest call's first. */
  private readonly queue: Chunk[] = [];
  private live: number;
  private closed = false;

  private constructor(
    private readonly settings: LaneSettings,
    private readonly spawn: (settings: LaneSettings) => Worker,
    lanes: Lane[],
    readonly modelInfo: ModelInfo,
    /** Frames a lane is given at a time. */
    private readonly chunkFrames: number,
    /**
     * The kernel thread ids of the lanes as started (Linux; empty elsewhere), for `top -H` and per-thread CPU
     * accounting. A lane restarted after its thread died runs on a new thread, not listed.
     */
    readonly startedLaneThreadIds: readonly number[],
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
    if (options.chunkFrames !== undefined && !(Number.isSafeInteger(options.chunkFrames) && options.chunkFrames >= 1)) {
      throw new RangeError(`chunkFrames must be a whole number of at least 1, got ${options.chunkFrames}`);
    }
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
    // A chunk of one session.run's frames (one frame unless ONNX_FRAMES_PER_RUN or a fixed batch says more).
    const chunkFrames = options.chunkFrames ?? Math.max(1, ready.runFrames ?? 1);
    const threadIds = lanes.flatMap(({ ready }) => (ready.osThreadId === undefined ? [] : [ready.osThreadId]));
    return new DetectorPool(settings, spawn, lanes.map(({ lane }) => lane), ready.modelInfo, chunkFrames, threadIds);
  }

  /**
   * Runs the batch in chunks (chunkFrames each), every chunk on the next lane to come free, the oldest call's
   * chunks first. So every lane works as long as any call has frames left: a lone job (the first and last of
   * a video, a worker with one video) is shared by all lanes, and a lane done with its part of one job takes
   * up another held job's frames, where with a job a lane it idled until its next job was fetched and decoded,
   * or, at a video's end, while the other lane finished the last job. Answers in the frames' order.
   */
  detectBatch(frames: PreparedFrame[], options: DetectOptions, timings?: DetectTimings): Promise<Detection[][]> {
    if (frames.length === 0) return Promise.resolve([]);
    if (this.closed) return Promise.reject(new Error('the detector is closed'));
    if (this.live === 0) return Promise.reject(new Error('every detector thread failed to restart'));
    return new Promise((resolve, reject) => {
      const count = Math.ceil(frames.length / this.chunkFrames);
      const call: PoolCall = { results: new Array<Detection[][]>(count), pending: count, failed: false, timings, resolve, reject };
      for (let index = 0; index < count; index += 1) {
        this.queue.push({ call, index, frames: frames.slice(index * this.chunkFrames, (index + 1) * this.chunkFrames), options });
      }
      this.dispatch();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const reason = new Error('the detector is closed');
    for (const chunk of this.queue.splice(0)) this.fail(chunk.call, reason);
    await Promise.all(this.idle.splice(0).map((lane) => lane.close(10_000)));
  }

  /** Gives queued chunks to idle lanes, oldest first. A lane whose thread died while idle is replaced instead. */
  private dispatch(): void {
    while (this.queue.length > 0) {
      const lane = this.idle.pop();
      if (!lane) return;
      if (lane.gone) this.replace();
      else this.run(lane, this.queue.shift()!);
    }
  }

  private run(lane: Lane, chunk: Chunk): void {
    const { call } = chunk;
    lane
      .detect(chunk.frames, chunk.options)
      .then(
        (reply) => {
          if (call.failed) return;
          call.results[chunk.index] = reply.detections;
          if (call.timings) {
            call.timings.inferenceMs += reply.timings.inferenceMs;
            call.timings.postprocessMs += reply.timings.postprocessMs;
            if (call.timings.runs !== undefined) call.timings.runs += reply.timings.runs;
          }
          call.pending -= 1;
          if (call.pending === 0) call.resolve(call.results.flat());
        },
        (error: unknown) => this.fail(call, error instanceof Error ? error : new Error(String(error))),
      )
      .finally(() => this.release(lane));
  }

  /** Fails the call at its first failed chunk; its chunks not yet on a lane are dropped (its job is retried whole). */
  private fail(call: PoolCall, error: Error): void {
    if (call.failed) return;
    call.failed = true;
    for (let i = this.queue.length - 1; i >= 0; i -= 1) if (this.queue[i]!.call === call) this.queue.splice(i, 1);
    call.reject(error);
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
    this.idle.push(lane);
    this.dispatch();
  }

  /** Starts a thread in place of one that died; the new lane takes queued chunks or joins the idle ones. */
  private replace(): void {
    Lane.start(this.settings, this.spawn).then(
      ({ lane }) => this.release(lane),
      (error: unknown) => {
        this.live -= 1;
        if (this.live > 0) return;
        const reason = new Error(`every detector thread failed to restart: ${error instanceof Error ? error.message : String(error)}`);
        for (const chunk of this.queue.splice(0)) this.fail(chunk.call, reason);
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
