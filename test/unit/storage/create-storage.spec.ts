import assert from 'node:assert/strict';
import { loadConfig } from '../../../src/config.ts';
import { createStorage } from '../../../src/storage/create-storage.ts';
import { LocalStorage } from '../../../src/storage/local-storage.ts';
import { S3Storage } from '../../../src/storage/s3-storage.ts';

describe('createStorage', () => {
  it('picks the adapter STORAGE_DRIVER names', () => {
    assert.ok(createStorage(loadConfig({})) instanceof LocalStorage);
    const s3 = createStorage(loadConfig({ STORAGE_DRIVER: 's3', S3_BUCKET: 'videos', S3_ENDPOINT: 'http://127.0.0.1:1', S3_PREFIX: 'p' }));
    assert.ok(s3 instanceof S3Storage);
    assert.equal(s3.localPath('videos/x/source'), undefined);
    s3.close();
  });
});
