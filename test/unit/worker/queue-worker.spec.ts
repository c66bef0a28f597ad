import assert from 'node:assert/strict';
import type { FrameResult, VideoRecord } from '../../../src/db/types.ts';
import type { Detector, PreparedFrame } from '../../../src/detection/types.ts';
import { createLogger, type Logger } from '../../../src/logger.ts';
import type { DetectionJob, JobKind, ReservedJob } from '../../../src/queue/types.ts';
import { DetectionService } from '../../../src/services/detection.service.ts';
import { detectHandler } from '../../../src/worker/job-handlers.ts';
import { QueueWorker, type WorkerQueue, type WorkerSettings } from '../../../src/worker/queue-worker.ts';

const logger = createLogger({ logLevel: 'error', logFormat: 'json' }, 'test', { silent: true });

/** An in-memory stand-in for the Redis queue that records what the worker does with each job. */
class FakeQueue implements WorkerQueue {
  pending: ReservedJob[] = [];
  processing: ReservedJob[] = [];
  acked: string[] = [];
  released = 0;
  /** Every call in order, so tests can see a heartbeat before each reserve. */
  calls: string[] = [];
  reserveTimeouts: number[] = [];
  /** Failures to inject, taken one per call. */
  deadLetterFaults: Error[] = [];
  async openLane() {
    return Object.assign(Object.create(this) as FakeQueue, { closeLane: async () => {} });
  }
  async adoptLegacyPending() {
    return 0;
  }
  async reserve(_workerId: string, kind: JobKind, timeoutSeconds: number): Promise<ReservedJob | null> {
    assert.equal(kind, 'detect');
    this.calls.push('reserve');
    this.reserveTimeouts.push(timeoutSeconds);
    const next = this.pending.shift();
    if (!next) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      return null;
    }
    this.processing.push(next);
    return next;
  }
  async ack(_workerId: string, reserved: ReservedJob) {
    assert.ok(this.processing.includes(reserved), 'acked a job it did not hold');
    this.processing = this.processing.filter((job) => job !== reserved);
    this.acked.push(reserved.job.id);
  }
  async heartbeat() {
    this.calls.push('heartbeat');
  }
  async reclaimOrphanedJobs() {
    return 0;
  }
  async reclaimUnregisteredJobs() {
    return 0;
  }
  deadLettered: Array<{ id: string; error: string; attempts: number }> = [];
  async deadLetter(_workerId: string, reserved: ReservedJob, error: string, attempts: number) {
    const fault = this.deadLetterFaults.shift();
    if (fault) throw fault;
    assert.ok(this.processing.includes(reserved), 'dead-lettered a job it did not hold');
    this.processing = this.processing.filter((job) => job !== reserved);
    this.deadLettered.push({ id: reserved.job.id, error, attempts });
    return true;
  }
  async releaseWorker() {
    this.calls.push('release');
    const count = this.processing.length;
    this.released += count;
    this.pending.unshift(...this.processing);
    this.processing = [];
    return count;
  }
}

function job(id: string, frames: number[]): ReservedJob {
  const detectionJob: DetectionJob = { id, videoId: 'v1', frames: frames.map((index) => ({ index, ptsMs: index * 100, key: `f/${index}` })) };
  return { job: detectionJob, payload: JSON.stringify(detectionJob) };
}

const fakeDetector: Detector = {
  engine: 'fake',
  backend: 'fake',
  device: 'cpu',
  modelInfo: { names: ['person'], imgsz: [640, 640], stride: 32 },
  detectBatch: async (frames) => frames.map(() => [{ classId: 0, className: 'person', confidence: 0.9, box: [1, 2, 3, 4] }]),
  close: async () => {},
};

interface Faults {
  commit?: (frames: FrameResult[]) => Promise<number>;
  read?: (key: string) => Promise<Buffer>;
  decode?: (jpeg: Buffer) => Promise<PreparedFrame>;
  maxAttempts?: number;
  /** recordFailedJob's commit of failed frames (the ordinary commit stub otherwise). */
  recordFailures?: (frames: FrameResult[]) => Promise<number>;
  detect?: Detector['detectBatch'];
  settings?: Partial<WorkerSettings>;
  logger?: Logger;
}

