/**
 * The API under failure: PostgreSQL unreachable, a lossy Redis, SIGTERM during an upload; an extracting
 * worker stopped by SIGTERM; and the admin API's discarding of dead letters.
 * Real processes, a private redis-server with AOF and an own database per test.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { apiFetch } from '../helpers/api-client.ts';
import { cutClip, VTEST_AVI } from '../helpers/media-fixtures.ts';
import { freePort, ServiceProcess, sleep, waitFor } from '../helpers/service.ts';
import { Stack } from '../helpers/stack.ts';
import { TcpProxy } from '../helpers/tcp-proxy.ts';

describe('API resilience (real processes)', function () {
  this.timeout(180_000);

  let tmp: string;
  let clip: string;
  let stack: Stack | undefined;

  before(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-api-resilience-'));
    clip = await cutClip(VTEST_AVI, 2, path.join(tmp, 'vtest-2s.mp4'));
  });
  afterEach(async () => {
    await stack?.stop();
    stack = undefined;
  });
  after(() => fs.rm(tmp, { recursive: true, force: true }));

  async function storedFiles(dir: string): Promise<string[]> {
    const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
    return entries.filter((entry) => entry.isFile()).map((entry) => entry.name);
  }

  it('answers 503 JSON while PostgreSQL is unreachable, leaves nothing behind, and recovers', async () => {
    stack = await Stack.start(tmp);
    const pg = new URL(stack.db.url);
    const proxy = await TcpProxy.start({ host: pg.hostname, port: Number(pg.port) });
    try {
      const api = ServiceProcess.start('api', { ...stack.env, DATABASE_URL: proxy.url(stack.db.url) });
      stack.processes.push(api);
      await api.waitForLog('api listening');
      const id = await stack.upload(clip, '5');

      await proxy.cut();
      const status = await apiFetch(`${stack.baseUrl}/videos/${id}`);
      assert.equal(status.status, 503);
      assert.equal(((await status.json()) as { error: { code: string } }).error.code, 'service_unavailable');
      const filesBefore = await storedFiles(stack.storageDir);
      const form = new FormData();
      form.append('video', new Blob([await fs.readFile(clip)]), 'clip.mp4');
      const upload = await apiFetch(`${stack.baseUrl}/videos`, { method: 'POST', body: form });
      assert.equal(upload.status, 503, await upload.clone().text());
      assert.deepEqual(await storedFiles(stack.storageDir), filesBefore, 'the refused upload left files behind');
      assert.equal((await apiFetch(`${stack.baseUrl}/healthz`)).status, 200);
      const ready = await apiFetch(`${stack.baseUrl}/readyz`);
      assert.equal(ready.status, 503);
      assert.equal(((await ready.json()) as { checks: { postgres: { ok: boolean }; redis: { ok: boolean } } }).checks.postgres.ok, false);

      await proxy.restore();
      await waitFor('the API to reach PostgreSQL again', async () => ((await apiFetch(`${stack!.baseUrl}/videos/${id}`)).status === 200 ? true : undefined), 30_000, 200);
      assert.ok(api.alive);
    } finally {
      await proxy.close();
    }
  });

  it('warns about a lossy Redis, and refuses to start on one when REQUIRE_DURABLE_REDIS=true', async () => {
    stack = await Stack.start(tmp);
    // The machine's shared Redis runs without AOF: exactly the lossy set-up the check is for.
    const lossy = { ...stack.env, REDIS_URL: 'redis://127.0.0.1:6379', PORT: String(await freePort()) };
    const refused = ServiceProcess.start('api', { ...lossy, REQUIRE_DURABLE_REDIS: 'true' });
    const exit = await refused.waitForExit();
    assert.notEqual(exit.code, 0);
    assert.ok(refused.logs.some((line) => /REQUIRE_DURABLE_REDIS=true but Redis is not durable: appendonly is off/.test(line)), refused.logs.join('\n'));

    const warned = ServiceProcess.start('api', { ...lossy, REQUIRE_DURABLE_REDIS: 'false' });
    stack.processes.push(warned);
    await warned.waitForLog('api listening');
    assert.ok(warned.logs.some((line) => line.includes('redis durability: appendonly is off')));

    // The private server has AOF with fsync always and noeviction: the strict setting starts.
    await stack.startApi();
  });

  it('is ready without a model file (workers load it, not the API), and not ready when its storage is unusable', async () => {
    stack = await Stack.start(tmp, { MODEL_PATH: path.join(tmp, 'no-such-dir', 'yolov8n.onnx') });
    await stack.startApi();
    const ready = await apiFetch(`${stack.baseUrl}/readyz`);
    const body = (await ready.json()) as { status: string; checks: Record<string, { ok: boolean; detail?: unknown }> };
    assert.equal(ready.status, 200, JSON.stringify(body));
    assert.deepEqual(Object.keys(body.checks).sort(), ['postgres', 'redis', 'storage']);
    const storage = body.checks.storage as { ok: boolean; detail: { driver: string; freeBytes: number; minFreeBytes: number } };
    assert.deepEqual([storage.ok, storage.detail.driver, storage.detail.minFreeBytes], [true, 'local', 1024 ** 3]);
    assert.ok(storage.detail.freeBytes >= storage.detail.minFreeBytes, JSON.stringify(storage));

    // A storage root that is a file: listing under it fails, so the storage check is a real one.
    const notADirectory = path.join(tmp, 'storage-is-a-file');
    await fs.writeFile(notADirectory, '');
    const port = await freePort();
    const broken = ServiceProcess.start('api', { ...stack.env, STORAGE_DIR: notADirectory, PORT: String(port) });
    stack.processes.push(broken);
    await broken.waitForLog('api listening');
    const notReady = await apiFetch(`http://127.0.0.1:${port}/readyz`);
    assert.equal(notReady.status, 503);
    assert.equal(((await notReady.json()) as { checks: { storage: { ok: boolean } } }).checks.storage.ok, false);
  });

  /**
   * An upload whose body arrives in two halves, the second only after resume(): the API holds it open
   * (and a shutdown waits for it) until then. Resolves once the first half is staged.
   */
  async function slowUpload(): Promise<{ upload: Promise<Response>; resume: () => void; size: number }> {
    const video = await fs.readFile(clip);
    const boundary = `vidsense-${randomUUID()}`;
    let resume!: () => void;
    const resumed = new Promise<void>((resolve) => (resume = resolve));
    const parts: Array<Buffer | 'wait'> = [
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="fps"\r\n\r\n5\r\n--${boundary}\r\nContent-Disposition: form-data; name="video"; filename="clip.mp4"\r\nContent-Type: video/mp4\r\n\r\n`),
      video.subarray(0, video.length >> 1),
      'wait',
      video.subarray(video.length >> 1),
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ];
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        let next = parts.shift();
        if (next === 'wait') {
          await resumed;
          next = parts.shift();
        }
        if (next === undefined) controller.close();
        else controller.enqueue(next as Buffer);
      },
    });
    const upload = apiFetch(`${stack!.baseUrl}/videos`, { method: 'POST', body, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` }, duplex: 'half' } as RequestInit & { duplex: 'half' });
    upload.catch(() => undefined); // awaited by the caller
    await waitFor('the first half to be staged', async () => ((await storedFiles(stack!.storageDir)).some((name) => name.includes('.partial-')) ? true : undefined), 30_000, 20);
    return { upload, resume, size: video.length };
  }

  it('one stop request delivered twice at once (a process group signal plus npm relaying it) still shuts down gracefully; a later one forces exit', async () => {
    stack = await Stack.start(tmp, { SHUTDOWN_TIMEOUT_MS: '60000' });
    // Busy with an upload still arriving, so the shutdown is still running when the second signal arrives.
    const busy = async () => {
      const api = await stack!.startApi();
      const { upload, resume } = await slowUpload();
      api.kill('SIGTERM');
      return { api, upload, resume };
    };
    const first = await busy();
    // Apart enough that the kernel delivers two signals (a pending one is not queued twice).
    await sleep(100);
    first.api.kill('SIGTERM');
    await first.api.waitForLog('shutting down');
    first.resume();
    assert.equal((await first.upload).status, 202);
    assert.deepEqual(await first.api.waitForExit(), { code: 0, signal: null }, first.api.logs.slice(-5).join('\n'));

    const again = await busy();
    // The grace second counts from the handler of the first signal, which a busy process may run late.
    await again.api.waitForLog('shutting down');
    await sleep(1_500);
    assert.ok(again.api.alive, `the API was no longer waiting for the upload:\n${again.api.logs.slice(-5).join('\n')}`);
    again.api.kill('SIGTERM');
    assert.deepEqual(await again.api.waitForExit(), { code: 1, signal: null });
    assert.ok(again.api.logs.some((line) => line.includes('second signal')));
    again.resume();
  });

  it('an extracting worker on SIGTERM stops its extraction, hands the job back and exits; the next one resumes it from the checkpoint', async () => {
    stack = await Stack.start(tmp, { SHUTDOWN_TIMEOUT_MS: '60000' });
    await stack.startApi();
    const first = await stack.startExtractor();
    const id = await stack.upload(VTEST_AVI, 'all'); // 795 frames: extraction takes a few seconds
    await waitFor('a few published batches', async () => ((await stack!.framesPublished(id)) >= 8 ? true : undefined), 60_000, 5);
    first.kill('SIGTERM');
    assert.deepEqual(await first.waitForExit(), { code: 0, signal: null }, first.logs.slice(-5).join('\n'));
    assert.ok(!first.logs.some((line) => line.includes('"extraction finished"')), 'the extraction ran to its end; the test proves nothing');
    const stopped = first.logs.find((line) => line.includes('"worker stopped"'));
    assert.equal((JSON.parse(stopped!) as { handedBack: number }).handedBack, 1);
    assert.equal(await stack.redis.lLen(stack.keys.pending.extract), 1, 'the extraction job is queued again');
    const [row] = await stack.db.sql<{ frames_total: number | null; status: string; frames_published: number }[]>`SELECT frames_total, status, frames_published FROM videos WHERE id = ${id}`;
    assert.deepEqual([row!.status, row!.frames_total], ['extracting', null], 'a stopped extraction does not fail the video');

    const second = await stack.startExtractor();
    const video = await stack.waitFor('the resumed extraction', (v) => v.framesTotal !== null, id, 120_000);
    assert.deepEqual([video.status, video.framesTotal], ['processing', 795]);
    const resumed = second.logs.find((line) => line.includes('resuming an extraction'));
    assert.equal((JSON.parse(resumed!) as { fromFrame: number }).fromFrame, row!.frames_published);
    assert.equal(await stack.framesInRedis(), 795, 'every frame queued for detection exactly once');
  });

  it('on SIGTERM finishes an upload still arriving, accepts it and queues its extraction, then exits', async () => {
    stack = await Stack.start(tmp, { SHUTDOWN_TIMEOUT_MS: '60000' });
    const api = await stack.startApi();
    // A multipart body sent in two halves: the second only after SIGTERM.
    const { upload, resume, size } = await slowUpload();
    api.kill('SIGTERM');
    await listenerClosed(stack.baseUrl);
    assert.ok(api.alive, 'the API exited with an upload in flight');
    resume();

    const res = await upload;
    assert.equal(res.status, 202, await res.clone().text());
    const { id } = (await res.json()) as { id: string };
    const exit = await api.waitForExit();
    assert.deepEqual(exit, { code: 0, signal: null }, api.logs.slice(-5).join('\n'));
    const [row] = await stack.db.sql<{ frames_total: number | null; status: string; size_bytes: number }[]>`SELECT frames_total, status, size_bytes FROM videos WHERE id = ${id}`;
    assert.deepEqual(row, { frames_total: null, status: 'queued', size_bytes: size });
    const queued = (await stack.redis.lRange(stack.keys.pending.extract, 0, -1)).map((payload) => JSON.parse(payload) as { kind: string; videoId: string });
    assert.deepEqual(queued.map((job) => [job.kind, job.videoId]), [['extract', id]], 'its extraction job is queued for the workers');
  });

  it('admin API: DELETE discards exactly one dead letter, needs an admin key, and answers 404 once it is gone', async () => {
    stack = await Stack.start(tmp);
    await stack.startApi();
    const deadLetter = (jobId: string) => ({
      job: { id: jobId, videoId: randomUUID(), frames: [{ index: 0, ptsMs: 0, key: 'videos/x/frames/000000.jpg' }], attempts: 5 },
      error: 'ENOENT: frame missing',
      attempts: 5,
      failedAt: new Date().toISOString(),
    });
    const kept = deadLetter('video-a:0');
    const dropped = deadLetter('video-b:4');
    await stack.redis.lPush(stack.keys.deadLetters, [JSON.stringify(kept), JSON.stringify(dropped)]);
    const url = `${stack.baseUrl}/admin/dead-letters/${encodeURIComponent(dropped.job.id)}`;

    assert.equal((await apiFetch(url, { method: 'DELETE', apiKey: null })).status, 401);
    assert.equal((await apiFetch(url, { method: 'DELETE', apiKey: 'wrong-token-of-same-size' })).status, 401);
    assert.equal(await stack.redis.lLen(stack.keys.deadLetters), 2, 'an unauthorised DELETE changed something');

    const discarded = await apiFetch(url, { method: 'DELETE' });
    assert.equal(discarded.status, 204);
    const listed = (await (await apiFetch(`${stack.baseUrl}/admin/dead-letters`)).json()) as { total: number; items: Array<{ job: { id: string } }> };
    assert.deepEqual([listed.total, listed.items.map((item) => item.job.id)], [1, [kept.job.id]]);
    assert.equal(await stack.redis.lLen(stack.keys.pending.detect), 0, 'a discarded job must not be queued');

    const again = await apiFetch(url, { method: 'DELETE' });
    assert.equal(again.status, 404);
    assert.equal(((await again.json()) as { error: { code: string } }).error.code, 'not_found');
  });
});

/** Resolves once the API refuses connections: it takes no new requests. */
function listenerClosed(baseUrl: string): Promise<true> {
  return waitFor('the listener to close', async () => {
    try {
      await apiFetch(`${baseUrl}/healthz`);
      return undefined;
    } catch {
      return true;
    }
  }, 10_000, 20);
}
