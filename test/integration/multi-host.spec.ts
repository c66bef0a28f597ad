/**
 * Several hosts on one machine: network namespaces joined by veth pairs to a bridge (test/helpers/netns.ts).
 * A stores host runs a private redis-server (AOF), PostgreSQL (initdb + postgres) and an S3 server (s3rver);
 * an api host runs the api (which only accepts uploads); two worker hosts run one worker each, taking both
 * extract and detect jobs (WORKER_ROLES), all with STORAGE_DRIVER=s3: the workers download each upload from
 * S3 to extract it. The same videos go through twice: once undisturbed, once with a worker host's
 * link cut while it holds a job and restored after its job was reclaimed. Every video must complete with
 * exactly the detection rows of the undisturbed run.
 *
 * Runs where network namespaces can be made (root, `ip netns add`); skipped otherwise, saying why.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import postgres from 'postgres';
import { createClient } from 'redis';
import { queueKeys } from '../../src/queue/keys.ts';
import { TEST_API_KEY } from '../helpers/api-client.ts';
import { detectionRows } from '../helpers/database.ts';
import { VTEST_AVI } from '../helpers/media-fixtures.ts';
import { NetnsLab, netnsUnavailable } from '../helpers/netns.ts';
import { S3RVER_CREDENTIALS } from '../helpers/s3-server.ts';
import { ServiceProcess, waitFor } from '../helpers/service.ts';

const HELPERS = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'helpers');
const HOSTS = ['stores', 'api', 'w1', 'w2'] as const;
const PREFIX = 'multihost';
const BUCKET = 'vidsense-multihost';
const DATABASE = 'vidsense';
const FPS = '2';
// Three 3 s pieces of vtest.avi at 2 fps: 6 frames each, 3 jobs each at BATCH_SIZE 2.
const CLIPS = [0, 20, 40].map((start) => ({ start, seconds: 3, frames: 6 }));

interface StoresEndpoints {
  redisUrl: string;
  databaseUrl: string;
  s3Endpoint: string;
}

/**
 * What runs on each host and with which settings, in one place. Extraction is a job for the workers
 * (WORKER_ROLES=extract,detect): they read the uploads from S3 (into WORK_DIR for ffmpeg); the api host
 * probes uploads and queues their extraction.
 */
function hostPlan(stores: StoresEndpoints, tmp: string): Record<'api' | 'w1' | 'w2', { role: 'api' | 'worker'; env: Record<string, string> }> {
  const common = {
    REDIS_URL: stores.redisUrl,
    DATABASE_URL: stores.databaseUrl,
    REQUIRE_DURABLE_REDIS: 'true',
    QUEUE_PREFIX: PREFIX,
    STORAGE_DRIVER: 's3',
    S3_BUCKET: BUCKET,
    S3_ENDPOINT: stores.s3Endpoint,
    S3_FORCE_PATH_STYLE: 'true',
    AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    BATCH_SIZE: '2',
    // A host that drops off the network is declared dead after 1.5 s and its jobs move to the other worker.
    HEARTBEAT_TTL_MS: '1500',
    RECLAIM_INTERVAL_MS: '300',
    RETRY_BASE_MS: '50',
    RETRY_MAX_MS: '500',
    // Two workers on two cores: one inference thread each (and the same in both runs, so results match).
    ORT_THREADS: '1',
  };
  const work = (host: string) => ({ WORK_DIR: path.join(tmp, `work-${host}`), STORAGE_DIR: path.join(tmp, `unused-local-storage-${host}`) });
  return {
    api: { role: 'api', env: { ...common, ...work('api'), HOST: '0.0.0.0', PORT: '3000' } },
    w1: { role: 'worker', env: { ...common, ...work('w1'), WORKER_ROLES: 'extract,detect' } },
    w2: { role: 'worker', env: { ...common, ...work('w2'), WORKER_ROLES: 'extract,detect' } },
  };
}

