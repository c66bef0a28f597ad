import assert from 'node:assert/strict';
import type { CatalogVideo } from '../../../src/db/video-catalog.repository.ts';
import { ProgressHub, type ProgressListener } from '../../../src/services/progress-hub.ts';
import { estimateEtaSeconds } from '../../../src/services/progress.ts';

const T0 = Date.parse('2026-01-01T00:00:00Z');

function video(overrides: Partial<CatalogVideo> = {}): CatalogVideo {
  return {
    id: '00000000-0000-4000-8000-000000000001',
    status: 'processing',
    originalName: 'clip.mp4',
    sizeBytes: 1,
    storageKey: 'videos/x/source',
    sampleFps: 5,
    source: { durationMs: 20_000, fps: 25, width: 640, height: 480, codec: 'h264', creationTime: null, startTimeMs: 0 },
    capturedAt: new Date(T0),
    framesTotal: 100,
    framesDone: 0,
    framesFailed: 0,
    error: null,
    createdAt: new Date(T0),
    updatedAt: new Date(T0),
    completedAt: null,
    preview: null,
    previewPending: false,
    ownerKeyId: null,
    progress: { firstCommitAt: null, firstCommitFrames: null, lastCommitAt: null },
    ...overrides,
  };
}

describe('estimateEtaSeconds: remaining frames at the observed frame rate', () => {
  it('uses the frames settled after the first commit over the time between the first and the latest commit', () => {
    // First commit at T0 with 10 frames settled; by T0+10 s 60 settled: 50 frames in 10 s = 5 frames/s.
    const processing = video({ framesDone: 58, framesFailed: 2, progress: { firstCommitAt: new Date(T0), firstCommitFrames: 10, lastCommitAt: new Date(T0 + 10_000) } });
    assert.equal(estimateEtaSeconds(processing, T0 + 10_000), 8); // 40 remaining / 5 per s
    // Time since the latest commit counts down; never below 0.
    assert.equal(estimateEtaSeconds(processing, T0 + 13_000), 5);
    assert.equal(estimateEtaSeconds(processing, T0 + 60_000), 0);
  });

  it('estimates the total from duration and sampling rate while extraction has not counted the frames yet', () => {
    // 20 s at 5 fps = 100 frames expected; 20 frames per 4 s = 5 frames/s; 70 remaining -> 14 s.
    const extracting = video({ status: 'extracting', framesTotal: null, framesDone: 30, progress: { firstCommitAt: new Date(T0), firstCommitFrames: 10, lastCommitAt: new Date(T0 + 4000) } });
    assert.equal(estimateEtaSeconds(extracting, T0 + 4000), 14);
    // Every frame (sampleFps null): the source rate, 20 s at 25 fps = 500 frames.
    assert.equal(estimateEtaSeconds({ ...extracting, sampleFps: null }, T0 + 4000), 94);
    assert.equal(estimateEtaSeconds({ ...extracting, source: { ...extracting.source, durationMs: null } }, T0 + 4000), null);
  });

  it('is 0 once completed, and null when it cannot be told (queued, failed, cancelled, fewer than two commits)', () => {
    const observed = { firstCommitAt: new Date(T0), firstCommitFrames: 10, lastCommitAt: new Date(T0 + 1000) };
    assert.equal(estimateEtaSeconds(video({ status: 'completed', framesDone: 100 }), T0), 0);
    for (const status of ['queued', 'failed', 'cancelled'] as const) assert.equal(estimateEtaSeconds(video({ status: status as never, framesDone: 20, progress: observed }), T0), null, status);
    assert.equal(estimateEtaSeconds(video(), T0), null, 'no commit yet');
    const oneCommit = { firstCommitAt: new Date(T0), firstCommitFrames: 10, lastCommitAt: new Date(T0) };
    assert.equal(estimateEtaSeconds(video({ framesDone: 10, progress: oneCommit }), T0), null, 'one commit gives no rate');
  });
});

