import assert from 'node:assert/strict';
import { createClient } from 'redis';
import { PublishNotReplicatedError, ReliableQueue } from '../../src/queue/reliable-queue.ts';
import { waitFor } from '../helpers/service.ts';
import { RedisServer } from '../helpers/redis-server.ts';

// QUEUE_WAIT_REPLICAS on one Redis (private servers): a publish returns once a replica has it, and fails
// with PublishNotReplicatedError, after the failover timeout, when no replica acknowledges.
describe('reliable queue: publish waits for replicas (WAIT)', function () {
  this.timeout(60_000);
  let primary: RedisServer;
  let replica: RedisServer | undefined;
  let client: ReturnType<typeof createClient>;

  before(async () => {
    primary = await RedisServer.start();
    client = createClient({ url: primary.url });
    client.on('error', () => {});
    await client.connect();
  });
  after(async () => {
    await client.quit().catch(() => undefined);
    await replica?.stop();
    await primary.stop();
  });

  const job = (id: string) => ({ id, videoId: 'v', frames: [{ index: 0, ptsMs: 0, key: 'k' }] });

  it('without a replica: the job is queued, but publish fails once the failover timeout passes', async () => {
    const queue = new ReliableQueue(client, client, 'nowait', { waitReplicas: 1, waitTimeoutMs: 50, failoverTimeoutMs: 300 });
    await queue.load();
    await assert.rejects(queue.publish([job('a')]), (error: unknown) => error instanceof PublishNotReplicatedError && error.acknowledged === 0 && error.wanted === 1);
    assert.equal(await client.lLen(queue.keys.pending.detect), 1);
  });

  it('with a replica: publish returns once the replica has the job', async () => {
    replica = await RedisServer.start({ args: ['--replicaof', '127.0.0.1', String(primary.port)] });
    await waitFor('the replica to sync', async () => (/connected_slaves:1/.test(await client.info('replication')) ? true : undefined), 30_000, 50);
    const queue = new ReliableQueue(client, client, 'wait', { waitReplicas: 1, waitTimeoutMs: 2_000, failoverTimeoutMs: 10_000 });
    await queue.load();
    await queue.publish([job('b')]);
    assert.equal(await replica.command('LLEN', queue.keys.pending.detect), '1');
  });
});
