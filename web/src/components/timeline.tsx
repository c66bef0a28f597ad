import { useEffect, useState } from 'preact/hooks';
import type { Summary } from '../api.ts';
import { timelineLanes } from '../lib/charts.ts';
import { formatDuration } from '../lib/format.ts';
import { classColor } from '../lib/overlay.ts';

interface TimelineProps {
  /** false while the video is processed: no detections is then "not yet". */
  finished: boolean;
  summary: Summary;
  /** The video's length; the last bucket's end when the source did not say. */
  durationMs: number | null;
  hidden: ReadonlySet<string>;
  /** The player to seek; null while there is none (no preview). */
  video: HTMLVideoElement | null;
}

/**
 * Detections per class along the video: one lane per class, one bar per time bucket (height by count).
 * Each bar is a button that seeks the player to its bucket's start; a line marks the playing position.
 */
export function Timeline({ summary, durationMs, hidden, video, finished }: TimelineProps) {
  const lanes = timelineLanes(summary);
  const bucketMs = summary.bucketSeconds * 1000;
  const lastEnd = summary.buckets.reduce((end, bucket) => Math.max(end, bucket.startMs + bucketMs), 0);
  const spanMs = Math.max(durationMs ?? 0, lastEnd, 1);
  const playheadMs = usePlayhead(video);
  const seek = (startMs: number) => {
    if (video) video.currentTime = startMs / 1000;
  };
  const shown = lanes.filter((lane) => !hidden.has(lane.className));
  if (shown.length === 0) {
    return <p class="muted">{lanes.length > 0 ? 'No detections of the classes shown.' : finished ? 'No detections.' : 'No detections yet: the timeline fills in when processing ends.'}</p>;
  }
  const percent = (ms: number) => `${Math.min(100, (ms / spanMs) * 100)}%`;
  return (
    <div class="timeline" role="group" aria-label={`Detections per class over time, in buckets of ${summary.bucketSeconds} s`}>
      {shown.map((lane) => (
        <div class="lane" key={lane.className}>
          <span class="lane-label" style={{ color: classColor(lane.className) }}>
            {lane.className}
          </span>
          <div class="lane-track">
            {lane.bars.map((bar) => {
              const label = `${lane.className}: ${bar.count} at ${formatDuration(bar.startMs)}`;
              return (
                <button
                  type="button"
                  class="bar"
                  key={bar.startMs}
                  title={label}
                  aria-label={label}
                  data-start-ms={bar.startMs}
                  style={{
                    left: percent(bar.startMs),
                    width: `max(3px, calc(${percent(bucketMs)} - 1px))`,
                    height: `${Math.max(12, (bar.count / lane.maxCount) * 100)}%`,
                    background: classColor(lane.className),
                  }}
                  disabled={video === null}
                  onClick={() => seek(bar.startMs)}
                />
              );
            })}
            {playheadMs !== null && <div class="playhead" style={{ left: percent(playheadMs) }} aria-hidden="true" />}
          </div>
        </div>
      ))}
      <div class="lane axis" aria-hidden="true">
        <span class="lane-label" />
        <div class="lane-track">
          {[0, 0.25, 0.5, 0.75, 1].map((share) => (
            <span key={share} class="tick" style={{ left: `${share * 100}%` }}>
              {formatDuration(share * spanMs)}
            </span>
          ))}
        </div>
      </div>
    </div>
  );
}

/** The player's position in ms, updated on timeupdate and seeks (a few times a second is enough for a line). */
function usePlayhead(video: HTMLVideoElement | null): number | null {
  const [timeMs, setTimeMs] = useState<number | null>(null);
  useEffect(() => {
    if (!video) return;
    const update = () => setTimeMs(video.currentTime * 1000);
    const events = ['timeupdate', 'seeked', 'loadeddata'] as const;
    for (const name of events) video.addEventListener(name, update);
    return () => {
      for (const name of events) video.removeEventListener(name, update);
    };
  }, [video]);
  return timeMs;
}
