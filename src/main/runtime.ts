import { createClient } from 'redis';
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
import { ReliableQueue } from '../queue/reliable-queue.ts';
import { createStorage } from '../storage/create-storage.ts';

export type Redis = ReturnType<typeof createClient>;

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

  const redis = createClient({ url: config.redisUrl });
  redis.on('error', (error: Error) => logger.warn('redis connection error', { error: error.message }));
  await redis.connect();
  // Blocking reserves (BLMOVE) hold their connection, so they get one of their own.
  const blockingRedis = redis.duplicate();
  blockingRedis.on('error', (error: Error) => logger.warn('redis (blocking) connection error', { error: error.message }));
  await blockingRedis.connect();
  await checkRedisDurability(redis, config.requireDurableRedis, logger);
  const queue = new ReliableQueue(redis, blockingRedis, config.queuePrefix);
  await queue.load();
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
      await Promise.allSettled([redis.quit(), blockingRedis.quit(), sql.end({ timeout: 5 })]);
    },
  };
}

/** Logs what makes the broker lossy; refuses to start when REQUIRE_DURABLE_REDIS says so. */
async function checkRedisDurability(redis: Redis, required: boolean, logger: Logger): Promise<void> {
  const settings = await readRedisDurability(redis);
  if (!settings) {
    const message = 'could not read Redis persistence settings (CONFIG GET refused); make sure AOF is on and eviction off';
    if (required) throw new Error(`REQUIRE_DURABLE_REDIS=true: ${message}`);
    logger.warn(message);
    return;
  }
  const { problems, notes } = durabilityProblems(settings);
  for (const note of notes) logger.info(`redis durability: ${note}`);
  if (problems.length === 0) return;
  if (required) throw new Error(`REQUIRE_DURABLE_REDIS=true but Redis is not durable: ${problems.join('; ')}`);
  for (const problem of problems) logger.warn(`redis durability: ${problem}`, { settings });
}

export async function createMedia(config: Config): Promise<MediaRepository> {
  const binaries = await resolveMediaBinaries({ ffmpegPath: config.ffmpegPath, ffprobePath: config.ffprobePath });
  const { maxPixels, mediaMemoryLimitBytes } = config.limits;
  const prlimit = mediaMemoryLimitBytes > 0 ? await resolvePrlimit() : undefined;
  return new MediaRepository(binaries, {}, { maxPixels, memoryLimitBytes: mediaMemoryLimitBytes, prlimit });
}
