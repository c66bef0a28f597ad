import assert from 'node:assert/strict';
import { durabilityProblems } from '../../../src/queue/redis-durability.ts';

describe('durabilityProblems', () => {
  it('accepts AOF with fsync always and no eviction', () => {
    assert.deepEqual(durabilityProblems({ appendonly: 'yes', appendfsync: 'always', maxmemoryPolicy: 'noeviction' }), { problems: [], notes: [] });
  });
  it('accepts everysec with a note about its one-second window', () => {
    const result = durabilityProblems({ appendonly: 'yes', appendfsync: 'everysec', maxmemoryPolicy: 'noeviction' });
    assert.deepEqual(result.problems, []);
    assert.match(result.notes[0]!, /1 s/);
  });
  it('flags AOF off, fsync left to the OS, and any eviction policy', () => {
    assert.equal(durabilityProblems({ appendonly: 'no', appendfsync: 'everysec', maxmemoryPolicy: 'noeviction' }).problems.length, 1);
    assert.match(durabilityProblems({ appendonly: 'yes', appendfsync: 'no', maxmemoryPolicy: 'noeviction' }).problems[0]!, /appendfsync no/);
    const evicting = durabilityProblems({ appendonly: 'no', appendfsync: 'everysec', maxmemoryPolicy: 'allkeys-lru' });
    assert.equal(evicting.problems.length, 2);
    assert.match(evicting.problems[1]!, /allkeys-lru/);
  });
});
