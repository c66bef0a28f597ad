import { videoInputArgs } from './input-policy.ts';
import { inputUrl } from './input-url.ts';

/** h264: H.264 in MP4 (every browser); vp9: VP9 in WebM (for an ffmpeg built without libx264). */
export type PreviewCodec = 'h264' | 'vp9';

export interface PreviewFormat {
  mimeType: 'video/mp4' | 'video/webm';
  extension: 'mp4' | 'webm';
}

export const previewFormats: Readonly<Record<PreviewCodec, PreviewFormat>> = Object.freeze({
  h264: { mimeType: 'video/mp4', extension: 'mp4' },
  vp9: { mimeType: 'video/webm', extension: 'webm' },
});

export interface PreviewOptions {
  input: string;
  /** A local file path; ffmpeg refuses to overwrite it. */
  output: string;
  codec: PreviewCodec;
  /** ffmpeg stops writing once the output reaches this many bytes (-fs); the caller then drops it. */
  maxBytes: number;
  /** MAX_PIXELS: decoders refuse larger pictures (see input-policy.ts). */
  maxPixels?: number;
}

/** The longer and shorter side of the largest preview: 720p, landscape or portrait. */
export const PREVIEW_MAX_LONG_SIDE = 1280;
export const PREVIEW_MAX_SHORT_SIDE = 720;
/** Peak video bitrate: keeps the size predictable (about 0.9 GB per hour at most). */
const MAX_BITRATE = '2M';
/** A keyframe every 2 s of video, so a seek in the browser decodes at most that much. */
const KEYFRAMES = 'expr:gte(t,n_forced*2)';

/**
 * ffmpeg arguments that write a browser-playable preview of the first video stream: at most 720p
 * (never upscaled, even dimensions), 8-bit 4:2:0, no audio, timestamps from 0 at the first frame (the
 * origin of the detections' ptsMs), MP4 with its index first (faststart) or WebM.
 */
export function previewArgs({ input, output, codec, maxBytes, maxPixels }: PreviewOptions): string[] {
  if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0) throw new RangeError(`maxBytes must be a positive whole number, got ${maxBytes}`);
  // Scale factor: fit 1280x720 (or 720x1280), never above 1. Computed by ffmpeg after autorotation,
  // so a phone video's displayed orientation is what is fitted.
  const factor = `min(1,min(${PREVIEW_MAX_LONG_SIDE}/max(iw,ih),${PREVIEW_MAX_SHORT_SIDE}/min(iw,ih)))`;
  const side = (dimension: 'iw' | 'ih') => `'max(2,trunc(${dimension}*${factor}/2)*2)'`;
  const filters = [`scale=w=${side('iw')}:h=${side('ih')}`, 'format=yuv420p', 'setpts=PTS-STARTPTS'];
  const encoder =
    codec === 'h264'
      ? ['-c:v', 'libx264', '-preset', 'veryfast', '-crf', '23', '-profile:v', 'high']
      : ['-c:v', 'libvpx-vp9', '-deadline', 'realtime', '-cpu-used', '8', '-row-mt', '1', '-crf', '33', '-b:v', MAX_BITRATE];
  const container = codec === 'h264' ? ['-movflags', '+faststart', '-f', 'mp4'] : ['-f', 'webm'];
  return [
    '-nostdin',
    '-hide_banner',
    '-nostats',
    '-loglevel',
    'error',
    // The same container and protocol allowlist as every other run: the upload is read once more here.
    ...videoInputArgs(input, maxPixels),
    '-an',
    '-sn',
    '-dn',
    '-map_metadata',
    '-1',
    '-vf',
    filters.join(','),
    '-fps_mode',
    'vfr',
    ...encoder,
    ...(codec === 'h264' ? ['-maxrate', MAX_BITRATE, '-bufsize', '4M'] : []),
    '-force_key_frames',
    KEYFRAMES,
    '-fs',
    String(maxBytes),
    ...container,
    inputUrl(output),
  ];
}