function setUp(faults: Faults | ((frames: FrameResult[]) => Promise<number>)) {
  const {
    commit = async (frames: FrameResult[]) => frames.length,
    read = async (key: string) => Buffer.from(key),
    decode = async () => ({}) as PreparedFrame,
    maxAttempts = 3,
    recordFailures,
    detect,
    settings = {},
    logger: workerLogger = logger,
  } = typeof faults === 'function' ? { commit: faults } : faults;
  const committed: FrameResult[][] = [];
  const video = { id: 'v1', status: 'processing', capturedAt: new Date(0), source: { width: 768, height: 576 } } as VideoRecord;
  const service = new DetectionService(
    { get: async () => video },
    {
      commitFrames: async (_videoId, _at, frames) => {
        const written = recordFailures && frames.every((f) => f.error?.startsWith('dead-lettered')) ? await recordFailures(frames) : await commit(frames);
        committed.push(frames);
        return written;
      },
      committedFrames: async () => new Set<number>(),
    },
    { read, delete: async () => {} },
    detect ? { ...fakeDetector, detectBatch: detect } : fakeDetector,
    decode,
    { confidenceThreshold: 0.25, iouThreshold: 0.7 },
    { keepFrames: true, logger },
  );
  const queue = new FakeQueue();
  const workerSettings = { heartbeatTtlMs: 1000, reclaimIntervalMs: 1000, reserveTimeoutSeconds: 0.01, maxAttempts, retryBaseMs: 5, retryMaxMs: 20, ...settings };
  const worker = new QueueWorker(queue, { detect: detectHandler(service, workerSettings, workerLogger) }, ['detect'], workerSettings, workerLogger);
  return { queue, worker, committed };
}

