import assert from 'node:assert/strict';
import type { FrameResult, VideoRecord } from '../../../src/db/types.ts';
import type { Detector, PreparedFrame } from '../../../src/detection/types.ts';
import type { DetectionJob } from '../../../src/queue/types.ts';
import { DetectionService } from '../../../src/services/detection.service.ts';

const detector: Detector = {
  engine: 'fake',
  backend: 'fake',
  device: 'cpu',
  modelInfo: { names: ['person'], imgsz: [640, 640], stride: 32 },
  detectBatch: async (frames) => frames.map(() => []),
  close: async () => {},
};

const job: DetectionJob = { id: 'v1:0', videoId: 'v1', frames: [0, 1, 2].map((index) => ({ index, ptsMs: index * 100, key: `videos/v1/frames/00000${index}.jpg` })) };

function setUp(
  keepFrames: boolean,
  commit: (frames: FrameResult[]) => Promise<number> = async (frames) => frames.length,
  failDelete = false,
  alreadyCommitted: number[] = [],
  video: Partial<VideoRecord> | null = { status: 'processing', framesTotal: 3 },
) {
  const deleted: string[][] = [];
  const slots: Array<{ batch: Uint8Array; index: number } | undefined> = [];
  const sizes: unknown[] = [];
  const read: string[] = [];
  const warnings: string[] = [];
  const service = new DetectionService(
    { get: async () => (video ? ({ id: 'v1', capturedAt: new Date(0), source: { width: 768, height: 576 }, ...video } as VideoRecord) : undefined) },
    { commitFrames: async (_id, _at, frames) => commit(frames), committedFrames: async () => new Set(alreadyCommitted) },
    {
      read: async (key) => {
        read.push(key);
        return Buffer.from(key);
      },
      delete: async (keys) => {
        if (failDelete) throw new Error('storage unavailable');
        deleted.push(keys);
      },
    },
    detector,
    async (_jpeg, _imgsz, slot, scaledFrom) => {
      slots.push(slot);
      sizes.push(scaledFrom);
      return {} as PreparedFrame;
    },
    { confidenceThreshold: 0.25, iouThreshold: 0.7 },
    { keepFrames, logger: { warn: (message: string) => void warnings.push(message) } as never },
  );
  return { service, deleted, warnings, read, slots, sizes };
}

describe('DetectionService frame preparation', () => {
  it('decodes each frame into its own slot of one batch buffer for the job, with the video\'s size to map boxes back to', async () => {
    const { service, slots, sizes } = setUp(false, undefined, false, [1]);
    await service.prepare({ ...job, attempts: 1 });
    // Frame 1 is already committed: two frames to prepare, two slots of 640 x 640 RGB bytes.
    assert.deepEqual(slots.map((slot) => slot?.index).sort(), [0, 1]);
    assert.equal(slots[0]!.batch, slots[1]!.batch);
    assert.ok(slots[0]!.batch instanceof Uint8Array);
    assert.equal(slots[0]!.batch.length, 2 * 3 * 640 * 640);
    // Extraction may have stored the frames scaled down (FRAME_SIZE): the video's own size is what boxes map to.
    assert.deepEqual(sizes, [{ width: 768, height: 576 }, { width: 768, height: 576 }]);
  });
});

