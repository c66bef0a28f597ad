import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { createClient } from 'redis';
import type { VideoRecord } from '../../src/db/types.ts';
import { PgVideoRepository } from '../../src/db/videos.repository.ts';
import { createLogger, type Logger } from '../../src/logger.ts';
import { checkIdleScheduler, resolveMediaBinaries } from '../../src/media/binaries.ts';
import { MediaRepository } from '../../src/media/media.repository.ts';
import { PreviewService, type PreviewMedia, type PreviewSettings } from '../../src/services/preview.service.ts';
import { LocalStorage } from '../../src/storage/local-storage.ts';
import { apiFetch } from '../helpers/api-client.ts';
import { createTestDatabase, newVideoInput, type TestDatabase } from '../helpers/database.ts';
import * as fixtures from '../helpers/media-fixtures.ts';
import { deleteKeys, uniquePrefix } from '../helpers/redis.ts';
import { freePort, ServiceProcess, waitFor } from '../helpers/service.ts';

interface PreviewStream {
  codec_name: string;
  profile?: string;
  pix_fmt: string;
  width: number;
  height: number;
  start_time: string;
  nb_read_frames?: string;
}

/** ffprobe's view of a preview file: its one stream (frames counted by decoding) and the container's duration. */
async function probePreview(file: string): Promise<{ streams: PreviewStream[]; format: { format_name: string; duration: string } }> {
  const { stdout } = await execa('ffprobe', ['-v', 'error', '-count_frames', '-print_format', 'json', '-show_streams', '-show_format', file]);
  return JSON.parse(stdout) as { streams: PreviewStream[]; format: { format_name: string; duration: string } };
}

/** Offsets of an MP4's top-level boxes by type (moov before mdat is what lets a browser start playing at once). */
function topLevelBoxes(data: Buffer): Map<string, number> {
  const boxes = new Map<string, number>();
  for (let offset = 0; offset + 8 <= data.length; ) {
    let size = data.readUInt32BE(offset);
    const type = data.toString('latin1', offset + 4, offset + 8);
    if (size === 1) size = Number(data.readBigUInt64BE(offset + 8));
    if (size < 8) break;
    boxes.set(type, offset);
    offset += size;
  }
  return boxes;
}

