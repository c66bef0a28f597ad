import type { DetectOptions, Detection, PreparedFrame } from './types.ts';

/** What decoding needs from a prepared frame: the letterbox mapping back to source pixels. */
export type LetterboxMapping = Pick<PreparedFrame, 'sourceWidth' | 'sourceHeight' | 'scale' | 'padLeft' | 'padTop'>;

/** Ultralytics' max_nms: at most this many candidates (highest scores) go into NMS. */
const MAX_NMS_CANDIDATES = 30000;

type Box = readonly [number, number, number, number] | Float32Array | number[];

/** Intersection over union of two [x1, y1, x2, y2] boxes (torchvision's definition: no +1 on sizes). */
export function iou(a: Box, b: Box): number {
  return iouAt(a, 0, b, 0);
}

function iouAt(a: Box, ai: number, b: Box, bi: number): number {
  const ax1 = a[ai]!, ay1 = a[ai + 1]!, ax2 = a[ai + 2]!, ay2 = a[ai + 3]!;
  const bx1 = b[bi]!, by1 = b[bi + 1]!, bx2 = b[bi + 2]!, by2 = b[bi + 3]!;
  const iw = Math.min(ax2, bx2) - Math.max(ax1, bx1);
  const ih = Math.min(ay2, by2) - Math.max(ay1, by1);
  if (iw <= 0 || ih <= 0) return 0;
  const inter = iw * ih;
  const union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter;
  return union > 0 ? inter / union : 0;
}

/**
 * Decodes one image's raw YOLOv8 head output, laid out [4 + numClasses, numAnchors] channel-major
 * (cx, cy, w, h rows, then per-class scores already through sigmoid), the way Ultralytics'
 * non_max_suppression does with multi_label=False, agnostic=False: best class per anchor, score >
 * threshold, greedy NMS within each class (suppress IoU > iouThreshold), at most maxDetections, then
 * boxes mapped from letterboxed to source pixels and clipped. Results are sorted by confidence, descending.
 */
/**
 * Decodes one run's raw output ([N ≥ frames, 4 + classes, anchors], row-major) into one detection list
 * per frame, in order; rows past the frames (a fixed batch's padding) are ignored.
 */
export function decodeYoloBatch(
  values: Float32Array,
  dims: readonly number[],
  frames: readonly LetterboxMapping[],
  names: readonly string[],
  options: DetectOptions,
): Detection[][] {
  const [, channels, anchors] = dims;
  if (dims.length !== 3 || channels === undefined || anchors === undefined) throw new Error(`model output has shape [${dims.join(', ')}], expected [batch, 4 + classes, anchors]`);
  const perImage = channels * anchors;
  return frames.map((frame, i) => decodeYoloOutput(values.subarray(i * perImage, (i + 1) * perImage), anchors, channels - 4, frame, names, options));
}

export function decodeYoloOutput(
  output: Float32Array,
  numAnchors: number,
  numClasses: number,
  frame: LetterboxMapping,
  names: readonly string[],
  options: DetectOptions,
  maxDetections = 300,
): Detection[] {
  if (!(numClasses >= 1)) throw new RangeError(`YOLO output needs at least one class, got ${numClasses}`);
  const channels = 4 + numClasses;
  if (output.length < channels * numAnchors) {
    throw new RangeError(`YOLO output has ${output.length} values, expected ${channels} x ${numAnchors}`);
  }
  const threshold = options.confidenceThreshold;

  // Best class per anchor, scanning row by row so memory is read sequentially (anchor-major would
  // stride numAnchors floats per class); two typed arrays instead of an object per anchor.
  const best = output.slice(4 * numAnchors, 5 * numAnchors);
  const bestClass = new Uint32Array(numAnchors);
  for (let c = 1; c < numClasses; c++) {
    const row = (4 + c) * numAnchors;
    for (let a = 0; a < numAnchors; a++) {
      const s = output[row + a]!;
      if (s > best[a]!) {
        best[a] = s;
        bestClass[a] = c;
      }
    }
  }

  let candidates: number[] = [];
  for (let a = 0; a < numAnchors; a++) if (best[a]! > threshold) candidates.push(a);
  if (candidates.length === 0) return [];
  candidates.sort((x, y) => best[y]! - best[x]!);
  if (candidates.length > MAX_NMS_CANDIDATES) candidates = candidates.slice(0, MAX_NMS_CANDIDATES);

  // Boxes (letterbox space, xyxy) of kept detections, flat; NMS only compares within a class.
  const keptBoxes = new Float32Array(4 * Math.min(maxDetections, candidates.length));
  const keptAnchor: number[] = [];
  const keptByClass = new Map<number, number[]>();
  const box = new Float32Array(4);
  for (const a of candidates) {
    if (keptAnchor.length >= maxDetections) break;
    const cx = output[a]!, cy = output[numAnchors + a]!;
    const hw = output[2 * numAnchors + a]! / 2, hh = output[3 * numAnchors + a]! / 2;
    box[0] = cx - hw;
    box[1] = cy - hh;
    box[2] = cx + hw;
    box[3] = cy + hh;
    const cls = bestClass[a]!;
    let same = keptByClass.get(cls);
    let suppressed = false;
    if (same) {
      for (const k of same) {
        if (iouAt(box, 0, keptBoxes, 4 * k) > options.iouThreshold) {
          suppressed = true;
          break;
        }
      }
    } else {
      same = [];
      keptByClass.set(cls, same);
    }
    if (suppressed) continue;
    const k = keptAnchor.length;
    keptBoxes.set(box, 4 * k);
    keptAnchor.push(a);
    same.push(k);
  }

  const { scale, padLeft, padTop, sourceWidth: w, sourceHeight: h } = frame;
  const clip = (v: number, max: number): number => (v < 0 ? 0 : v > max ? max : v);
  return keptAnchor.map((a, k): Detection => {
    const classId = bestClass[a]!;
    const o = 4 * k;
    return {
      classId,
      className: names[classId] ?? `class ${classId}`,
      confidence: best[a]!,
      box: [
        clip((keptBoxes[o]! - padLeft) / scale, w),
        clip((keptBoxes[o + 1]! - padTop) / scale, h),
        clip((keptBoxes[o + 2]! - padLeft) / scale, w),
        clip((keptBoxes[o + 3]! - padTop) / scale, h),
      ],
    };
  });
}
