import sharp from 'sharp';
import type { PreparedFrame } from './types.ts';

/** Ultralytics' padding colour (114, 114, 114). */
const PAD_VALUE = 114;

export interface Letterbox {
  /** Scale applied to the source (same on both axes). */
  scale: number;
  /** Size of the resized image before padding. */
  newWidth: number;
  newHeight: number;
  top: number;
  bottom: number;
  left: number;
  right: number;
}

/**
 * Python 3's round(): halves go to the even neighbour (round(2.5) == 2). x - floor(x) is exact in
 * binary floating point, so comparing it with 0.5 decides ties exactly as CPython does.
 */
export function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * Ultralytics LetterBox(auto=False, scaleup=True, center=True) geometry, so our boxes match
 * Ultralytics' own predictions pixel for pixel.
 */
export function computeLetterbox(srcW: number, srcH: number, dstH: number, dstW: number): Letterbox {
  if (!(srcW > 0 && srcH > 0 && dstH > 0 && dstW > 0)) throw new RangeError(`letterbox sizes must be positive: ${srcW}x${srcH} -> ${dstW}x${dstH}`);
  const scale = Math.min(dstH / srcH, dstW / srcW);
  // At least 1 px: a sliver like 5000x3 would otherwise round to an empty image (Ultralytics crashes there).
  const newWidth = Math.max(1, roundHalfEven(srcW * scale));
  const newHeight = Math.max(1, roundHalfEven(srcH * scale));
  const dw = (dstW - newWidth) / 2;
  const dh = (dstH - newHeight) / 2;
  return {
    scale,
    newWidth,
    newHeight,
    // The ±0.1 puts the odd pixel on the bottom/right, as Ultralytics does.
    top: roundHalfEven(dh - 0.1),
    bottom: roundHalfEven(dh + 0.1),
    left: roundHalfEven(dw - 0.1),
    right: roundHalfEven(dw + 0.1),
  };
}

/**
 * Slot `index` of an NCHW batch buffer (3 * h * w floats a slot). Frames prepared into consecutive slots
 * of one buffer are already the engine's batch input, so packBatch hands it over without copying them.
 */
export interface BatchSlot {
  batch: Float32Array;
  index: number;
}

/**
 * Decodes a JPEG and letterboxes it into the network's float CHW input, keeping the mapping back to
 * source pixels. EXIF orientation is not applied: frames come from ffmpeg, which writes none.
 */
export async function prepareFrame(jpeg: Buffer, imgsz: [number, number], slot?: BatchSlot): Promise<PreparedFrame> {
  const [dstH, dstW] = imgsz;
  const meta = await sharp(jpeg).metadata();
  const srcW = meta.width;
  const srcH = meta.height;
  if (!srcW || !srcH) throw new Error('prepareFrame: could not read the image size');
  const box = computeLetterbox(srcW, srcH, dstH, dstW);

  // Force 3-channel sRGB so greyscale or CMYK JPEGs still give RGB triplets.
  let pipeline = sharp(jpeg).removeAlpha().toColourspace('srgb');
  // Like Ultralytics, only resample when the size changes; 'linear' is the closest kernel to cv2.INTER_LINEAR.
  if (box.newWidth !== srcW || box.newHeight !== srcH) {
    pipeline = pipeline.resize(box.newWidth, box.newHeight, { fit: 'fill', kernel: 'linear' });
  }
  if (box.top || box.bottom || box.left || box.right) {
    pipeline = pipeline.extend({
      top: box.top,
      bottom: box.bottom,
      left: box.left,
      right: box.right,
      background: { r: PAD_VALUE, g: PAD_VALUE, b: PAD_VALUE },
    });
  }
  const { data, info } = await pipeline.raw().toBuffer({ resolveWithObject: true });
  if (info.width !== dstW || info.height !== dstH || info.channels !== 3) {
    throw new Error(`prepareFrame: expected ${dstW}x${dstH}x3 after letterbox, got ${info.width}x${info.height}x${info.channels}`);
  }
  const pixels = dstW * dstH;
  let tensor: Float32Array;
  if (slot) {
    const offset = slot.index * 3 * pixels;
    if (offset + 3 * pixels > slot.batch.length) throw new RangeError(`prepareFrame: batch slot ${slot.index} is past the end of the batch buffer`);
    tensor = hwcToChw(data, pixels, slot.batch, offset).subarray(offset, offset + 3 * pixels);
  } else {
    tensor = hwcToChw(data, pixels);
  }
  return {
    tensor,
    sourceWidth: srcW,
    sourceHeight: srcH,
    scale: box.scale,
    padLeft: box.left,
    padTop: box.top,
  };
}

/** v / 255 for every byte value: exact like Ultralytics' `/ 255` and cheaper than dividing per pixel. */
const BYTE_TO_UNIT = Float32Array.from({ length: 256 }, (_, v) => v / 255);

/** Interleaved RGB bytes (HWC) into planar float32 (CHW) in [0, 1]: one allocation, one pass. */
export function hwcToChw(rgb: Uint8Array, pixels: number, out: Float32Array = new Float32Array(3 * pixels), offset = 0): Float32Array {
  const lut = BYTE_TO_UNIT;
  const r = offset;
  const g = offset + pixels;
  const b = offset + 2 * pixels;
  for (let i = 0, j = 0; i < pixels; i++, j += 3) {
    out[r + i] = lut[rgb[j]!]!;
    out[g + i] = lut[rgb[j + 1]!]!;
    out[b + i] = lut[rgb[j + 2]!]!;
  }
  return out;
}

/**
 * The NCHW input of one engine run: `frames` checked against the model's input size and packed into a
 * tensor of `batch` slots (zero padding after the frames, for fixed-batch models). A single frame in a
 * batch of one, or frames already in consecutive slots of one buffer, are returned without a copy.
 */
export function packBatch(frames: readonly PreparedFrame[], imgsz: readonly [number, number], batch = frames.length): Float32Array {
  const [h, w] = imgsz;
  const frameSize = 3 * h * w;
  for (const frame of frames) {
    if (frame.tensor.length !== frameSize) throw new Error(`frame tensor has ${frame.tensor.length} values, the model takes 3x${h}x${w}`);
  }
  if (frames.length === 0 || frames.length > batch) throw new Error(`the model takes 1 to ${batch} frames per run, got ${frames.length}`);
  if (batch === 1) return frames[0]!.tensor;
  // Frames that prepareFrame wrote into consecutive slots of one buffer are the batch already: a view, no copy.
  const first = frames[0]!.tensor;
  const bytes = frameSize * Float32Array.BYTES_PER_ELEMENT;
  if (frames.length === batch && frames.every((f, i) => f.tensor.buffer === first.buffer && f.tensor.byteOffset === first.byteOffset + i * bytes)) {
    return new Float32Array(first.buffer, first.byteOffset, batch * frameSize);
  }
  const data = new Float32Array(batch * frameSize);
  frames.forEach((frame, i) => writeFrameToBatch(data, frame, i));
  return data;
}

/** Copies a prepared frame into slot `index` of an NCHW batch tensor (for dynamic-batch models). */
export function writeFrameToBatch(batch: Float32Array, frame: PreparedFrame, index: number): void {
  const offset = index * frame.tensor.length;
  if (offset + frame.tensor.length > batch.length) throw new RangeError(`batch slot ${index} is past the end of the batch tensor`);
  batch.set(frame.tensor, offset);
}
