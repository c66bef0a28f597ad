import { setTimeout as delay } from 'node:timers/promises';
import { ACTIVE_STATUSES, type VideoRecord, type VideoRepository } from '../db/types.ts';
import { errors } from '../errors/app-error.ts';
import { errorMessage } from '../errors/error-message.ts';
import type { Logger } from '../logger.ts';
import { noopLifecycleObserver, type LifecycleObserver } from '../metrics/observer.ts';
import type { VideoStorage } from '../storage/video-storage.ts';
import { discardVideoWork, type CleanupScope, type VideoJobDiscarder } from './video-cleanup.ts';

/**
 * Extractions running in this process, if any (ExtractionService.stop): stops one and resolves once it has
 * cleaned up. Extraction runs in workers (extract jobs), so an API process has none; each extraction stops
 * by its own poll of the video's status.
 */
export interface ExtractionStopper {
  stop(videoId: string): Promise<boolean>;
}

export interface LifecycleSettings {
  /** KEEP_SOURCE_VIDEO: false deletes a cancelled video's upload too, as extraction does after its frames. */
  keepSourceVideo: boolean;
  /** How long a request waits for this process's extraction of the video to stop; default 10 s. */
  stopWaitMs?: number;
}

/** What a cancel or delete did, for logs and metrics. */
export interface StopOutcome {
  video: VideoRecord;
  /** Queued or dead-lettered jobs removed. */
  jobs: number;
}

/**
 * Cancel and delete (issue 9.6). Both start the same way: the video becomes 'cancelled' in PostgreSQL
 * unless it had finished. From then on nothing writes to it: a worker's commit re-reads the status
 * under the video's row lock and writes nothing, an extraction in any worker stops (at once when it
 * runs in this process, all-in-one; elsewhere by its poll), and the video's queued jobs and frames are
 * discarded. A delete then removes the rest of its files and its rows. Every step is idempotent, so a request that failed half-way (storage
 * unreachable) is simply sent again; the video stays until its files are gone.
 */
export class VideoLifecycleService {
  constructor(
    private readonly videos: Pick<VideoRepository, 'cancel' | 'delete'>,
    private readonly extraction: ExtractionStopper | undefined,
    private readonly queue: VideoJobDiscarder,
    private readonly storage: Pick<VideoStorage, 'deletePrefix' | 'delete'>,
    private readonly settings: LifecycleSettings,
    private readonly logger: Pick<Logger, 'info' | 'warn'>,
    private readonly observer: LifecycleObserver = noopLifecycleObserver,
  ) {}

  /**
   * POST /videos/:id/cancel. Undefined when the video does not exist; 409 when it completed or failed.
   * Cancelling a cancelled video again repeats the clean-up and succeeds.
   */
  async cancel(videoId: string): Promise<StopOutcome | undefined> {
    const video = await this.videos.cancel(videoId);
    if (!video) return undefined;
    if (video.status !== 'cancelled') {
      throw errors.conflict('video_finished', `video ${videoId} is already ${video.status}; only a ${ACTIVE_STATUSES.join(', ')} video can be cancelled (DELETE removes it)`);
    }
    await this.stopExtraction(videoId);
    const { jobs } = await this.cleanUp(videoId, 'frames', async () => {
      // Extraction deletes the upload once the frames are out; a video cancelled before that would keep it.
      if (!this.settings.keepSourceVideo) await this.storage.delete([video.storageKey]);
    });
    this.logger.info('video cancelled', { videoId, jobsDiscarded: jobs, framesDone: video.framesDone });
    this.observer.videoStopped('cancelled', jobs);
    return { video, jobs };
  }

  /**
   * DELETE /videos/:id. Undefined when the video does not exist (never did, or a concurrent delete won).
   * Whatever its status: an unfinished video is cancelled first, which stops its workers and extraction.
   */
  async delete(videoId: string): Promise<StopOutcome | undefined> {
    const video = await this.videos.cancel(videoId);
    if (!video) return undefined;
    await this.stopExtraction(videoId);
    // Files before rows: if storage fails, the row is still there and the delete can be sent again.
    const { jobs } = await this.cleanUp(videoId, 'everything');
    await this.videos.delete(videoId);
    // Once more after the row is gone. An extraction in a worker may still have been writing
    // (a frame, its preview) between the pass above and its poll; it cleans up after itself too, but it
    // keeps the source and preview of a video it still saw cancelled rather than deleted. From here on
    // it sees no row and removes everything itself.
    try {
      await discardVideoWork(this.queue, this.storage, videoId, 'everything');
    } catch (error) {
      this.logger.warn('the second clean-up pass of a deleted video failed', { videoId, error: errorMessage(error) });
    }
    this.logger.info('video deleted', { videoId, status: video.status, jobsDiscarded: jobs });
    this.observer.videoStopped('deleted', jobs);
    return { video, jobs };
  }

  /**
   * discardVideoWork, with a failure of storage or Redis answered 503: the video is cancelled already,
   * and sending the request again finishes the job.
   */
  private async cleanUp(videoId: string, scope: CleanupScope, more?: () => Promise<void>): Promise<{ jobs: number }> {
    try {
      const outcome = await discardVideoWork(this.queue, this.storage, videoId, scope);
      await more?.();
      return outcome;
    } catch (error) {
      this.logger.warn('could not remove the jobs or files of a stopped video', { videoId, scope, error: errorMessage(error) });
      throw errors.unavailable(`video ${videoId} is stopped, but its jobs or files could not all be removed yet; send the request again`, 'cleanup_incomplete', 5);
    }
  }

  /** Waits (boundedly) for this process's extraction of the video to stop; one elsewhere stops by its poll. */
  private async stopExtraction(videoId: string): Promise<void> {
    if (!this.extraction) return;
    const extraction = this.extraction;
    const waitMs = this.settings.stopWaitMs ?? 10_000;
    const gaveUp = new AbortController();
    const stopped = await Promise.race([
      extraction.stop(videoId).finally(() => gaveUp.abort()),
      delay(waitMs, 'timeout' as const, { signal: gaveUp.signal }).catch(() => false),
    ]);
    if (stopped === 'timeout') this.logger.warn('the extraction of a stopped video is still finishing; it cleans up after itself', { videoId, waitedMs: waitMs });
  }
}
