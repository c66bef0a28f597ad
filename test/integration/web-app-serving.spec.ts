import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createClient } from 'redis';
import { apiFetch } from '../helpers/api-client.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { deleteKeys, uniquePrefix } from '../helpers/redis.ts';
import { freePort, ServiceProcess } from '../helpers/service.ts';

/**
 * How the API serves the built web app (WEB_DIR): files made here stand in for a Vite build, so these
 * checks are about serving (paths, caching, security headers, no key needed), not about the app.
 */
describe('web app files served by the API (real API process)', function () {
  this.timeout(120_000);
  let db: TestDatabase;
  let tmp: string;
  let prefix: string;
  const redis = createClient({ url: 'redis://127.0.0.1:6379' });
  const processes: ServiceProcess[] = [];
  let baseUrl: string;

  before(async () => {
    db = await createTestDatabase();
    prefix = uniquePrefix();
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-web-'));
    await fs.mkdir(path.join(tmp, 'web', 'assets'), { recursive: true });
    await fs.writeFile(path.join(tmp, 'web', 'index.html'), '<!doctype html><title>vidsense</title><script type="module" src="/assets/index-AbC123.js"></script>');
    await fs.writeFile(path.join(tmp, 'web', 'assets', 'index-AbC123.js'), 'console.log("app")');
    await fs.writeFile(path.join(tmp, 'web', '.source-hash'), 'not served');
    await redis.connect();
    ({ baseUrl } = await startApi(path.join(tmp, 'web')));
  });

  after(async () => {
    await Promise.all(processes.map((p) => p.stop()));
    await deleteKeys(redis, prefix);
    await redis.quit();
    await db?.drop();
    await fs.rm(tmp, { recursive: true, force: true });
  });

  async function startApi(webDir: string): Promise<{ baseUrl: string; api: ServiceProcess }> {
    const port = await freePort();
    const api = ServiceProcess.start('api', { DATABASE_URL: db.url, QUEUE_PREFIX: prefix, STORAGE_DIR: path.join(tmp, 'storage'), PORT: String(port), HOST: '127.0.0.1', WEB_DIR: webDir });
    processes.push(api);
    await api.waitForLog('api listening');
    return { baseUrl: `http://127.0.0.1:${port}`, api };
  }

  it('serves index.html at / without a key, never cached stale, with a same-origin Content-Security-Policy', async () => {
    for (const method of ['GET', 'HEAD']) {
      const res = await apiFetch(`${baseUrl}/`, { apiKey: null, method });
      assert.equal(res.status, 200, method);
      assert.match(res.headers.get('content-type')!, /^text\/html/);
      assert.equal(res.headers.get('cache-control'), 'no-cache');
      assert.match(res.headers.get('content-security-policy')!, /default-src 'self'/);
      assert.match(res.headers.get('content-security-policy')!, /frame-ancestors 'none'/);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
      if (method === 'GET') assert.match(await res.text(), /<title>vidsense<\/title>/);
    }
  });

  it('serves hashed assets without a key, cached for a year as immutable; a missing asset is a JSON 404', async () => {
    const res = await apiFetch(`${baseUrl}/assets/index-AbC123.js`, { apiKey: null });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type')!, /javascript/);
    assert.equal(res.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    assert.equal(await res.text(), 'console.log("app")');
    for (const missing of ['/assets/index-Gone99.js', '/assets/', '/assets/../index.html']) {
      const gone = await apiFetch(`${baseUrl}${missing}`, { apiKey: null });
      assert.equal(gone.status, 404, missing);
      assert.equal(((await gone.json()) as { error: { code: string } }).error.code, 'not_found', missing);
    }
  });

  it('serves nothing else from the build directory, and shadows no API route (which still needs a key)', async () => {
    assert.equal((await apiFetch(`${baseUrl}/.source-hash`, { apiKey: null })).status, 401, 'not public, and not a file the app serves');
    assert.equal((await apiFetch(`${baseUrl}/.source-hash`)).status, 404);
    assert.equal((await apiFetch(`${baseUrl}/videos`, { apiKey: null })).status, 401);
    assert.equal((await apiFetch(`${baseUrl}/videos`)).status, 200);
  });

  it('says the app is not built (404, and a warning at start-up) when WEB_DIR has no index.html', async () => {
    const unbuilt = await startApi(path.join(tmp, 'nothing-here'));
    assert.ok(unbuilt.api.logs.some((line) => line.includes('the web app is not built')), unbuilt.api.logs.join('\n'));
    const res = await apiFetch(`${unbuilt.baseUrl}/`, { apiKey: null });
    assert.equal(res.status, 404);
    assert.deepEqual(await res.json(), { error: { code: 'not_found', message: 'the web app is not built: run npm run build:web' } });
  });
});
