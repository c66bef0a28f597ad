/** One frame as logged by ffmpeg's showinfo filter. */
export interface ShowinfoFrame {
  /** showinfo's own frame counter, from 0. */
  n: number;
  /** Seconds; null when the frame had no timestamp (showinfo prints NOPTS). */
  ptsTime: number | null;
}

// [Parsed_showinfo_2 @ 0x55d0c8a3c2c0] n:   0 pts:      0 pts_time:0       duration: ... pos: ...
const FRAME_LINE = /\[Parsed_showinfo_\d+ @ [^\]]*\] n:\s*(\d+)\s+pts:\s*(\S+)\s+pts_time:(\S+)/;
// [Parsed_showinfo_3 @ 0x55b6e51d6f80] config in time_base: 1/5, frame_rate: 5/1
const TIME_BASE_LINE = /\[Parsed_showinfo_\d+ @ [^\]]*\] config in time_base: (\d+)\/(\d+)/;
// The filter instance a line comes from: "[Parsed_showinfo_3 @ 0x55b6e51d6f80]".
const INSTANCE = /^\[(Parsed_showinfo_\d+ @ [^\]]*)\]/;
const SHOWINFO_LINE = /^\[Parsed_showinfo_\d+ @ /;

/**
 * Parses one stderr line; undefined for anything but a showinfo frame line. With the filter's input
 * time base the time is pts x time base, exact: pts_time is printed with 6 significant digits only, so
 * a video starting 2,200,000 s in would give every frame the same "2.2e+06".
 */
export function parseShowinfoLine(line: string, timeBase?: readonly [number, number]): ShowinfoFrame | undefined {
  const match = FRAME_LINE.exec(line);
  if (!match) return undefined;
  const n = Number(match[1]);
  const pts = Number(match[2]);
  if (timeBase && timeBase[1] > 0 && Number.isSafeInteger(pts)) return { n, ptsTime: (pts * timeBase[0]) / timeBase[1] };
  const ptsTime = Number(match[3]);
  return { n, ptsTime: Number.isFinite(ptsTime) ? ptsTime : null };
}

/** The time base showinfo announces when its input is configured (again after a reinit). */
export function parseShowinfoTimeBase(line: string): [number, number] | undefined {
  const match = TIME_BASE_LINE.exec(line);
  return match ? [Number(match[1]), Number(match[2])] : undefined;
}

export interface ShowinfoOutput {
  frames: ShowinfoFrame[];
  /** Complete stderr lines that are not showinfo's (errors, warnings), for error messages. */
  otherLines: string[];
}

/**
 * Reads ffmpeg's stderr as it arrives, in chunks that may end mid-line: keeps the partial last line
 * until its newline comes, and sorts complete lines into showinfo frames and everything else.
 * Takes strings, so the caller decodes UTF-8 across chunks (stream.setEncoding).
 */
export class ShowinfoParser {
  private partial = '';
  /** Input time base of each showinfo instance seen (a filter graph reinit brings a new one). */
  private readonly timeBases = new Map<string, [number, number]>();

  push(chunk: string): ShowinfoOutput {
    const lines = (this.partial + chunk).split(/\r\n|\r|\n/);
    this.partial = lines.pop()!;
    return this.sortLines(lines);
  }

  /** The stream ended: a last line without a newline counts too. */
  end(): ShowinfoOutput {
    const last = this.partial;
    this.partial = '';
    return this.sortLines(last === '' ? [] : [last]);
  }

  private sortLines(lines: string[]): ShowinfoOutput {
    const frames: ShowinfoFrame[] = [];
    const otherLines: string[] = [];
    for (const line of lines) {
      const instance = INSTANCE.exec(line)?.[1];
      const frame = parseShowinfoLine(line, instance === undefined ? undefined : this.timeBases.get(instance));
      if (frame) frames.push(frame);
      else if (line.trim() !== '' && !SHOWINFO_LINE.test(line)) otherLines.push(line);
      else {
        const timeBase = parseShowinfoTimeBase(line);
        if (timeBase && instance !== undefined) this.timeBases.set(instance, timeBase);
      }
    }
    return { frames, otherLines };
  }
}
