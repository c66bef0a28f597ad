import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createClient } from 'redis';
import { storageKeys } from '../../src/storage/keys.ts';
import { S3Storage } from '../../src/storage/s3-storage.ts';
import { apiFetch } from '../helpers/api-client.ts';
import { createTestDatabase, onlyRow, type TestDatabase } from '../helpers/database.ts';
import { cutClip, VTEST_AVI } from '../helpers/media-fixtures.ts';
import { deleteKeys, uniquePrefix } from '../helpers/redis.ts';
import { TestS3Server } from '../helpers/s3-server.ts';
import { freePort, ServiceProcess, waitFor } from '../helpers/service.ts';

interface VideoBody {
  id: string;
  status: string;
  framesTotal: number | null;
  framesDone: number;
  error: string | null;
}

const S3_PREFIX = 'e2e/vidsense';

describe('pipeline end to end on S3 storage (STORAGE_DRIVER=s3, s3rver): real processes, Redis, PostgreSQL, ffmpeg and YOLOv8', function () {
  this.timeout(180_000);

  let db: TestDatabase;
  let s3: TestS3Server;
  let storage: S3Storage;
  let prefix: string;
  let tmp: string;
  let clip: string;
  let baseUrl: string;
  const processes: ServiceProcess[] = [];
  const redis = createClient({ url: 'redis://127.0.0.1:6379' });

  before(async () => {
    db = await createTestDatabase();
    s3 = await TestS3Server.start();
    storage = new S3Storage(s3.storageOptions(S3_PREFIX));
    prefix = uniquePrefix();
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-e2e-s3-'));
    clip = await cutClip(VTEST_AVI, 3, path.join(tmp, 'vtest-3s.mp4'));
    await fs.mkdir(path.join(tmp, 'work'));
    const port = await freePort();
    baseUrl = `http://127.0.0.1:${port}`;
    const env = {
      ...s3.env(S3_PREFIX),
      // Frames deleted once committed (the default) and, here, the upload once its frames are out.
      KEEP_SOURCE_VIDEO: 'false',
      WORK_DIR: path.join(tmp, 'work'),
      // A local directory that must stay unused: everything goes to the bucket.
      STORAGE_DIR: path.join(tmp, 'unused-local-storage'),
      DATABASE_URL: db.url,
      QUEUE_PREFIX: prefix,
      PORT: String(port),
      HOST: '127.0.0.1',
      BATCH_SIZE: '4',
    };
    await redis.connect();
    const api = ServiceProcess.start('api', env);
    const worker = ServiceProcess.start('worker', env);
    processes.push(api, worker);
    await Promise.all([api.waitForLog('api listening'), worker.waitForLog('worker started', 60_000)]);
  });

  after(async () => {
    await Promise.all(processes.map((p) => p.stop()));
    storage?.close();
    await s3?.stop();
    if (redis.isOpen) {
      await deleteKeys(redis, prefix);
      await redis.quit();
    }
    await db?.drop();
    await fs.rm(tmp, { recursive: true, force: true });
  });

  it('uploads to the bucket, detects people, and leaves storage as the lifecycle settings say', async () => {
    const form = new FormData();
    form.append('fps', '2');
    form.append('video', new Blob([await fs.readFile(clip)]), 'vtest-3s.mp4');
    const res = await apiFetch(`${baseUrl}/videos`, { method: 'POST', body: form });
    assert.equal(res.status, 202, await res.clone().text());
    const { id } = (await res.json()) as { id: string };

    const video = await waitFor(`video ${id} to complete`, async () => {
      const body = (await (await apiFetch(`${baseUrl}/videos/${id}`)).json()) as VideoBody;
      if (body.status === 'failed') throw new Error(`video failed: ${body.error}`);
      return body.status === 'completed' ? body : undefined;
    }, 150_000, 200);
    assert.equal(video.framesTotal, 6); // 3 s at 2 fps
    assert.equal(video.framesDone, 6);

    const { frames, people } = onlyRow(await db.sql<{ frames: number; people: number }[]>`
      SELECT (SELECT count(*)::int FROM frames WHERE video_id = ${id}) AS frames,
             (SELECT count(DISTINCT frame_index)::int FROM detections WHERE video_id = ${id} AND class_name = 'person' AND confidence >= 0.5) AS people`);
    assert.equal(frames, 6);
    assert.ok(people >= 5, `people seen in only ${people} of 6 frames`);

    // KEEP_FRAMES=false (default) and KEEP_SOURCE_VIDEO=false: the video's frames and upload are deleted;
    // only its browser preview stays (the web app plays it). The preview (made while the frames are
    // detected, the source deleted after it) and the last deletions may land just after the status turns completed.
    const preview = storageKeys.preview(id, 'mp4');
    await waitFor('only the preview to stay in the bucket', async () => {
      const keys = await storage.list(`videos/${id}`);
      return keys.length === 1 && keys[0] === preview ? true : undefined;
    }, 60_000, 100);
    assert.equal(await s3.objectCount(), 1);
    assert.deepEqual(await s3.multipartUploads().then((u) => u.open), 0);
    // ffmpeg's downloaded copies are gone, and nothing was written to local storage.
    assert.deepEqual(await fs.readdir(path.join(tmp, 'work')), []);
    await assert.rejects(fs.access(path.join(tmp, 'unused-local-storage')));
  });
});
