import fs from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { execa } from 'execa';
import type { MediaBinaries } from './binaries.ts';
import { decodeCheckArgs, frameExtractionArgs, type FrameScale } from './extract-args.ts';
import { JpegSplitter } from './jpeg-splitter.ts';
import { previewArgs, type PreviewCodec } from './preview-args.ts';
import { ffprobeArgs, interpretProbe, type MediaRefusalCode, type ProbeResult } from './probe.ts';
import { ShowinfoParser, type ShowinfoFrame } from './showinfo.ts';

export interface ExtractedFrame {
  /** Position among the extracted frames, from 0. */
  index: number;
  /** Milliseconds from the video's first frame. */
  ptsMs: number;
  jpeg: Buffer;
}

export interface ExtractOptions {
  /** Frames per second to sample; null for every frame. */
  fps: number | null;
  jpegQuality: number;
  /** The probed startTimeMs, so that frame timestamps start at 0. */
  startTimeMs: number;
  /** Store frames scaled (see frameExtractionArgs). */
  scale?: FrameScale;
}

export interface PreviewEncodeOptions {
  codec: PreviewCodec;
  /** A preview that reaches this size is cut short by ffmpeg, so it is refused. */
  maxBytes: number;
  /** ffmpeg is stopped after this long. */
  timeoutMs: number;
}

export type DecodeCheck = { ok: true } | { ok: false; code: Extract<MediaRefusalCode, 'truncated_video' | 'unreadable_video'>; message: string };

export interface MediaTimeouts {
  probeMs: number;
  verifyMs: number;
}

/** ffmpeg failed or misbehaved. stderrTail: its last stderr lines (showinfo's removed, server paths replaced). */
export class FfmpegError extends Error {
  constructor(
    message: string,
    readonly stderrTail = '',
  ) {
    super(message);
    this.name = 'FfmpegError';
  }
}

const STDERR_TAIL_LINES = 20;
// What ffmpeg says when data runs out or is damaged. Deliberately narrow: some valid files log
// harmless decoder complaints (e.g. H.264 "co located POCs unavailable") after a seek.
const DAMAGE = /partial file|invalid data|corrupt|truncat|error while decoding|end of file|ended prematurely/i;
const NO_DECODER = /decoder .*not found|unsupported codec|could not find codec/i;

/**
 * The only place that runs ffmpeg and ffprobe. Arguments come from the pure builders next to it;
 * this class spawns, streams and turns exit codes and stderr into results or errors.
 */
export class MediaRepository {
  private readonly timeouts: MediaTimeouts;

  constructor(
    private readonly binaries: Pick<MediaBinaries, 'ffmpeg' | 'ffprobe'>,
    timeouts: Partial<MediaTimeouts> = {},
  ) {
    this.timeouts = { probeMs: 30_000, verifyMs: 60_000, ...timeouts };
  }

  /** Reads container and stream metadata; a file ffprobe cannot open at all is unreadable_video. */
  async probe(path: string): Promise<ProbeResult> {
    const result = await execa(this.binaries.ffprobe, ffprobeArgs(path), {
      reject: false,
      stdin: 'ignore',
      timeout: this.timeouts.probeMs,
    });
    if (result.timedOut) return { ok: false, code: 'unreadable_video', message: `ffprobe did not finish within ${this.timeouts.probeMs} ms` };
    if (result.exitCode === undefined) throw new FfmpegError(`could not run ffprobe (${this.binaries.ffprobe}): ${result.shortMessage ?? ''}`);
    if (result.exitCode !== 0) {
      return { ok: false, code: 'unreadable_video', message: `the file cannot be read as a video (${shortReason(result.stderr, path)})` };
    }
    let json: unknown;
    try {
      json = JSON.parse(result.stdout);
    } catch {
      return { ok: false, code: 'unreadable_video', message: 'ffprobe output was not JSON' };
    }
    return interpretProbe(json);
  }

