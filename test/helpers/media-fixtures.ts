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
