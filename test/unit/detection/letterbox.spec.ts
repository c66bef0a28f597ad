import assert from 'node:assert/strict';
import sharp from 'sharp';
import { isScaledCopy, scaledFrameSize } from '../../../src/detection/letterbox-geometry.ts';
import { forgetJpegTurbo, jpegTurboLoader, loadJpegTurbo } from '../../../src/detection/jpeg-turbo.ts';
import {
  computeLetterbox,
  currentFrameDecoder,
  hwcToChw,
  jpegFrameSize,
  packBatch,
  PAD_VALUE,
  placeLetterboxed,
  prepareFrame,
  roundHalfEven,
  useFrameDecoder,
  writeFrameToBatch,
  type BatchSlot,
} from '../../../src/detection/letterbox.ts';
import { SKIMAGE_PHOTOS } from '../../helpers/media-fixtures.ts';

describe('roundHalfEven (Python round)', () => {
  it('sends halves to the even neighbour', () => {
    assert.deepEqual([0.5, 1.5, 2.5, 3.5, 360.5, 361.5, -0.5, -1.5].map(roundHalfEven), [0, 2, 2, 4, 360, 362, 0, -2]);
  });
  it('rounds non-halves to nearest', () => {
    assert.deepEqual([2.4999, 2.5001, 0.4, 0.6, 139.9, 7].map(roundHalfEven), [2, 3, 0, 1, 140, 7]);
  });
});

describe('computeLetterbox', () => {
  it('landscape 768x576 into 640x640: 640x480 with 80 px top and bottom', () => {
    const lb = computeLetterbox(768, 576, 640, 640);
    assert.equal(lb.scale, 640 / 768);
    assert.deepEqual([lb.newWidth, lb.newHeight, lb.top, lb.bottom, lb.left, lb.right], [640, 480, 80, 80, 0, 0]);
  });

  it('portrait 480x640: pads left and right', () => {
    const lb = computeLetterbox(480, 640, 640, 640);
    assert.equal(lb.scale, 1);
    assert.deepEqual([lb.newWidth, lb.newHeight, lb.top, lb.bottom, lb.left, lb.right], [480, 640, 0, 0, 80, 80]);
  });

  it('scales small images up (scaleup=True)', () => {
    const lb = computeLetterbox(320, 240, 640, 640);
    assert.equal(lb.scale, 2);
    assert.deepEqual([lb.newWidth, lb.newHeight, lb.top, lb.bottom], [640, 480, 80, 80]);
  });

  it('uses banker\'s rounding for the resized size (1280x721: 360.5 -> 360, not 361)', () => {
    const lb = computeLetterbox(1280, 721, 640, 640);
    assert.equal(lb.scale, 0.5);
    assert.deepEqual([lb.newWidth, lb.newHeight, lb.top, lb.bottom], [640, 360, 140, 140]);
    const up = computeLetterbox(1280, 723, 640, 640); // 361.5 -> 362
    assert.deepEqual([up.newHeight, up.top, up.bottom], [362, 139, 139]);
    const portrait = computeLetterbox(719, 1280, 640, 640); // 359.5 -> 360
    assert.deepEqual([portrait.newWidth, portrait.left, portrait.right], [360, 140, 140]);
  });

  it('puts the odd padding pixel at the bottom/right', () => {
    const half = computeLetterbox(640, 639, 640, 640); // dh = 0.5
    assert.deepEqual([half.top, half.bottom], [0, 1]);
    const oneAndHalf = computeLetterbox(640, 637, 640, 640); // dh = 1.5
    assert.deepEqual([oneAndHalf.top, oneAndHalf.bottom], [1, 2]);
    const wide = computeLetterbox(483, 640, 640, 640); // dw = 78.5 -> 78 left, 79 right
    assert.deepEqual([wide.left, wide.right], [78, 79]);
    const tall = computeLetterbox(640, 479, 640, 640); // no scaling, dh = 80.5
    assert.deepEqual([tall.scale, tall.newHeight, tall.top, tall.bottom], [1, 479, 80, 81]);
  });

  it('handles odd source sizes and non-square targets, always filling the target exactly', () => {
    for (const [w, h, dh, dw] of [[741, 500, 640, 640], [641, 481, 640, 640], [1280, 720, 384, 640], [640, 479, 640, 640], [333, 777, 320, 480], [1, 1, 640, 640], [5000, 3, 640, 640]] as const) {
      const lb = computeLetterbox(w, h, dh, dw);
      assert.equal(lb.newWidth + lb.left + lb.right, dw, `${w}x${h} width`);
      assert.equal(lb.newHeight + lb.top + lb.bottom, dh, `${w}x${h} height`);
      assert.ok(lb.newWidth === dw || lb.newHeight === dh, `${w}x${h} touches one side`);
    }
    const lb = computeLetterbox(1280, 720, 384, 640);
    assert.deepEqual([lb.scale, lb.newWidth, lb.newHeight, lb.top, lb.bottom], [0.5, 640, 360, 12, 12]);
    assert.deepEqual(computeLetterbox(741, 500, 640, 640).newHeight, 432);
    assert.equal(computeLetterbox(5000, 3, 640, 640).newHeight, 1, 'never an empty image');
  });

  it('rejects empty sizes', () => {
    assert.throws(() => computeLetterbox(0, 10, 640, 640), RangeError);
  });
});

