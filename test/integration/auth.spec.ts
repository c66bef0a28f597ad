import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { createClient } from 'redis';
import { apiFetch, TEST_API_KEY } from '../helpers/api-client.ts';
import { createTestDatabase, onlyRow, type TestDatabase } from '../helpers/database.ts';
import { cutClip, VTEST_AVI } from '../helpers/media-fixtures.ts';
import { deleteKeys, uniquePrefix } from '../helpers/redis.ts';
import { freePort, ServiceProcess, waitFor } from '../helpers/service.ts';

interface CreatedKey {
  id: string;
  name: string;
  scopes: string[];
  key: string;
  createdAt: string;
}

const UNAUTHORIZED = { error: { code: 'unauthorized', message: 'send a valid API key (Authorization: Bearer <key>) or sign in' } };

describe('API keys, scopes, ownership and sessions: a real API process and PostgreSQL', function () {
  this.timeout(180_000);

  let db: TestDatabase;
  let prefix: string;
  let tmp: string;
  let clip: string;
  let baseUrl: string;
  let env: Record<string, string>;
  const processes: ServiceProcess[] = [];
  const redis = createClient({ url: 'redis://127.0.0.1:6379' });

  async function startApi(extra: Record<string, string> = {}): Promise<ServiceProcess> {
    const api = ServiceProcess.start('api', { ...env, ...extra });
    processes.push(api);
    await api.waitForLog('api listening', 120_000);
    return api;
  }

  async function createKey(name: string, scopes: string[]): Promise<CreatedKey> {
    const res = await apiFetch(`${baseUrl}/admin/keys`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name, scopes }) });
    assert.equal(res.status, 201, await res.clone().text());
    return (await res.json()) as CreatedKey;
  }

  async function upload(apiKey: string | null): Promise<Response> {
    const form = new FormData();
    form.append('fps', '1');
    form.append('video', new Blob([await fs.readFile(clip)]), 'clip.mp4');
    return apiFetch(`${baseUrl}/videos`, { method: 'POST', body: form, apiKey });
  }

  async function expectError(res: Response, status: number, code: string): Promise<void> {
    const body = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(res.status, status, JSON.stringify(body));
    assert.equal(body.error.code, code);
  }

  before(async () => {
    db = await createTestDatabase();
    prefix = uniquePrefix();
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-auth-'));
    clip = await cutClip(VTEST_AVI, 2, path.join(tmp, 'clip.mp4'));
    const port = await freePort();
    baseUrl = `http://127.0.0.1:${port}`;
    env = { DATABASE_URL: db.url, QUEUE_PREFIX: prefix, STORAGE_DIR: path.join(tmp, 'storage'), PORT: String(port), HOST: '127.0.0.1' };
    await redis.connect();
    await startApi();
  });

  after(async () => {
    await Promise.all(processes.map((p) => p.stop()));
    await deleteKeys(redis, prefix);
    await redis.quit();
    await db?.drop();
    await fs.rm(tmp, { recursive: true, force: true });
  });

  it('answers health, the OpenAPI document and the web app paths without a key, and 401 for everything else', async () => {
    for (const open of ['/healthz', '/readyz', '/openapi.json']) assert.equal((await apiFetch(`${baseUrl}${open}`, { apiKey: null })).status, 200, open);
    // The web app's files are the web app's to serve (404 while it is not built); they never ask for a key.
    for (const page of ['/', '/index.html', '/assets/app.js']) assert.notEqual((await apiFetch(`${baseUrl}${page}`, { apiKey: null })).status, 401, page);
    for (const guarded of ['/videos', '/videos/00000000-0000-4000-8000-000000000000', '/analytics/counts', '/admin/keys', '/admin/dead-letters', '/metrics', '/auth/me', '/no-such-route']) {
      for (const apiKey of [null, 'vsk_guessed-key-that-was-never-issued', `${TEST_API_KEY}x`]) {
        const res = await apiFetch(`${baseUrl}${guarded}`, { apiKey });
        assert.equal(res.status, 401, `${guarded} with ${apiKey}`);
        assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="vidsense"');
        assert.deepEqual(await res.json(), UNAUTHORIZED, 'the same answer whatever failed');
      }
    }
    // Not a Bearer header: refused the same way, even with the right key in it.
    const basic = await fetch(`${baseUrl}/videos`, { headers: { authorization: `Basic ${Buffer.from(`x:${TEST_API_KEY}`).toString('base64')}` } });
    assert.equal(basic.status, 401);
  });

  it('stores keys as sha256 only, shows a new key once, lists and revokes keys', async () => {
    const created = await createKey('ci uploader', ['upload']);
    assert.match(created.key, /^vsk_[A-Za-z0-9_-]{43}$/);
    const rows = await db.sql<{ id: string; key_hash: Buffer; scopes: string[]; source: string }[]>`SELECT id, key_hash, scopes, source FROM api_keys`;
    const row = rows.find((r) => r.id === created.id)!;
    assert.deepEqual(row.key_hash, createHash('sha256').update(created.key).digest());
    assert.deepEqual([row.scopes, row.source], [['upload'], 'api']);
    const dump = JSON.stringify(await db.sql`SELECT * FROM api_keys`);
    assert.ok(!dump.includes(created.key) && !dump.includes(TEST_API_KEY), 'a key in clear text in the database');

    const listed = (await (await apiFetch(`${baseUrl}/admin/keys`)).json()) as { items: Array<Record<string, unknown>> };
    const entry = listed.items.find((item) => item.id === created.id)!;
    assert.deepEqual(Object.keys(entry).sort(), ['createdAt', 'id', 'lastUsedAt', 'name', 'scopes'], 'never the key or its hash');
    assert.ok(listed.items.some((item) => item.name === 'API_KEY (environment)'), 'API_KEY is an admin key in the table');

    assert.equal((await apiFetch(`${baseUrl}/auth/me`, { apiKey: created.key })).status, 200);
    assert.equal((await apiFetch(`${baseUrl}/admin/keys/${created.id}`, { method: 'DELETE' })).status, 204);
    assert.equal((await apiFetch(`${baseUrl}/auth/me`, { apiKey: created.key })).status, 401, 'a revoked key');
    await expectError(await apiFetch(`${baseUrl}/admin/keys/${created.id}`, { method: 'DELETE' }), 404, 'not_found');
    assert.ok(!((await (await apiFetch(`${baseUrl}/admin/keys`)).json()) as { items: Array<{ id: string }> }).items.some((item) => item.id === created.id));

    await expectError(await apiFetch(`${baseUrl}/admin/keys`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'x', scopes: ['root'] }) }), 400, 'invalid_scopes');
    await expectError(await apiFetch(`${baseUrl}/admin/keys`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: '', scopes: ['read'] }) }), 400, 'invalid_name');
  });

  it('403 for a valid key without the scope: read cannot upload (nothing stored), upload cannot read, neither can administer', async () => {
    const reader = await createKey('reader', ['read']);
    const uploader = await createKey('uploader', ['upload']);
    const refused = await upload(reader.key);
    await expectError(refused, 403, 'forbidden');
    assert.match(refused.headers.get('www-authenticate') ?? '', /insufficient_scope/);
    const stored = await fs.readdir(env.STORAGE_DIR!, { recursive: true, withFileTypes: true }).catch(() => []);
    assert.deepEqual(stored.filter((entry) => entry.isFile()), [], 'a refused upload reached storage (no upload came before)');
    for (const url of ['/videos', '/analytics/counts']) await expectError(await apiFetch(`${baseUrl}${url}`, { apiKey: uploader.key }), 403, 'forbidden');
    for (const key of [reader.key, uploader.key]) {
      await expectError(await apiFetch(`${baseUrl}/admin/keys`, { apiKey: key }), 403, 'forbidden');
      await expectError(await apiFetch(`${baseUrl}/admin/dead-letters`, { apiKey: key }), 403, 'forbidden');
      await expectError(await apiFetch(`${baseUrl}/metrics`, { apiKey: key }), 403, 'forbidden');
    }
    const me = (await (await apiFetch(`${baseUrl}/auth/me`, { apiKey: reader.key })).json()) as { keyId: string; name: string; scopes: string[] };
    assert.deepEqual(me, { keyId: reader.id, name: 'reader', scopes: ['read'] });
  });

  it("a video belongs to the key that uploaded it: another key's video is 404 everywhere, admin sees all", async () => {
    const alice = await createKey('alice', ['upload', 'read']);
    const bob = await createKey('bob', ['upload', 'read']);
    const res = await upload(alice.key);
    assert.equal(res.status, 202, await res.clone().text());
    const { id } = (await res.json()) as { id: string };
    assert.equal(onlyRow(await db.sql<{ owner_key_id: string }[]>`SELECT owner_key_id FROM videos WHERE id = ${id}`).owner_key_id, alice.id);

    for (const suffix of ['', '/detections', '/detections/export?format=csv', '/summary', '/events']) {
      await expectError(await apiFetch(`${baseUrl}/videos/${id}${suffix}`, { apiKey: bob.key }), 404, 'not_found');
      const own = await apiFetch(`${baseUrl}/videos/${id}${suffix}`, { apiKey: alice.key, signal: AbortSignal.timeout(10_000) });
      assert.equal(own.status, 200, `${suffix} for its owner`);
      await own.body?.cancel();
      assert.equal((await apiFetch(`${baseUrl}/videos/${id}${suffix === '/events' ? '' : suffix}`)).status, 200, `${suffix} for admin`);
    }
    const ids = async (key: string | undefined) => ((await (await apiFetch(`${baseUrl}/videos`, key ? { apiKey: key } : {})).json()) as { items: Array<{ id: string }> }).items.map((v) => v.id);
    assert.deepEqual(await ids(alice.key), [id]);
    assert.deepEqual(await ids(bob.key), []);
    assert.ok((await ids(undefined)).includes(id), 'admin lists every video');
  });

  it('sessions: sign-in sets an HttpOnly, SameSite=Strict cookie backed by a hashed server-side session; sign-out revokes it; expiry is enforced', async () => {
    const viewer = await createKey('viewer', ['read']);
    await expectError(await fetch(`${baseUrl}/auth/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: 'vsk_wrong' }) }), 401, 'unauthorized');
    await expectError(await fetch(`${baseUrl}/auth/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }), 400, 'invalid_body');

    const signIn = await fetch(`${baseUrl}/auth/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: viewer.key }) });
    assert.equal(signIn.status, 204);
    const setCookie = signIn.headers.get('set-cookie') ?? '';
    const token = /^vidsense_session=([A-Za-z0-9_-]{43});/.exec(setCookie)?.[1];
    assert.ok(token, setCookie);
    const attributes = setCookie.split(';').map((part) => part.trim().toLowerCase());
    for (const attribute of ['httponly', 'samesite=strict', 'path=/', 'max-age=604800']) assert.ok(attributes.includes(attribute), `${attribute} in ${setCookie}`);
    assert.ok(!attributes.includes('secure'), 'plain http: no Secure flag under COOKIE_SECURE=auto');

    const session = onlyRow(await db.sql<{ token_hash: Buffer; key_id: string; ttl: number }[]>`
      SELECT token_hash, key_id, extract(epoch FROM expires_at - created_at)::int AS ttl FROM sessions`);
    assert.deepEqual(session.token_hash, createHash('sha256').update(token).digest(), 'only the hash of the token is stored');
    assert.deepEqual([session.key_id, session.ttl], [viewer.id, 604_800]);

    const cookie = { cookie: `theme=dark; vidsense_session=${token}` };
    const me = await fetch(`${baseUrl}/auth/me`, { headers: cookie });
    assert.deepEqual(await me.json(), { keyId: viewer.id, name: 'viewer', scopes: ['read'] });
    assert.equal((await fetch(`${baseUrl}/videos`, { headers: cookie })).status, 200, 'the cookie authenticates API calls');
    assert.equal((await fetch(`${baseUrl}/admin/keys`, { headers: cookie })).status, 403, "the session has its key's scopes");

    const signOut = await fetch(`${baseUrl}/auth/session`, { method: 'DELETE', headers: cookie });
    assert.equal(signOut.status, 204);
    assert.match(signOut.headers.get('set-cookie') ?? '', /^vidsense_session=;.*Expires=Thu, 01 Jan 1970/);
    assert.equal((await fetch(`${baseUrl}/auth/me`, { headers: cookie })).status, 401, 'revoked at sign-out');
    assert.equal((await db.sql`SELECT 1 FROM sessions`).length, 0);

    // Expiry: a session past its expires_at is refused, and a revoked key ends its sessions.
    const again = await fetch(`${baseUrl}/auth/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: viewer.key }) });
    const second = { cookie: `vidsense_session=${/vidsense_session=([^;]+)/.exec(again.headers.get('set-cookie') ?? '')![1]}` };
    assert.equal((await fetch(`${baseUrl}/auth/me`, { headers: second })).status, 200);
    await db.sql`UPDATE sessions SET expires_at = now() - interval '1 second'`;
    assert.equal((await fetch(`${baseUrl}/auth/me`, { headers: second })).status, 401, 'an expired session');
    await db.sql`UPDATE sessions SET expires_at = now() + interval '1 hour'`;
    assert.equal((await fetch(`${baseUrl}/auth/me`, { headers: second })).status, 200);
    assert.equal((await apiFetch(`${baseUrl}/admin/keys/${viewer.id}`, { method: 'DELETE' })).status, 204);
    assert.equal((await fetch(`${baseUrl}/auth/me`, { headers: second })).status, 401, "a revoked key's session");
  });

  it('npm run key -- create --scope upload prints a key that works with exactly that scope', async () => {
    const result = await execa('npm', ['run', '-s', 'key', '--', 'create', '--scope', 'upload', '--name', 'from the cli'], { env: { DATABASE_URL: db.url }, reject: false });
    assert.equal(result.exitCode, 0, result.stderr);
    const key = result.stdout.trim();
    assert.match(key, /^vsk_[A-Za-z0-9_-]{43}$/);
    const me = (await (await apiFetch(`${baseUrl}/auth/me`, { apiKey: key })).json()) as { name: string; scopes: string[] };
    assert.deepEqual([me.name, me.scopes], ['from the cli', ['upload']]);
    assert.equal((await apiFetch(`${baseUrl}/videos`, { apiKey: key })).status, 403);
    assert.equal((await upload(key)).status, 202);
    const bad = await execa('npm', ['run', '-s', 'key', '--', 'create', '--scope', 'superuser'], { env: { DATABASE_URL: db.url }, reject: false });
    assert.equal(bad.exitCode, 2);
    assert.match(bad.stderr, /scopes must be a non-empty list of upload, read, admin/);
  });

  describe('start-up keys (a database of their own)', () => {
    let fresh: TestDatabase;
    before(async () => {
      fresh = await createTestDatabase();
    });
    after(async () => {
      await Promise.all(processes.splice(1).map((p) => p.stop()));
      await fresh?.drop();
    });

    it('first start without API_KEY and without keys: an admin key in API_KEY_FILE (mode 600) and a sign-in URL in the log; none on the next start', async () => {
      const keyFile = path.join(tmp, 'first-start', 'api-key');
      const port = await freePort();
      const first = await startApi({ DATABASE_URL: fresh.url, PORT: String(port), API_KEY: '', API_KEY_FILE: keyFile });
      await first.waitForLog('sign in at');
      const key = (await fs.readFile(keyFile, 'utf8')).trim();
      assert.match(key, /^vsk_[A-Za-z0-9_-]{43}$/);
      assert.equal((await fs.stat(keyFile)).mode & 0o777, 0o600);
      const line = JSON.parse(first.logs.find((l) => l.includes('sign in at'))!) as { signInUrl: string; message: string };
      assert.equal(line.signInUrl, `http://127.0.0.1:${port}/#/login?key=${key}`);
      const me = (await (await apiFetch(`http://127.0.0.1:${port}/auth/me`, { apiKey: key })).json()) as { scopes: string[] };
      assert.deepEqual(me.scopes, ['admin']);
      await first.stop();

      const second = await startApi({ DATABASE_URL: fresh.url, PORT: String(port), API_KEY: '', API_KEY_FILE: keyFile });
      assert.equal((await fs.readFile(keyFile, 'utf8')).trim(), key, 'the file is left alone');
      assert.ok(!second.logs.some((l) => l.includes('sign in at')), 'a second key was created');
      assert.equal(onlyRow(await fresh.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM api_keys`).n, 1);
      await second.stop();
    });

    it('API_KEY sets the admin key; a changed value replaces the old one in place; ADMIN_TOKEN still works, with a deprecation warning', async () => {
      const port = await freePort();
      const url = `http://127.0.0.1:${port}/auth/me`;
      const first = await startApi({ DATABASE_URL: fresh.url, PORT: String(port), API_KEY: 'first-value-of-the-api-key' });
      const before = (await (await apiFetch(url, { apiKey: 'first-value-of-the-api-key' })).json()) as { keyId: string; scopes: string[] };
      assert.deepEqual(before.scopes, ['admin']);
      await first.stop();
      const aliased = await startApi({ DATABASE_URL: fresh.url, PORT: String(port), API_KEY: '', ADMIN_TOKEN: 'second-value-via-old-name' });
      await aliased.waitForLog('ADMIN_TOKEN is deprecated');
      assert.equal((await apiFetch(url, { apiKey: 'first-value-of-the-api-key' })).status, 401, 'the old value no longer works');
      const after = (await (await apiFetch(url, { apiKey: 'second-value-via-old-name' })).json()) as { keyId: string };
      assert.equal(after.keyId, before.keyId, 'the same key row: its videos stay its own');
      await aliased.stop();
    });
  });
});
