import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createClient } from 'redis';
import { openApiDocument } from '../../src/api/openapi.ts';
import { apiFetch, type ApiFetchInit } from '../helpers/api-client.ts';
import { createTestDatabase, onlyRow, type TestDatabase } from '../helpers/database.ts';
import { readEventStream, type ReceivedEvent } from '../helpers/event-stream.ts';
import { cutClip, VTEST_AVI } from '../helpers/media-fixtures.ts';
import { OpenApiConformance } from '../helpers/openapi-conformance.ts';
import { deleteKeys, uniquePrefix } from '../helpers/redis.ts';
import { freePort, ServiceProcess, waitFor } from '../helpers/service.ts';

interface Progress {
  id: string;
  status: string;
  framesDone: number;
  framesTotal: number | null;
  framesFailed: number;
  etaSeconds: number | null;
}

const BATCH_SIZE = 4;
const FPS = 4;
const SECONDS = 6;
const FRAMES = FPS * SECONDS;

/** The value of one sample of a Prometheus text exposition; labels must all match. */
function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([key, value]) => found[key] === value)) return Number(match[3]);
  }
  throw new Error(`no sample ${name}${JSON.stringify(labels)} in:\n${text.split('\n').filter((l) => l.startsWith(name)).join('\n')}`);
}