describe('scaledFrameSize / isScaledCopy (extraction at the letterbox size)', () => {
  it('is the letterbox\'s resized size when the source is larger than the box, else nothing', () => {
    assert.deepEqual(scaledFrameSize({ width: 768, height: 576 }, { width: 640, height: 640 }), { width: 640, height: 480 });
    assert.deepEqual(scaledFrameSize({ width: 1280, height: 721 }, { width: 640, height: 640 }), { width: 640, height: 360 }, 'rounded half to even, as the letterbox');
    assert.deepEqual(scaledFrameSize({ width: 741, height: 500 }, { width: 640, height: 640 }), { width: 640, height: 432 });
    assert.deepEqual(scaledFrameSize({ width: 1920, height: 1080 }, { width: 640, height: 384 }), { width: 640, height: 360 });
    assert.equal(scaledFrameSize({ width: 640, height: 480 }, { width: 640, height: 640 }), undefined, 'fits already');
    assert.equal(scaledFrameSize({ width: 320, height: 240 }, { width: 640, height: 640 }), undefined, 'never scaled up');
  });

  it('tells a scaled copy from a rotated frame', () => {
    assert.ok(isScaledCopy({ width: 640, height: 480 }, { width: 768, height: 576 }));
    assert.ok(isScaledCopy({ width: 640, height: 360 }, { width: 1280, height: 721 }), 'one pixel of rounding');
    assert.ok(!isScaledCopy({ width: 576, height: 768 }, { width: 768, height: 576 }), 'rotated');
    assert.ok(!isScaledCopy({ width: 640, height: 400 }, { width: 768, height: 576 }));
  });
});

describe('jpegFrameSize', () => {
  it('reads the size from the frame header of baseline and progressive JPEGs', async () => {
    const image = sharp({ create: { width: 37, height: 21, channels: 3, background: { r: 9, g: 9, b: 9 } } });
    assert.deepEqual(jpegFrameSize(await image.clone().jpeg().toBuffer()), { width: 37, height: 21, components: 3, sof: 0xc0 });
    assert.deepEqual(jpegFrameSize(await image.clone().jpeg({ progressive: true }).toBuffer()), { width: 37, height: 21, components: 3, sof: 0xc2 });
    assert.deepEqual(jpegFrameSize(await image.clone().withMetadata().jpeg().toBuffer()), { width: 37, height: 21, components: 3, sof: 0xc0 }, 'after APP segments');
    assert.deepEqual(jpegFrameSize(await image.clone().toColourspace('b-w').jpeg().toBuffer()), { width: 37, height: 21, components: 1, sof: 0xc0 });
  });

  it('gives nothing for other formats and for truncated headers', async () => {
    assert.equal(jpegFrameSize(await sharp({ create: { width: 4, height: 4, channels: 3, background: { r: 0, g: 0, b: 0 } } }).png().toBuffer()), undefined);
    const jpeg = await sharp({ create: { width: 4, height: 4, channels: 3, background: { r: 0, g: 0, b: 0 } } }).jpeg().toBuffer();
    assert.equal(jpegFrameSize(jpeg.subarray(0, 6)), undefined);
    assert.equal(jpegFrameSize(Buffer.from([0xff, 0xd8, 0x00, 0x00, 0x00])), undefined);
  });
});

