import type { VideoRecord, VideoRepository } from '../db/types.ts';
import { scaledFrameSize, type FrameSize } from '../detection/letterbox-geometry.ts';
import { errorMessage } from '../errors/error-message.ts';
import { isStorageFull } from '../errors/storage-full.ts';
import { isTransientError } from '../errors/transient-error.ts';
import type { Logger } from '../logger.ts';
import type { FrameScale } from '../media/extract-args.ts';
import type { MediaRepository } from '../media/media.repository.ts';
import { noopObserver, type PipelineObserver } from '../metrics/observer.ts';
import type { DetectionJob, ExtractionJob, FrameRef } from '../queue/types.ts';
import { storageKeys } from '../storage/keys.ts';
import { withLocalCopy } from '../storage/local-copy.ts';
import type { VideoStorage } from '../storage/video-storage.ts';
import type { PreviewService } from './preview.service.ts';

export interface ExtractionSettings {
  batchSize: number;
  jpegQuality: number;
  /** Where a storage without local files (S3) has its upload downloaded for ffmpeg; default os.tmpdir(). */
  workDir?: string;
  /** false: the uploaded video is deleted once its frames are extracted. Default true. */
  keepSourceVideo?: boolean;
  /**
   * FRAME_SIZE: frames are stored scaled down to fit this box the way the worker's letterbox would
   * (the worker maps boxes back to the video's size); null or omitted stores them at source resolution.
   */
  frameSize?: FrameSize | null;
  /** MAX_FRAMES and MAX_DURATION_S, enforced again as frames appear (a header can lie). */
  limits: { maxFrames: number; maxDurationS: number };
}

/** What extraction needs of the queue: publishing detection jobs, and the bookkeeping of extraction jobs. */
export interface ExtractionQueue {
  publish(jobs: DetectionJob[]): Promise<void>;
  /** The video's extraction job is over: a later enqueueExtraction may queue one again. */
  extractionFinished(videoId: string): Promise<void>;
  enqueueExtraction(videoId: string): Promise<boolean>;
  extractionsEnqueued(videoIds: string[]): Promise<Set<string>>;
}

export type ExtractionMedia = Pick<MediaRepository, 'extractFrames'>;

export type PreviewMaker = Pick<PreviewService, 'create'>;

export type ExtractionVideos = Pick<VideoRepository, 'get' | 'startExtraction' | 'recordFramesPublished' | 'markExtracted' | 'markFailed' | 'listQueued'>;

/** Queued videos read per page by the sweep for uploads whose extraction job was never published. */
const SWEEP_PAGE = 500;

/**
 * Frame extraction of accepted videos, run by workers as `extract` jobs. Frames are published as
 * detection jobs as they appear, so detection starts before a long video is fully extracted.
 *
 * A job is delivered at least once: a worker that dies mid-extraction has its job reclaimed by another.
 * Each published batch is checkpointed in the video's frames_published, so a resumed extraction decodes
 * the video again (the same sampling, so the same frames and timestamps as an uninterrupted run) but
 * neither stores nor publishes the frames before the checkpoint. A batch published just before a crash,
 * ahead of its checkpoint, is published once more under the same job id; its commit is idempotent.
 */
export class ExtractionService {
  constructor(
    private readonly settings: ExtractionSettings,
    private readonly videos: ExtractionVideos,
    private readonly storage: VideoStorage,
    private readonly media: ExtractionMedia,
    private readonly queue: ExtractionQueue,
    private readonly logger: Logger,
    private readonly previews: PreviewMaker,
    private readonly observer: Pick<PipelineObserver, 'stage'> = noopObserver,
  ) {}

  /**
   * Runs one extraction job to its end: the video is extracted (or resumed), or marked failed when its
   * extraction breaks. Throws only what a retry may fix (PostgreSQL, Redis or storage unreachable) or
   * when `signal` aborts (the worker stops; the job goes back to the queue and resumes elsewhere).
   */
  async run(job: Pick<ExtractionJob, 'videoId'>, signal?: AbortSignal): Promise<void> {
    const video = await this.videos.get(job.videoId);
    if (video && (video.status === 'queued' || video.status === 'extracting')) await this.extract(video, signal);
    else if (video && video.framesTotal !== null && this.settings.keepSourceVideo === false) {
      // Extracted by a delivery that died before it deleted the source (or before its ack).
      await this.deleteSource(video);
    }
    await this.queue.extractionFinished(job.videoId);
  }

  /** The job was dead-lettered (it kept killing workers, or kept failing): the video fails. */
  async recordFailedJob(job: Pick<ExtractionJob, 'videoId'>, reason: string): Promise<void> {
    if (await this.videos.markFailed(job.videoId, `frame extraction failed: ${reason}`)) await discardFailedVideoFrames(this.storage, job.videoId, this.logger);
    await this.queue.extractionFinished(job.videoId);
  }

