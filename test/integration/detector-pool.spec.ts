import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { createDetector } from '../../src/detection/create-detector.ts';
import { DetectorPool, type DetectorPoolOptions } from '../../src/detection/detector-pool.ts';
import { prepareFrame } from '../../src/detection/letterbox.ts';
import { OnnxDetector } from '../../src/detection/onnx-detector.ts';
import type { DetectOptions, DetectTimings, PreparedFrame } from '../../src/detection/types.ts';
import { frameJpegAt } from '../helpers/media-fixtures.ts';

const MODEL = 'models/yolov8n.onnx';
const VIDEO = '/usr/share/doc/opencv-doc/examples/data/vtest.avi';
const OPTIONS: DetectOptions = { confidenceThreshold: 0.25, iouThreshold: 0.7 };

/**
 * DetectorPool: ONNX Runtime sessions on worker threads (the worker's detector since DETECT_LANES), run on
 * real vtest.avi frames with the real model against the same session on the calling thread.
 */
describe('DetectorPool (ONNX Runtime lanes on worker threads, real model and frames)', function () {
  this.timeout(180_000);
  let pool: DetectorPool;
  let reference: OnnxDetector;
  const frames: PreparedFrame[] = [];

  before(async () => {
    // One thread per session on both sides: the same kernels in the same order, so the same numbers.
    [pool, reference] = await Promise.all([DetectorPool.create({ modelPath: MODEL, lanes: 2, threadsPerLane: 1 }), OnnxDetector.create(MODEL, { threads: 1 })]);
    for (let second = 1; second <= 12; second += 1) frames.push(await prepareFrame(await frameJpegAt(VIDEO, second * 5), reference.modelInfo.imgsz));
  });

  after(async () => {
    await Promise.all([pool?.close(), reference?.close()]);
  });

  it('finds exactly what one session on the calling thread finds, and reports its timings and runs', async () => {
    const timings: DetectTimings = { inferenceMs: 0, postprocessMs: 0, runs: 0 };
    const [pooled, direct] = [await pool.detectBatch(frames.slice(0, 4), OPTIONS, timings), await reference.detectBatch(frames.slice(0, 4), OPTIONS)];
    assert.deepEqual(pooled, direct);
    assert.ok(direct.flat().some((detection) => detection.className === 'person'), 'vtest.avi shows pedestrians');
    assert.equal(timings.runs, 4);
    assert.ok(timings.inferenceMs > 0 && timings.postprocessMs > 0);
    assert.deepEqual(pool.modelInfo, reference.modelInfo);
    // The caller's frames are copied into the lane's own memory, never moved away from the caller.
    assert.ok(frames.slice(0, 4).every((frame) => frame.pixels.length === 640 * 640 * 3));
  });

  it('names the kernel thread of each lane, the threads the inference runs on', async () => {
    const ids = pool.startedLaneThreadIds;
    assert.equal(new Set(ids).size, 2);
    assert.ok(!ids.includes(process.pid), 'not the main thread');
    const cpuTicks = (tid: number) => {
      const fields = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      return Number(fields[11]) + Number(fields[12]); // utime + stime, counted from the state field
    };
    const before = ids.map(cpuTicks);
    await pool.detectBatch(frames.slice(0, 8), OPTIONS); // a frame a chunk: four on each lane
    const used = ids.map((tid, i) => cpuTicks(tid) - before[i]!);
    assert.ok(used.every((ticks) => ticks > 0), `CPU ticks of each lane's thread during the batch: ${used}`);
  });

  it('answers calls made at once, more calls than lanes, each with its own frames', async () => {
    const batches = [frames.slice(0, 4), frames.slice(4, 8), frames.slice(8, 12)];
    const pooled = await Promise.all(batches.map((batch) => pool.detectBatch(batch, OPTIONS)));
    for (const [i, batch] of batches.entries()) assert.deepEqual(pooled[i], await reference.detectBatch(batch, OPTIONS), `batch ${i}`);
  });

  it("keeps the event loop turning while a batch infers (a session on the calling thread holds it for each run)", async () => {
    // A 10 ms timer during 8 frames of inference: on the calling thread it can fire only between the 8
    // runs; with the run on a lane's thread it fires all along.
    const count = async (detector: { detectBatch: OnnxDetector['detectBatch'] }) => {
      let ticks = 0;
      const timer = setInterval(() => (ticks += 1), 10);
      try {
        await detector.detectBatch(frames.slice(0, 8), OPTIONS);
      } finally {
        clearInterval(timer);
      }
      return ticks;
    };
    const blocked = await count(reference);
    const free = await count(pool);
    assert.ok(blocked <= 9, `on the calling thread the timer fired ${blocked} times in 8 runs`);
    assert.ok(free > blocked + 5, `with the pool the timer fired ${free} times (on the calling thread ${blocked})`);
  });

  it('answers a bad batch with its error, and the lane goes on serving', async () => {
    const wrongSize: PreparedFrame = { ...frames[0]!, pixels: new Uint8Array(100) };
    await assert.rejects(pool.detectBatch([wrongSize], OPTIONS), /frame has 100 bytes/);
    await assert.rejects(pool.detectBatch([wrongSize], OPTIONS), /frame has 100 bytes/);
    // A bad frame among good ones fails its call alone; a call beside it is answered in full.
    const [mixed, beside] = await Promise.allSettled([pool.detectBatch([frames[0]!, wrongSize, frames[1]!, frames[2]!], OPTIONS), pool.detectBatch(frames.slice(3, 6), OPTIONS)]);
    assert.match(mixed.status === 'rejected' ? String(mixed.reason) : 'fulfilled', /frame has 100 bytes/);
    assert.deepEqual(beside.status === 'fulfilled' && beside.value, await reference.detectBatch(frames.slice(3, 6), OPTIONS));
    assert.deepEqual(await pool.detectBatch(frames.slice(0, 2), OPTIONS), await reference.detectBatch(frames.slice(0, 2), OPTIONS));
  });

  it('fails to start with the model load error, leaving no thread behind', async () => {
    // A worker thread counts among the process's active resources (as a MessagePort) while it lives.
    const threads = () => process.getActiveResourcesInfo().filter((resource) => resource === 'MessagePort').length;
    const before = threads();
    await assert.rejects(DetectorPool.create({ modelPath: 'package.json', lanes: 2, threadsPerLane: 1 }), /not an ONNX model/);
    for (let waited = 0; threads() > before && waited < 5000; waited += 50) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(threads(), before);
  });

  it('is what createDetector makes when asked for lanes; closing fails the calls in hand and refuses new ones', async () => {
    const made = await createDetector({ modelPath: MODEL, onnxLanes: { lanes: 1, threadsPerLane: 1 } });
    assert.ok(made instanceof DetectorPool);
    assert.equal(made.lanes, 1);
    // Closed with a call in hand (a frame on the lane, two queued): the call fails rather than waits for ever.
    const inHand = made.detectBatch(frames.slice(0, 3), OPTIONS);
    await made.close();
    await assert.rejects(inHand, /the detector is closed/);
    await assert.rejects(made.detectBatch(frames.slice(0, 1), OPTIONS), /closed/);
  });

  it('replaces a lane whose thread dies, idle or during a call (that call fails), and serves on', async function () {
    this.timeout(30_000);
    // The dying threads are stand-ins that report ready, then exit: one by itself while idle, one on its first
    // request (as a lane's thread does on an uncaught error or out of heap). Ending a real lane with
    // terminate() is no way to test this: onnxruntime-node may then throw from native code, which aborts the
    // whole process (seen in a full test run).
    const stub = (exit: string) => `const { parentPort } = require('node:worker_threads');
      parentPort.postMessage({ type: 'ready', modelInfo: {} });
      ${exit}`;
    const standIns: Record<number, string> = {
      1: stub('setTimeout(() => process.exit(4), 100);'),
      2: stub("parentPort.on('message', () => process.exit(3));"),
    };
    const threads: Worker[] = [];
    const exited: Array<Promise<unknown>> = [];
    const spawnThread: DetectorPoolOptions['spawnThread'] = (settings) => {
      const code = standIns[threads.length];
      const thread = code ? new Worker(code, { eval: true }) : DetectorPool.defaultSpawn(settings);
      threads.push(thread);
      exited.push(new Promise((resolve) => thread.once('exit', resolve)));
      return thread;
    };
    const pool2 = await DetectorPool.create({ modelPath: MODEL, lanes: 2, threadsPerLane: 1, spawnThread });
    try {
      await exited[1];
      // Two calls, a frame a chunk: the first chunk finds the dead idle lane, replaces it (by the stand-in that
      // dies on its request) and runs on the live one; the next chunk to go to the stand-in fails its call (the
      // queue retries that job) and the other call is answered in full by the live lane.
      const calls = [frames.slice(0, 2), frames.slice(2, 4)];
      const settled = await Promise.allSettled(calls.map((batch) => pool2.detectBatch(batch, OPTIONS)));
      const failed = settled.filter((result): result is PromiseRejectedResult => result.status === 'rejected');
      assert.equal(failed.length, 1, 'one call met the dying thread');
      assert.match(String(failed[0]!.reason), /detector thread exited \(code 3\)/);
      const answered = settled.findIndex((result) => result.status === 'fulfilled');
      assert.deepEqual((settled[answered] as PromiseFulfilledResult<unknown>).value, await reference.detectBatch(calls[answered]!, OPTIONS));
      // Its replacement, a real lane, and the first one serve on.
      for (let waited = 0; threads.length < 4 && waited < 5000; waited += 50) await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual(await pool2.detectBatch(frames.slice(0, 4), OPTIONS), await reference.detectBatch(frames.slice(0, 4), OPTIONS));
      assert.equal(threads.length, 4);
      assert.equal(pool2.lanes, 2);
    } finally {
      await pool2.close();
    }
  });

  it('runs calls a chunk at a time on whichever lane is free, the oldest call first, answering in order', async () => {
    const answered = new Map<number, number>();
    const spawnThread: DetectorPoolOptions['spawnThread'] = (settings) => {
      const thread = DetectorPool.defaultSpawn(settings);
      thread.on('message', (reply: { type: string }) => reply.type === 'result' && answered.set(thread.threadId, (answered.get(thread.threadId) ?? 0) + 1));
      return thread;
    };
    const lanes = () => [...answered.values()].sort((a, b) => b - a);
    const shared = await DetectorPool.create({ modelPath: MODEL, lanes: 2, threadsPerLane: 1, spawnThread });
    try {
      // A lone batch: a frame a chunk (one session.run's worth), both lanes on it.
      const timings: DetectTimings = { inferenceMs: 0, postprocessMs: 0, runs: 0 };
      assert.deepEqual(await shared.detectBatch(frames.slice(0, 7), OPTIONS, timings), await reference.detectBatch(frames.slice(0, 7), OPTIONS));
      assert.equal(lanes().length, 2, 'both lanes ran part of the lone batch');
      assert.equal(lanes().reduce((a, b) => a + b), 7, 'one chunk a frame');
      assert.equal(timings.runs, 7);
      // Two calls at once: both lanes work through the first call's frames, then the second's, so the first
      // is answered first (with a call per lane, a lane that finished its call would idle beside the other).
      answered.clear();
      const order: string[] = [];
      const answers = await Promise.all(
        (['first', 'second'] as const).map((name, i) => shared.detectBatch(frames.slice(6 * i, 6 * i + 6), OPTIONS).finally(() => order.push(name))),
      );
      assert.deepEqual(answers.flat(), await reference.detectBatch(frames.slice(0, 12), OPTIONS));
      assert.deepEqual(order, ['first', 'second']);
      assert.equal(lanes().length, 2);
      assert.equal(lanes().reduce((a, b) => a + b), 12);
    } finally {
      await shared.close();
    }
    // chunkFrames: larger chunks, fewer messages; a batch smaller than a chunk is one chunk.
    answered.clear();
    const coarse = await DetectorPool.create({ modelPath: MODEL, lanes: 2, threadsPerLane: 1, chunkFrames: 4, spawnThread });
    try {
      assert.deepEqual(await coarse.detectBatch(frames.slice(0, 7), OPTIONS), await reference.detectBatch(frames.slice(0, 7), OPTIONS));
      assert.deepEqual(lanes(), [1, 1], 'a chunk of 4 frames and one of 3');
      answered.clear();
      await coarse.detectBatch(frames.slice(0, 3), OPTIONS);
      assert.deepEqual(lanes(), [1]);
    } finally {
      await coarse.close();
    }
    await assert.rejects(DetectorPool.create({ modelPath: MODEL, lanes: 1, threadsPerLane: 1, chunkFrames: 0 }), /chunkFrames must be a whole number/);
  });
});
