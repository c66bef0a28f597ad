import assert from 'node:assert/strict';
import { interpretProbe, parseRational, type ProbeResult } from '../../../src/media/probe.ts';

// Trimmed from real ffprobe 5.1 output (-print_format json -show_format -show_streams).
function h264Stream(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    index: 0,
    codec_name: 'h264',
    codec_type: 'video',
    width: 1920,
    height: 1080,
    pix_fmt: 'yuv420p',
    r_frame_rate: '30000/1001',
    avg_frame_rate: '30000/1001',
    time_base: '1/30000',
    start_pts: 0,
    start_time: '0.000000',
    duration_ts: 300300,
    duration: '10.010000',
    nb_frames: '300',
    disposition: { default: 1, attached_pic: 0, timed_thumbnails: 0 },
    tags: { language: 'und', handler_name: 'VideoHandler' },
    ...overrides,
  };
}
const aacStream = { index: 1, codec_name: 'aac', codec_type: 'audio', sample_rate: '48000', channels: 2, duration: '10.026667', disposition: { default: 1 } };
function mp4Format(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    filename: '/srv/storage/videos/abc/source',
    nb_streams: 2,
    format_name: 'mov,mp4,m4a,3gp,3g2,mj2',
    start_time: '0.000000',
    duration: '10.026667',
    size: '5242880',
    bit_rate: '4183460',
    probe_score: 100,
    tags: { major_brand: 'isom', encoder: 'Lavf59.27.100' },
    ...overrides,
  };
}

function ok(result: ProbeResult) {
  assert.ok(result.ok, `expected ok, got ${JSON.stringify(result)}`);
  return result;
}
function refusal(result: ProbeResult, code: string) {
  assert.ok(!result.ok, `expected ${code}, got ok`);
  assert.equal(result.code, code, result.message);
  return result;
}

