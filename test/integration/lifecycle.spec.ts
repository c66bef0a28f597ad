/**
 * Issue 9.6, cancel and delete, on real processes: API and worker processes of a private deployment
 * (its own redis-server, database and storage; see helpers/stack.ts), real ffmpeg and YOLOv8. Each case
 * checks the answer, that the service stays healthy, and that the video left nothing behind in
 * storage, Redis or PostgreSQL (or, for a cancel, exactly what it keeps).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { storageKeys } from '../../src/storage/keys.ts';
import { apiFetch, TEST_API_KEY } from '../helpers/api-client.ts';
import { readEventStream, type ReceivedEvent } from '../helpers/event-stream.ts';
import { storedFiles } from '../helpers/leftovers.ts';
import { cutClip, VTEST_AVI } from '../helpers/media-fixtures.ts';
import { TestS3Server } from '../helpers/s3-server.ts';
import { ServiceProcess, sleep, waitFor } from '../helpers/service.ts';
import { PREFIX, Stack } from '../helpers/stack.ts';

/** What a video has in each store. */
interface Traces {
  files: string[];
  /** Entries of any queue list (pending, processing, dead letters) that name the video, and its mark of a queued extraction. */
  jobs: number;
  videos: number;
  frames: number;
  detections: number;
  classCounts: number;
}

const NONE: Traces = { files: [], jobs: 0, videos: 0, frames: 0, detections: 0, classCounts: 0 };

async function traces(stack: Stack, id: string, files?: () => Promise<string[]>): Promise<Traces> {
  let jobs = 0;
  for await (const batch of stack.redis.scanIterator({ MATCH: `${PREFIX}:*`, COUNT: 500 })) {
    for (const key of [batch].flat()) {
      if ((await stack.redis.type(key)) !== 'list') continue;
      for (const entry of await stack.redis.lRange(key, 0, -1)) if (entry.includes(id)) jobs += 1;
    }
  }
  if (await stack.redis.sIsMember(stack.keys.extractionsEnqueued, id)) jobs += 1;
  const [rows] = await stack.db.sql<Omit<Traces, 'files' | 'jobs'>[]>`
    SELECT (SELECT count(*) FROM videos WHERE id = ${id})::int AS videos,
           (SELECT count(*) FROM frames WHERE video_id = ${id})::int AS frames,
           (SELECT count(*) FROM detections WHERE video_id = ${id})::int AS detections,
           (SELECT count(*) FROM video_class_counts WHERE video_id = ${id})::int AS "classCounts"`;
  return { files: files ? await files() : await storedFiles(path.join(stack.storageDir, storageKeys.videoPrefix(id))), jobs, ...rows! };
}

/** Waits until the video has nothing left anywhere (workers acknowledge held jobs a moment later). */
async function assertNothingLeft(stack: Stack, id: string, files?: () => Promise<string[]>): Promise<void> {
  let last: Traces | undefined;
  await waitFor(
    `video ${id} to leave nothing behind`,
    async () => {
      last = await traces(stack, id, files);
      return JSON.stringify(last) === JSON.stringify(NONE) ? true : undefined;
    },
    30_000,
    100,
  ).catch((error: Error) => {
    throw new Error(`${error.message}; last seen: ${JSON.stringify(last)}`);
  });
}

/** Process ids of ffmpeg runs whose command line names this video (its source file in local storage). */
async function ffmpegRunsOf(id: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await fs.readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    const [binary] = cmdline.split('\0');
    if (binary !== undefined && path.basename(binary) === 'ffmpeg' && cmdline.includes(id)) pids.push(Number(entry));
  }
  return pids;
}

async function assertHealthy(stack: Stack, baseUrl = stack.baseUrl): Promise<void> {
  const ready = await fetch(`${baseUrl}/readyz`);
  assert.equal(ready.status, 200, await ready.text());
  for (const process of stack.processes) assert.ok(process.alive, `${process.role} died:\n${process.logs.slice(-10).join('\n')}`);
}

function deleteVideo(baseUrl: string, id: string, apiKey = TEST_API_KEY): Promise<Response> {
  return apiFetch(`${baseUrl}/videos/${id}`, { method: 'DELETE', apiKey });
}

function cancelVideo(baseUrl: string, id: string, apiKey = TEST_API_KEY): Promise<Response> {
  return apiFetch(`${baseUrl}/videos/${id}/cancel`, { method: 'POST', apiKey });
}

