import type { Progress, VideoStatus } from '../api.ts';
import { formatEta, progressPercent } from '../lib/format.ts';

export function StatusBadge({ status }: { status: VideoStatus }) {
  return <span class={`status status-${status}`}>{status}</span>;
}

/**
 * Processing progress of a video: a progress bar over the frames settled (done or failed), the frame
 * counts and the time left. While extraction runs the total is unknown, so the bar is indeterminate.
 */
export function VideoProgress({ progress, label }: { progress: Progress; label: string }) {
  const percent = progressPercent(progress.framesDone, progress.framesFailed, progress.framesTotal);
  const eta = progress.status === 'completed' ? null : formatEta(progress.etaSeconds);
  return (
    <div class="progress">
      <progress aria-label={label} max={100} value={percent ?? undefined} />
      <span class="progress-text">
        {progress.framesTotal === null ? `${progress.framesDone} frames` : `${progress.framesDone + progress.framesFailed} / ${progress.framesTotal} frames`}
        {percent === null ? '' : ` (${percent}%)`}
        {eta === null ? '' : `, ${eta} left`}
      </span>
    </div>
  );
}
