import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createClient } from 'redis';
import { queueKeys } from '../../src/queue/keys.ts';
import { apiFetch } from '../helpers/api-client.ts';
import { createTestDatabase, detectionRows, onlyRow, type TestDatabase } from '../helpers/database.ts';
import { cutClip, VTEST_AVI, withCreationTime } from '../helpers/media-fixtures.ts';
import { deleteKeys, uniquePrefix } from '../helpers/redis.ts';
import { freePort, ServiceProcess, waitFor } from '../helpers/service.ts';

interface VideoBody {
  id: string;
  status: string;
  framesTotal: number | null;
  framesDone: number;
  source: { width: number; height: number; fps: number | null; durationMs: number | null };
  error: string | null;
}
interface FramesPage {
  frames: Array<{ frameIndex: number; ptsMs: number; detections: Array<{ classId: number; className: string; confidence: number; box: number[] }> }>;
  nextCursor: number | null;
}

const SOURCE_WIDTH = 768;
const SOURCE_HEIGHT = 576;

describe('pipeline end to end: real processes, Redis, PostgreSQL, ffmpeg and YOLOv8', function () {
  this.timeout(240_000);

  let db: TestDatabase;
  let prefix: string;
  let tmp: string;
  let clip: string;
  let baseUrl: string;
  let env: Record<string, string>;
  let api: ServiceProcess;
  const processes: ServiceProcess[] = [];
  const redis = createClient({ url: 'redis://127.0.0.1:6379' });

  function startWorker(): ServiceProcess {
    const worker = ServiceProcess.start('worker', env);
    processes.push(worker);
    return worker;
  }

  async function upload(file: string, fields: Record<string, string>): Promise<Response> {
    const form = new FormData();
    for (const [name, value] of Object.entries(fields)) form.append(name, value);
    form.append('video', new Blob([await fs.readFile(file)]), path.basename(file));
    return apiFetch(`${baseUrl}/videos`, { method: 'POST', body: form });
  }

  async function getVideo(id: string): Promise<VideoBody> {
    const res = await apiFetch(`${baseUrl}/videos/${id}`);
    assert.equal(res.status, 200);
    return (await res.json()) as VideoBody;
  }

  async function waitCompleted(id: string): Promise<VideoBody> {
    return waitFor(`video ${id} to complete`, async () => {
      const video = await getVideo(id);
      if (video.status === 'failed') throw new Error(`video failed: ${video.error}`);
      return video.status === 'completed' ? video : undefined;
    }, 180_000, 200);
  }

  async function allFrames(id: string, query = ''): Promise<FramesPage['frames']> {
    const frames: FramesPage['frames'] = [];
    let cursor: number | null = null;
    do {
      const res = await apiFetch(`${baseUrl}/videos/${id}/detections?limit=7${cursor === null ? '' : `&cursor=${cursor}`}${query}`);
      assert.equal(res.status, 200);
      const page = (await res.json()) as FramesPage;
      frames.push(...page.frames);
      cursor = page.nextCursor;
    } while (cursor !== null);
    return frames;
  }

  before(async () => {
    db = await createTestDatabase();
    prefix = uniquePrefix();
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-e2e-'));
    clip = await cutClip(VTEST_AVI, 8, path.join(tmp, 'vtest-8s.mp4'));
    const port = await freePort();
    baseUrl = `http://127.0.0.1:${port}`;
    env = {
      DATABASE_URL: db.url,
      QUEUE_PREFIX: prefix,
      STORAGE_DIR: path.join(tmp, 'storage'),
      KEEP_FRAMES: 'true',
      PORT: String(port),
      HOST: '127.0.0.1',
      BATCH_SIZE: '4',
      HEARTBEAT_TTL_MS: '1500',
      RECLAIM_INTERVAL_MS: '300',
    };
    await redis.connect();
    api = ServiceProcess.start('api', env);
    processes.push(api);
    await api.waitForLog('api listening');
  });

  after(async () => {
    await Promise.all(processes.map((p) => p.stop()));
    await deleteKeys(redis, prefix);
    await redis.quit();
    await db?.drop();
    await fs.rm(tmp, { recursive: true, force: true });
  });

  let cleanRows: string[] = [];

  it('uploads a real video and gets person detections in source pixels', async () => {
    const worker = startWorker();
    await worker.waitForLog('worker started');
    assert.ok(
      worker.logs.some((line) => line.includes('"frame decoder chosen"') && line.includes('"decoder":"libjpeg-turbo"')),
      'FRAME_DECODER=auto: the worker decodes frames with libjpeg-turbo',
    );

    const res = await upload(clip, { fps: '5' });
    assert.equal(res.status, 202);
    const accepted = (await res.json()) as { id: string; status: string };
    assert.equal(res.headers.get('location'), `/videos/${accepted.id}`);
    assert.equal(accepted.status, 'queued');

    const video = await waitCompleted(accepted.id);
    assert.equal(video.framesTotal, 40); // 8 s at 5 fps
    assert.equal(video.framesDone, video.framesTotal);
    assert.equal(video.source.width, SOURCE_WIDTH);
    assert.equal(video.source.height, SOURCE_HEIGHT);

    const frames = await allFrames(accepted.id);
    assert.deepEqual(frames.map((f) => f.frameIndex), [...Array(40).keys()]);
    assert.deepEqual(frames.map((f) => f.ptsMs), frames.map((_, i) => i * 200));
    const framesWithPeople = frames.filter((f) => f.detections.some((d) => d.className === 'person' && d.confidence >= 0.5));
    assert.ok(framesWithPeople.length >= 36, `people seen in only ${framesWithPeople.length} of 40 frames`);
    const boxes = frames.flatMap((f) => f.detections.map((d) => d.box));
    for (const [x1, y1, x2, y2] of boxes) {
      assert.ok(x1! >= 0 && y1! >= 0 && x2! <= SOURCE_WIDTH && y2! <= SOURCE_HEIGHT && x1! < x2! && y1! < y2!, `box ${[x1, y1, x2, y2]}`);
    }
    // In the network's 640x640 letterbox the image spans x 0..640 and y 80..560; source pixels reach beyond.
    assert.ok(boxes.some(([, , x2]) => x2! > 640), 'no box reaches past x=640: boxes are not in source pixels');

    const filtered = await allFrames(accepted.id, '&class=person&minConfidence=0.6');
    assert.ok(filtered.length > 0);
    for (const frame of filtered) for (const d of frame.detections) assert.ok(d.className === 'person' && d.confidence >= 0.6);

    const { total } = onlyRow(await db.sql<{ total: number }[]>`SELECT count(*)::int AS total FROM detections WHERE video_id = ${accepted.id}`);
    assert.equal(total, boxes.length);
    // The README's analytics query: people per minute in the last hour.
    const perMinute = await db.sql<{ minute: Date; people: number }[]>`
      SELECT date_trunc('minute', captured_at) AS minute, count(*)::int AS people FROM detections
      WHERE class_name = 'person' AND captured_at > now() - interval '1 hour' GROUP BY 1 ORDER BY 1`;
    assert.ok(perMinute.reduce((sum, row) => sum + row.people, 0) >= framesWithPeople.length);

    cleanRows = await detectionRows(db.sql, accepted.id);
    await worker.stop();
  });

  it('loses and duplicates nothing when a worker is SIGKILLed in the middle of a video', async () => {
    assert.ok(cleanRows.length > 0, 'needs the clean run above');
    const doomed = startWorker();
    await doomed.waitForLog('worker started');
    const workerId = (JSON.parse(doomed.logs.find((line) => line.includes('worker started'))!) as { workerId: string }).workerId;

    const res = await upload(clip, { fps: '5' });
    assert.equal(res.status, 202);
    const { id } = (await res.json()) as { id: string };

    await waitFor('the first committed frames', async () => ((await getVideo(id)).framesDone >= 8 ? true : undefined), 120_000, 20);
    doomed.kill('SIGKILL');
    await doomed.waitForExit();
    const before = await getVideo(id);
    assert.ok(before.framesDone < 40, 'the worker finished before it could be killed; the test proves nothing');
    const held = await redis.lLen(queueKeys(prefix).processing(workerId));
    assert.ok(held > 0, 'the killed worker held no job');

    const rescuer = startWorker();
    await rescuer.waitForLog('worker started');
    const video = await waitCompleted(id);
    assert.equal(video.framesDone, 40);
    assert.equal(video.framesTotal, 40);

    const { frames, distinct } = onlyRow(await db.sql<{ frames: number; distinct: number }[]>`
      SELECT count(*)::int AS frames, count(DISTINCT frame_index)::int AS distinct FROM frames WHERE video_id = ${id}`);
    assert.equal(frames, 40);
    assert.equal(distinct, 40);
    // Same frames, same model: exactly the clean run's detections, row for row.
    assert.deepEqual(await detectionRows(db.sql, id), cleanRows);
    assert.equal(await redis.lLen(queueKeys(prefix).processing(workerId)), 0);
    assert.equal(await redis.lLen(queueKeys(prefix).pending.detect), 0);
    assert.equal(await redis.lLen(queueKeys(prefix).pending.extract), 0);
  });

  it("stamps frames and detections with the video's creation_time tag plus each frame's offset", async () => {
    const worker = startWorker();
    try {
      await worker.waitForLog('worker started');
      // Whole seconds: mp4 keeps creation_time in seconds.
      const creationTime = '2023-03-04T05:06:07.000Z';
      const tagged = await withCreationTime(clip, creationTime, path.join(tmp, 'vtest-8s-tagged.mp4'));
      const res = await upload(tagged, { fps: '2' });
      assert.equal(res.status, 202, await res.clone().text());
      const { id } = (await res.json()) as { id: string };
      const video = await waitCompleted(id);
      assert.equal(video.framesTotal, 16); // 8 s at 2 fps
      assert.equal(((await (await apiFetch(`${baseUrl}/videos/${id}`)).json()) as { capturedAt: string }).capturedAt, creationTime);

      const start = Date.parse(creationTime);
      const detections = await db.sql<{ pts_ms: number; captured_at: Date }[]>`SELECT pts_ms, captured_at FROM detections WHERE video_id = ${id}`;
      assert.ok(detections.length > 0, 'the tagged clip has detections');
      assert.ok(detections.some((row) => row.pts_ms > 0), 'detections beyond the first frame');
      for (const row of detections) assert.equal(row.captured_at.toISOString(), new Date(start + row.pts_ms).toISOString(), `pts ${row.pts_ms}`);
      const frames = await db.sql<{ pts_ms: number; captured_at: Date }[]>`SELECT pts_ms, captured_at FROM frames WHERE video_id = ${id} ORDER BY frame_index`;
      assert.deepEqual(frames.map((row) => row.pts_ms), frames.map((_, i) => i * 500));
      for (const row of frames) assert.equal(row.captured_at.toISOString(), new Date(start + row.pts_ms).toISOString(), `frame at ${row.pts_ms} ms`);
    } finally {
      await worker.stop();
    }
  });
});