  /**
   * Cheap integrity check for files whose header is fine but whose data is cut (an upload that
   * stopped early, a faststart mp4 missing the end of mdat): decodes the first frame and the last
   * second only, in parallel, instead of the whole file. Without a known duration only the start is checked.
   */
  async verifyDecodable(path: string, durationMs: number | null): Promise<DecodeCheck> {
    const checks: Array<Promise<DecodeRun>> = [this.decode('start', decodeCheckArgs({ input: path, maxFrames: 1 }))];
    if (durationMs !== null && durationMs > 0) {
      checks.push(this.decode('last second', decodeCheckArgs({ input: path, fromMs: Math.max(0, durationMs - 1000) })));
    }
    for (const run of await Promise.all(checks)) {
      // Damage lines first: they explain the refusal better than the decoder noise before them.
      const errors = [...run.errors.filter((line) => DAMAGE.test(line)), ...run.errors.filter((line) => !DAMAGE.test(line))];
      const reason = errors.length > 0 ? ` (${shortReason(errors.join('\n'), path)})` : '';
      if (run.timedOut) return { ok: false, code: 'unreadable_video', message: `decoding the ${run.part} of the video took longer than ${this.timeouts.verifyMs} ms` };
      if (NO_DECODER.test(run.errors.join('\n'))) return { ok: false, code: 'unreadable_video', message: `the video codec cannot be decoded${reason}` };
      if (run.exitCode !== 0 || run.frames === 0 || run.errors.some((line) => DAMAGE.test(line))) {
        return { ok: false, code: 'truncated_video', message: `the video is cut short or damaged: its ${run.part} does not decode${reason}` };
      }
    }
    return { ok: true };
  }

  /**
   * Streams a video's frames as JPEGs at source resolution to onFrame, one at a time: stdout is not
   * read while onFrame's promise is pending, so ffmpeg blocks on a full pipe instead of the video
   * piling up in memory. ffmpeg is killed when onFrame throws or the signal aborts.
   */
  async extractFrames(
    path: string,
    options: ExtractOptions,
    onFrame: (frame: ExtractedFrame) => Promise<void>,
    signal?: AbortSignal,
  ): Promise<{ frames: number }> {
    signal?.throwIfAborted();
    const args = frameExtractionArgs({ input: path, fps: options.fps, jpegQuality: options.jpegQuality, scale: options.scale });
    const subprocess = execa(this.binaries.ffmpeg, args, {
      reject: false,
      buffer: false,
      encoding: 'buffer',
      stdin: 'ignore',
      stdout: 'pipe',
      stderr: 'pipe',
    });
    const stdout = subprocess.stdout as Readable;
    const stderr = subprocess.stderr as Readable;
    const times = new FrameTimes();
    const tail: string[] = [];
    const parser = new ShowinfoParser();
    const take = ({ frames, otherLines }: { frames: ShowinfoFrame[]; otherLines: string[] }) => {
      times.push(frames);
      tail.push(...otherLines.map((line) => withoutPath(line, path)));
      if (tail.length > STDERR_TAIL_LINES) tail.splice(0, tail.length - STDERR_TAIL_LINES);
    };
    stderr.setEncoding('utf8');
    stderr.on('data', (text: string) => take(parser.push(text)));
    const stderrDone = new Promise<void>((resolve) => {
      stderr.once('close', () => {
        take(parser.end());
        times.close();
        resolve();
      });
    });
    const kill = () => subprocess.kill('SIGKILL');
    signal?.addEventListener('abort', kill, { once: true });

    const splitter = new JpegSplitter();
    let index = 0;
    let lastPtsMs = 0;
    try {
      for await (const chunk of stdout as AsyncIterable<Buffer>) {
        for (const jpeg of splitter.push(chunk)) {
          const time = await times.next();
          if (time === undefined) throw new FfmpegError(`ffmpeg wrote frame ${index} without a showinfo line`, tail.join('\n'));
          if (time.n !== index) throw new FfmpegError(`showinfo reported frame ${time.n} where frame ${index} was expected`);
          // NOPTS frames (rare, some raw streams) keep the previous time rather than jumping to 0.
          const ptsMs = time.ptsTime === null ? lastPtsMs : Math.max(0, Math.round(time.ptsTime * 1000 - options.startTimeMs));
          lastPtsMs = ptsMs;
          signal?.throwIfAborted();
          await onFrame({ index, ptsMs, jpeg });
          index += 1;
        }
      }
      signal?.throwIfAborted();
      const [result] = await Promise.all([subprocess, stderrDone]);
      if (result.exitCode !== 0) {
        const how = result.exitCode === undefined ? (result.signal ? `was killed by ${result.signal}` : 'could not be started') : `exited with code ${result.exitCode}`;
        // The message may reach API clients (the video's error), so it gets the short, path-free reason.
        const reason = tail.length > 0 ? shortReason(tail.slice(-5).join('\n'), path) : (result.shortMessage ?? 'no output');
        throw new FfmpegError(`ffmpeg ${how} after ${index} frame(s): ${reason}`, tail.join('\n'));
      }
      splitter.end();
      const extra = times.pending();
      if (extra > 0) throw new FfmpegError(`ffmpeg reported ${extra} frame(s) in showinfo that it did not write`);
      return { frames: index };
    } catch (error) {
      kill();
      await subprocess;
      if (signal?.aborted) throw signal.reason;
      throw error;
    } finally {
      signal?.removeEventListener('abort', kill);
    }
  }

