import sharp from 'sharp';
import { decodeJpegInto, loadJpegTurbo, type FrameDecoderName } from './jpeg-turbo.ts';
import { computeLetterbox, isScaledCopy, type FrameSize, type Letterbox } from './letterbox-geometry.ts';
import type { PreparedFrame } from './types.ts';

export { computeLetterbox, roundHalfEven, type FrameSize, type Letterbox } from './letterbox-geometry.ts';

/** Ultralytics' padding colour (114, 114, 114). */
export const PAD_VALUE = 114;

/** Bytes of one letterboxed frame: height x width RGB pixels. */
export function frameBytes(imgsz: readonly [number, number]): number {
  return 3 * imgsz[0] * imgsz[1];
}

/**
 * Slot `index` of an NHWC uint8 batch buffer (frameBytes(imgsz) a slot). Frames prepared into consecutive
 * slots of one buffer are already the engine's batch input, so packBatch hands it over without copying them.
 */
export interface BatchSlot {
  batch: Uint8Array;
  index: number;
}

/**
 * Sets libvips up for decoding frames: `threads` per image (the worker's frames already decode in parallel,
 * one per libuv thread, while the engine infers on every core), and no operation cache (every frame is a
 * new image, so caching only costs). Process-wide.
 */
export function tuneImageDecoding(threads: number): void {
  sharp.concurrency(threads);
  sharp.cache(false);
}

/** FRAME_DECODER as asked; which library that is follows from whether the binding loads (currentFrameDecoder). */
let decoderChoice: FrameDecoderName | 'auto' = 'auto';

/**
 * Chooses the library that decodes JPEG frames of the letterbox's size (FRAME_DECODER); process-wide.
 * 'auto' takes libjpeg-turbo when its binding loads. Asking for libjpeg-turbo where it does not load throws.
 * Frames that need a resize, and anything but a 1- or 3-component baseline or progressive JPEG, always go to
 * libvips. Returns the decoder now in use.
 */
export function useFrameDecoder(choice: FrameDecoderName | 'auto'): FrameDecoderName {
  if (choice === 'libjpeg-turbo' && !loadJpegTurbo()) {
    throw new Error('FRAME_DECODER=libjpeg-turbo: the optional package @julusian/jpeg-turbo is not installed or does not load on this platform');
  }
  decoderChoice = choice;
  return currentFrameDecoder();
}

/** The library decoding JPEG frames now (see useFrameDecoder). */
export function currentFrameDecoder(): FrameDecoderName {
  return chosenJpegTurbo() ? 'libjpeg-turbo' : 'libvips';
}

/** The libjpeg-turbo binding when FRAME_DECODER lets it decode and it loads (cached after the first call). */
function chosenJpegTurbo(): ReturnType<typeof loadJpegTurbo> {
  return decoderChoice === 'libvips' ? undefined : loadJpegTurbo();
}

/** Start-of-frame markers libjpeg-turbo decodes: baseline, extended sequential and progressive Huffman. */
const TURBO_SOF_MARKERS = new Set([0xc0, 0xc1, 0xc2]);

/**
 * Decodes a frame and letterboxes it into the network's input: RGB bytes, rows of pixels (HWC), gray 114
 * padding. Pixels stay bytes: normalisation and layout happen inside the model (onnx-preprocess.ts) or the
 * engine, so no loop here touches them.
 *
 * `scaledFrom` is the size of the video the frame was extracted from (FRAME_SIZE makes extraction store
 * frames scaled down to what the letterbox would make of them). A frame that is that video scaled is
 * letterboxed with the video's geometry, so boxes map back to the video's pixels exactly as for a full-size
 * frame; at the letterbox's size it is only padded, otherwise resized to it. A frame of any other size
 * (a rotated video, or no `scaledFrom`) is its own source. EXIF orientation is not applied: frames come from
 * ffmpeg, which writes none.
 */
