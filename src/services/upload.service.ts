import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { MIN_SAMPLE_FPS, parseFps } from '../config.ts';
import type { NewVideo, VideoRecord, VideoRepository } from '../db/types.ts';
import { AppError, errors } from '../errors/app-error.ts';
import type { MediaRepository } from '../media/media.repository.ts';
import type { ProbeResult } from '../media/probe.ts';
import { storageKeys } from '../storage/keys.ts';
import { withLocalCopy } from '../storage/local-copy.ts';
import type { VideoStorage } from '../storage/video-storage.ts';
import { TaskLimiter } from './task-limiter.ts';
import { checkVideoLimits, effectiveSampleFps, type VideoLimits } from './video-limits.ts';

export interface UploadSettings {
  maxUploadBytes: number;
  defaultFps: number | null;
  maxFps: number;
  /**
   * Uploads checked at once (ffprobe, then up to two short ffmpeg decodes each); the rest wait their turn,
   * so a burst of uploads cannot start an unbounded number of processes on the request path.
   */
  probeConcurrency: number;
  /** Where a storage without local files (S3) has its upload downloaded for ffmpeg; default os.tmpdir(). */
  workDir?: string;
  /** MAX_DURATION_S, MAX_FRAMES, MAX_PIXELS: checked from the probe, before any decode. */
  limits: VideoLimits;
}

/** Queues an accepted video's extraction job, which a worker runs (see ExtractionService). */
export interface ExtractionScheduler {
  /** Idempotent per video: false when its job was already queued (the workers' sweep got there first). */
  enqueueExtraction(videoId: string): Promise<boolean>;
}

export type UploadMedia = Pick<MediaRepository, 'probe' | 'verifyDecodable'>;

/** A stored upload that has not been accepted yet. */
export interface StagedUpload {
  videoId: string;
  storageKey: string;
  originalName: string;
  sizeBytes: number;
}

// Probe refusals: the file is not something we can decode (415) or is a video we cannot use (422).
// Limits (too_many_pixels, video_too_long, too_many_frames, no_frames, memory_limit) are 422 too.
const probeRefusalStatus: Record<string, number> = {
  unreadable_video: 415,
  no_video_stream: 415,
  not_a_video: 415,
  unsupported_format: 415,
  invalid_dimensions: 422,
  invalid_timestamps: 422,
  truncated_video: 422,
};

/**
 * Upload rules. Uploads are staged into storage first (streamed, never buffered), then checked;
 * anything refused is deleted before the error is returned. An accepted video's extraction is queued
 * for the workers: an API process never extracts.
 */
export class UploadService {
  private readonly probes: TaskLimiter;

  constructor(
    private readonly settings: UploadSettings,
    private readonly videos: Pick<VideoRepository, 'create' | 'delete'>,
    private readonly storage: VideoStorage,
    private readonly media: UploadMedia,
    private readonly extractions: ExtractionScheduler,
  ) {
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

  /** Parses the optional `fps` form field: a number from MIN_SAMPLE_FPS up to MAX_FPS, or "all" for every frame. */
  parseFpsField(raw: string | undefined): number | null {
    if (raw === undefined || raw.trim() === '') return this.settings.defaultFps;
    const value = raw.trim();
    if (value === 'all') return null;
    const fps = parseFps(value, this.settings.maxFps);
    if (fps === undefined) {
      throw errors.badRequest('invalid_fps', `fps must be "all" or a number from ${MIN_SAMPLE_FPS} to ${this.settings.maxFps}`);
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
   * Validates a staged upload and accepts it: a videos row (owned by the uploading key) is created and its
   * extraction job queued before the caller answers 202. On refusal, or when the job cannot be queued
   * (Redis unreachable), the row and everything staged are deleted and the error says why. A process that
   * dies between the row and the job leaves a queued video that extraction workers queue (their sweep).
   */
  async acceptUpload(staged: StagedUpload, fpsField: string | undefined, ownerKeyId: string | null = null): Promise<VideoRecord> {
    try {
      const requestedFps = this.parseFpsField(fpsField);
      if (staged.sizeBytes === 0) throw errors.badRequest('empty_file', 'the uploaded file is empty');
      const { probe, sampleFps } = await this.probe(staged.storageKey, requestedFps);
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
        ownerKeyId,
      };
      const video = await this.videos.create(newVideo);
      try {
        await this.extractions.enqueueExtraction(video.id);
      } catch (error) {
        // Not accepted after all: the client is told so, and nothing stays behind. A job the sweep may have
        // queued meanwhile finds no video and does nothing.
        await this.videos.delete(video.id);
        throw error;
      }
      return video;
    } catch (error) {
      await this.discardStaged(staged.videoId);
      throw error;
    }
  }

  /**
   * Probes the upload, checks it against the limits before anything decodes a frame, then checks that
   * its start and end decode. Returns the probe and the sampling rate extraction will use.
   */
  private probe(storageKey: string, requestedFps: number | null): Promise<{ probe: Extract<ProbeResult, { ok: true }>; sampleFps: number | null }> {
    // Only the ffprobe/ffmpeg runs take a slot: an S3 download before them is I/O, not processes.
    return withLocalCopy(this.storage, storageKey, this.settings.workDir, (file) =>
      this.probes.run(async () => {
        const probe = await this.media.probe(file);
        if (!probe.ok) throw this.refusal(probe.code, probe.message);
        const sampleFps = effectiveSampleFps(requestedFps, probe.video.fps, this.settings.maxFps);
        const overLimit = checkVideoLimits(probe.video, sampleFps, this.settings.limits);
        if (overLimit) throw errors.unprocessable(overLimit.code, overLimit.message);
        const decodable = await this.media.verifyDecodable(file, probe.video.durationMs);
        if (!decodable.ok) throw this.refusal(decodable.code, decodable.message);
        return { probe, sampleFps };
      }),
    );
  }

  private refusal(code: string, message: string): AppError {
    return new AppError(probeRefusalStatus[code] ?? 422, code, message);
  }
}