describe('previews: a browser-playable copy written after extraction (real ffmpeg, storage and PostgreSQL)', function () {
  this.timeout(180_000);
  let db: TestDatabase;
  let videos: PgVideoRepository;
  let storage: LocalStorage;
  let media: MediaRepository;
  let tmp: string;
  let workDir: string;
  let vtestClip: string;
  const warnings: Array<{ message: string; meta: Record<string, unknown> }> = [];
  let logger: Logger;

  before(async () => {
    db = await createTestDatabase();
    videos = new PgVideoRepository(db.sql);
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-preview-spec-'));
    workDir = path.join(tmp, 'work');
    await fs.mkdir(workDir);
    storage = new LocalStorage(path.join(tmp, 'store'));
    media = new MediaRepository(await resolveMediaBinaries({}));
    vtestClip = await fixtures.copyClip(fixtures.VTEST_AVI, 4, path.join(tmp, 'vtest-4s.avi'));
    logger = createLogger({ logLevel: 'error', logFormat: 'json' }, 'test', { silent: true });
    logger.warn = ((message: string, meta: Record<string, unknown>) => {
      warnings.push({ message, meta });
      return logger;
    }) as Logger['warn'];
  });
  after(async () => {
    await db?.drop();
    await fs.rm(tmp, { recursive: true, force: true });
  });
  beforeEach(() => {
    warnings.length = 0;
  });

  function previews(overrides: Partial<PreviewSettings> = {}): PreviewService {
    return new PreviewService({ previewCodec: 'h264', previewMaxBytes: 100_000_000, previewTimeoutMs: 120_000, workDir, ...overrides }, videos, storage, media, logger);
  }

  async function newVideo(): Promise<VideoRecord> {
    return videos.create(
      newVideoInput({
        originalName: 'clip.avi',
        storageKey: 'unused',
        source: { durationMs: 4000, fps: 10, width: 768, height: 576, codec: 'msmpeg4v3', creationTime: null, startTimeMs: 0 },
      }),
    );
  }

  /** After a failed preview: nothing stored or left, and the video recorded as having none for good (no longer pending). */
  async function assertNothingLeft(video: VideoRecord): Promise<void> {
    assert.deepEqual(await storage.list(`videos/${video.id}`), [], 'nothing stored');
    assert.deepEqual(await fs.readdir(workDir), [], 'nothing left in the work directory');
    const { updatedAt: _updatedAt, ...now } = (await videos.get(video.id))!;
    const { updatedAt: _before, ...before } = video;
    assert.deepEqual(now, { ...before, preview: null, previewPending: false }, 'the video otherwise untouched');
  }

  /** A video whose extraction is over and whose preview is being made (as markExtracted leaves it). */
  async function pendingVideo(): Promise<VideoRecord> {
    const video = await newVideo();
    return videos.markExtracted(video.id, 40, true);
  }

  it('writes H.264 MP4 from msmpeg4 AVI (vtest.avi): same size, every frame, from 0 s, index first, recorded on the video', async () => {
    const video = await pendingVideo();
    assert.equal(video.previewPending, true);
    assert.equal(await previews().create(video, vtestClip), true);
    const recorded = await videos.get(video.id);
    assert.deepEqual(recorded!.preview, { key: `videos/${video.id}/preview.mp4`, mimeType: 'video/mp4' });
    assert.equal(recorded!.previewPending, false);
    const file = storage.localPath(recorded!.preview!.key);
    const { streams, format } = await probePreview(file);
    assert.equal(streams.length, 1, 'video only');
    assert.deepEqual(
      { codec: streams[0]!.codec_name, profile: streams[0]!.profile, pixFmt: streams[0]!.pix_fmt, width: streams[0]!.width, height: streams[0]!.height },
      { codec: 'h264', profile: 'High', pixFmt: 'yuv420p', width: 768, height: 576 },
    );
    assert.equal(Number(streams[0]!.start_time), 0);
    assert.equal(Number(streams[0]!.nb_read_frames), 40, '4 s at 10 fps, none dropped or duplicated');
    assert.ok(Math.abs(Number(format.duration) - 4) < 0.15, `duration ${format.duration}`);
    const boxes = topLevelBoxes(await fs.readFile(file));
    assert.ok(boxes.get('moov')! < boxes.get('mdat')!, `faststart: moov at ${boxes.get('moov')}, mdat at ${boxes.get('mdat')}`);
    assert.deepEqual(await fs.readdir(workDir), []);
    assert.deepEqual(warnings, []);
  });

  it('scales down to fit 720p, landscape or portrait, keeping the aspect ratio and never scaling up', async () => {
    const dir = path.join(tmp, 'sizes');
    await fs.mkdir(dir);
    const cases = [
      { width: 1920, height: 1080, expected: [1280, 720] },
      { width: 1080, height: 1920, expected: [720, 1280] },
      { width: 1440, height: 1080, expected: [960, 720] },
      { width: 320, height: 240, expected: [320, 240] },
    ];
    for (const { width, height, expected } of cases) {
      const clip = await fixtures.makeClip(dir, { seconds: 1, fps: 5, width, height, format: 'mp4' });
      const video = await newVideo();
      assert.equal(await previews().create(video, clip), true);
      const { streams } = await probePreview(storage.localPath(`videos/${video.id}/preview.mp4`));
      assert.deepEqual([streams[0]!.width, streams[0]!.height], expected, `${width}x${height}`);
    }
  });

  it('writes VP9 WebM with PREVIEW_CODEC=vp9', async () => {
    const video = await newVideo();
    assert.equal(await previews({ previewCodec: 'vp9' }).create(video, vtestClip), true);
    const recorded = await videos.get(video.id);
    assert.deepEqual(recorded!.preview, { key: `videos/${video.id}/preview.webm`, mimeType: 'video/webm' });
    const { streams, format } = await probePreview(storage.localPath(recorded!.preview!.key));
    assert.equal(format.format_name, 'matroska,webm');
    assert.deepEqual([streams[0]!.codec_name, streams[0]!.width, streams[0]!.height, Number(streams[0]!.nb_read_frames)], ['vp9', 768, 576, 40]);
  });

  it('drops a preview that reaches PREVIEW_MAX_BYTES: no preview, nothing stored or left behind, the failure logged', async () => {
    const video = await pendingVideo();
    assert.equal(await previews({ previewMaxBytes: 20_000 }).create(video, vtestClip), false);
    await assertNothingLeft(video);
    assert.equal(warnings.length, 1);
    assert.match(String(warnings[0]!.meta.error), /size limit of 20000 bytes/);
  });

  it('stops and drops a preview that runs past PREVIEW_TIMEOUT_MS', async () => {
    // A FIFO that nobody writes to: ffmpeg waits on it for ever, so only the time limit can end the run.
    const fifo = path.join(tmp, 'never-written.avi');
    await execa('mkfifo', [fifo]);
    const video = await pendingVideo();
    assert.equal(await previews({ previewTimeoutMs: 1000 }).create(video, fifo), false);
    await assertNothingLeft(video);
    assert.match(String(warnings[0]!.meta.error), /the preview took longer than 1000 ms/);
  });

  it('logs a source ffmpeg cannot read, and leaves the video without a preview', async () => {
    const video = await pendingVideo();
    const junk = await fixtures.makeRandomBytes(tmp, 50_000);
    assert.equal(await previews().create(video, junk), false);
    await assertNothingLeft(video);
    assert.match(String(warnings[0]!.meta.error), /ffmpeg exited with code \d+ writing the preview/);
    assert.doesNotMatch(String(warnings[0]!.meta.error), new RegExp(tmp), 'no server paths in the message');
  });

  it('runs every thread of ffmpeg at PREVIEW_NICENESS and under PREVIEW_CPU_POLICY, at the worker\'s own priority with 0 and normal', async () => {
    // An ffmpeg that records the nice value and scheduling policy of each of its threads while it encodes (x264 starts several).
    const dir = await fs.mkdtemp(path.join(tmp, 'nice-'));
    const realFfmpeg = (await execa('sh', ['-c', 'command -v ffmpeg'])).stdout.trim();
    const wrapper = path.join(dir, 'ffmpeg');
    await fs.writeFile(
      wrapper,
      // Every 20 ms while it runs: "thread-id nice policy" for each of its threads (fields 19 and 41 of
      // /proc/<pid>/task/<tid>/stat; policy 0 is SCHED_OTHER, 5 SCHED_IDLE).
      `#!/bin/sh\n"${realFfmpeg}" "$@" &\npid=$!\n: > "${dir}/niceness"\nwhile kill -0 $pid 2>/dev/null; do for t in /proc/$pid/task/*; do cut -d' ' -f1,19,41 "$t/stat" 2>/dev/null; done >> "${dir}/niceness"; sleep 0.02; done\nwait $pid\n`,
      { mode: 0o755 },
    );
    const recording = new MediaRepository(await resolveMediaBinaries({ ffmpegPath: wrapper }));
    const base = os.getPriority();
    const cases = [
      { niceness: 7, policy: 'normal', schedPolicy: 0 },
      { niceness: 0, policy: 'normal', schedPolicy: 0 },
      { niceness: 19, policy: 'idle', schedPolicy: 5 },
      { niceness: 0, policy: 'idle', schedPolicy: 5 },
    ] as const;
    for (const { niceness, policy, schedPolicy } of cases) {
      const video = await pendingVideo();
      const settings = { previewCodec: 'h264', previewMaxBytes: 100_000_000, previewTimeoutMs: 120_000, previewNiceness: niceness, previewCpuPolicy: policy, workDir } as const;
      const service = new PreviewService(settings, videos, storage, recording, logger);
      assert.equal(await service.create(video, vtestClip), true);
      const samples = (await fs.readFile(path.join(dir, 'niceness'), 'utf8')).trim().split('\n').map((line) => line.split(' ').map(Number) as [number, number, number]);
      assert.ok(new Set(samples.map(([thread]) => thread)).size > 1, `ffmpeg's threads seen: ${samples.length} samples`);
      assert.deepEqual(new Set(samples.map(([, nice]) => nice)), new Set([Math.min(19, base + niceness)]), `nice values of ffmpeg's threads with PREVIEW_NICENESS=${niceness}`);
      assert.deepEqual(new Set(samples.map(([, , sched]) => sched)), new Set([schedPolicy]), `scheduling policies of ffmpeg's threads with PREVIEW_CPU_POLICY=${policy}`);
    }
  });

  it('checks at start that a command runs under SCHED_IDLE, and names the setting when it cannot', async () => {
    await checkIdleScheduler();
    await assert.rejects(checkIdleScheduler('/nonexistent/chrt'), /PREVIEW_CPU_POLICY=idle .*"\/nonexistent\/chrt --idle 0" was not found; install util-linux, or set PREVIEW_CPU_POLICY=normal/);
    await assert.rejects(checkIdleScheduler('false'), /exited with status 1/);
  });

  it('drops the preview of a video deleted while it was made: nothing stored or left behind', async () => {
    const video = await pendingVideo();
    // The delete lands during the encode: its clean-up of storage ran before the preview was there.
    const deleting: PreviewMedia = {
      encodePreview: async (...args) => {
        await videos.delete(video.id);
        return media.encodePreview(...args);
      },
    };
    const service = new PreviewService({ previewCodec: 'h264', previewMaxBytes: 100_000_000, previewTimeoutMs: 120_000, workDir }, videos, storage, deleting, logger);
    assert.equal(await service.create(video, vtestClip), false);
    assert.deepEqual(await storage.list(`videos/${video.id}`), []);
    assert.deepEqual(await fs.readdir(workDir), []);
    assert.deepEqual(warnings, []);
  });

  it('runs nothing with PREVIEW_CODEC=off', async () => {
    const video = await newVideo();
    const noMedia = new PreviewService({ previewCodec: 'off', previewMaxBytes: 1, previewTimeoutMs: 1, workDir }, videos, storage, {
      encodePreview: () => assert.fail('no encode with previews off'),
    }, logger);
    assert.equal(await noMedia.create(video, vtestClip), false);
    await assertNothingLeft(video);
  });
});

