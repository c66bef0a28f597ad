import assert from 'node:assert/strict';
import type { FrameResult, VideoRecord } from '../../../src/db/types.ts';
import type { Detector, PreparedFrame } from '../../../src/detection/types.ts';
import { createLogger } from '../../../src/logger.ts';
import type { DetectionJob, ReservedJob } from '../../../src/queue/types.ts';
import { DetectionService } from '../../../src/services/detection.service.ts';
import { DetectionWorker, type WorkerQueue } from '../../../src/worker/detection-worker.ts';

const logger = createLogger({ logLevel: 'error', logFormat: 'json' }, 'test', { silent: true });

/** An in-memory stand-in for the Redis queue that records what the worker does with each job. */
class FakeQueue implements WorkerQueue {
  pending: ReservedJob[] = [];
  processing: ReservedJob[] = [];
  acked: string[] = [];
  released = 0;
  async reserve(): Promise<ReservedJob | null> {
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
  async heartbeat() {}
  async reclaimOrphanedJobs() {
    return 0;
  }
  deadLettered: Array<{ id: string; error: string; attempts: number }> = [];
  async deadLetter(_workerId: string, reserved: ReservedJob, error: string, attempts: number) {
    assert.ok(this.processing.includes(reserved), 'dead-lettered a job it did not hold');
    this.processing = this.processing.filter((job) => job !== reserved);
    this.deadLettered.push({ id: reserved.job.id, error, attempts });
    return true;
  }
  async releaseWorker() {
    this.released += this.processing.length;
    this.pending.unshift(...this.processing);
    this.processing = [];
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
}

function setUp(faults: Faults | ((frames: FrameResult[]) => Promise<number>)) {
  const { commit = async (frames: FrameResult[]) => frames.length, read = async (key: string) => Buffer.from(key), decode = async () => ({}) as PreparedFrame, maxAttempts = 3 } =
    typeof faults === 'function' ? { commit: faults } : faults;
  const committed: FrameResult[][] = [];
  const video = { id: 'v1', status: 'processing', capturedAt: new Date(0) } as VideoRecord;
  const service = new DetectionService(
    { get: async () => video },
    {
      commitFrames: async (_videoId, _at, frames) => {
        const written = await commit(frames);
        committed.push(frames);
        return written;
      },
      committedFrames: async () => new Set<number>(),
    },
    { read, delete: async () => {} },
    fakeDetector,
    decode,
    { confidenceThreshold: 0.25, iouThreshold: 0.7 },
    { keepFrames: true, logger },
  );
  const queue = new FakeQueue();
  const worker = new DetectionWorker(
    queue,
    service,
    { heartbeatTtlMs: 1000, reclaimIntervalMs: 1000, reserveTimeoutSeconds: 0.01, maxAttempts, retryBaseMs: 5, retryMaxMs: 20 },
    logger,
  );
  return { queue, worker, committed };
}

async function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('DetectionWorker', () => {
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
});