  /**
   * Writes a browser-playable preview of the video at path into output (a local file that must not
   * exist yet); resolves with its size. Throws FfmpegError when ffmpeg fails, runs past timeoutMs, or
   * reaches maxBytes (ffmpeg then stops writing, so the preview would end early). The caller removes
   * output in every case.
   */
  async encodePreview(path: string, output: string, options: PreviewEncodeOptions): Promise<{ bytes: number }> {
    const args = previewArgs({ input: path, output, codec: options.codec, maxBytes: options.maxBytes });
    const result = await execa(this.binaries.ffmpeg, args, { reject: false, stdin: 'ignore', timeout: options.timeoutMs });
    if (result.timedOut) throw new FfmpegError(`the preview took longer than ${options.timeoutMs} ms`);
    if (result.exitCode === undefined) throw new FfmpegError(`could not run ffmpeg (${this.binaries.ffmpeg}): ${result.shortMessage ?? ''}`);
    if (result.exitCode !== 0) {
      throw new FfmpegError(`ffmpeg exited with code ${result.exitCode} writing the preview: ${shortReason(result.stderr, path)}`, withoutPath(result.stderr, path));
    }
    const { size } = await fs.stat(output);
    if (size >= options.maxBytes) throw new FfmpegError(`the preview reached the size limit of ${options.maxBytes} bytes`);
    return { bytes: size };
  }

  private async decode(part: string, args: string[]): Promise<DecodeRun> {
    const result = await execa(this.binaries.ffmpeg, args, { reject: false, stdin: 'ignore', timeout: this.timeouts.verifyMs });
    if (result.exitCode === undefined && !result.timedOut) throw new FfmpegError(`could not run ffmpeg (${this.binaries.ffmpeg}): ${result.shortMessage ?? ''}`);
    const frames = result.stdout.split('\n').filter((line) => line !== '' && !line.startsWith('#')).length;
    const errors = result.stderr.split('\n').filter((line) => line.trim() !== '');
    return { part, exitCode: result.exitCode, timedOut: result.timedOut, frames, errors };
  }
}

interface DecodeRun {
  part: string;
  exitCode: number | undefined;
  timedOut: boolean;
  frames: number;
  errors: string[];
}

/**
 * showinfo timestamps in arrival order. stderr and stdout are separate pipes, so a frame's JPEG can
 * reach us before its showinfo line even though ffmpeg logs first; next() waits for the line.
 */
class FrameTimes {
  private readonly items: ShowinfoFrame[] = [];
  private head = 0;
  private ended = false;
  private wake: (() => void) | undefined;

  push(frames: ShowinfoFrame[]): void {
    if (frames.length === 0) return;
    this.items.push(...frames);
    this.notify();
  }

  close(): void {
    this.ended = true;
    this.notify();
  }

  /** The next frame's time, or undefined once stderr has ended without one. */
  async next(): Promise<ShowinfoFrame | undefined> {
    while (this.head === this.items.length && !this.ended) await new Promise<void>((resolve) => (this.wake = resolve));
    if (this.head === this.items.length) return undefined;
    const item = this.items[this.head]!;
    this.head += 1;
    // Drop consumed entries now and then so a long video does not keep every timestamp.
    if (this.head > 1024) {
      this.items.splice(0, this.head);
      this.head = 0;
    }
    return item;
  }

  pending(): number {
    return this.items.length - this.head;
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}

/**
 * A short reason for people from ffmpeg/ffprobe stderr: "[mov,mp4 @ 0x..] moov atom not found" and
 * "file:/srv/x: Invalid data found..." become "moov atom not found; Invalid data found...". Server
 * paths are removed because the message reaches API clients.
 */
export function shortReason(stderr: string, path: string): string {
  const reasons = new Set<string>();
  for (const raw of stderr.split(/\r?\n/)) {
    const line = withoutPath(raw.replace(/^(\[[^\]]*\]\s*)+/, ''), path)
      .replace(/^the file:\s*/, '')
      .trim();
    if (line !== '') reasons.add(line);
  }
  const text = [...reasons].slice(0, 3).join('; ');
  return text === '' ? 'no reason given' : text.length > 200 ? `${text.slice(0, 197)}...` : text;
}

function withoutPath(line: string, path: string): string {
  return line.split(`file:${path}`).join('the file').split(path).join('the file');
}
