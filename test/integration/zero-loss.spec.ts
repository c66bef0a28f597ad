/**
 * Zero message loss, proven by killing real processes. Each test runs real API and worker processes
 * against its own redis-server (AOF, appendfsync always, on a free loopback port) and its own database.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { DetectionJob } from '../../src/queue/types.ts';
import { apiFetch } from '../helpers/api-client.ts';
import { cutClip, VTEST_AVI } from '../helpers/media-fixtures.ts';
import { sleep, waitFor } from '../helpers/service.ts';
import { Stack } from '../helpers/stack.ts';
import { TcpProxy } from '../helpers/tcp-proxy.ts';

describe('zero message loss under real process failures', function () {
  this.timeout(300_000);

  let tmp: string;
  let clip: string;
  let stack: Stack | undefined;

  before(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-zero-loss-'));
    clip = await cutClip(VTEST_AVI, 8, path.join(tmp, 'vtest-8s.mp4')); // 40 frames at 5 fps
  });
  afterEach(async () => {
    await stack?.stop();
    stack = undefined;
  });
  after(() => fs.rm(tmp, { recursive: true, force: true }));

  it('1. a worker SIGKILLed in the middle of a batch: every frame gets exactly one set of detections, and no frame is left in storage', async () => {
    // The production default: frames are deleted after their commit, so a redelivery must not need them.
    stack = await Stack.start(tmp, { KEEP_FRAMES: 'false' });
    await stack.startApi();
    // Extracted first, by an extract-only worker: this is about a kill in the middle of detection (one
    // mid-extraction is case 7), and every frame is stored before the detector deletes any.
    await stack.startExtractor();
    const id = await stack.upload(clip, '5');
    await stack.waitFor('extraction', (v) => v.framesTotal !== null, id);
    const doomed = await stack.startWorker({ WORKER_ROLES: 'detect' });
    await stack.waitFor('first commits', (v) => v.framesDone >= 8, id);
    // The emptiness checked at the end is only meaningful if this finds the frames where they are.
    assert.ok((await stack.storedFrames(id)).length > 0, 'no frame files found in storage while the video was processing');
    doomed.kill('SIGKILL');
    await doomed.waitForExit();
    assert.ok((await stack.redis.lLen(stack.keys.processing(stack.workerId(doomed)))) > 0, 'the killed worker held no job');
    await stack.startWorker();
    const video = await stack.waitCompleted(id);
    assert.deepEqual([video.status, video.framesDone, video.framesTotal, video.framesFailed, video.error], ['completed', 40, 40, 0, null]);
    await stack.assertExactlyOnce(id, 40);
    // Each job deletes its frames before its ack, so once Redis holds nothing, storage must hold nothing.
    await waitFor('the last ack', async () => ((await stack!.framesInRedis()) === 0 ? true : undefined), 30_000, 50);
    assert.deepEqual(await stack.storedFrames(id), []);
  });

  it('2. redis-server SIGKILLed after uploads were queued, restarted on its AOF: every job is still there and gets processed', async () => {
    stack = await Stack.start(tmp);
    await stack.startApi();
    const extractor = await stack.startExtractor(); // extracts, but detects nothing: the jobs stay queued
    const ids = [await stack.upload(clip, '2'), await stack.upload(clip, '2')]; // 16 frames each, 4 jobs each
    for (const id of ids) await stack.waitFor('extraction', (v) => v.framesTotal !== null, id);
    await extractor.stop();
    const before = await stack.redis.lRange(stack.keys.pending.detect, 0, -1);
    assert.equal(before.length, 8);

    await stack.redisServer.kill('SIGKILL');
    await stack.redisServer.restart();
    await waitFor('the test client to reconnect', async () => ((await stack!.redis.ping()) === 'PONG' ? true : undefined));
    assert.deepEqual(await stack.redis.lRange(stack.keys.pending.detect, 0, -1), before, 'the AOF gave back exactly the queued jobs');

    await stack.startWorker();
    for (const id of ids) {
      const video = await stack.waitCompleted(id);
      assert.deepEqual([video.status, video.framesDone], ['completed', 16]);
      await stack.assertExactlyOnce(id, 16);
    }
  });

  it('3. PostgreSQL unreachable mid-run: no job is acknowledged without its rows, and all rows are there after recovery', async () => {
    const base = await Stack.start(tmp);
    stack = base;
    const pg = new URL(base.db.url);
    const proxy = await TcpProxy.start({ host: pg.hostname, port: Number(pg.port) });
    try {
      await stack.startApi();
      // Extracted first, by an extract-only worker, so every frame is queued before detection starts: the
      // outage then always meets detection with frames left, however busy the machine.
      await stack.startExtractor();
      const id = await stack.upload(clip, '5');
      await stack.waitFor('extraction', (v) => v.framesTotal !== null, id);
      // Only the detecting worker reaches PostgreSQL through the proxy, so the API keeps answering status.
      const worker = await stack.startWorker({ DATABASE_URL: proxy.url(base.db.url), WORKER_ROLES: 'detect' });
      const workerId = stack.workerId(worker);
      const all = Array.from({ length: 40 }, (_, i) => i);
      // Every frame is committed or still owned by Redis at every sample: nothing was acked early. Redis
      // is read first (atomically): a frame that leaves it was committed before, so the read after sees it.
      const assertNoFrameLost = async (when: string) => {
        const held = await stack!.frameIndexesInRedis(id, [workerId]);
        const committed = await stack!.committedFrameIndexes(id);
        const lost = all.filter((i) => !held.has(i) && !committed.has(i));
        assert.deepEqual(lost, [], `${when}: frames neither committed nor in Redis`);
      };
      let video = await stack.waitFor('extraction and first commits', (v) => v.framesTotal !== null && v.framesDone >= 4, id);
      assert.equal(video.framesTotal, 40);

      for (let outage = 1; outage <= 2; outage += 1) {
        await proxy.cut();
        const noticed = worker.logs.filter((l) => l.includes('backing service unavailable')).length;
        for (let i = 0; i < 10; i += 1) {
          await assertNoFrameLost(`outage ${outage}, sample ${i}`);
          await sleep(200);
        }
        assert.ok(worker.alive, `the worker survived the outage; its last logs:\n${worker.logs.slice(-30).join('\n')}`);
        // It notices once it next reaches PostgreSQL, after the inference in hand: allow for a busy machine.
        await waitFor(`the worker to notice outage ${outage}`, async () => (worker.logs.filter((l) => l.includes('backing service unavailable')).length > noticed ? true : undefined), 30_000, 100);
        assert.ok((await stack.video(id)).status !== 'completed', `the video completed before outage ${outage} ended; the test proves less`);
        await proxy.restore();
        // Some progress between the outages, checked all along.
        const before = video.framesDone;
        video = await stack.waitFor('progress after the outage', (v) => v.framesDone > before || v.status === 'completed', id);
        await assertNoFrameLost(`after outage ${outage}`);
      }

      video = await stack.waitCompleted(id);
      assert.deepEqual([video.status, video.framesDone, video.framesFailed], ['completed', 40, 0]);
      await stack.assertExactlyOnce(id, 40);
      assert.equal(await stack.framesInRedis(), 0);
    } finally {
      await proxy.close();
    }
  });

  it('4. a poison job (an unreadable frame) is dead-lettered after MAX_ATTEMPTS while the rest of the video completes; retrying it repairs the video', async () => {
    stack = await Stack.start(tmp, { MAX_ATTEMPTS: '2' });
    await stack.startApi();
    await stack.startExtractor();
    const id = await stack.upload(clip, '5');
    await stack.waitFor('extraction', (v) => v.framesTotal === 40, id);
    const frameFile = path.join(stack.storageDir, 'videos', id, 'frames', '000013.jpg'); // in the job of frames 12..15
    const saved = await fs.readFile(frameFile);
    await fs.rm(frameFile);

    await stack.startWorker();
    let video = await stack.waitCompleted(id);
    assert.deepEqual([video.status, video.framesDone, video.framesFailed], ['completed', 36, 4]);
    assert.match(video.error ?? '', /^4 of 40 frames failed: dead-lettered after 2 attempts: .*ENOENT/);

    assert.equal((await apiFetch(`${stack.baseUrl}/admin/dead-letters`, { apiKey: null })).status, 401);
    const dead = (await (await apiFetch(`${stack.baseUrl}/admin/dead-letters`)).json()) as { total: number; items: Array<{ job: DetectionJob; error: string; attempts: number }> };
    assert.equal(dead.total, 1);
    assert.deepEqual(dead.items[0]!.job.frames.map((f) => f.index), [12, 13, 14, 15]);
    assert.equal(dead.items[0]!.attempts, 2);
    assert.match(dead.items[0]!.error, /ENOENT/);
    const page = (await (await apiFetch(`${stack.baseUrl}/videos/${id}/detections?cursor=11&limit=4`)).json()) as { frames: Array<{ frameIndex: number; error?: string }> };
    assert.ok(page.frames.every((f) => /dead-lettered after 2 attempts/.test(f.error ?? '')));

    // The operator fixes the cause and retries: the frames are processed and replace the failures.
    await fs.writeFile(frameFile, saved);
    const retry = await apiFetch(`${stack.baseUrl}/admin/dead-letters/${encodeURIComponent(dead.items[0]!.job.id)}/retry`, { method: 'POST' });
    assert.equal(retry.status, 202);
    video = await stack.waitFor('the retried frames', (v) => v.framesDone === 40, id);
    assert.deepEqual([video.status, video.framesFailed, video.error], ['completed', 0, null]);
    await stack.assertExactlyOnce(id, 40);
    assert.equal(((await (await apiFetch(`${stack.baseUrl}/admin/dead-letters`)).json()) as { total: number }).total, 0);
  });

  it('5. twenty uploads, two workers, one SIGKILLed and restarted twice: detections equal a clean run, row for row', async () => {
    // The twenty uploads come at once from one address: the per-client upload cap (default 4) must let them in.
    stack = await Stack.start(tmp, { MAX_UPLOADS_PER_CLIENT: '20' });
    await stack.startApi();
    const short = await cutClip(VTEST_AVI, 2, path.join(tmp, 'vtest-2s.mp4')); // 10 frames at 5 fps
    const steady = await stack.startWorker();
    const reference = await stack.upload(short, '5');
    await stack.waitCompleted(reference);
    const clean = await stack.detectionRows(reference);
    assert.ok(clean.length > 0);

    const ids = await Promise.all(Array.from({ length: 20 }, () => stack!.upload(short, '5')));
    let victim = await stack.startWorker();
    for (let kill = 0; kill < 2; kill += 1) {
      const committedBefore = await stack.framesCommitted();
      await waitFor('progress before the kill', async () => ((await stack!.framesCommitted()) >= committedBefore + 12 ? true : undefined), 120_000, 50);
      // Kill while it holds two jobs (one on each detector lane, or one inferring and one prefetched), so the kill strands real work.
      const held = stack.keys.processing(stack.workerId(victim));
      await waitFor('the victim to hold two jobs', async () => ((await stack!.redis.lLen(held)) >= 2 ? true : undefined), 60_000, 5);
      victim.kill('SIGKILL');
      await victim.waitForExit();
      assert.ok((await stack.redis.lLen(held)) > 0, `kill ${kill + 1}: the victim held no job`);
      victim = await stack.startWorker();
    }
    for (const id of ids) {
      const video = await stack.waitCompleted(id);
      assert.deepEqual([video.status, video.framesDone], ['completed', 10], id);
      await stack.assertExactlyOnce(id, 10);
      assert.deepEqual(await stack.detectionRows(id), clean, `video ${id} differs from the clean run`);
    }
    assert.ok(steady.alive);
  });

  it('6. SIGTERM during processing: the worker exits within the timeout and nothing is lost', async () => {
    // One detector lane, which prefetches its next job: a job on the detector is finished at SIGTERM, the
    // prefetched one handed back. (With a lane per core, each held job is on a lane and is finished.)
    stack = await Stack.start(tmp, { SHUTDOWN_TIMEOUT_MS: '10000', KEEP_FRAMES: 'false', DETECT_LANES: '1' });
    await stack.startApi();
    const worker = await stack.startWorker();
    const id = await stack.upload(clip, '5');
    await stack.waitFor('first commits', (v) => v.framesDone >= 8, id);
    // SIGTERM while it holds a job on the detector and one prefetched.
    const held = stack.keys.processing(stack.workerId(worker));
    await waitFor('the worker to hold two jobs', async () => ((await stack!.redis.lLen(held)) >= 2 ? true : undefined), 60_000, 5);
    assert.ok((await stack.storedFrames(id)).length > 0, 'no frame files found in storage while the video was processing');
    const started = Date.now();
    worker.kill('SIGTERM');
    const exit = await worker.waitForExit();
    const tookMs = Date.now() - started;
    assert.equal(exit.code, 0, worker.logs.slice(-5).join('\n'));
    assert.ok(tookMs < 10_000, `shutdown took ${tookMs} ms`);
    const stopped = worker.logs.find((l) => l.includes('"worker stopped"'));
    assert.ok(stopped);
    assert.ok((JSON.parse(stopped) as { handedBack: number }).handedBack >= 1, 'the worker held no job to hand back at SIGTERM');
    // It handed back what it held: nothing is left in its processing list.
    assert.equal(await stack.redis.lLen(stack.keys.processing(stack.workerId(worker))), 0);
    const video = await stack.video(id);
    if (video.status !== 'completed') {
      // The worker also extracts: an extraction it stopped went back to the queue, to resume from its checkpoint.
      const published = video.framesTotal ?? (await stack.framesPublished(id));
      assert.ok((await stack.framesInRedis()) + (await stack.framesCommitted(id)) >= published, 'a published frame is neither queued nor committed');
      if (video.framesTotal === null) assert.equal(await stack.redis.lLen(stack.keys.pending.extract), 1, 'the stopped extraction is not queued again');
      await stack.startWorker();
    }
    const done = await stack.waitCompleted(id);
    assert.deepEqual([done.status, done.framesDone], ['completed', 40]);
    await stack.assertExactlyOnce(id, 40);
    // The handed-back jobs were redelivered, and still left no frame behind.
    await waitFor('the last ack', async () => ((await stack!.framesInRedis()) === 0 ? true : undefined), 30_000, 50);
    assert.deepEqual(await stack.storedFrames(id), []);
  });

  it('7. an extracting worker SIGKILLed mid-extraction: another worker reclaims the job and resumes it without re-extracting stored frames; detections equal a clean run', async () => {
    stack = await Stack.start(tmp);
    await stack.startApi();
    const source = await cutClip(VTEST_AVI, 30, path.join(tmp, 'vtest-30s.mp4')); // 300 frames decoded, 60 sampled at 2 fps
    // The clean run first, on the same workers' settings: an extractor and a detector.
    await stack.startWorker({ WORKER_ROLES: 'detect' });
    const extractor = await stack.startExtractor();
    const reference = await stack.upload(source, '2');
    const clean = await stack.waitCompleted(reference);
    assert.deepEqual([clean.status, clean.framesTotal], ['completed', 60]);
    const cleanRows = await stack.detectionRows(reference);
    await extractor.stop();

    const doomed = await stack.startExtractor();
    const id = await stack.upload(source, '2');
    // Frozen (SIGSTOP) as soon as a few batches are checkpointed, so it cannot finish before the kill.
    await waitFor('a few published batches', async () => ((await stack!.framesPublished(id)) >= 8 ? true : undefined), 60_000, 5);
    doomed.kill('SIGSTOP');
    const checkpoint = await stack.framesPublished(id);
    const [stranded] = await stack.db.sql<{ frames_total: number | null }[]>`SELECT frames_total FROM videos WHERE id = ${id}`;
    assert.equal(stranded!.frames_total, null, 'extraction finished before the kill; the test proves nothing');
    assert.ok(checkpoint < 60, `checkpoint ${checkpoint}`);
    assert.ok((await stack.redis.lLen(stack.keys.processing(stack.workerId(doomed)))) === 1, 'the extractor holds its job');
    // The frames below the checkpoint, with their modification times.
    const frameFile = (index: number) => path.join(stack!.storageDir, 'videos', id, 'frames', `${String(index).padStart(6, '0')}.jpg`);
    const stored = new Map<number, number>();
    for (let index = 0; index < checkpoint; index += 1) stored.set(index, (await fs.stat(frameFile(index))).mtimeMs);
    doomed.kill('SIGKILL');
    await doomed.waitForExit();

    const rescuer = await stack.startExtractor();
    const video = await stack.waitCompleted(id);
    assert.deepEqual([video.status, video.framesTotal, video.framesDone, video.framesFailed, video.error], ['completed', 60, 60, 0, null]);
    await stack.assertExactlyOnce(id, 60);
    assert.deepEqual(await stack.detectionRows(id), cleanRows, 'detections differ from the clean run');
    // Resumed at the checkpoint: the frames stored before the kill were not written again.
    const resumed = rescuer.logs.find((line) => line.includes('resuming an extraction'));
    assert.ok(resumed, 'the rescuer did not resume the extraction');
    assert.equal((JSON.parse(resumed) as { fromFrame: number }).fromFrame, checkpoint);
    for (const [index, mtimeMs] of stored) assert.equal((await fs.stat(frameFile(index))).mtimeMs, mtimeMs, `frame ${index} was extracted again`);
    const finished = rescuer.logs.find((line) => line.includes('"extraction finished"'));
    assert.equal((JSON.parse(finished!) as { skipped: number }).skipped, checkpoint);
  });
});
