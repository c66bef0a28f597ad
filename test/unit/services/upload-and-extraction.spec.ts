import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import type { NewVideo, VideoPreview, VideoRecord, VideoRepository } from '../../../src/db/types.ts';
import { AppError } from '../../../src/errors/app-error.ts';
import { createLogger } from '../../../src/logger.ts';
import type { DetectionJob } from '../../../src/queue/types.ts';
import { ExtractionService, type ExtractionMedia, type ExtractionQueue, type ExtractionSettings } from '../../../src/services/extraction.service.ts';
import { UploadService, type UploadMedia, type UploadSettings } from '../../../src/services/upload.service.ts';
import type { VideoStorage } from '../../../src/storage/video-storage.ts';

class MemoryStorage implements VideoStorage {
  readonly driver = 'memory';
  readonly objects = new Map<string, Buffer>();
  async writeStream(key: string, data: Readable) {
    const chunks: Buffer[] = [];
    for await (const chunk of data) chunks.push(chunk as Buffer);
    this.objects.set(key, Buffer.concat(chunks));
    return { bytes: this.objects.get(key)!.length };
  }
  async write(key: string, data: Buffer) {
    this.objects.set(key, data);
  }
  async read(key: string) {
    const value = this.objects.get(key);
    if (!value) throw new Error(`no ${key}`);
    return value;
  }
  async createReadStream(key: string) {
    return Readable.from([await this.read(key)]);
  }
  async exists(key: string) {
    return this.objects.has(key);
  }
  async size(key: string) {
    return this.objects.get(key)?.length;
  }
  localPath(key: string) {
    return `/memory/${key}`;
  }
  async delete(keys: string[]) {
    for (const key of keys) this.objects.delete(key);
  }
  async deletePrefix(prefix: string) {
    for (const key of [...this.objects.keys()]) if (key.startsWith(`${prefix}/`)) this.objects.delete(key);
  }
  async list(prefix: string) {
    return [...this.objects.keys()].filter((key) => key.startsWith(`${prefix}/`)).sort();
  }
}

/** The queue as extraction and uploads see it: extraction jobs enqueued once per video, detection jobs published. */
class MemoryQueue implements ExtractionQueue {
  readonly published: DetectionJob[] = [];
  /** Extraction jobs queued, in order (what workers would reserve). */
  readonly extractions: string[] = [];
  readonly enqueued = new Set<string>();
  enqueueFault: Error | undefined;
  async publish(jobs: DetectionJob[]) {
    this.published.push(...jobs);
  }
  async enqueueExtraction(videoId: string) {
    if (this.enqueueFault) throw this.enqueueFault;
    if (this.enqueued.has(videoId)) return false;
    this.enqueued.add(videoId);
    this.extractions.push(videoId);
    return true;
  }
  async extractionsEnqueued(videoIds: string[]) {
    return new Set(videoIds.filter((id) => this.enqueued.has(id)));
  }
  async extractionFinished(videoId: string) {
    this.enqueued.delete(videoId);
  }
  /** Jobs a cancel or delete removed (what ReliableQueue.discardVideoJobs takes off pending). */
  readonly discarded: DetectionJob[] = [];
  async discardVideoJobs(videoId: string) {
    const kept = this.published.filter((job) => job.videoId !== videoId);
    this.discarded.push(...this.published.filter((job) => job.videoId === videoId));
    const removed = this.published.length - kept.length;
    this.published.splice(0, this.published.length, ...kept);
    this.enqueued.delete(videoId);
    return removed;
  }
}

