import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { createClient } from 'redis';
import { apiFetch } from '../helpers/api-client.ts';
import { createTestDatabase, onlyRow, type TestDatabase } from '../helpers/database.ts';
import { cutClip, VTEST_AVI } from '../helpers/media-fixtures.ts';
import { deleteKeys, uniquePrefix } from '../helpers/redis.ts';
import { freePort, ServiceProcess, waitFor } from '../helpers/service.ts';

/**
 * There is no Docker engine here, so the images are checked by what they run: the runtime stages of
 * docker/Dockerfile are `npm ci --omit=dev --ignore-scripts` plus `scripts/build`'s dist/, started with
 * `node dist/main/<role>.js` and probed by docker/healthcheck.mjs. This builds that same /app in a temp
 * directory and runs a real video through the compiled API and worker.
 */
describe('image runtime: production dependencies and compiled dist/, as in docker/Dockerfile', function () {
  this.timeout(300_000);
  const repo = process.cwd();
  let appDir: string;
  let db: TestDatabase;
  let prefix: string;
  let env: Record<string, string>;
  let baseUrl: string;
  let workerHealthPort: number;
  const processes: ServiceProcess[] = [];
  const redis = createClient({ url: 'redis://127.0.0.1:6379' });

  before(async function () {
    const dockerfile = await fs.readFile(path.join(repo, 'docker/Dockerfile'), 'utf8');
    // The install below must be the one the images do; fail loudly if the Dockerfile changes it.
    assert.match(dockerfile, /^RUN npm ci --omit=dev --ignore-scripts$/m);
    assert.match(dockerfile, /^RUN bash scripts\/build dist$/m);
    // scripts/build also builds the web app into web/dist, which the api stage copies beside dist/.
    assert.match(dockerfile, /^COPY --from=build \/app\/web\/dist \.\/web\/dist$/m);

    appDir = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-image-'));
    for (const file of ['package.json', 'package-lock.json', '.npmrc']) await fs.copyFile(path.join(repo, file), path.join(appDir, file));
    await execa('npm', ['ci', '--omit=dev', '--ignore-scripts'], {
      cwd: appDir,
      env: { ONNXRUNTIME_NODE_INSTALL_CUDA: 'skip', npm_config_update_notifier: 'false' },
    });
    await execa('bash', [path.join(repo, 'scripts/build'), path.join(appDir, 'dist')]);
    await fs.cp(path.join(repo, 'web/dist'), path.join(appDir, 'web/dist'), { recursive: true });
    await fs.mkdir(path.join(appDir, 'docker'));
    await fs.copyFile(path.join(repo, 'docker/healthcheck.mjs'), path.join(appDir, 'docker/healthcheck.mjs'));

    db = await createTestDatabase({ migrate: false });
    prefix = uniquePrefix();
    const port = await freePort();
    workerHealthPort = await freePort();
    baseUrl = `http://127.0.0.1:${port}`;
    env = {
      DATABASE_URL: db.url,
      QUEUE_PREFIX: prefix,
      STORAGE_DIR: path.join(appDir, 'storage'),
      MODEL_PATH: path.join(repo, 'models/yolov8n.onnx'),
      PORT: String(port),
      HOST: '127.0.0.1',
      BATCH_SIZE: '4',
    };
    await redis.connect();
  });

  after(async () => {
    await Promise.all(processes.map((p) => p.stop()));
    if (prefix) await deleteKeys(redis, prefix);
    if (redis.isOpen) await redis.quit();
    await db?.drop();
    if (appDir) await fs.rm(appDir, { recursive: true, force: true });
  });

  it('installs no dev dependency and no TypeScript runner', async () => {
    const installed = await fs.readdir(path.join(appDir, 'node_modules'));
    for (const devOnly of ['typescript', 'tsx', 'mocha', 's3rver', 'vite', 'preact', 'playwright-core']) assert.ok(!installed.includes(devOnly), `${devOnly} is in the production node_modules`);
    assert.ok(installed.includes('onnxruntime-node') && installed.includes('sharp'));
    assert.ok((await fs.readdir(path.join(appDir, 'node_modules/@julusian'))).includes('jpeg-turbo'), 'the optional frame decoder is installed');
  });

  it('runs the compiled API (migrations from dist/) and worker, whose health checks pass, on a real video', async () => {
    const api = ServiceProcess.startCompiled('api', appDir, env);
    processes.push(api);
    await api.waitForLog('api listening');
    // The migrations are SQL files read beside the compiled modules: the API applied them at start-up.
    const applied = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM schema_migrations`;
    assert.ok(onlyRow(applied).n >= 3);

    const worker = ServiceProcess.startCompiled('worker', appDir, { ...env, WORKER_HEALTH_PORT: String(workerHealthPort) });
    processes.push(worker);
    await worker.waitForLog('worker health endpoints listening', 60_000);
    // The optional libjpeg-turbo binding loads from the production install (its install script skipped).
    assert.ok(worker.logs.some((line) => line.includes('"frame decoder chosen"') && line.includes('"decoder":"libjpeg-turbo"')), 'the compiled worker decodes with libjpeg-turbo');

    // The images' HEALTHCHECK: the API's /readyz on PORT, the worker's on WORKER_HEALTH_PORT.
    const healthcheck = (extra: Record<string, string>) =>
      execa(process.execPath, ['docker/healthcheck.mjs'], { cwd: appDir, env: { PORT: env.PORT!, ...extra }, reject: false });
    assert.equal((await healthcheck({})).exitCode, 0, 'api healthcheck');
    // The web app, from web/dist beside dist/ (WEB_DIR's default resolves against the working directory, /app).
    const page = await fetch(`${baseUrl}/`);
    assert.equal(page.status, 200);
    const asset = /src="(\/assets\/[^"]+\.js)"/.exec(await page.text())?.[1];
    assert.ok(asset, 'index.html names its script');
    assert.equal((await fetch(`${baseUrl}${asset}`)).status, 200);
    assert.equal((await healthcheck({ WORKER_HEALTH_PORT: String(workerHealthPort) })).exitCode, 0, 'worker healthcheck');
    const ready = (await (await apiFetch(`http://127.0.0.1:${workerHealthPort}/readyz`)).json()) as {
      checks: Record<string, { ok: boolean; detail?: { engine?: string; backend?: string; device?: string } }>;
    };
    assert.deepEqual(Object.keys(ready.checks).sort(), ['model', 'postgres', 'redis', 'worker']);
    assert.deepEqual([ready.checks.model?.detail?.engine, ready.checks.model?.detail?.backend, ready.checks.model?.detail?.device], ['onnx', 'cpu', 'cpu']);
    assert.equal(ready.checks.worker?.ok, true);

    const clip = await cutClip(VTEST_AVI, 2, path.join(appDir, 'clip.mp4'));
    const form = new FormData();
    form.append('fps', '2');
    form.append('video', new Blob([await fs.readFile(clip)]), 'clip.mp4');
    const res = await apiFetch(`${baseUrl}/videos`, { method: 'POST', body: form });
    assert.equal(res.status, 202);
    const { id } = (await res.json()) as { id: string };
    const video = await waitFor('the video to complete', async () => {
      const body = (await (await apiFetch(`${baseUrl}/videos/${id}`)).json()) as { status: string; framesTotal: number; framesDone: number; error: string | null };
      if (body.status === 'failed') throw new Error(`video failed: ${body.error}`);
      return body.status === 'completed' ? body : undefined;
    }, 120_000, 200);
    assert.equal(video.framesTotal, 4);
    assert.equal(video.framesDone, 4);
    const people = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM detections WHERE video_id = ${id} AND class_name = 'person'`;
    assert.ok(onlyRow(people).n > 0, 'the compiled worker found people in vtest.avi');

    // SIGTERM, as `docker stop` sends: both exit cleanly, and the worker's health port goes away.
    worker.kill('SIGTERM');
    api.kill('SIGTERM');
    assert.deepEqual(await worker.waitForExit(), { code: 0, signal: null });
    assert.deepEqual(await api.waitForExit(), { code: 0, signal: null });
    assert.equal((await healthcheck({ WORKER_HEALTH_PORT: String(workerHealthPort) })).exitCode, 1, 'the healthcheck fails once the worker is gone');
  });
});