/** Stops the worker (SIGSTOP) at a moment it holds jobs of the video; returns how many it holds. */
async function freezeHoldingJobs(stack: Stack, worker: ServiceProcess, id: string): Promise<number> {
  const list = stack.keys.processing(stack.workerId(worker));
  return waitFor('the worker to hold jobs of the video', async () => {
    worker.kill('SIGSTOP');
    const held = (await stack.redis.lRange(list, 0, -1)).filter((entry) => entry.includes(id)).length;
    if (held > 0) return held;
    worker.kill('SIGCONT');
    return undefined;
  }, 120_000, 20);
}

/**
 * Opens the video's live progress stream; `all` resolves with its events once the server ends it (after a
 * terminal status, or when the video is gone). Wrapped in an object: an async function returning the
 * promise itself would wait for the stream's end.
 */
async function progressStream(baseUrl: string, id: string): Promise<{ all: Promise<ReceivedEvent[]> }> {
  const res = await apiFetch(`${baseUrl}/videos/${id}/events`);
  assert.equal(res.status, 200);
  return { all: readEventStream(res) };
}

async function newKey(baseUrl: string, name: string, scopes: string[]): Promise<string> {
  const res = await apiFetch(`${baseUrl}/admin/keys`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name, scopes }) });
  assert.equal(res.status, 201, await res.clone().text());
  return ((await res.json()) as { key: string }).key;
}

async function uploadAs(baseUrl: string, file: string, fps: string, apiKey = TEST_API_KEY): Promise<string> {
  const form = new FormData();
  form.append('fps', fps);
  form.append('video', new Blob([await fs.readFile(file)]), path.basename(file));
  const res = await apiFetch(`${baseUrl}/videos`, { method: 'POST', body: form, apiKey });
  assert.equal(res.status, 202, await res.clone().text());
  return ((await res.json()) as { id: string }).id;
}

