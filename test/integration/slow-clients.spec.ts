/**
 * Issue 9 item 4: clients that stop sending or trickle bytes, and too many uploads at once, against a
 * real API process over real sockets. Each is answered with a JSON error (408, 429 or 503 with
 * Retry-After), its connection closed, what it staged deleted, and the API keeps serving.
 * Also item 5's port check: a taken PORT stops the process with a message naming the port.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createClient } from 'redis';
import { apiFetch, TEST_API_KEY } from '../helpers/api-client.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { leftovers, NOTHING_LEFT, storedFiles, type Deployment } from '../helpers/leftovers.ts';
import * as fixtures from '../helpers/media-fixtures.ts';
import { RawClient, uploadHead, type RawResponse } from '../helpers/raw-http.ts';
import { deleteKeys, uniquePrefix } from '../helpers/redis.ts';
import { freePort, ServiceProcess, waitFor } from '../helpers/service.ts';

const HEADERS_TIMEOUT_MS = 1_000;
const IDLE_TIMEOUT_MS = 1_500;
const REQUEST_TIMEOUT_MS = 5_000;
const BOUNDARY = 'vidsense-slow-client';
const DECLARED_BYTES = 4_000_000;

describe('slow clients and upload caps (real API process, real sockets)', function () {
  this.timeout(90_000);

  let db: TestDatabase;
  let tmp: string;
  let port: number;
  let api: ServiceProcess;
  let deployment: Deployment;
  let clip: string;
  const redis = createClient({ url: 'redis://127.0.0.1:6379' });
  const clients: RawClient[] = [];

  before(async () => {
    db = await createTestDatabase();
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-slow-'));
    const storageDir = path.join(tmp, 'storage');
    await redis.connect();
    deployment = { storageDir, redis, prefix: uniquePrefix(), sql: db.sql };
    clip = await fixtures.makeClip(tmp, { seconds: 2, fps: 10, width: 160, height: 120, format: 'mp4' });
    port = await freePort();
    api = ServiceProcess.start('api', {
      DATABASE_URL: db.url,
      QUEUE_PREFIX: deployment.prefix,
      STORAGE_DIR: storageDir,
      PORT: String(port),
      HOST: '127.0.0.1',
      API_KEY: TEST_API_KEY,
      HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
      IDLE_TIMEOUT_MS: String(IDLE_TIMEOUT_MS),
      REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
      MAX_CONCURRENT_UPLOADS: '2',
      MAX_UPLOADS_PER_CLIENT: '1',
      MIN_FREE_BYTES: '0',
    });
    await api.waitForLog('api listening');
  });

  afterEach(() => {
    for (const client of clients.splice(0)) client.destroy();
  });

  after(async () => {
    await api?.stop();
    await deleteKeys(redis, deployment.prefix);
    await redis.quit();
    await db?.drop();
    await fs.rm(tmp, { recursive: true, force: true });
  });

  async function connect(localAddress?: string): Promise<RawClient> {
    const client = await RawClient.connect(port, localAddress);
    clients.push(client);
    return client;
  }

  /** An upload that has begun: headers and 64 KB of the file sent, and the server staging them. */
  async function startedUpload(localAddress?: string): Promise<RawClient> {
    const before = (await storedFiles(deployment.storageDir)).filter((file) => file.includes('.partial-')).length;
    const client = await connect(localAddress);
    client.write(uploadHead(BOUNDARY, DECLARED_BYTES));
    client.write(Buffer.alloc(64 * 1024, 1));
    await waitFor('the upload to be staged', async () => ((await storedFiles(deployment.storageDir)).filter((file) => file.includes('.partial-')).length > before ? true : undefined), 10_000, 20);
    return client;
  }

  function assertJsonError(res: RawResponse | Omit<RawResponse, 'closedAfterMs'>, status: number, code: string, message?: RegExp): void {
    assert.equal(res.status, status, JSON.stringify(res));
    assert.match(res.headers['content-type'] ?? '', /application\/json/);
    const body = JSON.parse(res.body) as { error: { code: string; message: string } };
    assert.equal(body.error.code, code);
    if (message) assert.match(body.error.message, message);
  }

  async function assertHealthyAndClean(): Promise<void> {
    assert.ok(api.alive, 'the API exited');
    assert.equal((await apiFetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
    // Deletion of what was staged finished before the answer; a poll covers a connection torn down without one.
    await waitFor('storage to be empty', async () => ((await storedFiles(deployment.storageDir)).length === 0 ? true : undefined), 10_000, 50);
    assert.deepEqual(await leftovers(deployment), NOTHING_LEFT);
  }

  it('headers that never end: a JSON 408 with Retry-After, and the connection closed', async () => {
    const client = await connect();
    client.write('POST /videos HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n');
    const res = await client.response();
    assertJsonError(res, 408, 'request_timeout');
    assert.ok(Number(res.headers['retry-after']) >= 0, JSON.stringify(res.headers));
    assert.equal(res.headers.connection, 'close');
    await assertHealthyAndClean();
  });

  it('an upload that stops sending: 408 once it has been idle for IDLE_TIMEOUT_MS, its staged file deleted before the answer', async () => {
    const client = await startedUpload();
    const res = await client.response();
    assertJsonError(res, 408, 'request_timeout', /sent nothing for 1500 ms \(IDLE_TIMEOUT_MS\)/);
    assert.equal(res.headers['retry-after'], '1');
    assert.deepEqual(await storedFiles(deployment.storageDir), [], 'the staged bytes outlived the answer');
    await assertHealthyAndClean();
  });

  it('an upload that trickles a byte every 200 ms (never idle): 408 at REQUEST_TIMEOUT_MS, staged file deleted', async () => {
    const client = await startedUpload();
    client.trickle(200);
    const res = await client.response();
    assertJsonError(res, 408, 'request_timeout', /did not arrive within 5000 ms \(REQUEST_TIMEOUT_MS\)/);
    assert.deepEqual(await storedFiles(deployment.storageDir), []);
    await assertHealthyAndClean();
  });

  it('a second upload from the same client address while one is in progress: 429 with Retry-After; others still get in', async () => {
    const first = await startedUpload('127.0.0.1');
    first.trickle(200);
    const second = await connect('127.0.0.1');
    second.write(uploadHead(BOUNDARY, DECLARED_BYTES));
    second.write(Buffer.alloc(64 * 1024, 2));
    const refused = await second.response();
    assertJsonError(refused, 429, 'too_many_uploads', /at most 1 uploads at once from one client/);
    assert.equal(refused.headers['retry-after'], '5');
    // Another address is under its own cap and the global one (2).
    const other = await startedUpload('127.0.0.2');
    assert.equal(other.received().status, 0, 'the other client was answered instead of uploading');
    first.destroy();
    other.destroy();
    await assertHealthyAndClean();
  });

  it('more uploads in progress than MAX_CONCURRENT_UPLOADS: 503 server_busy with Retry-After', async () => {
    const held = [await startedUpload('127.0.0.2'), await startedUpload('127.0.0.3')];
    for (const client of held) client.trickle(200);
    const third = await connect('127.0.0.4');
    third.write(uploadHead(BOUNDARY, DECLARED_BYTES));
    const refused = await third.response();
    assertJsonError(refused, 503, 'server_busy');
    assert.equal(refused.headers['retry-after'], '5');
    for (const client of held) client.destroy();
    await assertHealthyAndClean();
  });

  it('keeps serving: slots are released, and a whole upload sent promptly is accepted', async () => {
    const form = new FormData();
    form.append('video', new Blob([await fs.readFile(clip)]), 'clip.mp4');
    const res = await apiFetch(`http://127.0.0.1:${port}/videos`, { method: 'POST', body: form });
    assert.equal(res.status, 202, await res.clone().text());
    const { id } = (await res.json()) as { id: string };
    assert.equal((await apiFetch(`http://127.0.0.1:${port}/videos/${id}`)).status, 200);
  });

  it('a taken PORT stops the process with a message naming the port', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const taken = (blocker.address() as net.AddressInfo).port;
    try {
      const second = ServiceProcess.start('api', {
        DATABASE_URL: db.url,
        QUEUE_PREFIX: deployment.prefix,
        STORAGE_DIR: path.join(tmp, 'other'),
        PORT: String(taken),
        HOST: '127.0.0.1',
        API_KEY: TEST_API_KEY,
      });
      const exit = await second.waitForExit();
      assert.notEqual(exit.code, 0);
      const output = second.logs.join('\n');
      assert.match(output, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${taken} \\(PORT ${taken}\\): the port is already in use \\(EADDRINUSE\\)`), output);
      assert.ok(!second.logs.some((line) => line.includes('api listening')), 'it claimed to listen');
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });
});
