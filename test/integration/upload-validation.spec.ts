import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createClient } from 'redis';
import { apiFetch, TEST_API_KEY } from '../helpers/api-client.ts';
import * as fixtures from '../helpers/media-fixtures.ts';
import { createTestDatabase, onlyRow, type TestDatabase } from '../helpers/database.ts';
import { deleteKeys, uniquePrefix } from '../helpers/redis.ts';
import { freePort, ServiceProcess } from '../helpers/service.ts';

const MAX_UPLOAD_BYTES = 3_000_000;

describe('upload validation: bad input gets a clear 4xx and leaves nothing behind (real API process)', function () {
  this.timeout(120_000);

  let db: TestDatabase;
  let prefix: string;
  let tmp: string;
  let storageDir: string;
  let baseUrl: string;
  let api: ServiceProcess;
  const redis = createClient({ url: 'redis://127.0.0.1:6379' });
  const media: Record<string, string> = {};

  before(async () => {
    db = await createTestDatabase();
    prefix = uniquePrefix();
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-upload-'));
    storageDir = path.join(tmp, 'storage');
    const dir = path.join(tmp, 'media');
    await fs.mkdir(dir);
    media.good = await fixtures.makeClip(dir, { seconds: 2, fps: 10, width: 160, height: 120, format: 'mp4' });
    media.goodFaststart = await fixtures.makeClip(dir, { seconds: 4, fps: 10, width: 320, height: 240, format: 'mp4', faststart: true, name: 'long' });
    media.truncated = await fixtures.makeTruncated(media.good, 0.5);
    media.truncatedFaststart = await fixtures.makeTruncated(media.goodFaststart, 0.6);
    media.audioOnly = await fixtures.makeAudioOnly(dir);
    media.image = await fixtures.makeImageAsMp4(dir);
    media.random = await fixtures.makeRandomBytes(dir, 200_000);
    media.text = await fixtures.makeTextAsMp4(dir);
    const port = await freePort();
    baseUrl = `http://127.0.0.1:${port}`;
    api = ServiceProcess.start('api', {
      DATABASE_URL: db.url,
      QUEUE_PREFIX: prefix,
      STORAGE_DIR: storageDir,
      PORT: String(port),
      HOST: '127.0.0.1',
      MAX_UPLOAD_BYTES: String(MAX_UPLOAD_BYTES),
      MAX_FPS: '30',
    });
    await redis.connect();
    await api.waitForLog('api listening');
  });

  after(async () => {
    await api?.stop();
    await deleteKeys(redis, prefix);
    await redis.quit();
    await db?.drop();
    await fs.rm(tmp, { recursive: true, force: true });
  });

  async function storedFiles(): Promise<string[]> {
    const entries = await fs.readdir(storageDir, { recursive: true, withFileTypes: true }).catch(() => []);
    return entries.filter((entry) => entry.isFile()).map((entry) => path.join(entry.parentPath, entry.name));
  }

  async function assertNothingLeft(): Promise<void> {
    assert.deepEqual(await storedFiles(), [], 'files left in storage');
    const keys = await redis.keys(`${prefix}*`);
    const jobs = keys.length === 0 ? 0 : (await Promise.all(keys.filter((k) => !k.includes('worker')).map((k) => redis.type(k).then((t) => (t === 'list' ? redis.lLen(k) : 0))))).reduce((a, b) => a + b, 0);
    assert.equal(jobs, 0, 'jobs left in Redis');
    const { count } = onlyRow(await db.sql<{ count: number }[]>`SELECT count(*)::int AS count FROM videos`);
    assert.equal(count, 0, 'rows left in videos');
  }

  async function expectError(res: Response, status: number, code: string): Promise<void> {
    const text = await res.text();
    assert.equal(res.status, status, text);
    assert.match(res.headers.get('content-type') ?? '', /application\/json/);
    const body = JSON.parse(text) as { error: { code: string; message: string } };
    assert.equal(body.error.code, code, text);
    assert.ok(body.error.message.length > 0);
    await assertNothingLeft();
  }

  function form(file: string | undefined, fields: Record<string, string> = {}, fileField = 'video', fileName?: string): Promise<FormData> {
    return (async () => {
      const body = new FormData();
      for (const [name, value] of Object.entries(fields)) body.append(name, value);
      if (file) body.append(fileField, new Blob([await fs.readFile(file)]), fileName ?? path.basename(file));
      return body;
    })();
  }

  const post = async (body: FormData | string, headers: Record<string, string> = {}) => apiFetch(`${baseUrl}/videos`, { method: 'POST', body, headers });

  it('no file at all', async () => expectError(await post(await form(undefined, { fps: '5' })), 400, 'missing_file'));
  it('a request that is not multipart', async () => expectError(await post('{}', { 'content-type': 'application/json' }), 400, 'missing_file'));
  it('the file in the wrong field', async () => expectError(await post(await form(media.good, {}, 'file')), 400, 'unexpected_field'));
  it('an empty file', async () => {
    const empty = path.join(tmp, 'empty.mp4');
    await fs.writeFile(empty, '');
    await expectError(await post(await form(empty)), 400, 'empty_file');
  });
  it('random bytes', async () => expectError(await post(await form(media.random!)), 415, 'unreadable_video'));
  it('text named .mp4', async () => expectError(await post(await form(media.text!)), 415, 'unreadable_video'));
  it('an image named .mp4', async () => expectError(await post(await form(media.image!)), 415, 'not_a_video'));
  it('an audio-only file', async () => expectError(await post(await form(media.audioOnly!)), 415, 'no_video_stream'));
  it('a truncated video (index lost)', async () => expectError(await post(await form(media.truncated!)), 415, 'unreadable_video'));
  it('a truncated video (header intact, data cut)', async () => expectError(await post(await form(media.truncatedFaststart!)), 422, 'truncated_video'));
  it('a bad fps', async () => {
    for (const fps of ['0', '-1', 'fast', '31', '1e9']) await expectError(await post(await form(media.good!, { fps })), 400, 'invalid_fps');
  });
  it('a bad fps sent after the file', async () => {
    const body = new FormData();
    body.append('video', new Blob([await fs.readFile(media.good!)]), 'clip.mp4');
    body.append('fps', 'nope');
    await expectError(await post(body), 400, 'invalid_fps');
  });
  it('a path-traversal file name', async () => {
    for (const name of ['../../etc/passwd.mp4', '..\\..\\evil.mp4', '/abs/path.mp4']) {
      await expectError(await post(await form(media.good!, {}, 'video', name)), 400, 'invalid_file_name');
    }
  });
  it('an over-size upload with an honest Content-Length', async () => {
    const big = path.join(tmp, 'big.mp4');
    await fs.writeFile(big, Buffer.alloc(MAX_UPLOAD_BYTES + 200_000, 1));
    await expectError(await post(await form(big)), 413, 'file_too_large');
  });
  it('an over-size upload streamed without Content-Length (chunked)', async () => {
    const res = await chunkedUpload(`${baseUrl}/videos`, MAX_UPLOAD_BYTES + 50_000);
    assert.equal(res.status, 413, res.body);
    assert.equal((JSON.parse(res.body) as { error: { code: string } }).error.code, 'file_too_large');
    await assertNothingLeft();
  });
  it('unknown routes and ids answer 404 JSON', async () => {
    await expectError(await apiFetch(`${baseUrl}/videos/00000000-0000-4000-8000-000000000000`), 404, 'not_found');
    await expectError(await apiFetch(`${baseUrl}/videos/not-a-uuid/detections`), 404, 'not_found');
    await expectError(await apiFetch(`${baseUrl}/nope`), 404, 'not_found');
  });

  it('keeps serving: a good upload is still accepted after all of the above', async () => {
    assert.ok(api.alive);
    const res = await post(await form(media.good!, { fps: 'all' }));
    assert.equal(res.status, 202, await res.clone().text());
    const { id } = (await res.json()) as { id: string };
    const status = await apiFetch(`${baseUrl}/videos/${id}`);
    assert.equal(status.status, 200);
    const detections = await apiFetch(`${baseUrl}/videos/${id}/detections?limit=0`);
    await expectStatusOnly(detections, 400);
    const health = await apiFetch(`${baseUrl}/healthz`);
    assert.equal(health.status, 200);
  });
});

async function expectStatusOnly(res: Response, status: number): Promise<void> {
  assert.equal(res.status, status, await res.text());
}

/** A multipart upload sent with chunked transfer encoding, so the server cannot refuse it by its declared length. */
function chunkedUpload(url: string, fileBytes: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const boundary = 'vidsense-test-boundary';
    const req = http.request(url, { method: 'POST', headers: { authorization: `Bearer ${TEST_API_KEY}`, 'content-type': `multipart/form-data; boundary=${boundary}`, 'transfer-encoding': 'chunked' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', (error: NodeJS.ErrnoException) => {
      // The server may answer and close before the whole body is sent; the answer is what matters.
      if (error.code !== 'EPIPE' && error.code !== 'ECONNRESET') reject(error);
    });
    req.write(`--${boundary}\r\nContent-Disposition: form-data; name="video"; filename="big.mp4"\r\nContent-Type: video/mp4\r\n\r\n`);
    const chunk = Buffer.alloc(64 * 1024, 7);
    let sent = 0;
    const pump = () => {
      while (sent < fileBytes) {
        sent += chunk.length;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
      req.end(`\r\n--${boundary}--\r\n`);
    };
    pump();
  });
}
