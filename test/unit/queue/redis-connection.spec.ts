import assert from 'node:assert/strict';
import { createQueueRedis, isCluster, withFailover, type QueueRedis } from '../../../src/queue/redis-connection.ts';

/** Just enough of a cluster client for withFailover: it is a cluster ('masters') and can rediscover. */
function fakeCluster(): { redis: QueueRedis; rediscovered: () => number } {
  let rediscovered = 0;
  const redis = { masters: [{ client: { isReady: true } }], _slots: { rediscover: async () => void (rediscovered += 1) } };
  return { redis: redis as unknown as QueueRedis, rediscovered: () => rediscovered };
}

describe('queue Redis connection', () => {
  it('makes a plain client for REDIS_URL and node-redis\'s cluster client for cluster settings (not connected)', () => {
    const single = createQueueRedis({ redisUrl: 'redis://127.0.0.1:6379', redisCluster: undefined });
    assert.equal(isCluster(single), false);
    const cluster = createQueueRedis({ redisUrl: '', redisCluster: { nodes: [{ host: 'a', port: 1 }, { host: 'b', port: 2 }], tls: false, username: 'u', password: 'p' } });
    assert.equal(isCluster(cluster), true);
    const options = (cluster as unknown as { _options: { rootNodes: unknown; defaults: { password: string; disableOfflineQueue: boolean } } })._options;
    assert.deepEqual(options.rootNodes, [{ socket: { host: 'a', port: 1 } }, { socket: { host: 'b', port: 2 } }]);
    assert.equal(options.defaults.password, 'p');
    assert.equal(options.defaults.disableOfflineQueue, true, 'a command for a dead primary must fail, not wait for it');
  });

  it('retries through a failover (connection errors, CLUSTERDOWN, TRYAGAIN), refreshing the topology each time', async () => {
    const { redis, rediscovered } = fakeCluster();
    const errors = [Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), new Error('CLUSTERDOWN The cluster is down'), new Error('TRYAGAIN Multiple keys request during rehashing of slot')];
    let calls = 0;
    const result = await withFailover(redis, 10_000, async () => {
      calls += 1;
      const error = errors.shift();
      if (error) throw error;
      return 'ok';
    });
    assert.deepEqual([result, calls, rediscovered()], ['ok', 4, 3]);
  });

  it('does not retry other errors, gives up after the timeout, and leaves a single Redis alone', async () => {
    const { redis } = fakeCluster();
    let calls = 0;
    await assert.rejects(withFailover(redis, 10_000, async () => {
      calls += 1;
      throw new Error('WRONGTYPE Operation against a key holding the wrong kind of value');
    }), /WRONGTYPE/);
    assert.equal(calls, 1);
    await assert.rejects(withFailover(redis, 150, async () => {
      throw new Error('CLUSTERDOWN The cluster is down');
    }), /CLUSTERDOWN/);
    const single = createQueueRedis({ redisUrl: 'redis://127.0.0.1:6379', redisCluster: undefined });
    calls = 0;
    await assert.rejects(withFailover(single, 10_000, async () => {
      calls += 1;
      throw new Error('CLUSTERDOWN');
    }));
    assert.equal(calls, 1, 'one Redis: the callers handle outages themselves');
  });
});
