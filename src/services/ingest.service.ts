import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseFps } from '../config.ts';
import type { NewVideo, VideoRecord, VideoRepository } from '../db/types.ts';
import { AppError, errors } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { scaledFrameSize, type FrameSize } from '../detection/letterbox-geometry.ts';
import type { FrameScale } from '../media/extract-args.ts';
import type { MediaRepository } from '../media/media.repository.ts';
import type { ProbeResult } from '../media/probe.ts';
import type { DetectionJob, FrameRef } from '../queue/types.ts';
import { storageKeys } from '../storage/keys.ts';
import type { VideoStorage } from '../storage/video-storage.ts';
import { TaskLimiter } from './task-limiter.ts';

export interface IngestSettings {
  batchSize: number;
  maxUploadBytes: number;
  defaultFps: number | null;
  maxFps: number;
  jpegQuality: number;
  extractionConcurrency: number;
  /**
   * Uploads checked at once (ffprobe, then up to two short ffmpeg decodes each); the rest wait their turn,
   * so a burst of uploads cannot start an unbounded number of processes on the request path.
   */
  probeConcurrency: number;
  /** Where a storage without local files (S3) has its upload downloaded for ffmpeg; default os.tmpdir(). */
  workDir?: string;
  /** false: the uploaded video is deleted once its frames are extracted. Default true. */
  keepSourceVideo?: boolean;
  /** An extraction whose process stops renewing its lease for this long is restarted by another. */
  extractionLeaseMs: number;
  /**
   * FRAME_SIZE: frames are stored scaled down to fit this box the way the worker's letterbox would
   * (the worker maps boxes back to the video's size); null or omitted stores them at source resolution.
   */
  frameSize?: FrameSize | null;
}

export interface JobPublisher {
  publish(jobs: DetectionJob[]): Promise<void>;
}

export type Media = Pick<MediaRepository, 'probe' | 'verifyDecodable' | 'extractFrames'>;

/** A stored upload that has not been accepted yet. */
export interface StagedUpload {
  videoId: string;
  storageKey: string;
  originalName: string;
  sizeBytes: number;
}

// Probe refusals: the file is not something we can decode (415) or is a video we cannot use (422).
const probeRefusalStatus: Record<string, number> = {
  unreadable_video: 415,
  no_video_stream: 415,
  not_a_video: 415,
  invalid_dimensions: 422,
  truncated_video: 422,
};

/**
 * Upload rules and frame extraction. Uploads are staged into storage first (streamed, never
 * buffered), then checked; anything refused is deleted before the error is returned.
 * Extraction runs off the request path with bounded concurrency and publishes jobs as frames appear,
 * so workers start before a long video is fully extracted.
 */
