import assert from 'node:assert/strict';
import { createClient } from 'redis';
import { MalformedJobError, ReliableQueue } from '../../src/queue/reliable-queue.ts';
import type { DetectionJob } from '../../src/queue/types.ts';
import { createLogger } from '../../src/logger.ts';
import type { DetectionService, PreparedJob } from '../../src/services/detection.service.ts';
import { detectHandler } from '../../src/worker/job-handlers.ts';
import { QueueWorker } from '../../src/worker/queue-worker.ts';
import { deleteKeys, uniquePrefix } from '../helpers/redis.ts';
import { sleep, waitFor } from '../helpers/service.ts';

function job(id: string, index = 0): DetectionJob {
  return { id, videoId: 'video-1', frames: [{ index, ptsMs: index * 100, key: `videos/video-1/frames/${index}.jpg` }] };
}

describe('ReliableQueue (real Redis)', () => {
  const client = createClient({ url: 'redis://127.0.0.1:6379' });
  const blocking = client.duplicate();
  let prefix: string;
  let queue: ReliableQueue;

  before(async () => {
    await client.connect();
    await blocking.connect();
  });
  after(async () => {
    await client.quit();
    await blocking.quit();
  });
  beforeEach(async () => {
    prefix = uniquePrefix();
    queue = new ReliableQueue(client, blocking, prefix);
    await queue.load();
  });
  afterEach(() => deleteKeys(client, prefix));

  const ids = async (key: string) => (await client.lRange(key, 0, -1)).map((payload) => (JSON.parse(payload) as DetectionJob).id);

  it('hands jobs out first in, first out, and holds each in the worker processing list until acked', async () => {
    await queue.publish([job('a'), job('b')]);
    await queue.publish([job('c')]);
    const first = await queue.reserve('w1', 'detect', 1);
    assert.equal(first?.job.id, 'a');
    assert.deepEqual(await ids(queue.keys.processing('w1')), ['a']);
    assert.deepEqual(await ids(queue.keys.pending.detect), ['c', 'b']);
    await queue.ack('w1', first!);
    assert.deepEqual(await ids(queue.keys.processing('w1')), []);
    assert.equal((await queue.reserve('w1', 'detect', 1))?.job.id, 'b');
    assert.equal((await queue.reserve('w1', 'detect', 1))?.job.id, 'c');
    assert.deepEqual(await queue.counts(), { pending: 0, pendingByKind: { extract: 0, detect: 0 }, processing: 0 }); // w1 never registered a heartbeat
  });

  it('returns null when nothing arrives within the timeout', async () => {
    const started = Date.now();
    assert.equal(await queue.reserve('w1', 'detect', 0.2), null);
    assert.ok(Date.now() - started >= 150);
  });

  it('ack removes exactly the acknowledged job', async () => {
    await queue.publish([job('a'), job('b')]);
    const a = await queue.reserve('w1', 'detect', 1);
    const b = await queue.reserve('w1', 'detect', 1);
    await queue.ack('w1', b!);
    assert.deepEqual(await ids(queue.keys.processing('w1')), ['a']);
    await queue.ack('w1', a!);
    await queue.ack('w1', a!); // a second ack of the same job is harmless
    assert.equal(await client.lLen(queue.keys.processing('w1')), 0);
  });

  it('reclaims the jobs of a worker whose heartbeat expired, in order, and leaves live workers alone', async () => {
    await queue.publish([job('a'), job('b'), job('c'), job('d')]);
    await queue.heartbeat('dead', 150);
    await queue.heartbeat('alive', 60_000);
    await queue.reserve('dead', 'detect', 1); // a
    await queue.reserve('dead', 'detect', 1); // b
    await queue.reserve('alive', 'detect', 1); // c
    assert.equal(await queue.reclaimOrphanedJobs(), 0, 'nothing is reclaimed while the heartbeat lives');
    await new Promise((resolve) => setTimeout(resolve, 250));
    assert.equal(await queue.reclaimOrphanedJobs(), 2);
    assert.deepEqual(await ids(queue.keys.processing('dead')), []);
    assert.deepEqual(await ids(queue.keys.processing('alive')), ['c']);
    // The reclaimed jobs run next, oldest first, before d.
    assert.deepEqual(
      [(await queue.reserve('new', 'detect', 1))?.job.id, (await queue.reserve('new', 'detect', 1))?.job.id, (await queue.reserve('new', 'detect', 1))?.job.id],
      ['a', 'b', 'd'],
    );
    assert.deepEqual(await client.sMembers(queue.keys.workers), ['alive']);
  });

  it('the sweep reclaims the processing list of an unregistered worker without a heartbeat, and only that', async () => {
    await queue.publish([job('a'), job('b'), job('c')]);
    // ghost took a job without ever registering (or was unregistered while stalled, then took it and died).
    await queue.reserve('ghost', 'detect', 1);
    // stalled was unregistered too, but its heartbeat is live again: it re-registers at its next beat.
    await queue.heartbeat('stalled', 60_000);
    await queue.reserve('stalled', 'detect', 1);
    await client.sRem(queue.keys.workers, 'stalled');
    // live is registered: the set-based reclaim judges it, not the sweep.
    await queue.reserve('live', 'detect', 1);
    await client.sAdd(queue.keys.workers, 'live');
    assert.equal(await queue.reclaimOrphanedJobs(), 1, 'the set leads only to live (no heartbeat: reclaimed)');
    assert.equal(await queue.reclaimUnregisteredJobs(), 1, 'the sweep finds ghost only');
    assert.deepEqual(await ids(queue.keys.processing('ghost')), []);
    assert.deepEqual(await ids(queue.keys.processing('stalled')), ['b']);
    const pending = (await client.lRange(queue.keys.pending.detect, 0, -1)).map((payload) => JSON.parse(payload) as DetectionJob);
    assert.deepEqual(pending.map((j) => [j.id, j.attempts]).sort(), [['a', 1], ['c', 1]]);
    assert.equal(await queue.reclaimUnregisteredJobs(), 0, 'nothing twice');
    // Another prefix's lists are never touched.
    // (Its keys still start with `${prefix}:`, so afterEach removes them even if an assertion fails.)
    const other = new ReliableQueue(client, blocking, `${prefix}:x`);
    await other.load();
    await other.publish([job('z')]);
    await other.reserve('ghost', 'detect', 1);
    assert.equal(await queue.reclaimUnregisteredJobs(), 0);
    assert.deepEqual(await ids(other.keys.processing('ghost')), ['z']);
  });

  it('concurrent reclaimers move each job exactly once', async () => {
    const jobs = Array.from({ length: 50 }, (_, i) => job(`j${i}`, i));
    await queue.publish(jobs);
    for (let w = 0; w < 5; w += 1) {
      await queue.heartbeat(`dead${w}`, 100);
      for (let i = 0; i < 10; i += 1) await queue.reserve(`dead${w}`, 'detect', 1);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    const others = [client.duplicate(), client.duplicate(), client.duplicate()];
    await Promise.all(others.map((c) => c.connect()));
    const moved = await Promise.all(others.map((c) => new ReliableQueue(c, c, prefix).reclaimOrphanedJobs()));
    await Promise.all(others.map((c) => c.quit()));
    assert.equal(moved.reduce((a, b) => a + b, 0), 50);
    const pending = await ids(queue.keys.pending.detect);
    assert.equal(pending.length, 50);
    assert.equal(new Set(pending).size, 50);
  });

  it('releaseWorker hands held jobs back and unregisters the worker', async () => {
    await queue.publish([job('a'), job('b')]);
    await queue.heartbeat('w1', 60_000);
    await queue.reserve('w1', 'detect', 1);
    assert.deepEqual(await queue.counts(), { pending: 1, pendingByKind: { extract: 0, detect: 1 }, processing: 1 });
    assert.equal(await queue.releaseWorker('w1'), 1);
    assert.deepEqual(await queue.counts(), { pending: 2, pendingByKind: { extract: 0, detect: 2 }, processing: 0 });
    assert.equal(await client.exists(queue.keys.heartbeat('w1')), 0);
    assert.equal((await queue.reserve('w2', 'detect', 1))?.job.id, 'a');
  });

  it('reports a malformed payload without losing it, so the worker can drop it deliberately', async () => {
    await client.lPush(queue.keys.pending.detect, ['{"not":"a job"}']);
    await assert.rejects(queue.reserve('w1', 'detect', 1), (error: unknown) => error instanceof MalformedJobError && error.payload === '{"not":"a job"}');
    assert.equal(await client.lLen(queue.keys.processing('w1')), 1);
    await queue.ack('w1', { payload: '{"not":"a job"}' });
    assert.equal(await client.lLen(queue.keys.processing('w1')), 0);
  });

  it('a registered worker that holds nothing is simply unregistered when its heartbeat expires', async () => {
    await queue.heartbeat('idle', 100);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(await queue.reclaimOrphanedJobs(), 0);
    assert.deepEqual(await client.sMembers(queue.keys.workers), []);
  });

  it('many reclaimers racing many rounds never duplicate or lose a job, and live workers keep theirs', async () => {
    const jobs = Array.from({ length: 200 }, (_, i) => job(`j${i}`, i));
    await queue.publish(jobs);
    await queue.heartbeat('alive', 60_000);
    for (let i = 0; i < 20; i += 1) await queue.reserve('alive', 'detect', 1);
    for (let w = 0; w < 20; w += 1) {
      await queue.heartbeat(`dead${w}`, 100);
      for (let i = 0; i < 5; i += 1) await queue.reserve(`dead${w}`, 'detect', 1);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    const others = Array.from({ length: 6 }, () => client.duplicate());
    await Promise.all(others.map((c) => c.connect()));
    try {
      const queues = others.map((c) => new ReliableQueue(c, c, prefix));
      const moved = await Promise.all(queues.flatMap((q) => [q.reclaimOrphanedJobs(), q.reclaimOrphanedJobs(), q.reclaimOrphanedJobs()]));
      assert.equal(moved.reduce((a, b) => a + b, 0), 100);
    } finally {
      await Promise.all(others.map((c) => c.quit()));
    }
    const pending = await ids(queue.keys.pending.detect);
    const held = await ids(queue.keys.processing('alive'));
    assert.equal(held.length, 20);
    assert.equal(pending.length, 180);
    assert.equal(new Set([...pending, ...held]).size, 200, 'every job exactly once');
    assert.deepEqual(await client.sMembers(queue.keys.workers), ['alive']);
    assert.deepEqual(await queue.counts(), { pending: 180, pendingByKind: { extract: 0, detect: 180 }, processing: 20 });
  });

  it('releaseWorker puts held jobs ahead of waiting ones, oldest first', async () => {
    await queue.publish([job('a'), job('b'), job('c')]);
    await queue.heartbeat('w1', 60_000);
    await queue.reserve('w1', 'detect', 1); // a
    await queue.reserve('w1', 'detect', 1); // b
    assert.equal(await queue.releaseWorker('w1'), 2);
    const order = [];
    for (let i = 0; i < 3; i += 1) order.push((await queue.reserve('w2', 'detect', 1))?.job.id);
    assert.deepEqual(order, ['a', 'b', 'c']);
    assert.deepEqual(await client.sMembers(queue.keys.workers), []);
  });

  it('publishing nothing is a no-op', async () => {
    await queue.publish([]);
    assert.equal(await client.exists(queue.keys.pending.detect), 0);
  });

  it('re-sends a script Redis has forgotten (SCRIPT FLUSH, as after a restart)', async () => {
    await client.scriptFlush();
    await queue.heartbeat('w1', 60_000);
    assert.equal(await client.exists(queue.keys.heartbeat('w1')), 1);
  });

  it('counts a reclaim as an attempt, keeping the rest of the job intact', async () => {
    await queue.publish([{ ...job('a'), publishedAt: 1764036000123 }]);
    await queue.heartbeat('dead', 100);
    await queue.reserve('dead', 'detect', 1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(await queue.reclaimOrphanedJobs(), 1);
    const again = await queue.reserve('w2', 'detect', 1);
    assert.deepEqual(again?.job, { ...job('a'), publishedAt: 1764036000123, attempts: 1 });
    await queue.heartbeat('w2', 100);
    await new Promise((resolve) => setTimeout(resolve, 200));
    await queue.reclaimOrphanedJobs();
    assert.equal((await queue.reserve('w3', 'detect', 1))?.job.attempts, 2);
  });

  it('dead-letters a held job atomically, lists it, and retries or discards it', async () => {
    await queue.publish([job('a'), job('b')]);
    const a = (await queue.reserve('w1', 'detect', 1))!;
    assert.equal(await queue.deadLetter('w1', a, 'ENOENT: frame missing', 3), true);
    assert.equal(await client.lLen(queue.keys.processing('w1')), 0);
    assert.equal(await queue.deadLetter('w1', a, 'again', 3), false, 'a job no longer held is not dead-lettered twice');
    const b = (await queue.reserve('w1', 'detect', 1))!;
    await queue.deadLetter('w1', b, 'decoder crashed', 5);

    const listed = await queue.listDeadLetters();
    assert.equal(listed.total, 2);
    assert.deepEqual(listed.items.map((d) => [d.job.id, d.error, d.attempts]), [['b', 'decoder crashed', 5], ['a', 'ENOENT: frame missing', 3]]);
    assert.ok(!Number.isNaN(Date.parse(listed.items[0]!.failedAt)));

    assert.equal(await queue.retryDeadLetter('a'), true);
    assert.equal(await queue.retryDeadLetter('a'), false);
    const retried = (await queue.reserve('w2', 'detect', 1))!;
    assert.equal(retried.job.id, 'a');
    assert.equal(retried.job.attempts, 0, 'a retried dead letter starts its attempts again');
    assert.equal(await queue.discardDeadLetter('b'), true);
    assert.equal(await queue.discardDeadLetter('nope'), false);
    assert.deepEqual(await queue.listDeadLetters(), { total: 0, items: [] });
  });
  it('a worker reclaimed while stalled registers again before its next reserve, so a later reclaim still finds that job', async () => {
    // The real worker loop on this queue; its detection stub holds each job until released.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    // Whether the worker was registered when it held each job: prepare() runs right after the reserve.
    const registeredWhenHeld = new Map<string, boolean>();
    const detection = {
      timings: {},
      prepare: async (j: DetectionJob): Promise<PreparedJob> => {
        registeredWhenHeld.set(j.id, Boolean(await client.sIsMember(queue.keys.workers, worker.id)));
        return { job: j, capturedAt: new Date(0), frames: [] };
      },
      detectAndCommit: async () => (await gate, { written: 0, detectMs: 0 }),
      recordFailedJob: async () => {},
    } as unknown as DetectionService;
    const logger = createLogger({ logLevel: 'error', logFormat: 'json' }, 'test', { silent: true });
    // A long TTL keeps the periodic heartbeat out of the way: only the one before each reserve can re-register.
    const settings = { heartbeatTtlMs: 60_000, reclaimIntervalMs: 60_000, reserveTimeoutSeconds: 0.05, maxAttempts: 5, retryBaseMs: 10, retryMaxMs: 10 };
    const worker = new QueueWorker(queue, { detect: detectHandler(detection, settings, logger) }, ['detect'], settings, logger);
    await worker.start();
    try {
      // It stalls past its TTL and a reclaimer unregisters it (what reclaim-5.lua does, done here
      // directly so that the worker's own heartbeat cannot win the race and make the test prove nothing).
      await client.del(queue.keys.heartbeat(worker.id));
      await client.sRem(queue.keys.workers, worker.id);

      // It resumes and reserves a job, registered again by then (the periodic heartbeat is 20 s away).
      // The job comes after the blocking reserve in progress (50 ms) has ended: that one began before the SREM.
      await sleep(200);
      await queue.publish([job('a')]);
      await waitFor('the worker to reserve the job', async () => (registeredWhenHeld.has('a') ? true : undefined), 5000, 10);
      assert.equal(registeredWhenHeld.get('a'), true, 'the worker held a job while unregistered');
      assert.deepEqual(await ids(queue.keys.processing(worker.id)), ['a']);
      // ...and dies before its next periodic heartbeat: the job must still be found.
      await client.del(queue.keys.heartbeat(worker.id));
      assert.equal(await queue.reclaimOrphanedJobs(), 1, 'the job was stranded in the list of an unregistered worker');
    } finally {
      release();
      await worker.stop();
    }
  });

  describe('job kinds', () => {
    const extract = (videoId: string) => ({ kind: 'extract' as const, id: `extract:${videoId}`, videoId });

    it('keeps each kind on its own pending list: a worker reserving detect jobs never takes an extract job', async () => {
      await queue.publish([extract('v1'), job('d1')]);
      assert.deepEqual(await ids(queue.keys.pending.extract), ['extract:v1']);
      assert.deepEqual(await ids(queue.keys.pending.detect), ['d1']);
      assert.equal((await queue.reserve('w1', 'detect', 0.05))?.job.id, 'd1');
      assert.equal(await queue.reserve('w1', 'detect', 0.05), null);
      assert.equal((await queue.reserve('w1', 'extract', 0.05))?.job.id, 'extract:v1');
    });

    it('reclaims and releases a dead worker\'s jobs onto the pending list of each job\'s kind', async () => {
      await queue.publish([extract('v1'), extract('v2'), job('d1'), job('d2')]);
      for (const kind of ['extract', 'detect'] as const) await queue.reserve('dead', kind, 1);
      await queue.reserve('leaving', 'extract', 1);
      await queue.reserve('leaving', 'detect', 1);
      await client.sAdd(queue.keys.workers, 'dead'); // registered, heartbeat expired
      assert.equal(await queue.reclaimOrphanedJobs(), 2);
      assert.equal(await queue.releaseWorker('leaving'), 2);
      // Reclaimed and released jobs go to the consuming end: they run next.
      assert.deepEqual((await ids(queue.keys.pending.extract)).sort(), ['extract:v1', 'extract:v2']);
      assert.deepEqual((await ids(queue.keys.pending.detect)).sort(), ['d1', 'd2']);
      const reclaimed = (await client.lRange(queue.keys.pending.extract, 0, -1)).map((payload) => JSON.parse(payload) as { id: string; attempts?: number; kind: string });
      assert.deepEqual(reclaimed.map((j) => [j.id, j.kind, j.attempts]), [['extract:v1', 'extract', 1], ['extract:v2', 'extract', undefined]], 'reclaiming counts an attempt, a graceful release does not');
    });

    it('queues a video\'s extraction once until its job is finished, then again if asked', async () => {
      assert.equal(await queue.enqueueExtraction('v1'), true);
      assert.equal(await queue.enqueueExtraction('v1'), false);
      assert.deepEqual(await ids(queue.keys.pending.extract), ['extract:v1']);
      assert.deepEqual([...(await queue.extractionsEnqueued(['v1', 'v2']))], ['v1']);
      const held = (await queue.reserve('w1', 'extract', 1))!;
      assert.equal(await queue.enqueueExtraction('v1'), false, 'a held job counts as queued');
      await queue.extractionFinished('v1');
      await queue.ack('w1', held);
      assert.equal(await queue.enqueueExtraction('v1'), true);
    });

    it('retries a dead-lettered extract job on the extract list', async () => {
      await queue.publish([extract('v1')]);
      const held = (await queue.reserve('w1', 'extract', 1))!;
      assert.equal(await queue.deadLetter('w1', held, 'boom', 5), true);
      assert.equal(await queue.retryDeadLetter('extract:v1'), true);
      assert.deepEqual(await ids(queue.keys.pending.extract), ['extract:v1']);
      assert.equal(await client.lLen(queue.keys.pending.detect), 0);
    });

    it('moves jobs left on the pending list of an earlier version onto the detect list, oldest first', async () => {
      await client.lPush(queue.keys.legacyPending, [JSON.stringify(job('old1')), JSON.stringify(job('old2'))]);
      await queue.publish([job('new')]);
      assert.equal(await queue.adoptLegacyPending(), 2);
      assert.equal(await client.exists(queue.keys.legacyPending), 0);
      const order = [];
      for (let i = 0; i < 3; i += 1) order.push((await queue.reserve('w1', 'detect', 1))?.job.id);
      assert.deepEqual(order, ['old1', 'old2', 'new']);
    });
  });
});
