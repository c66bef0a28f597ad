import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { LocalStorage } from '../../src/storage/local-storage.ts';
import { S3Storage } from '../../src/storage/s3-storage.ts';
import { StorageKeyError, type VideoStorage } from '../../src/storage/video-storage.ts';
import { TestS3Server } from '../helpers/s3-server.ts';

/** One adapter under test, plus what the contract needs to look behind it. */
interface StorageSubject {
  storage: VideoStorage;
  /** Another adapter on the same backend with a neighbouring root or prefix: it must stay untouched. */
  sibling: VideoStorage;
  /** Objects stored in the whole backend, whatever their key (read around the adapter). */
  countObjects(): Promise<number>;
  /** S3 only: multipart uploads begun, and still open (neither completed nor aborted). */
  multipartUploads?(): Promise<{ everStarted: boolean; open: number }>;
  dispose(): Promise<void>;
}

const MiB = 1024 * 1024;

/** A stream of `total` bytes in 64 KiB chunks, made as it is read (never held whole), optionally failing at `failAt`. */
function generated(total: number, failAt?: number): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (failAt !== undefined && sent >= failAt) {
        this.destroy(new Error('client went away'));
        return;
      }
      if (sent >= total) {
        this.push(null);
        return;
      }
      const size = Math.min(64 * 1024, total - sent);
      const chunk = Buffer.alloc(size);
      for (let i = 0; i < size; i += 4096) chunk.writeUInt32BE((sent + i) >>> 0, i);
      sent += size;
      this.push(chunk);
    },
  });
}

async function sha256(stream: Readable): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

const BAD_KEYS = ['../x', 'a/../../x', '/etc/passwd', 'a//b', 'a/./b', 'a/', 'a\\b', '', 'a\0b', '..'];

