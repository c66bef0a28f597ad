import { ACCEPTED_CONTAINERS, inputPolicyArgs, isAllowedFormat } from './input-policy.ts';
import { inputUrl } from './input-url.ts';

/** Reasons a file is refused; UploadService maps them to HTTP statuses. */
export type MediaRefusalCode =
  | 'unreadable_video'
  | 'no_video_stream'
  | 'not_a_video'
  | 'unsupported_format'
  | 'invalid_dimensions'
  | 'invalid_timestamps'
  | 'truncated_video'
  | 'too_many_pixels'
  | 'memory_limit';

export interface VideoInfo {
  /** Video stream duration, else the container's; null when neither is known (some live-style streams). */
  durationMs: number | null;
  /** avg_frame_rate, else r_frame_rate; null when ffprobe reports neither (0/0). */
  fps: number | null;
  width: number;
  height: number;
  codec: string;
  /** The video stream's first timestamp; frame timestamps are reported relative to it. */
  startTimeMs: number;
  /** creation_time tag of the container, else of the video stream. */
  creationTime: Date | null;
  /** nb_frames when the container records it, else duration x fps; null when neither is known. */
  frameCountEstimate: number | null;
}

export type ProbeResult =
  | { ok: true; video: VideoInfo; raw: { format: Record<string, unknown>; stream: Record<string, unknown> } }
  | { ok: false; code: MediaRefusalCode; message: string };

/** ffprobe arguments: JSON with every stream and the container, errors only on stderr; the input policy applies. */
export function ffprobeArgs(input: string, maxPixels?: number): string[] {
  return ['-v', 'error', ...inputPolicyArgs(maxPixels), '-print_format', 'json', '-show_format', '-show_streams', inputUrl(input)];
}

/** Frame timestamps must stay exact in a double and in PostgreSQL's bigint (milliseconds). */
const MAX_TIME_MS = Number.MAX_SAFE_INTEGER;

// Demuxers for single pictures (png_pipe, jpeg_pipe, webp_pipe...). ffprobe detects images by content,
// so an image renamed to .mp4 lands here too.
const IMAGE_FORMATS = /^(image2|image2pipe|\w+_pipe)$/;

/** A demuxer of still pictures: not on the allowlist, and worth its own, clearer refusal (not_a_video). */
export function isImageDemuxer(name: string): boolean {
  return IMAGE_FORMATS.test(name);
}
// Picture codecs that, without a duration, mean a still image in some container.
const IMAGE_CODECS = new Set(['png', 'bmp', 'webp', 'tiff', 'jpeg2000', 'jpegls', 'gif', 'mjpeg', 'pam', 'ppm', 'pgm', 'qoi']);

