/**
 * Letterbox geometry, without image code: the worker's preprocessing and the API's frame extraction
 * (which scales frames to the size the letterbox would) must agree on it to the pixel.
 */

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

export interface FrameSize {
  width: number;
  height: number;
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
 * The size frames of a `source`-sized video are stored at when extraction scales them to fit `box`
 * (FRAME_SIZE): exactly the letterbox's resized size, so the worker pads them without resampling again.
 * undefined when the source already fits (frames are never scaled up: the letterbox does that, if at all).
 */
export function scaledFrameSize(source: FrameSize, box: FrameSize): FrameSize | undefined {
  const { newWidth, newHeight, scale } = computeLetterbox(source.width, source.height, box.height, box.width);
  return scale < 1 ? { width: newWidth, height: newHeight } : undefined;
}

/**
 * Whether a frame of `frame` size is `source` scaled on both axes by one factor, to the pixel (each side
 * is rounded on its own). A rotated frame (ffmpeg applies a display rotation) is not.
 */
export function isScaledCopy(frame: FrameSize, source: FrameSize): boolean {
  return Math.abs(frame.width * source.height - frame.height * source.width) <= Math.max(source.width, source.height);
}