/** The VideoStorage contract, run against every adapter. */
function storageContract(name: string, create: () => Promise<StorageSubject>): void {
  describe(`VideoStorage contract: ${name}`, function () {
    this.timeout(60_000);
    let subject: StorageSubject;
    let storage: VideoStorage;

    beforeEach(async () => {
      subject = await create();
      storage = subject.storage;
    });
    afterEach(() => subject.dispose());

    it('streams, reads, lists and deletes by prefix', async () => {
      const { bytes } = await storage.writeStream('videos/a/source', Readable.from([Buffer.from('hello '), Buffer.from('world')]));
      assert.equal(bytes, 11);
      await storage.write('videos/a/frames/000000.jpg', Buffer.from([1, 2, 3]));
      await storage.write('videos/b/frames/000000.jpg', Buffer.from([4]));
      assert.equal((await storage.read('videos/a/source')).toString(), 'hello world');
      assert.deepEqual([...(await storage.read('videos/a/frames/000000.jpg'))], [1, 2, 3]);
      assert.equal((await sha256(await storage.createReadStream('videos/a/source'))), createHash('sha256').update('hello world').digest('hex'));
      assert.deepEqual(await storage.list('videos/a'), ['videos/a/frames/000000.jpg', 'videos/a/source']);
      assert.deepEqual(await storage.list('videos'), ['videos/a/frames/000000.jpg', 'videos/a/source', 'videos/b/frames/000000.jpg']);
      assert.ok(await storage.exists('videos/a/source'));
      await storage.deletePrefix('videos/a');
      assert.equal(await storage.exists('videos/a/source'), false);
      assert.deepEqual(await storage.list('videos'), ['videos/b/frames/000000.jpg']);
      assert.deepEqual(await storage.list('nothing/here'), []);
      await storage.deletePrefix('nothing/here');
    });

    it('overwrites a key, and fails to read one that is not there', async () => {
      await storage.write('videos/a/frames/000001.jpg', Buffer.from('first'));
      await storage.write('videos/a/frames/000001.jpg', Buffer.from('second'));
      assert.equal((await storage.read('videos/a/frames/000001.jpg')).toString(), 'second');
      assert.equal(await storage.exists('videos/a/missing'), false);
      await assert.rejects(storage.read('videos/a/missing'));
      await assert.rejects(storage.createReadStream('videos/a/missing'));
    });

    it('reads byte ranges and reports sizes, for what HTTP range requests need', async () => {
      // 300 KiB of bytes that differ from position to position, so a range from the wrong offset shows.
      const data = Buffer.alloc(300 * 1024);
      for (let i = 0; i < data.length; i += 1) data[i] = (i * 31 + (i >> 8)) & 0xff;
      await storage.write('videos/r/preview.mp4', data);
      assert.equal(await storage.size('videos/r/preview.mp4'), data.length);
      await storage.write('videos/r/empty', Buffer.alloc(0));
      assert.equal(await storage.size('videos/r/empty'), 0);
      assert.equal(await storage.size('videos/r/missing'), undefined);
      assert.equal(await storage.size('videos/r'), undefined, 'a "directory" is no object');
      const last = data.length - 1;
      for (const [start, end] of [[0, 0], [0, 9], [1000, 70_000], [70_001, last], [last, last], [0, last]] as const) {
        const chunks: Buffer[] = [];
        for await (const chunk of await storage.createReadStream('videos/r/preview.mp4', { start, end })) chunks.push(chunk as Buffer);
        assert.ok(Buffer.concat(chunks).equals(data.subarray(start, end + 1)), `bytes ${start}-${end}`);
      }
      await assert.rejects(storage.createReadStream('videos/r/missing', { start: 0, end: 0 }));
      for (const range of [{ start: -1, end: 3 }, { start: 5, end: 4 }, { start: 0.5, end: 3 }]) {
        await assert.rejects(storage.createReadStream('videos/r/preview.mp4', range), RangeError, JSON.stringify(range));
      }
    });

    it('deletes exactly the keys it is given, in batches past 1000, ignoring keys that are not there', async () => {
      const frames = [0, 1, 2, 3].map((i) => `videos/d/frames/00000${i}.jpg`);
      for (const key of frames) await storage.write(key, Buffer.from(key));
      await storage.write('videos/d/source', Buffer.from('video'));
      // 1001 keys: S3 takes at most 1000 per DeleteObjects call; all but three are not there.
      const missing = Array.from({ length: 998 }, (_, i) => `videos/d/frames/gone-${i}.jpg`);
      await storage.delete([frames[0]!, ...missing, frames[2]!, frames[3]!]);
      assert.deepEqual(await storage.list('videos/d'), [frames[1], 'videos/d/source']);
      await storage.delete([]);
      assert.deepEqual(await storage.list('videos/d'), [frames[1], 'videos/d/source']);
    });

    it('lists and deletes by prefix across more than 1000 objects', async function () {
      this.timeout(120_000);
      const keys = Array.from({ length: 1005 }, (_, i) => `videos/many/frames/${String(i).padStart(6, '0')}.jpg`);
      const tiny = Buffer.from([0xff, 0xd8]);
      for (let start = 0; start < keys.length; start += 50) await Promise.all(keys.slice(start, start + 50).map((key) => storage.write(key, tiny)));
      await storage.write('videos/other/source', tiny);
      assert.deepEqual(await storage.list('videos/many'), keys);
      await storage.deletePrefix('videos/many');
      assert.deepEqual(await storage.list('videos'), ['videos/other/source']);
    });

    it('streams a multi-megabyte upload through (multipart on S3) and reads it back intact', async function () {
      this.timeout(120_000);
      const total = 12 * MiB + 12345;
      const expected = await sha256(generated(total));
      const { bytes } = await storage.writeStream('videos/big/source', generated(total));
      assert.equal(bytes, total);
      assert.equal(await sha256(await storage.createReadStream('videos/big/source')), expected);
      assert.equal((await storage.read('videos/big/source')).length, total);
      if (subject.multipartUploads) assert.deepEqual(await subject.multipartUploads(), { everStarted: true, open: 0 });
    });

    it('leaves nothing behind when the incoming stream fails, early or after several megabytes', async function () {
      this.timeout(120_000);
      for (const failAt of [1024, 11 * MiB]) {
        await assert.rejects(storage.writeStream(`videos/c${failAt}/source`, generated(20 * MiB, failAt)), /client went away/);
      }
      assert.deepEqual(await storage.list('videos'), []);
      assert.equal(await subject.countObjects(), 0);
      // The failure after 11 MiB had begun a multipart upload on S3: it was aborted, no parts stay.
      if (subject.multipartUploads) assert.deepEqual(await subject.multipartUploads(), { everStarted: true, open: 0 });
    });

    it('refuses keys that would escape its root, in every operation, touching nothing', async () => {
      await subject.sibling.write('videos/x/source', Buffer.from('neighbour'));
      const before = await subject.countObjects();
      const isKeyError = (key: string) => (error: unknown) => error instanceof StorageKeyError || assert.fail(`${JSON.stringify(key)}: ${String(error)}`);
      for (const key of BAD_KEYS) {
        await assert.rejects(storage.write(key, Buffer.from('x')), isKeyError(key));
        await assert.rejects(storage.writeStream(key, Readable.from([Buffer.from('x')])), isKeyError(key));
        await assert.rejects(storage.read(key), isKeyError(key));
        await assert.rejects(storage.createReadStream(key), isKeyError(key));
        await assert.rejects(storage.exists(key), isKeyError(key));
        await assert.rejects(storage.size(key), isKeyError(key));
        await assert.rejects(storage.createReadStream(key, { start: 0, end: 0 }), isKeyError(key));
        await assert.rejects(storage.delete(['videos/x/source', key]), isKeyError(key));
        await assert.rejects(storage.deletePrefix(key), isKeyError(key));
        await assert.rejects(storage.list(key), isKeyError(key));
        assert.throws(() => storage.localPath(key), StorageKeyError, key);
      }
      assert.equal(await subject.countObjects(), before);
      assert.equal((await subject.sibling.read('videos/x/source')).toString(), 'neighbour');
    });

    it("keeps to its own root: a neighbour's objects are neither listed nor deleted", async () => {
      await subject.sibling.write('videos/x/source', Buffer.from('neighbour'));
      await subject.sibling.write('videos/x/frames/000000.jpg', Buffer.from('frame'));
      await storage.write('videos/x/source', Buffer.from('mine'));
      assert.deepEqual(await storage.list('videos'), ['videos/x/source']);
      await storage.deletePrefix('videos');
      await storage.delete(['videos/x/frames/000000.jpg']);
      assert.deepEqual(await subject.sibling.list('videos'), ['videos/x/frames/000000.jpg', 'videos/x/source']);
      assert.equal((await subject.sibling.read('videos/x/source')).toString(), 'neighbour');
    });
  });
}

