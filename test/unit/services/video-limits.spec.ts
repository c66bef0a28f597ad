import assert from 'node:assert/strict';
import { checkVideoLimits, effectiveSampleFps, expectedFrames } from '../../../src/services/video-limits.ts';

const limits = { maxDurationS: 3600, maxFrames: 18_000, maxPixels: 4096 * 2160 };
const hd = { durationMs: 60_000, width: 1920, height: 1080, frameCountEstimate: 1800 };

describe('video limits', () => {
  it('samples every frame of a source up to MAX_FPS, and a faster or unknown-rate source ("all") at MAX_FPS', () => {
    assert.equal(effectiveSampleFps(null, 30, 60), null);
    assert.equal(effectiveSampleFps(null, 60, 60), null);
    assert.equal(effectiveSampleFps(null, 1000, 60), 60);
    assert.equal(effectiveSampleFps(null, null, 60), 60);
    assert.equal(effectiveSampleFps(5, 30, 60), 5);
    assert.equal(effectiveSampleFps(30, 25, 60), null, 'at or above the source rate: every frame, not duplicates');
    assert.equal(effectiveSampleFps(5, null, 60), 5);
  });

  it('expects duration x rate frames, rounded as the fps filter does, or the container count for every frame', () => {
    assert.equal(expectedFrames({ durationMs: 2000, frameCountEstimate: 20 }, 0.3), 1);
    assert.equal(expectedFrames({ durationMs: 2000, frameCountEstimate: 20 }, 0.1), 0);
    assert.equal(expectedFrames({ durationMs: 2000, frameCountEstimate: 20 }, null), 20);
    assert.equal(expectedFrames({ durationMs: null, frameCountEstimate: null }, 5), null);
  });

  it('accepts what fits, including exactly at each limit', () => {
    assert.equal(checkVideoLimits(hd, 5, limits), undefined);
    assert.equal(checkVideoLimits({ durationMs: 3_600_000, width: 4096, height: 2160, frameCountEstimate: null }, 5, limits), undefined);
  });

  it('refuses each limit with its own code, naming the setting', () => {
    const cases = [
      [{ ...hd, width: 16000, height: 16000 }, 5, 'too_many_pixels', /16000x16000.*MAX_PIXELS/],
      [{ ...hd, durationMs: 3_600_001 }, 5, 'video_too_long', /MAX_DURATION_S/],
      [{ ...hd, durationMs: 3_600_000 }, 6, 'too_many_frames', /21600 frames.*MAX_FRAMES.*at most 5 fps/],
      [{ ...hd, frameCountEstimate: 100_000 }, null, 'too_many_frames', /every frame yields about 100000/],
      [{ ...hd, durationMs: 2000 }, 0.1, 'no_frames', /takes no frame from this 2 s video; sample at least 0.25 fps/],
    ] as const;
    for (const [video, fps, code, message] of cases) {
      const refusal = checkVideoLimits(video, fps, limits);
      assert.equal(refusal?.code, code, JSON.stringify(video));
      assert.match(refusal!.message, message);
    }
  });

  it('checks the picture size first: nothing else matters for a frame that would not be decoded', () => {
    assert.equal(checkVideoLimits({ durationMs: 1e9, width: 20000, height: 20000, frameCountEstimate: 1e9 }, 5, limits)?.code, 'too_many_pixels');
  });

  it('lets unknown figures through (a raw stream has no duration): extraction enforces them', () => {
    assert.equal(checkVideoLimits({ durationMs: null, width: 640, height: 480, frameCountEstimate: null }, null, limits), undefined);
  });
});
