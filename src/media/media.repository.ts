import fs from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { execa } from 'execa';
import { IDLE_SCHEDULER_COMMAND, type MediaBinaries } from './binaries.ts';
import { decodeCheckArgs, frameExtractionArgs, type FrameScale } from './extract-args.ts';
import { ACCEPTED_CONTAINERS, inputRefusal, withMemoryCeiling, type InputRefusal } from './input-policy.ts';
import { JpegSplitter } from './jpeg-splitter.ts';
import { previewArgs, type PreviewCodec } from './preview-args.ts';
import { ffprobeArgs, interpretProbe, isImageDemuxer, type MediaRefusalCode, type ProbeResult } from './probe.ts';
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
  /** A file can lie about its length: extraction stops with a MediaLimitError past these. */
  limits?: ExtractionLimits;
}

export interface PreviewEncodeOptions {
  codec: PreviewCodec;
  /** A preview that reaches this size is cut short by ffmpeg, so it is refused. */
  maxBytes: number;
  /** ffmpeg is stopped after this long. */
  timeoutMs: number;
  /**
   * Added to ffmpeg's nice value (0-19; 0 or none: as the worker runs): the preview is encoded while the
   * video's frames are detected, and the lower priority leaves the CPU to detection first.
   */
  niceness?: number;
  /**
   * idle: ffmpeg runs under Linux's SCHED_IDLE policy (util-linux's chrt), so it gets a core only when no other
   * thread wants one; a nice value alone still leaves it a share beside busy threads (0.31-0.69 of a core-second
   * in 15.7-17.5 s bench runs on 2 cores at nice 19, against 0.19-0.38 under SCHED_IDLE). normal or none: the ordinary scheduler.
   */
  cpuPolicy?: 'idle' | 'normal';
}

export interface ExtractionLimits {
  /** MAX_FRAMES: a further frame fails the extraction. */
  maxFrames: number;
  /** MAX_DURATION_S in milliseconds: a frame later than this (from the first) fails the extraction. */
  maxDurationMs: number;
}

export type DecodeCheck =
  | { ok: true }
  | { ok: false; code: Extract<MediaRefusalCode, 'truncated_video' | 'unreadable_video' | 'not_a_video' | 'unsupported_format' | 'too_many_pixels' | 'memory_limit'>; message: string };

export interface MediaTimeouts {
  probeMs: number;
  verifyMs: number;
  /** An extraction whose ffmpeg writes nothing (no frame, no log line) for this long is killed. */
  stallMs: number;
}

/** What every run may cost (see input-policy.ts); from the MAX_PIXELS and MEDIA_MEMORY_LIMIT_BYTES settings. */
export interface MediaCeilings {
  maxPixels?: number;
  /** RLIMIT_AS of each ffprobe/ffmpeg process; 0 or unset: none. */
  memoryLimitBytes?: number;
  /** util-linux's prlimit, which sets the ceiling; default "prlimit" on PATH. */
  prlimit?: string;
}

