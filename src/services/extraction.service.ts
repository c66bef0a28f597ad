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
import { discardVideoWorkQuietly, type VideoJobDiscarder } from './video-cleanup.ts';

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
  /**
   * How often a running extraction asks PostgreSQL whether its video was cancelled or deleted (by a
   * request to any API process); default 1 s. Between two published batches as well: a sparse sampling
   * (a frame a minute) can decode for long before its next batch.
   */
  cancelCheckMs?: number;
}

/**
 * What extraction needs of the queue: publishing detection jobs, the bookkeeping of extraction jobs, and
 * dropping a stopped video's queued jobs.
 */
export interface ExtractionQueue extends VideoJobDiscarder {
  publish(jobs: DetectionJob[]): Promise<void>;
  /** The video's extraction job is over: a later enqueueExtraction may queue one again. */
  extractionFinished(videoId: string): Promise<void>;
  enqueueExtraction(videoId: string): Promise<boolean>;
  extractionsEnqueued(videoIds: string[]): Promise<Set<string>>;
}

export type ExtractionMedia = Pick<MediaRepository, 'extractFrames'>;

export type PreviewMaker = Pick<PreviewService, 'create' | 'enabled'>;

export type ExtractionVideos = Pick<VideoRepository, 'get' | 'startExtraction' | 'recordFramesPublished' | 'markExtracted' | 'markFailed' | 'listQueued' | 'isCancelled' | 'setPreview'>;

/** The abort reason of an extraction whose video was cancelled or deleted. */
export class ExtractionCancelledError extends Error {
  constructor(readonly videoId: string) {
    super(`the extraction of video ${videoId} was stopped: the video was cancelled or deleted`);
    this.name = 'ExtractionCancelledError';
  }
}

