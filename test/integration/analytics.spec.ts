import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createClient } from 'redis';
import { offsetBucketsQuery, timeBucketsQuery, type CountsQuery } from '../../src/db/analytics.repository.ts';
import type { Sql } from '../../src/db/client.ts';
import { apiFetch } from '../helpers/api-client.ts';
import { createTestDatabase, onlyRow, type TestDatabase } from '../helpers/database.ts';
import { deleteKeys, uniquePrefix } from '../helpers/redis.ts';
import { freePort, ServiceProcess } from '../helpers/service.ts';

interface Counts {
  bucket: string;
  tz: string;
  from: string;
  to: string;
  series: Array<{ bucketStart: string; className: string; count: number }>;
}

/**
 * A video with synthetic frames and detections straight in PostgreSQL: a frame every stepMs from
 * capturedAt; every frame has a person, every third a car, every seventh a dog.
 */
async function insertVideo(sql: Sql, owner: string | null, capturedAt: string, frames: number, stepMs: number): Promise<string> {
  const id = randomUUID();
  await sql`
    INSERT INTO videos (id, status, original_name, size_bytes, storage_key, width, height, codec, captured_at, frames_total, frames_done, owner_key_id, completed_at)
    VALUES (${id}, 'completed', 'synthetic.mp4', 1, ${`videos/${id}/source`}, 640, 480, 'h264', ${capturedAt}, ${frames}, ${frames}, ${owner}, now())`;
  await sql`
    INSERT INTO frames (video_id, frame_index, pts_ms, captured_at, detection_count)
    SELECT ${id}::uuid, i, i * ${stepMs}, ${capturedAt}::timestamptz + i * ${stepMs} * interval '1 millisecond',
           1 + (i % 3 = 0)::int + (i % 7 = 0)::int
    FROM generate_series(0, ${frames - 1}) AS i`;
  await sql`
    INSERT INTO detections (video_id, frame_index, pts_ms, captured_at, class_id, class_name, confidence, x1, y1, x2, y2)
    SELECT f.video_id, f.frame_index, f.pts_ms, f.captured_at, c.class_id, c.class_name, 0.5 + (f.frame_index % 50) / 100.0, 1, 2, 30, 40
    FROM frames f CROSS JOIN LATERAL (
      SELECT 0 AS class_id, 'person' AS class_name
      UNION ALL SELECT 2, 'car' WHERE f.frame_index % 3 = 0
      UNION ALL SELECT 16, 'dog' WHERE f.frame_index % 7 = 0) c
    WHERE f.video_id = ${id}`;
  return id;
}

/** Every plan node of an EXPLAIN (FORMAT JSON). */
function planNodes(plan: unknown): Array<Record<string, unknown>> {
  const node = plan as Record<string, unknown> & { Plans?: unknown[] };
  return [node, ...(node.Plans ?? []).flatMap(planNodes)];
}

function assertIndexedScan(explained: Array<{ 'QUERY PLAN': Array<{ Plan: unknown }> }>, what: string): void {
  const nodes = planNodes(explained[0]!['QUERY PLAN'][0]!.Plan);
  const onDetections = nodes.filter((n) => n['Relation Name'] === 'detections' || String(n['Index Name'] ?? '').startsWith('detections_'));
  const summary = nodes.map((n) => `${n['Node Type']}${n['Index Name'] ? ` using ${n['Index Name']}` : ''}${n['Relation Name'] ? ` on ${n['Relation Name']}` : ''}`).join(' > ');
  assert.ok(onDetections.some((n) => String(n['Index Name'] ?? '').startsWith('detections_')), `${what}: no index of detections used: ${summary}`);
  assert.ok(!onDetections.some((n) => n['Node Type'] === 'Seq Scan'), `${what}: a sequential scan of detections: ${summary}`);
}