async function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('QueueWorker with the detect handler', () => {
  it('acknowledges each job only after its results are committed', async () => {
    const committedIndexes: number[][] = [];
    const { queue, worker } = setUp(async (frames) => {
      // Acknowledgement must not have happened yet for this job.
      assert.equal(queue.acked.length, committedIndexes.length);
      committedIndexes.push(frames.map((f) => f.frameIndex));
      return frames.length;
    });
    queue.pending.push(job('a', [0, 1]), job('b', [2, 3]), job('c', [4]));
    await worker.start();
    await until(() => queue.acked.length === 3);
    await worker.stop();
    assert.deepEqual(committedIndexes, [[0, 1], [2, 3], [4]]);
    assert.deepEqual(queue.acked, ['a', 'b', 'c']);
  });

  it('retries a transient database failure in place, without acknowledging early', async () => {
    let calls = 0;
    const { queue, worker } = setUp(async (frames) => {
      calls += 1;
      if (calls < 3) throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
      return frames.length;
    });
    queue.pending.push(job('a', [0]));
    await worker.start();
    await until(() => queue.acked.length === 1);
    await worker.stop();
    assert.equal(calls, 3);
  });

  it('retries a failing job with backoff, then dead-letters it and records its frames as failed', async () => {
    let reads = 0;
    const { queue, worker, committed } = setUp({
      read: async (key) => {
        reads += 1;
        if (key === 'f/1') throw Object.assign(new Error(`ENOENT: no such file, open '${key}'`), { code: 'ENOENT' });
        return Buffer.from(key);
      },
    });
    queue.pending.push(job('poison', [0, 1]), job('fine', [2]));
    await worker.start();
    await until(() => queue.acked.length === 1 && queue.deadLettered.length === 1);
    await worker.stop();
    assert.deepEqual(queue.deadLettered.map((d) => [d.id, d.attempts]), [['poison', 3]]);
    assert.match(queue.deadLettered[0]!.error, /ENOENT/);
    assert.deepEqual(queue.acked, ['fine']);
    const failures = committed.find((frames) => frames.every((f) => f.error !== undefined))!;
    assert.deepEqual(failures.map((f) => f.frameIndex), [0, 1]);
    assert.match(failures[0]!.error!, /^dead-lettered after 3 attempts: ENOENT/);
    assert.ok(reads >= 6, 'each attempt read the frames again');
  });

  it('dead-letters at once a job that already used its attempts (workers died holding it)', async () => {
    const { queue, worker } = setUp({});
    const tired = job('tired', [0]);
    tired.job.attempts = 3;
    queue.pending.push(tired);
    await worker.start();
    await until(() => queue.deadLettered.length === 1);
    await worker.stop();
    assert.match(queue.deadLettered[0]!.error, /workers died 3 times/);
    assert.deepEqual(queue.acked, []);
  });

  it('a corrupt frame fails alone: the rest of the job is detected and committed', async () => {
    const { queue, worker, committed } = setUp({
      decode: async (jpeg) => {
        if (jpeg.toString() === 'f/1') throw new Error('Input buffer has corrupt header');
        return {} as PreparedFrame;
      },
    });
    queue.pending.push(job('a', [0, 1, 2]));
    await worker.start();
    await until(() => queue.acked.length === 1);
    await worker.stop();
    assert.deepEqual(committed[0]!.map((f) => [f.frameIndex, f.detections.length, f.error ?? null]), [
      [0, 1, null],
      [1, 0, 'corrupt frame: Input buffer has corrupt header'],
      [2, 1, null],
    ]);
  });

  it('holds a job through a database outage without counting attempts', async () => {
    let calls = 0;
    const { queue, worker } = setUp({
      maxAttempts: 2,
      commit: async (frames) => {
        calls += 1;
        if (calls <= 4) throw Object.assign(new Error('write CONNECTION_CLOSED 127.0.0.1:5432'), { code: 'CONNECTION_CLOSED' });
        return frames.length;
      },
    });
    queue.pending.push(job('a', [0]));
    await worker.start();
    await until(() => queue.acked.length === 1);
    await worker.stop();
    assert.equal(calls, 5);
    assert.deepEqual(queue.deadLettered, []);
  });

  it('on stop, returns jobs it holds but has not finished', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const { queue, worker } = setUp(async (frames) => {
      await gate;
      return frames.length;
    });
    queue.pending.push(job('a', [0]), job('b', [1]), job('c', [2]));
    await worker.start();
    await until(() => queue.processing.length === 2); // 'a' on the detector, 'b' prefetched
    const stopping = worker.stop();
    release();
    await stopping;
    assert.deepEqual(queue.acked, ['a']);
    assert.deepEqual(queue.pending.map((r) => r.job.id), ['b', 'c']);
    assert.equal(queue.processing.length, 0);
  });
  const poisonRead = async (key: string) => {
    if (key === 'f/1') throw Object.assign(new Error(`ENOENT: no such file, open '${key}'`), { code: 'ENOENT' });
    return Buffer.from(key);
  };

  it('a Redis error while dead-lettering does not escape the loop: the job stays held and is dead-lettered once Redis answers', async () => {
    const { queue, worker } = setUp({ read: poisonRead, maxAttempts: 2 });
    queue.deadLetterFaults.push(Object.assign(new Error('The client is closed'), { name: 'ClientClosedError' }), new Error('OOM command not allowed when used memory > maxmemory'));
    queue.pending.push(job('poison', [0, 1]), job('fine', [2]));
    await worker.start();
    await until(() => queue.deadLettered.length === 1 && queue.acked.length === 1);
    await worker.stop(); // would reject if the loop had died of the error
    assert.deepEqual(queue.deadLetterFaults, []);
    assert.deepEqual(queue.deadLettered.map((d) => [d.id, d.attempts]), [['poison', 2]]);
    assert.deepEqual(queue.acked, ['fine']);
  });

  it('PostgreSQL down while recording the failed frames: the job is held, not dead-lettered, until they are recorded', async () => {
    let pgDown = true;
    let recordCalls = 0;
    const { queue, worker, committed } = setUp({
      read: poisonRead,
      maxAttempts: 2,
      recordFailures: async (frames) => {
        recordCalls += 1;
        if (pgDown) throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
        return frames.length;
      },
    });
    queue.pending.push(job('poison', [0, 1]));
    await worker.start();
    await until(() => recordCalls >= 3);
    assert.deepEqual(queue.deadLettered, [], 'dead-lettered without its failed frames: the video would never finish');
    assert.deepEqual(queue.processing.map((r) => r.job.id), ['poison']);
    pgDown = false;
    await until(() => queue.deadLettered.length === 1);
    await worker.stop();
    const failures = committed.find((frames) => frames.every((f) => f.error !== undefined))!;
    assert.deepEqual(failures.map((f) => f.frameIndex), [0, 1]);
    assert.deepEqual(queue.acked, []);
  });

  it('stop() during a backoff returns at once and hands the held job back', async () => {
    let commits = 0;
    const { queue, worker } = setUp({
      commit: async () => {
        commits += 1;
        throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
      },
      settings: { retryBaseMs: 60_000, retryMaxMs: 60_000 },
    });
    queue.pending.push(job('a', [0]));
    await worker.start();
    await until(() => commits === 1);
    await new Promise((resolve) => setTimeout(resolve, 20)); // into the (30-60 s) backoff sleep
    const started = Date.now();
    await worker.stop();
    assert.ok(Date.now() - started < 1000, `stop took ${Date.now() - started} ms`);
    assert.equal(commits, 1);
    assert.deepEqual(queue.pending.map((r) => r.job.id), ['a']);
    assert.deepEqual([queue.processing, queue.acked, queue.deadLettered], [[], [], []]);
  });

  it('stop() keeps heartbeating while the job in hand finishes, and stops heartbeating after', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let committing = false;
    const { queue, worker } = setUp({
      commit: async (frames) => ((committing = true), await gate, frames.length),
      settings: { heartbeatTtlMs: 300 }, // a heartbeat every 100 ms
    });
    const heartbeats = () => queue.calls.filter((call) => call === 'heartbeat').length;
    queue.pending.push(job('a', [0]));
    await worker.start();
    await until(() => committing);
    const stopping = worker.stop();
    const before = heartbeats();
    // Three beats (longer than the TTL) while the job is in hand; no fixed sleep, so a slow timer cannot fail it.
    await until(() => heartbeats() >= before + 3);
    release();
    await stopping;
    assert.deepEqual(queue.acked, ['a']);
    const after = heartbeats();
    await new Promise((resolve) => setTimeout(resolve, 250));
    assert.equal(heartbeats(), after, 'heartbeats after the worker stopped');
  });

  it('registers again before every reserve and blocks for less than half the heartbeat TTL', async () => {
    const { queue, worker } = setUp({ settings: { heartbeatTtlMs: 1000, reserveTimeoutSeconds: 5 } });
    queue.pending.push(job('a', [0]), job('b', [1]));
    await worker.start();
    await until(() => queue.acked.length === 2);
    await worker.stop();
    const reserves = queue.calls.flatMap((call, i) => (call === 'reserve' ? [i] : []));
    assert.ok(reserves.length >= 3);
    for (const i of reserves) assert.equal(queue.calls[i - 1], 'heartbeat', `call ${i}: a reserve without a heartbeat just before`);
    assert.ok(queue.reserveTimeouts.every((t) => t === 0.5), String(queue.reserveTimeouts));
  });

  it('warns when one detector run takes over half the heartbeat TTL', async () => {
    const warnings: string[] = [];
    const capture = { info() {}, debug() {}, error() {}, warn: (message: string) => void warnings.push(message) } as unknown as Logger;
    let runs = 0;
    const { queue, worker } = setUp({
      settings: { heartbeatTtlMs: 500 },
      logger: capture,
      detect: async (frames) => {
        runs += 1;
        if (runs === 1) await new Promise((resolve) => setTimeout(resolve, 300));
        return frames.map(() => []);
      },
    });
    queue.pending.push(job('slow', [0]), job('fast', [1]));
    await worker.start();
    await until(() => queue.acked.length === 2);
    await worker.stop();
    assert.deepEqual(warnings.filter((w) => w.includes('detector run took over half the heartbeat TTL')).length, 1, warnings.join('\n'));
  });
});
