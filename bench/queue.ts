/**
 * npm run bench:queue — queue throughput, publish → reserve → ack, in jobs per second: our ReliableQueue
 * beside BullMQ on the same private redis-server in the same run, alternating round by round so both see
 * the same load. Prints one JSON line.
 *
 * Each round: BENCH_PRODUCERS loops publish BENCH_JOBS jobs between them, one job a call (as extraction
 * publishes), while BENCH_CONSUMERS consumers take and acknowledge them; the time runs from the first
 * publish to the last acknowledgement. Every job is a detect job with 4 frames (the payload extraction
 * writes). Consumers do no work: this measures the queue, not the detector.
 *
 * - vidsense: BENCH_CONSUMERS consumers, each a reserve (BLMOVE on a connection of its own) → ack (LREM)
 *   loop under its own worker id, registered with a heartbeat as a worker registers; producers share one
 *   connection, as an API process does.
 * - bullmq: one Queue (producers share its connection) and one Worker with concurrency BENCH_CONSUMERS
 *   (BullMQ's own way to run N jobs at once), removeOnComplete so finished jobs are deleted as ours are,
 *   on node-redis through BullMQ's own adapter (the client the service uses; ioredis is not installed).
 *   A job is counted when the Worker emits 'completed', after BullMQ has moved it out of active.
 *
 * Each system also reports publish→ack latency percentiles, and whether every job was acknowledged exactly
 * once with nothing left in Redis (`exactlyOnce`); a test runs this with a few jobs and checks that.
 *
 * Then (unless BENCH_CLUSTER=false) ours on a private Redis Cluster, three primaries with a replica each,
 * QUEUE_SHARDS=BENCH_SHARDS, with and without WAIT for a replica (see benchCluster).
 *
 * The Redis is private (own port and directory, started and removed here) with AOF on, appendfsync
 * BENCH_APPENDFSYNC (default always, as docker/redis.conf ships) and noeviction: the zero-loss settings.
 *
 * Environment: BENCH_JOBS (default 20000), BENCH_PRODUCERS (4), BENCH_CONSUMERS (8), BENCH_ROUNDS (2),
 * BENCH_APPENDFSYNC (always | everysec), BENCH_CLUSTER (true | false), BENCH_SHARDS (3).
 */
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import { Queue, Worker, type Job } from 'bullmq';
import { createClient } from 'redis';
import { createQueueRedis, forEachPrimary, type QueueRedis, type RedisClient } from '../src/queue/redis-connection.ts';
import { ReliableQueue, type QueueOptions } from '../src/queue/reliable-queue.ts';
import type { DetectionJob } from '../src/queue/types.ts';
import { RedisCluster } from '../test/helpers/redis-cluster.ts';
import { RedisServer } from '../test/helpers/redis-server.ts';

const jobs = positiveInteger('BENCH_JOBS', 20_000);
const producers = positiveInteger('BENCH_PRODUCERS', 4);
const consumers = positiveInteger('BENCH_CONSUMERS', 8);
const rounds = positiveInteger('BENCH_ROUNDS', 2);
const appendfsync = process.env.BENCH_APPENDFSYNC === 'everysec' ? 'everysec' : 'always';
const withCluster = process.env.BENCH_CLUSTER !== 'false';
const clusterShards = positiveInteger('BENCH_SHARDS', 3);

