import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import sharp from 'sharp';
import { resolveMediaBinaries, type MediaBinaries } from '../../src/media/binaries.ts';
import { frameExtractionArgs } from '../../src/media/extract-args.ts';
import { JpegSplitter } from '../../src/media/jpeg-splitter.ts';
import { FfmpegError, MediaLimitError, MediaRepository, type ExtractedFrame } from '../../src/media/media.repository.ts';
import type { ProbeResult } from '../../src/media/probe.ts';
import * as fixtures from '../helpers/media-fixtures.ts';

function ok(result: ProbeResult) {
  assert.ok(result.ok, `expected ok, got ${JSON.stringify(result)}`);
  return result;
}

/** ffmpeg processes that are children of this test process. */
async function childFfmpegs(): Promise<string[]> {
  const { stdout } = await execa('ps', ['-o', 'pid=,comm=', '--ppid', String(process.pid)], { reject: false });
  return stdout.split('\n').filter((line) => /ffmpeg/.test(line));
}

async function collect(media: MediaRepository, file: string, fps: number | null, startTimeMs = 0): Promise<ExtractedFrame[]> {
  const frames: ExtractedFrame[] = [];
  const { frames: count } = await media.extractFrames(file, { fps, jpegQuality: 3, startTimeMs }, async (frame) => void frames.push(frame));
  assert.equal(count, frames.length);
  return frames;
}

