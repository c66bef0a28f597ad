import type { Config } from '../config.ts';
import { createSql } from '../db/client.ts';
import { PgAnalyticsRepository } from '../db/analytics.repository.ts';
import { PgAuthRepository } from '../db/auth.repository.ts';
import { PgDetectionRepository } from '../db/detections.repository.ts';
import { migrate } from '../db/migrate.ts';
import { PgVideoCatalog } from '../db/video-catalog.repository.ts';
import { PgVideoRepository } from '../db/videos.repository.ts';
import { createLogger, type Logger } from '../logger.ts';
import { resolveMediaBinaries, resolvePrlimit } from '../media/binaries.ts';
import { MediaRepository } from '../media/media.repository.ts';
import { ServiceMetrics } from '../metrics/service-metrics.ts';
import { durabilityProblems, readRedisDurability } from '../queue/redis-durability.ts';
import { createQueueRedis, forEachPrimary, isCluster, type QueueRedis } from '../queue/redis-connection.ts';
import { ReliableQueue } from '../queue/reliable-queue.ts';
import { createStorage } from '../storage/create-storage.ts';

/** One Redis, or node-redis's cluster client (REDIS_CLUSTER_NODES). */
export type Redis = QueueRedis;

/** Connections and repositories every role needs; each entry point adds its own pieces on top. */
export interface Runtime {
  config: Config;
  logger: Logger;
  sql: ReturnType<typeof createSql>;
  redis: Redis;
  blockingRedis: Redis;
  queue: ReliableQueue;
  storage: ReturnType<typeof createStorage>;
  videos: PgVideoRepository;
  detections: PgDetectionRepository;
  /** The web API's read side: videos with owner and progress, analytics, keys and sessions. */
  catalog: PgVideoCatalog;
  analytics: PgAnalyticsRepository;
  authRepository: PgAuthRepository;
  /** This process's Prometheus registry (the API and a worker in one process share it). */
  metrics: ServiceMetrics;
  close(): Promise<void>;
}

export async function createRuntime(config: Config, role: string): Promise<Runtime> {
  const logger = createLogger(config, role);
  for (const warning of config.warnings) logger.warn(warning);
  const sql = createSql(config.databaseUrl);
  await migrate(sql);

  const redis = createQueueRedis(config);
  redis.on('error', (error: Error) => logger.warn('redis connection error', { error: error.message }));
  await redis.connect();
  // Blocking reserves (BLMOVE) hold their connection, so they get one of their own (on a cluster, one to every node).
  const blockingRedis = redis.duplicate();
  blockingRedis.on('error', (error: Error) => logger.warn('redis (blocking) connection error', { error: error.message }));
  await blockingRedis.connect();
  await checkRedisDurability(redis, config.requireDurableRedis, logger);
  await checkReplicas(redis, config.queueWaitReplicas, logger);
  const queue = new ReliableQueue(redis, blockingRedis, config.queuePrefix, {
    shards: config.queueShards,
    waitReplicas: config.queueWaitReplicas,
    waitTimeoutMs: config.queueWaitTimeoutMs,
    failoverTimeoutMs: config.queueFailoverTimeoutMs,
  });
  // Also refuses to start when QUEUE_SHARDS differs from the count this queue was created with.
  await queue.load();
  if (isCluster(redis)) logger.info('redis cluster', { primaries: redis.masters.length, queueShards: config.queueShards, waitReplicas: config.queueWaitReplicas });
  const metrics = new ServiceMetrics();
  metrics.watchQueue({
    async depth() {
      const [{ pending, processing }, deadLetters] = await Promise.all([queue.counts(), queue.listDeadLetters(0, 1)]);
      return { pending, processing, deadLetters: deadLetters.total };
    },
  });

  return {
    config,
    logger,
    sql,
    redis,
    blockingRedis,
    queue,
    storage: createStorage(config),
    videos: new PgVideoRepository(sql),
    detections: new PgDetectionRepository(sql),
    catalog: new PgVideoCatalog(sql),
    analytics: new PgAnalyticsRepository(sql),
    authRepository: new PgAuthRepository(sql),
    metrics,
    async close() {
      await Promise.allSettled([redis.close(), blockingRedis.close(), sql.end({ timeout: 5 })]);
    },
  };
}

/**
 * Logs what makes the broker lossy; refuses to start when REQUIRE_DURABLE_REDIS says so. On a cluster
 * every primary is checked (each holds its own shards' jobs); its replicas are not reachable through
 * the client and must be configured alike (a promoted replica becomes the primary).
 */
async function checkRedisDurability(redis: Redis, required: boolean, logger: Logger): Promise<void> {
  const nodes = await forEachPrimary(redis, async (node, address) => ({ address, settings: await readRedisDurability(node) }));
  for (const { address, settings } of nodes) {
    const where = isCluster(redis) ? ` (primary ${address})` : '';
    if (!settings) {
      const message = `could not read Redis persistence settings${where} (CONFIG GET refused); make sure AOF is on and eviction off`;
      if (required) throw new Error(`REQUIRE_DURABLE_REDIS=true: ${message}`);
      logger.warn(message);
      continue;
    }
    const { problems, notes } = durabilityProblems(settings);
    for (const note of notes) logger.info(`redis durability${where}: ${note}`);
    if (problems.length === 0) continue;
    if (required) throw new Error(`REQUIRE_DURABLE_REDIS=true but Redis${where} is not durable: ${problems.join('; ')}`);
    for (const problem of problems) logger.warn(`redis durability${where}: ${problem}`, { settings });
  }
}

/**
 * QUEUE_WAIT_REPLICAS needs that many replicas per primary: fewer, and every publish waits up to
 * QUEUE_FAILOVER_TIMEOUT_MS and then fails. Warned, not refused: a replica may be restarting.
 */
async function checkReplicas(redis: Redis, wanted: number, logger: Logger): Promise<void> {
  if (wanted === 0) return;
  const nodes = await forEachPrimary(redis, async (node, address) => {
    const info = await node.info('replication').catch(() => '');
    return { address, replicas: Number(/connected_slaves:(\d+)/.exec(info)?.[1] ?? 0) };
  });
  for (const { address, replicas } of nodes) {
    if (replicas < wanted) logger.warn('a Redis primary has fewer connected replicas than QUEUE_WAIT_REPLICAS: publishes to it will wait, then fail', { primary: address, replicas, wanted });
  }
}

export async function createMedia(config: Config): Promise<MediaRepository> {
  const binaries = await resolveMediaBinaries({ ffmpegPath: config.ffmpegPath, ffprobePath: config.ffprobePath });
  const { maxPixels, mediaMemoryLimitBytes } = config.limits;
  const prlimit = mediaMemoryLimitBytes > 0 ? await resolvePrlimit() : undefined;
  return new MediaRepository(binaries, {}, { maxPixels, memoryLimitBytes: mediaMemoryLimitBytes, prlimit });
}
