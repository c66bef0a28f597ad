import { createRequire } from 'node:module';

/**
 * The part of `@julusian/jpeg-turbo` (libjpeg-turbo's TurboJPEG API, prebuilt for Linux, macOS and Windows)
 * that frame decoding uses: a JPEG decoded on libuv's thread pool straight into a caller's buffer.
 */
interface JpegTurboBinding {
  FORMAT_RGB: number;
  decompress(image: Buffer, out: Buffer, options: { format: number }): Promise<{ data: Buffer; width: number; height: number; size: number }>;
}

/** Which library decodes the worker's JPEG frames (FRAME_DECODER). */
export type FrameDecoderName = 'libjpeg-turbo' | 'libvips';

let binding: JpegTurboBinding | null | undefined;

/** Seam for tests: how the binding is loaded (a test makes it fail, as on a platform without it). */
export const jpegTurboLoader = {
  load: (): JpegTurboBinding => createRequire(import.meta.url)('@julusian/jpeg-turbo') as JpegTurboBinding,
};

/**
 * The optional libjpeg-turbo binding, or undefined where it is not installed or will not load (an
 * optional dependency: no prebuilt binary for the platform, or an install that skipped it). Loaded once.
 */
export function loadJpegTurbo(): JpegTurboBinding | undefined {
  if (binding === undefined) {
    try {
      binding = jpegTurboLoader.load();
    } catch {
      binding = null;
    }
  }
  return binding ?? undefined;
}

/** Forgets the loaded binding, so the next loadJpegTurbo loads again (tests of the loader seam). */
export function forgetJpegTurbo(): void {
  binding = undefined;
}

/**
 * Decodes a JPEG of exactly `width` x `height` into `out` as RGB rows (3 * width bytes each, no gaps):
 * libjpeg-turbo writes the pixels where they belong, so the frame is neither allocated nor copied.
 * Only for JPEGs of 1 or 3 components (greyscale is expanded to RGB; CMYK is not handled here).
 */
export async function decodeJpegInto(turbo: JpegTurboBinding, jpeg: Buffer, width: number, height: number, out: Uint8Array): Promise<void> {
  const bytes = 3 * width * height;
  if (out.length < bytes) throw new RangeError(`decodeJpegInto: ${out.length} bytes cannot hold a ${width}x${height} RGB frame`);
  const target = Buffer.from(out.buffer, out.byteOffset, bytes);
  const decoded = await turbo.decompress(jpeg, target, { format: turbo.FORMAT_RGB });
  // The header read before decoding decided the size; a JPEG whose frame header says otherwise is not trusted.
  if (decoded.width !== width || decoded.height !== height) {
    throw new Error(`decodeJpegInto: expected ${width}x${height}, the JPEG decoded to ${decoded.width}x${decoded.height}`);
  }
}
