import assert from 'node:assert/strict';
import { loadConfig, parseWorkerRoles } from '../../../src/config.ts';
import { createLogger } from '../../../src/logger.ts';
import { jobKind, type JobKind, type QueueJob, type ReservedJob } from '../../../src/queue/types.ts';
import type { DetectionService } from '../../../src/services/detection.service.ts';
import { detectHandler, type HandlerRegistry, type JobHandler } from '../../../src/worker/job-handlers.ts';
import { QueueWorker, type WorkerQueue } from '../../../src/worker/queue-worker.ts';

const logger = createLogger({ logLevel: 'error', logFormat: 'json' }, 'test', { silent: true });

/** An in-memory queue with a pending list per kind, recording which kinds each lane asked for. */
class KindQueue implements WorkerQueue {
  readonly pending: Record<JobKind, ReservedJob[]> = { extract: [], detect: [] };
  processing: ReservedJob[] = [];
  readonly reservedKinds = new Set<JobKind>();
  readonly acked: string[] = [];
  heartbeats = 0;
  lanesOpened = 0;
  lanesClosed = 0;
  released: string[] = [];
  async openLane() {
    this.lanesOpened += 1;
    return { reserve: this.reserve.bind(this), closeLane: async () => void (this.lanesClosed += 1) };
  }
  async adoptLegacyPending() {
    return 0;
  }
  async reserve(_workerId: string, kind: JobKind): Promise<ReservedJob | null> {
    this.reservedKinds.add(kind);
    const next = this.pending[kind].shift();
    if (!next) {
      await new Promise((resolve) => setTimeout(resolve, 2));
      return null;
    }
    this.processing.push(next);
    return next;
  }
  async ack(_workerId: string, reserved: ReservedJob) {
    assert.ok(this.processing.includes(reserved));
    this.processing = this.processing.filter((job) => job !== reserved);
    this.acked.push(reserved.job.id);
  }
  async heartbeat() {
    this.heartbeats += 1;
  }
  async reclaimOrphanedJobs() {
    return 0;
  }
  async reclaimUnregisteredJobs() {
    return 0;
  }
  async releaseWorker() {
    this.released = this.processing.map((reserved) => reserved.job.id);
    for (const reserved of this.processing) this.pending[jobKind(reserved.job)].unshift(reserved);
    this.processing = [];
    return this.released.length;
  }
  async deadLetter() {
    return true;
  }
}

function reserved(job: QueueJob): ReservedJob {
  return { job, payload: JSON.stringify(job) };
}
const extractJob = (videoId: string) => reserved({ kind: 'extract', id: `extract:${videoId}`, videoId });
const detectJob = (id: string) => reserved({ kind: 'detect', id, videoId: 'v', frames: [{ index: 0, ptsMs: 0, key: 'k' }] });

/** A handler whose jobs run until the test releases them (or the worker's signal aborts them). */
function gatedHandler(kind: JobKind, concurrency: number) {
  const running = new Map<string, () => void>();
  const ran: string[] = [];
  const handler: JobHandler = {
    kind,
    concurrency,
    prefetch: kind === 'detect',
    prepare: async (job) => job,
    run: (job, { signal }) =>
      new Promise<void>((resolve, reject) => {
        const id = (job as QueueJob).id;
        ran.push(id);
        running.set(id, resolve);
        signal.addEventListener('abort', () => reject(new Error('stopped')), { once: true });
      }),
    recordFailure: async () => true,
  };
  return { handler, running, ran, release: (id: string) => running.get(id)!() };
}

async function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

const settings = { heartbeatTtlMs: 600, reclaimIntervalMs: 1000, reserveTimeoutSeconds: 0.01, maxAttempts: 3, retryBaseMs: 5, retryMaxMs: 20 };