describe('web API end to end: live progress, analytics, OpenAPI conformance and metrics over a real run', function () {
  this.timeout(240_000);

  let db: TestDatabase;
  let prefix: string;
  let tmp: string;
  let clip: string;
  let baseUrl: string;
  let workerHealthUrl: string;
  let videoId: string;
  const processes: ServiceProcess[] = [];
  const redis = createClient({ url: 'redis://127.0.0.1:6379' });
  const conformance = new OpenApiConformance();
  /** GET /videos/:id answered 200 to this test, for the HTTP counter. */
  let videoGets = 0;

  /** A request whose answer is checked against the OpenAPI document; returns the parsed body. */
  async function call(method: string, pathAndQuery: string, init: ApiFetchInit = {}): Promise<{ res: Response; body: unknown }> {
    const url = `${baseUrl}${pathAndQuery}`;
    const res = await apiFetch(url, { ...init, method });
    const type = res.headers.get('content-type') ?? '';
    const text = await res.text();
    const body = text === '' ? undefined : type.startsWith('application/json') ? JSON.parse(text) : text;
    conformance.check(method, url, res, body);
    if (method === 'GET' && /^\/videos\/[^/?]+$/.test(pathAndQuery) && res.status === 200) videoGets += 1;
    return { res, body };
  }

  async function uploadClip(): Promise<string> {
    const form = new FormData();
    form.append('fps', String(FPS));
    form.append('video', new Blob([await fs.readFile(clip)]), 'vtest-6s.mp4');
    const { res, body } = await call('POST', '/videos', { body: form });
    assert.equal(res.status, 202, JSON.stringify(body));
    return (body as { id: string }).id;
  }

  /** Opens GET /videos/:id/events and collects its events until the server ends the stream. */
  async function watch(id: string): Promise<ReceivedEvent[]> {
    const url = `${baseUrl}/videos/${id}/events`;
    const res = await apiFetch(url, { signal: AbortSignal.timeout(180_000) });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    conformance.check('GET', url, res);
    return readEventStream(res);
  }

  before(async () => {
    db = await createTestDatabase();
    prefix = uniquePrefix();
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-web-api-'));
    clip = await cutClip(VTEST_AVI, SECONDS, path.join(tmp, 'vtest-6s.mp4'));
    const [port, healthPort] = [await freePort(), await freePort()];
    baseUrl = `http://127.0.0.1:${port}`;
    workerHealthUrl = `http://127.0.0.1:${healthPort}`;
    const env = {
      DATABASE_URL: db.url,
      QUEUE_PREFIX: prefix,
      STORAGE_DIR: path.join(tmp, 'storage'),
      PORT: String(port),
      HOST: '127.0.0.1',
      BATCH_SIZE: String(BATCH_SIZE),
    };
    await redis.connect();
    const api = ServiceProcess.start('api', env);
    const worker = ServiceProcess.start('worker', { ...env, WORKER_HEALTH_PORT: String(healthPort) });
    processes.push(api, worker);
    // Generous: two processes start at once, and the machine may be busy.
    await Promise.all([api.waitForLog('api listening', 120_000), worker.waitForLog('worker started', 120_000)]);
  });

  after(async () => {
    await Promise.all(processes.map((p) => p.stop()));
    await deleteKeys(redis, prefix);
    await redis.quit();
    await db?.drop();
    await fs.rm(tmp, { recursive: true, force: true });
  });

  it('streams progress over SSE from a real upload to completion, to two listeners at once, then ends the streams', async () => {
    videoId = await uploadClip();
    const [events, second] = await Promise.all([watch(videoId), watch(videoId)]);
    const progress = events.filter((e) => e.event === 'progress').map((e) => JSON.parse(e.data) as Progress);
    for (const snapshot of progress) conformance.validateSchema('Progress', snapshot);
    assert.deepEqual(events.at(-1), { event: 'end', data: '{}' }, 'the stream ends with `end`');
    assert.equal(events.filter((e) => e.event === 'end').length, 1);
    const last = progress.at(-1)!;
    assert.deepEqual(last, { id: videoId, status: 'completed', framesDone: FRAMES, framesTotal: FRAMES, framesFailed: 0, etaSeconds: 0 });
    // Live: frames counted up through intermediate events, never backwards, each event a change.
    const done = progress.map((p) => p.framesDone);
    assert.deepEqual(done, [...done].sort((a, b) => a - b), `framesDone went backwards: ${done}`);
    assert.ok(done.some((n) => n > 0 && n < FRAMES), `no intermediate progress in ${done}`);
    const keys = progress.map(({ etaSeconds: _eta, ...rest }) => JSON.stringify(rest));
    assert.equal(new Set(keys).size, keys.length, 'an event repeated an unchanged state');
    // The ETA while processing comes from the observed frame rate, so it is known once frames have been committed twice.
    const running = progress.filter((p) => p.status === 'extracting' || p.status === 'processing');
    assert.ok(running.some((p) => p.etaSeconds !== null && p.etaSeconds >= 0), `no ETA while processing: ${JSON.stringify(running)}`);
    // The other listener saw the same end.
    assert.deepEqual(JSON.parse(second.filter((e) => e.event === 'progress').at(-1)!.data), last);
    assert.equal(second.at(-1)!.event, 'end');
    // A stream opened on a finished video sends its state and ends at once.
    const late = await watch(videoId);
    assert.deepEqual(late.map((e) => e.event), ['progress', 'end']);
  });

  it('shows the video with ETA, top classes and preview, in the list; summary and export agree with SQL', async () => {
    // The preview is made while the frames are detected and may come just after completion.
    const video = await waitFor('the preview', async () => {
      const { body } = await call('GET', `/videos/${videoId}`);
      return (body as { previewPending: boolean }).previewPending ? undefined : body;
    }, 60_000, 200);
    const expectedTop = await db.sql<{ className: string; count: number }[]>`
      SELECT class_name AS "className", count(*)::int AS count FROM detections WHERE video_id = ${videoId}
      GROUP BY class_name ORDER BY count(*) DESC, class_name LIMIT 5`;
    assert.ok(expectedTop.length > 0 && expectedTop[0]!.className === 'person');
    assert.deepEqual((video as { topClasses: unknown }).topClasses, [...expectedTop]);
    assert.deepEqual([(video as { etaSeconds: number }).etaSeconds, (video as { preview: unknown }).preview], [0, { url: `/videos/${videoId}/preview`, mimeType: 'video/mp4' }]);

    const { body: list } = await call('GET', '/videos?limit=1');
    assert.deepEqual((list as { items: unknown[] }).items, [video]);
    const { body: empty } = await call('GET', '/videos?status=failed');
    assert.deepEqual(empty, { items: [], nextCursor: null });

    for (const bucket of [1, 2]) {
      const { body: summary } = await call('GET', `/videos/${videoId}/summary?bucket=${bucket}`);
      const rows = await db.sql<{ start_ms: number; class_name: string; n: number }[]>`
        SELECT (pts_ms / ${bucket * 1000}) * ${bucket * 1000} AS start_ms, class_name, count(*)::int AS n
        FROM detections WHERE video_id = ${videoId} GROUP BY 1, 2 ORDER BY 1, 2`;
      const buckets = new Map<number, Record<string, number>>();
      for (const row of rows) buckets.set(row.start_ms, { ...buckets.get(row.start_ms), [row.class_name]: row.n });
      assert.deepEqual((summary as { buckets: unknown }).buckets, [...buckets].map(([startMs, counts]) => ({ startMs, counts })));
      const classes = await db.sql<{ className: string; count: number }[]>`
        SELECT class_name AS "className", count(*)::int AS count FROM detections WHERE video_id = ${videoId} GROUP BY 1 ORDER BY 2 DESC, 1`;
      assert.deepEqual((summary as { classes: unknown }).classes, [...classes]);
    }

    const exported = await db.sql<{ frame_index: number; pts_ms: number; captured_at: Date; class_id: number; class_name: string; confidence: number; x1: number; y1: number; x2: number; y2: number }[]>`
      SELECT frame_index, pts_ms, captured_at, class_id, class_name, confidence, x1, y1, x2, y2 FROM detections WHERE video_id = ${videoId} ORDER BY frame_index, id`;
    const { res: csv, body: csvText } = await call('GET', `/videos/${videoId}/detections/export?format=csv`);
    assert.equal(csv.headers.get('content-disposition'), `attachment; filename="${videoId}-detections.csv"`);
    const lines = (csvText as string).trimEnd().split('\n');
    assert.equal(lines[0], 'frame_index,pts_ms,captured_at,class_id,class_name,confidence,x1,y1,x2,y2');
    assert.deepEqual(lines.slice(1), exported.map((r) => [r.frame_index, r.pts_ms, r.captured_at.toISOString(), r.class_id, r.class_name, r.confidence, r.x1, r.y1, r.x2, r.y2].join(',')));
    const { res: json, body: jsonRows } = await call('GET', `/videos/${videoId}/detections/export?format=json`);
    assert.equal(json.headers.get('content-disposition'), `attachment; filename="${videoId}-detections.json"`);
    assert.deepEqual(jsonRows, exported.map((r) => ({ frameIndex: r.frame_index, ptsMs: r.pts_ms, capturedAt: r.captured_at.toISOString(), classId: r.class_id, className: r.class_name, confidence: r.confidence, x1: r.x1, y1: r.y1, x2: r.x2, y2: r.y2 })));
  });

  it('/metrics after the run: counts equal what the database says, routes are labelled by pattern', async () => {
    const db1 = onlyRow(await db.sql<{ videos: number; bytes: number; done: number; failed: number; jobs: number }[]>`
      SELECT count(*)::int AS videos, sum(size_bytes)::bigint AS bytes, sum(frames_done)::int AS done, sum(frames_failed)::int AS failed,
             sum(ceil(frames_total / ${BATCH_SIZE}::float8))::int AS jobs FROM videos`);
    assert.deepEqual([db1.videos, db1.done, db1.failed, db1.jobs], [1, FRAMES, 0, FRAMES / BATCH_SIZE]);

    // The worker's own /metrics, on its health port, needs no key.
    const worker = await (await fetch(`${workerHealthUrl}/metrics`)).text();
    assert.equal(metric(worker, 'vidsense_frames_total', { outcome: 'processed' }), db1.done);
    assert.equal(metric(worker, 'vidsense_frames_total', { outcome: 'failed' }), db1.failed);
    assert.equal(metric(worker, 'vidsense_jobs_total', { outcome: 'committed' }), db1.jobs);
    assert.equal(metric(worker, 'vidsense_jobs_total', { outcome: 'failed' }), 0);
    for (const stage of ['read', 'decode_letterbox']) assert.equal(metric(worker, 'vidsense_stage_duration_seconds_count', { stage }), db1.done, stage);
    for (const stage of ['inference', 'nms', 'insert']) assert.equal(metric(worker, 'vidsense_stage_duration_seconds_count', { stage }), db1.jobs, stage);
    // Extraction is a job for the workers: the worker reports it, the API (below) never extracts.
    assert.equal(metric(worker, 'vidsense_stage_duration_seconds_count', { stage: 'extraction' }), db1.videos);
    assert.ok(metric(worker, 'vidsense_stage_duration_seconds_sum', { stage: 'inference' }) > 0);
    assert.equal(metric(worker, 'vidsense_detector_info', { engine: 'onnx', backend: 'cpu', model: 'yolov8n.onnx' }), 1);
    for (const state of ['pending', 'processing', 'dead_letter']) assert.equal(metric(worker, 'vidsense_queue_jobs', { state }), 0, state);

    const { res, body } = await call('GET', '/metrics');
    assert.equal(res.status, 200);
    const api = body as string;
    assert.equal(metric(api, 'vidsense_upload_bytes_total'), Number(db1.bytes));
    assert.equal(metric(api, 'vidsense_stage_duration_seconds_count', { stage: 'extraction' }), 0);
    assert.equal(metric(api, 'vidsense_http_requests_total', { method: 'GET', route: '/videos/:id', status: '200' }), videoGets);
    assert.equal(metric(api, 'vidsense_http_requests_total', { method: 'POST', route: '/videos', status: '202' }), db1.videos);
    assert.equal(metric(api, 'vidsense_http_requests_total', { method: 'GET', route: '/videos/:id/events', status: '200' }), 3);
    assert.ok(!/route="[^"]*[0-9a-f]{8}-[0-9a-f]{4}-/.test(api), 'a raw URL (with an id) used as a route label');
    for (const state of ['pending', 'processing', 'dead_letter']) assert.equal(metric(api, 'vidsense_queue_jobs', { state }), 0, state);
  });

  it('every operation of the OpenAPI document answers real requests as documented (error shape included)', async () => {
    const missing = '00000000-0000-4000-8000-000000000000';
    const served = await call('GET', '/openapi.json', { apiKey: null });
    assert.deepEqual(served.body, JSON.parse(JSON.stringify(openApiDocument)));
    await call('GET', '/healthz', { apiKey: null });
    await call('GET', '/', { apiKey: null });
    await call('GET', '/readyz', { apiKey: null });

    const { body: created } = await call('POST', '/admin/keys', { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'conformance', scopes: ['read'] }) });
    const reader = created as { id: string; key: string };
    await call('POST', '/admin/keys', { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'conformance', scopes: [] }) });
    await call('GET', '/admin/keys');
    await call('GET', '/auth/me', { apiKey: reader.key });
    await call('GET', '/auth/me', { apiKey: null });
    await call('GET', '/videos', { apiKey: reader.key });
    await call('POST', '/videos', { apiKey: reader.key, body: new FormData() });
    await call('POST', '/videos', { body: new FormData() });
    const signIn = await call('POST', '/auth/session', { apiKey: null, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: reader.key }) });
    const cookie = /vidsense_session=[^;]+/.exec(signIn.res.headers.get('set-cookie') ?? '')![0];
    await call('POST', '/auth/session', { apiKey: null, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: 'wrong' }) });
    await call('DELETE', '/auth/session', { apiKey: null, headers: { cookie } });
    await call('DELETE', `/admin/keys/${reader.id}`);
    await call('DELETE', `/admin/keys/${reader.id}`);

    await call('GET', `/videos/${missing}`);
    await call('GET', `/videos/${videoId}/detections?limit=5&class=person&minConfidence=0.5`);
    await call('GET', `/videos/${videoId}/detections?limit=0`);
    await call('GET', `/videos/${missing}/detections/export`);
    await call('GET', `/videos/${videoId}/preview`, { headers: { range: 'bytes=0-99' } });
    await call('GET', `/videos/${videoId}/preview`, { headers: { range: 'bytes=999999999-' } });
    await call('GET', `/videos/${missing}/preview`);
    await call('GET', `/videos/${videoId}/summary?bucket=0`);
    await call('GET', `/videos?cursor=not-a-cursor`);
    const from = new Date(Date.now() - 3600_000).toISOString();
    const { body: counts } = await call('GET', `/analytics/counts?bucket=1m&tz=Europe/Paris&from=${from}`);
    const answered = counts as { from: string; to: string; series: Array<{ className: string; count: number }> };
    const people = onlyRow(await db.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM detections WHERE class_name = 'person' AND captured_at >= ${new Date(answered.from)} AND captured_at < ${new Date(answered.to)}`).n;
    assert.ok(people > 0, 'the run detected people in the last hour');
    assert.equal(answered.series.filter((s) => s.className === 'person').reduce((sum, s) => sum + s.count, 0), people);
    await call('GET', '/analytics/counts?tz=Not/AZone');

    // Cancel and delete: the refusals, then a video of their own cancelled (200) and deleted (204).
    await call('POST', `/videos/${videoId}/cancel`);
    await call('POST', '/videos/not-a-uuid/cancel');
    await call('DELETE', `/videos/${missing}`);
    const doomed = await uploadClip();
    assert.equal((await call('POST', `/videos/${doomed}/cancel`)).res.status, 200);
    assert.equal((await call('DELETE', `/videos/${doomed}`)).res.status, 204);

    await call('GET', '/admin/dead-letters?limit=10');
    await call('POST', '/admin/dead-letters/no-such-job/retry');
    await call('DELETE', '/admin/dead-letters/no-such-job');

    assert.deepEqual([...conformance.exercised].sort(), conformance.operationIds, 'operations no request exercised');
  });

  it('lists videos page by page, newest first, with an opaque cursor', async () => {
    const second = await uploadClip();
    await waitFor('the second video to complete', async () => {
      const { body } = await call('GET', `/videos/${second}`);
      return (body as { status: string }).status === 'completed' ? true : undefined;
    }, 180_000, 250);
    const first = await call('GET', '/videos?limit=1');
    const page1 = first.body as { items: Array<{ id: string }>; nextCursor: string };
    assert.deepEqual(page1.items.map((v) => v.id), [second]);
    const page2 = (await call('GET', `/videos?limit=1&cursor=${page1.nextCursor}`)).body as { items: Array<{ id: string }>; nextCursor: string | null };
    assert.deepEqual([page2.items.map((v) => v.id), page2.nextCursor], [[videoId], null]);
  });

  it('at shutdown the open event streams are closed and the API exits cleanly, without waiting for them', async () => {
    // A video stuck in processing (no frames will come): its stream would stay open for good.
    const stuck = '00000000-0000-4000-8000-00000000beef';
    await db.sql`
      INSERT INTO videos (id, status, original_name, size_bytes, storage_key, width, height, codec, captured_at, frames_total)
      VALUES (${stuck}, 'processing', 'stuck.mp4', 1, ${`videos/${stuck}/source`}, 640, 480, 'h264', now(), 10)`;
    const res = await apiFetch(`${baseUrl}/videos/${stuck}/events`);
    const events: ReceivedEvent[] = [];
    let firstEvent: () => void = () => {};
    const first = new Promise<void>((resolve) => (firstEvent = resolve));
    const closed = readEventStream(res, (event) => {
      events.push(event);
      firstEvent();
    });
    await first;
    const api = processes[0]!;
    api.kill('SIGTERM');
    const exit = await api.waitForExit();
    assert.deepEqual(exit, { code: 0, signal: null }, api.logs.slice(-5).join('\n'));
    assert.ok(!api.logs.some((line) => line.includes('shutdown timed out')));
    await closed; // the server ended the stream: the read finished instead of hanging
    assert.deepEqual(events.map((e) => e.event), ['progress'], 'no `end`: the video is not finished, the client may reconnect');
  });
});
