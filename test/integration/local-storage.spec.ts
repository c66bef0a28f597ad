import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { LocalStorage } from '../../src/storage/local-storage.ts';
import { StorageKeyError } from '../../src/storage/video-storage.ts';

describe('LocalStorage (real disk)', () => {
  let root: string;
  let storage: LocalStorage;

  beforeEach(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-storage-'));
    storage = new LocalStorage(path.join(root, 'store'));
  });
  afterEach(() => fs.rm(root, { recursive: true, force: true }));

  it('streams, reads, lists and deletes by prefix', async () => {
    const { bytes } = await storage.writeStream('videos/a/source', Readable.from([Buffer.from('hello '), Buffer.from('world')]));
    assert.equal(bytes, 11);
    await storage.write('videos/a/frames/000000.jpg', Buffer.from([1, 2, 3]));
    await storage.write('videos/b/frames/000000.jpg', Buffer.from([4]));
    assert.equal((await storage.read('videos/a/source')).toString(), 'hello world');
    assert.deepEqual(await storage.list('videos/a'), ['videos/a/frames/000000.jpg', 'videos/a/source']);
    assert.ok(await storage.exists('videos/a/source'));
    await storage.deletePrefix('videos/a');
    assert.equal(await storage.exists('videos/a/source'), false);
    assert.deepEqual(await storage.list('videos'), ['videos/b/frames/000000.jpg']);
    assert.deepEqual(await storage.list('nothing/here'), []);
  });

  it('leaves nothing behind when the incoming stream fails', async () => {
    const failing = new Readable({
      read() {
        this.push(Buffer.alloc(1024));
        this.destroy(new Error('client went away'));
      },
    });
    await assert.rejects(storage.writeStream('videos/c/source', failing), /client went away/);
    assert.deepEqual(await storage.list('videos'), []);
  });

  it('refuses keys that would escape the root', async () => {
    for (const key of ['../x', 'a/../../x', '/etc/passwd', 'a//b', 'a/./b', 'a\\b', '', 'a\0b']) {
      await assert.rejects(storage.write(key, Buffer.from('x')), StorageKeyError, key);
      assert.throws(() => storage.localPath(key), StorageKeyError, key);
    }
    const outside = await fs.readdir(root);
    assert.deepEqual(outside, []);
  });
});