describe('ProgressHub: one poll loop for every stream of the process', () => {
  /** A catalog whose videos the test changes, counting queries and the ids asked for. */
  function fakeCatalog(videos: Map<string, CatalogVideo>) {
    const calls: string[][] = [];
    return {
      calls,
      async getMany(ids: string[]) {
        calls.push([...ids].sort());
        return ids.flatMap((id) => (videos.has(id) ? [videos.get(id)!] : []));
      },
    };
  }
  function recorder(): ProgressListener & { updates: number[]; ends: string[] } {
    const updates: number[] = [];
    const ends: string[] = [];
    return { updates, ends, update: (v) => updates.push(v.framesDone), gone: () => ends.push('gone'), closed: () => ends.push('closed') };
  }
  const logger = { warn() {}, info() {} };
  const tick = () => new Promise((resolve) => setTimeout(resolve, 30));

  it('reads all watched videos in one query per tick, however many listeners, and tells only of changes', async () => {
    const a = video({ id: 'a' });
    const b = video({ id: 'b' });
    const videos = new Map([['a', a], ['b', b]]);
    const catalog = fakeCatalog(videos);
    const hub = new ProgressHub(catalog, 5, logger);
    const listeners = Array.from({ length: 50 }, () => recorder());
    const unwatch = listeners.map((listener, i) => hub.watch(i % 2 === 0 ? a : b, listener));
    assert.equal(hub.listenerCount, 50);
    await tick();
    assert.ok(catalog.calls.length >= 1);
    for (const ids of catalog.calls) assert.deepEqual(ids, ['a', 'b'], 'one query for both videos');
    assert.ok(listeners.every((l) => l.updates.length === 0), 'nothing changed, nothing sent');

    videos.set('a', { ...a, framesDone: 4 });
    await tick();
    assert.ok(listeners.every((l, i) => (i % 2 === 0 ? l.updates.join() === '4' : l.updates.length === 0)));

    // Unwatched videos are no longer read; with no listener left the loop stops.
    for (const [i, stop] of unwatch.entries()) if (i % 2 === 1) stop();
    await tick();
    assert.deepEqual(catalog.calls.at(-1), ['a']);
    for (const [i, stop] of unwatch.entries()) if (i % 2 === 0) stop();
    await tick();
    const queries = catalog.calls.length;
    await tick();
    assert.equal(catalog.calls.length, queries, 'no listener, no polling');
    hub.close();
  });

  it('ends the streams of a deleted video, and every stream at close; watchers after close are closed at once', async () => {
    const videos = new Map([['a', video({ id: 'a' })], ['b', video({ id: 'b' })]]);
    const hub = new ProgressHub(fakeCatalog(videos), 5, logger);
    const onA = recorder();
    const onB = recorder();
    hub.watch(videos.get('a')!, onA);
    hub.watch(videos.get('b')!, onB);
    videos.delete('a');
    await tick();
    assert.deepEqual(onA.ends, ['gone']);
    hub.close();
    assert.deepEqual(onB.ends, ['closed']);
    const late = recorder();
    hub.watch(video({ id: 'c' }), late);
    assert.deepEqual(late.ends, ['closed']);
    assert.equal(hub.listenerCount, 0);
  });

  it('keeps streams open through a failing database and resumes', async () => {
    const videos = new Map([['a', video({ id: 'a' })]]);
    let failing = true;
    const warnings: string[] = [];
    const hub = new ProgressHub(
      {
        async getMany(ids: string[]) {
          if (failing) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
          return ids.map((id) => videos.get(id)!);
        },
      },
      5,
      { warn: (message: string) => warnings.push(message), info() {} },
    );
    const listener = recorder();
    hub.watch(videos.get('a')!, listener);
    await tick();
    assert.equal(warnings.length, 1, 'one warning for the outage, not one per tick');
    failing = false;
    videos.set('a', video({ id: 'a', framesDone: 8 }));
    await tick();
    assert.deepEqual(listener.updates, [8]);
    assert.deepEqual(listener.ends, []);
    hub.close();
  });
});
