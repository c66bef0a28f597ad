import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, type Counts } from '../api.ts';
import { CountsChart } from '../components/counts-chart.tsx';

const RANGES = [
  { value: '1h', label: 'Last hour', ms: 3_600_000, bucket: '1m' },
  { value: '24h', label: 'Last 24 hours', ms: 86_400_000, bucket: '1h' },
  { value: '7d', label: 'Last 7 days', ms: 7 * 86_400_000, bucket: '1h' },
  { value: '30d', label: 'Last 30 days', ms: 30 * 86_400_000, bucket: '1d' },
] as const;
const BUCKETS = [
  { value: '1m', label: 'Minute', ms: 60_000 },
  { value: '1h', label: 'Hour', ms: 3_600_000 },
  { value: '1d', label: 'Day', ms: 86_400_000 },
] as const;

/** The zones offered: the browser's own and UTC first, then every zone the browser knows. */
function timeZones(): string[] {
  const own = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const all = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
  return [...new Set([own, 'UTC', ...all])];
}

/** Detections over capture time (GET /analytics/counts): by class, time range, bucket and time zone. */
export function DashboardPage() {
  const zones = useMemo(timeZones, []);
  const [className, setClassName] = useState('');
  const [range, setRange] = useState<(typeof RANGES)[number]['value']>('24h');
  const [bucket, setBucket] = useState<string>('1h');
  const [tz, setTz] = useState(zones[0]!);
  const [counts, setCounts] = useState<Counts | null>(null);
  const [knownClasses, setKnownClasses] = useState<string[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [reloads, setReloads] = useState(0);

  useEffect(() => {
    // The range runs one bucket past now: a video's capture times are its upload time (when the file has
    // no creation time) plus each frame's offset, so a clip that just finished reaches seconds ahead of now.
    const now = Date.now();
    const from = new Date(now - RANGES.find((entry) => entry.value === range)!.ms);
    const to = new Date(now + BUCKETS.find((entry) => entry.value === bucket)!.ms);
    let current = true;
    setError(null);
    api.counts({ className: className === '' ? null : className, from, to, bucket, tz }).then(
      (answer) => {
        if (!current) return;
        setCounts(answer);
        // Classes seen so far: the list to filter by (there is no class catalogue endpoint).
        setKnownClasses((known) => [...new Set([...known, ...answer.series.map((point) => point.className)])].sort());
      },
      (failure: Error) => current && setError(failure.message),
    );
    return () => {
      current = false;
    };
  }, [className, range, bucket, tz, reloads]);

  const total = counts?.series.reduce((sum, point) => sum + point.count, 0) ?? 0;
  return (
    <section>
      <header class="page-header">
        <h1>Dashboard</h1>
        <button type="button" class="secondary" onClick={() => setReloads((n) => n + 1)}>
          Refresh
        </button>
      </header>
      <form class="card controls" onSubmit={(event) => event.preventDefault()}>
        <label>
          Class
          <select value={className} onChange={(event) => setClassName(event.currentTarget.value)}>
            <option value="">All classes</option>
            {knownClasses.map((name) => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
        </label>
        <label>
          Range
          <select
            value={range}
            onChange={(event) => {
              const next = RANGES.find((entry) => entry.value === event.currentTarget.value)!;
              setRange(next.value);
              setBucket(next.bucket);
            }}
          >
            {RANGES.map((entry) => (
              <option key={entry.value} value={entry.value}>
                {entry.label}
              </option>
            ))}
          </select>
        </label>
        <label>
          Bucket
          <select value={bucket} onChange={(event) => setBucket(event.currentTarget.value)}>
            {BUCKETS.map((entry) => (
              <option key={entry.value} value={entry.value}>
                {entry.label}
              </option>
            ))}
          </select>
        </label>
        <label>
          Time zone
          <select value={tz} onChange={(event) => setTz(event.currentTarget.value)}>
            {zones.map((zone) => (
              <option key={zone} value={zone}>
                {zone}
              </option>
            ))}
          </select>
        </label>
      </form>
      {error !== null && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {counts !== null && (
        <div class="card">
          <h2>
            {total} detections{className === '' ? '' : ` of ${className}`}
          </h2>
          <CountsChart counts={counts} />
        </div>
      )}
    </section>
  );
}