interface RunningExtraction {
  controller: AbortController;
  /** Settles when extract() has returned, its clean-up done. */
  done: Promise<void>;
}

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
  /** Extractions running in this process, by video id (stop()). */
  private readonly running = new Map<string, RunningExtraction>();

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
    else if (video && video.framesTotal !== null) {
      // Extracted by a delivery that died before its preview was made, its source deleted or its ack.
      if (video.previewPending) await this.resumePreview(video);
      if (this.settings.keepSourceVideo === false) await this.deleteSource(video);
    }
    await this.queue.extractionFinished(job.videoId);
  }

  /**
   * The job is to be dead-lettered (it kept killing workers, or kept failing): the video fails. False when
   * the video was cancelled or deleted meanwhile: the worker acknowledges the job instead (nobody would retry it).
   */
  async recordFailedJob(job: Pick<ExtractionJob, 'videoId'>, reason: string): Promise<boolean> {
    if (await this.videos.isCancelled(job.videoId)) {
      await this.queue.extractionFinished(job.videoId);
      return false;
    }
    if (await this.videos.markFailed(job.videoId, `frame extraction failed: ${reason}`)) await discardFailedVideoFrames(this.storage, job.videoId, this.logger);
    await this.queue.extractionFinished(job.videoId);
    return true;
  }

  /**
   * Stops this process's extraction of the video, if it runs one (its ffmpeg is killed), and resolves
   * when that extraction has cleaned up after itself; false when this process runs none. The caller has
   * already cancelled or deleted the video in PostgreSQL: an extraction elsewhere stops by its poll.
   */
  async stop(videoId: string): Promise<boolean> {
    const running = this.running.get(videoId);
    if (!running) return false;
    running.controller.abort(new ExtractionCancelledError(videoId));
    await running.done;
    return true;
  }

  /**
   * A cancel or delete stops it: the poll below (or a published batch's checkpoint) finds the video
   * cancelled or gone, ffmpeg is killed, and the jobs and frames written meanwhile are discarded here (the
   * API discards them too; whichever runs last finds what the other missed).
   */
  private async extract(video: VideoRecord, workerSignal: AbortSignal | undefined): Promise<void> {
    const resumeFrom = await this.videos.startExtraction(video.id);
    if (resumeFrom === undefined) return; // failed, finished, cancelled or deleted meanwhile
    if (resumeFrom > 0) this.logger.warn('resuming an extraction', { videoId: video.id, fromFrame: resumeFrom });
    const started = Date.now();
    let skipped = 0;
    const stopped = new AbortController();
    let finished = () => {};
    this.running.set(video.id, { controller: stopped, done: new Promise<void>((resolve) => (finished = resolve)) });
    // Polled rather than pushed: it needs nothing but PostgreSQL, whichever API process the request went to.
    const cancelCheck = setInterval(() => {
      this.videos
        .isCancelled(video.id)
        .then((cancelled) => {
          if (cancelled) stopped.abort(new ExtractionCancelledError(video.id));
        })
        .catch((error: unknown) => this.logger.warn('could not check whether an extraction was cancelled', { videoId: video.id, error: errorMessage(error) }));
    }, Math.max(20, this.settings.cancelCheckMs ?? 1000));
    cancelCheck.unref();
    const signal = workerSignal ? AbortSignal.any([workerSignal, stopped.signal]) : stopped.signal;
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
      const updated = await withLocalCopy(this.storage, video.storageKey, this.settings.workDir, async (file) => {
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
        // The video may complete from here on: it does not wait for its preview (previewPending until then).
        const extractedVideo = await this.videos.markExtracted(video.id, extracted.frames, this.previews.enabled);
        if (extractedVideo.status === 'cancelled') return extractedVideo;
        this.logger.info('extraction finished', { videoId: video.id, frames: extracted.frames, skipped, ms: Date.now() - started, status: extractedVideo.status });
        this.observer.stage('extraction', (Date.now() - started) / 1000);
        // From the same local copy, while the frames are detected, at a lower CPU priority (PREVIEW_NICENESS),
        // so the detections are not held back by it. It never throws: a failure leaves the video without one.
        if (extractedVideo.previewPending) await this.previews.create(video, file);
        // Stopped while the preview was made: its file goes with the rest below.
        signal.throwIfAborted();
        return extractedVideo;
      });
      if (updated.status === 'cancelled') {
        // Cancelled after the last frame was published: those jobs must not wait in the queue.
        await this.discardStopped(video);
        return;
      }
      if (this.settings.keepSourceVideo === false) await this.deleteSource(video);
    } catch (error) {
      // A cancel or delete, seen by the poll, by a checkpoint, or as whatever it broke first (the source
      // deleted under the download, markExtracted finding no row): not a failure of the video.
      if (stopped.signal.aborted || (!workerSignal?.aborted && (await this.videos.isCancelled(video.id).catch(() => false)))) {
        await this.discardStopped(video);
        return;
      }
      // The worker is stopping, or a service is briefly away: the job is held or handed back, and resumes.
      if (workerSignal?.aborted || isTransientError(error)) throw error;
      if (error instanceof ExtractionStopped) {
        // Finished by another delivery of its job meanwhile (a cancel or delete was handled above).
        this.logger.info('extraction stopped: the video is no longer being extracted', { videoId: video.id });
        return;
      }
      this.logger.warn('extraction failed', { videoId: video.id, error: errorMessage(error) });
      // Only while it is still being extracted: a stalled delivery whose job was reclaimed and finished
      // elsewhere (its source then perhaps deleted) must not fail a video that is being detected.
      if (await this.videos.markFailed(video.id, `frame extraction failed: ${failureReason(error)}`)) await discardFailedVideoFrames(this.storage, video.id, this.logger);
    } finally {
      clearInterval(cancelCheck);
      this.running.delete(video.id);
      finished();
    }
  }

  /**
   * A cancelled video keeps its source and preview (as a finished one does) and loses its frames and
   * queued jobs; a deleted one keeps nothing.
   */
  private async discardStopped(video: VideoRecord): Promise<void> {
    // null: PostgreSQL did not answer, so only what is surely unwanted goes (the API's delete takes the rest).
    const current = await this.videos.get(video.id).catch(() => null);
    const deleted = current === undefined;
    await discardVideoWorkQuietly(this.queue, this.storage, video.id, deleted ? 'everything' : 'frames', this.logger);
    if (current && this.settings.keepSourceVideo === false) await this.deleteSource(video);
    this.logger.info('extraction stopped: the video was cancelled or deleted', { videoId: video.id, deleted });
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

  /**
   * The preview of a video whose extraction finished in a delivery that stopped before the preview was
   * made (a worker that died or was stopped): made now from the source. A source that cannot be read
   * (deleted meanwhile), or previews turned off since, leave the video without one; a service briefly
   * away is retried with the job.
   */
  private async resumePreview(video: VideoRecord): Promise<void> {
    if (!this.previews.enabled) {
      await this.videos.setPreview(video.id, null);
      return;
    }
    try {
      await withLocalCopy(this.storage, video.storageKey, this.settings.workDir, (file) => this.previews.create(video, file));
    } catch (error) {
      if (isTransientError(error)) throw error;
      this.logger.warn('could not read the source for its preview; the video has none', { videoId: video.id, error: errorMessage(error) });
      await this.videos.setPreview(video.id, null);
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