describe('placeLetterboxed', () => {
  it('pads around the image on every side, row by row', () => {
    // A 1x2 image (two pixels stacked) into 3x4: 1 column left, 1 right, 1 row above and below.
    const out = new Uint8Array(3 * 4 * 3).fill(7);
    placeLetterboxed(Uint8Array.from([1, 2, 3, 4, 5, 6]), { scale: 1, newWidth: 1, newHeight: 2, top: 1, bottom: 1, left: 1, right: 1 }, 3, 4, out);
    const P = [114, 114, 114];
    assert.deepEqual([...out], [...P, ...P, ...P, ...P, 1, 2, 3, ...P, ...P, 4, 5, 6, ...P, ...P, ...P, ...P]);
  });
});

describe('hwcToChw / writeFrameToBatch', () => {
  it('de-interleaves RGB into planes divided by 255, frame after frame', () => {
    const out = hwcToChw(Uint8Array.from([255, 0, 51, 0, 255, 102]), 2);
    assert.deepEqual([...out], [1, 0, 0, 1, 0.2, 0.4].map((v) => Math.fround(v)));
    const two = hwcToChw(Uint8Array.from([255, 0, 51, 0, 255, 102]), 1);
    assert.deepEqual([...two], [1, 0, 0.2, 0, 1, 0.4].map((v) => Math.fround(v)));
  });

  it('writes a frame into its batch slot', () => {
    const batch = new Uint8Array(9);
    const frame = { pixels: Uint8Array.from([1, 2, 3]), sourceWidth: 1, sourceHeight: 1, scale: 1, padLeft: 0, padTop: 0 };
    writeFrameToBatch(batch, frame, 1);
    assert.deepEqual([...batch], [0, 0, 0, 1, 2, 3, 0, 0, 0]);
    assert.throws(() => writeFrameToBatch(batch, frame, 3), RangeError);
  });
});

describe('packBatch', () => {
  // 1x1 "images": 3 bytes per frame.
  const frame = (v: number) => ({ pixels: Uint8Array.from([v, v, v]), sourceWidth: 1, sourceHeight: 1, scale: 1, padLeft: 0, padTop: 0 });

  it('hands a single frame over without a copy, and packs several in order', () => {
    const one = frame(1);
    assert.equal(packBatch([one], [1, 1]), one.pixels);
    assert.deepEqual([...packBatch([frame(1), frame(2)], [1, 1])], [1, 1, 1, 2, 2, 2]);
  });

  it('hands frames in consecutive slots of one buffer over as that buffer, and copies when they are not', () => {
    const buffer = Uint8Array.from([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]);
    const slot = (i: number) => ({ ...frame(0), pixels: buffer.subarray(3 * i, 3 * i + 3) });
    const run = packBatch([slot(1), slot(2)], [1, 1]);
    assert.equal(run.buffer, buffer.buffer, 'no copy');
    assert.equal(run.byteOffset, 3);
    assert.deepEqual([...run], [1, 1, 1, 2, 2, 2]);
    // A gap (a corrupt frame left its slot empty), the wrong order or a fixed batch with padding: copied.
    for (const [frames, batch] of [[[slot(1), slot(3)], 2], [[slot(2), slot(1)], 2], [[slot(0), slot(1)], 3]] as const) {
      const copied = packBatch(frames, [1, 1], batch);
      assert.notEqual(copied.buffer, buffer.buffer);
      assert.deepEqual([...copied.subarray(0, 6)], frames.flatMap((f) => [...f.pixels]));
    }
  });

  it('zero-pads up to a fixed batch', () => {
    assert.deepEqual([...packBatch([frame(5)], [1, 1], 3)], [5, 5, 5, 0, 0, 0, 0, 0, 0]);
  });

  it('refuses frames of the wrong size, none, or more than the batch', () => {
    assert.throws(() => packBatch([frame(1)], [2, 2]), /frame has 3 bytes, the model takes 2x2x3/);
    assert.throws(() => packBatch([], [1, 1]), /1 to 0 frames per run, got 0/);
    assert.throws(() => packBatch([frame(1), frame(2)], [1, 1], 1), /1 to 1 frames per run, got 2/);
  });
});

