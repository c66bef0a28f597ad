import { inputPolicyArgs } from './input-policy.ts';
import { inputUrl } from './input-url.ts';

export interface FrameExtractionOptions {
  input: string;
  /** Frames per second to sample; null decodes and emits every frame. */
  fps: number | null;
  /** mjpeg -q:v, 2 (best) to 31 (worst). */
  jpegQuality: number;
  /** MAX_PIXELS: decoders refuse larger pictures (see input-policy.ts). */
  maxPixels?: number;
}

/**
 * ffmpeg arguments that write the first video stream's frames to stdout as concatenated JPEGs at
 * source resolution, and log one showinfo line (with pts_time) per written frame on stderr.
 */
export function frameExtractionArgs({ input, fps, jpegQuality, maxPixels }: FrameExtractionOptions): string[] {
  if (fps !== null && !(Number.isFinite(fps) && fps > 0)) throw new RangeError(`fps must be a positive number or null, got ${fps}`);
  if (!(Number.isInteger(jpegQuality) && jpegQuality >= 2 && jpegQuality <= 31)) {
    throw new RangeError(`jpegQuality must be a whole number from 2 to 31, got ${jpegQuality}`);
  }
  const filters = [
    ...(fps === null ? [] : [`fps=${fps}`]),
    // Convert to full range ourselves and encode yuv420p flagged full range: the same bytes as the
    // deprecated yuvj420p path (baseline JFIF), without swscaler's "deprecated pixel format" warnings.
    'scale=out_range=full',
    'format=yuv420p',
    // Last, so it logs exactly the frames that reach the encoder, in order. Without checksum it skips
    // per-frame checksums and statistics, about a sixth of the extraction time at 768x576.
    'showinfo=checksum=0',
  ];
  return [
    '-nostdin',
    '-hide_banner',
    // Progress lines would mix with showinfo's; info level is what showinfo logs at.
    '-nostats',
    '-loglevel',
    'info',
    // Keep the file's timestamps, so pts_time minus the probed start_time is the offset from the first frame.
    '-copyts',
    ...inputPolicyArgs(maxPixels),
    '-i',
    inputUrl(input),
    // V (not v) skips cover art and thumbnails, like interpretProbe does.
    '-map',
    '0:V:0',
    '-an',
    '-sn',
    '-dn',
    '-vf',
    filters.join(','),
    // image2pipe would otherwise get constant-frame-rate sync, which duplicates or drops frames after
    // showinfo and so breaks the one JPEG per showinfo line pairing. The fps filter does the sampling.
    '-fps_mode',
    'passthrough',
    '-c:v',
    'mjpeg',
    '-q:v',
    String(jpegQuality),
    '-color_range',
    'pc',
    // mjpeg takes plain yuv420p only at this compliance level; the output is still standard JPEG.
    '-strict',
    'unofficial',
    '-f',
    'image2pipe',
    'pipe:1',
  ];
}

export interface DecodeCheckOptions {
  input: string;
  /** Seek here first (input -ss, so only from the keyframe before it is decoded). */
  fromMs?: number;
  /** Stop after this many frames. */
  maxFrames?: number;
  /** MAX_PIXELS: decoders refuse larger pictures (see input-policy.ts). */
  maxPixels?: number;
}

/**
 * ffmpeg arguments that decode part of the first video stream and print one framecrc line per
 * decoded frame on stdout (so frames can be counted), with only errors on stderr.
 */
export function decodeCheckArgs({ input, fromMs, maxFrames, maxPixels }: DecodeCheckOptions): string[] {
  return [
    '-nostdin',
    '-hide_banner',
    '-nostats',
    '-loglevel',
    'error',
    // Containers without an index (MPEG-TS) seek to any packet, and H.264/HEVC decoders would drop
    // everything until the next keyframe, which may never come in the last second: zero frames from
    // an intact file. showall decodes those frames anyway; this check only asks whether data is there.
    '-flags2',
    '+showall',
    ...(fromMs !== undefined && fromMs > 0 ? ['-ss', (fromMs / 1000).toFixed(3)] : []),
    ...inputPolicyArgs(maxPixels),
    '-i',
    inputUrl(input),
    '-map',
    '0:V:0',
    ...(maxFrames !== undefined ? ['-frames:v', String(maxFrames)] : []),
    '-f',
    'framecrc',
    'pipe:1',
  ];
}
