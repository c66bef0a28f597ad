import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { NewVideo, VideoRecord, VideoRepository } from '../../../src/db/types.ts';
import { AppError } from '../../../src/errors/app-error.ts';
import { createLogger } from '../../../src/logger.ts';
import { ExtractionService, type ExtractionMedia } from '../../../src/services/extraction.service.ts';
import { UploadService, type UploadMedia } from '../../../src/services/upload.service.ts';
import { LocalStorage } from '../../../src/storage/local-storage.ts';
import type { VideoStorage } from '../../../src/storage/video-storage.ts';

/** A storage with no local files, like S3 (ffmpeg must be given a downloaded copy): LocalStorage minus localPath. */
function remoteStorage(root: string): VideoStorage {
  const local = new LocalStorage(root);
  return {
    driver: 'remote',
    writeStream: (key, data) => local.writeStream(key, data),
    write: (key, data) => local.write(key, data),
    read: (key) => local.read(key),
    createReadStream: (key, range) => local.createReadStream(key, range),
    exists: (key) => local.exists(key),
    size: (key) => local.size(key),
    localPath: () => undefined,
    delete: (keys) => local.delete(keys),
    deletePrefix: (prefix) => local.deletePrefix(prefix),
    list: (prefix) => local.list(prefix),
  };
}

const probe = {
  ok: true as const,
  video: { durationMs: 2000, fps: 10, width: 64, height: 48, codec: 'h264', startTimeMs: 0, creationTime: null, frameCountEstimate: 20 },
  raw: {},
};

describe('Upload checks and extraction with a storage that has no local files (S3)', () => {
  let tmp: string;
  let workDir: string;

  beforeEach(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-ingest-'));
    workDir = path.join(tmp, 'work');
    await fs.mkdir(workDir);
  });
  afterEach(() => fs.rm(tmp, { recursive: true, force: true }));

  function setUp(media: Partial<UploadMedia & ExtractionMedia>, keepSourceVideo = true) {
    const storage = remoteStorage(path.join(tmp, 'store'));
    const rows = new Map<string, VideoRecord>();
    const videos = {
      create: async (video: NewVideo) => {
        const row = { ...video, status: 'queued', framesTotal: null, framesDone: 0, framesFailed: 0, error: null, createdAt: new Date(), updatedAt: new Date(), completedAt: null, preview: null, previewPending: false } as VideoRecord;
        rows.set(video.id, row);
        return row;
      },
      get: async (id: string) => rows.get(id),
      delete: async (id: string) => void rows.delete(id),
      startExtraction: async (id: string) => (rows.get(id)!.status = 'extracting', 0),
      recordFramesPublished: async () => true,
      markExtracted: async (id: string, framesTotal: number, previewPending = false) => Object.assign(rows.get(id)!, { framesTotal, status: 'processing', previewPending }),
      markFailed: async (id: string, error: string) => (Object.assign(rows.get(id)!, { status: 'failed', error }), true),
      isCancelled: async () => false,
    } as unknown as VideoRepository;
    const seen: string[] = [];
    const fullMedia: UploadMedia & ExtractionMedia = {
      probe: async (file) => {
        seen.push(await fs.readFile(file, 'utf8'));
        return probe as never;
      },
      verifyDecodable: async () => ({ ok: true }) as never,
      extractFrames: async (file, _options, onFrame) => {
        seen.push(await fs.readFile(file, 'utf8'));
        for (let index = 0; index < 3; index += 1) await onFrame({ index, ptsMs: index * 100, jpeg: Buffer.from([index]) });
        return { frames: 3 };
      },
      ...media,
    };
    const settings = { batchSize: 2, maxUploadBytes: 1000, defaultFps: 5, maxFps: 30, jpegQuality: 3, probeConcurrency: 2, workDir, keepSourceVideo, limits: { maxDurationS: 3600, maxFrames: 1000, maxPixels: 1_000_000 } };
    const logger = createLogger({ logLevel: 'error', logFormat: 'json' }, 'test', { silent: true });
    // The preview is made from the same downloaded copy as the frames, before that copy is deleted.
    const previews = {
      enabled: true,
      create: async (_video: unknown, file: string) => {
        seen.push(`preview from ${await fs.readFile(file, 'utf8')}`);
        return true;
      },
    };
    // Extraction jobs are run as a worker would take them, one by one.
    const queued: string[] = [];
    const queue = {
      publish: async () => {},
      enqueueExtraction: async (videoId: string) => queued.push(videoId) > 0,
      extractionsEnqueued: async () => new Set<string>(),
      extractionFinished: async () => {},
      discardVideoJobs: async () => 0,
    };
    const extraction = new ExtractionService(settings, videos, storage, fullMedia, queue, logger, previews);
    const service = new UploadService(settings, videos, storage, fullMedia, queue);
    const drain = async () => {
      for (let videoId = queued.shift(); videoId !== undefined; videoId = queued.shift()) await extraction.run({ videoId });
    };
    return { service, drain, storage, rows, seen };
  }

  it('probes and extracts from downloaded copies, and deletes them afterwards', async () => {
    const { service, drain, storage, rows, seen } = setUp({});
    const staged = await service.stageUpload('clip.mp4', Readable.from([Buffer.from('video bytes')]));
    const video = await service.acceptUpload(staged, undefined);
    await drain();
    assert.deepEqual(seen, ['video bytes', 'video bytes', 'preview from video bytes']);
    assert.equal(rows.get(video.id)!.status, 'processing');
    assert.deepEqual(await storage.list(`videos/${video.id}`), [0, 1, 2].map((i) => `videos/${video.id}/frames/00000${i}.jpg`).concat(`videos/${video.id}/source`));
    assert.deepEqual(await fs.readdir(workDir), []);
  });

  it('deletes the copy, and everything staged, when the upload is refused', async () => {
    const { service, storage } = setUp({ verifyDecodable: async () => ({ ok: false, code: 'truncated_video', message: 'partial file' }) as never });
    const staged = await service.stageUpload('clip.mp4', Readable.from([Buffer.from('bytes')]));
    await assert.rejects(service.acceptUpload(staged, undefined), (error: unknown) => error instanceof AppError && error.status === 422);
    assert.deepEqual(await fs.readdir(workDir), []);
    assert.deepEqual(await storage.list('videos'), []);
  });

  it('deletes the copy when extraction fails, and keeps the source of the failed video', async () => {
    const { service, drain, storage, rows } = setUp({
      extractFrames: async () => {
        throw new Error('ffmpeg exited with code 1');
      },
    }, false);
    const staged = await service.stageUpload('clip.mp4', Readable.from([Buffer.from('bytes')]));
    const video = await service.acceptUpload(staged, undefined);
    await drain();
    assert.equal(rows.get(video.id)!.status, 'failed');
    assert.deepEqual(await fs.readdir(workDir), []);
    assert.deepEqual(await storage.list(`videos/${video.id}`), [`videos/${video.id}/source`]);
  });

  it('deletes the source video once its frames are extracted when KEEP_SOURCE_VIDEO=false', async () => {
    const { service, drain, storage } = setUp({}, false);
    const staged = await service.stageUpload('clip.mp4', Readable.from([Buffer.from('video bytes')]));
    const video = await service.acceptUpload(staged, undefined);
    await drain();
    assert.deepEqual(await storage.list(`videos/${video.id}`), [0, 1, 2].map((i) => `videos/${video.id}/frames/00000${i}.jpg`));
  });
});
