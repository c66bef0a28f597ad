import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createSql } from '../../src/db/client.ts';
import { PgDetectionRepository } from '../../src/db/detections.repository.ts';
import { loadMigrations, migrate } from '../../src/db/migrate.ts';
import type { FrameResult } from '../../src/db/types.ts';
import { PgVideoRepository } from '../../src/db/videos.repository.ts';
import { createTestDatabase, newVideoInput, onlyRow, type TestDatabase } from '../helpers/database.ts';

function frame(frameIndex: number, classes: string[] = ['person']): FrameResult {
  return {
    frameIndex,
    ptsMs: frameIndex * 200,
    detections: classes.map((className, i) => ({ classId: className === 'car' ? 2 : 0, className, confidence: 0.5 + (i % 40) / 100, box: [i, i, i + 10, i + 20] })),
  };
}

describe('PostgreSQL repositories (real database)', () => {
  let db: TestDatabase;
  let videos: PgVideoRepository;
  let detections: PgDetectionRepository;

  before(async () => {
    db = await createTestDatabase();
    videos = new PgVideoRepository(db.sql);
    detections = new PgDetectionRepository(db.sql);
  });
  after(() => db.drop());

  it('migrations run exactly once when several processes start at once on an empty database, and again change nothing', async () => {
    const empty = await createTestDatabase({ migrate: false });
    const processes = [createSql(empty.url, { max: 1 }), createSql(empty.url, { max: 1 }), createSql(empty.url, { max: 1 })];
    try {
      const applied = await Promise.all(processes.map((sql) => migrate(sql)));
      const all = (await loadMigrations()).map((m) => m.name);
      assert.ok(all.length >= 2);
      assert.deepEqual(applied.flat().sort(), all, 'each migration applied by exactly one process');
      assert.deepEqual(await migrate(processes[0]!), []);
      const rows = await empty.sql<{ name: string }[]>`SELECT name FROM schema_migrations ORDER BY version`;
      assert.deepEqual(rows.map((r) => r.name), all);
    } finally {
      // End the pools before the database is dropped under them.
      await Promise.all(processes.map((sql) => sql.end({ timeout: 5 })));
      await empty.drop();
    }
  });

  it('creates and reads a video, keeping bigints and the probe', async () => {
    const input = newVideoInput();
    const created = await videos.create(input);
    assert.equal(created.status, 'queued');
    assert.equal(created.sizeBytes, 5_000_000_000);
    const read = await videos.get(input.id);
    assert.deepEqual(read, created);
    const { probe } = onlyRow(await db.sql<{ probe: unknown }[]>`SELECT probe FROM videos WHERE id = ${input.id}`);
    assert.deepEqual(probe, input.probe);
    assert.equal(await videos.get(randomUUID()), undefined);
  });

  it('records a preview on a video, and refuses a preview without its MIME type', async () => {
    const video = await videos.create(newVideoInput());
    assert.equal(video.preview, null);
    await videos.setPreview(video.id, { key: `videos/${video.id}/preview.mp4`, mimeType: 'video/mp4' });
    assert.deepEqual((await videos.get(video.id))!.preview, { key: `videos/${video.id}/preview.mp4`, mimeType: 'video/mp4' });
    await assert.rejects(db.sql`UPDATE videos SET preview_mime_type = NULL WHERE id = ${video.id}`, /videos_preview_complete/);
  });

  it('commits idempotently: a redelivered job adds no rows and no progress', async () => {
    const video = await videos.create(newVideoInput());
    assert.equal(await videos.startExtraction(video.id), 0);
    const batch = [frame(0, ['person', 'car']), frame(1), frame(2, [])];
    assert.equal(await detections.commitFrames(video.id, video.capturedAt, batch), 3);
    assert.equal(await detections.commitFrames(video.id, video.capturedAt, batch), 0);
    // A partly overlapping redelivery adds only the new frame.
    assert.equal(await detections.commitFrames(video.id, video.capturedAt, [frame(2, []), frame(3)]), 1);
    const counts = onlyRow(await db.sql<{ frames: number; boxes: number }[]>`
      SELECT (SELECT count(*)::int FROM frames WHERE video_id = ${video.id}) AS frames,
             (SELECT count(*)::int FROM detections WHERE video_id = ${video.id}) AS boxes`);
    assert.deepEqual(counts, { frames: 4, boxes: 4 });
    assert.equal((await videos.get(video.id))!.framesDone, 4);
    const car = onlyRow(await db.sql<{ captured_at: Date; pts_ms: number }[]>`SELECT captured_at, pts_ms FROM detections WHERE video_id = ${video.id} AND class_name = 'car'`);
    assert.equal(car.captured_at.toISOString(), '2026-01-01T12:00:00.000Z');
    const late = onlyRow(await db.sql<{ captured_at: Date }[]>`SELECT captured_at FROM detections WHERE video_id = ${video.id} AND frame_index = 3`);
    assert.equal(late.captured_at.toISOString(), '2026-01-01T12:00:00.600Z');
  });

  it('completes when the last frame is committed after extraction ends', async () => {
    const video = await videos.create(newVideoInput());
    await detections.commitFrames(video.id, video.capturedAt, [frame(0)]);
    const extracted = await videos.markExtracted(video.id, 2);
    assert.equal(extracted.status, 'processing');
    await detections.commitFrames(video.id, video.capturedAt, [frame(1)]);
    const done = (await videos.get(video.id))!;
    assert.equal(done.status, 'completed');
    assert.ok(done.completedAt);
  });

  it('completes when extraction ends after the last frame was committed', async () => {
    const video = await videos.create(newVideoInput());
    await detections.commitFrames(video.id, video.capturedAt, [frame(0), frame(1)]);
    assert.equal((await videos.get(video.id))!.status, 'queued');
    const extracted = await videos.markExtracted(video.id, 2);
    assert.equal(extracted.status, 'completed');
    assert.equal(extracted.framesDone, 2);
  });

  it('a video with no frames completes at once; framesDone can never exceed framesTotal', async () => {
    const empty = await videos.create(newVideoInput());
    assert.equal((await videos.markExtracted(empty.id, 0)).status, 'completed');
    const video = await videos.create(newVideoInput());
    await videos.markExtracted(video.id, 1);
    await assert.rejects(detections.commitFrames(video.id, video.capturedAt, [frame(0), frame(1)]), /frames_done|check constraint/);
    assert.equal((await videos.get(video.id))!.framesDone, 0, 'the refused commit left nothing');
  });

  it('a failed video takes no more results and is never revived', async () => {
    const video = await videos.create(newVideoInput());
    await videos.markFailed(video.id, 'frame extraction failed: boom');
    assert.equal(await detections.commitFrames(video.id, video.capturedAt, [frame(0)]), 0);
    const after = await videos.markExtracted(video.id, 1);
    assert.equal(after.status, 'failed');
    assert.equal(after.error, 'frame extraction failed: boom');
  });

  it('two workers committing the same frames at once record them once', async () => {
    const video = await videos.create(newVideoInput());
    await videos.markExtracted(video.id, 4);
    const other = createSql(db.url, { max: 2 });
    try {
      const batch = [frame(0, ['car']), frame(1, ['person', 'car']), frame(2), frame(3, [])];
      const results = await Promise.all([
        detections.commitFrames(video.id, video.capturedAt, batch),
        new PgDetectionRepository(other).commitFrames(video.id, video.capturedAt, batch),
        detections.commitFrames(video.id, video.capturedAt, batch.slice(1, 3)),
      ]);
      assert.equal(results.reduce((a, b) => a + b, 0), 4);
    } finally {
      await other.end({ timeout: 5 });
    }
    const done = (await videos.get(video.id))!;
    assert.equal(done.framesDone, 4);
    assert.equal(done.status, 'completed');
    const { boxes } = onlyRow(await db.sql<{ boxes: number }[]>`SELECT count(*) AS boxes FROM detections WHERE video_id = ${video.id}`);
    assert.equal(boxes, 4, 'count(*) (bigint) comes back as a number');
  });

  it('completes whichever of markExtracted and the last commit runs second, even when they race', async () => {
    for (let round = 0; round < 10; round += 1) {
      const video = await videos.create(newVideoInput());
      await detections.commitFrames(video.id, video.capturedAt, [frame(0)]);
      const [, extracted] = await Promise.all([detections.commitFrames(video.id, video.capturedAt, [frame(1)]), videos.markExtracted(video.id, 2)]);
      assert.ok(extracted.status === 'processing' || extracted.status === 'completed');
      const final = (await videos.get(video.id))!;
      assert.equal(final.status, 'completed', `round ${round}`);
      assert.equal(final.framesDone, 2);
      assert.ok(final.completedAt);
    }
  });

  it('a deleted video takes no results', async () => {
    const video = await videos.create(newVideoInput());
    await videos.delete(video.id);
    assert.equal(await detections.commitFrames(video.id, video.capturedAt, [frame(0)]), 0);
  });

  it('records failed frames, completes the video with them counted, and lets a later success replace a failure', async () => {
    const video = await videos.create(newVideoInput());
    await videos.markExtracted(video.id, 3);
    const failed = (frameIndex: number): FrameResult => ({ frameIndex, ptsMs: frameIndex * 200, detections: [], error: 'dead-lettered after 3 attempts: ENOENT' });
    assert.equal(await detections.commitFrames(video.id, video.capturedAt, [frame(0), failed(1), failed(2)]), 3);
    let row = (await videos.get(video.id))!;
    assert.deepEqual([row.status, row.framesDone, row.framesFailed, row.error], ['completed', 1, 2, '2 of 3 frames failed: dead-lettered after 3 attempts: ENOENT']);
    // The same failure again changes nothing; a success for frame 1 replaces its failure.
    assert.equal(await detections.commitFrames(video.id, video.capturedAt, [failed(1)]), 0);
    assert.equal(await detections.commitFrames(video.id, video.capturedAt, [frame(1, ['car']), failed(2)]), 1);
    row = (await videos.get(video.id))!;
    assert.deepEqual([row.status, row.framesDone, row.framesFailed, row.error], ['completed', 2, 1, '1 of 3 frames failed: dead-lettered after 3 attempts: ENOENT']);
    // A success never turns back into a failure.
    assert.equal(await detections.commitFrames(video.id, video.capturedAt, [failed(0)]), 0);
    const page = await detections.listFrames({ videoId: video.id, cursor: null, limit: 10 });
    assert.deepEqual(page.frames.map((f) => [f.frameIndex, f.detections.length, f.error ?? null]), [[0, 1, null], [1, 1, null], [2, 0, 'dead-lettered after 3 attempts: ENOENT']]);
  });

  it('a video whose every frame failed is failed with a reason, and a retried dead letter that succeeds completes it', async () => {
    const video = await videos.create(newVideoInput());
    await videos.markExtracted(video.id, 4);
    // A corrupt frame fails for good; a dead letter's frames may pass on a retry.
    const failed = (frameIndex: number, error: string): FrameResult => ({ frameIndex, ptsMs: frameIndex * 200, detections: [], error, retryable: error.startsWith('dead-lettered') });
    await detections.commitFrames(video.id, video.capturedAt, [failed(0, 'corrupt frame: bad header'), failed(1, 'dead-lettered after 2 attempts: ENOENT')]);
    let row = (await videos.get(video.id))!;
    assert.deepEqual([row.status, row.error], ['processing', null], 'not settled before every frame is accounted for');
    await detections.commitFrames(video.id, video.capturedAt, [failed(2, 'dead-lettered after 2 attempts: ENOENT'), failed(3, 'dead-lettered after 2 attempts: EIO')]);
    row = (await videos.get(video.id))!;
    assert.deepEqual([row.status, row.framesDone, row.framesFailed, row.error], ['failed', 0, 4, '4 of 4 frames failed: dead-lettered after 2 attempts: EIO']);
    assert.ok(row.completedAt);

    // The dead letter of frames 1..3 is retried and succeeds: the video is completed, and its error names only frame 0.
    assert.deepEqual([...(await detections.committedFrames(video.id, [0, 1, 2, 3]))], [0], 'only the corrupt frame is settled');
    assert.equal(await detections.commitFrames(video.id, video.capturedAt, [frame(1), frame(2, ['car']), frame(3, [])]), 3);
    row = (await videos.get(video.id))!;
    assert.deepEqual([row.status, row.framesDone, row.framesFailed, row.error], ['completed', 3, 1, '1 of 4 frames failed: corrupt frame: bad header']);
    // A success for the last failed frame leaves no error.
    await detections.commitFrames(video.id, video.capturedAt, [frame(0)]);
    row = (await videos.get(video.id))!;
    assert.deepEqual([row.status, row.framesDone, row.framesFailed, row.error], ['completed', 4, 0, null]);
  });

  it('a frame failed for good counts as settled for a redelivery; a dead letter\'s frames stay retryable', async () => {
    const video = await videos.create(newVideoInput());
    await videos.markExtracted(video.id, 4);
    await detections.commitFrames(video.id, video.capturedAt, [
      { frameIndex: 0, ptsMs: 0, detections: [] },
      { frameIndex: 1, ptsMs: 200, detections: [], error: 'corrupt frame: bad header' },
    ]);
    await detections.commitFrames(video.id, video.capturedAt, [
      { frameIndex: 2, ptsMs: 400, detections: [], error: 'dead-lettered after 3 attempts: ENOENT', retryable: true },
    ]);
    // The corrupt frame is not read again (a KEEP_FRAMES=false commit deleted it); the dead letter's frame is.
    assert.deepEqual([...(await detections.committedFrames(video.id, [0, 1, 2, 3]))].sort(), [0, 1]);
    // The dead letter is retried and its frame succeeds: settled, and no longer a failure.
    await detections.commitFrames(video.id, video.capturedAt, [{ frameIndex: 2, ptsMs: 400, detections: [] }]);
    assert.deepEqual([...(await detections.committedFrames(video.id, [0, 1, 2, 3]))].sort(), [0, 1, 2]);
    // A dead letter that also covered the corrupt frame leaves it failed for good.
    await detections.commitFrames(video.id, video.capturedAt, [
      { frameIndex: 1, ptsMs: 200, detections: [], error: 'dead-lettered after 3 attempts: EIO', retryable: true },
      { frameIndex: 3, ptsMs: 600, detections: [], error: 'dead-lettered after 3 attempts: EIO', retryable: true },
    ]);
    assert.deepEqual([...(await detections.committedFrames(video.id, [0, 1, 2, 3]))].sort(), [0, 1, 2]);
    const row = (await videos.get(video.id))!;
    assert.deepEqual([row.status, row.framesDone, row.framesFailed], ['completed', 2, 2]);
  });

  it('markExtracted settles a video whose frames were all recorded first: failed when none succeeded', async () => {
    const video = await videos.create(newVideoInput());
    await detections.commitFrames(video.id, video.capturedAt, [{ frameIndex: 0, ptsMs: 0, detections: [], error: 'dead-lettered after 5 attempts: ENOENT' }]);
    const extracted = await videos.markExtracted(video.id, 1);
    assert.deepEqual([extracted.status, extracted.framesDone, extracted.framesFailed, extracted.error], ['failed', 0, 1, '1 of 1 frames failed: dead-lettered after 5 attempts: ENOENT']);
    const clean = await videos.create(newVideoInput());
    await detections.commitFrames(clean.id, clean.capturedAt, [frame(0), frame(1)]);
    const done = await videos.markExtracted(clean.id, 2);
    assert.deepEqual([done.status, done.error], ['completed', null]);
  });

  it('extraction checkpoints: a job starts or resumes only a queued or extracting video, from frames_published', async () => {
    const video = await videos.create(newVideoInput());
    assert.equal(await videos.startExtraction(video.id), 0);
    assert.equal((await videos.get(video.id))!.status, 'extracting');
    assert.equal(await videos.recordFramesPublished(video.id, 8), true);
    await videos.recordFramesPublished(video.id, 4); // a late write of an older batch never moves it back
    assert.equal(await videos.startExtraction(video.id), 8, 'a redelivered job resumes after the checkpoint');
    await videos.markExtracted(video.id, 10);
    assert.equal(await videos.startExtraction(video.id), undefined, 'an extracted video is not extracted again');
    assert.equal(await videos.recordFramesPublished(video.id, 12), false, 'a running extraction learns its video left extracting');
    const failed = await videos.create(newVideoInput());
    assert.equal(await videos.markFailed(failed.id, 'frame extraction failed: x'), true);
    assert.equal(await videos.startExtraction(failed.id), undefined);
    // A late failure of a second delivery never fails a video its extraction already finished.
    assert.equal(await videos.markFailed(video.id, 'frame extraction failed: source gone'), false);
    assert.deepEqual([(await videos.get(video.id))!.status, (await videos.get(video.id))!.error], ['processing', null]);
    assert.equal(await videos.startExtraction(randomUUID()), undefined);
    const columns = await db.sql`SELECT column_name FROM information_schema.columns WHERE table_name = 'videos' AND column_name = 'extraction_heartbeat_at'`;
    assert.equal(columns.length, 0, 'the extraction lease is gone');
  });

  it('lists queued videos older than a grace, oldest first, by keyset pages', async () => {
    const queued = [];
    for (let i = 0; i < 3; i += 1) queued.push(await videos.create(newVideoInput()));
    const started = await videos.create(newVideoInput());
    await videos.startExtraction(started.id);
    for (const [i, video] of [...queued, started].entries()) await db.sql`UPDATE videos SET created_at = now() - ${60 - i} * interval '1 minute' WHERE id = ${video.id}`;
    const young = await videos.create(newVideoInput());
    const mine = new Set([...queued, started, young].map((video) => video.id));
    const all: string[] = [];
    for (let after: { createdAt: Date; id: string } | undefined, page; (page = await videos.listQueued(10_000, after, 2)).length > 0; after = page.at(-1)) {
      all.push(...page.map((row) => row.id).filter((id) => mine.has(id)));
    }
    assert.deepEqual(all, queued.map((video) => video.id), 'queued and older than the grace, in creation order; neither the extracting nor the young one');
  });

  it('lists frames with keyset pagination and filters', async () => {
    const video = await videos.create(newVideoInput());
    await detections.commitFrames(video.id, video.capturedAt, [frame(0, ['person']), frame(1, []), frame(2, ['car', 'person']), frame(3, ['car']), frame(4, ['person'])]);
    const first = await detections.listFrames({ videoId: video.id, cursor: null, limit: 2 });
    assert.deepEqual(first.frames.map((f) => f.frameIndex), [0, 1]);
    assert.equal(first.nextCursor, 1);
    const second = await detections.listFrames({ videoId: video.id, cursor: 1, limit: 2 });
    assert.deepEqual(second.frames.map((f) => [f.frameIndex, f.detections.length]), [[2, 2], [3, 1]]);
    const last = await detections.listFrames({ videoId: video.id, cursor: 3, limit: 2 });
    assert.deepEqual(last.frames.map((f) => f.frameIndex), [4]);
    assert.equal(last.nextCursor, null);

    const cars = await detections.listFrames({ videoId: video.id, cursor: null, limit: 10, className: 'car' });
    assert.deepEqual(cars.frames.map((f) => f.frameIndex), [2, 3]);
    assert.ok(cars.frames.every((f) => f.detections.every((d) => d.className === 'car')));
    const confident = await detections.listFrames({ videoId: video.id, cursor: null, limit: 10, className: 'person', minConfidence: 0.505 });
    assert.deepEqual(confident.frames.map((f) => f.frameIndex), [2]); // the only person at 0.51
    // A confidence floor alone filters detections but still lists every frame.
    const floor = await detections.listFrames({ videoId: video.id, cursor: null, limit: 10, minConfidence: 0.505 });
    assert.deepEqual(floor.frames.map((f) => [f.frameIndex, f.detections.length]), [[0, 0], [1, 0], [2, 1], [3, 0], [4, 0]]);
    assert.equal(floor.nextCursor, null);
    // Within a frame, most confident first: the person (0.51, second in its frame) before the car (0.50).
    assert.deepEqual(second.frames[0]!.detections.map((d) => [d.className, d.box]), [['person', [1, 1, 11, 21]], ['car', [0, 0, 10, 20]]]);
  });

  it('bulk-inserts a large batch in one commit (beyond the 65,535-parameter limit of row-wise inserts)', async () => {
    const video = await videos.create(newVideoInput());
    const frames = Array.from({ length: 16 }, (_, i) => frame(i, Array.from({ length: 1250 }, () => 'person')));
    assert.equal(await detections.commitFrames(video.id, video.capturedAt, frames), 16);
    const { boxes } = onlyRow(await db.sql<{ boxes: number }[]>`SELECT count(*)::int AS boxes FROM detections WHERE video_id = ${video.id}`);
    assert.equal(boxes, 20_000);
  });

  it('deleting a video removes its frames and detections', async () => {
    const video = await videos.create(newVideoInput());
    await detections.commitFrames(video.id, video.capturedAt, [frame(0)]);
    await videos.delete(video.id);
    const { left } = onlyRow(await db.sql<{ left: number }[]>`
      SELECT (SELECT count(*) FROM frames WHERE video_id = ${video.id}) + (SELECT count(*) FROM detections WHERE video_id = ${video.id}) AS left`);
    assert.equal(Number(left), 0);
  });
});