describe('DetectionService batch buffers', () => {
  it("reuses a job's batch buffer for a later job once the detector is done with it, never for a job in hand", async () => {
    const { service, slots } = setUp(true);
    const first = await service.prepare(job);
    const second = await service.prepare({ ...job, id: 'v1:1' }); // prepared while the first still waits for the detector
    assert.notEqual(slots[3]!.batch.buffer, slots[0]!.batch.buffer, 'two jobs in hand, two buffers');
    await service.detectAndCommit(first);
    await service.prepare({ ...job, id: 'v1:2' });
    assert.equal(slots[6]!.batch.buffer, slots[0]!.batch.buffer, "the third job decodes into the first job's buffer");
    assert.equal(slots[6]!.batch.length, 3 * 3 * 640 * 640);
    // A smaller job takes a view of a spare that fits; it goes back whole.
    await service.detectAndCommit(second);
    await service.prepare({ ...job, id: 'v1:3', frames: job.frames.slice(0, 1) });
    assert.equal(slots[9]!.batch.buffer, slots[3]!.batch.buffer);
    assert.equal(slots[9]!.batch.length, 3 * 640 * 640);
  });

  it('gives the buffer back when the detector fails, and refuses to run a prepared job twice (its buffer may hold another job)', async () => {
    const { service, slots } = setUp(true);
    const failing = new DetectionService(
      { get: async () => ({ id: 'v1', status: 'processing', framesTotal: 3, capturedAt: new Date(0), source: { width: 768, height: 576 } }) as VideoRecord },
      { commitFrames: async () => 0, committedFrames: async () => new Set() },
      { read: async (key) => Buffer.from(key), delete: async () => {} },
      { ...detector, detectBatch: async () => Promise.reject(new Error('detector thread exited')) },
      async (_jpeg, _imgsz, slot) => (slots.push(slot), { pixels: slot!.batch } as unknown as PreparedFrame),
      { confidenceThreshold: 0.25, iouThreshold: 0.7 },
      { keepFrames: true, logger: { warn: () => undefined } as never },
    );
    const prepared = await failing.prepare(job);
    await assert.rejects(failing.detectAndCommit(prepared), /detector thread exited/);
    await failing.prepare({ ...job, id: 'v1:1' });
    assert.equal(slots[3]!.batch.buffer, slots[0]!.batch.buffer);
    await assert.rejects(failing.detectAndCommit(prepared), /already run/);
    const ran = await service.prepare(job);
    await service.detectAndCommit(ran);
    await assert.rejects(service.detectAndCommit(ran), /already run; prepare the job again/);
  });
});