describe('interpretProbe', () => {
  it('reads an mp4 with video and audio', () => {
    const result = ok(interpretProbe({ streams: [h264Stream(), aacStream], format: mp4Format() }));
    assert.deepEqual(result.video, {
      durationMs: 10_010,
      fps: 30000 / 1001,
      width: 1920,
      height: 1080,
      codec: 'h264',
      startTimeMs: 0,
      creationTime: null,
      frameCountEstimate: 300,
    });
    assert.equal(result.raw.stream.codec_name, 'h264');
    assert.equal(result.raw.format.format_name, 'mov,mp4,m4a,3gp,3g2,mj2');
    assert.ok(!('filename' in result.raw.format), 'the server path is not kept');
  });

  it('picks the first real video stream, after audio and cover art', () => {
    const cover = h264Stream({ index: 1, codec_name: 'mjpeg', width: 600, height: 600, disposition: { attached_pic: 1 } });
    const video = h264Stream({ index: 2, width: 640, height: 360 });
    const result = ok(interpretProbe({ streams: [aacStream, cover, video], format: mp4Format() }));
    assert.equal(result.video.width, 640);
  });

  it('parses frame rates: NTSC rationals, whole numbers, and falls back to r_frame_rate when avg is 0/0', () => {
    assert.equal(parseRational('30000/1001'), 29.97002997002997);
    assert.equal(parseRational('25/1'), 25);
    assert.equal(parseRational('12.5'), 12.5);
    assert.equal(parseRational('0/0'), null);
    assert.equal(parseRational('N/A'), null);
    assert.equal(parseRational(undefined), null);
    const fallback = ok(interpretProbe({ streams: [h264Stream({ avg_frame_rate: '0/0', r_frame_rate: '24000/1001' })], format: mp4Format() }));
    assert.equal(fallback.video.fps, 24000 / 1001);
    const none = ok(interpretProbe({ streams: [h264Stream({ avg_frame_rate: '0/0', r_frame_rate: '0/0', nb_frames: undefined })], format: mp4Format() }));
    assert.equal(none.video.fps, null);
    assert.equal(none.video.frameCountEstimate, null);
  });

  it('takes creation_time from the container, else from the video stream; epoch placeholders mean unknown', () => {
    const fromFormat = ok(interpretProbe({
      streams: [h264Stream({ tags: { creation_time: '2020-01-01T00:00:00.000000Z' } })],
      format: mp4Format({ tags: { creation_time: '2024-05-06T07:08:09.000000Z' } }),
    }));
    assert.deepEqual(fromFormat.video.creationTime, new Date('2024-05-06T07:08:09.000Z'));
    const fromStream = ok(interpretProbe({ streams: [h264Stream({ tags: { creation_time: '2023-02-03T04:05:06.500000Z' } })], format: mp4Format() }));
    assert.deepEqual(fromStream.video.creationTime, new Date('2023-02-03T04:05:06.500Z'));
    const epoch = ok(interpretProbe({ streams: [h264Stream()], format: mp4Format({ tags: { creation_time: '1970-01-01T00:00:00.000000Z' } }) }));
    assert.equal(epoch.video.creationTime, null);
    const junk = ok(interpretProbe({ streams: [h264Stream()], format: mp4Format({ tags: { creation_time: 'yesterday' } }) }));
    assert.equal(junk.video.creationTime, null);
  });

  it('reports the video start time (MPEG-TS starts at 1.4 s) and falls back to the container duration', () => {
    const ts = ok(interpretProbe({
      streams: [h264Stream({ start_time: '1.400000', duration: undefined, nb_frames: undefined, avg_frame_rate: '25/1' })],
      format: mp4Format({ format_name: 'mpegts', start_time: '1.400000', duration: '8.000000' }),
    }));
    assert.equal(ts.video.startTimeMs, 1400);
    assert.equal(ts.video.durationMs, 8000);
    assert.equal(ts.video.frameCountEstimate, 200);
    const odd = ok(interpretProbe({ streams: [h264Stream({ start_time: '0.066667' })], format: mp4Format() }));
    assert.equal(odd.video.startTimeMs, 66.667);
  });

  it('accepts a raw elementary stream with no duration at all', () => {
    const raw = ok(interpretProbe({
      streams: [h264Stream({ duration: undefined, nb_frames: undefined, start_time: 'N/A' })],
      format: { format_name: 'h264', duration: 'N/A', start_time: 'N/A' },
    }));
    assert.equal(raw.video.durationMs, null);
    assert.equal(raw.video.startTimeMs, 0);
  });

  it('refuses audio-only files, text, and files with no streams', () => {
    assert.match(refusal(interpretProbe({ streams: [aacStream], format: mp4Format() }), 'no_video_stream').message, /only audio/);
    const subtitles = { index: 0, codec_name: 'subrip', codec_type: 'subtitle' };
    refusal(interpretProbe({ streams: [subtitles], format: { format_name: 'srt', duration: '60.0' } }), 'no_video_stream');
    const mp3WithCover = [{ ...aacStream, codec_name: 'mp3' }, h264Stream({ codec_name: 'mjpeg', disposition: { attached_pic: 1 } })];
    refusal(interpretProbe({ streams: mp3WithCover, format: { format_name: 'mp3', duration: '180.0' } }), 'no_video_stream');
    refusal(interpretProbe({ streams: [], format: { format_name: 'mov,mp4,m4a,3gp,3g2,mj2' } }), 'no_video_stream');
  });

  it('refuses still images: image demuxers, and a single picture without a duration', () => {
    const png = { index: 0, codec_name: 'png', codec_type: 'video', width: 320, height: 240, r_frame_rate: '25/1', avg_frame_rate: '25/1', disposition: {} };
    for (const format_name of ['png_pipe', 'jpeg_pipe', 'webp_pipe', 'image2']) {
      assert.match(refusal(interpretProbe({ streams: [png], format: { format_name, probe_score: 99 } }), 'not_a_video').message, /still image/);
    }
    const singleFrame = h264Stream({ duration: undefined, nb_frames: '1' });
    refusal(interpretProbe({ streams: [singleFrame], format: mp4Format({ duration: undefined }) }), 'not_a_video');
    const pngInMatroska = { ...png, codec_name: 'png' };
    refusal(interpretProbe({ streams: [pngInMatroska], format: { format_name: 'matroska,webm' } }), 'not_a_video');
  });

  it('refuses zero or missing dimensions', () => {
    refusal(interpretProbe({ streams: [h264Stream({ width: 0, height: 0 })], format: mp4Format() }), 'invalid_dimensions');
    refusal(interpretProbe({ streams: [h264Stream({ width: undefined })], format: mp4Format() }), 'invalid_dimensions');
  });

  it('calls anything that is not ffprobe JSON unreadable', () => {
    for (const json of [null, 'text', [], {}, { streams: 'x', format: {} }]) {
      refusal(interpretProbe(json), 'unreadable_video');
    }
  });

  it('accepts only allowlisted containers: none of the demuxers that open other files or URLs', () => {
    for (const format_name of ['hls', 'dash', 'concat', 'sdp', 'rtsp', 'image2', 'tee', 'ffmetadata', 'mxf', 'lavfi', '']) {
      const result = interpretProbe({ streams: [h264Stream()], format: mp4Format({ format_name }) });
      // image2 is a still image first; the rest are not accepted containers.
      refusal(result, format_name === 'image2' ? 'not_a_video' : 'unsupported_format');
    }
    assert.match(refusal(interpretProbe({ streams: [h264Stream()], format: mp4Format({ format_name: 'hls' }) }), 'unsupported_format').message, /\(hls\) is not accepted; accepted: MP4/);
    for (const format_name of ['mov,mp4,m4a,3gp,3g2,mj2', 'matroska,webm', 'avi', 'mpegts', 'mpeg', 'flv', 'asf', 'ogg', 'ivf', 'h264', 'hevc', 'm4v']) {
      ok(interpretProbe({ streams: [h264Stream()], format: mp4Format({ format_name }) }));
    }
  });

  it('keeps start offsets past 24.8 days (integer milliseconds overflow there), refuses times no double holds exactly', () => {
    const late = ok(interpretProbe({ streams: [h264Stream({ start_time: '2500000.000000' })], format: mp4Format() }));
    assert.equal(late.video.startTimeMs, 2_500_000_000);
    refusal(interpretProbe({ streams: [h264Stream({ start_time: '1e300' })], format: mp4Format() }), 'invalid_timestamps');
    refusal(interpretProbe({ streams: [h264Stream({ duration: '9007199254741' })], format: mp4Format() }), 'invalid_timestamps');
  });

  it('treats a frame rate no camera has as unknown (the column is a 4-byte float)', () => {
    const result = ok(interpretProbe({ streams: [h264Stream({ avg_frame_rate: '1e40/1', r_frame_rate: '1e40/1' })], format: mp4Format() }));
    assert.equal(result.video.fps, null);
  });
});
