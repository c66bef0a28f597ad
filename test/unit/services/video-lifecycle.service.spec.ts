import assert from 'node:assert/strict';
import type { VideoRecord, VideoStatus } from '../../../src/db/types.ts';
import { AppError } from '../../../src/errors/app-error.ts';
import { createLogger } from '../../../src/logger.ts';
import { VideoLifecycleService, type LifecycleSettings } from '../../../src/services/video-lifecycle.service.ts';

const ID = '11111111-1111-4111-8111-111111111111';

/** Stubs that log every call in order, so the tests can check what happens before what. */
function setUp(status: VideoStatus | undefined, options: { settings?: Partial<LifecycleSettings>; stop?: () => Promise<boolean>; deletePrefix?: () => Promise<void> } = {}) {
  const calls: string[] = [];
  let current: VideoRecord | undefined = status && ({ id: ID, status, storageKey: `videos/${ID}/source`, framesDone: 3 } as VideoRecord);
  const videos = {
    cancel: async (id: string) => {
      calls.push(`cancel ${id}`);
      if (current && ['queued', 'extracting', 'processing'].includes(current.status)) current = { ...current, status: 'cancelled' };
      return current;
    },
    delete: async (id: string) => {
      calls.push(`delete row ${id}`);
      current = undefined;
    },
  };
  const extraction = {
    stop: async (id: string) => {
      calls.push(`stop extraction ${id}`);
      return (await options.stop?.()) ?? false;
    },
  };
  const queue = {
    discardVideoJobs: async (id: string) => {
      calls.push(`discard jobs ${id}`);
      return 2;
    },
  };
  const storage = {
    deletePrefix: async (prefix: string) => {
      calls.push(`delete prefix ${prefix}`);
      await options.deletePrefix?.();
    },
    delete: async (keys: string[]) => void calls.push(`delete ${keys.join(',')}`),
  };
  const logger = createLogger({ logLevel: 'error', logFormat: 'json' }, 'test', { silent: true });
  const service = new VideoLifecycleService(videos, extraction, queue, storage, { keepSourceVideo: true, ...options.settings }, logger);
  return { service, calls };
}

describe('VideoLifecycleService', () => {
  it('cancel: the status first (workers stop writing), then the extraction, the queued jobs and the frames; the source stays', async () => {
    const { service, calls } = setUp('processing');
    const outcome = await service.cancel(ID);
    assert.equal(outcome?.video.status, 'cancelled');
    assert.equal(outcome?.jobs, 2);
    assert.deepEqual(calls, [`cancel ${ID}`, `stop extraction ${ID}`, `discard jobs ${ID}`, `delete prefix videos/${ID}/frames`]);
  });

  it('cancel with KEEP_SOURCE_VIDEO=false deletes the upload too', async () => {
    const { service, calls } = setUp('extracting', { settings: { keepSourceVideo: false } });
    await service.cancel(ID);
    assert.equal(calls.at(-1), `delete videos/${ID}/source`);
  });

  it('cancel of a completed or failed video is 409 video_finished and touches nothing; of a cancelled one it repeats the clean-up', async () => {
    for (const status of ['completed', 'failed'] as const) {
      const { service, calls } = setUp(status);
      await assert.rejects(service.cancel(ID), (error: AppError) => error.status === 409 && error.code === 'video_finished' && error.message.includes(`already ${status}`));
      assert.deepEqual(calls, [`cancel ${ID}`]);
    }
    const { service, calls } = setUp('cancelled');
    assert.equal((await service.cancel(ID))?.video.status, 'cancelled');
    assert.ok(calls.includes(`discard jobs ${ID}`));
  });

  it('cancel and delete of a missing video answer undefined and touch nothing else', async () => {
    const { service, calls } = setUp(undefined);
    assert.equal(await service.cancel(ID), undefined);
    assert.equal(await service.delete(ID), undefined);
    assert.deepEqual(calls, [`cancel ${ID}`, `cancel ${ID}`]);
  });

  it('delete: cancels, stops the extraction, removes jobs and every file, then the rows, then sweeps once more', async () => {
    const { service, calls } = setUp('processing');
    const outcome = await service.delete(ID);
    assert.equal(outcome?.video.status, 'cancelled');
    assert.deepEqual(calls, [
      `cancel ${ID}`,
      `stop extraction ${ID}`,
      `discard jobs ${ID}`,
      `delete prefix videos/${ID}`,
      `delete row ${ID}`,
      `discard jobs ${ID}`,
      `delete prefix videos/${ID}`,
    ]);
  });

  it('delete of a completed video keeps its status on the way (nothing to stop) and removes it', async () => {
    const { service, calls } = setUp('completed');
    assert.equal((await service.delete(ID))?.video.status, 'completed');
    assert.ok(calls.includes(`delete row ${ID}`));
  });

  it('storage failing: 503 cleanup_incomplete, and the row stays so the delete can be sent again', async () => {
    let failing = true;
    const { service, calls } = setUp('processing', { deletePrefix: async () => (failing ? Promise.reject(new Error('EIO')) : undefined) });
    await assert.rejects(service.delete(ID), (error: AppError) => error.status === 503 && error.code === 'cleanup_incomplete' && error.retryAfterS === 5);
    assert.ok(!calls.includes(`delete row ${ID}`));
    failing = false;
    assert.equal((await service.delete(ID))?.video.status, 'cancelled');
    assert.ok(calls.includes(`delete row ${ID}`));
  });

  it('an extraction that takes long to stop does not hold the request past stopWaitMs (it cleans up after itself)', async () => {
    const { service, calls } = setUp('extracting', { settings: { stopWaitMs: 30 }, stop: () => new Promise<boolean>(() => {}) });
    await service.delete(ID);
    assert.ok(calls.includes(`delete row ${ID}`));
  });
});