describe('media with real ffmpeg', function () {
  this.timeout(120_000);

  let tmp: string;
  let binaries: MediaBinaries;
  let media: MediaRepository;
  const files: Record<string, string> = {};

  before(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-media-'));
    binaries = await resolveMediaBinaries({});
    media = new MediaRepository(binaries);
    files.clip = await fixtures.makeClip(tmp, { seconds: 2, fps: 10, width: 160, height: 120, format: 'mp4', creationTime: '2024-05-06T07:08:09Z' });
    files.faststart = await fixtures.makeClip(tmp, { seconds: 4, fps: 10, width: 320, height: 240, format: 'mp4', faststart: true });
    files.avi = await fixtures.makeClip(tmp, { seconds: 2, fps: 10, width: 160, height: 120, format: 'avi' });
    files.mkv = await fixtures.makeClip(tmp, { seconds: 2, fps: 10, width: 160, height: 120, format: 'mkv' });
    files.truncated = await fixtures.makeTruncated(files.clip, 0.5);
    files.truncatedFaststart = await fixtures.makeTruncated(files.faststart, 0.6);
    files.audio = await fixtures.makeAudioOnly(tmp);
    files.png = await fixtures.makeImageAsMp4(tmp, 'png');
    files.jpeg = await fixtures.makeImageAsMp4(tmp, 'jpeg');
    files.random = await fixtures.makeRandomBytes(tmp, 200_000);
    files.text = await fixtures.makeTextAsMp4(tmp);
    // MPEG-TS starts its clock at 1.4 s: frame times must still start at 0. It has one keyframe (at 0)
    // and no index, so seeking into its last second lands between keyframes.
    files.ts = path.join(tmp, 'clip.ts');
    await execa('ffmpeg', ['-nostdin', '-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=10', '-t', '2', '-c:v', 'libx264', '-pix_fmt', 'yuv420p', files.ts]);
  });

  after(async () => {
    if (tmp) await fs.rm(tmp, { recursive: true, force: true });
  });

  describe('resolveMediaBinaries', () => {
    it('finds ffmpeg and ffprobe on PATH when nothing is configured', () => {
      assert.deepEqual(binaries.source, { ffmpeg: 'path', ffprobe: 'path' });
      assert.match(binaries.versions.ffmpeg, /^ffmpeg version /);
      assert.match(binaries.versions.ffprobe, /^ffprobe version /);
    });

    it('prefers configured paths', async () => {
      const found = await resolveMediaBinaries({ ffmpegPath: '/usr/bin/ffmpeg', ffprobePath: '/usr/bin/ffprobe' }, { loadFfmpegStatic: async () => '/nope' });
      assert.deepEqual([found.ffmpeg, found.ffprobe, found.source], ['/usr/bin/ffmpeg', '/usr/bin/ffprobe', { ffmpeg: 'config', ffprobe: 'config' }]);
    });

    it("uses ffmpeg-static's ffmpeg when its file exists; ffprobe still comes from PATH", async () => {
      const found = await resolveMediaBinaries({}, { loadFfmpegStatic: async () => '/usr/bin/ffmpeg' });
      assert.deepEqual(found.source, { ffmpeg: 'ffmpeg-static', ffprobe: 'path' });
      const missing = await resolveMediaBinaries({}, { loadFfmpegStatic: async () => path.join(tmp, 'not-downloaded') });
      assert.equal(missing.source.ffmpeg, 'path');
    });

    it('says what to install or set when a binary is missing', async () => {
      await assert.rejects(resolveMediaBinaries({ ffmpegPath: path.join(tmp, 'no-ffmpeg') }), /FFMPEG_PATH=.*no-ffmpeg was not found.*apt-get install ffmpeg/);
      await assert.rejects(
        resolveMediaBinaries({}, { loadFfmpegStatic: async () => null, commands: { ffmpeg: 'ffmpeg', ffprobe: 'ffprobe-not-installed' } }),
        /ffprobe is required: "ffprobe-not-installed" on PATH was not found.*apt-get install ffmpeg.*FFPROBE_PATH/,
      );
    });
  });

  describe('probe', () => {
    it('reads a lavfi mp4, with its creation_time', async () => {
      const { video } = ok(await media.probe(files.clip!));
      assert.deepEqual(video, {
        durationMs: 2000,
        fps: 10,
        width: 160,
        height: 120,
        codec: 'h264',
        startTimeMs: 0,
        creationTime: new Date('2024-05-06T07:08:09Z'),
        frameCountEstimate: 20,
      });
    });

    it('reads the real pedestrian video (vtest.avi)', async () => {
      const { video, raw } = ok(await media.probe(fixtures.VTEST_AVI));
      assert.deepEqual(
        [video.width, video.height, video.fps, video.durationMs, video.frameCountEstimate, video.codec],
        [768, 576, 10, 79_500, 795, 'msmpeg4v3'],
      );
      assert.equal(raw.format.format_name, 'avi');
    });

    it('reads avi, mkv and MPEG-TS (whose clock starts at 1.4 s, plus the B-frame delay)', async () => {
      assert.equal(ok(await media.probe(files.avi!)).video.codec, 'mpeg4');
      assert.equal(ok(await media.probe(files.mkv!)).video.durationMs, 2000);
      assert.equal(ok(await media.probe(files.ts!)).video.startTimeMs, 1600);
    });

    for (const [name, reason] of [['random', /moov atom not found|Invalid data/], ['text', /Invalid data/], ['truncated', /moov atom not found/]] as const) {
      it(`refuses ${name} bytes as unreadable_video with a short reason and no server path`, async () => {
        const result = await media.probe(files[name]!);
        assert.ok(!result.ok);
        assert.equal(result.code, 'unreadable_video');
        assert.match(result.message, reason);
        assert.ok(!result.message.includes(tmp), result.message);
      });
    }

    it('refuses audio-only files as no_video_stream', async () => {
      assert.deepEqual(await media.probe(files.audio!), { ok: false, code: 'no_video_stream', message: 'the file has no video stream (only audio)' });
    });

    it('refuses PNG and JPEG images named .mp4 as not_a_video', async () => {
      for (const file of [files.png!, files.jpeg!]) {
        const result = await media.probe(file);
        assert.ok(!result.ok && result.code === 'not_a_video', JSON.stringify(result));
      }
    });
  });

  describe('verifyDecodable', () => {
    it('passes intact videos', async () => {
      for (const file of [files.clip!, files.faststart!, files.avi!, files.mkv!, files.ts!]) {
        const { video } = ok(await media.probe(file));
        assert.deepEqual(await media.verifyDecodable(file, video.durationMs), { ok: true }, file);
      }
    });

    it('flags a faststart mp4 whose index is intact but whose data is cut', async () => {
      const { video } = ok(await media.probe(files.truncatedFaststart!));
      assert.equal(video.durationMs, 4000, 'the header still promises 4 s');
      const result = await media.verifyDecodable(files.truncatedFaststart!, video.durationMs);
      assert.ok(!result.ok);
      assert.equal(result.code, 'truncated_video');
      assert.match(result.message, /last second.*partial file/);
      assert.ok(!result.message.includes(tmp), result.message);
    });

    // Only the first frame and the last second are decoded (the argument builders' unit tests check
    // the seek); the time is logged, not asserted: speed belongs to benchmarks, and the CPU is shared.
    it('passes the 80 s vtest.avi (its start and last second decoded; time logged)', async () => {
      const started = performance.now();
      assert.deepEqual(await media.verifyDecodable(fixtures.VTEST_AVI, 79_500), { ok: true });
      console.log(`      vtest.avi decode check: ${(performance.now() - started).toFixed(0)} ms`);
    });
  });

  describe('extractFrames', () => {
    it('samples a 2 s 10 fps clip at 5 fps: 10 source-size JPEGs at 0, 200, ... 1800 ms', async () => {
      const frames = await collect(media, files.clip!, 5);
      assert.deepEqual(frames.map((f) => f.index), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      assert.deepEqual(frames.map((f) => f.ptsMs), [0, 200, 400, 600, 800, 1000, 1200, 1400, 1600, 1800]);
      for (const frame of frames) {
        const meta = await sharp(frame.jpeg).metadata();
        assert.deepEqual([meta.format, meta.width, meta.height, meta.isProgressive, meta.chromaSubsampling], ['jpeg', 160, 120, false, '4:2:0']);
        assert.ok(frame.jpeg.subarray(0, 11).equals(Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16, 0x4a, 0x46, 0x49, 0x46, 0])), 'JFIF header');
        assert.ok(frame.jpeg.includes(Buffer.from([0xff, 0xc0])), 'baseline SOF0');
      }
      // Distinct pictures, not one frame repeated.
      assert.equal(new Set(frames.map((f) => f.jpeg.toString('base64'))).size, 10);
    });

    it('stores frames of the probed size scaled (FRAME_SIZE), at the same times, and frames of another size as they are', async () => {
      const sizes = async (from: { width: number; height: number }) => {
        const frames: { ptsMs: number; size: string }[] = [];
        await media.extractFrames(files.clip!, { fps: 5, jpegQuality: 3, startTimeMs: 0, scale: { from, to: { width: 80, height: 60 } } }, async (frame) => {
          const meta = await sharp(frame.jpeg).metadata();
          frames.push({ ptsMs: frame.ptsMs, size: `${meta.width}x${meta.height}` });
        });
        return frames;
      };
      const scaled = await sizes({ width: 160, height: 120 });
      assert.deepEqual(scaled.map((f) => f.ptsMs), [0, 200, 400, 600, 800, 1000, 1200, 1400, 1600, 1800]);
      assert.ok(scaled.every((f) => f.size === '80x60'), JSON.stringify(scaled));
      // Frames that are not the size the scale was worked out for (a rotated video's): untouched.
      assert.ok((await sizes({ width: 120, height: 160 })).every((f) => f.size === '160x120'));
    });

    it('extracts all 20 frames when fps is null', async () => {
      const frames = await collect(media, files.clip!, null);
      assert.deepEqual(frames.map((f) => f.ptsMs), Array.from({ length: 20 }, (_, i) => i * 100));
    });

    it('gives the same frames from avi and mkv', async () => {
      for (const file of [files.avi!, files.mkv!]) assert.deepEqual((await collect(media, file, 5)).map((f) => f.ptsMs), [0, 200, 400, 600, 800, 1000, 1200, 1400, 1600, 1800], file);
    });

    it('reports times from the first frame when the container clock does not start at 0', async () => {
      const { video } = ok(await media.probe(files.ts!));
      const frames = await collect(media, files.ts!, null, video.startTimeMs);
      assert.deepEqual(frames.map((f) => f.ptsMs), Array.from({ length: 20 }, (_, i) => i * 100));
    });

    it('writes JPEGs without warnings on stderr (no deprecated yuvj pixel formats)', async () => {
      const result = await execa(binaries.ffmpeg, frameExtractionArgs({ input: files.clip!, fps: 5, jpegQuality: 3 }), { encoding: 'buffer' });
      const stderr = Buffer.from(result.stderr).toString();
      assert.doesNotMatch(stderr, /deprecated|warning|incompatible|non-standard/i);
      const splitter = new JpegSplitter();
      assert.equal(splitter.push(Buffer.from(result.stdout)).length, 10);
      splitter.end();
    });

    it('waits for a slow onFrame: every frame, in order, one at a time', async () => {
      const seen: number[] = [];
      let running = 0;
      const { frames } = await media.extractFrames(files.clip!, { fps: null, jpegQuality: 3, startTimeMs: 0 }, async (frame) => {
        running += 1;
        assert.equal(running, 1, 'onFrame ran concurrently');
        await sleep(frame.index % 4 === 0 ? 40 : 5);
        seen.push(frame.index);
        running -= 1;
      });
      assert.equal(frames, 20);
      assert.deepEqual(seen, Array.from({ length: 20 }, (_, i) => i));
    });

    it('does not read ahead while onFrame is pending, and abort kills ffmpeg', async () => {
      // All frames of vtest.avi are about 61 MB of JPEGs; ffmpeg writes about 15 MB per second.
      const controller = new AbortController();
      let grewBy = Number.NaN;
      let delivered = 0;
      const run = media.extractFrames(fixtures.VTEST_AVI, { fps: null, jpegQuality: 3, startTimeMs: 0 }, async (frame) => {
        delivered += 1;
        if (frame.index !== 0) return;
        const before = process.memoryUsage().arrayBuffers;
        await sleep(1000);
        grewBy = process.memoryUsage().arrayBuffers - before;
        assert.equal((await childFfmpegs()).length, 1, 'ffmpeg is still there, blocked on a full pipe');
        controller.abort();
      }, controller.signal);
      await assert.rejects(run, { name: 'AbortError' });
      assert.equal(delivered, 1, 'no frame after the abort');
      assert.ok(grewBy < 4 * 1024 * 1024, `memory grew by ${grewBy} bytes while onFrame was pending`);
      assert.deepEqual(await childFfmpegs(), []);
    });

    it('aborting mid-stream kills ffmpeg promptly', async () => {
      const controller = new AbortController();
      setTimeout(() => controller.abort(new Error('shutting down')), 300);
      const started = performance.now();
      await assert.rejects(media.extractFrames(fixtures.VTEST_AVI, { fps: null, jpegQuality: 3, startTimeMs: 0 }, async () => {}, controller.signal), /shutting down/);
      assert.ok(performance.now() - started < 1500);
      assert.deepEqual(await childFfmpegs(), []);
      await assert.rejects(media.extractFrames(files.clip!, { fps: 5, jpegQuality: 3, startTimeMs: 0 }, async () => {}, controller.signal), /shutting down/);
    });

    it('kills ffmpeg and rejects with the error when onFrame throws', async () => {
      const boom = new Error('storage is full');
      await assert.rejects(
        media.extractFrames(fixtures.VTEST_AVI, { fps: null, jpegQuality: 3, startTimeMs: 0 }, async (frame) => {
          if (frame.index === 2) throw boom;
        }),
        (error: unknown) => error === boom,
      );
      assert.deepEqual(await childFfmpegs(), []);
    });

    it("rejects with ffmpeg's stderr when ffmpeg fails", async () => {
      await assert.rejects(media.extractFrames(files.random!, { fps: 5, jpegQuality: 3, startTimeMs: 0 }, async () => assert.fail('no frames expected')), (error: unknown) => {
        assert.ok(error instanceof FfmpegError);
        assert.match(error.message, /^ffmpeg exited with code 1 after 0 frame\(s\): .*Invalid data found when processing input/);
        assert.match(error.stderrTail, /Invalid data found when processing input/);
        assert.ok(!error.message.includes(tmp) && !error.stderrTail.includes(tmp), 'server paths are replaced');
        return true;
      });
      await assert.rejects(media.extractFrames(path.join(tmp, 'missing.mp4'), { fps: 5, jpegQuality: 3, startTimeMs: 0 }, async () => {}), /No such file or directory/);
    });

    it('extracts vtest.avi at 5 fps and at every frame (timings logged)', async () => {
      for (const [fps, expected] of [[5, 398], [null, 795]] as const) {
        const started = performance.now();
        let last: ExtractedFrame | undefined;
        const { frames } = await media.extractFrames(fixtures.VTEST_AVI, { fps, jpegQuality: 3, startTimeMs: 0 }, async (frame) => void (last = frame));
        const seconds = (performance.now() - started) / 1000;
        assert.equal(frames, expected);
        assert.equal(last!.ptsMs, fps === null ? 79_400 : 79_400);
        console.log(`      vtest.avi fps=${fps ?? 'all'}: ${frames} frames in ${seconds.toFixed(2)} s = ${(frames / seconds).toFixed(0)} frames/s`);
      }
    });
  });

  describe('hostile input (issue 9)', () => {
    let limited: MediaRepository;
    before(async () => {
      files.hls = await fixtures.makeHlsPlaylist(tmp, files.clip!);
      files.concat = await fixtures.makeConcatList(tmp, files.clip!);
      files.switch = await fixtures.makeResolutionSwitch(tmp, [160, 120], [640, 480]);
      const thirty = await fixtures.makeClip(tmp, { seconds: 30, fps: 10, width: 160, height: 120, format: 'mkv', name: 'thirty' });
      files.lying = await fixtures.withLyingMatroskaDuration(thirty, 2, path.join(tmp, 'lying.mkv'));
      limited = new MediaRepository(binaries, {}, { maxPixels: 320 * 240, memoryLimitBytes: 1024 ** 3 });
    });

    it('probe, decode check and extraction refuse a playlist naming a server file, opening nothing', async () => {
      assert.deepEqual(await media.probe(files.hls!), {
        ok: false,
        code: 'unsupported_format',
        message: 'the container format (hls) is not accepted; accepted: MP4/MOV/3GP, MKV/WebM, AVI, MPEG-TS, MPEG-PS, FLV, WMV/ASF, Ogg, IVF, raw H.264/H.265/MPEG-4',
      });
      for (const file of [files.hls!, files.concat!]) {
        const decode = await media.verifyDecodable(file, 2000);
        assert.equal(decode.ok ? 'ok' : decode.code, 'unsupported_format', file);
      }
      await assert.rejects(media.extractFrames(files.concat!, { fps: 5, jpegQuality: 3, startTimeMs: 0 }, async () => assert.fail('no frame expected')), /Format not on whitelist|Invalid argument/);
    });

    it('the probe says too_many_pixels for a picture over MAX_PIXELS; the decoders refuse the larger pictures of a stream that switches', async () => {
      const large = await fixtures.makeClip(tmp, { seconds: 1, fps: 10, width: 640, height: 480, format: 'mp4', name: 'large' });
      const probe = await limited.probe(large);
      assert.ok(!probe.ok && probe.code === 'too_many_pixels', JSON.stringify(probe));
      assert.equal(ok(await limited.probe(files.switch!)).video.width, 160, 'the header announces the small size');
      await assert.rejects(
        limited.extractFrames(files.switch!, { fps: null, jpegQuality: 3, startTimeMs: 0 }, async () => {}),
        (error: unknown) => error instanceof MediaLimitError && error.code === 'too_many_pixels' && /640x480/.test(error.message),
      );
    });

    it('extraction stops at MAX_FRAMES and at MAX_DURATION_S whatever the header said, after handing over only frames within them', async () => {
      const seen: number[] = [];
      await assert.rejects(
        limited.extractFrames(files.lying!, { fps: null, jpegQuality: 3, startTimeMs: 0, limits: { maxFrames: 25, maxDurationMs: 60_000 } }, async (frame) => void seen.push(frame.index)),
        (error: unknown) => error instanceof MediaLimitError && error.code === 'too_many_frames',
      );
      assert.equal(seen.length, 25);
      const times: number[] = [];
      await assert.rejects(
        limited.extractFrames(files.lying!, { fps: 1, jpegQuality: 3, startTimeMs: 0, limits: { maxFrames: 1000, maxDurationMs: 10_000 } }, async (frame) => void times.push(frame.ptsMs)),
        (error: unknown) => error instanceof MediaLimitError && error.code === 'video_too_long',
      );
      assert.deepEqual(times, [0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10_000]);
      assert.deepEqual(await childFfmpegs(), []);
    });

    it('kills an ffmpeg that makes no progress for stallMs', async () => {
      // An "ffmpeg" that says nothing and writes nothing, like a demuxer spinning on a crafted file.
      const silent = path.join(tmp, 'silent-ffmpeg');
      await fs.writeFile(silent, '#!/bin/sh\nexec sleep 60\n', { mode: 0o755 });
      const stalled = new MediaRepository({ ffmpeg: silent, ffprobe: binaries.ffprobe }, { stallMs: 300 });
      await assert.rejects(stalled.extractFrames(files.clip!, { fps: 5, jpegQuality: 3, startTimeMs: 0 }, async () => {}), /ffmpeg made no progress for 300 ms after 0 frame\(s\)/);
      const { stdout } = await execa('ps', ['-o', 'pid=,args=', '--ppid', String(process.pid)], { reject: false });
      assert.ok(!stdout.includes('sleep 60'), stdout);
    });

    it('runs under the memory ceiling: a run that needs more than it fails as memory_limit', async () => {
      const huge = new MediaRepository(binaries, {}, { maxPixels: 1_900_000_000, memoryLimitBytes: 512 * 1024 ** 2 });
      const big = await fixtures.makeClip(tmp, { seconds: 1, fps: 1, width: 3840, height: 2160, format: 'mp4', name: 'uhd' });
      const decode = await huge.verifyDecodable(big, 1000);
      assert.deepEqual(decode.ok ? 'ok' : decode.code, 'memory_limit', JSON.stringify(decode));
      assert.ok(ok(await media.probe(big)).video.width === 3840 && (await media.verifyDecodable(big, 1000)).ok, 'without the ceiling it decodes');
    });
  });
});
