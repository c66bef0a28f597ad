import assert from 'node:assert/strict';
import { previewArgs, previewFormats } from '../../../src/media/preview-args.ts';

const SCALE =
  "scale=w='max(2,trunc(iw*min(1,min(1280/max(iw,ih),720/min(iw,ih)))/2)*2)':h='max(2,trunc(ih*min(1,min(1280/max(iw,ih),720/min(iw,ih)))/2)*2)'";
// The upload is read under the same container and protocol allowlist as every other ffmpeg run.
const POLICY = ['-protocol_whitelist', 'file', '-format_whitelist', 'mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts,mpeg,flv,asf,ogg,ivf,h264,hevc,m4v'];
const INPUT = ['-nostdin', '-hide_banner', '-nostats', '-loglevel', 'error', ...POLICY, '-i', 'file:/data/in.avi', '-map', '0:V:0', '-an', '-sn', '-dn', '-map_metadata', '-1'];
const FILTERS = ['-vf', `${SCALE},format=yuv420p,setpts=PTS-STARTPTS`, '-fps_mode', 'vfr'];

describe('preview argument builder', () => {
  it('H.264 in MP4: at most 720p, 4:2:0, from 0 s, bounded bitrate and size, keyframes every 2 s, index first', () => {
    assert.deepEqual(previewArgs({ input: '/data/in.avi', output: '/tmp/p/preview.mp4', codec: 'h264', maxBytes: 1000 }), [
      ...INPUT,
      ...FILTERS,
      ...['-c:v', 'libx264', '-preset', 'veryfast', '-crf', '23', '-profile:v', 'high', '-maxrate', '2M', '-bufsize', '4M'],
      ...['-force_key_frames', 'expr:gte(t,n_forced*2)', '-fs', '1000', '-movflags', '+faststart', '-f', 'mp4', 'file:/tmp/p/preview.mp4'],
    ]);
  });

  it('VP9 in WebM for an ffmpeg without libx264', () => {
    assert.deepEqual(previewArgs({ input: '/data/in.avi', output: '/tmp/p/preview.webm', codec: 'vp9', maxBytes: 5 }), [
      ...INPUT,
      ...FILTERS,
      ...['-c:v', 'libvpx-vp9', '-deadline', 'realtime', '-cpu-used', '8', '-row-mt', '1', '-crf', '33', '-b:v', '2M'],
      ...['-force_key_frames', 'expr:gte(t,n_forced*2)', '-fs', '5', '-f', 'webm', 'file:/tmp/p/preview.webm'],
    ]);
  });

  it('passes MAX_PIXELS to the decoder like the other runs', () => {
    const args = previewArgs({ input: '/data/in.avi', output: '/tmp/p/preview.mp4', codec: 'h264', maxBytes: 1000, maxPixels: 1000 });
    assert.ok(args.indexOf('-max_pixels') >= 0 && args.indexOf('-max_pixels') < args.indexOf('-i'), args.join(' '));
  });

  it('never lets a file name be read as a protocol, in or out', () => {
    const args = previewArgs({ input: 'concat:a|b', output: 'http://x/y.mp4', codec: 'h264', maxBytes: 1 });
    assert.ok(args.includes('file:concat:a|b'));
    assert.equal(args.at(-1), 'file:http://x/y.mp4');
  });

  it('refuses a size limit that is not a positive whole number', () => {
    for (const maxBytes of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(() => previewArgs({ input: 'a', output: 'b', codec: 'h264', maxBytes }), RangeError, String(maxBytes));
    }
  });

  it('names a MIME type and file extension per codec', () => {
    assert.deepEqual(previewFormats, { h264: { mimeType: 'video/mp4', extension: 'mp4' }, vp9: { mimeType: 'video/webm', extension: 'webm' } });
  });
});