class MemoryVideos implements VideoRepository {
  readonly rows = new Map<string, VideoRecord>();
  async create(video: NewVideo): Promise<VideoRecord> {
    const now = new Date();
    const record: VideoRecord = { ...video, status: 'queued', framesTotal: null, framesDone: 0, framesFailed: 0, error: null, createdAt: now, updatedAt: now, completedAt: null, preview: null, previewPending: false };
    this.rows.set(video.id, record);
    return record;
  }
  async get(id: string) {
    return this.rows.get(id);
  }
  /** frames_published of each video (the extraction checkpoint). */
  readonly checkpoints = new Map<string, number>();
  async startExtraction(id: string) {
    const row = this.rows.get(id);
    if (!row || (row.status !== 'queued' && row.status !== 'extracting')) return undefined;
    row.status = 'extracting';
    return this.checkpoints.get(id) ?? 0;
  }
  async recordFramesPublished(id: string, frames: number) {
    if (this.rows.get(id)?.status !== 'extracting') return false;
    this.checkpoints.set(id, Math.max(frames, this.checkpoints.get(id) ?? 0));
    return true;
  }
  async listQueued(_olderThanMs: number, after: { createdAt: Date; id: string } | undefined, limit: number) {
    const queued = [...this.rows.values()].filter((row) => row.status === 'queued').sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || a.id.localeCompare(b.id));
    const start = after ? queued.findIndex((row) => row.id === after.id) + 1 : 0;
    return queued.slice(start, start + limit).map((row) => ({ id: row.id, createdAt: row.createdAt }));
  }
  async markExtracted(id: string, framesTotal: number, previewPending = false) {
    const row = this.rows.get(id);
    if (!row) throw new Error(`video ${id} no longer exists`);
    if (row.status === 'failed' || row.status === 'cancelled') return row;
    Object.assign(row, { framesTotal, status: framesTotal === row.framesDone ? 'completed' : 'processing', previewPending });
    return row;
  }
  async cancel(id: string) {
    const row = this.rows.get(id);
    if (row && ['queued', 'extracting', 'processing'].includes(row.status)) row.status = 'cancelled';
    return row;
  }
  async isCancelled(id: string) {
    const row = this.rows.get(id);
    return !row || row.status === 'cancelled';
  }
  async markFailed(id: string, error: string) {
    const row = this.rows.get(id);
    if (!row || (row.status !== 'queued' && row.status !== 'extracting')) return false;
    Object.assign(row, { status: 'failed', error });
    return true;
  }
  async setPreview(id: string, preview: VideoPreview | null) {
    const row = this.rows.get(id);
    if (row) Object.assign(row, { preview, previewPending: false });
    return row !== undefined;
  }
  async delete(id: string) {
    this.rows.delete(id);
  }
}

const settings: UploadSettings & ExtractionSettings = { batchSize: 4, maxUploadBytes: 1000, defaultFps: 5, maxFps: 30, jpegQuality: 3, probeConcurrency: 2, limits: { maxDurationS: 3600, maxFrames: 1000, maxPixels: 1_000_000 } };
const goodProbe = {
  ok: true as const,
  video: { durationMs: 2000, fps: 10, width: 64, height: 48, codec: 'h264', startTimeMs: 0, creationTime: null, frameCountEstimate: 20 },
  raw: {},
};

function setUp(media: Partial<UploadMedia & ExtractionMedia> = {}, overrides: Partial<UploadSettings & ExtractionSettings> = {}, previewsEnabled = true) {
  const storage = new MemoryStorage();
  const videos = new MemoryVideos();
  const queue = new MemoryQueue();
  const published = queue.published;
  // What the preview maker saw when it was called: the file, the jobs published, the video as it was by then,
  // and whether its source was still stored.
  const previewCalls: Array<{ file: string; jobsPublished: number; status: string; framesTotal: number | null; previewPending: boolean; sourceStored: boolean }> = [];
  // previews.dying > 0: that many preview runs break off as a dying worker's would (before anything is recorded).
  const previews = {
    enabled: previewsEnabled,
    dying: 0,
    create: async (video: { id: string }, file: string) => {
      if (previews.dying > 0) {
        previews.dying -= 1;
        throw new Error('the worker died');
      }
      const row = videos.rows.get(video.id)!;
      previewCalls.push({ file, jobsPublished: published.length, status: row.status, framesTotal: row.framesTotal, previewPending: row.previewPending, sourceStored: await storage.exists(row.storageKey) });
      await videos.setPreview(video.id, { key: `videos/${video.id}/preview.mp4`, mimeType: 'video/mp4' });
      return true;
    },
  };
  const fullMedia: UploadMedia & ExtractionMedia = {
    probe: async () => goodProbe as never,
    verifyDecodable: async () => ({ ok: true }) as never,
    extractFrames: async (_path, _options, onFrame) => {
      for (let index = 0; index < 10; index += 1) await onFrame({ index, ptsMs: index * 200, jpeg: Buffer.from([index]) });
      return { frames: 10 };
    },
    ...media,
  };
  const logger = createLogger({ logLevel: 'error', logFormat: 'json' }, 'test', { silent: true });
  const extraction = new ExtractionService({ ...settings, ...overrides }, videos, storage, fullMedia, queue, logger, previews);
  const service = new UploadService({ ...settings, ...overrides }, videos, storage, fullMedia, queue);
  /** Runs the queued extraction jobs, as a worker would. */
  const drain = async () => {
    for (let videoId = queue.extractions.shift(); videoId !== undefined; videoId = queue.extractions.shift()) await extraction.run({ videoId });
  };
  return { service, extraction, drain, queue, storage, videos, published, previewCalls, previews };
}

