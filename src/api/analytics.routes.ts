import { once } from 'node:events';
import { Router, type Response } from 'express';
import type { AnalyticsRepository, CalendarUnit, ExportedDetection } from '../db/analytics.repository.ts';
import type { VideoCatalog } from '../db/video-catalog.repository.ts';
import { errors } from '../errors/app-error.ts';
import { principalOf, requireScope } from './auth.ts';
import { integerParam, oneOfParam, stringParam, timeParam } from './params.ts';
import { findVisibleVideo, ownerFilter } from './video-access.ts';

const BUCKETS: Record<string, { unit: CalendarUnit; ms: number }> = {
  '1m': { unit: 'minute', ms: 60_000 },
  '1h': { unit: 'hour', ms: 3_600_000 },
  '1d': { unit: 'day', ms: 86_400_000 },
};
const EXPORT_BATCH_ROWS = 1000;
const DAY_MS = 86_400_000;

export interface AnalyticsSettings {
  /** Most buckets one /analytics/counts request may span. */
  analyticsMaxBuckets: number;
}

export function analyticsRoutes(catalog: VideoCatalog, analytics: AnalyticsRepository, settings: AnalyticsSettings): Router {
  const router = Router();

  router.get('/videos/:id/summary', requireScope<{ id: string }>('read'), async (req, res) => {
    const video = await findVisibleVideo(catalog, req.params.id, principalOf(res));
    const bucketSeconds = integerParam(req.query.bucket, 'bucket', { min: 1, max: 3600 }) ?? 10;
    const rows = await analytics.offsetBuckets(video.id, bucketSeconds * 1000);
    const totals = new Map<string, number>();
    const buckets = new Map<number, Record<string, number>>();
    for (const row of rows) {
      totals.set(row.className, (totals.get(row.className) ?? 0) + row.count);
      const counts = buckets.get(row.startMs) ?? {};
      counts[row.className] = row.count;
      buckets.set(row.startMs, counts);
    }
    res.json({
      videoId: video.id,
      bucketSeconds,
      classes: [...totals].map(([className, count]) => ({ className, count })).sort((a, b) => b.count - a.count || a.className.localeCompare(b.className)),
      buckets: [...buckets].map(([startMs, counts]) => ({ startMs, counts })),
    });
  });

  router.get('/analytics/counts', requireScope('read'), async (req, res) => {
    const query = req.query as Record<string, unknown>;
    const bucket = oneOfParam(query.bucket, 'bucket', Object.keys(BUCKETS)) ?? '1h';
    const timeZone = stringParam(query.tz, 'tz') ?? 'UTC';
    const className = stringParam(query.class, 'class');
    const toParam = timeParam(query.to, 'to');
    const fromParam = timeParam(query.from, 'from');
    const to = toParam ?? new Date();
    const from = fromParam ?? new Date(to.getTime() - DAY_MS);
    if (from.getTime() >= to.getTime()) throw errors.badRequest('invalid_query', 'from must be before to');
    const { unit, ms } = BUCKETS[bucket]!;
    if (Math.ceil((to.getTime() - from.getTime()) / ms) > settings.analyticsMaxBuckets) {
      throw errors.badRequest('range_too_large', `from..to spans more than ${settings.analyticsMaxBuckets} buckets of ${bucket}; narrow the range or use a larger bucket`);
    }
    if (!(await analytics.timeZoneExists(timeZone))) throw errors.badRequest('invalid_time_zone', `tz must be an IANA time zone such as Europe/Paris (got "${timeZone}")`);
    const series = await analytics.timeBuckets({ from, to, unit, timeZone, className, ownerKeyId: ownerFilter(principalOf(res)) });
    res.json({ bucket, tz: timeZone, from: from.toISOString(), to: to.toISOString(), series });
  });

  router.get('/videos/:id/detections/export', requireScope<{ id: string }>('read'), async (req, res) => {
    const video = await findVisibleVideo(catalog, req.params.id, principalOf(res));
    const format = oneOfParam(req.query.format, 'format', ['csv', 'json'] as const) ?? 'csv';
    const batches = analytics.exportDetections(video.id, EXPORT_BATCH_ROWS)[Symbol.asyncIterator]();
    // The first batch before any byte is sent: a database that is down is still a JSON 503 here.
    const first = await batches.next();
    res.status(200).set({
      'Content-Type': format === 'csv' ? 'text/csv; charset=utf-8' : 'application/json; charset=utf-8',
      'Content-Disposition': `attachment; filename="${video.id}-detections.${format}"`,
      'Cache-Control': 'no-store',
    });
    await streamExport(res, first, batches, format);
  });
  return router;
}

const CSV_HEADER = 'frame_index,pts_ms,captured_at,class_id,class_name,confidence,x1,y1,x2,y2\n';

/**
 * Writes the rows as they come from the cursor, waiting for the socket to drain, so memory holds one
 * batch whatever the video's size. A client that goes away stops the cursor. An error once the body
 * has started cannot become a JSON error: the connection is cut, so the client sees a broken download.
 */
async function streamExport(
  res: Response,
  first: IteratorResult<ExportedDetection[]>,
  batches: AsyncIterator<ExportedDetection[]>,
  format: 'csv' | 'json',
): Promise<void> {
  const write = async (chunk: string) => {
    if (res.write(chunk)) return;
    const done = new AbortController(); // removes the listener of whichever event did not come
    await Promise.race([once(res, 'drain', { signal: done.signal }), once(res, 'close', { signal: done.signal })]);
    done.abort();
  };
  let rowsWritten = 0;
  const encode = (batch: ExportedDetection[]) => {
    if (format === 'csv') return batch.map(csvLine).join('');
    const text = batch.map((row, index) => (rowsWritten + index === 0 ? '' : ',') + JSON.stringify(jsonRow(row))).join('');
    rowsWritten += batch.length;
    return text;
  };
  try {
    await write(format === 'csv' ? CSV_HEADER : '[');
    for (let next = first; !next.done; next = await batches.next()) {
      if (res.destroyed) break;
      await write(encode(next.value));
    }
    if (res.destroyed) await batches.return?.(); // closes the cursor
    else res.end(format === 'json' ? ']\n' : undefined);
  } catch (error) {
    await batches.return?.().catch(() => undefined);
    res.destroy(error instanceof Error ? error : new Error(String(error)));
  }
}

function jsonRow(row: ExportedDetection) {
  return {
    frameIndex: row.frameIndex,
    ptsMs: row.ptsMs,
    capturedAt: row.capturedAt.toISOString(),
    classId: row.classId,
    className: row.className,
    confidence: row.confidence,
    x1: row.x1,
    y1: row.y1,
    x2: row.x2,
    y2: row.y2,
  };
}

function csvLine(row: ExportedDetection): string {
  return [row.frameIndex, row.ptsMs, row.capturedAt.toISOString(), row.classId, csvField(row.className), row.confidence, row.x1, row.y1, row.x2, row.y2].join(',') + '\n';
}

/** RFC 4180: a field with a comma, quote or line break is quoted, its quotes doubled. */
function csvField(text: string): string {
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}
