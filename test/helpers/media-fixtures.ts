import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';

/** A real pedestrian video from Debian's opencv-doc: 768x576, 10 fps, msmpeg4v3 in AVI, 795 frames (79.5 s). */
export const VTEST_AVI = '/usr/share/doc/opencv-doc/examples/data/vtest.avi';

/** Real photos from Debian's python3-skimage: landscape and portrait, larger than 640 px and smaller. */
export const SKIMAGE_PHOTOS = ['astronaut.png', 'motorcycle_left.png', 'motorcycle_right.png', 'coffee.png', 'chelsea.png', 'rocket.jpg'].map(
  (name) => `/usr/lib/python3/dist-packages/skimage/data/${name}`,
);

export interface ClipOptions {
  seconds: number;
  fps: number;
  width: number;
  height: number;
  format: 'mp4' | 'avi' | 'mkv';
  /** mp4 only: moov before mdat, so a cut file still has its index. */
  faststart?: boolean;
  /** File name without extension; defaults to one built from the options. */
  name?: string;
  /** Written as the container's creation_time tag (ISO 8601). */
  creationTime?: string;
}

async function ffmpeg(args: string[]): Promise<void> {
  await execa('ffmpeg', ['-nostdin', '-hide_banner', '-loglevel', 'error', '-y', ...args]);
}

/** A synthetic clip (lavfi testsrc2: moving, detailed picture) in the given container. */
export async function makeClip(dir: string, options: ClipOptions): Promise<string> {
  const { seconds, fps, width, height, format } = options;
  const name = options.name ?? `clip-${width}x${height}-${fps}fps-${seconds}s${options.faststart ? '-faststart' : ''}`;
  const file = path.join(dir, `${name}.${format}`);
  const codec = format === 'avi' ? ['-c:v', 'mpeg4', '-q:v', '5'] : ['-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p'];
  await ffmpeg([
    '-f',
    'lavfi',
    '-i',
    `testsrc2=size=${width}x${height}:rate=${fps}`,
    '-t',
    String(seconds),
    ...codec,
    ...(format === 'mp4' && options.faststart ? ['-movflags', '+faststart'] : []),
    ...(options.creationTime ? ['-metadata', `creation_time=${options.creationTime}`] : []),
    file,
  ]);
  return file;
}

/** AAC audio in an .mp4 container: a valid file with no video stream. */
export async function makeAudioOnly(dir: string, name = 'audio-only'): Promise<string> {
  const file = path.join(dir, `${name}.mp4`);
  await ffmpeg(['-f', 'lavfi', '-i', 'sine=frequency=440:duration=2', '-c:a', 'aac', file]);
  return file;
}

/** A still image saved under a .mp4 name; ffprobe recognises the content (png_pipe / jpeg_pipe). */
export async function makeImageAsMp4(dir: string, kind: 'png' | 'jpeg' = 'png'): Promise<string> {
  const image = path.join(dir, `still.${kind === 'png' ? 'png' : 'jpg'}`);
  await ffmpeg(['-f', 'lavfi', '-i', 'testsrc2=size=320x240', '-frames:v', '1', image]);
  const file = path.join(dir, `still-${kind}.mp4`);
  await fs.rename(image, file);
  return file;
}

/** The first fraction of a file's bytes, next to it. A plain mp4 cut this way loses its moov atom. */
export async function makeTruncated(fromPath: string, fraction: number): Promise<string> {
  const data = await fs.readFile(fromPath);
  const ext = path.extname(fromPath);
  const file = path.join(path.dirname(fromPath), `${path.basename(fromPath, ext)}-cut${Math.round(fraction * 100)}${ext}`);
  await fs.writeFile(file, data.subarray(0, Math.floor(data.length * fraction)));
  return file;
}

/** n pseudo-random bytes named .mp4; seeded, so every run probes the same bytes. */
export async function makeRandomBytes(dir: string, n: number, seed = 0x9e3779b9): Promise<string> {
  const data = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i += 1) {
    // xorshift32
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    data[i] = x & 0xff;
  }
  const file = path.join(dir, `random-${n}.mp4`);
  await fs.writeFile(file, data);
  return file;
}

