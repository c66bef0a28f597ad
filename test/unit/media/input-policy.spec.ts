import assert from 'node:assert/strict';
import { decoderMaxPixels, inputRefusal, isAllowedFormat, withMemoryCeiling } from '../../../src/media/input-policy.ts';

describe('media input policy', () => {
  it('names the demuxer ffmpeg detected when the allowlist refuses it (ffmpeg 5.1 stderr)', () => {
    const stderr = "[hls @ 0x56010d779540] Format not on whitelist 'mov,mp4,m4a,3gp,3g2,mj2,mpegts'\nfile:/srv/x: Invalid argument\n";
    assert.deepEqual(inputRefusal(stderr), { kind: 'format', demuxer: 'hls' });
    assert.deepEqual(inputRefusal("Format not on whitelist 'mov'"), { kind: 'format', demuxer: undefined });
    assert.deepEqual(inputRefusal("[concat @ 0x1] Protocol 'http' not on whitelist 'file'!"), { kind: 'protocol', protocol: 'http' });
  });

  it('reads a decoder refusing a picture over max_pixels, and failed allocations', () => {
    const pixels = '[h264 @ 0x5557e2be6100] [IMGUTILS @ 0x7ffddca77720] Picture size 16000x16000 exceeds specified max pixel count 8847360, see the documentation';
    assert.deepEqual(inputRefusal(pixels), { kind: 'picture_size', width: 16000, height: 16000 });
    // Each seen when a 3840x2160 decode check ran under prlimit --as of 400 to 700 MB (ffmpeg 5.1).
    const seen = [
      '[h264 @ 0x1] Could not allocate memory',
      'Error while decoding stream #0:0: Cannot allocate memory',
      '[mjpeg @ 0x1] get_buffer() failed (-12 (nil))',
      '[h264 @ 0x55f6e9b076c0] thread_get_buffer() failed',
      '[rawvideo @ 0x55defdf17a80] Failed to allocate packet of size 12441600',
      '[rawvideo @ 0x55defdf17a80] ff_frame_thread_encoder_init failed',
    ];
    for (const line of seen) {
      assert.deepEqual(inputRefusal(line), { kind: 'memory' }, line);
    }
  });

  it('leaves every other failure to the caller', () => {
    for (const stderr of ['', 'moov atom not found', 'Invalid data found when processing input', '[h264 @ 0x1] error while decoding MB 3 4']) {
      assert.equal(inputRefusal(stderr), undefined, stderr);
    }
  });

  it('allows a format when any of its names is allowlisted', () => {
    assert.ok(isAllowedFormat('mov,mp4,m4a,3gp,3g2,mj2'));
    assert.ok(isAllowedFormat('matroska,webm'));
    for (const name of ['hls', 'dash', 'concat', 'image2', 'sdp', 'applehttp', '', 'mp4x']) assert.ok(!isAllowedFormat(name), name);
  });

  it('gives decoders a tenth more than MAX_PIXELS (they check the coded size: 1920x1088 for 1080p), within INT_MAX', () => {
    assert.ok(decoderMaxPixels(1920 * 1080) >= 1920 * 1088);
    assert.equal(decoderMaxPixels(2_000_000_000), 2 ** 31 - 1);
  });

  it('runs a command under prlimit --as when there is a ceiling, as it is otherwise', () => {
    assert.deepEqual(withMemoryCeiling('prlimit', '/usr/bin/ffmpeg', ['-i', 'file:x'], 1024), { file: 'prlimit', args: ['--as=1024', '--', '/usr/bin/ffmpeg', '-i', 'file:x'] });
    assert.deepEqual(withMemoryCeiling('prlimit', '/usr/bin/ffmpeg', ['-i', 'file:x'], 0), { file: '/usr/bin/ffmpeg', args: ['-i', 'file:x'] });
  });
});