describe('analytics: per-video summary, counts in time zones (DST), export, and their indexes', function () {
  this.timeout(180_000);

  let db: TestDatabase;
  let prefix: string;
  let tmp: string;
  let baseUrl: string;
  let api: ServiceProcess;
  let reader: { id: string; key: string };
  const videos: Record<'autumn' | 'spring' | 'others' | 'export' | 'bulk', string> = {} as never;
  const redis = createClient({ url: 'redis://127.0.0.1:6379' });

  async function counts(query: string, apiKey?: string): Promise<Counts> {
    const res = await apiFetch(`${baseUrl}/analytics/counts?${query}`, apiKey ? { apiKey } : {});
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    return body as Counts;
  }

  /**
   * The expected series computed in SQL another way than the service's date_trunc(unit, t, zone): the
   * local wall-clock text of each detection (TimeZone set to the zone) with its own UTC offset; a day
   * starts at local midnight with the offset of that midnight (a timestamp AT TIME ZONE).
   */
  async function expectedSeries(tz: string, unit: 'minute' | 'hour' | 'day', from: string, to: string, owner?: string, className?: string): Promise<Counts['series']> {
    return db.sql.begin(async (tx) => {
      await tx`SELECT set_config('TimeZone', ${tz}, true)`;
      const start =
        unit === 'day'
          ? tx`to_char((to_char(captured_at, 'YYYY-MM-DD')::date::timestamp AT TIME ZONE ${tz}), 'YYYY-MM-DD"T"HH24:MI:SSTZH:TZM')`
          : unit === 'hour'
            ? tx`to_char(captured_at, 'YYYY-MM-DD"T"HH24":00:00"TZH:TZM')`
            : tx`to_char(captured_at, 'YYYY-MM-DD"T"HH24:MI":00"TZH:TZM')`;
      const rows = await tx<{ bucketStart: string; className: string; count: number }[]>`
        SELECT ${start} AS "bucketStart", class_name AS "className", count(*)::int AS count
        FROM detections
        WHERE captured_at >= ${from} AND captured_at < ${to}
          ${owner ? tx`AND video_id IN (SELECT id FROM videos WHERE owner_key_id = ${owner})` : tx``}
          ${className ? tx`AND class_name = ${className}` : tx``}
        GROUP BY 1, 2`;
      // Bucket starts compare as instants (text order would put 02:00+01:00 before 02:00+02:00).
      return [...rows].sort((a, b) => Date.parse(a.bucketStart) - Date.parse(b.bucketStart) || a.className.localeCompare(b.className));
    });
  }

  before(async () => {
    db = await createTestDatabase();
    prefix = uniquePrefix();
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-analytics-'));
    const port = await freePort();
    baseUrl = `http://127.0.0.1:${port}`;
    await redis.connect();
    api = ServiceProcess.start('api', { DATABASE_URL: db.url, QUEUE_PREFIX: prefix, STORAGE_DIR: path.join(tmp, 'storage'), PORT: String(port), HOST: '127.0.0.1' });
    await api.waitForLog('api listening', 120_000);
    const res = await apiFetch(`${baseUrl}/admin/keys`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'analyst', scopes: ['read'] }) });
    reader = (await res.json()) as { id: string; key: string };
    const admin = onlyRow(await db.sql<{ id: string }[]>`SELECT id FROM api_keys WHERE source = 'environment'`).id;

    // Europe/Paris falls back at 2024-10-27 03:00 CEST (01:00 UTC) and springs forward at 2024-03-31 02:00 CET (01:00 UTC).
    videos.autumn = await insertVideo(db.sql, reader.id, '2024-10-26T22:00:00Z', 300, 60_000); // 00:00 CEST, 5 h
    videos.spring = await insertVideo(db.sql, reader.id, '2024-03-30T23:00:00Z', 240, 60_000); // 00:00 CET, 4 h
    videos.others = await insertVideo(db.sql, admin, '2024-10-26T23:30:00Z', 120, 60_000); // another key's, same night
    videos.export = await insertVideo(db.sql, reader.id, '2024-06-01T12:00:00Z', 1800, 200); // 2,657 detections: several cursor batches
    // Enough rows that the planner's choice means something: 100 videos through 2023, 100,000 frames, 147,700 detections.
    for (let day = 0; day < 365; day += 3.65) videos.bulk = await insertVideo(db.sql, admin, new Date(Date.UTC(2023, 0, 1) + day * 86_400_000).toISOString(), 1000, 315_360);
    await db.sql`ANALYZE`;
  });

  after(async () => {
    await api?.stop();
    await deleteKeys(redis, prefix);
    await redis.quit();
    await db?.drop();
    await fs.rm(tmp, { recursive: true, force: true });
  });

  it('hourly counts in Europe/Paris across the autumn change: 25-hour day, the repeated 02:00 hour is two buckets', async () => {
    const from = '2024-10-26T22:00:00Z';
    const to = '2024-10-27T03:00:00Z';
    const answer = await counts(`bucket=1h&tz=Europe/Paris&from=${from}&to=${to}`, reader.key);
    assert.deepEqual([answer.bucket, answer.tz, answer.from, answer.to], ['1h', 'Europe/Paris', '2024-10-26T22:00:00.000Z', '2024-10-27T03:00:00.000Z']);
    assert.deepEqual(answer.series, await expectedSeries('Europe/Paris', 'hour', from, to, reader.id));
    assert.deepEqual([...new Set(answer.series.map((s) => s.bucketStart))], [
      '2024-10-27T00:00:00+02:00',
      '2024-10-27T01:00:00+02:00',
      '2024-10-27T02:00:00+02:00',
      '2024-10-27T02:00:00+01:00',
      '2024-10-27T03:00:00+01:00',
    ]);
    // A frame a minute with a person each: 60 per hour, in each of the two 02:00 hours.
    assert.deepEqual(answer.series.filter((s) => s.className === 'person').map((s) => s.count), [60, 60, 60, 60, 60]);
  });

  it('hourly counts across the spring change: 02:00 does not exist; daily buckets start at local midnight with that midnight\'s offset', async () => {
    const hours = await counts(`bucket=1h&tz=Europe/Paris&from=2024-03-30T23:00:00Z&to=2024-03-31T03:00:00Z`, reader.key);
    assert.deepEqual([...new Set(hours.series.map((s) => s.bucketStart))], ['2024-03-31T00:00:00+01:00', '2024-03-31T01:00:00+01:00', '2024-03-31T03:00:00+02:00', '2024-03-31T04:00:00+02:00']);
    assert.deepEqual(hours.series, await expectedSeries('Europe/Paris', 'hour', '2024-03-30T23:00:00Z', '2024-03-31T03:00:00Z', reader.id));

    const from = encodeURIComponent('2024-03-29T00:00:00+01:00');
    const to = encodeURIComponent('2024-11-01T00:00:00+01:00');
    const days = await counts(`bucket=1d&tz=Europe/Paris&from=${from}&to=${to}`, reader.key);
    assert.deepEqual(days.series, await expectedSeries('Europe/Paris', 'day', '2024-03-29T00:00:00+01:00', '2024-11-01T00:00:00+01:00', reader.id));
    const dayStarts = [...new Set(days.series.map((s) => s.bucketStart))];
    assert.deepEqual(dayStarts, ['2024-03-31T00:00:00+01:00', '2024-06-01T00:00:00+02:00', '2024-10-27T00:00:00+02:00']);
    // The whole 5-hour autumn video falls in the 25-hour 27 October.
    const autumnPeople = onlyRow(await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM detections WHERE video_id = ${videos.autumn} AND class_name = 'person'`).n;
    assert.equal(days.series.find((s) => s.bucketStart === '2024-10-27T00:00:00+02:00' && s.className === 'person')!.count, autumnPeople);
  });

  it('other zones and defaults: half-hour offsets, minutes, UTC by default, one class, and only the key\'s own videos unless admin', async () => {
    const window = 'from=2024-10-26T22:00:00Z&to=2024-10-27T03:00:00Z';
    const kathmandu = await counts(`bucket=1h&tz=Asia/Kathmandu&${window}`, reader.key);
    assert.ok(kathmandu.series.every((s) => /T\d\d:00:00\+05:45$/.test(s.bucketStart)), JSON.stringify(kathmandu.series.slice(0, 3)));
    assert.deepEqual(kathmandu.series, await expectedSeries('Asia/Kathmandu', 'hour', '2024-10-26T22:00:00Z', '2024-10-27T03:00:00Z', reader.id));
    const minutes = await counts(`bucket=1m&tz=America/St_Johns&${window}&class=car`, reader.key);
    assert.deepEqual(minutes.series, await expectedSeries('America/St_Johns', 'minute', '2024-10-26T22:00:00Z', '2024-10-27T03:00:00Z', reader.id, 'car'));
    assert.ok(minutes.series.length > 0 && minutes.series.every((s) => s.className === 'car'));
    const utc = await counts(window, reader.key);
    assert.deepEqual([utc.bucket, utc.tz], ['1h', 'UTC']);
    assert.deepEqual(utc.series, await expectedSeries('UTC', 'hour', '2024-10-26T22:00:00Z', '2024-10-27T03:00:00Z', reader.id));

    const everyone = await counts(window);
    assert.deepEqual(everyone.series, await expectedSeries('UTC', 'hour', '2024-10-26T22:00:00Z', '2024-10-27T03:00:00Z'));
    const total = (answer: Counts) => answer.series.reduce((sum, s) => sum + s.count, 0);
    assert.ok(total(everyone) > total(utc), "admin counts the other key's video too");

    const recent = await counts('bucket=1h', reader.key);
    assert.ok(Math.abs(Date.parse(recent.to) - Date.now()) < 60_000 && Date.parse(recent.to) - Date.parse(recent.from) === 86_400_000, 'default: the last 24 h');
  });

  it('refuses a bad zone, bucket, time or range with 400', async () => {
    const cases: Array<[string, string]> = [
      ['tz=Europe/Atlantis', 'invalid_time_zone'],
      ['tz=CEST', 'invalid_time_zone'],
      ['bucket=5m', 'invalid_query'],
      ['from=yesterday', 'invalid_query'],
      ['from=2024-10-27T00:00:00', 'invalid_query'], // no zone
      ['from=2024-10-27T00:00:00Z&to=2024-10-26T00:00:00Z', 'invalid_query'],
      ['bucket=1m&from=2024-01-01T00:00:00Z&to=2024-02-01T00:00:00Z', 'range_too_large'],
    ];
    for (const [query, code] of cases) {
      const res = await apiFetch(`${baseUrl}/analytics/counts?${query}`);
      assert.equal(res.status, 400, query);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, code, query);
    }
  });

  it('summary: detections per class and per offset bucket of one video, as SQL counts them', async () => {
    for (const bucket of [60, 3600]) {
      const res = await apiFetch(`${baseUrl}/videos/${videos.autumn}/summary?bucket=${bucket}`, { apiKey: reader.key });
      const summary = (await res.json()) as { videoId: string; bucketSeconds: number; classes: unknown; buckets: Array<{ startMs: number; counts: Record<string, number> }> };
      const rows = await db.sql<{ start_ms: number; class_name: string; n: number }[]>`
        SELECT pts_ms - pts_ms % ${bucket * 1000} AS start_ms, class_name, count(*)::int AS n FROM detections WHERE video_id = ${videos.autumn} GROUP BY 1, 2`;
      const expected = new Map<number, Record<string, number>>();
      for (const row of [...rows].sort((a, b) => a.start_ms - b.start_ms)) expected.set(row.start_ms, { ...expected.get(row.start_ms), [row.class_name]: row.n });
      assert.deepEqual([summary.videoId, summary.bucketSeconds], [videos.autumn, bucket]);
      assert.deepEqual(summary.buckets.map((b) => [b.startMs, b.counts]), [...expected].map(([start, c]) => [start, c]));
      const classes = await db.sql`SELECT class_name AS "className", count(*)::int AS count FROM detections WHERE video_id = ${videos.autumn} GROUP BY 1 ORDER BY 2 DESC, 1`;
      assert.deepEqual(summary.classes, [...classes]);
    }
    const defaults = (await (await apiFetch(`${baseUrl}/videos/${videos.autumn}/summary`, { apiKey: reader.key })).json()) as { bucketSeconds: number };
    assert.equal(defaults.bucketSeconds, 10);
    assert.equal((await apiFetch(`${baseUrl}/videos/${videos.others}/summary`, { apiKey: reader.key })).status, 404, "another key's video");
  });

  it('export streams every detection through the cursor, in several batches, as CSV and as JSON', async () => {
    const rows = await db.sql<{ frame_index: number; pts_ms: number; captured_at: Date; class_id: number; class_name: string; confidence: number }[]>`
      SELECT frame_index, pts_ms, captured_at, class_id, class_name, confidence FROM detections WHERE video_id = ${videos.export} ORDER BY frame_index, id`;
    assert.ok(rows.length > 2 * 1000, 'more rows than two cursor batches');
    const csv = await apiFetch(`${baseUrl}/videos/${videos.export}/detections/export?format=csv`, { apiKey: reader.key });
    assert.equal(csv.headers.get('content-length'), null, 'streamed (chunked), not sent as one buffer');
    assert.equal(csv.headers.get('transfer-encoding'), 'chunked');
    const lines = (await csv.text()).trimEnd().split('\n');
    assert.deepEqual(lines.slice(1), rows.map((r) => `${r.frame_index},${r.pts_ms},${r.captured_at.toISOString()},${r.class_id},${r.class_name},${r.confidence},1,2,30,40`));
    const json = (await (await apiFetch(`${baseUrl}/videos/${videos.export}/detections/export?format=json`, { apiKey: reader.key })).json()) as Array<{ frameIndex: number; confidence: number }>;
    assert.deepEqual(json.map((d) => [d.frameIndex, d.confidence]), rows.map((r) => [r.frame_index, r.confidence]));
    const bad = await apiFetch(`${baseUrl}/videos/${videos.export}/detections/export?format=xml`, { apiKey: reader.key });
    assert.equal(bad.status, 400);
  });

  it('EXPLAIN: the summary and the counts read detections through an index on a table of 150,000+ rows', async () => {
    assert.ok(onlyRow(await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM detections`).n > 150_000);
    assertIndexedScan(await db.sql`EXPLAIN (FORMAT JSON) ${offsetBucketsQuery(db.sql, videos.autumn, 10_000)}`, 'summary');
    const query: CountsQuery = { from: new Date('2023-06-01T00:00:00Z'), to: new Date('2023-06-02T00:00:00Z'), unit: 'hour', timeZone: 'Europe/Paris' };
    for (const [what, variant] of [
      ['counts, all classes', query],
      ['counts, one class', { ...query, className: 'car' }],
      ["counts, one key's videos", { ...query, ownerKeyId: reader.id }],
    ] as const) {
      const plan = await db.sql.begin(async (tx) => {
        await tx`SELECT set_config('TimeZone', ${variant.timeZone}, true)`;
        return tx`EXPLAIN (FORMAT JSON) ${timeBucketsQuery(tx, variant)}`;
      });
      assertIndexedScan(plan as never, what);
    }
  });
});