  private async extract(video: VideoRecord, signal: AbortSignal | undefined): Promise<void> {
    const resumeFrom = await this.videos.startExtraction(video.id);
    if (resumeFrom === undefined) return; // failed or finished meanwhile
    if (resumeFrom > 0) this.logger.warn('resuming an extraction', { videoId: video.id, fromFrame: resumeFrom });
    const started = Date.now();
    let skipped = 0;
    try {
      let pending: FrameRef[] = [];
      const flush = async () => {
        if (pending.length === 0) return;
        const frames = pending;
        pending = [];
        await this.queue.publish([{ kind: 'detect', id: `${video.id}:${frames[0]!.index}`, videoId: video.id, frames, publishedAt: Date.now() }]);
        // After the publish: a crash between the two publishes this batch again, never loses it.
        if (!(await this.videos.recordFramesPublished(video.id, frames.at(-1)!.index + 1))) throw new ExtractionStopped();
      };
      const limits = { maxFrames: this.settings.limits.maxFrames, maxDurationMs: this.settings.limits.maxDurationS * 1000 };
      const options = { fps: video.sampleFps, jpegQuality: this.settings.jpegQuality, startTimeMs: video.source.startTimeMs, scale: this.frameScale(video), limits };
      const { frames } = await withLocalCopy(this.storage, video.storageKey, this.settings.workDir, async (file) => {
        const extracted = await this.media.extractFrames(file, options, async (frame) => {
          if (frame.index < resumeFrom) {
            skipped += 1; // stored and published by an earlier delivery
            return;
          }
          const key = storageKeys.frame(video.id, frame.index);
          await this.storage.write(key, frame.jpeg);
          pending.push({ index: frame.index, ptsMs: frame.ptsMs, key });
          if (pending.length >= this.settings.batchSize) await flush();
        }, signal);
        await flush();
        // A header that promised frames the stream does not have; refused at upload when it tells the truth.
        if (extracted.frames === 0) throw new Error('the video yielded no frame at this sampling rate');
        // From the same local copy, while workers detect, and before the video can complete, so a
        // completed video has its preview (or none for good). It never throws: a preview failure
        // leaves the video without one.
        await this.previews.create(video, file);
        return extracted;
      });
      const updated = await this.videos.markExtracted(video.id, frames);
      this.logger.info('extraction finished', { videoId: video.id, frames, skipped, ms: Date.now() - started, status: updated.status });
      this.observer.stage('extraction', (Date.now() - started) / 1000);
      if (this.settings.keepSourceVideo === false) await this.deleteSource(video);
    } catch (error) {
      // The worker is stopping, or a service is briefly away: the job is held or handed back, and resumes.
      if (signal?.aborted || isTransientError(error)) throw error;
      if (error instanceof ExtractionStopped) {
        // Deleted (or cancelled, or finished by another delivery) while extracted: nothing more to do here,
        // but frames written after a deletion would stay behind with no video to delete them.
        this.logger.info('extraction stopped: the video is no longer being extracted', { videoId: video.id });
        if (!(await this.videos.get(video.id))) await discardFailedVideoFrames(this.storage, video.id, this.logger);
        return;
      }
      this.logger.warn('extraction failed', { videoId: video.id, error: errorMessage(error) });
      // Only while it is still being extracted: a stalled delivery whose job was reclaimed and finished
      // elsewhere (its source then perhaps deleted) must not fail a video that is being detected.
      if (await this.videos.markFailed(video.id, `frame extraction failed: ${failureReason(error)}`)) await discardFailedVideoFrames(this.storage, video.id, this.logger);
    }
  }

  /**
   * Queues the extraction of every video accepted longer than graceMs ago whose job is neither queued nor
   * held: its API process died between accepting the upload and publishing the job. Returns how many.
   */
  async sweepUnqueued(graceMs: number): Promise<number> {
    let queued = 0;
    for (let after: { createdAt: Date; id: string } | undefined; ; ) {
      const page = await this.videos.listQueued(graceMs, after, SWEEP_PAGE);
      if (page.length === 0) return queued;
      const enqueued = await this.queue.extractionsEnqueued(page.map((video) => video.id));
      for (const video of page) {
        if (enqueued.has(video.id) || !(await this.queue.enqueueExtraction(video.id))) continue;
        this.logger.warn('queued the extraction of an upload whose job was never published', { videoId: video.id });
        queued += 1;
      }
      after = page.at(-1);
    }
  }

  /** Where FRAME_SIZE stores this video's frames smaller than the source; undefined when they fit already. */
  private frameScale(video: VideoRecord): FrameScale | undefined {
    const from = { width: video.source.width, height: video.source.height };
    const to = this.settings.frameSize ? scaledFrameSize(from, this.settings.frameSize) : undefined;
    return to && { from, to };
  }

  /** KEEP_SOURCE_VIDEO=false: the frames are out, the upload is no longer needed. A failure only leaves it behind. */
  private async deleteSource(video: VideoRecord): Promise<void> {
    try {
      await this.storage.delete([video.storageKey]);
    } catch (error) {
      this.logger.warn('could not delete the source video after extraction', { videoId: video.id, error: errorMessage(error) });
    }
  }
}

/** The video left 'extracting' under a running extraction (see recordFramesPublished). */
class ExtractionStopped extends Error {
  constructor() {
    super('the video is no longer being extracted');
    this.name = 'ExtractionStopped';
  }
}

/** Why an extraction failed, for the video's `error` (read by API clients: no server paths). */
function failureReason(error: unknown): string {
  if (isStorageFull(error)) return 'insufficient storage: no space left for its frames';
  return errorMessage(error);
}

/**
 * Deletes every frame a failed extraction wrote (unfinished writes included: they share the frames
 * prefix). Called after the video is marked failed, so workers holding its jobs acknowledge them
 * without reading frames (see DetectionService). The source stays, to look into the failure.
 */
export async function discardFailedVideoFrames(storage: Pick<VideoStorage, 'deletePrefix'>, videoId: string, logger: Pick<Logger, 'warn'>): Promise<void> {
  try {
    await storage.deletePrefix(storageKeys.framesPrefix(videoId));
  } catch (error) {
    logger.warn('could not delete the frames of a failed video', { videoId, error: errorMessage(error) });
  }
}
