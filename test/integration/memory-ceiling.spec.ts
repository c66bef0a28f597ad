/**
 * Issue 9 item 2's memory ceiling: a 750 KB upload of one 16000x16000 picture (384 MB decoded) made the
 * upload checks take 4.4 GB. Real API processes check it here, and the peak resident memory of every
 * ffprobe/ffmpeg they run is measured: FFPROBE_PATH and FFMPEG_PATH point at shims that run the real
 * binaries under test/helpers/peak-rss.py, which logs each run's getrusage(RUSAGE_CHILDREN).ru_maxrss
 * (the kernel's high-water mark of the child's RSS, VmHWM).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { createClient } from 'redis';
import { apiFetch, TEST_API_KEY } from '../helpers/api-client.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { leftovers, NOTHING_LEFT } from '../helpers/leftovers.ts';
import * as fixtures from '../helpers/media-fixtures.ts';
import { deleteKeys, uniquePrefix } from '../helpers/redis.ts';
import { freePort, ServiceProcess } from '../helpers/service.ts';

const PEAK_RSS = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'helpers', 'peak-rss.py');
const MiB = 1024 * 1024;

interface Run {
  binary: string;
  args: string[];
  exit: number;
  peakRssKb: number;
}

describe('memory of the upload checks on a 16000x16000 upload (real API processes, measured peak RSS)', function () {
  this.timeout(300_000);

  let db: TestDatabase;
  let tmp: string;
  let huge: string;
  let prefix: string;
  const redis = createClient({ url: 'redis://127.0.0.1:6379' });
  const apis: ServiceProcess[] = [];

  before(async () => {
    db = await createTestDatabase();
    prefix = uniquePrefix();
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-memory-'));
    await redis.connect();
    huge = await fixtures.makeHugeFrameVideo(tmp, 16000, 16000);
  });

  after(async () => {
    await Promise.all(apis.map((api) => api.stop()));
    await deleteKeys(redis, prefix);
    await redis.quit();
    await db?.drop();
    await fs.rm(tmp, { recursive: true, force: true });
  });

  /** An API whose ffprobe and ffmpeg runs are measured; returns its URL and the runs' log. */
  async function measuredApi(name: string, env: Record<string, string>): Promise<{ baseUrl: string; runs: () => Promise<Run[]>; storageDir: string }> {
    const dir = path.join(tmp, name);
    await fs.mkdir(dir);
    const log = path.join(dir, 'runs.jsonl');
    const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
    const shims: Record<string, string> = {};
    for (const tool of ['ffmpeg', 'ffprobe']) {
      const real = (await execa('sh', ['-c', `command -v ${tool}`])).stdout.trim();
      shims[tool] = path.join(dir, tool);
      await fs.writeFile(shims[tool]!, `#!/bin/sh\nexec ${python} ${PEAK_RSS} ${log} ${real} "$@"\n`, { mode: 0o755 });
    }
    const storageDir = path.join(dir, 'storage');
    const port = await freePort();
    const api = ServiceProcess.start('api', {
      DATABASE_URL: db.url,
      QUEUE_PREFIX: prefix,
      STORAGE_DIR: storageDir,
      PORT: String(port),
      HOST: '127.0.0.1',
      API_KEY: TEST_API_KEY,
      FFMPEG_PATH: shims.ffmpeg!,
      FFPROBE_PATH: shims.ffprobe!,
      ...env,
    });
    apis.push(api);
    // Slower to start than usual: each -version check at start-up goes through the measuring wrapper.
    await api.waitForLog('api listening', 90_000);
    const runs = async () =>
      (await fs.readFile(log, 'utf8'))
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as Run)
        .filter((run) => !run.args.includes('-version'));
    return { baseUrl: `http://127.0.0.1:${port}`, runs, storageDir };
  }

  async function upload(baseUrl: string): Promise<{ status: number; code: string; message: string }> {
    const form = new FormData();
    form.append('video', new Blob([await fs.readFile(huge)]), 'huge.mp4');
    const res = await apiFetch(`${baseUrl}/videos`, { method: 'POST', body: form });
    const body = (await res.json()) as { error: { code: string; message: string } };
    return { status: res.status, ...body.error };
  }

  function report(what: string, runs: Run[]): number {
    const peaks = runs.map((run) => `${run.binary}${run.args.includes('-ss') ? ' (last second)' : ''}: ${(run.peakRssKb / 1024).toFixed(0)} MiB`);
    console.log(`      ${what}: ${peaks.join(', ')}`);
    return Math.max(...runs.map((run) => run.peakRssKb * 1024));
  }

  it('default limits: refused with 422 too_many_pixels from the probe, no decode runs, every process under 400 MiB', async () => {
    const { baseUrl, runs, storageDir } = await measuredApi('defaults', {});
    const answer = await upload(baseUrl);
    assert.deepEqual([answer.status, answer.code], [422, 'too_many_pixels'], answer.message);
    assert.match(answer.message, /16000x16000/);
    const measured = await runs();
    assert.deepEqual(measured.map((run) => run.binary), ['ffprobe'], 'only the probe ran');
    assert.ok(report('peak RSS with default limits', measured) < 400 * MiB);
    assert.deepEqual(await leftovers({ storageDir, redis, prefix, sql: db.sql }), NOTHING_LEFT);
  });

  it('MAX_PIXELS raised out of the way: the 1 GiB MEDIA_MEMORY_LIMIT_BYTES ceiling refuses it (422 memory_limit), no process above the ceiling', async () => {
    const ceiling = 1024 * MiB;
    const { baseUrl, runs, storageDir } = await measuredApi('ceiling', { MAX_PIXELS: '1900000000', MEDIA_MEMORY_LIMIT_BYTES: String(ceiling) });
    const answer = await upload(baseUrl);
    assert.deepEqual([answer.status, answer.code], [422, 'memory_limit'], answer.message);
    assert.match(answer.message, /MEDIA_MEMORY_LIMIT_BYTES/);
    const measured = await runs();
    assert.ok(measured.some((run) => run.binary === 'ffmpeg'), 'the decode check ran, and met the ceiling');
    assert.ok(report('peak RSS under a 1 GiB ceiling', measured) < ceiling);
    assert.deepEqual(await leftovers({ storageDir, redis, prefix, sql: db.sql }), NOTHING_LEFT);
  });
});
