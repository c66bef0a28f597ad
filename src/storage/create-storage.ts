import type { Config } from '../config.ts';
import { LocalStorage } from './local-storage.ts';
import { S3Storage } from './s3-storage.ts';
import type { StorageSpace, VideoStorage } from './video-storage.ts';

/** The one place that picks a storage adapter: STORAGE_DRIVER=local (a directory) or s3 (a bucket). */
export function createStorage(config: Pick<Config, 'storageDriver' | 'storageDir' | 's3'>): VideoStorage & StorageSpace {
  switch (config.storageDriver) {
    case 'local':
      return new LocalStorage(config.storageDir);
    case 's3': {
      if (!config.s3) throw new Error('STORAGE_DRIVER=s3 needs the S3 settings (S3_BUCKET, ...)');
      const { bucket, region, endpoint, forcePathStyle, prefix } = config.s3;
      return new S3Storage({ bucket, region, endpoint, forcePathStyle, prefix });
    }
  }
}
