/**
 * The store-level rules cancel and delete rely on (issue 9.6), on real Redis and PostgreSQL: the
 * queue drops exactly one video's jobs in one step, and a cancel or delete either precedes a worker's
 * commit (which then writes nothing) or waits for it.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createClient } from 'redis';
import { PgDetectionRepository } from '../../src/db/detections.repository.ts';
import { PgVideoRepository } from '../../src/db/videos.repository.ts';
import type { FrameResult } from '../../src/db/types.ts';
import { ReliableQueue } from '../../src/queue/reliable-queue.ts';
import type { DeadLetter, DetectionJob, QueueJob } from '../../src/queue/types.ts';
import { createTestDatabase, newVideoInput, type TestDatabase } from '../helpers/database.ts';
import { deleteKeys, uniquePrefix } from '../helpers/redis.ts';
import { sleep } from '../helpers/service.ts';

function job(id: string, videoId: string): DetectionJob {
  return { kind: 'detect', id, videoId, frames: [{ index: 0, ptsMs: 0, key: `videos/${videoId}/frames/000000.jpg` }] };
}

describe('ReliableQueue.discardVideoJobs (real Redis)', () => {
  const client = createClient({ url: 'redis://127.0.0.1:6379' });
  let prefix: string;
  let queue: ReliableQueue;

  before(() => client.connect());
  after(() => client.quit());
  beforeEach(async () => {
    prefix = uniquePrefix();
    queue = new ReliableQueue(client, client, prefix);
    await queue.load();
  });
  afterEach(() => deleteKeys(client, prefix));

  const ids = async (key: string) => (await client.lRange(key, 0, -1)).map((payload) => (JSON.parse(payload) as QueueJob).id);

  it("removes one video's pending jobs of every kind and its dead letters, keeping every other entry in its order", async () => {
    await queue.publish([job('a1', 'a'), job('b1', 'b'), job('a2', 'a'), job('b2', 'b'), job('a3', 'a')]);
    await client.lPush(queue.keys.pending.detect, 'not json'); // a malformed entry is not the video's: it stays for the worker to drop
    assert.ok(await queue.enqueueExtraction('a'));
    assert.ok(await queue.enqueueExtraction('b'));
    // A pending list from before job kinds, not adopted yet.
    await client.lPush(queue.keys.legacyPending, [JSON.stringify({ id: 'a-old', videoId: 'a', frames: [] }), JSON.stringify({ id: 'b-old', videoId: 'b', frames: [] })]);
    const dead = (j: DetectionJob): DeadLetter => ({ job: j, error: 'x', attempts: 5, failedAt: new Date(0).toISOString() });
    await client.lPush(queue.keys.deadLetters, [JSON.stringify(dead(job('a0', 'a'))), JSON.stringify(dead(job('b0', 'b')))]);
    const worker = 'w1';
    await client.lPush(queue.keys.processing(worker), JSON.stringify(job('a-held', 'a')));

    assert.equal(await queue.discardVideoJobs('a'), 6);
    assert.deepEqual(await client.lRange(queue.keys.pending.detect, 0, 0), ['not json']);
    await client.lPop(queue.keys.pending.detect);
    assert.deepEqual(await ids(queue.keys.pending.detect), ['b2', 'b1']);
    assert.deepEqual(await ids(queue.keys.pending.extract), ['extract:b']);
    assert.deepEqual(await ids(queue.keys.legacyPending), ['b-old']);
    assert.deepEqual([...(await queue.extractionsEnqueued(['a', 'b']))], ['b'], "the video's extraction is no longer marked queued");
    assert.deepEqual((await queue.listDeadLetters()).items.map((entry) => entry.job.id), ['b0']);
    // A held job stays with its worker, which acknowledges it without writing.
    assert.deepEqual(await ids(queue.keys.processing(worker)), ['a-held']);

    assert.equal(await queue.discardVideoJobs('a'), 0, 'idempotent');
    assert.equal(await queue.discardVideoJobs('no-such-video'), 0);
  });

  it('handles a queue longer than one RPUSH slice (several thousand entries)', async () => {
    const jobs = Array.from({ length: 5000 }, (_, i) => job(`j${i}`, i % 5 === 0 ? 'gone' : 'kept'));
    await queue.publish(jobs);
    assert.equal(await queue.discardVideoJobs('gone'), 1000);
    const left = await ids(queue.keys.pending.detect);
    assert.deepEqual(left, jobs.filter((_, i) => i % 5 !== 0).map((j) => j.id).reverse());
  });
});

describe('cancel and delete against commits (real PostgreSQL)', () => {
  let db: TestDatabase;
  let videos: PgVideoRepository;
  let detections: PgDetectionRepository;

  before(async () => {
    db = await createTestDatabase();
    videos = new PgVideoRepository(db.sql);
    detections = new PgDetectionRepository(db.sql);
  });
  after(() => db?.drop());

  async function newVideo(): Promise<string> {
    const video = newVideoInput();
    await videos.create(video);
    assert.equal(await videos.startExtraction(video.id), 0);
    return video.id;
  }

  const frames = (from: number, n: number): FrameResult[] =>
    Array.from({ length: n }, (_, i) => ({ frameIndex: from + i, ptsMs: (from + i) * 200, detections: [{ classId: 0, className: 'person', confidence: 0.9, box: [1, 2, 3, 4] }] }));

  const counts = async (id: string) => {
    const [row] = await db.sql<{ frames: number; detections: number; classes: number }[]>`
      SELECT (SELECT count(*) FROM frames WHERE video_id = ${id})::int AS frames,
             (SELECT count(*) FROM detections WHERE video_id = ${id})::int AS detections,
             (SELECT count(*) FROM video_class_counts WHERE video_id = ${id})::int AS classes`;
    return row!;
  };

  it('a cancelled video keeps its rows and takes no more commits, extraction outcomes included', async () => {
    const id = await newVideo();
    assert.equal(await detections.commitFrames(id, new Date(0), frames(0, 2)), 2);
    const cancelled = await videos.cancel(id);
    assert.equal(cancelled?.status, 'cancelled');
    assert.ok(cancelled?.completedAt instanceof Date);
    assert.equal(await videos.isCancelled(id), true);
    assert.equal(await detections.commitFrames(id, new Date(0), frames(2, 2)), 0);
    assert.deepEqual(await counts(id), { frames: 2, detections: 2, classes: 1 });
    // A late extraction outcome does not turn it into something else.
    await videos.markFailed(id, 'ffmpeg was killed');
    assert.equal((await videos.markExtracted(id, 4)).status, 'cancelled');
    assert.deepEqual([(await videos.get(id))?.status, (await videos.get(id))?.framesDone, (await videos.get(id))?.error], ['cancelled', 2, null]);
    // Cancelling again is a no-op that reports the video as it is.
    assert.equal((await videos.cancel(id))?.status, 'cancelled');
  });

  it('a finished video is not cancelled; a missing one reads as cancelled (its extraction must stop)', async () => {
    const id = await newVideo();
    await videos.markExtracted(id, 1);
    await detections.commitFrames(id, new Date(0), frames(0, 1));
    assert.equal((await videos.cancel(id))?.status, 'completed');
    assert.equal(await videos.isCancelled(id), false);
    assert.equal(await videos.cancel(randomUUID()), undefined);
    assert.equal(await videos.isCancelled(randomUUID()), true);
  });

  it('a cancel or delete waits for a commit holding the row lock; a commit after it writes nothing', async () => {
    for (const stop of ['cancel', 'delete'] as const) {
      const id = await newVideo();
      // A commit in progress: another transaction holds the video's row lock, as commitFrames does.
      let release = () => {};
      const held = new Promise<void>((resolve) => (release = resolve));
      let locked = () => {};
      const lockTaken = new Promise<void>((resolve) => (locked = resolve));
      const commit = db.sql.begin(async (tx) => {
        await tx`SELECT id FROM videos WHERE id = ${id} FOR UPDATE`;
        locked();
        await held;
      });
      await lockTaken;
      let stopped = false;
      const stopping = (stop === 'cancel' ? videos.cancel(id) : videos.delete(id)).then(() => (stopped = true));
      await sleep(200);
      assert.equal(stopped, false, `${stop} went past the row lock of a commit in progress`);
      release();
      await commit;
      await stopping;
      // After it, a commit (one that had read the video before, say) writes nothing.
      assert.equal(await detections.commitFrames(id, new Date(0), frames(0, 3)), 0);
      assert.deepEqual(await counts(id), { frames: 0, detections: 0, classes: 0 });
    }
  });

  it("delete removes the video's frames, detections and class counts", async () => {
    const id = await newVideo();
    await detections.commitFrames(id, new Date(0), frames(0, 3));
    assert.deepEqual(await counts(id), { frames: 3, detections: 3, classes: 1 });
    await videos.delete(id);
    await videos.delete(id); // no error the second time
    assert.deepEqual(await counts(id), { frames: 0, detections: 0, classes: 0 });
    assert.equal(await videos.get(id), undefined);
  });
});
