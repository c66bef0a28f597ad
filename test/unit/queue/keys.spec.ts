import assert from 'node:assert/strict';
import { keySlot, queueKeys, queueLayout, shardOfVideo } from '../../../src/queue/keys.ts';

describe('queueKeys', () => {
  it('namespaces every key under the prefix and keeps per-worker keys apart', () => {
    const keys = queueKeys('vs');
    const all = [keys.pending.extract, keys.pending.detect, keys.legacyPending, keys.extractionsEnqueued, keys.workers, keys.deadLetters, keys.processing('w1'), keys.heartbeat('w1'), keys.processing('w2')];
    assert.ok(all.every((key) => key.startsWith('vs:')));
    assert.equal(new Set(all).size, all.length);
    assert.notEqual(queueKeys('other').pending.detect, keys.pending.detect);
    assert.deepEqual(keys.pending, { extract: 'vs:queue:pending:extract', detect: 'vs:queue:pending:detect' });
    assert.equal(keys.workerOfProcessing(keys.pending.detect), null);
  });

  it('finds processing lists by pattern and tells their worker, with glob characters in the prefix matched literally', () => {
    const keys = queueKeys('a*b?[c]');
    assert.equal(keys.processingPattern, 'a\\*b\\?\\[c\\]:queue:processing:*');
    assert.equal(keys.workerOfProcessing(keys.processing('w-1')), 'w-1');
    assert.equal(keys.workerOfProcessing(keys.heartbeat('w-1')), null);
    assert.equal(keys.workerOfProcessing(queueKeys('other').processing('w-1')), null);
  });

  it('refuses an empty prefix', () => {
    assert.throws(() => queueKeys(''), /prefix/);
  });
});

describe('queueLayout: shards', () => {
  it('keeps the original untagged keys for one shard on a single Redis', () => {
    const layout = queueLayout('vs', { shards: 1, cluster: false });
    assert.equal(layout.shards.length, 1);
    assert.deepEqual(layout.shards[0]!.pending, queueKeys('vs').pending);
    assert.equal(layout.shards[0]!.pending.detect, 'vs:queue:pending:detect');
    assert.equal(layout.shards[0]!.legacyPending, 'vs:queue:pending');
    assert.equal(layout.shardOfVideo('any'), 0);
  });

  it('puts every key of a shard in one slot (one hash tag), under the prefix, and shards apart', () => {
    for (const options of [{ shards: 1, cluster: true }, { shards: 3, cluster: true }, { shards: 4, cluster: false }]) {
      const layout = queueLayout('vs', options);
      const slots = layout.shards.map((keys) => {
        const all = [keys.pending.extract, keys.pending.detect, keys.extractionsEnqueued, keys.workers, keys.deadLetters, keys.processing('w1'), keys.heartbeat('w1'), keys.processing('w2')];
        assert.ok(all.every((key) => key.startsWith('vs:queue:{')), all.join());
        assert.equal(new Set(all.map(keySlot)).size, 1, `${JSON.stringify(options)}: ${all.join()}`);
        assert.equal(keys.workerOfProcessing(keys.processing('w-1')), 'w-1');
        return keySlot(keys.pending.detect);
      });
      assert.equal(new Set(layout.shards.map((keys) => keys.pending.detect)).size, options.shards);
      assert.equal(new Set(slots).size, options.shards);
      // Shard s's slot lies in the s-th n-th of the slot space, so evenly split primaries get as many shards each.
      slots.forEach((slot, s) => assert.ok(slot >= (s * 16384) / options.shards && slot < ((s + 1) * 16384) / options.shards, `shard ${s}: slot ${slot}`));
    }
  });

  it('matches Redis on key slots (CRC16 XMODEM of the hash tag; values from CLUSTER KEYSLOT)', () => {
    assert.equal(keySlot('foo'), 12182);
    assert.equal(keySlot('{user1000}.following'), keySlot('user1000'));
    assert.equal(keySlot('123456789'), 0x31c3 % 16384);
  });

  it('sends a video to the same shard every time, spread evenly over the shards', () => {
    assert.equal(shardOfVideo('00000000-0000-4000-8000-000000000000', 7), shardOfVideo('00000000-0000-4000-8000-000000000000', 7));
    const counts = new Array<number>(4).fill(0);
    for (let i = 0; i < 4000; i += 1) counts[shardOfVideo(`video-${i}`, 4)]! += 1;
    for (const count of counts) assert.ok(count > 800 && count < 1200, String(counts));
    // FNV-1a 32-bit reference value: the shard of an id must not change between versions.
    assert.equal(shardOfVideo('a', 2 ** 32), 0xe40c292c);
  });

  it('refuses a bad shard count or index', () => {
    assert.throws(() => queueLayout('vs', { shards: 0, cluster: false }), /QUEUE_SHARDS/);
    assert.throws(() => queueKeys('vs', 3, { shards: 3, cluster: true }), /shard 3/);
  });
});