/** Plain text named .mp4. */
export async function makeTextAsMp4(dir: string): Promise<string> {
  const file = path.join(dir, 'notes.mp4');
  await fs.writeFile(file, 'This is not a video.\n'.repeat(200));
  return file;
}

/** The first `seconds` of a video re-encoded to H.264 at `outPath` (container from its extension; default an mp4 in the temp dir). */
export async function cutClip(source: string, seconds: number, outPath?: string): Promise<string> {
  outPath ??= path.join(os.tmpdir(), `${path.basename(source, path.extname(source))}-${seconds}s-${process.pid}.mp4`);
  await ffmpeg(['-i', source, '-t', String(seconds), '-map', '0:v:0', '-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p', outPath]);
  return outPath;
}

/** A copy of `source` (streams copied, not re-encoded) whose container carries this creation_time tag (ISO 8601). */
export async function withCreationTime(source: string, creationTime: string, outPath: string): Promise<string> {
  await ffmpeg(['-i', source, '-map', '0', '-c', 'copy', '-metadata', `creation_time=${creationTime}`, outPath]);
  return outPath;
}

/** One frame of a video at `seconds`, as a JPEG (quality ~2 on ffmpeg's scale), read from ffmpeg's stdout. */
export async function frameJpegAt(source: string, seconds: number): Promise<Buffer> {
  const { stdout } = await execa('ffmpeg', ['-nostdin', '-hide_banner', '-loglevel', 'error', '-ss', String(seconds), '-i', source, '-frames:v', '1', '-q:v', '2', '-f', 'image2pipe', '-c:v', 'mjpeg', '-'], {
    encoding: 'buffer',
  });
  return Buffer.from(stdout);
}

/**
 * The first `seconds` of a video with its video stream copied, not re-encoded, so the codec stays the
 * source's (vtest.avi: msmpeg4v3 in AVI, which browsers cannot play). The container comes from outPath.
 */
export async function copyClip(source: string, seconds: number, outPath: string): Promise<string> {
  await ffmpeg(['-i', source, '-t', String(seconds), '-map', '0:v:0', '-c', 'copy', outPath]);
  return outPath;
}
// --- Hostile uploads (issue 9): files that name other files, lie about themselves, or expand. ---

/** An HLS playlist whose one segment is a path on the server: ffmpeg would open it and "upload" it. */
export async function makeHlsPlaylist(dir: string, segmentPath: string, name = 'playlist.mp4'): Promise<string> {
  const file = path.join(dir, name);
  await fs.writeFile(file, ['#EXTM3U', '#EXT-X-VERSION:3', '#EXT-X-TARGETDURATION:2', '#EXT-X-MEDIA-SEQUENCE:0', '#EXTINF:2.0,', segmentPath, '#EXT-X-ENDLIST', ''].join('\n'));
  return file;
}

/** A DASH manifest whose representation is a path on the server. */
export async function makeDashManifest(dir: string, mediaPath: string, name = 'manifest.mp4'): Promise<string> {
  const file = path.join(dir, name);
  await fs.writeFile(
    file,
    `<?xml version="1.0"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT2S" minBufferTime="PT1S" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011"><Period><AdaptationSet mimeType="video/mp4"><Representation id="1" bandwidth="1000"><BaseURL>${mediaPath}</BaseURL></Representation></AdaptationSet></Period></MPD>\n`,
  );
  return file;
}

/** An ffconcat list naming a path on the server. */
export async function makeConcatList(dir: string, mediaPath: string, name = 'list.mp4'): Promise<string> {
  const file = path.join(dir, name);
  await fs.writeFile(file, `ffconcat version 1.0\nfile '${mediaPath}'\n`);
  return file;
}

/**
 * A copy of a Matroska file whose Segment Duration says `claimedSeconds`: ffprobe reports that, while
 * the stream holds all its frames. (ffmpeg writes Duration as an 8-byte float of milliseconds.)
 */
