import assert from 'node:assert/strict';
import { queueKeys } from '../../../src/queue/keys.ts';

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
