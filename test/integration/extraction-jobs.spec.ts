/**
 * Extraction as a queued job (WORKER_ROLES): the API only accepts uploads; workers taking extract jobs run
 * ffmpeg, workers taking detect jobs run the model. Real processes against a private redis-server and database.
 * (A SIGKILLed extractor is zero-loss.spec.ts case 7; a SIGTERMed one is in api-resilience.spec.ts.)
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { cutClip, VTEST_AVI } from '../helpers/media-fixtures.ts';
import { sleep, waitFor } from '../helpers/service.ts';
import { Stack } from '../helpers/stack.ts';

describe('extraction jobs and worker roles (real processes)', function () {
  this.timeout(240_000);

  let tmp: string;
  let clip: string;
  let stack: Stack | undefined;

  before(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-extraction-jobs-'));
    clip = await cutClip(VTEST_AVI, 4, path.join(tmp, 'vtest-4s.mp4')); // 20 frames at 5 fps
  });
  afterEach(async () => {
    await stack?.stop();
    stack = undefined;
  });
  after(() => fs.rm(tmp, { recursive: true, force: true }));

  it('the API alone leaves an upload queued with its one extract job; an extract-only and a detect-only worker complete it', async () => {
    stack = await Stack.start(tmp);
    const api = await stack.startApi();
    const id = await stack.upload(clip, '5');
    // Several reclaim intervals and longer than a heartbeat TTL: nothing in the API extracts.
    await sleep(2_000);
    const queued = await stack.video(id);
    assert.deepEqual([queued.status, queued.framesTotal], ['queued', null]);
    assert.deepEqual(await stack.storedFrames(id), []);
    const jobs = (await stack.redis.lRange(stack.keys.pending.extract, 0, -1)).map((payload) => JSON.parse(payload) as { kind: string; id: string; videoId: string });
    assert.deepEqual(jobs.map((job) => [job.kind, job.id, job.videoId]), [['extract', `extract:${id}`, id]]);
    assert.ok(!api.logs.some((line) => line.includes('extraction')), 'the API logged extraction work');

    const detector = await stack.startWorker({ WORKER_ROLES: 'detect' });
    await sleep(500);
    assert.equal(await stack.redis.lLen(stack.keys.pending.extract), 1, 'a detect-only worker took the extract job');
    const extractor = await stack.startExtractor();
    const video = await stack.waitCompleted(id);
    assert.deepEqual([video.status, video.framesTotal, video.framesDone, video.framesFailed, video.error], ['completed', 20, 20, 0, null]);
    await stack.assertExactlyOnce(id, 20);
    // Each worker did only its own kind of job: the extractor never loaded the model, the detector never ran ffmpeg.
    assert.ok(extractor.logs.some((line) => line.includes('"extraction finished"')), 'the extractor did not extract');
    assert.ok(!extractor.logs.some((line) => line.includes('detector ready')), 'the extractor loaded the model');
    assert.ok(!detector.logs.some((line) => line.includes('extraction')), 'the detector extracted');
    // The extraction job ends after the preview, which the video does not wait for.
    const redis = stack.redis;
    const enqueued = stack.keys.extractionsEnqueued;
    await waitFor('the extraction job to end', async () => ((await redis.sCard(enqueued)) === 0 ? true : undefined), 60_000, 100);
    assert.equal((await stack.video(id)).previewPending, false);
  });

  it('an upload whose API died between its row and its job is queued by the extractors\' sweep and completes', async () => {
    stack = await Stack.start(tmp);
    await stack.startApi();
    const id = await stack.upload(clip, '5');
    // What a crash between the INSERT and the publish leaves: a queued row, its source, and no job.
    await stack.redis.del([stack.keys.pending.extract, stack.keys.extractionsEnqueued]);
    const worker = await stack.startWorker();
    await worker.waitForLog('queued the extraction of an upload whose job was never published', 30_000);
    const video = await stack.waitCompleted(id);
    assert.deepEqual([video.status, video.framesDone], ['completed', 20]);
    await stack.assertExactlyOnce(id, 20);
  });
});