export async function withLyingMatroskaDuration(mkvPath: string, claimedSeconds: number, outPath: string): Promise<string> {
  const data = await fs.readFile(mkvPath);
  const at = data.indexOf(Buffer.from([0x44, 0x89, 0x88]));
  if (at < 0) throw new Error(`no 8-byte Duration element in ${mkvPath}`);
  data.writeDoubleBE(claimedSeconds * 1000, at + 3);
  await fs.writeFile(outPath, data);
  return outPath;
}

/**
 * A raw H.264 stream that starts small and switches to larger pictures: ffprobe reports the first
 * size; the decoder meets the second only while extracting.
 */
export async function makeResolutionSwitch(dir: string, first: [number, number], then: [number, number], seconds = 1): Promise<string> {
  const parts = [];
  for (const [index, [width, height]] of [first, then].entries()) {
    const part = path.join(dir, `switch-part${index}.h264`);
    await ffmpeg(['-f', 'lavfi', '-i', `testsrc2=size=${width}x${height}:rate=10`, '-t', String(seconds), '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-f', 'h264', part]);
    parts.push(await fs.readFile(part));
    await fs.rm(part);
  }
  const file = path.join(dir, `switch-${first.join('x')}-to-${then.join('x')}.h264`);
  await fs.writeFile(file, Buffer.concat(parts));
  return file;
}

/**
 * One flat width x height H.264 frame in an mp4: tiny on disk (16000x16000 is about 750 KB), 384 MB
 * per decoded picture. Fed from raw zero bytes: lavfi's own sources need gigabytes at this size.
 */
export async function makeHugeFrameVideo(dir: string, width: number, height: number): Promise<string> {
  const file = path.join(dir, `huge-${width}x${height}.mp4`);
  const frameBytes = (width * height * 3) / 2;
  const encoder = execa('ffmpeg', ['-nostdin', '-hide_banner', '-loglevel', 'error', '-y', '-f', 'rawvideo', '-pix_fmt', 'yuv420p', '-s', `${width}x${height}`, '-r', '1', '-i', 'pipe:0', '-frames:v', '1', '-c:v', 'libx264', '-preset', 'ultrafast', '-threads', '1', file], { stdin: 'pipe' });
  const chunk = Buffer.alloc(1 << 20);
  for (let sent = 0; sent < frameBytes; sent += chunk.length) {
    const part = sent + chunk.length <= frameBytes ? chunk : chunk.subarray(0, frameBytes - sent);
    if (!encoder.stdin!.write(part)) await new Promise((resolve) => encoder.stdin!.once('drain', resolve));
  }
  encoder.stdin!.end();
  await encoder;
  return file;
}

/** An mp4 whose timestamps start `offsetSeconds` in (its stream's duration stays `seconds`). */
export async function makeOffsetClip(dir: string, offsetSeconds: number, seconds = 2): Promise<string> {
  const file = path.join(dir, `offset-${offsetSeconds}s.mp4`);
  await ffmpeg(['-f', 'lavfi', '-i', `testsrc2=size=160x120:rate=10`, '-t', String(seconds), '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-output_ts_offset', String(offsetSeconds), file]);
  return file;
}

/**
 * An ffmpeg for FFMPEG_PATH that runs the real one, except that a preview run (its output ends in preview.mp4)
 * first waits until the file `release` exists: a test sees a video extracted with its preview still being made.
 */
export async function ffmpegHoldingPreviews(dir: string, release: string): Promise<string> {
  const real = (await execa('sh', ['-c', 'command -v ffmpeg'])).stdout.trim();
  const wrapper = path.join(dir, 'ffmpeg-holding-previews');
  await fs.writeFile(wrapper, `#!/bin/sh\ncase "$*" in *preview.mp4*) while [ ! -e "${release}" ]; do sleep 0.05; done;; esac\nexec "${real}" "$@"\n`, { mode: 0o755 });
  return wrapper;
}
