import { inputUrl } from './input-url.ts';
/**
 * What every ffprobe and ffmpeg run may open and decode. Uploads are hostile: ffmpeg detects a file's
 * format from its content, and some demuxers (hls, dash, concat, image2 sequences, sdp...) open other
 * files or URLs named inside the upload, which would read the server's own files. So each run gets:
 * - a protocol allowlist of `file` only (no network, no data:/subfile:/concat: tricks), inherited by
 *   anything a demuxer opens;
 * - an allowlist of container demuxers that never open another file;
 * - a decoder ceiling on picture size (max_pixels), so a stream whose header lies cannot make a decoder
 *   allocate a larger picture.
 */

/**
 * Demuxers accepted, by ffmpeg's names. None opens other files: mov's external data references are
 * off unless enable_drefs is set, which we never do.
 */
export const ALLOWED_DEMUXERS = [
  'mov', 'mp4', 'm4a', '3gp', '3g2', 'mj2', // one demuxer: MP4, MOV, 3GP
  'matroska', 'webm', // one demuxer: MKV, WebM
  'avi',
  'mpegts', // .ts, .m2ts
  'mpeg', // MPEG program streams: .mpg, .vob
  'flv',
  'asf', // .wmv, .asf
  'ogg', // .ogv
  'ivf', // raw VP8/VP9/AV1
  'h264', // raw H.264 elementary streams
  'hevc', // raw H.265 elementary streams
  'm4v', // raw MPEG-4 part 2 elementary streams
] as const;

/** For people: the containers ALLOWED_DEMUXERS covers. */
export const ACCEPTED_CONTAINERS = 'MP4/MOV/3GP, MKV/WebM, AVI, MPEG-TS, MPEG-PS, FLV, WMV/ASF, Ogg, IVF, raw H.264/H.265/MPEG-4';

/** Protocols a run may open: its own local input file, nothing else. */
export const ALLOWED_PROTOCOLS = 'file';

/**
 * Decoders get a tenth more than the probe-time limit: they check the aligned, coded size (a 1920x1080
 * H.264 stream is decoded as 1920x1088), so the exact limit applies to the probed size and this one
 * only catches pictures that are really larger than announced.
 */
export function decoderMaxPixels(maxPixels: number): number {
  return Math.min(2 ** 31 - 1, Math.ceil(maxPixels * 1.1));
}

/** Input options for ffprobe and ffmpeg, before `-i`: allowlists, and the decoder's picture size ceiling. */
export function inputPolicyArgs(maxPixels: number | undefined): string[] {
  return [
    '-protocol_whitelist',
    ALLOWED_PROTOCOLS,
    '-format_whitelist',
    ALLOWED_DEMUXERS.join(','),
    ...(maxPixels === undefined ? [] : ['-max_pixels', String(decoderMaxPixels(maxPixels))]),
  ];
}

/**
 * The input of an ffmpeg run over an upload: the allowlists and picture size ceiling, the file as a plain
 * local file, and its first real video stream only (V, not v: cover art and thumbnails are skipped, as the
 * probe skips them).
 */
export function videoInputArgs(input: string, maxPixels: number | undefined): string[] {
  return [...inputPolicyArgs(maxPixels), '-i', inputUrl(input), '-map', '0:V:0'];
}

/** ffprobe's format_name ("mov,mp4,m4a,3gp,3g2,mj2", "hls") names an allowed demuxer. */
export function isAllowedFormat(formatName: string): boolean {
  return formatName.split(',').some((name) => (ALLOWED_DEMUXERS as readonly string[]).includes(name));
}

// avformat_open_input logs "[hls @ 0x55...] Format not on whitelist 'mov,...'": the bracket names the detected demuxer.
const FORMAT_REFUSED = /^\[([\w,]+) @ [^\]]*\] Format not on whitelist/m;
const PROTOCOL_REFUSED = /Protocol '([\w-]+)' not on whitelist/;
// "[h264 @ 0x..] [IMGUTILS @ 0x..] Picture size 16000x16000 exceeds specified max pixel count 8847360"
const PICTURE_TOO_LARGE = /Picture size (\d+)x(\d+) exceeds specified max pixel count/;
// What ffmpeg says when an allocation fails (the address-space ceiling, or the host is out of memory):
// measured under prlimit --as, a 4K decode fails with any of these, depending on where it ran out.
const OUT_OF_MEMORY =
  /Cannot allocate memory|Could not allocate|Out of memory|Failed to allocate|\(-12\b|get_buffer\(\) failed|get_encode_buffer\(\) failed|ff_frame_thread_encoder_init failed/;

export type InputRefusal =
  | { kind: 'format'; demuxer: string | undefined }
  | { kind: 'protocol'; protocol: string }
  | { kind: 'picture_size'; width: number; height: number }
  | { kind: 'memory' };

/**
 * Why ffmpeg/ffprobe stopped, when it was one of the rules above (or the memory ceiling), from its
 * stderr; undefined for anything else.
 */
export function inputRefusal(stderr: string): InputRefusal | undefined {
  const format = FORMAT_REFUSED.exec(stderr);
  if (format) return { kind: 'format', demuxer: format[1] };
  if (/Format not on whitelist/.test(stderr)) return { kind: 'format', demuxer: undefined };
  const protocol = PROTOCOL_REFUSED.exec(stderr);
  if (protocol) return { kind: 'protocol', protocol: protocol[1]! };
  const picture = PICTURE_TOO_LARGE.exec(stderr);
  if (picture) return { kind: 'picture_size', width: Number(picture[1]), height: Number(picture[2]) };
  if (OUT_OF_MEMORY.test(stderr)) return { kind: 'memory' };
  return undefined;
}

/**
 * The command that runs `file args` with an address-space ceiling (RLIMIT_AS, set by util-linux's
 * prlimit on the process it starts). A decode that needs more fails its allocation instead of taking
 * the host's memory. No ceiling (0): the command as it is.
 */
export function withMemoryCeiling(prlimit: string, file: string, args: string[], bytes: number): { file: string; args: string[] } {
  if (bytes <= 0) return { file, args };
  return { file: prlimit, args: [`--as=${bytes}`, '--', file, ...args] };
}