describe('DetectionService frame lifecycle', () => {
  it('records a corrupt frame as failed for good, and the frames of a job it gives up on as retryable', async () => {
    const committed: FrameResult[][] = [];
    const { service } = setUp(true, async (frames) => {
      committed.push(frames);
      return frames.length;
    });
    const prepared = await service.prepare(job);
    prepared.frames[1] = { ref: job.frames[1]!, error: 'corrupt frame: bad header' };
    await service.detectAndCommit(prepared);
    await service.recordFailedJob(job, 'dead-lettered after 3 attempts: ENOENT');
    assert.deepEqual(committed[0]!.map((f) => [f.frameIndex, f.error ?? null, f.retryable ?? false]), [[0, null, false], [1, 'corrupt frame: bad header', false], [2, null, false]]);
    assert.deepEqual(committed[1]!.map((f) => [f.frameIndex, f.retryable]), [[0, true], [1, true], [2, true]]);
  });

  it('deletes exactly the job frames after the commit by default (KEEP_FRAMES=false)', async () => {
    const { service, deleted } = setUp(false);
    assert.equal((await service.detectAndCommit(await service.prepare(job))).written, 3);
    assert.deepEqual(deleted, [job.frames.map((frame) => frame.key)]);
  });

  for (const [what, video] of [
    ['whose extraction failed', { status: 'failed', framesTotal: null }],
    ['that no longer exists', null],
  ] as const) {
    it(`acknowledges a job of a video ${what} without reading its frames, and deletes them even with KEEP_FRAMES=true`, async () => {
      let commits = 0;
      const { service, deleted, read } = setUp(true, async () => (commits += 1), false, [], video);
      assert.deepEqual(await service.detectAndCommit(await service.prepare(job)), { written: 0, detectMs: 0 });
      assert.deepEqual(read, []);
      assert.equal(commits, 0);
      assert.deepEqual(deleted, [job.frames.map((frame) => frame.key)]);
    });
  }

  it('keeps the frames with KEEP_FRAMES=true', async () => {
    const { service, deleted } = setUp(true);
    await service.detectAndCommit(await service.prepare(job));
    assert.deepEqual(deleted, []);
  });

  it('keeps the frames when the commit fails, so a retry can read them', async () => {
    const { service, deleted } = setUp(false, async () => {
      throw new Error('database down');
    });
    await assert.rejects(service.detectAndCommit(await service.prepare(job)), /database down/);
    assert.deepEqual(deleted, []);
  });

  it('does not fail a committed job when the frames cannot be deleted', async () => {
    const { service, warnings } = setUp(false, undefined, true);
    assert.equal((await service.detectAndCommit(await service.prepare(job))).written, 3);
    assert.deepEqual(warnings, ["could not delete a job's frames"]);
  });

  it('a redelivered job skips frames already committed: no read, no inference; all its frames are deleted after the commit', async () => {
    const committed: FrameResult[][] = [];
    const { service, read, deleted } = setUp(false, async (frames) => (committed.push(frames), frames.length), false, [0, 2]);
    const redelivered = { ...job, attempts: 1 };
    assert.equal((await service.detectAndCommit(await service.prepare(redelivered))).written, 1);
    assert.deepEqual(read, [job.frames[1]!.key]);
    assert.deepEqual(committed.map((frames) => frames.map((f) => f.frameIndex)), [[1]]);
    // Frames 0 and 2 too: their earlier delivery may have died between its commit and its delete.
    assert.deepEqual(deleted, [job.frames.map((frame) => frame.key)]);
  });

  it('a redelivery with every frame committed reads nothing, commits nothing, and still deletes the frames', async () => {
    const { service, read, deleted } = setUp(false, async () => assert.fail('nothing to commit'), false, [0, 1, 2]);
    assert.deepEqual(await service.detectAndCommit(await service.prepare({ ...job, attempts: 1 })), { written: 0, detectMs: 0 });
    assert.deepEqual(read, []);
    assert.deepEqual(deleted, [job.frames.map((frame) => frame.key)]);
  });

  it('a redelivery that counted no attempt (in-place retry after a failed ack, a job handed back at shutdown) skips committed frames too', async () => {
    // With KEEP_FRAMES=false those frames are gone: reading them would fail the job with ENOENT.
    const { service, read } = setUp(false, async () => assert.fail('nothing to commit'), false, [0, 1, 2]);
    const handedBack = { ...job, attempts: 0 };
    assert.equal((await service.detectAndCommit(await service.prepare(handedBack))).written, 0);
    assert.deepEqual(read, []);
  });

  it('reports how long the detector call took', async () => {
    const { service } = setUp(true);
    const slow = new DetectionService(
      { get: async () => ({ id: 'v1', status: 'processing', capturedAt: new Date(0), source: { width: 768, height: 576 } }) as VideoRecord },
      { commitFrames: async (_id, _at, frames) => frames.length, committedFrames: async () => new Set() },
      { read: async (key) => Buffer.from(key), delete: async () => {} },
      { ...detector, detectBatch: async (frames) => (await new Promise((resolve) => setTimeout(resolve, 60)), frames.map(() => [])) },
      async () => ({}) as PreparedFrame,
      { confidenceThreshold: 0.25, iouThreshold: 0.7 },
      { keepFrames: true, logger: { warn: () => {} } as never },
    );
    assert.ok((await slow.detectAndCommit(await slow.prepare(job))).detectMs >= 50);
    assert.ok((await service.detectAndCommit(await service.prepare(job))).detectMs < 50);
  });
  it('a video whose extraction failed gets no work; one failed by its frames is worked on (a retried dead letter)', async () => {
    const serviceFor = (video: Partial<VideoRecord>) =>
      new DetectionService(
        { get: async () => ({ id: 'v1', capturedAt: new Date(0), source: { width: 768, height: 576 }, ...video }) as VideoRecord },
        { commitFrames: async (_id, _at, frames) => frames.length, committedFrames: async () => new Set() },
        { read: async (key) => Buffer.from(key), delete: async () => {} },
        detector,
        async () => ({}) as PreparedFrame,
        { confidenceThreshold: 0.25, iouThreshold: 0.7 },
        { keepFrames: true, logger: { warn: () => {} } as never },
      );
    const extractionFailed = serviceFor({ status: 'failed', framesTotal: null });
    assert.equal((await extractionFailed.detectAndCommit(await extractionFailed.prepare(job))).written, 0);
    const framesFailed = serviceFor({ status: 'failed', framesTotal: 3 });
    assert.equal((await framesFailed.detectAndCommit(await framesFailed.prepare(job))).written, 3);
  });
});
