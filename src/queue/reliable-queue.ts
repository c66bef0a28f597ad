import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { createClient } from 'redis';
import { queueKeys, type QueueKeys } from './keys.ts';
import { parseJob } from './parse-job.ts';
import type { DetectionJob, ReservedJob } from './types.ts';

type RedisClient = ReturnType<typeof createClient>;

const scriptsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'scripts');

class LuaScript {
  readonly source: string;
  readonly sha: string;
  constructor(file: string) {
    this.source = fs.readFileSync(path.join(scriptsDir, file), 'utf8');
    this.sha = createHash('sha1').update(this.source).digest('hex');
  }

  async run(client: RedisClient, keys: string[], args: string[]): Promise<unknown> {
    try {
      return await client.evalSha(this.sha, { keys, arguments: args });
    } catch (error) {
      // After a Redis restart the script cache is empty: send the source once, then the SHA works again.
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return client.eval(this.source, { keys, arguments: args });
    }
  }
}

/** Thrown by reserve() for a list element that is not a job; the caller acknowledges it to drop it. */
export class MalformedJobError extends Error {
  constructor(
    readonly payload: string,
    reason: string,
  ) {
    super(`malformed job payload (${reason}): ${payload.slice(0, 200)}`);
    this.name = 'MalformedJobError';
  }
}

/**
 * The design's reliable queue: a job moves atomically from pending to the worker's own processing
 * list (BLMOVE) and leaves it only when acknowledged after its results are committed. Jobs of
 * workers whose heartbeat expired are moved back to pending by a Lua script.
 *
 * Blocking reads hold their connection, so reserve() uses `blockingClient`, which must be a
 * dedicated connection (e.g. `client.duplicate()`); everything else uses `client`.
 */
export class ReliableQueue {
  readonly keys: QueueKeys;
  private readonly scripts = {
    heartbeat: new LuaScript('heartbeat-2.lua'),
    reclaim: new LuaScript('reclaim-1.lua'),
    release: new LuaScript('release-3.lua'),
  };

  constructor(
    private readonly client: RedisClient,
    private readonly blockingClient: RedisClient,
    prefix: string,
  ) {
    this.keys = queueKeys(prefix);
  }

  /** Loads the scripts into Redis's cache up front, so a wrong Redis version fails at start-up. */
  async load(): Promise<void> {
    for (const script of Object.values(this.scripts)) await this.client.scriptLoad(script.source);
  }

  async publish(jobs: DetectionJob[]): Promise<void> {
    if (jobs.length === 0) return;
    await this.client.lPush(this.keys.pending, jobs.map((job) => JSON.stringify(job)));
  }

  /**
   * Waits up to timeoutSeconds for a job and moves it to this worker's processing list.
   * Throws MalformedJobError (with the payload, still held) for an element that is not a job.
   */
  async reserve(workerId: string, timeoutSeconds: number): Promise<ReservedJob | null> {
    const payload = await this.blockingClient.blMove(this.keys.pending, this.keys.processing(workerId), 'RIGHT', 'LEFT', timeoutSeconds);
    if (payload === null) return null;
    const parsed = parseJob(payload);
    if (!parsed.ok) throw new MalformedJobError(payload, parsed.reason);
    return { job: parsed.job, payload };
  }

  /** Removes exactly this job from the worker's processing list. Call only after its results are committed. */
  async ack(workerId: string, reserved: Pick<ReservedJob, 'payload'>): Promise<void> {
    await this.client.lRem(this.keys.processing(workerId), 1, reserved.payload);
  }

  async heartbeat(workerId: string, ttlMs: number): Promise<void> {
    await this.scripts.heartbeat.run(this.client, [this.keys.workers, this.keys.heartbeat(workerId)], [workerId, String(Math.ceil(ttlMs))]);
  }

  /** Moves jobs held by workers whose heartbeat expired back to pending; returns how many. */
  async reclaimOrphanedJobs(): Promise<number> {
    return Number(await this.scripts.reclaim.run(this.client, [this.keys.pending], [this.keys.workers, this.keys.processingPrefix, this.keys.heartbeatPrefix]));
  }

  /** Graceful shutdown: hands the worker's held jobs back to pending and unregisters it. */
  async releaseWorker(workerId: string): Promise<number> {
    return Number(
      await this.scripts.release.run(this.client, [this.keys.pending, this.keys.processing(workerId), this.keys.workers], [workerId, this.keys.heartbeat(workerId)]),
    );
  }

  async counts(): Promise<{ pending: number; processing: number }> {
    const workers = await this.client.sMembers(this.keys.workers);
    const [pending, ...held] = await Promise.all([this.client.lLen(this.keys.pending), ...workers.map((id) => this.client.lLen(this.keys.processing(id)))]);
    return { pending: pending ?? 0, processing: held.reduce((sum, n) => sum + n, 0) };
  }
}