describe('cancel and delete on real processes (issue 9.6)', function () {
  this.timeout(300_000);

  let tmp: string;
  /** 8 s of vtest: 40 frames (10 jobs) at 5 fps. */
  let clip: string;
  /** 60 s of 1280x720 at 50 fps: 3000 frames, an extraction that runs for many seconds. */
  let long: string;

  before(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-lifecycle-'));
    clip = await cutClip(VTEST_AVI, 8, path.join(tmp, 'vtest-8s.mp4'));
    long = path.join(tmp, 'long.avi');
    const { execa } = await import('execa');
    await execa('ffmpeg', ['-nostdin', '-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=50', '-t', '60', '-c:v', 'mpeg4', '-q:v', '8', long]);
  });
  after(() => fs.rm(tmp, { recursive: true, force: true }));

  describe('local storage, one API and one worker process', () => {
    let stack: Stack;
    let worker: ServiceProcess;

    before(async () => {
      stack = await Stack.start(tmp);
      await stack.startApi();
      worker = await stack.startWorker();
    });
    after(async () => {
      if (worker?.alive) worker.kill('SIGCONT');
      await stack?.stop();
    });
    afterEach(function () {
      if (this.currentTest?.state !== 'failed') return;
      for (const process of stack.processes) console.log(`--- ${process.role} (last 40 lines)\n${process.logs.slice(-40).join('\n')}`);
    });

    it('DELETE during extraction (in the worker): 204, the worker kills its ffmpeg within its poll, nothing left, and the next upload completes', async () => {
      const id = await stack.upload(long, '50');
      await waitFor('frames to be extracted', async () => ((await stack.storedFrames(id)).length >= 20 ? true : undefined), 120_000, 50);
      assert.ok((await ffmpegRunsOf(id)).length > 0, 'no ffmpeg extracting the video: the test proves nothing');
      assert.equal((await stack.video(id)).status, 'extracting');

      const res = await deleteVideo(stack.baseUrl, id);
      assert.equal(res.status, 204, await res.text());
      assert.equal((await apiFetch(`${stack.baseUrl}/videos/${id}`)).status, 404);
      // The worker extracting it asks PostgreSQL every second whether its video is still wanted.
      await waitFor('the worker to kill its ffmpeg', async () => ((await ffmpegRunsOf(id)).length === 0 ? true : undefined), 30_000, 50);
      await worker.waitForLog('extraction stopped: the video was cancelled or deleted');
      await assertNothingLeft(stack, id);
      assert.ok(!worker.logs.some((line) => line.includes('"extraction failed"') && line.includes(id)), 'a delete is not an extraction failure');

      await assertHealthy(stack);
      const next = await stack.upload(clip, '2');
      const video = await stack.waitCompleted(next);
      assert.deepEqual([video.status, video.framesDone], ['completed', 16]);
      assert.equal((await deleteVideo(stack.baseUrl, next)).status, 204);
      await assertNothingLeft(stack, next);
    });

    it('DELETE while the worker holds its jobs: they are acknowledged without rows, and nothing is left', async () => {
      const id = await stack.upload(clip, '5');
      const events = await progressStream(stack.baseUrl, id);
      const held = await freezeHoldingJobs(stack, worker, id);
      try {
        assert.ok(held > 0);
        const res = await deleteVideo(stack.baseUrl, id);
        assert.equal(res.status, 204, await res.text());
        const now = await traces(stack, id);
        assert.deepEqual({ ...now, jobs: 0 }, NONE, 'only the held jobs remain');
        // Its BLMOVE, already sent, may have moved one more job into its list after the freeze (Redis runs it, not the process).
        const stillHeld = (await stack.redis.lRange(stack.keys.processing(stack.workerId(worker)), 0, -1)).filter((entry) => entry.includes(id)).length;
        assert.ok(stillHeld >= held, `held ${held} at the freeze, ${stillHeld} now`);
        assert.equal(now.jobs, stillHeld, 'the jobs the worker holds stay in its processing list until it acknowledges them; none is queued');
      } finally {
        worker.kill('SIGCONT');
      }
      // The worker resumes with jobs of a video that no longer exists: it acknowledges them and writes nothing.
      await assertNothingLeft(stack, id);
      assert.equal((await events.all).at(-1)?.event, 'end', 'an open progress stream ends when its video is deleted');
      assert.equal(await stack.redis.lLen(stack.keys.processing(stack.workerId(worker))), 0);
      await assertHealthy(stack);
      assert.ok(!worker.logs.some((line) => line.includes('dead-lettered') && line.includes(id)));
    });

    it('POST /cancel mid-run: cancelled, the rows so far stay, jobs and frames go, and no row appears after', async () => {
      const id = await stack.upload(clip, '5');
      await stack.waitFor('first commits', (v) => v.framesDone >= 4, id);
      const events = await progressStream(stack.baseUrl, id);
      await freezeHoldingJobs(stack, worker, id);
      let kept: number;
      try {
        const res = await cancelVideo(stack.baseUrl, id);
        assert.equal(res.status, 200, await res.clone().text());
        const body = (await res.json()) as { status: string; framesDone: number; framesTotal: number };
        assert.equal(body.status, 'cancelled');
        kept = await stack.framesCommitted(id);
        assert.ok(kept >= 4 && kept < 40, `frames recorded at the cancel: ${kept}`);
        assert.equal(body.framesDone, kept);
        assert.equal(await stack.redis.lLen(stack.keys.pending.detect), 0, 'no queued job of the video is left');
      } finally {
        worker.kill('SIGCONT');
      }
      // Held jobs are acknowledged without rows; then the video's frames are gone and only its source stays.
      await waitFor('the held jobs to be acknowledged', async () => ((await traces(stack, id)).jobs === 0 ? true : undefined), 30_000, 100);
      const after = await traces(stack, id);
      // Relative to the video's prefix: its source stays (KEEP_SOURCE_VIDEO), and its preview if extraction had made it.
      assert.deepEqual(after.files.filter((file) => !/^preview\.(mp4|webm)$/.test(file)), ['source']);
      assert.equal(after.frames, kept, 'no row was written after the cancel');
      assert.equal(after.videos, 1);
      const video = await stack.video(id);
      assert.deepEqual([video.status, video.framesDone], ['cancelled', kept]);
      const page = (await (await apiFetch(`${stack.baseUrl}/videos/${id}/detections?limit=1000`)).json()) as { frames: unknown[] };
      assert.equal(page.frames.length, kept, 'the results so far stay readable');
      // Live progress reports the cancel, then ends the stream.
      const received = await events.all;
      assert.deepEqual(received.slice(-2).map((event) => event.event), ['progress', 'end']);
      assert.equal((JSON.parse(received.at(-2)!.data) as { status: string }).status, 'cancelled');

      // Cancelling again is idempotent; a cancelled video is then deleted like any other.
      const again = await cancelVideo(stack.baseUrl, id);
      assert.equal(again.status, 200);
      assert.equal(((await again.json()) as { status: string }).status, 'cancelled');
      assert.equal((await deleteVideo(stack.baseUrl, id)).status, 204);
      await assertNothingLeft(stack, id);
      await assertHealthy(stack);
    });

    it('a completed video: cancel is 409, DELETE is 204 and leaves nothing, a repeat or racing DELETE is 404, never 500', async () => {
      const [first, second] = [await stack.upload(clip, '1'), await stack.upload(clip, '1')];
      for (const id of [first!, second!]) assert.equal((await stack.waitCompleted(id)).status, 'completed');

      const refused = await cancelVideo(stack.baseUrl, first!);
      assert.equal(refused.status, 409);
      const error = ((await refused.json()) as { error: { code: string; message: string } }).error;
      assert.equal(error.code, 'video_finished');
      assert.match(error.message, /already completed/);
      assert.equal((await stack.video(first!)).status, 'completed');

      assert.ok((await traces(stack, first!)).frames === 8);
      assert.equal((await deleteVideo(stack.baseUrl, first!)).status, 204);
      await assertNothingLeft(stack, first!);
      const repeat = await deleteVideo(stack.baseUrl, first!);
      assert.equal(repeat.status, 404);
      assert.equal(((await repeat.json()) as { error: { code: string } }).error.code, 'not_found');

      // Two DELETEs at once: both succeed, or the later finds nothing; neither fails.
      const statuses = (await Promise.all([deleteVideo(stack.baseUrl, second!), deleteVideo(stack.baseUrl, second!)])).map((res) => res.status).sort();
      assert.ok(statuses[0] === 204 && [204, 404].includes(statuses[1]!), `statuses ${statuses.join(', ')}`);
      await assertNothingLeft(stack, second!);
      await assertHealthy(stack);
    });

    it('keys: another key gets 404, a read-only key 403, the owner and admin may; a malformed id is 400, an unknown one 404', async () => {
      const owner = await newKey(stack.baseUrl, 'owner', ['upload', 'read']);
      const other = await newKey(stack.baseUrl, 'other', ['upload', 'read']);
      const reader = await newKey(stack.baseUrl, 'reader', ['read']);
      const id = await uploadAs(stack.baseUrl, clip, '1', owner);
      const mine = await uploadAs(stack.baseUrl, clip, '1', owner);

      for (const res of [await deleteVideo(stack.baseUrl, id, other), await cancelVideo(stack.baseUrl, id, other)]) {
        assert.equal(res.status, 404);
        assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'not_found');
      }
      for (const res of [await deleteVideo(stack.baseUrl, id, reader), await cancelVideo(stack.baseUrl, id, reader)]) {
        assert.equal(res.status, 403);
        assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'forbidden');
      }
      for (const res of [await deleteVideo(stack.baseUrl, 'not-a-uuid'), await cancelVideo(stack.baseUrl, 'not-a-uuid')]) {
        assert.equal(res.status, 400);
        assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'invalid_id');
      }
      for (const res of [await deleteVideo(stack.baseUrl, '00000000-0000-4000-8000-000000000000'), await cancelVideo(stack.baseUrl, '00000000-0000-4000-8000-000000000000')]) {
        assert.equal(res.status, 404);
      }
      assert.ok((await traces(stack, id)).videos === 1, 'the refused requests changed nothing');

      // The owner deletes its own video; the admin key (the tests' default) deletes the owner's other one.
      const deleted = async () => {
        const text = await (await apiFetch(`${stack.baseUrl}/metrics`)).text();
        return Number(/^vidsense_videos_stopped_total\{action="deleted"\} (\d+)$/m.exec(text)?.[1]);
      };
      const before = await deleted();
      assert.equal((await deleteVideo(stack.baseUrl, id, owner)).status, 204);
      assert.equal((await deleteVideo(stack.baseUrl, mine)).status, 204);
      for (const gone of [id, mine]) await assertNothingLeft(stack, gone);
      assert.equal((await deleted()) - before, 2, 'vidsense_videos_stopped_total counts the deletes');
      await assertHealthy(stack);
    });
  });

  describe('an extraction job still queued (no worker running)', () => {
    let stack: Stack;

    before(async () => {
      stack = await Stack.start(tmp);
      await stack.startApi();
    });
    after(() => stack?.stop());

    it('DELETE removes the queued extraction job and its mark, the source and the row; cancel of another leaves it cancelled with no job', async () => {
      const deleted = await stack.upload(clip, '5');
      const cancelled = await stack.upload(clip, '5');
      assert.equal(await stack.redis.lLen(stack.keys.pending.extract), 2, 'both extraction jobs wait');
      assert.ok(await stack.redis.sIsMember(stack.keys.extractionsEnqueued, deleted));

      assert.equal((await deleteVideo(stack.baseUrl, deleted)).status, 204);
      await assertNothingLeft(stack, deleted);
      const res = await cancelVideo(stack.baseUrl, cancelled);
      assert.equal(res.status, 200);
      assert.equal(((await res.json()) as { status: string }).status, 'cancelled');
      const left = await traces(stack, cancelled);
      assert.deepEqual({ jobs: left.jobs, files: left.files, videos: left.videos }, { jobs: 0, files: ['source'], videos: 1 });

      // A worker that starts now finds nothing to do for either.
      const worker = await stack.startWorker();
      await sleep(1000);
      assert.equal((await stack.video(cancelled)).status, 'cancelled');
      assert.ok(!worker.logs.some((line) => line.includes(deleted) || line.includes(cancelled)), 'the worker touched neither video');
      assert.equal((await deleteVideo(stack.baseUrl, cancelled)).status, 204);
      await assertNothingLeft(stack, cancelled);
      await assertHealthy(stack);
    });
  });

  describe('all-in-one (the API and a worker in one process)', () => {
    let stack: Stack;

    before(async () => {
      stack = await Stack.start(tmp);
      const process = ServiceProcess.start('all-in-one', stack.env);
      stack.processes.push(process);
      await process.waitForLog('api listening', 60_000);
    });
    after(() => stack?.stop());

    it('DELETE during extraction stops the extraction of its own process before it answers 204', async () => {
      const id = await stack.upload(long, '50');
      await waitFor('frames to be extracted', async () => ((await stack.storedFrames(id)).length >= 20 ? true : undefined), 120_000, 50);
      assert.ok((await ffmpegRunsOf(id)).length > 0, 'no ffmpeg extracting the video: the test proves nothing');
      const res = await deleteVideo(stack.baseUrl, id);
      assert.equal(res.status, 204, await res.text());
      // Stopped and cleaned up by the time of the answer, not a poll later.
      assert.deepEqual(await ffmpegRunsOf(id), []);
      assert.ok(stack.processes[0]!.logs.some((line) => line.includes('extraction stopped: the video was cancelled or deleted') && line.includes(id)));
      await assertNothingLeft(stack, id);
      await assertHealthy(stack);
    });
  });

  describe('S3 storage (s3rver)', () => {
    let stack: Stack;
    let s3: TestS3Server;

    before(async () => {
      s3 = await TestS3Server.start();
      stack = await Stack.start(tmp, { ...s3.env('lifecycle'), WORK_DIR: tmp });
      await stack.startApi();
      await stack.startWorker();
    });
    after(async () => {
      await stack?.stop();
      await s3?.stop();
    });

    it('cancel keeps the source in the bucket, DELETE mid-run leaves the bucket empty', async () => {
      const bucket = async () => (await s3.objectCount()) > 0 ? ['objects'] : [];
      const cancelled = await stack.upload(clip, '5');
      await stack.waitFor('first commits', (v) => v.framesDone >= 4, cancelled);
      const res = await cancelVideo(stack.baseUrl, cancelled);
      assert.equal(res.status, 200);
      await waitFor('the held jobs to be acknowledged', async () => ((await traces(stack, cancelled, bucket)).jobs === 0 ? true : undefined), 30_000, 100);
      // The source, and the preview if extraction had written it; no frame.
      assert.ok([1, 2].includes(await s3.objectCount()), `objects: ${await s3.objectCount()}`);
      assert.equal((await deleteVideo(stack.baseUrl, cancelled)).status, 204);
      await assertNothingLeft(stack, cancelled, bucket);

      const deleted = await stack.upload(clip, '5');
      await stack.waitFor('first commits', (v) => v.framesDone >= 4, deleted);
      assert.equal((await deleteVideo(stack.baseUrl, deleted)).status, 204);
      await assertNothingLeft(stack, deleted, bucket);
      assert.equal(await s3.objectCount(), 0);
      await assertHealthy(stack);
    });
  });
});
