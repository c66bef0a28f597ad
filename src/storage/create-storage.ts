import type { Config } from '../config.ts';
import { LocalStorage } from './local-storage.ts';
import type { VideoStorage } from './video-storage.ts';

/** The one place that picks a storage adapter (S3 arrives with the deployment issue). */
export function createStorage(config: Pick<Config, 'storageDir'>): VideoStorage {
  return new LocalStorage(config.storageDir);
}
