import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { keySlot } from '../../src/queue/keys.ts';
import { createQueueRedis, type RedisClusterClient } from '../../src/queue/redis-connection.ts';
import { ReliableQueue } from '../../src/queue/reliable-queue.ts';
import type { DetectionJob } from '../../src/queue/types.ts';
import { RedisCluster } from '../helpers/redis-cluster.ts';
import { uniquePrefix } from '../helpers/redis.ts';

// The queue on a real Redis Cluster (three primaries, a replica each, started here): shards on
// different primaries, a video's jobs in one shard, workers served from every shard, the shard count
// enforced, and a primary SIGKILLed mid-run with nothing lost.
describe('reliable queue on a Redis Cluster', function () {
  this.timeout(240_000);
  let cluster: RedisCluster;
  const clients: RedisClusterClient[] = [];

  async function connect(): Promise<RedisClusterClient> {
    const client = createQueueRedis({ redisUrl: '', redisCluster: { nodes: cluster.rootNodes.map((n) => ({ host: '127.0.0.1', port: Number(new URL(n.url).port) })), tls: false, username: undefined, password: undefined } }) as RedisClusterClient;
    client.on('error', () => {}); // nodes are killed on purpose
    await client.connect();
    clients.push(client);
    return client;
  }

  async function queueFor(prefix: string, options: ConstructorParameters<typeof ReliableQueue>[3]): Promise<ReliableQueue> {
    const client = await connect();
    const blocking = client.duplicate();
    blocking.on('error', () => {});
    await blocking.connect();
    clients.push(blocking);
    const queue = new ReliableQueue(client, blocking, prefix, options);
    await queue.load();
    return queue;
  }

  function videosInShard(queue: ReliableQueue, shard: number, count: number): string[] {
    const videos: string[] = [];
    while (videos.length < count) {
      const videoId = randomUUID();
      if (queue.layout.shardOfVideo(videoId) === shard) videos.push(videoId);
    }
    return videos;
  }

  function job(videoId: string, n: number): DetectionJob {
    const frames = [0, 1, 2, 3].map((i) => ({ index: n * 4 + i, ptsMs: (n * 4 + i) * 200, key: `videos/${videoId}/frames/${n * 4 + i}.jpg` }));
    return { id: `${videoId}:${n * 4}`, videoId, frames, publishedAt: Date.now() };
  }

  before(async () => {
    cluster = await RedisCluster.start({ masters: 3, replicasPerMaster: 1 });
  });

  after(async () => {
    await Promise.allSettled(clients.map((client) => client.close()));
    await cluster?.stop();
  });

  it('puts each shard on its own primary, a video in one shard, and serves every shard to every worker in turn', async () => {
    const prefix = uniquePrefix();
    const queue = await queueFor(prefix, { shards: 3 });
    // Our slot function agrees with Redis, and the three shards' slots belong to three different primaries.
    const primaries = await cluster.primaries();
    const owners = new Set<number>();
    for (const keys of queue.layout.shards) {
      const slot = keySlot(keys.pending.detect);
      assert.equal(await cluster.nodes[0]!.command('CLUSTER', 'KEYSLOT', keys.pending.detect), String(slot));
      assert.equal(await cluster.nodes[0]!.command('CLUSTER', 'KEYSLOT', keys.processing('w')), String(slot));
      owners.add(primaries.find(({ info }) => info.slots.some(([from, to]) => slot >= from && slot <= to))!.info.port);
    }
    assert.equal(owners.size, 3);

    // Four videos per shard: twelve random ids leave a shard empty about once in 44 runs (3 x (2/3)^12),
    // and the round-robin below needs every shard to hold jobs.
    const videos = queue.layout.shards.flatMap((_, shard) => videosInShard(queue, shard, 4));
    const jobs = videos.flatMap((videoId) => [0, 1, 2].map((n) => job(videoId, n)));
    await queue.publish(jobs);
    // Each video's jobs are all in the pending list of its shard.
    for (const videoId of videos) {
      const shard = queue.layout.shardOfVideo(videoId);
      const ids = (await clients[0]!.lRange(queue.layout.shards[shard]!.pending.detect, 0, -1)).map((p) => (JSON.parse(p) as DetectionJob).videoId);
      assert.equal(ids.filter((id) => id === videoId).length, 3, `video ${videoId} in shard ${shard}`);
    }
    const pendingPerShard = await Promise.all(queue.layout.shards.map((keys) => clients[0]!.lLen(keys.pending.detect)));
    assert.deepEqual(pendingPerShard, [12, 12, 12]);

    // One worker takes jobs round-robin: its first three come from three different shards.
    await queue.heartbeat('w1', 10_000);
    const first = [];
    for (let i = 0; i < 3; i += 1) first.push((await queue.reserve('w1', 'detect', 1))!);
    assert.deepEqual(new Set(first.map((r) => r.shard)).size, 3);
    for (const reserved of first) await queue.ack('w1', reserved);
    assert.deepEqual(await queue.counts(), { pending: jobs.length - 3, pendingByKind: { extract: 0, detect: jobs.length - 3 }, processing: 0 });
    // The rest drains; every job exactly once.
    const seen = first.map((r) => r.job.id);
    for (let reserved = await queue.reserve('w1', 'detect', 0.5); reserved; reserved = await queue.reserve('w1', 'detect', 0.5)) {
      seen.push(reserved.job.id);
      await queue.ack('w1', reserved);
    }
    assert.deepEqual(seen.sort(), jobs.map((j) => j.id).sort());
    assert.equal(await queue.releaseWorker('w1'), 0);

    // An idle worker still gets a job published to any shard (it waits on each in turn).
    const late = job(videos[5]!, 9);
    const waiting = queue.reserve('w2', 'detect', 5);
    await delay(300);
    await queue.publish([late]);
    assert.equal((await waiting)?.job.id, late.id);
  });

  it('refuses to start with another QUEUE_SHARDS than the queue was created with', async () => {
    const prefix = uniquePrefix();
    await queueFor(prefix, { shards: 3 });
    await assert.rejects(queueFor(prefix, { shards: 2 }), /QUEUE_SHARDS=2, but this queue .* was created with 3 shards/);
    await queueFor(prefix, { shards: 3 }); // the same count starts
  });

  it('moves dead letters, reclaims and releases within each shard', async () => {
    const prefix = uniquePrefix();
    const queue = await queueFor(prefix, { shards: 3 });
    const videos = Array.from({ length: 6 }, () => randomUUID());
    await queue.publish(videos.map((videoId) => job(videoId, 0)));
    await queue.heartbeat('dying', 300);
    const held = [];
    for (let i = 0; i < 6; i += 1) held.push((await queue.reserve('dying', 'detect', 1))!);
    assert.ok(await queue.deadLetter('dying', held[0]!, 'boom', 5));
    const letters = await queue.listDeadLetters();
    assert.equal(letters.total, 1);
    assert.equal(letters.items[0]!.job.id, held[0]!.job.id);
    assert.ok(await queue.retryDeadLetter(held[0]!.job.id));
    await delay(400); // the heartbeat expires
    assert.equal(await queue.reclaimOrphanedJobs(), 5);
    assert.deepEqual(await queue.counts(), { pending: 6, pendingByKind: { extract: 0, detect: 6 }, processing: 0 });
  });

  it("discards a cancelled or deleted video's queued jobs of both kinds and its dead letters in its own shard, and nothing of the others", async () => {
    const prefix = uniquePrefix();
    const queue = await queueFor(prefix, { shards: 3 });
    // Videos until every shard holds one, so the discarded one shares its shard with no other by chance alone.
    const videos: string[] = [];
    while (new Set(videos.map((id) => queue.layout.shardOfVideo(id))).size < 3) videos.push(randomUUID());
    const [doomed, ...kept] = videos as [string, ...string[]];
    for (const videoId of videos) {
      assert.ok(await queue.enqueueExtraction(videoId));
      await queue.publish([job(videoId, 0), job(videoId, 1)]);
    }
    await queue.heartbeat('w', 5_000);
    // One detect job of the doomed video in the dead letters (reserve until it comes up in its shard).
    for (;;) {
      const reserved = (await queue.reserve('w', 'detect', 1))!;
      if (reserved.job.videoId === doomed) {
        assert.ok(await queue.deadLetter('w', reserved, 'boom', 5));
        break;
      }
      await queue.ack('w', reserved);
    }
    const before = await queue.counts();
    const removed = await queue.discardVideoJobs(doomed);
    assert.equal(removed, 3, 'its extract job, its other detect job and its dead letter');
    const after = await queue.counts();
    assert.equal(after.pendingByKind.extract, before.pendingByKind.extract - 1);
    assert.equal(after.pendingByKind.detect, before.pendingByKind.detect - 1);
    assert.equal((await queue.listDeadLetters()).total, 0);
    const shard = queue.layout.shards[queue.layout.shardOfVideo(doomed)]!;
    for (const kind of ['extract', 'detect'] as const) {
      const left = await clients[0]!.lRange(shard.pending[kind], 0, -1);
      assert.ok(left.every((payload) => !payload.includes(doomed)), `no ${kind} job of the discarded video is left`);
    }
    // The others' extraction jobs are all still queued (one each), and a discarded video may be queued again.
    assert.equal(after.pendingByKind.extract, kept.length);
    assert.ok(await queue.enqueueExtraction(doomed), 'the discard forgot that its extraction was queued');
  });

  it('loses nothing when a primary is SIGKILLed mid-run (publishes wait for a replica; its replica takes over)', async () => {
    const prefix = uniquePrefix();
    const options = { shards: 3, waitReplicas: 1, waitTimeoutMs: 500, failoverTimeoutMs: 60_000 };
    const producer = await queueFor(prefix, options);
    const consumers = await Promise.all([0, 1, 2].map(() => queueFor(prefix, options)));
    const videos = Array.from({ length: 30 }, () => randomUUID());
    const total = 300;
    const published = new Set<string>();
    const acked = new Map<string, number>();
    let stop = false;
    let consumerErrors = 0;

    const consuming = consumers.map(async (queue, i) => {
      const workerId = `c${i}`;
      let lastBeat = 0;
      while (!stop) {
        try {
          if (Date.now() - lastBeat > 500) {
            await queue.heartbeat(workerId, 5_000);
            lastBeat = Date.now();
          }
          const reserved = await queue.reserve(workerId, 'detect', 0.3);
          if (!reserved) continue;
          await queue.ack(workerId, reserved);
          acked.set(reserved.job.id, (acked.get(reserved.job.id) ?? 0) + 1);
        } catch {
          consumerErrors += 1;
          await delay(100); // the primary is down: as the worker does, try again
        }
      }
      await queue.releaseWorker(workerId);
    });
    const reclaiming = (async () => {
      while (!stop) {
        await consumers[0]!.reclaimOrphanedJobs().catch(() => 0);
        await delay(500);
      }
    })();

    // The victim: the primary of the shard of video 0, killed once a third of the jobs are published.
    const victimSlot = keySlot(producer.layout.shards[producer.layout.shardOfVideo(videos[0]!)]!.pending.detect);
    const victim = (await cluster.primaries()).find(({ info }) => info.slots.some(([from, to]) => victimSlot >= from && victimSlot <= to))!.server;
    let failover: Promise<void> | undefined;
    for (let n = 0; n < total; n += 1) {
      const next = job(videos[n % videos.length]!, Math.floor(n / videos.length));
      if (n === total / 3) {
        failover = (async () => {
          await cluster.killPrimary(victim);
          await cluster.waitHealthy();
          // Back as a replica of the promoted one (as an orchestrator restarts it): WAIT can be met again.
          await victim.restart();
        })();
      }
      await producer.publish([next]); // retried through the failover; returns once a replica has it
      published.add(next.id);
    }
    await failover;
    const deadline = Date.now() + 120_000;
    while ([...published].some((id) => !acked.has(id)) && Date.now() < deadline) await delay(200);
    stop = true;
    await Promise.all([...consuming, reclaiming]);

    const missing = [...published].filter((id) => !acked.has(id));
    assert.deepEqual(missing, [], `${missing.length} of ${total} jobs never acknowledged`);
    assert.deepEqual(await producer.counts(), { pending: 0, pendingByKind: { extract: 0, detect: 0 }, processing: 0 });
    assert.equal(published.size, total);
    // The failover did happen mid-run: the killed node is back as a replica, and its slot has another primary.
    const after = await cluster.topology();
    assert.equal(after.find((node) => node.port === victim.port)?.role, 'replica');
    const promoted = after.find((node) => node.role === 'master' && node.slots.some(([from, to]) => victimSlot >= from && victimSlot <= to));
    assert.ok(promoted && promoted.port !== victim.port);
    console.log(`      failover run: ${total} jobs, ${[...acked.values()].filter((n) => n > 1).length} delivered twice, ${consumerErrors} consumer errors during the failover`);
  });
});
