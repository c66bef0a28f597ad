import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { useFrameDecoder } from '../../../src/detection/letterbox.ts';
import { calibrationFrames, calibrationId, CalibrationError, type CalibrationMedia } from '../../../src/services/calibration.service.ts';

const probe = (durationMs: number | null, fps: number | null) =>
  ({ ok: true, video: { durationMs, fps, width: 96, height: 72, codec: 'h264', startTimeMs: 40, creationTime: null, frameCountEstimate: null }, raw: {} }) as never;

function fakeMedia(frames: number, durationMs: number | null = 10_000, fps: number | null = 25): { media: CalibrationMedia; calls: unknown[] } {
  const calls: unknown[] = [];
  return {
    calls,
    media: {
      probe: async () => probe(durationMs, fps),
      extractFrames: async (_file, options, onFrame) => {
        calls.push(options);
        const jpeg = await sharp({ create: { width: 80, height: 60, channels: 3, background: { r: 1, g: 2, b: 3 } } }).jpeg().toBuffer();
        for (let index = 0; index < frames; index++) await onFrame({ index, ptsMs: index * 100, jpeg });
        return { frames };
      },
    },
  };
}

describe('calibration frames', () => {
  it('takes the frames spread over the video, scaled and letterboxed as the service does', async () => {
    const { media, calls } = fakeMedia(7);
    const frames = await calibrationFrames(media, { video: 'v.mp4', frames: 5, frameSize: { width: 80, height: 80 } }, [80, 80]);
    // 5 frames over 10 s: one every 2 s; the 96x72 video is stored at 80x60 and mapped back to it.
    assert.deepEqual(calls, [{ fps: 0.5, jpegQuality: 3, startTimeMs: 40, scale: { from: { width: 96, height: 72 }, to: { width: 80, height: 60 } } }]);
    assert.equal(frames.length, 5, 'no more than asked for');
    assert.deepEqual([frames[0]!.sourceWidth, frames[0]!.pixels.length], [96, 80 * 80 * 3]);
  });

  it('takes every frame of a video too short for the count, and refuses one that gives none or cannot be probed', async () => {
    const short = fakeMedia(3, 1000, 2);
    await calibrationFrames(short.media, { video: 'v.mp4', frames: 32, frameSize: null }, [80, 80]);
    assert.deepEqual(short.calls, [{ fps: null, jpegQuality: 3, startTimeMs: 40, scale: undefined }]);
    await assert.rejects(calibrationFrames(fakeMedia(0).media, { video: 'v.mp4', frames: 5, frameSize: null }, [80, 80]), CalibrationError);
    const unreadable: CalibrationMedia = { ...fakeMedia(1).media, probe: async () => ({ ok: false, code: 'unreadable_video', message: 'moov atom not found' }) as never };
    await assert.rejects(calibrationFrames(unreadable, { video: 'v.mp4', frames: 5, frameSize: null }, [80, 80]), /calibration video v.mp4: moov atom not found/);
  });

  it('names a calibration set by the video\'s content, the frame count, the frame size and the frame decoder', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'vidsense-calibration-'));
    try {
      const video = path.join(dir, 'v.mp4');
      await writeFile(video, 'one');
      const settings = { video, frames: 5, frameSize: { width: 640, height: 640 } };
      const id = await calibrationId(settings);
      assert.match(id, /^video sha256 [0-9a-f]{64}, 5 frames, frame size 640x640, decoded by libjpeg-turbo$/);
      assert.notEqual(await calibrationId({ ...settings, frames: 6 }), id);
      assert.notEqual(await calibrationId({ ...settings, frameSize: null }), id);
      useFrameDecoder('libvips');
      try {
        assert.match(await calibrationId(settings), /, decoded by libvips$/);
      } finally {
        useFrameDecoder('auto');
      }
      await writeFile(video, 'two');
      assert.notEqual(await calibrationId(settings), id);
      await assert.rejects(calibrationId({ ...settings, video: path.join(dir, 'missing.mp4') }), /cannot be read \(set CALIBRATION_VIDEO\)/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
