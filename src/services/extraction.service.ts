import type { VideoRecord, VideoRepository } from '../db/types.ts';
import { scaledFrameSize, type FrameSize } from '../detection/letterbox-geometry.ts';
import { errorMessage } from '../errors/error-message.ts';
import { isStorageFull } from '../errors/storage-full.ts';
import type { Logger } from '../logger.ts';
import type { FrameScale } from '../media/extract-args.ts';
import type { MediaRepository } from '../media/media.repository.ts';
import { noopObserver, type PipelineObserver } from '../metrics/observer.ts';
import type { DetectionJob, FrameRef } from '../queue/types.ts';
import { storageKeys } from '../storage/keys.ts';
import { withLocalCopy } from '../storage/local-copy.ts';
import type { VideoStorage } from '../storage/video-storage.ts';
import type { PreviewService } from './preview.service.ts';
import { TaskLimiter } from './task-limiter.ts';
import type { ExtractionScheduler } from './upload.service.ts';
import { discardVideoWorkQuietly, type VideoJobDiscarder } from './video-cleanup.ts';

export interface ExtractionSettings {
  batchSize: number;
  jpegQuality: number;
  extractionConcurrency: number;
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
  /** MAX_FRAMES and MAX_DURATION_S, enforced again as frames appear (a header can lie). */
  limits: { maxFrames: number; maxDurationS: number };
  /**
   * How often a running extraction asks PostgreSQL whether its video was cancelled or deleted (by a
   * request to any API process); default the lesser of 1 s and a third of the lease.
   */
  cancelCheckMs?: number;
}

export interface JobPublisher extends VideoJobDiscarder {
  publish(jobs: DetectionJob[]): Promise<void>;
}

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

export type ExtractionMedia = Pick<MediaRepository, 'extractFrames'>;

export type PreviewMaker = Pick<PreviewService, 'create'>;

/**
 * Frame extraction of accepted videos. It runs off the request path with bounded concurrency and
 * publishes jobs as frames appear, so workers start before a long video is fully extracted.
 */
export class ExtractionService implements ExtractionScheduler {
  private readonly extractions: TaskLimiter;
  private recoveryTimer: NodeJS.Timeout | undefined;
  /** Extractions running in this process, by video id, so a cancel or delete answered here stops them at once. */
  private readonly running = new Map<string, RunningExtraction>();

  constructor(
    private readonly settings: ExtractionSettings,
    private readonly videos: Pick<VideoRepository, 'claimExtraction' | 'renewExtraction' | 'findStalledExtractions' | 'markExtracted' | 'markFailed' | 'isCancelled' | 'get'>,
    private readonly storage: VideoStorage,
    private readonly media: ExtractionMedia,
    private readonly queue: JobPublisher,
    private readonly logger: Logger,
    private readonly previews: PreviewMaker,
    private readonly observer: Pick<PipelineObserver, 'stage'> = noopObserver,
  ) {
    this.extractions = new TaskLimiter(settings.extractionConcurrency);
  }

  schedule(video: VideoRecord): void {
    void this.extractions.run(() => this.extract(video)).catch((error: unknown) => {
      this.logger.error('extraction failed', { videoId: video.id, error: errorMessage(error) });
    });
  }

