import assert from 'node:assert/strict';
import { decodeCheckArgs, frameExtractionArgs } from '../../../src/media/extract-args.ts';
import { ffprobeArgs } from '../../../src/media/probe.ts';

const DEMUXERS = 'mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts,mpeg,flv,asf,ogg,ivf,h264,hevc,m4v';
const POLICY = ['-protocol_whitelist', 'file', '-format_whitelist', DEMUXERS];
const OUTPUT = ['-fps_mode', 'passthrough', '-c:v', 'mjpeg', '-q:v', '3', '-huffman', 'default', '-color_range', 'pc', '-strict', 'unofficial', '-f', 'image2pipe', 'pipe:1'];
const INPUT = ['-nostdin', '-hide_banner', '-nostats', '-loglevel', 'info', '-copyts', ...POLICY, '-i', 'file:/data/in.mp4', '-map', '0:V:0', '-an', '-sn', '-dn'];

describe('media argument builders', () => {
  it('ffprobe: JSON with format and streams, errors only, input as a file: URL', () => {
    assert.deepEqual(ffprobeArgs('/data/in.mp4'), ['-v', 'error', ...POLICY, '-print_format', 'json', '-show_format', '-show_streams', 'file:/data/in.mp4']);
  });

  it('every run opens its file only, with an allowlisted demuxer, and decoders refuse pictures over MAX_PIXELS (plus a tenth)', () => {
    const limited = [...POLICY, '-max_pixels', '9732096'];
    const runs = [
      ffprobeArgs('/v.mp4', 8_847_360),
      frameExtractionArgs({ input: '/v.mp4', fps: 1, jpegQuality: 3, maxPixels: 8_847_360 }),
      decodeCheckArgs({ input: '/v.mp4', maxFrames: 1, maxPixels: 8_847_360 }),
      decodeCheckArgs({ input: '/v.mp4', fromMs: 5000, maxPixels: 8_847_360 }),
    ];
    for (const args of runs) {
      const input = args.indexOf('file:/v.mp4');
      // Input options: before the input (ffprobe takes its input last, ffmpeg after -i).
      const policyAt = args.indexOf('-protocol_whitelist');
      assert.deepEqual(args.slice(policyAt, policyAt + limited.length), limited, args.join(' '));
      assert.ok(policyAt < input);
    }
  });

  it('never lets a file name be read as a protocol', () => {
    assert.equal(ffprobeArgs('concat:a.mp4|b.mp4').at(-1), 'file:concat:a.mp4|b.mp4');
    assert.ok(frameExtractionArgs({ input: 'http://x/y.mp4', fps: 1, jpegQuality: 3 }).includes('file:http://x/y.mp4'));
  });

  it('frame extraction at a sampling rate: fps filter, then range conversion, then showinfo last', () => {
    assert.deepEqual(frameExtractionArgs({ input: '/data/in.mp4', fps: 5, jpegQuality: 3 }), [
      ...INPUT,
      '-vf',
      'fps=5,scale=out_range=full,format=yuv420p,showinfo=checksum=0',
      ...OUTPUT,
    ]);
  });

  it('frame extraction of every frame: no fps filter, still passthrough', () => {
    assert.deepEqual(frameExtractionArgs({ input: '/data/in.mp4', fps: null, jpegQuality: 3 }), [
      ...INPUT,
      '-vf',
      'scale=out_range=full,format=yuv420p,showinfo=checksum=0',
      ...OUTPUT,
    ]);
  });

  it('scales frames of the probed size only, in the one range-converting scale filter, bilinear', () => {
    const args = frameExtractionArgs({ input: '/v.avi', fps: 5, jpegQuality: 3, scale: { from: { width: 768, height: 576 }, to: { width: 640, height: 480 } } });
    assert.equal(
      args[args.indexOf('-vf') + 1],
      "fps=5,scale=w='if(eq(iw,768)*eq(ih,576),640,iw)':h='if(eq(iw,768)*eq(ih,576),480,ih)':flags=bilinear:out_range=full,format=yuv420p,showinfo=checksum=0",
    );
    assert.throws(() => frameExtractionArgs({ input: '/v.avi', fps: 5, jpegQuality: 3, scale: { from: { width: 768, height: 576 }, to: { width: 0, height: 480 } } }), RangeError);
    assert.throws(() => frameExtractionArgs({ input: '/v.avi', fps: 5, jpegQuality: 3, scale: { from: { width: 76.8, height: 576 }, to: { width: 64, height: 48 } } }), RangeError);
  });

  it('passes fractional rates and the quality through', () => {
    const args = frameExtractionArgs({ input: '/v.mkv', fps: 2.5, jpegQuality: 31 });
    assert.equal(args[args.indexOf('-vf') + 1], 'fps=2.5,scale=out_range=full,format=yuv420p,showinfo=checksum=0');
    assert.equal(args[args.indexOf('-q:v') + 1], '31');
  });

  it('refuses rates and qualities ffmpeg would reject or misread', () => {
    for (const fps of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(() => frameExtractionArgs({ input: '/v.mp4', fps, jpegQuality: 3 }), RangeError, String(fps));
    }
    for (const jpegQuality of [1, 32, 2.5]) {
      assert.throws(() => frameExtractionArgs({ input: '/v.mp4', fps: 1, jpegQuality }), RangeError, String(jpegQuality));
    }
  });

  it('decode check of the first frame', () => {
    assert.deepEqual(decodeCheckArgs({ input: '/data/in.mp4', maxFrames: 1 }), [
      '-nostdin', '-hide_banner', '-nostats', '-loglevel', 'error', '-flags2', '+showall',
      ...POLICY, '-i', 'file:/data/in.mp4', '-map', '0:V:0', '-frames:v', '1', '-f', 'framecrc', 'pipe:1',
    ]);
  });

  it('decode check of the tail seeks on the input side', () => {
    assert.deepEqual(decodeCheckArgs({ input: '/data/in.mp4', fromMs: 78_500 }), [
      '-nostdin', '-hide_banner', '-nostats', '-loglevel', 'error', '-flags2', '+showall',
      '-ss', '78.500', ...POLICY, '-i', 'file:/data/in.mp4', '-map', '0:V:0', '-f', 'framecrc', 'pipe:1',
    ]);
    assert.ok(!decodeCheckArgs({ input: '/data/in.mp4', fromMs: 0 }).includes('-ss'));
  });
});
