import type { TransactionSql } from 'postgres';
import type { Sql } from './client.ts';

export type CalendarUnit = 'minute' | 'hour' | 'day';

export interface OffsetBucketCount {
  /** Start of the bucket in the video's offset (pts), milliseconds. */
  startMs: number;
  className: string;
  count: number;
}

export interface CountsQuery {
  from: Date;
  /** Exclusive. */
  to: Date;
  unit: CalendarUnit;
  /** An IANA zone known to PostgreSQL (see timeZoneExists). */
  timeZone: string;
  className?: string;
  /** Only detections of this key's videos; undefined: all (admin). */
  ownerKeyId?: string;
}

export interface TimeBucketCount {
  /** ISO 8601 with the zone's offset at that time, e.g. 2024-10-27T02:00:00+01:00. */
  bucketStart: string;
  className: string;
  count: number;
}

export interface ExportedDetection {
  frameIndex: number;
  ptsMs: number;
  capturedAt: Date;
  classId: number;
  className: string;
  confidence: number;
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}

export interface AnalyticsRepository {
  /** Detections of one video per class and per `bucketMs` of its offset; empty buckets are absent. */
  offsetBuckets(videoId: string, bucketMs: number): Promise<OffsetBucketCount[]>;
  /** Detections per class per calendar bucket of captured_at in a time zone (DST-aware). */
  timeBuckets(query: CountsQuery): Promise<TimeBucketCount[]>;
  timeZoneExists(name: string): Promise<boolean>;
  /** A video's detections in frame order, `batchSize` rows at a time through a server-side cursor. */
  exportDetections(videoId: string, batchSize: number): AsyncIterable<ExportedDetection[]>;
}

interface ExportRow {
  frame_index: number;
  pts_ms: number;
  captured_at: Date;
  class_id: number;
  class_name: string;
  confidence: number;
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}

export class PgAnalyticsRepository implements AnalyticsRepository {
  private timeZones: Promise<Set<string>> | undefined;

  constructor(private readonly sql: Sql) {}

  async offsetBuckets(videoId: string, bucketMs: number): Promise<OffsetBucketCount[]> {
    const rows = await offsetBucketsQuery(this.sql, videoId, bucketMs);
    return rows.map((row) => ({ startMs: Number(row.start_ms), className: row.class_name, count: row.count }));
  }

  async timeBuckets(query: CountsQuery): Promise<TimeBucketCount[]> {
    return this.sql.begin(async (tx) => {
      // The session zone of this transaction only: to_char's TZH:TZM then prints each bucket's own offset.
      await tx`SELECT set_config('TimeZone', ${query.timeZone}, true)`;
      const rows = await timeBucketsQuery(tx, query);
      return rows.map((row) => ({ bucketStart: row.bucket_start, className: row.class_name, count: row.count }));
    });
  }

  async timeZoneExists(name: string): Promise<boolean> {
    // pg_timezone_names reads the zone files on every query (hundreds of ms): read it once per process.
    this.timeZones ??= this.sql<{ name: string }[]>`SELECT name FROM pg_timezone_names`.then((rows) => new Set(rows.map((row) => row.name)));
    try {
      return (await this.timeZones).has(name);
    } catch (error) {
      this.timeZones = undefined; // a failed read (database down) is tried again next time
      throw error;
    }
  }

  async *exportDetections(videoId: string, batchSize: number): AsyncIterable<ExportedDetection[]> {
    const cursor = this.sql<ExportRow[]>`
      SELECT frame_index, pts_ms, captured_at, class_id, class_name, confidence, x1, y1, x2, y2
      FROM detections WHERE video_id = ${videoId}
      ORDER BY frame_index, id`.cursor(batchSize);
    for await (const rows of cursor) {
      yield rows.map((row) => ({
        frameIndex: row.frame_index,
        ptsMs: row.pts_ms,
        capturedAt: row.captured_at,
        classId: row.class_id,
        className: row.class_name,
        confidence: row.confidence,
        x1: row.x1,
        y1: row.y1,
        x2: row.x2,
        y2: row.y2,
      }));
    }
  }
}

// The statements, built apart from their execution so a test can EXPLAIN exactly what runs.

/** Served by detections_video_frame_idx (video_id, frame_index). */
export function offsetBucketsQuery(sql: Sql | TransactionSql, videoId: string, bucketMs: number) {
  return sql<{ start_ms: number; class_name: string; count: number }[]>`
    SELECT (floor(pts_ms / ${bucketMs}::float8) * ${bucketMs})::bigint AS start_ms, class_name, count(*)::int AS count
    FROM detections WHERE video_id = ${videoId}
    GROUP BY 1, 2 ORDER BY 1, 2`;
}

/**
 * date_trunc(unit, t, zone) truncates in local time and maps back to the right instant, also across DST
 * (a 23 h or 25 h day; the repeated autumn hour stays two buckets). Served by detections_time_idx or
 * detections_class_time_idx (a captured_at range). Run where TimeZone is the query's zone (see timeBuckets).
 */
export function timeBucketsQuery(sql: Sql | TransactionSql, { from, to, unit, timeZone, className, ownerKeyId }: CountsQuery) {
  return sql<{ bucket_start: string; class_name: string; count: number }[]>`
    SELECT to_char(b.bucket, 'YYYY-MM-DD"T"HH24:MI:SSTZH:TZM') AS bucket_start, b.class_name, b.count
    FROM (
      SELECT date_trunc(${unit}::text, d.captured_at, ${timeZone}::text) AS bucket, d.class_name, count(*)::int AS count
      FROM detections d
      WHERE d.captured_at >= ${from} AND d.captured_at < ${to}
        ${className === undefined ? sql`` : sql`AND d.class_name = ${className}`}
        ${ownerKeyId === undefined ? sql`` : sql`AND d.video_id IN (SELECT id FROM videos WHERE owner_key_id = ${ownerKeyId})`}
      GROUP BY 1, 2
    ) b
    ORDER BY b.bucket, b.class_name`;
}
