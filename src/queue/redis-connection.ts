import { setTimeout as delay } from 'node:timers/promises';
import { createClient, createCluster } from 'redis';
import type { Config } from '../config.ts';
import { isTransientError } from '../errors/transient-error.ts';

export type RedisClient = ReturnType<typeof createClient>;
export type RedisClusterClient = ReturnType<typeof createCluster>;
/** What the queue talks to: one Redis, or node-redis's cluster client (which routes each command by its first key). */
export type QueueRedis = RedisClient | RedisClusterClient;

export function isCluster(redis: QueueRedis): redis is RedisClusterClient {
  return 'masters' in redis;
}

/**
 * A client for REDIS_URL, or node-redis's cluster client for REDIS_CLUSTER_NODES / redis+cluster://
 * (not connected yet). The cluster's node connections do not queue commands while reconnecting
 * (disableOfflineQueue): a command for a primary that died fails at once instead of waiting for a node
 * that will not come back, and withFailover() retries it once the replica is promoted.
 */
export function createQueueRedis(config: Pick<Config, 'redisUrl' | 'redisCluster'>): QueueRedis {
  const cluster = config.redisCluster;
  if (!cluster) return createClient({ url: config.redisUrl });
  return createCluster({
    rootNodes: cluster.nodes.map(({ host, port }) => ({ socket: { host, port } })),
    defaults: {
      username: cluster.username,
      password: cluster.password,
      disableOfflineQueue: true,
      socket: { ...(cluster.tls ? { tls: true as const } : {}), connectTimeout: 5_000, reconnectStrategy: (retries: number) => Math.min(100 * 2 ** retries, 2_000) },
    },
  });
}

/** Runs fn on one Redis, or on every primary of a cluster (script loading, settings checks, SCAN). */
export async function forEachPrimary<T>(redis: QueueRedis, fn: (node: RedisClient, address: string) => Promise<T>): Promise<T[]> {
  if (!isCluster(redis)) return [await fn(redis, 'redis')];
  return Promise.all(redis.masters.map(async (master) => fn((await redis.nodeClient(master)) as unknown as RedisClient, master.address)));
}

/** The connection of the primary serving a key's slot (one Redis: the client itself). */
export async function primaryOf(redis: QueueRedis, slot: number): Promise<RedisClient> {
  if (!isCluster(redis)) return redis;
  const master = redis.slots[slot]?.master;
  if (!master) throw new Error(`no primary serves slot ${slot}`);
  return (await redis.nodeClient(master)) as unknown as RedisClient;
}

/**
 * Asks the cluster for its slots again. node-redis does this by itself only on a MOVED reply, which a
 * dead primary never sends: without this, commands for its slots keep going to it after its replica
 * took over.
 */
export async function refreshTopology(redis: QueueRedis): Promise<void> {
  if (!isCluster(redis)) return;
  const live = redis.masters.find((master) => master.client?.isReady)?.client ?? redis.masters[0]?.client;
  if (live) await redis._slots.rediscover(live);
}

/** Replies a cluster gives while a primary is down or a failover is under way. */
function isFailoverError(error: unknown): boolean {
  if (isTransientError(error)) return true;
  return error instanceof Error && /^(CLUSTERDOWN|TRYAGAIN|MASTERDOWN|READONLY|LOADING)\b/.test(error.message);
}

/**
 * On a cluster, retries fn through a failover: while a primary is down (until its replica is promoted,
 * about cluster-node-timeout) its slots answer with connection errors or CLUSTERDOWN; each retry first
 * refreshes the topology. Gives up after timeoutMs. One Redis: fn as is (callers handle outages).
 * Only for commands that may run twice: a retried LPUSH can queue a job twice (the commit is idempotent).
 */
export async function withFailover<T>(redis: QueueRedis, timeoutMs: number, fn: () => Promise<T>): Promise<T> {
  if (!isCluster(redis)) return fn();
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await fn();
    } catch (error) {
      if (!isFailoverError(error) || Date.now() >= deadline) throw error;
      await delay(Math.min(50 * 2 ** attempt, 1_000));
      await refreshTopology(redis).catch(() => undefined);
    }
  }
}
