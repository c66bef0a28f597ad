/**
 * Geometry and timing of the detection overlay drawn over the playing preview. Pure (no DOM), so the
 * same code is unit-tested and runs in the page.
 */
export interface Size {
  width: number;
  height: number;
}

export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

/**
 * Where the picture sits inside a <video> element of `element` size under object-fit: contain: scaled
 * to fit, centred, with bars on the two sides or above and below (letterboxing).
 */
export function containedRect(element: Size, picture: Size): Rect {
  if (picture.width <= 0 || picture.height <= 0 || element.width <= 0 || element.height <= 0) return { x: 0, y: 0, width: 0, height: 0 };
  const scale = Math.min(element.width / picture.width, element.height / picture.height);
  const width = picture.width * scale;
  const height = picture.height * scale;
  return { x: (element.width - width) / 2, y: (element.height - height) / 2, width, height };
}

/**
 * A box [x1, y1, x2, y2] in source pixels (the uploaded video's width x height, what the detector saw)
 * placed on the picture's rectangle in the element. The preview may be smaller than the source (720p at
 * most) but keeps its aspect ratio, so proportions carry over.
 */
export function boxOnPicture(box: readonly [number, number, number, number], source: Size, picture: Rect): Rect {
  const sx = picture.width / source.width;
  const sy = picture.height / source.height;
  const [x1, y1, x2, y2] = box;
  return { x: picture.x + x1 * sx, y: picture.y + y1 * sy, width: (x2 - x1) * sx, height: (y2 - y1) * sy };
}

/** Position, in ptsMs (ascending), of the frame nearest to timeMs; the earlier one on a tie; -1 when there is none. */
export function nearestFrame(ptsMs: readonly number[], timeMs: number): number {
  if (ptsMs.length === 0) return -1;
  let low = 0;
  let high = ptsMs.length - 1;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (ptsMs[middle]! < timeMs) low = middle + 1;
    else high = middle;
  }
  // low: the first frame at or after timeMs (or the last frame); the one before may be nearer.
  if (low > 0 && timeMs - ptsMs[low - 1]! <= ptsMs[low]! - timeMs) return low - 1;
  return low;
}

export interface DetectionFilter {
  /** Classes not drawn (unticked in the class filter). */
  hidden: ReadonlySet<string>;
  minConfidence: number;
}

export function isShown(detection: { className: string; confidence: number }, filter: DetectionFilter): boolean {
  return !filter.hidden.has(detection.className) && detection.confidence >= filter.minConfidence;
}

/** Distinct colours for the classes street and surveillance video shows most, so they never look alike. */
const CLASS_COLORS: Readonly<Record<string, string>> = {
  person: 'hsl(217 91% 60%)',
  car: 'hsl(0 84% 60%)',
  truck: 'hsl(38 92% 50%)',
  bus: 'hsl(271 81% 66%)',
  bicycle: 'hsl(160 84% 39%)',
  motorcycle: 'hsl(330 81% 60%)',
  dog: 'hsl(84 81% 44%)',
  handbag: 'hsl(187 85% 43%)',
  backpack: 'hsl(25 95% 53%)',
  umbrella: 'hsl(292 84% 61%)',
};

/** A stable colour per class name (the table above, else a hue from its characters), the same on every page. */
export function classColor(className: string): string {
  const known = CLASS_COLORS[className];
  if (known !== undefined) return known;
  let hash = 0;
  for (const char of className) hash = (hash * 31 + char.charCodeAt(0)) >>> 0;
  return `hsl(${hash % 360} 85% 55%)`;
}
