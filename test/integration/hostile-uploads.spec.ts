/**
 * Issue 9 items 1, 2 and 5 against real API and worker processes, with files crafted by ffmpeg here:
 * playlists and manifests naming server files, videos over each limit, headers that lie about length
 * or picture size, sampling rates that take no frame, start offsets past 24.8 days, non-ASCII names.
 * Each refusal is checked for its answer, for the service still serving, and for nothing left behind.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { apiFetch } from '../helpers/api-client.ts';
import { leftovers, NOTHING_LEFT, storedFiles, type Deployment } from '../helpers/leftovers.ts';
import * as fixtures from '../helpers/media-fixtures.ts';
import { waitFor } from '../helpers/service.ts';
import { PREFIX, Stack, type VideoBody } from '../helpers/stack.ts';

const LIMITS = { MAX_DURATION_S: '20', MAX_FRAMES: '40', MAX_PIXELS: String(320 * 240), MAX_FPS: '30' };

describe('hostile uploads: format allowlist, limits, lying headers (real processes)', function () {
  this.timeout(300_000);

  let tmp: string;
  let stack: Stack;
  let deployment: Deployment;
  const media: Record<string, string> = {};

  before(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-hostile-'));
    const dir = path.join(tmp, 'media');
    await fs.mkdir(dir);
    media.good = await fixtures.makeClip(dir, { seconds: 2, fps: 10, width: 160, height: 120, format: 'mp4' });
    // A file that exists on the server (the test's own clip) and one that does not: the answers must not differ.
    media.hlsExisting = await fixtures.makeHlsPlaylist(dir, media.good, 'hls-existing.mp4');
    media.hlsMissing = await fixtures.makeHlsPlaylist(dir, path.join(dir, 'no-such-file.ts'), 'hls-missing.mp4');
    media.dash = await fixtures.makeDashManifest(dir, media.good);
    media.concat = await fixtures.makeConcatList(dir, media.good);
    media.long = await fixtures.makeClip(dir, { seconds: 25, fps: 2, width: 160, height: 120, format: 'mp4' });
    media.manyFrames = await fixtures.makeClip(dir, { seconds: 5, fps: 10, width: 160, height: 120, format: 'mp4' });
    media.large = await fixtures.makeClip(dir, { seconds: 1, fps: 10, width: 640, height: 480, format: 'mp4' });
    media.fast = await fixtures.makeClip(dir, { seconds: 1, fps: 50, width: 160, height: 120, format: 'mp4' });
    const thirtySeconds = await fixtures.makeClip(dir, { seconds: 30, fps: 10, width: 160, height: 120, format: 'mkv' });
    media.lyingLength = await fixtures.withLyingMatroskaDuration(thirtySeconds, 2, path.join(dir, 'says-2s-is-30s.mkv'));
    media.monthLong = await fixtures.withLyingMatroskaDuration(thirtySeconds, 30 * 24 * 3600, path.join(dir, 'says-30-days.mkv'));
    media.lyingSize = await fixtures.makeResolutionSwitch(dir, [160, 120], [640, 480]);
    media.lateStart = await fixtures.makeOffsetClip(dir, 2_200_000);
    stack = await Stack.start(tmp, { ...LIMITS, KEEP_FRAMES: 'false' });
    deployment = { storageDir: stack.storageDir, redis: stack.redis, prefix: PREFIX, sql: stack.db.sql };
    await stack.startApi();
    await stack.startWorker();
  });

  after(async () => {
    await stack?.stop();
    await fs.rm(tmp, { recursive: true, force: true });
  });

  function post(file: string, fps?: string, fileName = path.basename(file)): Promise<Response> {
    return (async () => {
      const form = new FormData();
      if (fps !== undefined) form.append('fps', fps);
      form.append('video', new Blob([await fs.readFile(file)]), fileName);
      return apiFetch(`${stack.baseUrl}/videos`, { method: 'POST', body: form });
    })();
  }

  async function video(id: string): Promise<VideoBody & { originalName: string; sampleFps: number | null }> {
    return (await (await apiFetch(`${stack.baseUrl}/videos/${id}`)).json()) as VideoBody & { originalName: string; sampleFps: number | null };
  }

  /** The refusal's status, code and message; the service still serves, and nothing of the upload is left. */
  async function refused(res: Response, status: number, code: string, message?: RegExp): Promise<string> {
    const text = await res.text();
    assert.equal(res.status, status, text);
    const body = JSON.parse(text) as { error: { code: string; message: string } };
    assert.equal(body.error.code, code, text);
    if (message) assert.match(body.error.message, message);
    assert.doesNotMatch(body.error.message, new RegExp(tmp), 'the answer names a server path');
    assert.equal((await apiFetch(`${stack.baseUrl}/healthz`)).status, 200);
    assert.deepEqual(await leftovers(deployment), NOTHING_LEFT);
    return text;
  }

  async function accepted(res: Response): Promise<string> {
    assert.equal(res.status, 202, await res.clone().text());
    return ((await res.json()) as { id: string }).id;
  }

  /** A video accepted on its header's word that breaks a limit while extracted: failed, its frames and jobs gone. */
  async function failsDuringExtraction(id: string, reason: RegExp): Promise<void> {
    const failed = await waitFor('the video to fail', async () => {
      const body = await video(id);
      return body.status === 'failed' ? body : body.status === 'completed' ? body : undefined;
    }, 120_000, 100);
    assert.equal(failed.status, 'failed', JSON.stringify(failed));
    assert.match(failed.error ?? '', reason);
    await waitFor('its jobs to be acknowledged', async () => ((await stack.framesInRedis()) === 0 ? true : undefined), 60_000, 100);
    assert.deepEqual(await stack.storedFrames(id), []);
    assert.ok((await storedFiles(stack.storageDir)).every((file) => !file.includes('.partial-')));
  }

  describe('item 1: only self-contained files in allowlisted containers are read', () => {
    it('an HLS playlist naming a server file: 415 unsupported_format, the same answer whether the file exists or not', async () => {
      const existing = await refused(await post(media.hlsExisting!), 415, 'unsupported_format', /container format \(hls\) is not accepted; accepted: MP4/);
      const missing = await refused(await post(media.hlsMissing!), 415, 'unsupported_format');
      assert.equal(existing, missing);
    });

    it('a DASH manifest and an ffconcat list naming a server file: 415 unsupported_format', async () => {
      await refused(await post(media.dash!), 415, 'unsupported_format', /\(dash\)/);
      await refused(await post(media.concat!), 415, 'unsupported_format', /\(concat\)/);
    });
  });

  describe('item 2: limits at upload, from the probe', () => {
    it('longer than MAX_DURATION_S: 422 video_too_long', async () => {
      await refused(await post(media.long!, '1'), 422, 'video_too_long', /lasts 25 s; at most 20 s.*MAX_DURATION_S/);
    });

    it('a duration past 24.8 days (integer milliseconds overflow there): 422 video_too_long, not a database error', async () => {
      await refused(await post(media.monthLong!, '1'), 422, 'video_too_long', /lasts 2590000 s/);
    });

    it('more frames than MAX_FRAMES after sampling: 422 too_many_frames, with the rate that would fit', async () => {
      await refused(await post(media.manyFrames!, 'all'), 422, 'too_many_frames', /every frame yields about 50 frames; at most 40.*MAX_FRAMES.*sample at most 8 fps/);
    });

    it('pictures larger than MAX_PIXELS: 422 too_many_pixels, before any frame is decoded', async () => {
      await refused(await post(media.large!, '1'), 422, 'too_many_pixels', /640x480.*MAX_PIXELS/);
    });

    it('fps below 0.01 (one frame per 100 s): 400 invalid_fps', async () => {
      for (const fps of ['0.0000001', '0.005']) await refused(await post(media.good!, fps), 400, 'invalid_fps', /from 0.01 to 30/);
    });

    it('a sampling that takes no frame: 422 no_frames', async () => {
      await refused(await post(media.good!, '0.1'), 422, 'no_frames', /0.1 fps takes no frame from this 2 s video; sample at least 0.25 fps/);
    });

    it('fps=all on a 50 fps source samples at MAX_FPS (30)', async () => {
      const id = await accepted(await post(media.fast!, 'all'));
      const done = await stack.waitCompleted(id);
      assert.equal(done.status, 'completed', JSON.stringify(done));
      assert.equal((await video(id)).sampleFps, 30);
      assert.equal(done.framesTotal, 30);
    });
  });

  describe('item 2: a header that lies does not get past the limits during extraction', () => {
    it('a 30 s video whose header says 2 s, every frame: fails at MAX_FRAMES', async () => {
      await failsDuringExtraction(await accepted(await post(media.lyingLength!, 'all')), /more than 40 frames \(MAX_FRAMES\)/);
    });

    it('the same video sampled at 0.5 fps (one frame by its header): fails at MAX_DURATION_S', async () => {
      await failsDuringExtraction(await accepted(await post(media.lyingLength!, '0.5')), /runs past 20 s \(MAX_DURATION_S\)/);
    });

    it('a raw stream announcing 160x120 that switches to 640x480: decoders refuse the larger pictures, the video fails', async () => {
      await failsDuringExtraction(await accepted(await post(media.lyingSize!, 'all')), /640x480 pictures.*MAX_PIXELS/);
    });
  });

  describe('item 5: smaller fixes', () => {
    it('a start offset past 24.8 days is stored (bigint) and frame times still start at 0', async () => {
      const id = await accepted(await post(media.lateStart!, '5'));
      const done = await stack.waitCompleted(id);
      assert.equal(done.status, 'completed', JSON.stringify(done));
      const [row] = await stack.db.sql<{ start_time_ms: number }[]>`SELECT start_time_ms FROM videos WHERE id = ${id}`;
      assert.equal(row!.start_time_ms, 2_200_000_000);
      const frames = await stack.db.sql<{ pts_ms: number }[]>`SELECT pts_ms FROM frames WHERE video_id = ${id} ORDER BY frame_index`;
      assert.deepEqual(frames.map((frame) => frame.pts_ms), [0, 200, 400, 600, 800, 1000, 1200, 1400, 1600, 1800]);
    });

    it('a non-ASCII file name is stored as sent (UTF-8)', async () => {
      const name = 'vidéo-東京 🎥.mp4';
      const id = await accepted(await post(media.good!, '5', name));
      assert.equal((await video(id)).originalName, name);
    });
  });
});
