import assert from 'node:assert/strict';
import { parseShowinfoLine, ShowinfoParser, type ShowinfoFrame } from '../../../src/media/showinfo.ts';

// ffmpeg 5.1 stderr with showinfo=checksum=0 last in the chain, as the extraction arguments produce it.
const STDERR = [
  "Input #0, avi, from 'file:/data/vtest.avi':",
  '  Duration: 00:01:19.50, start: 0.000000, bitrate: 818 kb/s',
  '[Parsed_showinfo_3 @ 0x56229bc20f80] config in time_base: 1/5, frame_rate: 5/1',
  '[Parsed_showinfo_3 @ 0x56229bc20f80] config out time_base: 0/0, frame_rate: 0/0',
  'Output #0, image2pipe, to \'pipe:1\':',
  '[Parsed_showinfo_3 @ 0x56229bc20f80] n:   0 pts:      0 pts_time:0       pos:     4116 fmt:yuv420p sar:0/1 s:768x576 i:P iskey:1 type:I ',
  '[Parsed_showinfo_3 @ 0x56229bc20f80] color_range:pc color_space:unknown color_primaries:unknown color_trc:unknown',
  '[Parsed_showinfo_3 @ 0x56229bc20f80] n:   1 pts:      1 pts_time:0.2     pos:    88336 fmt:yuv420p sar:0/1 s:768x576 i:P iskey:0 type:P ',
  '[Parsed_showinfo_3 @ 0x56229bc20f80]   side data - User Data Unregistered:',
  '[h264 @ 0x5622] Invalid NAL unit size (2863 > 883).',
  '[Parsed_showinfo_3 @ 0x56229bc20f80] n:   2 pts:      2 pts_time:0.4     pos:   180902 fmt:yuv420p sar:0/1 s:768x576 i:P iskey:0 type:P ',
  '[Parsed_showinfo_1 @ 0x55e0] n:1234 pts:1234567 pts_time:123.4567 duration:    512 duration_time:0.05 pos:-1 fmt:yuvj420p',
  '',
].join('\n');
const EXPECTED: ShowinfoFrame[] = [
  { n: 0, ptsTime: 0 },
  { n: 1, ptsTime: 0.2 },
  { n: 2, ptsTime: 0.4 },
  { n: 1234, ptsTime: 123.4567 },
];

function parseInChunks(text: string, cuts: number[]) {
  const parser = new ShowinfoParser();
  const frames: ShowinfoFrame[] = [];
  const other: string[] = [];
  let from = 0;
  for (const cut of [...cuts, text.length]) {
    const out = parser.push(text.slice(from, cut));
    frames.push(...out.frames);
    other.push(...out.otherLines);
    from = cut;
  }
  const last = parser.end();
  return { frames: [...frames, ...last.frames], other: [...other, ...last.otherLines] };
}

describe('showinfo parsing', () => {
  it('reads n and pts_time from frame lines only', () => {
    assert.deepEqual(parseShowinfoLine('[Parsed_showinfo_1 @ 0x5557] n:  12 pts:  24576 pts_time:2.4     pos: 1 fmt:yuv420p'), { n: 12, ptsTime: 2.4 });
    assert.deepEqual(parseShowinfoLine('[Parsed_showinfo_1 @ 0x5557] n:   3 pts:NOPTS pts_time:NOPTS pos: -1'), { n: 3, ptsTime: null });
    assert.deepEqual(parseShowinfoLine('[Parsed_showinfo_0 @ 0x1] n:   0 pts:   -512 pts_time:-0.05    pos: 48'), { n: 0, ptsTime: -0.05 });
    assert.equal(parseShowinfoLine('[Parsed_showinfo_1 @ 0x5557] config in time_base: 1/5, frame_rate: 5/1'), undefined);
    assert.equal(parseShowinfoLine('[Parsed_showinfo_1 @ 0x5557] color_range:pc color_space:unknown'), undefined);
    assert.equal(parseShowinfoLine('frame=   10 fps=0.0 q=3.0 size=N/A time=00:00:01.00'), undefined);
  });

  it("computes times from pts and the instance's time base: pts_time has 6 significant digits, too few for a start 2,200,000 s in", () => {
    const text = [
      '[Parsed_showinfo_3 @ 0x55b6e51d6f80] config in time_base: 1/5, frame_rate: 5/1',
      '[Parsed_showinfo_3 @ 0x55b6e51d6f80] n:   0 pts:11000000 pts_time:2.2e+06 pos:       48 fmt:yuv420p sar:1/1 s:160x120 i:P iskey:1 type:I ',
      '[Parsed_showinfo_3 @ 0x55b6e51d6f80] n:   1 pts:11000001 pts_time:2.2e+06 pos:     1234 fmt:yuv420p sar:1/1 s:160x120 i:P iskey:0 type:P ',
      // Another instance (a reinit) without its own time base line yet: pts_time, as printed.
      '[Parsed_showinfo_3 @ 0x66] n:   0 pts:      7 pts_time:1.4 pos: 1',
      '',
    ].join('\n');
    assert.deepEqual(parseInChunks(text, [30, 200]).frames, [
      { n: 0, ptsTime: 2_200_000 },
      { n: 1, ptsTime: 2_200_000.2 },
      { n: 0, ptsTime: 1.4 },
    ]);
    assert.deepEqual(parseShowinfoLine('[Parsed_showinfo_1 @ 0x1] n:   3 pts:   1234 pts_time:0.0964063', [1, 12800]), { n: 3, ptsTime: 1234 / 12800 });
  });

  it('sorts stderr into frames and other lines (showinfo detail lines are dropped)', () => {
    const { frames, other } = parseInChunks(STDERR, []);
    assert.deepEqual(frames, EXPECTED);
    assert.deepEqual(other, [
      "Input #0, avi, from 'file:/data/vtest.avi':",
      '  Duration: 00:01:19.50, start: 0.000000, bitrate: 818 kb/s',
      "Output #0, image2pipe, to 'pipe:1':",
      '[h264 @ 0x5622] Invalid NAL unit size (2863 > 883).',
    ]);
  });

  it('gives the same result whatever the chunk boundaries', () => {
    const whole = parseInChunks(STDERR, []);
    for (let cut = 0; cut <= STDERR.length; cut += 1) {
      assert.deepEqual(parseInChunks(STDERR, [cut]), whole, `split at ${cut}`);
    }
    const oneCharAtATime = [...STDERR].map((_, i) => i + 1);
    assert.deepEqual(parseInChunks(STDERR, oneCharAtATime), whole);
  });

  it('handles CRLF and a last line without a newline', () => {
    const text = STDERR.trimEnd().split('\n').join('\r\n');
    for (let cut = 0; cut <= text.length; cut += 7) {
      assert.deepEqual(parseInChunks(text, [cut]).frames, EXPECTED, `split at ${cut}`);
    }
  });
});
