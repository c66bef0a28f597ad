/** How numbers reach people: durations, ETAs, sizes, progress. Pure. */

/** 79500 -> "1:19"; 3723000 -> "1:02:03"; null -> "unknown". */
export function formatDuration(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms) || ms < 0) return 'unknown';
  const total = Math.floor(ms / 1000);
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = String(total % 60).padStart(2, '0');
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, '0')}:${seconds}` : `${minutes}:${seconds}`;
}

/** Time left, rounded the way people say it: "12 s", "about 3 min", "about 2 h 5 min"; null when unknown. */
export function formatEta(seconds: number | null): string | null {
  if (seconds === null || !Number.isFinite(seconds) || seconds < 0) return null;
  if (seconds < 60) return `${Math.max(1, Math.round(seconds))} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `about ${minutes} min`;
  const hours = Math.floor(minutes / 60);
  const rest = minutes % 60;
  return rest === 0 ? `about ${hours} h` : `about ${hours} h ${rest} min`;
}

/** 1536 -> "1.5 KB", 40_000_000 -> "38.1 MB" (binary units, one decimal below 100). */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value < 100 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

/** Share of frames settled (done or failed), 0-100; null while the total is unknown. */
export function progressPercent(framesDone: number, framesFailed: number, framesTotal: number | null): number | null {
  if (framesTotal === null) return null;
  if (framesTotal === 0) return 100;
  return Math.min(100, Math.floor(((framesDone + framesFailed) / framesTotal) * 100));
}

/** "person 0.87": how a detection box is titled (two decimals, as the API's confidence is a float). */
export function detectionTitle(className: string, confidence: number): string {
  return `${className} ${confidence.toFixed(2)}`;
}
