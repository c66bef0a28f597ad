import type { VideoInfo } from '../media/probe.ts';

/** What one video may cost (MAX_DURATION_S, MAX_FRAMES, MAX_PIXELS; see Config.limits). */
export interface VideoLimits {
  maxDurationS: number;
  maxFrames: number;
  maxPixels: number;
}

export type LimitRefusal = { code: 'too_many_pixels' | 'video_too_long' | 'too_many_frames' | 'no_frames'; message: string };

/**
 * The sampling rate extraction uses; null is every frame. Sampling at or above the source's rate would
 * make ffmpeg duplicate frames, so that is every frame; and every frame ("all") of a source faster than
 * MAX_FPS, or of unknown rate, is sampled at MAX_FPS.
 */
export function effectiveSampleFps(requested: number | null, sourceFps: number | null, maxFps: number): number | null {
  if (requested === null) return sourceFps !== null && sourceFps <= maxFps ? null : maxFps;
  return sourceFps !== null && requested >= sourceFps ? null : requested;
}

/**
 * Frames extraction will yield, from the probe: ffmpeg's fps filter yields duration x rate rounded to
 * the nearest frame; every frame is the container's count (or duration x its rate). null: unknown.
 */
export function expectedFrames(video: Pick<VideoInfo, 'durationMs' | 'frameCountEstimate'>, sampleFps: number | null): number | null {
  if (sampleFps === null) return video.frameCountEstimate;
  return video.durationMs === null ? null : Math.round((video.durationMs / 1000) * sampleFps);
}

/**
 * Checks a probed video against the limits before anything decodes it. Unknown figures (a raw stream
 * without a duration) pass here; extraction enforces the frame and duration limits as frames appear.
 */
export function checkVideoLimits(
  video: Pick<VideoInfo, 'durationMs' | 'width' | 'height' | 'frameCountEstimate'>,
  sampleFps: number | null,
  limits: VideoLimits,
): LimitRefusal | undefined {
  const pixels = video.width * video.height;
  if (pixels > limits.maxPixels) {
    return {
      code: 'too_many_pixels',
      message: `the video is ${video.width}x${video.height} (${pixels} pixels a frame); at most ${limits.maxPixels} are accepted (MAX_PIXELS)`,
    };
  }
  const seconds = video.durationMs === null ? null : video.durationMs / 1000;
  if (seconds !== null && seconds > limits.maxDurationS) {
    return { code: 'video_too_long', message: `the video lasts ${round(seconds)} s; at most ${limits.maxDurationS} s are accepted (MAX_DURATION_S)` };
  }
  const frames = expectedFrames(video, sampleFps);
  if (frames === null) return undefined;
  const rate = sampleFps === null ? 'every frame' : `${sampleFps} fps`;
  if (frames > limits.maxFrames) {
    const hint = seconds !== null && seconds > 0 ? `; sample at most ${Math.floor((limits.maxFrames / seconds) * 100) / 100} fps` : '';
    return { code: 'too_many_frames', message: `${rate} yields about ${frames} frames; at most ${limits.maxFrames} are extracted from one video (MAX_FRAMES)${hint}` };
  }
  if (frames < 1) {
    const hint = seconds !== null && seconds > 0 ? `; sample at least ${Math.ceil((0.5 / seconds) * 1000) / 1000} fps` : '';
    return { code: 'no_frames', message: `${rate} takes no frame from this ${seconds === null ? '' : `${round(seconds)} s `}video${hint}` };
  }
  return undefined;
}

/** Three significant digits at most, for messages. */
function round(value: number): number {
  return Number(value.toPrecision(3));
}