describe('GET /videos/:id/preview: byte ranges for the browser (real API process)', function () {
  this.timeout(180_000);
  let db: TestDatabase;
  let tmp: string;
  let storageDir: string;
  let baseUrl: string;
  let api: ServiceProcess;
  let extractor: ServiceProcess;
  let prefix: string;
  let videoId: string;
  let preview: Buffer;
  const redis = createClient({ url: 'redis://127.0.0.1:6379' });

  before(async () => {
    db = await createTestDatabase();
    prefix = uniquePrefix();
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-preview-api-'));
    storageDir = path.join(tmp, 'storage');
    const port = await freePort();
    baseUrl = `http://127.0.0.1:${port}`;
    const env = { DATABASE_URL: db.url, QUEUE_PREFIX: prefix, STORAGE_DIR: storageDir, PORT: String(port), HOST: '127.0.0.1', API_KEY: 'test-admin-token' };
    api = ServiceProcess.start('api', env);
    // An extract-only worker and no detector: it extracts the frames, the video moves on to 'processing' (where
    // it stays), and then the preview is written. Its ffmpeg waits for the file `release` first, so the test
    // sees the video extracted with its preview still pending.
    const release = path.join(tmp, 'release');
    extractor = ServiceProcess.start('worker', { ...env, WORKER_ROLES: 'extract', FFMPEG_PATH: await fixtures.ffmpegHoldingPreviews(tmp, release) });
    await redis.connect();
    await api.waitForLog('api listening');
    await extractor.waitForLog('worker started');
    const clip = await fixtures.copyClip(fixtures.VTEST_AVI, 3, path.join(tmp, 'vtest-3s.avi'));
    const form = new FormData();
    form.append('fps', '1');
    form.append('video', new Blob([await fs.readFile(clip)]), 'vtest-3s.avi');
    const upload = await apiFetch(`${baseUrl}/videos`, { method: 'POST', body: form });
    assert.equal(upload.status, 202, await upload.clone().text());
    videoId = ((await upload.json()) as { id: string }).id;
    type VideoBody = { status: string; framesTotal: number | null; preview: unknown; previewPending: boolean };
    const extracted = await waitFor('the extraction', async () => {
      const body = (await (await apiFetch(`${baseUrl}/videos/${videoId}`)).json()) as VideoBody;
      return body.status === 'processing' ? body : undefined;
    }, 120_000);
    assert.deepEqual([extracted.framesTotal, extracted.preview, extracted.previewPending], [3, null, true], 'extracted, its preview still being made');
    await fs.writeFile(release, '');
    const video = await waitFor('the preview', async () => {
      const body = (await (await apiFetch(`${baseUrl}/videos/${videoId}`)).json()) as VideoBody;
      return body.previewPending ? undefined : body;
    }, 120_000);
    assert.deepEqual(video.preview, { url: `/videos/${videoId}/preview`, mimeType: 'video/mp4' });
    preview = await fs.readFile(path.join(storageDir, 'videos', videoId, 'preview.mp4'));
  });

  after(async () => {
    await Promise.all([api?.stop(), extractor?.stop()]);
    await deleteKeys(redis, prefix);
    await redis.quit();
    await db?.drop();
    await fs.rm(tmp, { recursive: true, force: true });
  });

  const get = (range?: string, method = 'GET') => apiFetch(`${baseUrl}/videos/${videoId}/preview`, { method, headers: range === undefined ? {} : { range } });

  it('serves the whole preview with Accept-Ranges, as video/mp4', async () => {
    const res = await get();
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('accept-ranges'), 'bytes');
    assert.equal(res.headers.get('content-type'), 'video/mp4');
    assert.equal(Number(res.headers.get('content-length')), preview.length);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(preview));
  });

  it('answers single ranges with 206 and their bytes: a first probe, open-ended, bounded and suffix', async () => {
    const size = preview.length;
    const cases: Array<[string, number, number]> = [
      ['bytes=0-1', 0, 1],
      ['bytes=0-', 0, size - 1],
      ['bytes=1000-', 1000, size - 1],
      ['bytes=500-4999', 500, 4999],
      ['bytes=-700', size - 700, size - 1],
      [`bytes=${size - 10}-${size + 1000}`, size - 10, size - 1],
    ];
    for (const [range, start, end] of cases) {
      const res = await get(range);
      assert.equal(res.status, 206, range);
      assert.equal(res.headers.get('content-range'), `bytes ${start}-${end}/${size}`, range);
      assert.equal(Number(res.headers.get('content-length')), end - start + 1, range);
      assert.equal(res.headers.get('accept-ranges'), 'bytes');
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(preview.subarray(start, end + 1)), range);
    }
  });

  it('refuses ranges it cannot satisfy with 416, the size in Content-Range and a JSON error', async () => {
    for (const range of [`bytes=${preview.length}-`, 'bytes=20-10', 'bytes=abc', 'bytes=-0']) {
      const res = await get(range);
      assert.equal(res.status, 416, range);
      assert.equal(res.headers.get('content-range'), `bytes */${preview.length}`, range);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'range_not_satisfiable', range);
    }
  });

  it('answers HEAD with the headers only', async () => {
    const res = await get('bytes=0-99', 'HEAD');
    assert.equal(res.status, 206);
    assert.equal(res.headers.get('content-range'), `bytes 0-99/${preview.length}`);
    assert.equal((await res.arrayBuffer()).byteLength, 0);
  });

  it('keeps serving after a client drops a response half way', async () => {
    const res = await get();
    const reader = res.body!.getReader();
    await reader.read();
    await reader.cancel();
    assert.equal((await get('bytes=0-1')).status, 206);
  });

  it("needs a key with the read scope, and hides another key's preview (401, 404)", async () => {
    assert.equal((await apiFetch(`${baseUrl}/videos/${videoId}/preview`, { apiKey: null })).status, 401);
    const created = await apiFetch(`${baseUrl}/admin/keys`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'other', scopes: ['read'] }) });
    assert.equal(created.status, 201, await created.clone().text());
    const { key } = (await created.json()) as { key: string };
    const res = await apiFetch(`${baseUrl}/videos/${videoId}/preview`, { apiKey: key, headers: { range: 'bytes=0-1' } });
    assert.equal(res.status, 404);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'not_found');
  });

  it('says 404 not_found for an unknown video, one without a preview, and a preview gone from storage', async () => {
    const expect404 = async (url: string) => {
      const res = await apiFetch(url);
      assert.equal(res.status, 404, url);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'not_found');
    };
    await expect404(`${baseUrl}/videos/${randomUUID()}/preview`);
    await expect404(`${baseUrl}/videos/not-a-uuid/preview`);
    const file = path.join(storageDir, 'videos', videoId, 'preview.mp4');
    await fs.rename(file, `${file}.moved`);
    try {
      await expect404(`${baseUrl}/videos/${videoId}/preview`);
    } finally {
      await fs.rename(`${file}.moved`, file);
    }
    await db.sql`UPDATE videos SET preview_key = NULL, preview_mime_type = NULL WHERE id = ${videoId}`;
    try {
      await expect404(`${baseUrl}/videos/${videoId}/preview`);
      const body = (await (await apiFetch(`${baseUrl}/videos/${videoId}`)).json()) as { preview: unknown };
      assert.equal(body.preview, null);
    } finally {
      await db.sql`UPDATE videos SET preview_key = ${`videos/${videoId}/preview.mp4`}, preview_mime_type = 'video/mp4' WHERE id = ${videoId}`;
    }
  });
});
