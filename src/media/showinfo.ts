/** One frame as logged by ffmpeg's showinfo filter. */
export interface ShowinfoFrame {
  /** showinfo's own frame counter, from 0. */
  n: number;
  /** Seconds; null when the frame had no timestamp (showinfo prints NOPTS). */
  ptsTime: number | null;
}

// [Parsed_showinfo_2 @ 0x55d0c8a3c2c0] n:   0 pts:      0 pts_time:0       duration: ... pos: ...
const FRAME_LINE = /\[Parsed_showinfo_\d+ @ [^\]]*\] n:\s*(\d+)\s+pts:\s*\S+\s+pts_time:(\S+)/;
const SHOWINFO_LINE = /^\[Parsed_showinfo_\d+ @ /;

/** Parses one stderr line; undefined for anything but a showinfo frame line. */
export function parseShowinfoLine(line: string): ShowinfoFrame | undefined {
  const match = FRAME_LINE.exec(line);
  if (!match) return undefined;
  const ptsTime = Number(match[2]);
  return { n: Number(match[1]), ptsTime: Number.isFinite(ptsTime) ? ptsTime : null };
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

  push(chunk: string): ShowinfoOutput {
    const lines = (this.partial + chunk).split(/\r\n|\r|\n/);
    this.partial = lines.pop()!;
    return sortLines(lines);
  }

  /** The stream ended: a last line without a newline counts too. */
  end(): ShowinfoOutput {
    const last = this.partial;
    this.partial = '';
    return sortLines(last === '' ? [] : [last]);
  }
}

function sortLines(lines: string[]): ShowinfoOutput {
  const frames: ShowinfoFrame[] = [];
  const otherLines: string[] = [];
  for (const line of lines) {
    const frame = parseShowinfoLine(line);
    if (frame) frames.push(frame);
    else if (line.trim() !== '' && !SHOWINFO_LINE.test(line)) otherLines.push(line);
  }
  return { frames, otherLines };
}
