import type { ReadinessCheck } from '../api/health.routes.ts';
import type { EngineChoice } from '../detection/engine-selection.ts';
import type { Detector } from '../detection/types.ts';
import type { StorageSpace, VideoStorage } from '../storage/video-storage.ts';
import { forEachPrimary } from '../queue/redis-connection.ts';
import type { Runtime } from './runtime.ts';

// Every /readyz check of every role, in one place; each entry point picks the ones that apply to it.

export function baseReadiness(runtime: Runtime): ReadinessCheck[] {
  return [
    // On a cluster every primary must answer: each holds some of the queue's shards.
    { name: 'redis', check: async () => ({ ok: (await forEachPrimary(runtime.redis, (node) => node.ping())).every((pong) => pong === 'PONG') }) },
    { name: 'postgres', check: async () => (await runtime.sql`select 1 as ok`, { ok: true }) },
  ];
}

/** `choice` is how the engine was picked; its reason shows why DETECTOR_ENGINE=auto fell back, if it did. */
export function detectorReadiness(detector: Detector, choice?: EngineChoice): ReadinessCheck {
  return {
    name: 'model',
    check: async () => ({
      ok: true,
      detail: {
        engine: detector.engine,
        backend: detector.backend,
        device: detector.device,
        classes: detector.modelInfo.names.length,
        imgsz: detector.modelInfo.imgsz,
        ...(choice ? { reason: choice.reason } : {}),
      },
    }),
  };
}

/**
 * Storage reachable: one listing of a prefix nothing writes. Local storage: a readdir; S3: one
 * ListObjectsV2, which fails on a missing bucket, refused credentials or an unreachable endpoint.
 * And room to write: local storage with less than minFreeBytes free (statfs) is not ready, since
 * uploads are then refused with 507 and extractions would fail.
 */
export function storageReadiness(storage: Pick<VideoStorage, 'driver' | 'list'> & Pick<StorageSpace, 'freeBytes'>, minFreeBytes: number): ReadinessCheck {
  return {
    name: 'storage',
    check: async () => {
      await storage.list('readyz');
      const freeBytes = await storage.freeBytes();
      if (freeBytes === undefined) return { ok: true, detail: { driver: storage.driver } };
      return { ok: freeBytes >= minFreeBytes, detail: { driver: storage.driver, freeBytes, minFreeBytes } };
    },
  };
}