describe('prepareFrame', () => {
  const solid = (width: number, height: number, [r, g, b]: number[]) => sharp({ create: { width, height, channels: 3, background: { r: r!, g: g!, b: b! } } });

  it('letterboxes into RGB bytes (HWC) with gray 114 padding and the mapping back', async () => {
    // A 4x2 pure red image into 8x8: scaled x2 to 8x4, 2 rows of padding above and below.
    const png = await solid(4, 2, [255, 0, 0]).png().toBuffer();
    const frame = await prepareFrame(png, [8, 8]);
    assert.deepEqual([frame.sourceWidth, frame.sourceHeight, frame.scale, frame.padLeft, frame.padTop], [4, 2, 2, 0, 2]);
    assert.equal(frame.pixels.length, 3 * 8 * 8);
    const at = (y: number, x: number) => [...frame.pixels.subarray(3 * (y * 8 + x), 3 * (y * 8 + x) + 3)];
    for (const y of [0, 1, 6, 7]) assert.deepEqual(at(y, 3), [114, 114, 114], `pad row ${y}`);
    for (const y of [2, 3, 4, 5]) for (const x of [0, 7]) assert.deepEqual(at(y, x), [255, 0, 0]);
  });

  it('pads left and right of a portrait frame', async () => {
    const frame = await prepareFrame(await solid(2, 4, [0, 0, 255]).png().toBuffer(), [8, 8]);
    assert.deepEqual([frame.scale, frame.padLeft, frame.padTop], [2, 2, 0]);
    const row = [...frame.pixels.subarray(0, 3 * 8)];
    assert.deepEqual(row, [114, 114, 114, 114, 114, 114, 0, 0, 255, 0, 0, 255, 0, 0, 255, 0, 0, 255, 114, 114, 114, 114, 114, 114]);
  });

  it('decodes straight into a batch slot, with the same values as on its own', async () => {
    const jpegs = await Promise.all([[255, 0, 0], [0, 128, 255]].map((rgb) => solid(6, 3, rgb).jpeg().toBuffer()));
    const batch = new Uint8Array(2 * 3 * 8 * 8);
    const slotted = await Promise.all(jpegs.map((jpeg, index) => prepareFrame(jpeg, [8, 8], { batch, index })));
    const alone = await Promise.all(jpegs.map((jpeg) => prepareFrame(jpeg, [8, 8])));
    slotted.forEach((frame, i) => {
      assert.equal(frame.pixels.buffer, batch.buffer);
      assert.equal(frame.pixels.byteOffset, i * 3 * 64);
      assert.deepEqual([...frame.pixels], [...alone[i]!.pixels]);
      assert.deepEqual({ ...frame, pixels: undefined }, { ...alone[i]!, pixels: undefined });
    });
    assert.equal(packBatch(slotted, [8, 8]).buffer, batch.buffer);
    await assert.rejects(prepareFrame(jpegs[0]!, [8, 8], { batch, index: 2 }), RangeError);
  });

  it('gives 3 channels for a greyscale JPEG and skips resizing at the network size', async () => {
    const jpeg = await solid(16, 16, [200, 200, 200]).toColourspace('b-w').jpeg().toBuffer();
    assert.equal(jpegFrameSize(jpeg)?.components, 1, 'a one-component JPEG');
    const frame = await prepareFrame(jpeg, [16, 16]);
    assert.deepEqual([frame.scale, frame.padLeft, frame.padTop, frame.pixels.length], [1, 0, 0, 3 * 256]);
    assert.ok(Math.abs(frame.pixels[0]! - 200) < 3);
    assert.equal(frame.pixels[0], frame.pixels[1]);
    assert.equal(frame.pixels[0], frame.pixels[2]);
  });

  it('maps a frame that extraction scaled down back to the video\'s pixels, as for the full-size frame', async () => {
    // A 48x36 video stored at 40x30, the letterbox size for a 40x40 network: padded only, mapped with the video's geometry.
    const video = { width: 48, height: 36 };
    const full = await prepareFrame(await solid(48, 36, [10, 20, 30]).jpeg().toBuffer(), [40, 40]);
    const scaled = await prepareFrame(await solid(40, 30, [10, 20, 30]).jpeg().toBuffer(), [40, 40], undefined, video);
    assert.deepEqual({ ...scaled, pixels: undefined }, { ...full, pixels: undefined });
    assert.deepEqual([scaled.sourceWidth, scaled.sourceHeight, scaled.scale, scaled.padTop], [48, 36, 40 / 48, 5]);
    // Stored at another size (FRAME_SIZE unlike the network): resized to the letterbox, same mapping.
    const other = await prepareFrame(await solid(24, 18, [10, 20, 30]).jpeg().toBuffer(), [40, 40], undefined, video);
    assert.deepEqual({ ...other, pixels: undefined }, { ...full, pixels: undefined });
    // A frame that is not the video scaled (rotated) is its own source; one at the video's size too.
    const rotated = await prepareFrame(await solid(36, 48, [10, 20, 30]).jpeg().toBuffer(), [40, 40], undefined, video);
    assert.deepEqual([rotated.sourceWidth, rotated.sourceHeight, rotated.scale], [36, 48, 40 / 48]);
    const same = await prepareFrame(await solid(48, 36, [10, 20, 30]).jpeg().toBuffer(), [40, 40], undefined, video);
    assert.deepEqual({ ...same, pixels: undefined }, { ...full, pixels: undefined });
  });
});