describe('job handler registry and WORKER_ROLES', () => {
  it('parses WORKER_ROLES: both kinds by default, either alone, in a fixed order; anything else is refused', () => {
    const problems: string[] = [];
    assert.deepEqual(parseWorkerRoles(undefined, problems), ['extract', 'detect']);
    assert.deepEqual(parseWorkerRoles('', problems), ['extract', 'detect']);
    assert.deepEqual(parseWorkerRoles('detect', problems), ['detect']);
    assert.deepEqual(parseWorkerRoles(' extract ', problems), ['extract']);
    assert.deepEqual(parseWorkerRoles('detect,extract', problems), ['extract', 'detect']);
    assert.deepEqual(problems, []);
    for (const bad of ['extract,,detect', 'transcode', 'detect,detect', 'EXTRACT', ',']) {
      const found: string[] = [];
      parseWorkerRoles(bad, found);
      assert.equal(found.length, 1, bad);
      assert.match(found[0]!, /WORKER_ROLES/);
    }
    assert.throws(() => loadConfig({ WORKER_ROLES: 'extract,train' }), /WORKER_ROLES must be a comma-separated list of extract, detect/);
    assert.deepEqual(loadConfig({ WORKER_ROLES: 'extract' }).workerRoles, ['extract']);
  });

  it('takes a detect job per detector lane (DETECT_LANES), prefetching only with one lane', () => {
    assert.equal(loadConfig({}).detectLanes, 0);
    assert.equal(loadConfig({ DETECT_LANES: '3' }).detectLanes, 3);
    assert.throws(() => loadConfig({ DETECT_LANES: '-1' }), /DETECT_LANES/);
    const detection = {} as DetectionService; // the handler's shape is all this reads
    const shape = (lanes?: number) => {
      const { concurrency, prefetch } = detectHandler(detection, { heartbeatTtlMs: 15_000, lanes }, logger);
      return { concurrency, prefetch };
    };
    assert.deepEqual(shape(), { concurrency: 1, prefetch: true });
    assert.deepEqual(shape(1), { concurrency: 1, prefetch: true });
    assert.deepEqual(shape(3), { concurrency: 3, prefetch: false });
  });

  it('warns that EXTRACTION_LEASE_MS is gone instead of refusing to start', () => {
    assert.ok(loadConfig({ EXTRACTION_LEASE_MS: '1500' }).warnings.some((warning) => /EXTRACTION_LEASE_MS is no longer used/.test(warning)));
  });

  it('a worker refuses a role without a handler, a handler under another kind\'s name, and no role at all', () => {
    const extract = gatedHandler('extract', 1).handler;
    assert.throws(() => new QueueWorker(new KindQueue(), { extract }, ['extract', 'detect'], settings, logger), /no handler for detect/);
    assert.throws(() => new QueueWorker(new KindQueue(), { detect: extract } as HandlerRegistry, ['detect'], settings, logger), /the detect entry of the registry handles extract jobs/);
    assert.throws(() => new QueueWorker(new KindQueue(), { extract }, [], settings, logger), /at least one role/);
  });

  it('a detect-only worker never asks for extract jobs, and an extract-only worker never for detect jobs', async () => {
    for (const role of ['detect', 'extract'] as const) {
      const queue = new KindQueue();
      const handlers = { extract: gatedHandler('extract', 2).handler, detect: gatedHandler('detect', 1).handler };
      const worker = new QueueWorker(queue, handlers, [role], settings, logger);
      await worker.start();
      await until(() => queue.reservedKinds.size > 0);
      await new Promise((resolve) => setTimeout(resolve, 30));
      await worker.stop();
      assert.deepEqual([...queue.reservedKinds], [role]);
    }
  });

  it('runs EXTRACTION_CONCURRENCY extractions beside detection, on lanes of their own, heartbeating throughout', async () => {
    const queue = new KindQueue();
    const extract = gatedHandler('extract', 2);
    const detect = gatedHandler('detect', 1);
    const worker = new QueueWorker(queue, { extract: extract.handler, detect: detect.handler }, ['extract', 'detect'], settings, logger);
    queue.pending.extract.push(extractJob('a'), extractJob('b'), extractJob('c'));
    queue.pending.detect.push(detectJob('d1'), detectJob('d2'));
    await worker.start();
    assert.equal(queue.lanesOpened, 2, 'three lanes: two extract, one detect; the first uses the queue itself');
    await until(() => extract.running.size === 2 && detect.running.has('d1'));
    assert.deepEqual(extract.ran, ['extract:a', 'extract:b'], 'never a third extraction at once');
    // Detection goes on while both extractions run.
    detect.release('d1');
    await until(() => detect.running.has('d2'));
    detect.release('d2');
    await until(() => queue.acked.includes('d2'));
    // Extractions run for longer than the heartbeat TTL: the worker keeps heartbeating beside them.
    const before = queue.heartbeats;
    await new Promise((resolve) => setTimeout(resolve, settings.heartbeatTtlMs));
    assert.ok(queue.heartbeats >= before + 2, `heartbeats went on during the extractions (${queue.heartbeats - before})`);
    assert.deepEqual(queue.acked, ['d1', 'd2']);
    extract.release('extract:a');
    await until(() => extract.ran.includes('extract:c'), 2000);
    assert.equal(queue.pending.extract.length, 0);
    // Stopping aborts the extractions in hand: they go back to the queue (and resume elsewhere).
    await worker.stop();
    assert.deepEqual(queue.released.sort(), ['extract:b', 'extract:c']);
    assert.deepEqual(queue.pending.extract.map((r) => r.job.id).sort(), ['extract:b', 'extract:c']);
    assert.equal(queue.lanesClosed, 2);
  });
});
