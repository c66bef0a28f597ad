import fs from 'node:fs/promises';
import { execa } from 'execa';

/** Where a binary came from: the FFMPEG_PATH/FFPROBE_PATH settings, the ffmpeg-static package, or PATH. */
export type BinarySource = 'config' | 'ffmpeg-static' | 'path';

export interface MediaBinaries {
  ffmpeg: string;
  ffprobe: string;
  source: { ffmpeg: BinarySource; ffprobe: BinarySource };
  /** First line of `-version`, e.g. "ffmpeg version 5.1.4"; logged at startup to explain odd behaviour. */
  versions: { ffmpeg: string; ffprobe: string };
}

export interface BinaryOptions {
  /** FFMPEG_PATH, passed in from Config. */
  ffmpegPath?: string | undefined;
  /** FFPROBE_PATH, passed in from Config. */
  ffprobePath?: string | undefined;
}

/** Seams for tests: where ffmpeg-static's path comes from and which command names PATH is searched for. */
export interface BinaryResolverDeps {
  loadFfmpegStatic?: () => Promise<string | null>;
  commands?: { ffmpeg: string; ffprobe: string };
}

export class MediaBinaryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MediaBinaryError';
  }
}

const INSTALL_HINT = 'install it (Debian/Ubuntu: apt-get install ffmpeg, which also provides ffprobe) or set FFMPEG_PATH and FFPROBE_PATH';

/**
 * Finds ffmpeg and ffprobe: explicit settings first, then ffmpeg-static (which ships no ffprobe, so
 * ffprobe always falls through), then PATH. Each choice is run once with -version, so a missing or
 * broken binary fails at startup with a hint instead of on the first upload.
 */
export async function resolveMediaBinaries(options: BinaryOptions, deps: BinaryResolverDeps = {}): Promise<MediaBinaries> {
  const commands = deps.commands ?? { ffmpeg: 'ffmpeg', ffprobe: 'ffprobe' };
  const loadStatic = deps.loadFfmpegStatic ?? loadFfmpegStatic;

  let ffmpeg: { path: string; source: BinarySource };
  if (options.ffmpegPath) ffmpeg = { path: options.ffmpegPath, source: 'config' };
  else {
    const staticPath = await loadStatic();
    ffmpeg = staticPath && (await isExecutable(staticPath)) ? { path: staticPath, source: 'ffmpeg-static' } : { path: commands.ffmpeg, source: 'path' };
  }
  const ffprobe: { path: string; source: BinarySource } = options.ffprobePath
    ? { path: options.ffprobePath, source: 'config' }
    : { path: commands.ffprobe, source: 'path' };

  const [ffmpegVersion, ffprobeVersion] = await Promise.all([
    checkBinary('ffmpeg', 'FFMPEG_PATH', ffmpeg.path, ffmpeg.source),
    checkBinary('ffprobe', 'FFPROBE_PATH', ffprobe.path, ffprobe.source),
  ]);
  return {
    ffmpeg: ffmpeg.path,
    ffprobe: ffprobe.path,
    source: { ffmpeg: ffmpeg.source, ffprobe: ffprobe.source },
    versions: { ffmpeg: ffmpegVersion, ffprobe: ffprobeVersion },
  };
}

/** ffmpeg-static is an optional dependency: absent, or present without its downloaded binary, means null. */
async function loadFfmpegStatic(): Promise<string | null> {
  // A variable specifier keeps TypeScript from requiring the package's types when it is not installed.
  const specifier = 'ffmpeg-static';
  try {
    const module = (await import(specifier)) as { default?: unknown };
    return typeof module.default === 'string' ? module.default : null;
  } catch {
    return null;
  }
}

async function isExecutable(file: string): Promise<boolean> {
  try {
    await fs.access(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function checkBinary(name: string, setting: string, file: string, source: BinarySource): Promise<string> {
  const result = await execa(file, ['-version'], { reject: false, timeout: 10_000, stdin: 'ignore' });
  if (result.exitCode === 0) return String(result.stdout).split('\n', 1)[0]!.trim();
  const where =
    source === 'config' ? `${setting}=${file}` : source === 'ffmpeg-static' ? `ffmpeg-static's binary ${file}` : `"${file}" on PATH`;
  const why = result.timedOut
    ? 'did not answer -version within 10 s'
    : result.exitCode === undefined
      ? 'was not found or could not be run'
      : `exited with status ${result.exitCode} for -version`;
  throw new MediaBinaryError(`${name} is required: ${where} ${why}; ${INSTALL_HINT}`);
}

/**
 * util-linux's prlimit, which puts MEDIA_MEMORY_LIMIT_BYTES on every ffprobe/ffmpeg run. Checked at
 * start-up like ffmpeg, so a host without it fails with a hint instead of refusing every upload.
 */
export async function resolvePrlimit(command = 'prlimit'): Promise<string> {
  const result = await execa(command, ['--version'], { reject: false, timeout: 10_000, stdin: 'ignore' });
  if (result.exitCode === 0) return command;
  throw new MediaBinaryError(
    `prlimit is required to cap the memory of ffmpeg runs (MEDIA_MEMORY_LIMIT_BYTES): "${command}" on PATH ${result.exitCode === undefined ? 'was not found' : `exited with status ${result.exitCode}`}; install util-linux, or set MEDIA_MEMORY_LIMIT_BYTES=0 to run without the ceiling`,
  );
}

/** util-linux's chrt, which runs the preview's ffmpeg under SCHED_IDLE (PREVIEW_CPU_POLICY=idle). */
export const IDLE_SCHEDULER_COMMAND = 'chrt';

/**
 * Checks that a command can be run under SCHED_IDLE (util-linux's chrt, and a kernel and seccomp profile that
 * allow the policy), for PREVIEW_CPU_POLICY=idle: a worker without it fails at start, not at its first preview.
 */
export async function checkIdleScheduler(command = IDLE_SCHEDULER_COMMAND): Promise<void> {
  const result = await execa(command, ['--idle', '0', 'true'], { reject: false, timeout: 10_000, stdin: 'ignore', stderr: 'pipe' });
  if (result.exitCode === 0) return;
  const why = result.exitCode === undefined ? 'was not found' : `exited with status ${result.exitCode}${result.stderr ? ` (${result.stderr.trim().split('\n')[0]})` : ''}`;
  throw new MediaBinaryError(
    `PREVIEW_CPU_POLICY=idle runs the preview's ffmpeg under SCHED_IDLE with chrt: "${command} --idle 0" ${why}; install util-linux, or set PREVIEW_CPU_POLICY=normal`,
  );
}