describe('prepareFrame with libjpeg-turbo (FRAME_DECODER)', () => {
  const turbo = loadJpegTurbo();
  // A real photo as extraction stores frames: a JPEG at the letterbox's width (or height, for a portrait frame).
  const photoJpeg = (width: number, height: number, options: sharp.JpegOptions = {}) =>
    sharp(SKIMAGE_PHOTOS[0]!).resize(width, height, { fit: 'fill' }).jpeg({ quality: 90, ...options }).toBuffer();
  const decodedBy = async (decoder: 'libjpeg-turbo' | 'libvips', jpeg: Buffer, imgsz: [number, number], slot?: BatchSlot) => {
    useFrameDecoder(decoder);
    try {
      return await prepareFrame(jpeg, imgsz, slot);
    } finally {
      useFrameDecoder('auto');
    }
  };
  const differences = (a: Uint8Array, b: Uint8Array) => {
    let max = 0;
    let sum = 0;
    for (let i = 0; i < a.length; i++) {
      const d = Math.abs(a[i]! - b[i]!);
      max = Math.max(max, d);
      sum += d;
    }
    return { max, mean: sum / a.length };
  };

  it('loads here (the optional binding is installed), and auto chooses it', () => {
    assert.ok(turbo, '@julusian/jpeg-turbo should load on this platform');
    assert.equal(useFrameDecoder('auto'), 'libjpeg-turbo');
    assert.equal(currentFrameDecoder(), 'libjpeg-turbo');
  });

  it('decodes a landscape frame into its slot between the padding rows, as libjpeg-turbo decodes it alone', async () => {
    const jpeg = await photoJpeg(64, 48);
    const batch = new Uint8Array(2 * 3 * 64 * 64).fill(7);
    const frame = await decodedBy('libjpeg-turbo', jpeg, [64, 64], { batch, index: 1 });
    assert.equal(frame.pixels.buffer, batch.buffer);
    assert.equal(frame.pixels.byteOffset, 3 * 64 * 64);
    assert.ok(batch.subarray(0, 3 * 64 * 64).every((v) => v === 7), 'the other slot is untouched');
    const row = 3 * 64;
    assert.ok(frame.pixels.subarray(0, 8 * row).every((v) => v === PAD_VALUE), 'padding above');
    assert.ok(frame.pixels.subarray(56 * row).every((v) => v === PAD_VALUE), 'padding below');
    const alone = await turbo!.decompress(jpeg, Buffer.alloc(3 * 64 * 48), { format: turbo!.FORMAT_RGB });
    assert.deepEqual([alone.width, alone.height], [64, 48]);
    assert.deepEqual(Buffer.from(frame.pixels.subarray(8 * row, 56 * row)), alone.data.subarray(0, 3 * 64 * 48));
  });

  it('agrees with libvips within rounding (fast integer DCT), with the same geometry, landscape and portrait', async () => {
    for (const [width, height, imgsz] of [[640, 480, [640, 640]], [480, 640, [640, 640]]] as const) {
      const jpeg = await photoJpeg(width, height);
      const viaTurbo = await decodedBy('libjpeg-turbo', jpeg, [...imgsz]);
      const viaVips = await decodedBy('libvips', jpeg, [...imgsz]);
      assert.deepEqual({ ...viaTurbo, pixels: undefined }, { ...viaVips, pixels: undefined });
      const { max, mean } = differences(viaTurbo.pixels, viaVips.pixels);
      assert.ok(max > 0, `${width}x${height}: the two decoders differ at all, so each was used`);
      assert.ok(max <= 12 && mean < 1.5, `${width}x${height}: max ${max}, mean ${mean.toFixed(3)}`);
    }
  });

  it('expands a greyscale JPEG to RGB and decodes progressive JPEGs', async () => {
    const grey = await sharp(SKIMAGE_PHOTOS[0]!).resize(32, 32).toColourspace('b-w').jpeg().toBuffer();
    const frame = await decodedBy('libjpeg-turbo', grey, [32, 32]);
    for (let i = 0; i < frame.pixels.length; i += 3) assert.ok(frame.pixels[i] === frame.pixels[i + 1] && frame.pixels[i] === frame.pixels[i + 2]);
    const progressive = await photoJpeg(32, 24, { progressive: true });
    assert.equal(jpegFrameSize(progressive)?.sof, 0xc2);
    const decoded = await decodedBy('libjpeg-turbo', progressive, [32, 32]);
    assert.ok(differences(decoded.pixels, (await decodedBy('libvips', progressive, [32, 32])).pixels).mean < 1.5);
  });

  it('hands libjpeg-turbo only frames of the letterbox size with 1 or 3 components; resizes and CMYK go to libvips', async () => {
    // The real binding, counting its calls (a refused frame would also end in libvips, so the pixels alone cannot tell).
    let calls = 0;
    const load = jpegTurboLoader.load;
    jpegTurboLoader.load = () => ({ FORMAT_RGB: turbo!.FORMAT_RGB, decompress: (...args) => (calls++, turbo!.decompress(...args)) });
    forgetJpegTurbo();
    try {
      const routed = async (jpeg: Buffer) => {
        calls = 0;
        const viaTurbo = await decodedBy('libjpeg-turbo', jpeg, [32, 32]);
        const viaVips = await decodedBy('libvips', jpeg, [32, 32]);
        return { calls, same: Buffer.from(viaTurbo.pixels).equals(Buffer.from(viaVips.pixels)) };
      };
      assert.deepEqual(await routed(await photoJpeg(32, 24)), { calls: 1, same: false }, 'at the letterbox size: libjpeg-turbo');
      assert.deepEqual(await routed(await photoJpeg(80, 60)), { calls: 0, same: true }, 'needs a resize: libvips');
      const cmyk = await sharp(SKIMAGE_PHOTOS[0]!).resize(32, 24).toColourspace('cmyk').jpeg().toBuffer();
      assert.equal(jpegFrameSize(cmyk)?.components, 4);
      assert.deepEqual(await routed(cmyk), { calls: 0, same: true }, 'CMYK: libvips');
    } finally {
      jpegTurboLoader.load = load;
      forgetJpegTurbo();
    }
  });

  it('hands a JPEG it refuses to libvips, which names what is wrong', async () => {
    const jpeg = await photoJpeg(64, 48);
    const truncated = jpeg.subarray(0, jpeg.length / 2);
    await assert.rejects(turbo!.decompress(truncated, Buffer.alloc(3 * 64 * 48), { format: turbo!.FORMAT_RGB }), 'libjpeg-turbo refuses it');
    const viaVips = await decodedBy('libvips', truncated, [64, 64]).catch((error: Error) => error.message);
    assert.match(String(viaVips), /premature end/i);
    await assert.rejects(decodedBy('libjpeg-turbo', truncated, [64, 64]), (error: Error) => error.message === viaVips);
  });

  it('switches between the decoders by name', () => {
    assert.equal(useFrameDecoder('libvips'), 'libvips');
    assert.equal(useFrameDecoder('libjpeg-turbo'), 'libjpeg-turbo');
    useFrameDecoder('auto');
  });

  it('where the binding does not load: auto is libvips, and libjpeg-turbo is refused by name', async () => {
    const load = jpegTurboLoader.load;
    jpegTurboLoader.load = () => {
      throw new Error('Cannot find module \'@julusian/jpeg-turbo\'');
    };
    forgetJpegTurbo();
    try {
      assert.equal(loadJpegTurbo(), undefined);
      assert.equal(useFrameDecoder('auto'), 'libvips');
      assert.throws(() => useFrameDecoder('libjpeg-turbo'), /FRAME_DECODER=libjpeg-turbo: the optional package @julusian\/jpeg-turbo is not installed or does not load/);
      const jpeg = await photoJpeg(64, 48);
      const frame = await prepareFrame(jpeg, [64, 64]);
      assert.deepEqual([...frame.pixels], [...(await decodedBy('libvips', jpeg, [64, 64])).pixels], 'decoded by libvips');
    } finally {
      jpegTurboLoader.load = load;
      forgetJpegTurbo();
      useFrameDecoder('auto');
    }
    assert.equal(currentFrameDecoder(), 'libjpeg-turbo');
  });
});
