import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';

const REPO = process.cwd();
// By absolute path: the cases run bash with a PATH that holds only their own stand-in binaries.
let bash = 'bash';

/**
 * Runs one of scripts/preflight.sh's functions in bash with exactly this environment. `staticPath` stands in
 * for ffmpeg-static's binary path (empty: the package is not installed).
 */
async function check(fn: string, env: Record<string, string>, staticPath = ''): Promise<boolean> {
  const script = `. scripts/preflight.sh; ffmpeg_static_path() { printf '%s' "$STATIC"; }; ${fn}`;
  const result = await execa(bash, ['-c', script], {
    cwd: REPO,
    env: { HOME: os.tmpdir(), STATIC: staticPath, ...env },
    extendEnv: false,
    reject: false,
  });
  return result.exitCode === 0;
}

describe('scripts/preflight.sh (scripts/setup checks)', () => {
  let tmp: string;
  let node: string;
  let bin: string;

  before(async () => {
    bash = (await execa('bash', ['-c', 'command -v bash'])).stdout.trim();
    tmp = await mkdtemp(path.join(os.tmpdir(), 'vidsense-preflight-'));
    // PATH directories holding only what each case needs (never /usr/bin, which may have a real ffmpeg).
    node = path.join(tmp, 'node-only');
    bin = path.join(tmp, 'ffmpeg-and-ffprobe');
    for (const dir of [node, bin]) await mkdir(dir);
    for (const dir of [node, bin]) {
      await writeFile(path.join(dir, 'node'), `#!/bin/sh\nexec '${process.execPath}' "$@"\n`);
      await chmod(path.join(dir, 'node'), 0o755);
    }
    for (const name of ['ffmpeg', 'ffprobe', 'static-ffmpeg']) {
      await writeFile(path.join(bin, name), '#!/bin/sh\nexit 0\n');
      await chmod(path.join(bin, name), 0o755);
    }
    await writeFile(path.join(tmp, 'not-executable'), 'data');
  });
  after(() => rm(tmp, { recursive: true, force: true }));

  describe('Node.js version against package.json engines', () => {
    it('package.json asks for >=20.19', async () => {
      const engines = (JSON.parse(await readFile(path.join(REPO, 'package.json'), 'utf8')) as { engines: { node: string } }).engines;
      assert.equal(engines.node, '>=20.19');
    });

    for (const [version, ok] of [
      ['20.18.1', false],
      ['19.9.0', false],
      ['18.20.4', false],
      ['20.19.0', true],
      ['v20.19.5', true],
      ['20.20.2', true],
      ['22.1.0', true],
    ] as const) {
      it(`${ok ? 'accepts' : 'refuses'} ${version}`, async () => {
        assert.equal(await check(`node_version_ok ${version}`, { PATH: node }), ok);
      });
    }

    it('accepts the Node.js running these tests (engines are met here)', async () => {
      assert.equal(await check('node_version_ok', { PATH: node }), true);
    });
  });

  describe('ffmpeg and ffprobe, in src/media/binaries.ts order', () => {
    const noneOnPath = () => node;

    it('finds both on PATH', async () => {
      assert.equal(await check('have_ffmpeg', { PATH: bin }), true);
      assert.equal(await check('have_ffprobe', { PATH: bin }), true);
    });

    it('misses both when neither is on PATH and nothing is set', async () => {
      assert.equal(await check('have_ffmpeg', { PATH: noneOnPath() }), false);
      assert.equal(await check('have_ffprobe', { PATH: noneOnPath() }), false);
    });

    it('an executable FFMPEG_PATH does not stand in for ffprobe', async () => {
      const env = { PATH: noneOnPath(), FFMPEG_PATH: path.join(bin, 'ffmpeg') };
      assert.equal(await check('have_ffmpeg', env), true);
      assert.equal(await check('have_ffprobe', env), false);
    });

    it('an executable FFPROBE_PATH is enough for ffprobe', async () => {
      assert.equal(await check('have_ffprobe', { PATH: noneOnPath(), FFPROBE_PATH: path.join(bin, 'ffprobe') }), true);
    });

    it('a set but unusable FFMPEG_PATH/FFPROBE_PATH fails even with both on PATH (the service would not fall back)', async () => {
      const env = { PATH: bin, FFMPEG_PATH: path.join(tmp, 'not-executable'), FFPROBE_PATH: path.join(tmp, 'missing') };
      assert.equal(await check('have_ffmpeg', env), false);
      assert.equal(await check('have_ffprobe', env), false);
      const result = await execa(bash, ['-c', '. scripts/preflight.sh; bad_binary_settings'], { cwd: REPO, env: { ...env, HOME: tmp }, extendEnv: false });
      assert.equal(result.stdout.trim(), `FFMPEG_PATH=${env.FFMPEG_PATH} FFPROBE_PATH=${env.FFPROBE_PATH}`);
    });

    it('a directory is not an executable', async () => {
      assert.equal(await check('have_ffprobe', { PATH: bin, FFPROBE_PATH: bin }), false);
    });

    it("takes ffmpeg-static's ffmpeg, but never as ffprobe (the package ships none)", async () => {
      const staticFfmpeg = path.join(bin, 'static-ffmpeg');
      assert.equal(await check('have_ffmpeg', { PATH: noneOnPath() }, staticFfmpeg), true);
      assert.equal(await check('have_ffprobe', { PATH: noneOnPath() }, staticFfmpeg), false);
      // ffmpeg-static installed without its download: its path names no file.
      assert.equal(await check('have_ffmpeg', { PATH: noneOnPath() }, path.join(tmp, 'missing')), false);
    });
  });
});