/** The video broke a limit while it was decoded (its header said otherwise). The message is for people. */
export class MediaLimitError extends Error {
  constructor(
    readonly code: 'too_many_frames' | 'video_too_long' | 'too_many_pixels' | 'memory_limit',
    message: string,
  ) {
    super(message);
    this.name = 'MediaLimitError';
  }
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
    private readonly ceilings: MediaCeilings = {},
  ) {
    this.timeouts = { probeMs: 30_000, verifyMs: 60_000, stallMs: 120_000, ...timeouts };
  }

  /**
   * Reads container and stream metadata; a file ffprobe cannot open at all is unreadable_video, one
   * whose container is not on the allowlist unsupported_format (the same answer whatever files it names).
   */
  async probe(path: string): Promise<ProbeResult> {
    const { file, args } = this.command(this.binaries.ffprobe, ffprobeArgs(path, this.ceilings.maxPixels));
    const result = await execa(file, args, {
      reject: false,
      stdin: 'ignore',
      timeout: this.timeouts.probeMs,
    });
    if (result.timedOut) return { ok: false, code: 'unreadable_video', message: `ffprobe did not finish within ${this.timeouts.probeMs} ms` };
    if (result.exitCode === undefined) throw new FfmpegError(`could not run ffprobe (${this.binaries.ffprobe}): ${result.shortMessage ?? ''}`);
    if (result.exitCode !== 0) {
      const refusal = inputRefusal(result.stderr);
      if (refusal) return { ok: false, ...this.refusalOf(refusal) };
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
    const { maxPixels } = this.ceilings;
    const checks: Array<Promise<DecodeRun>> = [this.decode('start', decodeCheckArgs({ input: path, maxFrames: 1, maxPixels }))];
    if (durationMs !== null && durationMs > 0) {
      checks.push(this.decode('last second', decodeCheckArgs({ input: path, fromMs: Math.max(0, durationMs - 1000), maxPixels })));
    }
    for (const run of await Promise.all(checks)) {
      const refusal = inputRefusal(run.errors.join('\n'));
      if (refusal) return { ok: false, ...this.refusalOf(refusal) };
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
    const { file, args } = this.command(
      this.binaries.ffmpeg,
      frameExtractionArgs({ input: path, fps: options.fps, jpegQuality: options.jpegQuality, scale: options.scale, maxPixels: this.ceilings.maxPixels }),
    );
    const subprocess = execa(file, args, {
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
    // Set when ffmpeg logs that the video broke a ceiling (a picture larger than announced, an
    // allocation over the memory limit): ffmpeg may carry on without those frames, but the video fails.
    let broken: MediaLimitError | undefined;
    const take = ({ frames, otherLines }: { frames: ShowinfoFrame[]; otherLines: string[] }) => {
      times.push(frames);
      tail.push(...otherLines.map((line) => withoutPath(line, path)));
      if (tail.length > STDERR_TAIL_LINES) tail.splice(0, tail.length - STDERR_TAIL_LINES);
      const refusal = broken ? undefined : inputRefusal(otherLines.join('\n'));
      if (refusal && (refusal.kind === 'picture_size' || refusal.kind === 'memory')) {
        const { code, message } = this.refusalOf(refusal);
        broken = new MediaLimitError(code as MediaLimitError['code'], message);
        kill();
      }
    };
    // A decode that stops making progress (a demuxer spinning on a crafted file, an allocation failure
    // ffmpeg does not recover from) would hold an extraction slot for ever.
    let stalled = false;
    let stallTimer: NodeJS.Timeout | undefined;
    const progress = () => {
      clearTimeout(stallTimer);
      stallTimer = setTimeout(() => {
        stalled = true;
        kill();
      }, this.timeouts.stallMs);
    };
    progress();
    stderr.setEncoding('utf8');
    stderr.on('data', (text: string) => {
      progress();
      take(parser.push(text));
    });
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
    const limits = options.limits;
    const failIfBroken = () => {
      if (broken) throw broken;
      if (stalled) throw new FfmpegError(`ffmpeg made no progress for ${this.timeouts.stallMs} ms after ${index} frame(s)`, tail.join('\n'));
    };
    try {
      for await (const chunk of stdout as AsyncIterable<Buffer>) {
        progress();
        for (const jpeg of splitter.push(chunk)) {
          const time = await times.next();
          failIfBroken();
          if (time === undefined) throw new FfmpegError(`ffmpeg wrote frame ${index} without a showinfo line`, tail.join('\n'));
          if (time.n !== index) throw new FfmpegError(`showinfo reported frame ${time.n} where frame ${index} was expected`);
          // NOPTS frames (rare, some raw streams) keep the previous time rather than jumping to 0.
          const ptsMs = time.ptsTime === null ? lastPtsMs : Math.max(0, Math.round(time.ptsTime * 1000 - options.startTimeMs));
          lastPtsMs = ptsMs;
          if (limits && index >= limits.maxFrames) {
            throw new MediaLimitError('too_many_frames', `the video yields more than ${limits.maxFrames} frames (MAX_FRAMES), more than its header announced`);
          }
          if (limits && ptsMs > limits.maxDurationMs) {
            throw new MediaLimitError('video_too_long', `the video runs past ${limits.maxDurationMs / 1000} s (MAX_DURATION_S), longer than its header announced`);
          }
          signal?.throwIfAborted();
          await onFrame({ index, ptsMs, jpeg });
          // The time spent storing the frame is ours, not ffmpeg's.
          progress();
          index += 1;
        }
      }
      signal?.throwIfAborted();
      const [result] = await Promise.all([subprocess, stderrDone]);
      failIfBroken();
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
      clearTimeout(stallTimer);
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
    const { file, args } = withCpuPriority(
      { niceness: options.niceness ?? 0, policy: options.cpuPolicy ?? 'normal' },
      this.command(this.binaries.ffmpeg, previewArgs({ input: path, output, codec: options.codec, maxBytes: options.maxBytes, maxPixels: this.ceilings.maxPixels })),
    );
    const result = await execa(file, args, { reject: false, stdin: 'ignore', timeout: options.timeoutMs });
    if (result.timedOut) throw new FfmpegError(`the preview took longer than ${options.timeoutMs} ms`);
    if (result.exitCode === undefined) throw new FfmpegError(`could not run ffmpeg (${this.binaries.ffmpeg}): ${result.shortMessage ?? ''}`);
    if (result.exitCode !== 0) {
      throw new FfmpegError(`ffmpeg exited with code ${result.exitCode} writing the preview: ${shortReason(result.stderr, path)}`, withoutPath(result.stderr, path));
    }
    const { size } = await fs.stat(output);
    if (size >= options.maxBytes) throw new FfmpegError(`the preview reached the size limit of ${options.maxBytes} bytes`);
    return { bytes: size };
  }

  /** A run of ffmpeg or ffprobe, under the memory ceiling when there is one. */
  private command(file: string, args: string[]): { file: string; args: string[] } {
    return withMemoryCeiling(this.ceilings.prlimit ?? 'prlimit', file, args, this.ceilings.memoryLimitBytes ?? 0);
  }

  /** A refusal by the input policy or a ceiling, with a message for the uploader (no server paths). */
  private refusalOf(refusal: InputRefusal): { code: Extract<MediaRefusalCode, 'not_a_video' | 'unsupported_format' | 'too_many_pixels' | 'memory_limit'>; message: string } {
    switch (refusal.kind) {
      case 'format':
        if (refusal.demuxer !== undefined && isImageDemuxer(refusal.demuxer)) {
          return { code: 'not_a_video', message: `the file is a still image (${refusal.demuxer}), not a video` };
        }
        return {
          code: 'unsupported_format',
          message: `the container format${refusal.demuxer ? ` (${refusal.demuxer})` : ''} is not accepted; accepted: ${ACCEPTED_CONTAINERS}`,
        };
      case 'protocol':
        return { code: 'unsupported_format', message: `the file refers to other resources (${refusal.protocol}), which are not read; upload a self-contained video` };
      case 'picture_size':
        return {
          code: 'too_many_pixels',
          message: `the video has ${refusal.width}x${refusal.height} pictures, more than the ${this.ceilings.maxPixels ?? 'allowed'} pixels allowed (MAX_PIXELS)`,
        };
      case 'memory':
        return { code: 'memory_limit', message: `decoding the video needs more memory than the ${this.ceilings.memoryLimitBytes ?? 0} bytes allowed (MEDIA_MEMORY_LIMIT_BYTES)` };
    }
  }

  private async decode(part: string, args: string[]): Promise<DecodeRun> {
    const { file, args: commandArgs } = this.command(this.binaries.ffmpeg, args);
    const result = await execa(file, commandArgs, { reject: false, stdin: 'ignore', timeout: this.timeouts.verifyMs });
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

/**
 * The command run through coreutils' `nice` and, for the idle policy, util-linux's `chrt --idle 0`, each of which
 * sets the priority and then execs the next: every thread ffmpeg starts inherits both (setpriority or
 * sched_setscheduler on the child's pid after spawning would only reach its first thread).
 */
export function withCpuPriority(
  { niceness, policy }: { niceness: number; policy: 'idle' | 'normal' },
  command: { file: string; args: string[] },
): { file: string; args: string[] } {
  if (!Number.isInteger(niceness) || niceness < 0 || niceness > 19) throw new RangeError(`niceness must be a whole number from 0 to 19, got ${niceness}`);
  const niced = niceness === 0 ? command : { file: 'nice', args: ['-n', String(niceness), command.file, ...command.args] };
  return policy === 'idle' ? { file: IDLE_SCHEDULER_COMMAND, args: ['--idle', '0', niced.file, ...niced.args] } : niced;
}
