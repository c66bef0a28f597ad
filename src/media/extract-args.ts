import { videoInputArgs } from './input-policy.ts';

/** Frames of exactly `from` size are stored at `to` (width and height in pixels). */
export interface FrameScale {
  from: { width: number; height: number };
  to: { width: number; height: number };
}

export interface FrameExtractionOptions {
  input: string;
  /** Frames per second to sample; null decodes and emits every frame. */
  fps: number | null;
  /** mjpeg -q:v, 2 (best) to 31 (worst). */
  jpegQuality: number;
  /**
   * Store frames scaled (FRAME_SIZE): a frame of exactly `from` size is scaled to `to`; a frame of any other
   * size (a video with a display rotation, which ffmpeg applies) is kept as it is, since `to` was worked
   * out for the probed size. Omitted: frames at source resolution.
   */
  scale?: FrameScale;
  /** MAX_PIXELS: decoders refuse larger pictures (see input-policy.ts). */
  maxPixels?: number;
}

/**
 * ffmpeg arguments that write the first video stream's frames to stdout as concatenated JPEGs at
 * source resolution (or scaled, see `scale`), and log one showinfo line (with pts_time) per written frame on stderr.
 */
export function frameExtractionArgs({ input, fps, jpegQuality, scale, maxPixels }: FrameExtractionOptions): string[] {
  if (fps !== null && !(Number.isFinite(fps) && fps > 0)) throw new RangeError(`fps must be a positive number or null, got ${fps}`);
  if (!(Number.isInteger(jpegQuality) && jpegQuality >= 2 && jpegQuality <= 31)) {
    throw new RangeError(`jpegQuality must be a whole number from 2 to 31, got ${jpegQuality}`);
  }
  const filters = [
    ...(fps === null ? [] : [`fps=${fps}`]),
    // Convert to full range ourselves and encode yuv420p flagged full range: the same bytes as the
    // deprecated yuvj420p path (baseline JFIF), without swscaler's "deprecated pixel format" warnings.
    scale ? scaleFilter(scale) : 'scale=out_range=full',
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
    ...videoInputArgs(input, maxPixels),
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
    // The standard Huffman tables instead of ones computed for each frame: the same pixels (Huffman coding is
    // lossless), files about 2% larger, and 28% less CPU for the whole extraction (vtest.avi at 5 frames/s, 640×480).
    '-huffman',
    'default',
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

/**
 * One swscale pass that scales and converts the range. The size is an expression of the frame's own size, so
 * only frames of the probed size are scaled. bilinear, as the worker's letterbox resize (cv2.INTER_LINEAR
 * in Ultralytics) would have done on the full-size frame.
 */
function scaleFilter({ from, to }: FrameScale): string {
  for (const size of [from, to]) {
    if (!(Number.isInteger(size.width) && Number.isInteger(size.height) && size.width > 0 && size.height > 0)) {
      throw new RangeError(`frame sizes must be positive whole numbers, got ${size.width}x${size.height}`);
    }
  }
  const probed = `eq(iw,${from.width})*eq(ih,${from.height})`;
  return `scale=w='if(${probed},${to.width},iw)':h='if(${probed},${to.height},ih)':flags=bilinear:out_range=full`;
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
    ...videoInputArgs(input, maxPixels),
    ...(maxFrames !== undefined ? ['-frames:v', String(maxFrames)] : []),
    '-f',
    'framecrc',
    'pipe:1',
  ];
}
