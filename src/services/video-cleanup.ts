import { errorMessage } from '../errors/error-message.ts';
import type { Logger } from '../logger.ts';
import { storageKeys } from '../storage/keys.ts';
import type { VideoStorage } from '../storage/video-storage.ts';

/** The queue's side of a cancel or delete (ReliableQueue.discardVideoJobs). */
export interface VideoJobDiscarder {
  /** Removes the video's queued and dead-lettered jobs; returns how many. */
  discardVideoJobs(videoId: string): Promise<number>;
}

/**
 * What a stopped video leaves: 'frames' for a cancelled one (its source and preview stay, like a finished
 * video's), 'everything' for a deleted one (source, preview and frames: its whole storage prefix).
 */
export type CleanupScope = 'frames' | 'everything';

/**
 * Drops a cancelled or deleted video's queued jobs, then the files they point at. Idempotent, and safe
 * when some or all of it is gone already (another process cleaned up first). Both the API answering
 * the request and the extraction that stops because of it run this: whichever runs last finds any job
 * or frame the other's ffmpeg still wrote. Throws when Redis or storage fails, so the caller can say so.
 */
export async function discardVideoWork(
  queue: VideoJobDiscarder,
  storage: Pick<VideoStorage, 'deletePrefix'>,
  videoId: string,
  scope: CleanupScope,
): Promise<{ jobs: number }> {
  // Jobs first: a worker that takes one now finds the video stopped (it acknowledges without reading),
  // where a job whose frames were deleted first would fail an attempt on the missing file.
  const jobs = await queue.discardVideoJobs(videoId);
  await storage.deletePrefix(scope === 'everything' ? storageKeys.videoPrefix(videoId) : storageKeys.framesPrefix(videoId));
  return { jobs };
}

/** discardVideoWork for background paths (an extraction that stopped): a failure is logged, not thrown. */
export async function discardVideoWorkQuietly(
  queue: VideoJobDiscarder,
  storage: Pick<VideoStorage, 'deletePrefix'>,
  videoId: string,
  scope: CleanupScope,
  logger: Pick<Logger, 'warn'>,
): Promise<void> {
  try {
    await discardVideoWork(queue, storage, videoId, scope);
  } catch (error) {
    logger.warn('could not discard the jobs and files of a stopped video', { videoId, scope, error: errorMessage(error) });
  }
}
