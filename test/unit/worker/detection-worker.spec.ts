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
  device: 'cpu',
  modelInfo: { names: ['person'], imgsz: [640, 640], stride: 32 },
  detectBatch: async (frames) => frames.map(() => [{ classId: 0, className: 'person', confidence: 0.9, box: [1, 2, 3, 4] }]),
  close: async () => {},
};

function setUp(commit: (frames: FrameResult[]) => Promise<number>) {
  const failed: string[] = [];
  const video = { id: 'v1', status: 'processing', capturedAt: new Date(0) } as VideoRecord;
  const service = new DetectionService(
    { get: async () => video, markFailed: async (_id, reason) => void failed.push(reason) },
    { commitFrames: async (_videoId, _at, frames) => commit(frames) },
    { read: async (key) => Buffer.from(key) },
    fakeDetector,
    async () => ({}) as PreparedFrame,
    { confidenceThreshold: 0.25, iouThreshold: 0.7 },
  );
  const queue = new FakeQueue();
  const worker = new DetectionWorker(queue, service, { heartbeatTtlMs: 1000, reclaimIntervalMs: 1000, reserveTimeoutSeconds: 0.01 }, logger);
  return { queue, worker, failed };
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
    const committed: number[][] = [];
    const { queue, worker } = setUp(async (frames) => {
      // Acknowledgement must not have happened yet for this job.
      assert.equal(queue.acked.length, committed.length);
      committed.push(frames.map((f) => f.frameIndex));
      return frames.length;
    });
    queue.pending.push(job('a', [0, 1]), job('b', [2, 3]), job('c', [4]));
    await worker.start();
    await until(() => queue.acked.length === 3);
    await worker.stop();
    assert.deepEqual(committed, [[0, 1], [2, 3], [4]]);
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
    await until(() => queue.acked.length === 1, 10_000);
    await worker.stop();
    assert.equal(calls, 3);
  });

  it('fails the video and drops the job on a permanent error instead of looping', async () => {
    const { queue, worker, failed } = setUp(async () => {
      throw new Error('Input buffer contains unsupported image format');
    });
    queue.pending.push(job('a', [0, 1]));
    await worker.start();
    await until(() => queue.acked.length === 1);
    await worker.stop();
    assert.equal(failed.length, 1);
    assert.match(failed[0]!, /frames 0\.\.1: Input buffer contains unsupported image format/);
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
