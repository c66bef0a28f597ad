import type { Counts } from '../api.ts';
import { classesByCount, niceTicks, stackBuckets } from '../lib/charts.ts';
import { classColor } from '../lib/overlay.ts';

const WIDTH = 880;
const HEIGHT = 280;
const MARGIN = { top: 12, right: 12, bottom: 36, left: 48 };
const BUCKET_MS = { '1m': 60_000, '1h': 3_600_000, '1d': 86_400_000 } as const;

/**
 * Detections per bucket of capture time as stacked bars (one colour per class) on a time axis from the
 * query's `from` to `to`; times are shown in the chosen zone. Each segment is titled with its count.
 */
export function CountsChart({ counts }: { counts: Counts }) {
  const classes = classesByCount(counts.series);
  const bars = stackBuckets(counts.series, classes);
  if (bars.length === 0) return <p class="muted">No detections in this range.</p>;
  const from = Date.parse(counts.from);
  const to = Date.parse(counts.to);
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const ticks = niceTicks(Math.max(...bars.map((bar) => bar.total)));
  const top = ticks[ticks.length - 1]!;
  const x = (ms: number) => MARGIN.left + ((ms - from) / Math.max(1, to - from)) * plotWidth;
  const y = (count: number) => MARGIN.top + plotHeight - (count / top) * plotHeight;
  const barWidth = Math.max(2, (BUCKET_MS[counts.bucket] / Math.max(1, to - from)) * plotWidth - 1);
  const time = new Intl.DateTimeFormat(undefined, {
    timeZone: counts.tz,
    ...(counts.bucket === '1d' ? { month: 'short', day: 'numeric' } : { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' }),
  });
  const timeTicks = [0, 0.25, 0.5, 0.75, 1].map((share) => from + share * (to - from));
  return (
    <figure class="chart">
      <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label={`Detections per ${counts.bucket} bucket, ${counts.tz}`}>
        {ticks.map((tick) => (
          <g key={tick} class="grid">
            <line x1={MARGIN.left} x2={WIDTH - MARGIN.right} y1={y(tick)} y2={y(tick)} />
            <text x={MARGIN.left - 6} y={y(tick) + 4} text-anchor="end">
              {tick}
            </text>
          </g>
        ))}
        {timeTicks.map((ms, index) => (
          <text key={ms} class="axis-label" x={x(ms)} y={HEIGHT - 12} text-anchor={index === 0 ? 'start' : index === timeTicks.length - 1 ? 'end' : 'middle'}>
            {time.format(ms)}
          </text>
        ))}
        {bars.map((bar) =>
          bar.segments.map((segment) => (
            <rect
              key={`${bar.bucketStart}-${segment.className}`}
              x={x(Math.max(from, bar.startMs))}
              y={y(segment.from + segment.count)}
              width={Math.max(2, Math.min(barWidth, WIDTH - MARGIN.right - x(Math.max(from, bar.startMs))))}
              height={Math.max(1, y(segment.from) - y(segment.from + segment.count))}
              fill={classColor(segment.className)}
            >
              <title>{`${segment.className}: ${segment.count} at ${time.format(bar.startMs)}`}</title>
            </rect>
          )),
        )}
      </svg>
      <figcaption class="legend">
        {classes.map((className) => (
          <span key={className}>
            <i style={{ background: classColor(className) }} /> {className}
          </span>
        ))}
      </figcaption>
    </figure>
  );
}