/** Turns ffprobe's JSON into what ingest needs, or a refusal explaining why the file is not a usable video. */
export function interpretProbe(json: unknown): ProbeResult {
  if (!isRecord(json) || !Array.isArray(json.streams) || !isRecord(json.format)) {
    return refuse('unreadable_video', 'ffprobe returned no container information');
  }
  const format = json.format;
  const streams = json.streams.filter(isRecord);
  // Cover art in audio files is a "video" stream too; the V selector in the extraction args skips it the same way.
  const stream = streams.find((s) => s.codec_type === 'video' && !isAttachedPicture(s));
  if (!stream) {
    const kinds = [...new Set(streams.map((s) => String(s.codec_type ?? 'unknown')))];
    return refuse('no_video_stream', kinds.length > 0 ? `the file has no video stream (only ${kinds.join(', ')})` : 'the file has no streams');
  }

  const formatName = String(format.format_name ?? '');
  if (formatName.split(',').some((name) => IMAGE_FORMATS.test(name))) {
    return refuse('not_a_video', `the file is a still image (${formatName}), not a video`);
  }
  // ffprobe already ran with the allowlist; this keeps it the rule if a build ignored the option.
  if (!isAllowedFormat(formatName)) {
    return refuse('unsupported_format', `the container format (${formatName || 'unknown'}) is not accepted; accepted: ${ACCEPTED_CONTAINERS}`);
  }
  const durationMs = seconds(stream.duration) ?? seconds(format.duration);
  const nbFrames = positiveInteger(stream.nb_frames);
  // Unknown duration alone is not enough: raw H.264 elementary streams have none either.
  if (durationMs === null && (nbFrames === 1 || IMAGE_CODECS.has(String(stream.codec_name)))) {
    return refuse('not_a_video', 'the file holds a single picture without a duration, not a video');
  }

  const width = positiveInteger(stream.width);
  const height = positiveInteger(stream.height);
  if (width === null || height === null) {
    return refuse('invalid_dimensions', `the video stream has no usable dimensions (${String(stream.width)}x${String(stream.height)})`);
  }

  const startTimeMs = seconds(stream.start_time) ?? seconds(format.start_time) ?? 0;
  if (Math.abs(startTimeMs) > MAX_TIME_MS || (durationMs !== null && durationMs > MAX_TIME_MS)) {
    return refuse('invalid_timestamps', 'the video announces a start time or duration beyond any real recording');
  }
  // A frame rate no camera has (the column is a 4-byte float) says nothing: treated as unknown.
  const announcedFps = rational(stream.avg_frame_rate) ?? rational(stream.r_frame_rate);
  const fps = announcedFps !== null && announcedFps <= 1_000_000 ? announcedFps : null;
  const tags = (record: Record<string, unknown>) => (isRecord(record.tags) ? record.tags : {});
  return {
    ok: true,
    video: {
      durationMs: durationMs === null ? null : Math.round(durationMs),
      fps,
      width,
      height,
      codec: String(stream.codec_name ?? 'unknown'),
      startTimeMs,
      creationTime: date(tags(format).creation_time) ?? date(tags(stream).creation_time),
      frameCountEstimate: nbFrames ?? (durationMs !== null && fps !== null ? Math.round((durationMs / 1000) * fps) : null),
    },
    // The file name is a server path, meaningless once stored; everything else is kept for later questions.
    raw: { format: withoutKey(format, 'filename'), stream },
  };
}

/** "30000/1001" or "25" to frames per second; 0/0 and junk to null. */
export function parseRational(value: unknown): number | null {
  return rational(value);
}

function rational(value: unknown): number | null {
  if (typeof value !== 'string' && typeof value !== 'number') return null;
  const [num, den = '1'] = String(value).split('/');
  const result = Number(num) / Number(den);
  return Number.isFinite(result) && result > 0 ? result : null;
}

/** ffprobe writes times as decimal seconds in strings ("2.000000") or "N/A"; returns milliseconds. */
function seconds(value: unknown): number | null {
  if (value === undefined || value === null || value === '' || value === 'N/A') return null;
  const n = Number(value);
  // Microsecond precision is all ffprobe prints; rounding removes float noise like 66.66699999.
  return Number.isFinite(n) ? Math.round(n * 1e6) / 1e3 : null;
}

function positiveInteger(value: unknown): number | null {
  const n = typeof value === 'string' ? Number(value) : value;
  return typeof n === 'number' && Number.isInteger(n) && n > 0 ? n : null;
}

function date(value: unknown): Date | null {
  if (typeof value !== 'string' || value === '') return null;
  const parsed = new Date(value);
  // Cameras without a clock write 1970 or 1904 epochs; those say "unknown", not a capture time.
  return Number.isNaN(parsed.getTime()) || parsed.getUTCFullYear() < 1971 ? null : parsed;
}

function isAttachedPicture(stream: Record<string, unknown>): boolean {
  const disposition = isRecord(stream.disposition) ? stream.disposition : {};
  return disposition.attached_pic === 1 || disposition.timed_thumbnails === 1;
}

function withoutKey(record: Record<string, unknown>, key: string): Record<string, unknown> {
  const { [key]: _omitted, ...rest } = record;
  return rest;
}

function refuse(code: MediaRefusalCode, message: string): ProbeResult {
  return { ok: false, code, message };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
