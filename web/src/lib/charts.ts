/** Layout of the per-video timeline and the dashboard's counts chart. Pure. */

const NICE_BUCKETS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];

/** A summary bucket size (seconds) that cuts a video into at most `maxBuckets` bars. */
export function timelineBucketSeconds(durationMs: number | null, maxBuckets = 60): number {
  if (durationMs === null || durationMs <= 0) return 10;
  return NICE_BUCKETS.find((seconds) => durationMs / 1000 / seconds <= maxBuckets) ?? 3600;
}

export interface SummaryLike {
  classes: Array<{ className: string; count: number }>;
  buckets: Array<{ startMs: number; counts: Record<string, number> }>;
}

export interface TimelineLane {
  className: string;
  total: number;
  /** The lane's largest bucket: bars are scaled to it, so a rare class's pattern shows as well as a common one's. */
  maxCount: number;
  bars: Array<{ startMs: number; count: number }>;
}

/** One lane per class (most detections first), each with its non-empty buckets in time order. */
export function timelineLanes(summary: SummaryLike): TimelineLane[] {
  return [...summary.classes]
    .sort((a, b) => b.count - a.count || a.className.localeCompare(b.className))
    .map(({ className, count }) => {
      const bars = summary.buckets
        .flatMap((bucket) => {
          const n = bucket.counts[className] ?? 0;
          return n > 0 ? [{ startMs: bucket.startMs, count: n }] : [];
        })
        .sort((a, b) => a.startMs - b.startMs);
      return { className, total: count, maxCount: Math.max(0, ...bars.map((bar) => bar.count)), bars };
    });
}

export interface CountPoint {
  bucketStart: string;
  className: string;
  count: number;
}

export interface StackedBar {
  bucketStart: string;
  startMs: number;
  total: number;
  segments: Array<{ className: string; count: number; from: number }>;
}

/** The analytics series as one stacked bar per bucket (classes in a fixed order), in time order. */
export function stackBuckets(series: CountPoint[], classOrder: string[]): StackedBar[] {
  const byBucket = new Map<string, Map<string, number>>();
  for (const point of series) {
    const counts = byBucket.get(point.bucketStart) ?? new Map<string, number>();
    counts.set(point.className, (counts.get(point.className) ?? 0) + point.count);
    byBucket.set(point.bucketStart, counts);
  }
  return [...byBucket.entries()]
    .map(([bucketStart, counts]) => {
      let from = 0;
      const segments = classOrder.flatMap((className) => {
        const count = counts.get(className) ?? 0;
        if (count === 0) return [];
        const segment = { className, count, from };
        from += count;
        return [segment];
      });
      return { bucketStart, startMs: Date.parse(bucketStart), total: from, segments };
    })
    .sort((a, b) => a.startMs - b.startMs);
}

/** Classes by total count, most first (ties by name), as the chart's legend and stacking order. */
export function classesByCount(series: CountPoint[]): string[] {
  const totals = new Map<string, number>();
  for (const point of series) totals.set(point.className, (totals.get(point.className) ?? 0) + point.count);
  return [...totals.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([name]) => name);
}

/** About `count` round values from 0 to at least max, for an axis. */
export function niceTicks(max: number, count = 4): number[] {
  if (max <= 0) return [0];
  const rough = max / count;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((candidate) => candidate >= rough)!;
  const ticks: number[] = [];
  for (let value = 0; value < max + step; value += step) ticks.push(value);
  return ticks;
}