  /**
   * Extracts, stores and publishes every frame of a video; marks it failed if extraction breaks.
   * It first claims the video (another process may have it) and renews that lease while it runs.
   * A restart after a crash redoes the whole video: frame keys are the same, and the jobs it publishes
   * again are absorbed by the idempotent commit.
   *
   * A cancel or delete stops it: at once when answered by this process (stop()), else within
   * cancelCheckMs, when the poll below finds the video cancelled or gone. ffmpeg is killed, and the
   * jobs and frames written meanwhile are discarded here (the API discards them too; whichever runs
   * last finds what the other missed).
   */
  async extract(video: VideoRecord): Promise<void> {
    if (!(await this.videos.claimExtraction(video.id, this.settings.extractionLeaseMs))) return;
    const started = Date.now();
    const controller = new AbortController();
    let finished = () => {};
    this.running.set(video.id, { controller, done: new Promise<void>((resolve) => (finished = resolve)) });
    const lease = setInterval(() => {
      this.videos.renewExtraction(video.id).catch((error: unknown) => this.logger.warn('could not renew an extraction lease', { videoId: video.id, error: errorMessage(error) }));
    }, Math.max(50, Math.floor(this.settings.extractionLeaseMs / 3)));
    lease.unref();
    // Polled rather than pushed: it needs nothing but PostgreSQL, and it also reaches an extraction
    // that a restarted process recovered, whichever API process the cancel went to.
    const cancelCheck = setInterval(() => {
      this.videos
        .isCancelled(video.id)
        .then((cancelled) => {
          if (cancelled) controller.abort(new ExtractionCancelledError(video.id));
        })
        .catch((error: unknown) => this.logger.warn('could not check whether an extraction was cancelled', { videoId: video.id, error: errorMessage(error) }));
    }, this.cancelCheckMs());
    cancelCheck.unref();
    const { signal } = controller;
    try {
      let pending: FrameRef[] = [];
      const flush = async () => {
        if (pending.length === 0) return;
        const frames = pending;
        pending = [];
        await this.queue.publish([{ id: `${video.id}:${frames[0]!.index}`, videoId: video.id, frames, publishedAt: Date.now() }]);
      };
      const limits = { maxFrames: this.settings.limits.maxFrames, maxDurationMs: this.settings.limits.maxDurationS * 1000 };
      const options = { fps: video.sampleFps, jpegQuality: this.settings.jpegQuality, startTimeMs: video.source.startTimeMs, scale: this.frameScale(video), limits };
      const { frames } = await withLocalCopy(this.storage, video.storageKey, this.settings.workDir, async (file) => {
        const extracted = await this.media.extractFrames(file, options, async (frame) => {
          const key = storageKeys.frame(video.id, frame.index);
          await this.storage.write(key, frame.jpeg);
          pending.push({ index: frame.index, ptsMs: frame.ptsMs, key });
          if (pending.length >= this.settings.batchSize) await flush();
        }, signal);
        signal.throwIfAborted();
        await flush();
        // A header that promised frames the stream does not have; refused at upload when it tells the truth.
        if (extracted.frames === 0) throw new Error('the video yielded no frame at this sampling rate');
        // From the same local copy, while workers detect, and before the video can complete, so a
        // completed video has its preview (or none for good). It never throws: a preview failure
        // leaves the video without one.
        await this.previews.create(video, file);
        // Stopped while the preview was made: its file goes with the rest below.
        signal.throwIfAborted();
        return extracted;
      });
      const updated = await this.videos.markExtracted(video.id, frames);
      if (updated.status === 'cancelled') {
        // Cancelled after the last frame was published: those jobs must not wait in the queue.
        await discardVideoWorkQuietly(this.queue, this.storage, video.id, 'frames', this.logger);
        if (this.settings.keepSourceVideo === false) await this.deleteSource(video);
        this.logger.info('extraction finished after its video was cancelled', { videoId: video.id, frames });
        return;
      }
      this.logger.info('extraction finished', { videoId: video.id, frames, ms: Date.now() - started, status: updated.status });
      this.observer.stage('extraction', (Date.now() - started) / 1000);
      if (this.settings.keepSourceVideo === false) await this.deleteSource(video);
    } catch (error) {
      // A cancel or delete, seen by the poll, or as whatever it broke first (the source deleted under
      // the download, markExtracted finding no row): not a failure of the video.
      if (signal.aborted || (await this.videos.isCancelled(video.id).catch(() => false))) {
        await this.discardStopped(video);
        return;
      }
      await this.videos.markFailed(video.id, `frame extraction failed: ${failureReason(error)}`);
      await discardFailedVideoFrames(this.storage, video.id, this.logger);
      throw error;
    } finally {
      clearInterval(lease);
      clearInterval(cancelCheck);
      this.running.delete(video.id);
      finished();
    }
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

  /** A cancelled video keeps its source and preview (as a finished one does); a deleted one keeps nothing. */
  private async discardStopped(video: VideoRecord): Promise<void> {
    // null: PostgreSQL did not answer, so only what is surely unwanted goes (the API's delete takes the rest).
    const current = await this.videos.get(video.id).catch(() => null);
    const deleted = current === undefined;
    await discardVideoWorkQuietly(this.queue, this.storage, video.id, deleted ? 'everything' : 'frames', this.logger);
    if (current && this.settings.keepSourceVideo === false) await this.deleteSource(video);
    this.logger.info('extraction stopped: the video was cancelled or deleted', { videoId: video.id, deleted });
  }

  private cancelCheckMs(): number {
    return Math.max(20, this.settings.cancelCheckMs ?? Math.min(1000, Math.floor(this.settings.extractionLeaseMs / 3)));
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
        this.schedule(video);
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