storageContract('LocalStorage (real disk)', async () => {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-storage-'));
  return {
    storage: new LocalStorage(path.join(root, 'store')),
    // A sibling directory whose name extends the root's: a prefix check without a separator would let it in.
    sibling: new LocalStorage(path.join(root, 'store2')),
    async countObjects() {
      const entries = await fs.readdir(root, { recursive: true, withFileTypes: true });
      return entries.filter((entry) => entry.isFile()).length;
    },
    dispose: () => fs.rm(root, { recursive: true, force: true }),
  };
});

storageContract('S3Storage (s3rver, key prefix)', async () => {
  // A server of its own per test (it starts in well under a second), so counts and uploads are exact.
  const server = await TestS3Server.start();
  // The sibling's prefix extends the adapter's ('tenant/a' and 'tenant/ab'): a join without '/' would mix them.
  const storage = new S3Storage(server.storageOptions('tenant/a'));
  const sibling = new S3Storage(server.storageOptions('tenant/ab'));
  return {
    storage,
    sibling,
    countObjects: () => server.objectCount(),
    multipartUploads: () => server.multipartUploads(),
    async dispose() {
      storage.close();
      sibling.close();
      await server.stop();
    },
  };
});

describe('S3Storage specifics (s3rver)', function () {
  this.timeout(60_000);
  let server: TestS3Server;

  before(async () => {
    server = await TestS3Server.start();
  });
  after(() => server?.stop());

  it('lists keys relative to its prefix, and a storage without a prefix sees the full keys', async () => {
    const prefixed = new S3Storage(server.storageOptions('/deploy/one/'));
    const bare = new S3Storage(server.storageOptions(''));
    try {
      await prefixed.write('videos/v/source', Buffer.from('x'));
      assert.deepEqual(await prefixed.list('videos'), ['videos/v/source']);
      assert.deepEqual(await bare.list('deploy'), ['deploy/one/videos/v/source']);
      assert.equal(prefixed.localPath('videos/v/source'), undefined);
    } finally {
      prefixed.close();
      bare.close();
    }
  });

  it('refuses a prefix that is not a safe key', () => {
    for (const prefix of ['a/../b', 'a//b', 'a\\b']) assert.throws(() => new S3Storage(server.storageOptions(prefix)), StorageKeyError, prefix);
  });
});