function positiveInteger(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a whole number >= 1 (got "${raw}")`);
  return value;
}

/** One round of one system: its figures and what its bookkeeping found. */
interface RoundResult {
  jobsPerSecond: number;
  ms: number;
  latencyMs: { p50: number; p99: number; max: number };
  published: number;
  acked: number;
  /** Jobs acknowledged more than once, jobs never acknowledged, and keys left in Redis afterwards. */
  duplicates: number;
  missing: number;
  leftInRedis: number;
}

/** Job ids 0..n-1 spread over 16 videos, with 4 frames each: the shape extraction publishes. */
const videoIds = Array.from({ length: 16 }, () => randomUUID());
function detectJob(n: number): DetectionJob {
  const videoId = videoIds[n % videoIds.length]!;
  const first = Math.floor(n / videoIds.length) * 4;
  const frames = [0, 1, 2, 3].map((i) => ({ index: first + i, ptsMs: (first + i) * 200, key: `videos/${videoId}/frames/${String(first + i).padStart(6, '0')}.jpg` }));
  return { id: `${videoId}:${first}`, videoId, frames, publishedAt: Date.now() };
}

/** Runs `producers` loops that publish jobs 0..jobs-1 between them, one a call. */
async function produce(publish: (job: DetectionJob, n: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: producers }, async () => {
      for (let n = next++; n < jobs; n = next++) await publish(detectJob(n), n);
    }),
  );
}

/** Counts acknowledgements by job id and their publish→ack latency; resolves `done` at the last first-time ack. */
class Tally {
  readonly acks = new Map<string, number>();
  readonly latencies: number[] = [];
  private resolve!: () => void;
  readonly done = new Promise<void>((resolve) => (this.resolve = resolve));

  acked(job: DetectionJob): void {
    const count = (this.acks.get(job.id) ?? 0) + 1;
    this.acks.set(job.id, count);
    if (count === 1) this.latencies.push(Date.now() - (job.publishedAt ?? Date.now()));
    if (this.acks.size === jobs) this.resolve();
  }

  result(ms: number, published: number, leftInRedis: number): RoundResult {
    const sorted = [...this.latencies].sort((a, b) => a - b);
    const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
    let acked = 0;
    let duplicates = 0;
    for (const count of this.acks.values()) {
      acked += count;
      if (count > 1) duplicates += 1;
    }
    return {
      jobsPerSecond: round(jobs / (ms / 1000)),
      ms: round(ms),
      latencyMs: { p50: at(0.5), p99: at(0.99), max: sorted.at(-1) ?? 0 },
      published,
      acked,
      duplicates,
      missing: jobs - this.acks.size,
      leftInRedis,
    };
  }
}

/** Our queue: `consumers` reserve → ack loops, each with a blocking connection (on a cluster, a cluster client) and worker id of its own. */
async function benchVidsense(client: QueueRedis, prefix: string, options: QueueOptions = {}): Promise<RoundResult> {
  const queue = new ReliableQueue(client, client, prefix, options);
  await queue.load();
  const tally = new Tally();
  const blocking: QueueRedis[] = await Promise.all(
    Array.from({ length: consumers }, async () => {
      const connection = client.duplicate();
      connection.on('error', () => undefined);
      await connection.connect();
      return connection;
    }),
  );
  let stop = false;
  let published = 0;
  try {
    const started = performance.now();
    const consuming = blocking.map(async (connection, i) => {
      const workerId = `bench-${i}`;
      const own = new ReliableQueue(client, connection, prefix, options);
      await own.heartbeat(workerId, 60_000);
      while (!stop) {
        const reserved = await own.reserve(workerId, 'detect', 0.2);
        if (reserved === null) continue;
        await own.ack(workerId, reserved);
        tally.acked(reserved.job as DetectionJob);
      }
      await own.releaseWorker(workerId);
    });
    await produce(async (job) => {
      await queue.publish([job]);
      published += 1;
    });
    await tally.done;
    const ms = performance.now() - started;
    stop = true;
    await Promise.all(consuming);
    const counts = await queue.counts();
    const left = counts.pending + counts.processing + (await keysUnder(client, prefix));
    return tally.result(ms, published, left);
  } finally {
    stop = true;
    await Promise.allSettled(blocking.map((connection) => connection.close()));
  }
}

/** BullMQ on the same Redis: one Queue, one Worker with concurrency `consumers`, finished jobs removed. */
async function benchBullmq(client: RedisClient, prefix: string): Promise<RoundResult> {
  const name = 'detect';
  // BullMQ takes a node-redis client as its connection (it wraps it in its adapter; the Worker duplicates it for blocking).
  const queueConnection = client.duplicate();
  const workerConnection = client.duplicate();
  await Promise.all([queueConnection.connect(), workerConnection.connect()]);
  const queue = new Queue(name, { connection: queueConnection, prefix });
  const tally = new Tally();
  let published = 0;
  const worker = new Worker<DetectionJob>(name, async () => undefined, { connection: workerConnection, prefix, concurrency: consumers, autorun: false, removeOnComplete: { count: 0 } });
  worker.on('completed', (job: Job<DetectionJob>) => tally.acked(job.data));
  worker.on('error', (error) => console.error('bullmq worker error', error));
  try {
    await worker.waitUntilReady();
    const started = performance.now();
    void worker.run();
    await produce(async (job) => {
      await queue.add(name, job, { removeOnComplete: true, removeOnFail: false });
      published += 1;
    });
    await tally.done;
    const ms = performance.now() - started;
    await worker.close();
    const counts = await queue.getJobCounts('wait', 'active', 'delayed', 'failed', 'completed', 'prioritized', 'waiting-children');
    const left = Object.values(counts).reduce((sum, n) => sum + n, 0);
    return tally.result(ms, published, left);
  } finally {
    await worker.close().catch(() => undefined);
    await queue.close().catch(() => undefined);
    await Promise.allSettled([queueConnection.quit(), workerConnection.quit()]);
  }
}

/** Keys under the prefix (every primary of a cluster) but the shard-count record: none should be left. */
async function keysUnder(client: QueueRedis, prefix: string): Promise<number> {
  const counts = await forEachPrimary(client, async (node) => {
    let count = 0;
    for await (const batch of node.scanIterator({ MATCH: `${prefix}:*`, COUNT: 1000 })) count += [batch].flat().filter((key) => key !== `${prefix}:queue:shards`).length;
    return count;
  });
  return counts.reduce((sum, n) => sum + n, 0);
}

function round(value: number, digits = 1): number {
  return Number(value.toFixed(digits));
}

function summary(results: RoundResult[]): { jobsPerSecond: number; rounds: RoundResult[]; exactlyOnce: boolean } {
  return {
    jobsPerSecond: round(results.reduce((sum, r) => sum + r.jobsPerSecond, 0) / results.length),
    rounds: results,
    exactlyOnce: results.every((r) => r.published === jobs && r.acked === jobs && r.duplicates === 0 && r.missing === 0 && r.leftInRedis === 0),
  };
}

/**
 * Our queue on a private Redis Cluster (three primaries with a replica each, AOF always), BENCH_SHARDS
 * shards (default 3: one a primary), without WAIT and with WAIT for one replica (QUEUE_WAIT_REPLICAS=1,
 * the cluster default), alternating round by round. BullMQ is not run here: a BullMQ queue lives in one
 * hash slot, so on a cluster it is one primary's throughput.
 */
async function benchCluster() {
  const cluster = await RedisCluster.start({ masters: 3, replicasPerMaster: 1 });
  const client = createQueueRedis({ redisUrl: '', redisCluster: { nodes: cluster.nodes.map((node) => ({ host: node.host, port: node.port })), tls: false, username: undefined, password: undefined } });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const noWait: RoundResult[] = [];
    const wait: RoundResult[] = [];
    for (let i = 0; i < rounds; i += 1) {
      noWait.push(await benchVidsense(client, `bench-cluster-${i}`, { shards: clusterShards, waitReplicas: 0 }));
      wait.push(await benchVidsense(client, `bench-cluster-wait-${i}`, { shards: clusterShards, waitReplicas: 1 }));
    }
    return { primaries: 3, replicasPerPrimary: 1, shards: clusterShards, vidsense: summary(noWait), vidsenseWait1: summary(wait) };
  } finally {
    await client.close().catch(() => undefined);
    await cluster.stop();
  }
}

async function main(): Promise<void> {
  const server = await RedisServer.start({ appendfsync });
  const client = createClient({ url: server.url });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const vidsense: RoundResult[] = [];
    const bullmq: RoundResult[] = [];
    const loadBefore = os.loadavg();
    for (let i = 0; i < rounds; i += 1) {
      // Alternating, so a change of load on the shared host falls on both.
      vidsense.push(await benchVidsense(client, `bench-vidsense-${i}`));
      bullmq.push(await benchBullmq(client, `bench-bullmq-${i}`));
    }
    const ours = summary(vidsense);
    const theirs = summary(bullmq);
    const clusterFigures = withCluster ? await benchCluster() : undefined;
    console.log(
      JSON.stringify({
        jobs,
        producers,
        consumers,
        rounds,
        payloadBytes: Buffer.byteLength(JSON.stringify(detectJob(0))),
        redis: { version: (await client.info('server')).match(/redis_version:(\S+)/)?.[1] ?? 'unknown', appendfsync },
        single: {
          vidsense: ours,
          bullmq: theirs,
          ratio: round(ours.jobsPerSecond / theirs.jobsPerSecond, 2),
        },
        ...(clusterFigures ? { cluster: clusterFigures } : {}),
        cpus: os.cpus().length,
        loadAverage: { before: loadBefore.map((v) => round(v, 2)), after: os.loadavg().map((v) => round(v, 2)) },
      }),
    );
  } finally {
    await client.quit().catch(() => undefined);
    await server.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
