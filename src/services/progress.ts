import type { CatalogVideo } from '../db/video-catalog.repository.ts';

/** What GET /videos/:id/events sends in each `progress` event. */
export interface ProgressSnapshot {
  id: string;
  status: string;
  framesDone: number;
  framesTotal: number | null;
  framesFailed: number;
  etaSeconds: number | null;
}

type EtaInput = Pick<CatalogVideo, 'status' | 'framesTotal' | 'framesDone' | 'framesFailed' | 'sampleFps' | 'source' | 'progress'>;

export const TERMINAL_STATUSES: readonly string[] = ['completed', 'failed', 'cancelled'];

/**
 * Seconds until the video is done, from its observed frame rate: the frames settled (done or failed)
 * after its first commit, over the time from that commit to the latest one. The remaining frames at
 * that rate, less the time since the latest commit; 0 once completed. While extraction runs the total
 * is not known yet and is estimated from the duration and the sampling rate. null when it cannot be
 * told: queued, failed or cancelled, or fewer than two commits so far.
 */
export function estimateEtaSeconds(video: EtaInput, now: number): number | null {
  if (video.status === 'completed') return 0;
  if (video.status !== 'extracting' && video.status !== 'processing') return null;
  const total = video.framesTotal ?? expectedFrames(video);
  const { firstCommitAt, firstCommitFrames, lastCommitAt } = video.progress;
  if (total === null || firstCommitAt === null || firstCommitFrames === null || lastCommitAt === null) return null;
  const settled = video.framesDone + video.framesFailed;
  const spanSeconds = (lastCommitAt.getTime() - firstCommitAt.getTime()) / 1000;
  const framesSince = settled - firstCommitFrames;
  if (spanSeconds <= 0 || framesSince <= 0) return null;
  const remaining = Math.max(0, total - settled);
  const sinceLastCommit = Math.max(0, (now - lastCommitAt.getTime()) / 1000);
  return Math.max(0, Math.ceil(remaining / (framesSince / spanSeconds) - sinceLastCommit));
}

/** Frames extraction will yield: the duration at the sampling rate (every frame: the source rate). */
function expectedFrames(video: Pick<EtaInput, 'sampleFps' | 'source'>): number | null {
  const fps = video.sampleFps ?? video.source.fps;
  if (video.source.durationMs === null || fps === null) return null;
  return Math.max(1, Math.round((video.source.durationMs / 1000) * fps));
}

export function progressSnapshot(video: CatalogVideo, now: number): ProgressSnapshot {
  return {
    id: video.id,
    status: video.status,
    framesDone: video.framesDone,
    framesTotal: video.framesTotal,
    framesFailed: video.framesFailed,
    etaSeconds: estimateEtaSeconds(video, now),
  };
}