describe('UploadService and ExtractionService', () => {
  it('accepts a video, extracts its frames into storage and publishes jobs of BATCH_SIZE frames', async () => {
    const { service, drain, storage, videos, published } = setUp();
    const staged = await service.stageUpload('clip.mp4', Readable.from([Buffer.from('video bytes')]));
    const video = await service.acceptUpload(staged, '2.5');
    assert.equal(video.sampleFps, 2.5);
    await drain();
    assert.deepEqual(published.map((job) => job.frames.map((frame) => frame.index)), [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]);
    assert.ok(published.every((job) => job.videoId === video.id));
    assert.equal(published[1]!.frames[0]!.ptsMs, 800);
    assert.equal((await storage.list(`videos/${video.id}/frames`)).length, 10);
    assert.equal(videos.rows.get(video.id)!.framesTotal, 10);
    assert.equal(videos.rows.get(video.id)!.status, 'processing');
  });

  it('makes the preview from the local file after the video is marked extracted (pending until then), so completion does not wait for it', async () => {
    const { service, drain, videos, published, previewCalls } = setUp();
    const staged = await service.stageUpload('clip.mp4', Readable.from([Buffer.from('video bytes')]));
    const video = await service.acceptUpload(staged, undefined);
    await drain();
    assert.deepEqual(previewCalls, [{ file: `/memory/videos/${video.id}/source`, jobsPublished: published.length, status: 'processing', framesTotal: 10, previewPending: true, sourceStored: true }]);
    assert.equal(published.length, 3);
    const row = videos.rows.get(video.id)!;
    assert.equal(row.status, 'processing');
    assert.deepEqual([row.previewPending, row.preview?.mimeType], [false, 'video/mp4']);
  });

  it('with previews off, marks no video as waiting for one and makes none', async () => {
    const { service, drain, videos, previewCalls } = setUp({}, {}, false);
    const video = await service.acceptUpload(await service.stageUpload('clip.mp4', Readable.from([Buffer.from('x')])), undefined);
    await drain();
    assert.deepEqual(previewCalls, []);
    assert.deepEqual([videos.rows.get(video.id)!.status, videos.rows.get(video.id)!.previewPending], ['processing', false]);
  });

  it('a redelivered job of an extracted video whose preview is still pending makes it, then deletes the source (KEEP_SOURCE_VIDEO=false)', async () => {
    const { service, extraction, drain, videos, storage, published, previewCalls, previews } = setUp({}, { keepSourceVideo: false }, true);
    // The first delivery extracted the frames and died making the preview: pending, the source still there.
    previews.dying = 1;
    const video = await service.acceptUpload(await service.stageUpload('clip.mp4', Readable.from([Buffer.from('x')])), undefined);
    await drain();
    const row = videos.rows.get(video.id)!;
    assert.deepEqual([row.status, row.previewPending, row.preview], ['processing', true, null]);
    const jobs = published.length;
    // The job is delivered again: no frame is extracted again, the preview is made from the source, which then goes.
    await extraction.run({ videoId: video.id });
    assert.equal(published.length, jobs);
    assert.deepEqual(previewCalls, [{ file: `/memory/videos/${video.id}/source`, jobsPublished: jobs, status: 'processing', framesTotal: 10, previewPending: true, sourceStored: true }]);
    assert.deepEqual([row.previewPending, row.preview?.key], [false, `videos/${video.id}/preview.mp4`]);
    assert.equal(await storage.exists(row.storageKey), false);
  });

  it('a redelivered job finds previews turned off since: the pending video is recorded as having none', async () => {
    const { service, extraction, drain, videos, previewCalls, previews } = setUp();
    previews.dying = 1;
    const video = await service.acceptUpload(await service.stageUpload('clip.mp4', Readable.from([Buffer.from('x')])), undefined);
    await drain();
    assert.equal(videos.rows.get(video.id)!.previewPending, true);
    previews.enabled = false;
    await extraction.run({ videoId: video.id });
    assert.deepEqual(previewCalls, []);
    assert.deepEqual([videos.rows.get(video.id)!.previewPending, videos.rows.get(video.id)!.preview], [false, null]);
  });

  it('makes no preview when extraction breaks', async () => {
    const { service, drain, videos, previewCalls } = setUp({
      extractFrames: async () => {
        throw new Error('ffmpeg exited with code 1');
      },
    });
    const video = await service.acceptUpload(await service.stageUpload('clip.mp4', Readable.from([Buffer.from('x')])), undefined);
    await drain();
    assert.equal(videos.rows.get(video.id)!.status, 'failed');
    assert.deepEqual(previewCalls, []);
  });

  it('has frames stored scaled down to the FRAME_SIZE box when the video is larger, and at source size otherwise', async () => {
    const scales: unknown[] = [];
    const media: Partial<ExtractionMedia> = {
      extractFrames: async (_path, options) => {
        scales.push(options.scale);
        return { frames: 0 };
      },
    };
    for (const frameSize of [{ width: 32, height: 32 }, { width: 64, height: 64 }, null]) {
      const { service, drain } = setUp(media, { frameSize });
      await service.acceptUpload(await service.stageUpload('clip.mp4', Readable.from([Buffer.from('video bytes')])), undefined);
      await drain();
    }
    // 64x48 into a 32x32 box: 32x24, what the letterbox makes of it; it fits a 64x64 box already; null keeps the source.
    assert.deepEqual(scales, [{ from: { width: 64, height: 48 }, to: { width: 32, height: 24 } }, undefined, undefined]);
  });

  it('uses the default fps, and null for "all"', async () => {
    const { service } = setUp();
    assert.equal(service.parseFpsField(undefined), 5);
    assert.equal(service.parseFpsField('all'), null);
    for (const bad of ['0', '-3', '31', 'fast', '1e2']) {
      assert.throws(() => service.parseFpsField(bad), (error: unknown) => error instanceof AppError && error.code === 'invalid_fps', bad);
    }
  });

  for (const name of ['../../etc/passwd', 'a/b.mp4', 'a\\b.mp4', '..', 'bad\nname.mp4']) {
    it(`refuses the file name ${JSON.stringify(name)} before writing anything`, async () => {
      const { service, storage } = setUp();
      await assert.rejects(service.stageUpload(name, Readable.from([Buffer.from('x')])), (error: unknown) => error instanceof AppError && error.code === 'invalid_file_name');
      assert.equal(storage.objects.size, 0);
    });
  }

  const refusals: Array<[string, Partial<UploadMedia & ExtractionMedia>, string | undefined, number, string]> = [
    ['an unreadable file', { probe: async () => ({ ok: false, code: 'unreadable_video', message: 'moov atom not found' }) as never }, undefined, 415, 'unreadable_video'],
    ['an image', { probe: async () => ({ ok: false, code: 'not_a_video', message: 'still image' }) as never }, undefined, 415, 'not_a_video'],
    ['a truncated video', { verifyDecodable: async () => ({ ok: false, code: 'truncated_video', message: 'partial file' }) as never }, undefined, 422, 'truncated_video'],
    ['a bad fps', {}, 'lots', 400, 'invalid_fps'],
  ];
  for (const [what, media, fps, status, code] of refusals) {
    it(`refuses ${what} with ${status} ${code} and deletes what was staged`, async () => {
      const { service, storage, videos, published } = setUp(media);
      const staged = await service.stageUpload('clip.mp4', Readable.from([Buffer.from('bytes')]));
      assert.equal(storage.objects.size, 1);
      await assert.rejects(service.acceptUpload(staged, fps), (error: unknown) => error instanceof AppError && error.status === status && error.code === code);
      assert.equal(storage.objects.size, 0);
      assert.equal(videos.rows.size, 0);
      assert.equal(published.length, 0);
    });
  }

  it('refuses an empty file', async () => {
    const { service, storage } = setUp();
    const staged = await service.stageUpload('empty.mp4', Readable.from([]));
    await assert.rejects(service.acceptUpload(staged, undefined), (error: unknown) => error instanceof AppError && error.code === 'empty_file');
    assert.equal(storage.objects.size, 0);
  });

  it('stores the creation_time tag as capturedAt, and the upload time when there is none', async () => {
    const creationTime = new Date('2024-05-06T07:08:09.250Z');
    const tagged = setUp({ probe: async () => ({ ...goodProbe, video: { ...goodProbe.video, creationTime } }) as never });
    const video = await tagged.service.acceptUpload(await tagged.service.stageUpload('tagged.mp4', Readable.from([Buffer.from('bytes')])), undefined);
    assert.equal(tagged.videos.rows.get(video.id)!.capturedAt.toISOString(), creationTime.toISOString());
    assert.equal(tagged.videos.rows.get(video.id)!.source.creationTime?.toISOString(), creationTime.toISOString());

    const untagged = setUp();
    const before = Date.now();
    const plain = await untagged.service.acceptUpload(await untagged.service.stageUpload('plain.mp4', Readable.from([Buffer.from('bytes')])), undefined);
    const capturedAt = untagged.videos.rows.get(plain.id)!.capturedAt.getTime();
    assert.ok(capturedAt >= before && capturedAt <= Date.now(), 'capturedAt is the upload time');
    await Promise.all([tagged.drain(), untagged.drain()]);
  });

  it('runs at most PROBE_CONCURRENCY upload checks (ffprobe and the decode checks) at once; the rest wait', async () => {
    let active = 0;
    let peak = 0;
    const started: string[] = [];
    const gates: Array<() => void> = [];
    // A check counts as running from its ffprobe until its decode check returns; ffprobe waits for the test's gate.
    const hold = async (file: string) => {
      started.push(file);
      await new Promise<void>((resolve) => gates.push(resolve));
    };
    const { service, drain, videos } = setUp(
      {
        probe: async (file) => {
          active += 1;
          peak = Math.max(peak, active);
          await hold(file);
          return goodProbe as never;
        },
        verifyDecodable: async () => {
          await new Promise((resolve) => setImmediate(resolve)); // a check ends after its decode runs
          active -= 1;
          return { ok: true } as never;
        },
      },
      { probeConcurrency: 3 },
    );
    const uploads = await Promise.all(Array.from({ length: 8 }, (_, i) => service.stageUpload(`clip${i}.mp4`, Readable.from([Buffer.from(`video ${i}`)]))));
    const accepted = Promise.all(uploads.map((staged) => service.acceptUpload(staged, undefined)));
    const settle = () => new Promise((resolve) => setImmediate(resolve));
    for (let i = 0; i < 5; i += 1) await settle();
    assert.equal(started.length, 3, 'exactly PROBE_CONCURRENCY checks start in a burst of 8');
    // Release them one at a time: each finished check lets exactly one waiting upload in.
    while (gates.length > 0 || started.length < 8) {
      gates.shift()?.();
      for (let i = 0; i < 5; i += 1) await settle();
      assert.ok(active <= 3, `${active} checks at once`);
    }
    const videosAccepted = await accepted;
    assert.equal(peak, 3);
    assert.equal(started.length, 8);
    assert.equal(videosAccepted.length, 8);
    assert.equal(videos.rows.size, 8);
    await drain();
  });

  it('a refused upload frees its check slot for the next one', async () => {
    let calls = 0;
    const { service, drain } = setUp(
      { probe: async () => (++calls === 1 ? ({ ok: false, code: 'not_a_video', message: 'still image' } as never) : (goodProbe as never)) },
      { probeConcurrency: 1 },
    );
    const first = await service.stageUpload('still.mp4', Readable.from([Buffer.from('png')]));
    const second = await service.stageUpload('clip.mp4', Readable.from([Buffer.from('video')]));
    const [refused, accepted] = await Promise.allSettled([service.acceptUpload(first, undefined), service.acceptUpload(second, undefined)]);
    assert.equal(refused.status, 'rejected');
    assert.equal(accepted.status, 'fulfilled');
    await drain();
  });

  it('marks the video failed when extraction breaks', async () => {
    const { service, drain, videos } = setUp({
      extractFrames: async () => {
        throw new Error('ffmpeg exited with code 1: Invalid data');
      },
    });
    const staged = await service.stageUpload('clip.mp4', Readable.from([Buffer.from('bytes')]));
    const video = await service.acceptUpload(staged, undefined);
    await drain();
    const row = videos.rows.get(video.id)!;
    assert.equal(row.status, 'failed');
    assert.match(row.error ?? '', /Invalid data/);
  });

  it('queues one extraction job per accepted upload and extracts nothing itself', async () => {
    const { service, queue, published, videos } = setUp();
    const video = await service.acceptUpload(await service.stageUpload('clip.mp4', Readable.from([Buffer.from('bytes')])), undefined);
    assert.deepEqual(queue.extractions, [video.id]);
    assert.equal(videos.rows.get(video.id)!.status, 'queued');
    assert.equal(published.length, 0, 'no frame before a worker takes the job');
  });

  it('refuses the upload and leaves nothing behind when its extraction job cannot be queued', async () => {
    const { service, queue, storage, videos } = setUp();
    queue.enqueueFault = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    const staged = await service.stageUpload('clip.mp4', Readable.from([Buffer.from('bytes')]));
    await assert.rejects(service.acceptUpload(staged, undefined), /ECONNREFUSED/);
    assert.equal(videos.rows.size, 0, 'no queued video without a job');
    assert.equal(storage.objects.size, 0);
  });

  it('resumes an interrupted extraction after its checkpoint: earlier frames are neither stored nor published again', async () => {
    let failAt: number | undefined = 6;
    const { service, drain, queue, storage, videos, published } = setUp({
      extractFrames: async (_path, _options, onFrame) => {
        for (let index = 0; index < 10; index += 1) {
          // The connection to PostgreSQL drops mid-extraction: the job is retried, not failed.
          if (index === failAt) throw Object.assign(new Error('Connection terminated'), { code: 'CONNECTION_CLOSED' });
          await onFrame({ index, ptsMs: index * 200, jpeg: Buffer.from([index]) });
        }
        return { frames: 10 };
      },
    });
    const writes: string[] = [];
    const write = storage.write.bind(storage);
    storage.write = async (key, data) => void (writes.push(key), await write(key, data));
    const video = await service.acceptUpload(await service.stageUpload('clip.mp4', Readable.from([Buffer.from('bytes')])), undefined);
    await assert.rejects(drain(), /Connection terminated/);
    assert.equal(videos.rows.get(video.id)!.status, 'extracting', 'a transient failure does not fail the video');
    assert.equal(videos.checkpoints.get(video.id), 4, 'the first batch is published and checkpointed');
    assert.deepEqual(published.map((job) => job.id), [`${video.id}:0`]);
    // The queue redelivers the job (held, or reclaimed after a crash): it is still marked as queued.
    assert.equal(queue.enqueued.has(video.id), true);
    failAt = undefined;
    writes.length = 0;
    queue.extractions.push(video.id);
    await drain();
    assert.deepEqual(writes.map((key) => Number(/(\d+)\.jpg$/.exec(key)![1])), [4, 5, 6, 7, 8, 9], 'frames 0-3 are not stored again');
    assert.deepEqual(published.map((job) => job.frames.map((frame) => frame.index)), [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]], 'each frame published once, in the batches of a clean run');
    assert.equal(videos.rows.get(video.id)!.framesTotal, 10);
    assert.equal(queue.enqueued.has(video.id), false, 'the finished job no longer blocks a new one');
  });

  it('leaves an extraction stopped by its worker (abort) to the next delivery, without failing the video', async () => {
    const controller = new AbortController();
    const { service, extraction, videos } = setUp({
      extractFrames: async (_path, _options, onFrame, signal) => {
        await onFrame({ index: 0, ptsMs: 0, jpeg: Buffer.from([0]) });
        controller.abort(new Error('worker stopping'));
        signal?.throwIfAborted();
        return { frames: 1 };
      },
    });
    const video = await service.acceptUpload(await service.stageUpload('clip.mp4', Readable.from([Buffer.from('bytes')])), undefined);
    await assert.rejects(extraction.run({ videoId: video.id }, controller.signal), /worker stopping/);
    assert.equal(videos.rows.get(video.id)!.status, 'extracting');
  });

  it('sweeps queued videos whose job was never published into the queue, once, and leaves the others', async () => {
    const { service, extraction, queue, videos } = setUp();
    const ids: string[] = [];
    for (let i = 0; i < 3; i += 1) ids.push((await service.acceptUpload(await service.stageUpload(`clip${i}.mp4`, Readable.from([Buffer.from('bytes')])), undefined)).id);
    // The API process died between the row and the job of the second upload.
    queue.enqueued.delete(ids[1]!);
    queue.extractions.splice(queue.extractions.indexOf(ids[1]!), 1);
    assert.equal(await extraction.sweepUnqueued(0), 1);
    assert.deepEqual(queue.extractions, [ids[0], ids[2], ids[1]]);
    assert.equal(await extraction.sweepUnqueued(0), 0, 'a second sweep finds it queued');
    assert.equal(videos.rows.size, 3);
  });

  it('a failing delivery leaves a video another delivery extracted meanwhile as it is, frames and all', async () => {
    const { service, extraction, drain, storage, videos } = setUp();
    const video = await service.acceptUpload(await service.stageUpload('clip.mp4', Readable.from([Buffer.from('bytes')])), undefined);
    await drain();
    const frames = await storage.list(`videos/${video.id}/frames`);
    // A stalled delivery, reclaimed and finished elsewhere, gives up on its dead-letter path.
    await extraction.recordFailedJob({ videoId: video.id }, 'workers died 5 times while holding it');
    assert.equal(videos.rows.get(video.id)!.status, 'processing');
    assert.deepEqual(await storage.list(`videos/${video.id}/frames`), frames);
  });

  it('stops an extraction at its next batch once its video is deleted, and deletes the frames it wrote', async () => {
    const { service, drain, storage, videos, published, queue } = setUp({
      extractFrames: async (_path, _options, onFrame) => {
        for (let index = 0; index < 10; index += 1) {
          if (index === 5) videos.rows.delete(videoId); // DELETE /videos/:id while frames are being extracted
          await onFrame({ index, ptsMs: index * 200, jpeg: Buffer.from([index]) });
        }
        return { frames: 10 };
      },
    });
    const video = await service.acceptUpload(await service.stageUpload('clip.mp4', Readable.from([Buffer.from('bytes')])), undefined);
    const videoId = video.id;
    await drain();
    assert.deepEqual(queue.discarded.map((job) => job.frames.map((frame) => frame.index)), [[0, 1, 2, 3], [4, 5, 6, 7]], 'the batch in hand is published, then it stops, and its jobs are discarded');
    assert.deepEqual(published, []);
    assert.deepEqual(await storage.list(`videos/${videoId}`), [], 'a deleted video keeps nothing, its source included');
  });

  it('a job delivered for a video already extracted, failed or deleted does nothing', async () => {
    const { service, drain, queue, published, videos } = setUp();
    const video = await service.acceptUpload(await service.stageUpload('clip.mp4', Readable.from([Buffer.from('bytes')])), undefined);
    await drain();
    const jobs = published.length;
    queue.extractions.push(video.id, 'no-such-video');
    await drain();
    assert.equal(published.length, jobs);
    assert.equal(videos.rows.get(video.id)!.status, 'processing');
  });

  describe('a video cancelled or deleted during its extraction', () => {
    /** An ffmpeg that yields a frame every few ms until its signal aborts, then rejects as the real one does. */
    const endless: Partial<ExtractionMedia> = {
      extractFrames: async (_path, _options, onFrame, signal) => {
        for (let index = 0; index < 100_000; index += 1) {
          signal?.throwIfAborted();
          await onFrame({ index, ptsMs: index * 200, jpeg: Buffer.from([index % 256]) });
          await new Promise((resolve) => setTimeout(resolve, 2));
        }
        return { frames: 100_000 };
      },
    };
    const framesOf = (storage: MemoryStorage, id: string) => [...storage.objects.keys()].filter((key) => key.startsWith(`videos/${id}/frames/`));
    const until = async (condition: () => boolean) => {
      while (!condition()) await new Promise((resolve) => setTimeout(resolve, 2));
    };

    it('stop() kills it at once: no failure, its jobs and frames discarded, the source kept', async () => {
      const { service, extraction, storage, videos, published } = setUp(endless, { cancelCheckMs: 60_000 });
      const video = await service.acceptUpload(await service.stageUpload('clip.mp4', Readable.from([Buffer.from('bytes')])), undefined);
      const running = extraction.run({ videoId: video.id });
      await until(() => published.length >= 2);
      videos.rows.get(video.id)!.status = 'cancelled'; // the row as a cancel leaves it, without a batch checkpoint to see it
      assert.equal(await extraction.stop(video.id), true);
      await running;
      assert.equal(videos.rows.get(video.id)!.status, 'cancelled');
      assert.deepEqual(published, []);
      assert.deepEqual(framesOf(storage, video.id), []);
      assert.ok(storage.objects.has(`videos/${video.id}/source`));
      assert.equal(await extraction.stop(video.id), false, 'nothing runs any more');
    });

    it('cancelled through an API process: the poll stops it within cancelCheckMs, even between batches', async () => {
      // BATCH_SIZE above the frames it will write: no checkpoint would ever see the cancel.
      const { service, drain, storage, videos, published } = setUp(endless, { cancelCheckMs: 10, batchSize: 1_000_000 });
      const video = await service.acceptUpload(await service.stageUpload('clip.mp4', Readable.from([Buffer.from('bytes')])), undefined);
      const running = drain();
      await until(() => framesOf(storage, video.id).length >= 3);
      await videos.cancel(video.id);
      await running;
      assert.equal(videos.rows.get(video.id)!.status, 'cancelled');
      assert.deepEqual(published, []);
      assert.deepEqual(framesOf(storage, video.id), []);
      assert.ok(storage.objects.has(`videos/${video.id}/source`));
    });

    it('deleted through an API process: everything under its prefix goes, source included', async () => {
      const { service, drain, storage, videos, published } = setUp(endless, { cancelCheckMs: 10 });
      const video = await service.acceptUpload(await service.stageUpload('clip.mp4', Readable.from([Buffer.from('bytes')])), undefined);
      const running = drain();
      await until(() => published.length >= 2);
      await videos.delete(video.id);
      await running;
      assert.deepEqual(published, []);
      assert.deepEqual([...storage.objects.keys()].filter((key) => key.startsWith(`videos/${video.id}/`)), []);
    });

    it('cancelled after its last frame: the jobs it published are discarded, the video stays cancelled', async () => {
      const { service, drain, storage, videos, published } = setUp({
        extractFrames: async (_path, _options, onFrame) => {
          for (let index = 0; index < 6; index += 1) await onFrame({ index, ptsMs: index * 200, jpeg: Buffer.from([index]) });
          return { frames: 6 };
        },
      });
      // The cancel lands after the last frame was published, just before markExtracted (too late for the poll).
      const video = await service.acceptUpload(await service.stageUpload('clip.mp4', Readable.from([Buffer.from('bytes')])), undefined);
      const markExtracted = videos.markExtracted.bind(videos);
      videos.markExtracted = async (id, total) => {
        await videos.cancel(id);
        return markExtracted(id, total);
      };
      await drain();
      assert.equal(videos.rows.get(video.id)!.status, 'cancelled');
      assert.deepEqual(published, []);
      assert.deepEqual(framesOf(storage, video.id), []);
    });

    it('a dead-lettered extraction of a cancelled video is acknowledged rather than dead-lettered (false), the video untouched', async () => {
      const { service, extraction, videos } = setUp();
      const video = await service.acceptUpload(await service.stageUpload('clip.mp4', Readable.from([Buffer.from('bytes')])), undefined);
      await videos.cancel(video.id);
      assert.equal(await extraction.recordFailedJob({ videoId: video.id }, 'workers died 5 times while holding it'), false);
      assert.equal(videos.rows.get(video.id)!.status, 'cancelled');
    });
  });
});