/** One request over a Unix socket (the api host's relay): status and body. */
function request(socketPath: string, method: string, urlPath: string, body?: Buffer, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    // The test deployments' API key, as apiFetch sends it (the http module, because this goes over a Unix socket).
    const allHeaders = { authorization: `Bearer ${TEST_API_KEY}`, ...headers, ...(body ? { 'content-length': String(body.length) } : {}) };
    const req = http.request({ socketPath, method, path: urlPath, headers: allHeaders }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Waits for a child's first stdout line (its "ready" line), failing if it exits first. */
function firstLine(child: ChildProcess, what: string, timeoutMs = 20_000): Promise<string> {
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start within ${timeoutMs} ms: ${stderr}`)), timeoutMs);
    createInterface({ input: child.stdout! }).once('line', (line) => {
      clearTimeout(timer);
      resolve(line);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code}) before it was ready: ${stderr}`));
    });
  });
}

describe('multi-host: stores, api and two worker hosts in network namespaces on S3 storage; a worker host loses its link mid-run', function () {
  this.timeout(600_000);

  let lab: NetnsLab | undefined;
  let tmp: string;
  let clips: string[];
  let pgData: string;
  let pgSockets: string;
  let redisSocket: string;
  let apiSocket: string;
  const stores: ChildProcess[] = [];
  const services: Partial<Record<'api' | 'w1' | 'w2', ServiceProcess>> = {};
  let sql: postgres.Sql | undefined;
  let redis: ReturnType<typeof createClient> | undefined;
  const clean: string[][] = [];

  before(async function () {
    const unavailable = await netnsUnavailable();
    if (unavailable) {
      console.log(`      multi-host test skipped: ${unavailable}`);
      this.skip();
    }
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-multihost-'));
    // PostgreSQL runs as the postgres user, which must reach its directory inside this one.
    await fs.chmod(tmp, 0o755);
    clips = [];
    for (const [i, clip] of CLIPS.entries()) {
      const file = path.join(tmp, `vtest-${i}.mp4`);
      await execa('ffmpeg', ['-nostdin', '-loglevel', 'error', '-y', '-ss', String(clip.start), '-i', VTEST_AVI, '-t', String(clip.seconds), '-map', '0:v:0', '-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p', file]);
      clips.push(file);
    }

    lab = await NetnsLab.create([...HOSTS]);
    const storesIp = lab.address('stores');

    // Redis: AOF with fsync always and no eviction, as production requires; a Unix socket for the test.
    const redisDir = path.join(tmp, 'redis');
    await fs.mkdir(redisDir);
    redisSocket = path.join(redisDir, 'redis.sock');
    const redisServer = lab.spawn('stores', 'redis-server', [
      '--bind', storesIp, '--port', '6379', '--protected-mode', 'no', '--unixsocket', redisSocket, '--unixsocketperm', '700',
      '--dir', redisDir, '--appendonly', 'yes', '--appendfsync', 'always', '--maxmemory-policy', 'noeviction', '--save', '', '--daemonize', 'no',
    ]);
    stores.push(redisServer);

    // PostgreSQL: a private cluster, trusting the lab's subnet; a Unix socket for the test.
    const pgDir = path.join(tmp, 'pg');
    pgData = path.join(pgDir, 'data');
    pgSockets = path.join(pgDir, 'sockets');
    await fs.mkdir(pgSockets, { recursive: true });
    const { stdout: pgUid } = await execa('id', ['-u', 'postgres']);
    await execa('chown', ['-R', `${pgUid}`, pgDir]);
    await execa('runuser', ['-u', 'postgres', '--', 'initdb', '-D', pgData, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8']);
    await fs.appendFile(path.join(pgData, 'pg_hba.conf'), `host all all ${storesIp.replace(/\.\d+$/, '.0')}/24 trust\n`);
    const pg = lab.spawn('stores', 'runuser', ['-u', 'postgres', '--', 'postgres', '-D', pgData, '-c', `listen_addresses=${storesIp}`, '-c', 'port=5432', '-c', `unix_socket_directories=${pgSockets}`, '-c', 'fsync=off']);
    stores.push(pg);

    // S3: s3rver on the stores host's address.
    const s3Dir = path.join(tmp, 's3');
    await fs.mkdir(s3Dir);
    const s3 = lab.spawn('stores', process.execPath, ['--openssl-legacy-provider', path.join(HELPERS, 's3rver-process.cjs'), s3Dir, BUCKET, storesIp], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, NODE_OPTIONS: '' },
    });
    stores.push(s3);
    const s3Port = (JSON.parse(await firstLine(s3, 's3rver')) as { port: number }).port;

    redis = createClient({ socket: { path: redisSocket, tls: false } });
    redis.on('error', () => {});
    await waitFor('redis on the stores host', async () => (await redis!.connect().then(() => true, () => undefined)), 15_000, 100);
    const admin = postgres({ host: pgSockets, port: 5432, user: 'postgres', database: 'postgres', max: 1, onnotice: () => {} });
    await waitFor('postgres on the stores host', async () => (await admin`select 1`.then(() => true, () => undefined)), 30_000, 100);
    await admin.unsafe(`CREATE DATABASE ${DATABASE}`);
    await admin.end();
    sql = postgres({ host: pgSockets, port: 5432, user: 'postgres', database: DATABASE, max: 2, onnotice: () => {} });

    const plan = hostPlan({ redisUrl: `redis://${storesIp}:6379`, databaseUrl: `postgres://postgres@${storesIp}:5432/${DATABASE}`, s3Endpoint: `http://${storesIp}:${s3Port}` }, tmp);
    for (const host of ['api', 'w1', 'w2'] as const) {
      await fs.mkdir(plan[host].env.WORK_DIR!);
      services[host] = ServiceProcess.start(plan[host].role, plan[host].env, { netns: lab.ns(host) });
    }
    // Three processes compiling TypeScript and loading the model at once on a shared 2-core machine: be patient.
    await Promise.all([services.api!.waitForLog('api listening', 180_000), services.w1!.waitForLog('worker started', 240_000), services.w2!.waitForLog('worker started', 240_000)]);

    // The test reaches the api through a relay on the api host.
    apiSocket = path.join(tmp, 'api.sock');
    const relay = lab.spawn('api', process.execPath, [path.join(HELPERS, 'unix-relay.cjs'), apiSocket, '127.0.0.1', plan.api.env.PORT!], { stdio: ['pipe', 'pipe', 'pipe'] });
    stores.push(relay);
    await firstLine(relay, 'the api relay');
  });

  after(async () => {
    await Promise.all(Object.values(services).map((service) => service.stop()));
    await sql?.end({ timeout: 5 }).catch(() => undefined);
    if (redis?.isOpen) await redis.quit().catch(() => undefined);
    // PostgreSQL's fast shutdown (SIGINT to the postmaster) removes its shared memory; the rest are killed with the lab.
    const postmaster = await fs.readFile(path.join(pgData ?? '/nonexistent', 'postmaster.pid'), 'utf8').then((text) => Number(text.split('\n')[0]), () => undefined);
    if (postmaster) {
      process.kill(postmaster, 'SIGINT');
      await waitFor('postgres to stop', async () => (await fs.access(path.join(pgData, 'postmaster.pid')).then(() => undefined, () => true)), 15_000, 100).catch(() => undefined);
    }
    for (const child of stores) child.kill('SIGTERM');
    await lab?.destroy();
    const left = (await lab?.leftovers()) ?? [];
    if (tmp) await fs.rm(tmp, { recursive: true, force: true });
    assert.deepEqual(left, [], 'network namespaces left behind');
  });

  async function upload(file: string): Promise<string> {
    const form = new FormData();
    form.append('fps', FPS);
    form.append('video', new Blob([await fs.readFile(file)]), path.basename(file));
    const built = new Request('http://api/videos', { method: 'POST', body: form });
    const res = await request(apiSocket, 'POST', '/videos', Buffer.from(await built.arrayBuffer()), { 'content-type': built.headers.get('content-type')! });
    assert.equal(res.status, 202, res.body);
    return (JSON.parse(res.body) as { id: string }).id;
  }

  async function waitCompleted(id: string, frames: number): Promise<void> {
    const video = await waitFor(`video ${id} to complete`, async () => {
      const body = JSON.parse((await request(apiSocket, 'GET', `/videos/${id}`)).body) as { status: string; framesDone: number; framesTotal: number; framesFailed: number; error: string | null };
      return body.status === 'completed' || body.status === 'failed' ? body : undefined;
    }, 300_000, 200);
    assert.deepEqual([video.status, video.framesTotal, video.framesDone, video.framesFailed, video.error], ['completed', frames, frames, 0, null]);
  }

  async function queueEmpty(): Promise<void> {
    const keys = queueKeys(PREFIX);
    await waitFor('the queue to empty', async () => {
      const processing = await redis!.keys(keys.processingPattern);
      const lengths = await Promise.all([...Object.values(keys.pending), ...processing].map((key) => redis!.lLen(key)));
      return lengths.every((n) => n === 0) ? true : undefined;
    }, 30_000, 100);
  }

  it('1. an undisturbed run: every video completes on the two worker hosts', async () => {
    const ids = [];
    for (const clip of clips) ids.push(await upload(clip));
    for (const [i, id] of ids.entries()) {
      await waitCompleted(id, CLIPS[i]!.frames);
      clean.push(await detectionRows(sql!, id));
    }
    for (const rows of clean) assert.ok(rows.some((row) => row.includes(' person ')), 'people detected');
    await queueEmpty();
  });

  it('2. a worker host\'s link cut while it holds a job, then restored: every video completes with the rows of the undisturbed run', async function () {
    if (clean.length !== CLIPS.length) this.skip(); // needs the undisturbed run's rows
    const w1 = services.w1!;
    const w2 = services.w2!;
    const w1Id = (JSON.parse(w1.logs.find((line) => line.includes('"worker started"'))!) as { workerId: string }).workerId;
    const held = queueKeys(PREFIX).processing(w1Id);
    const reclaimsBefore = w2.logs.filter((line) => line.includes('reclaimed jobs from dead workers')).length;

    const ids = [];
    for (const clip of clips) ids.push(await upload(clip));
    // Cut as soon as w1 holds a job. It may ack that job just before the cut; then the cut found nothing
    // in its hands, and the link is restored to try again with its next job.
    let jobsHeld: string[] = [];
    for (let attempt = 1; attempt <= 10 && jobsHeld.length === 0; attempt += 1) {
      // A job of two frames is held for a few hundred milliseconds at least: 20 ms polls see it.
      await waitFor('w1 to hold a job', async () => ((await redis!.lLen(held)) > 0 ? true : undefined), 120_000, 20);
      await lab!.cut('w1');
      // w1 can no longer change Redis: what its list holds now, it held when the link went.
      jobsHeld = await redis!.lRange(held, 0, -1);
      if (jobsHeld.length === 0) await lab!.restore('w1');
    }
    assert.ok(jobsHeld.length > 0, 'w1 never held a job at the moment of a cut');
    try {
      // Its heartbeat expires; w2 moves the job back to pending and processes it.
      await waitFor('w2 to reclaim the job held by the unreachable host', async () => ((await redis!.lLen(held)) === 0 ? true : undefined), 60_000, 50);
      await waitFor('w2 to log the reclaim', async () => (w2.logs.filter((line) => line.includes('reclaimed jobs from dead workers')).length > reclaimsBefore ? true : undefined), 10_000, 50);
    } finally {
      await lab!.restore('w1');
    }

    for (const [i, id] of ids.entries()) {
      await waitCompleted(id, CLIPS[i]!.frames);
      assert.deepEqual(await detectionRows(sql!, id), clean[i], `video ${i}: the same detections as the undisturbed run`);
    }
    await queueEmpty();
    assert.ok(w1.alive, `the worker on the cut host survived: ${w1.logs.slice(-5).join('\n')}`);
  });
});