export async function prepareFrame(image: Buffer, imgsz: [number, number], slot?: BatchSlot, scaledFrom?: FrameSize): Promise<PreparedFrame> {
  const [dstH, dstW] = imgsz;
  const header = jpegFrameSize(image);
  const size = header ?? (await imageSize(image));
  const source = scaledFrom && (size.width !== scaledFrom.width || size.height !== scaledFrom.height) && isScaledCopy(size, scaledFrom) ? scaledFrom : size;
  const box = computeLetterbox(source.width, source.height, dstH, dstW);
  const pixels = slotPixels(imgsz, slot);
  const prepared = { pixels, sourceWidth: source.width, sourceHeight: source.height, scale: box.scale, padLeft: box.left, padTop: box.top };

  const turbo = chosenJpegTurbo();
  const fitsAsItIs = box.newWidth === size.width && box.newHeight === size.height;
  if (turbo && header && fitsAsItIs && (header.components === 3 || header.components === 1) && TURBO_SOF_MARKERS.has(header.sof)) {
    // The stored frame is already the letterbox's size (FRAME_SIZE): decoded where it goes in the slot.
    try {
      if (box.left === 0 && box.right === 0) {
        await decodeJpegInto(turbo, image, box.newWidth, box.newHeight, padAboveAndBelow(box, dstW, dstH, pixels));
      } else {
        const content = new Uint8Array(3 * box.newWidth * box.newHeight);
        await decodeJpegInto(turbo, image, box.newWidth, box.newHeight, content);
        placeLetterboxed(content, box, dstW, dstH, pixels);
      }
      return prepared;
    } catch {
      // A JPEG libjpeg-turbo refuses (truncated, corrupt) goes to libvips, which rewrites the whole slot and
      // either decodes it or names what is wrong (TurboJPEG's own message is often just "No error").
    }
  }

  // A 3-component JPEG decodes to RGB as it is; anything else (greyscale, CMYK, PNG with alpha) is made 3-channel sRGB.
  let pipeline = sharp(image, { sequentialRead: true });
  if (header?.components !== 3) pipeline = pipeline.removeAlpha().toColourspace('srgb');
  // Like Ultralytics, only resample when the size changes; 'linear' is the closest kernel to cv2.INTER_LINEAR.
  // A JPEG shrunk by 2 or more is decoded at a reduced size first (libvips' shrink-on-load).
  if (box.newWidth !== size.width || box.newHeight !== size.height) {
    pipeline = pipeline.resize(box.newWidth, box.newHeight, { fit: 'fill', kernel: 'linear' });
  }
  const { data, info } = await pipeline.raw().toBuffer({ resolveWithObject: true });
  if (info.width !== box.newWidth || info.height !== box.newHeight || info.channels !== 3) {
    throw new Error(`prepareFrame: expected ${box.newWidth}x${box.newHeight}x3 after decoding, got ${info.width}x${info.height}x${info.channels}`);
  }
  placeLetterboxed(data, box, dstW, dstH, pixels);
  return prepared;
}

/** The bytes a frame is letterboxed into: its slot of a batch buffer, or a new frame. */
function slotPixels(imgsz: [number, number], slot: BatchSlot | undefined): Uint8Array {
  const bytes = frameBytes(imgsz);
  if (!slot) return new Uint8Array(bytes);
  const offset = slot.index * bytes;
  if (offset + bytes > slot.batch.length) throw new RangeError(`prepareFrame: batch slot ${slot.index} is past the end of the batch buffer`);
  return slot.batch.subarray(offset, offset + bytes);
}

/** Fills the padding rows above and below the image in `out` (dstW x dstH RGB); returns the image's rows. */
function padAboveAndBelow(box: Letterbox, dstW: number, dstH: number, out: Uint8Array): Uint8Array {
  const row = 3 * dstW;
  const top = box.top * row;
  const bottom = (box.top + box.newHeight) * row;
  out.fill(PAD_VALUE, 0, top);
  out.fill(PAD_VALUE, bottom, dstH * row);
  return out.subarray(top, bottom);
}

/** Copies the resized image (newWidth x newHeight RGB) into `out` (dstW x dstH) at the letterbox offsets, padding around it. */
export function placeLetterboxed(content: Uint8Array, box: Letterbox, dstW: number, dstH: number, out: Uint8Array): void {
  const row = 3 * dstW;
  const contentRow = 3 * box.newWidth;
  const rows = padAboveAndBelow(box, dstW, dstH, out);
  if (box.left === 0 && box.right === 0) {
    rows.set(content.subarray(0, rows.length)); // full-width rows are one block
    return;
  }
  const left = 3 * box.left;
  for (let y = 0; y < box.newHeight; y++) {
    const start = y * row;
    rows.fill(PAD_VALUE, start, start + left);
    rows.set(content.subarray(y * contentRow, (y + 1) * contentRow), start + left);
    rows.fill(PAD_VALUE, start + left + contentRow, start + row);
  }
}