export class IngestService {
  private readonly extractions: TaskLimiter;
  private readonly probes: TaskLimiter;
  private recoveryTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly settings: IngestSettings,
    private readonly videos: VideoRepository,
    private readonly storage: VideoStorage,
    private readonly media: Media,
    private readonly queue: JobPublisher,
    private readonly logger: Logger,
  ) {
    this.extractions = new TaskLimiter(settings.extractionConcurrency);
    this.probes = new TaskLimiter(settings.probeConcurrency);
  }

  /** Checks a client's file name before anything is written; the name is kept only as a label. */
  checkFileName(name: string): string {
    // Browsers send a base name; separators, dot segments or control characters mean a crafted request.
    if (name.length > 255 || /[/\\\u0000-\u001f\u007f]/.test(name) || name === '.' || name === '..') {
      throw errors.badRequest('invalid_file_name', 'the file name must be a plain name without path separators or control characters');
    }
    return name;
  }

  /** Parses the optional `fps` form field: a positive number up to MAX_FPS, or "all" for every frame. */
  parseFpsField(raw: string | undefined): number | null {
    if (raw === undefined || raw.trim() === '') return this.settings.defaultFps;
    const value = raw.trim();
    if (value === 'all') return null;
    const fps = parseFps(value, this.settings.maxFps);
    if (fps === undefined) {
      throw errors.badRequest('invalid_fps', `fps must be "all" or a number greater than 0 and at most ${this.settings.maxFps}`);
    }
    return fps;
  }

  /** Streams an upload into storage under a new video id. Called by the HTTP layer for each file part. */
  async stageUpload(originalName: string, data: Readable): Promise<StagedUpload> {
    const fileName = this.checkFileName(originalName);
    const videoId = randomUUID();
    const storageKey = storageKeys.source(videoId);
    try {
      const { bytes } = await this.storage.writeStream(storageKey, data);
      return { videoId, storageKey, originalName: fileName, sizeBytes: bytes };
    } catch (error) {
      await this.discardStaged(videoId);
      throw error;
    }
  }

  async discardStaged(videoId: string): Promise<void> {
    await this.storage.deletePrefix(storageKeys.videoPrefix(videoId));
  }

  /**
   * Validates a staged upload and accepts it: a videos row is created and extraction is scheduled.
   * On refusal everything staged is deleted and an AppError says why.
   */
  async acceptUpload(staged: StagedUpload, fpsField: string | undefined): Promise<VideoRecord> {
    try {
      const requestedFps = this.parseFpsField(fpsField);
      if (staged.sizeBytes === 0) throw errors.badRequest('empty_file', 'the uploaded file is empty');
      const probe = await this.probe(staged.storageKey);
      // Sampling at or above the source rate would make ffmpeg duplicate frames: take every frame instead.
      const sourceFps = probe.video.fps;
      const sampleFps = requestedFps !== null && sourceFps !== null && requestedFps >= sourceFps ? null : requestedFps;
      const now = new Date();
      const newVideo: NewVideo = {
        id: staged.videoId,
        originalName: staged.originalName,
        sizeBytes: staged.sizeBytes,
        storageKey: staged.storageKey,
        sampleFps,
        source: {
          durationMs: probe.video.durationMs,
          fps: probe.video.fps,
          width: probe.video.width,
          height: probe.video.height,
          codec: probe.video.codec,
          creationTime: probe.video.creationTime,
          startTimeMs: probe.video.startTimeMs,
        },
        capturedAt: probe.video.creationTime ?? now,
        probe: probe.raw,
      };
      const video = await this.videos.create(newVideo);
      this.scheduleExtraction(video);
      return video;
    } catch (error) {
      await this.discardStaged(staged.videoId);
      throw error;
    }
  }

  private probe(storageKey: string): Promise<Extract<ProbeResult, { ok: true }>> {
    // Only the ffprobe/ffmpeg runs take a slot: an S3 download before them is I/O, not processes.
    return this.withLocalFile(storageKey, (file) =>
      this.probes.run(async () => {
        const probe = await this.media.probe(file);
        if (!probe.ok) throw this.refusal(probe.code, probe.message);
        const decodable = await this.media.verifyDecodable(file, probe.video.durationMs);
        if (!decodable.ok) throw this.refusal(decodable.code, decodable.message);
        return probe;
      }),
    );
  }

  private refusal(code: string, message: string): AppError {
    return new AppError(probeRefusalStatus[code] ?? 422, code, message);
  }

  /**
   * Runs `use` on a local file holding the stored object, for ffmpeg. A storage without local files (S3)
   * has the object downloaded into a private temporary directory, deleted afterwards whatever happens.
   * The checks and the extraction each download their own copy: extraction may run much later, so no
   * copy outlives one step.
   */
  private async withLocalFile<T>(storageKey: string, use: (file: string) => Promise<T>): Promise<T> {
    const local = this.storage.localPath(storageKey);
    if (local !== undefined) return use(local);
    const dir = await fs.mkdtemp(path.join(this.settings.workDir ?? os.tmpdir(), 'vidsense-source-'));
    try {
      const file = path.join(dir, 'source');
      await pipeline(await this.storage.createReadStream(storageKey), createWriteStream(file, { flags: 'wx' }));
      return await use(file);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }

  private scheduleExtraction(video: VideoRecord): void {
    void this.extractions.run(() => this.extract(video)).catch((error: unknown) => {
      this.logger.error('extraction failed', { videoId: video.id, error: errorMessage(error) });
    });
  }

  /**
   * Extracts, stores and publishes every frame of a video; marks it failed if extraction breaks.
   * It first claims the video (another process may have it) and renews that lease while it runs.
   * A restart after a crash redoes the whole video: frame keys are the same, and the jobs it publishes
   * again are absorbed by the idempotent commit.
   */
  async extract(video: VideoRecord): Promise<void> {
    if (!(await this.videos.claimExtraction(video.id, this.settings.extractionLeaseMs))) return;
    const started = Date.now();
    const lease = setInterval(() => {
      this.videos.renewExtraction(video.id).catch((error: unknown) => this.logger.warn('could not renew an extraction lease', { videoId: video.id, error: errorMessage(error) }));
    }, Math.max(50, Math.floor(this.settings.extractionLeaseMs / 3)));
    lease.unref();
    try {
      let pending: FrameRef[] = [];
      const flush = async () => {
        if (pending.length === 0) return;
        const frames = pending;
        pending = [];
        await this.queue.publish([{ id: `${video.id}:${frames[0]!.index}`, videoId: video.id, frames, publishedAt: Date.now() }]);
      };
      const options = { fps: video.sampleFps, jpegQuality: this.settings.jpegQuality, startTimeMs: video.source.startTimeMs, scale: this.frameScale(video) };
      const { frames } = await this.withLocalFile(video.storageKey, (file) =>
        this.media.extractFrames(file, options, async (frame) => {
          const key = storageKeys.frame(video.id, frame.index);
          await this.storage.write(key, frame.jpeg);
          pending.push({ index: frame.index, ptsMs: frame.ptsMs, key });
          if (pending.length >= this.settings.batchSize) await flush();
        }),
      );
      await flush();
      const updated = await this.videos.markExtracted(video.id, frames);
      this.logger.info('extraction finished', { videoId: video.id, frames, ms: Date.now() - started, status: updated.status });
      if (this.settings.keepSourceVideo === false) await this.deleteSource(video);
    } catch (error) {
      await this.videos.markFailed(video.id, `frame extraction failed: ${errorMessage(error)}`);
      throw error;
    } finally {
      clearInterval(lease);
    }
  }

  /** Where FRAME_SIZE stores this video's frames smaller than the source; undefined when they fit already. */
  private frameScale(video: VideoRecord): FrameScale | undefined {
    const from = { width: video.source.width, height: video.source.height };
    const to = this.settings.frameSize ? scaledFrameSize(from, this.settings.frameSize) : undefined;
    return to && { from, to };
  }

  /**
   * Restarts extractions that an API process accepted but never finished (it died), now and then
   * every half lease. Takes only as many as this process has free extraction slots.
   */
  startRecovery(): void {
    const recover = async () => {
      const free = this.settings.extractionConcurrency - this.extractions.size;
      if (free <= 0) return;
      for (const video of await this.videos.findStalledExtractions(this.settings.extractionLeaseMs, free)) {
        this.logger.warn('restarting a stalled extraction', { videoId: video.id, status: video.status });
        this.scheduleExtraction(video);
      }
    };
    const run = () => void recover().catch((error: unknown) => this.logger.warn('extraction recovery failed', { error: errorMessage(error) }));
    run();
    this.recoveryTimer = setInterval(run, Math.max(100, Math.floor(this.settings.extractionLeaseMs / 2)));
    this.recoveryTimer.unref();
  }

  stopRecovery(): void {
    clearInterval(this.recoveryTimer);
  }

  /** KEEP_SOURCE_VIDEO=false: the frames are out, the upload is no longer needed. A failure only leaves it behind. */
  private async deleteSource(video: VideoRecord): Promise<void> {
    try {
      await this.storage.delete([video.storageKey]);
    } catch (error) {
      this.logger.warn('could not delete the source video after extraction', { videoId: video.id, error: errorMessage(error) });
    }
  }

  /** Resolves when every scheduled extraction has finished (tests, shutdown). */
  idle(): Promise<void> {
    return this.extractions.idle();
  }
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
