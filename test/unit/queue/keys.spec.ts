import assert from 'node:assert/strict';
import { queueKeys } from '../../../src/queue/keys.ts';

describe('queueKeys', () => {
  it('namespaces every key under the prefix and keeps per-worker keys apart', () => {
    const keys = queueKeys('vs');
    const all = [keys.pending, keys.workers, keys.processing('w1'), keys.heartbeat('w1'), keys.processing('w2')];
    assert.ok(all.every((key) => key.startsWith('vs:')));
    assert.equal(new Set(all).size, all.length);
    assert.notEqual(queueKeys('other').pending, keys.pending);
  });

  it('refuses an empty prefix', () => {
    assert.throws(() => queueKeys(''), /prefix/);
  });
});