/**
 * Width and height from a JPEG's start-of-frame header, without decoding (undefined for anything else, which
 * sharp then reads). The size decides the decode (shrink-on-load, or none) before libvips is called.
 */
export function jpegFrameSize(bytes: Uint8Array): (FrameSize & { components: number; sof: number }) | undefined {
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) return undefined;
  let pos = 2;
  while (pos + 4 <= bytes.length) {
    if (bytes[pos] !== 0xff) return undefined;
    const marker = bytes[pos + 1]!;
    if (marker === 0xff) {
      pos += 1; // fill byte
      continue;
    }
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      pos += 2; // markers without a length
      continue;
    }
    const length = (bytes[pos + 2]! << 8) | bytes[pos + 3]!;
    // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC): precision, height, width, components.
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      if (pos + 10 > bytes.length || length < 8) return undefined;
      const height = (bytes[pos + 5]! << 8) | bytes[pos + 6]!;
      const width = (bytes[pos + 7]! << 8) | bytes[pos + 8]!;
      return width > 0 && height > 0 ? { width, height, components: bytes[pos + 9]!, sof: marker } : undefined;
    }
    if (marker === 0xda || length < 2) return undefined; // scan data before a frame header: not a JPEG we know
    pos += 2 + length;
  }
  return undefined;
}

async function imageSize(image: Buffer): Promise<FrameSize> {
  const meta = await sharp(image).metadata();
  if (!meta.width || !meta.height) throw new Error('prepareFrame: could not read the image size');
  return { width: meta.width, height: meta.height };
}

/** v / 255 for every byte value: exact like Ultralytics' `/ 255` and cheaper than dividing per pixel. */
const BYTE_TO_UNIT = Float32Array.from({ length: 256 }, (_, v) => v / 255);

/**
 * Interleaved RGB bytes (HWC) into planar float32 (CHW) in [0, 1], for an engine whose model takes the
 * float input (a graph the preprocessing fold refused), or for tests: one pass; several frames back to back
 * in `rgb` give their planes back to back.
 */
export function hwcToChw(rgb: Uint8Array, pixels: number, out: Float32Array = new Float32Array(rgb.length)): Float32Array {
  const lut = BYTE_TO_UNIT;
  for (let frame = 0; frame * 3 * pixels < rgb.length; frame++) {
    const src = frame * 3 * pixels;
    const r = src;
    const g = r + pixels;
    const b = g + pixels;
    for (let i = 0, j = src; i < pixels; i++, j += 3) {
      out[r + i] = lut[rgb[j]!]!;
      out[g + i] = lut[rgb[j + 1]!]!;
      out[b + i] = lut[rgb[j + 2]!]!;
    }
  }
  return out;
}

/**
 * The NHWC uint8 input of one engine run: `frames` checked against the model's input size and packed into a
 * tensor of `batch` slots (zero padding after the frames, for fixed-batch models). A single frame in a
 * batch of one, or frames already in consecutive slots of one buffer, are returned without a copy.
 */
export function packBatch(frames: readonly PreparedFrame[], imgsz: readonly [number, number], batch = frames.length): Uint8Array {
  const size = frameBytes(imgsz);
  for (const frame of frames) {
    if (frame.pixels.length !== size) throw new Error(`frame has ${frame.pixels.length} bytes, the model takes ${imgsz[0]}x${imgsz[1]}x3`);
  }
  if (frames.length === 0 || frames.length > batch) throw new Error(`the model takes 1 to ${batch} frames per run, got ${frames.length}`);
  if (batch === 1) return frames[0]!.pixels;
  // Frames that prepareFrame wrote into consecutive slots of one buffer are the batch already: a view, no copy.
  const first = frames[0]!.pixels;
  if (frames.length === batch && frames.every((f, i) => f.pixels.buffer === first.buffer && f.pixels.byteOffset === first.byteOffset + i * size)) {
    return new Uint8Array(first.buffer, first.byteOffset, batch * size);
  }
  const data = new Uint8Array(batch * size);
  frames.forEach((frame, i) => writeFrameToBatch(data, frame, i));
  return data;
}

/** Copies a prepared frame into slot `index` of an NHWC batch (for dynamic-batch models). */
export function writeFrameToBatch(batch: Uint8Array, frame: PreparedFrame, index: number): void {
  const offset = index * frame.pixels.length;
  if (offset + frame.pixels.length > batch.length) throw new RangeError(`batch slot ${index} is past the end of the batch tensor`);
  batch.set(frame.pixels, offset);
}
