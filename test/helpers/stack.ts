/**
 * One isolated deployment for tests that break things: a private redis-server (AOF), its own
 * database and storage directory, and real API and worker processes.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createClient } from 'redis';
import { queueKeys } from '../../src/queue/keys.ts';
import type { QueueJob } from '../../src/queue/types.ts';
import { storageKeys } from '../../src/storage/keys.ts';
import { apiFetch, TEST_API_KEY } from './api-client.ts';
import { createTestDatabase, detectionRows, type TestDatabase } from './database.ts';
import { RedisServer } from './redis-server.ts';
import { freePort, ServiceProcess, waitFor } from './service.ts';

export const PREFIX = 'stack';

export interface VideoBody {
  id: string;
  status: string;
  framesTotal: number | null;
  framesDone: number;
  framesFailed: number;
  error: string | null;
  previewPending: boolean;
}

export class Stack {
  readonly processes: ServiceProcess[] = [];
  readonly baseUrl: string;
  readonly env: Record<string, string>;

  private constructor(
    readonly redisServer: RedisServer,
    readonly db: TestDatabase,
    readonly redis: ReturnType<typeof createClient>,
    readonly storageDir: string,
    port: number,
    extraEnv: Record<string, string>,
  ) {
    this.baseUrl = `http://127.0.0.1:${port}`;
    this.env = {
      DATABASE_URL: db.url,
      REDIS_URL: redisServer.url,
      REQUIRE_DURABLE_REDIS: 'true',
      QUEUE_PREFIX: PREFIX,
      STORAGE_DIR: storageDir,
      // Frames stay so tests can inspect or restore them; a stack started with { KEEP_FRAMES: 'false' }
      // runs the production default, where each job's frames are deleted after its commit.
      KEEP_FRAMES: 'true',
      PORT: String(port),
      HOST: '127.0.0.1',
      BATCH_SIZE: '4',
      HEARTBEAT_TTL_MS: '1500',
      RECLAIM_INTERVAL_MS: '300',
      RETRY_BASE_MS: '50',
      RETRY_MAX_MS: '500',
      API_KEY: TEST_API_KEY,
      ...extraEnv,
    };
  }

  static async start(tmp: string, extraEnv: Record<string, string> = {}): Promise<Stack> {
    const redisServer = await RedisServer.start({ appendfsync: 'always' });
    const db = await createTestDatabase();
    const redis = createClient({ url: redisServer.url });
    redis.on('error', () => {}); // the tests kill this server on purpose
    await redis.connect();
    const storageDir = await fs.mkdtemp(path.join(tmp, 'storage-'));
    return new Stack(redisServer, db, redis, storageDir, await freePort(), extraEnv);
  }

  get keys() {
    return queueKeys(PREFIX);
  }

  async startApi(): Promise<ServiceProcess> {
    const api = ServiceProcess.start('api', this.env);
    this.processes.push(api);
    await api.waitForLog('api listening');
    return api;
  }

  async startWorker(env: Record<string, string> = {}): Promise<ServiceProcess> {
    const worker = ServiceProcess.start('worker', { ...this.env, ...env });
    this.processes.push(worker);
    await worker.waitForLog('worker started', 60_000);
    return worker;
  }

  /** A worker that only extracts (WORKER_ROLES=extract): it never loads the model, so its jobs wait for a detector. */
  startExtractor(env: Record<string, string> = {}): Promise<ServiceProcess> {
    return this.startWorker({ WORKER_ROLES: 'extract', ...env });
  }

  /** The extraction checkpoint of a video: frames stored and published as detection jobs. */
  async framesPublished(videoId: string): Promise<number> {
    const [row] = await this.db.sql<{ frames_published: number }[]>`SELECT frames_published FROM videos WHERE id = ${videoId}`;
    return row!.frames_published;
  }

  workerId(worker: ServiceProcess): string {
    const line = worker.logs.find((l) => l.includes('"worker started"'));
    return (JSON.parse(line!) as { workerId: string }).workerId;
  }

  async upload(file: string, fps: string): Promise<string> {
    const form = new FormData();
    form.append('fps', fps);
    form.append('video', new Blob([await fs.readFile(file)]), path.basename(file));
    const res = await apiFetch(`${this.baseUrl}/videos`, { method: 'POST', body: form });
    assert.equal(res.status, 202, await res.clone().text());
    return ((await res.json()) as { id: string }).id;
  }

  async video(id: string): Promise<VideoBody> {
    return (await (await apiFetch(`${this.baseUrl}/videos/${id}`)).json()) as VideoBody;
  }

  waitFor(what: string, predicate: (video: VideoBody) => boolean, id: string, timeoutMs = 180_000): Promise<VideoBody> {
    return waitFor(what, async () => {
      const video = await this.video(id);
      return predicate(video) ? video : undefined;
    }, timeoutMs, 50);
  }

  waitCompleted(id: string): Promise<VideoBody> {
    return this.waitFor(`video ${id} to complete`, (v) => v.status === 'completed' || v.status === 'failed', id);
  }

  /** Frames still owned by Redis (pending or held by any worker); extraction jobs carry none. */
  async framesInRedis(): Promise<number> {
    const lists = [this.keys.pending.detect, ...(await this.redis.keys(`${PREFIX}:queue:processing:*`))];
    let frames = 0;
    for (const list of lists) for (const payload of await this.redis.lRange(list, 0, -1)) frames += (JSON.parse(payload) as QueueJob & { frames?: unknown[] }).frames?.length ?? 0;
    return frames;
  }

  async framesCommitted(videoId?: string): Promise<number> {
    const [row] = videoId
      ? await this.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM frames WHERE video_id = ${videoId}`
      : await this.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM frames`;
    return row!.n;
  }

  /**
   * A video's results as comparable rows: every frame row (index, pts, detection count, error) and
   * every detection (frame, pts, class id and name, confidence, box). The real columns are float4,
   * so 6 significant digits are all of their precision: nothing is rounded beyond float noise.
   */
  async detectionRows(videoId: string): Promise<string[]> {
    return detectionRows(this.db.sql, videoId);
  }

  /** Frame indexes of a video held in Redis (pending or in any of these workers' lists), read atomically. */
  async frameIndexesInRedis(videoId: string, workerIds: string[]): Promise<Set<number>> {
    const read = this.redis.multi().lRange(this.keys.pending.detect, 0, -1);
    for (const id of workerIds) read.lRange(this.keys.processing(id), 0, -1);
    const lists = (await read.exec()) as unknown as string[][];
    const held = new Set<number>();
    for (const list of lists) for (const payload of list) {
      const job = JSON.parse(payload) as QueueJob;
      if (job.videoId === videoId && job.kind !== 'extract') for (const frame of job.frames) held.add(frame.index);
    }
    return held;
  }

  async committedFrameIndexes(videoId: string): Promise<Set<number>> {
    const rows = await this.db.sql<{ frame_index: number }[]>`SELECT frame_index FROM frames WHERE video_id = ${videoId}`;
    return new Set(rows.map((row) => row.frame_index));
  }

  /** Frame files of a video still in storage (local driver); none when its frames directory is gone. */
  async storedFrames(videoId: string): Promise<string[]> {
    return fs.readdir(path.join(this.storageDir, storageKeys.framesPrefix(videoId))).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return [];
      throw error;
    });
  }

  /** Every processed frame recorded once, with exactly the detections its row says it has. */
  async assertExactlyOnce(videoId: string, framesTotal: number): Promise<void> {
    const [row] = await this.db.sql<{ frames: number; distinct: number; boxes: number; expected: number }[]>`
      SELECT (SELECT count(*)::int FROM frames WHERE video_id = ${videoId}) AS frames,
             (SELECT count(DISTINCT frame_index)::int FROM frames WHERE video_id = ${videoId}) AS distinct,
             (SELECT count(*)::int FROM detections WHERE video_id = ${videoId}) AS boxes,
             (SELECT coalesce(sum(detection_count), 0)::int FROM frames WHERE video_id = ${videoId}) AS expected`;
    assert.deepEqual(row, { frames: framesTotal, distinct: framesTotal, boxes: row!.expected, expected: row!.expected });
  }

  async stop(): Promise<void> {
    await Promise.all(this.processes.map((p) => p.stop()));
    await this.redis.quit().catch(() => undefined);
    await this.redisServer.stop();
    await this.db.drop();
  }
}
