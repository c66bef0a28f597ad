import { randomBytes, randomUUID } from 'node:crypto';
import postgres from 'postgres';
import { createSql, type Sql } from '../../src/db/client.ts';
import { migrate } from '../../src/db/migrate.ts';
import type { NewVideo } from '../../src/db/types.ts';

const ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase {
  name: string;
  url: string;
  sql: Sql;
  drop(): Promise<void>;
}

/** A fresh, migrated database of its own for one test file (or benchmark run); drop() removes it. */
export async function createTestDatabase(options: { migrate?: boolean } = {}): Promise<TestDatabase> {
  const name = `vidsense_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  const admin = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  const sql = createSql(url.toString(), { max: 4 });
  if (options.migrate !== false) await migrate(sql);
  return {
    name,
    url: url.toString(),
    sql,
    async drop() {
      await sql.end({ timeout: 5 });
      const cleanup = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
      try {
        await cleanup.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await cleanup.end();
      }
    },
  };
}

/** The single row of a query result (fails the test if there is not exactly one). */
export function onlyRow<T>(rows: readonly T[]): T {
  if (rows.length !== 1) throw new Error(`expected one row, got ${rows.length}`);
  return rows[0]!;
}

/**
 * A video's results as sorted, comparable rows straight from PostgreSQL: every frame (with its error)
 * and every box with all its columns, floats to 6 significant digits (float4 holds about 7).
 */
export async function detectionRows(sql: Sql, videoId: string): Promise<string[]> {
  const float = (x: number) => x.toPrecision(6);
  const frames = await sql<{ frame_index: number; pts_ms: number; detection_count: number; error: string | null }[]>`
    SELECT frame_index, pts_ms, detection_count, error FROM frames WHERE video_id = ${videoId}`;
  const boxes = await sql<{ frame_index: number; pts_ms: number; class_id: number; class_name: string; confidence: number; x1: number; y1: number; x2: number; y2: number }[]>`
    SELECT frame_index, pts_ms, class_id, class_name, confidence, x1, y1, x2, y2 FROM detections WHERE video_id = ${videoId}`;
  return [
    ...frames.map((f) => `frame ${f.frame_index} ${f.pts_ms} ${f.detection_count} ${f.error ?? '-'}`),
    ...boxes.map((r) => `box ${r.frame_index} ${r.pts_ms} ${r.class_id} ${r.class_name} ${float(r.confidence)} ${float(r.x1)} ${float(r.y1)} ${float(r.x2)} ${float(r.y2)}`),
  ].sort();
}

/** A new video's row as the upload service would insert it; each test overrides what it is about. */
export function newVideoInput(overrides: Partial<NewVideo> = {}): NewVideo {
  return {
    id: randomUUID(),
    originalName: 'street.mp4',
    sizeBytes: 5_000_000_000, // beyond 32 bits, to check bigint handling
    storageKey: 'videos/x/source',
    sampleFps: 5,
    source: { durationMs: 8000, fps: 10, width: 768, height: 576, codec: 'h264', creationTime: null, startTimeMs: 0 },
    capturedAt: new Date('2026-01-01T12:00:00Z'),
    probe: { format: { format_name: 'mov,mp4' } },
    ...overrides,
  };
}
