import { queueKeys, type QueueKeys } from './keys.ts';
import { LuaScript, type RedisClient } from './lua-script.ts';
import { parseJob } from './parse-job.ts';
import { extractionJob, JOB_KINDS, jobKind, type DeadLetter, type JobKind, type QueueJob, type ReservedJob } from './types.ts';

export type { RedisClient } from './lua-script.ts';

/** Thrown by reserve() for a list element that is not a job; the caller acknowledges it to drop it. */
export class MalformedJobError extends Error {
  constructor(
    readonly payload: string,
    readonly reason: string,
  ) {
    super(`malformed job payload (${reason}): ${payload.slice(0, 200)}`);
    this.name = 'MalformedJobError';
  }
}

/**
 * The reliable-queue pattern: a job moves atomically from pending to the worker's own processing
 * list (BLMOVE) and leaves it only when acknowledged, after its results are committed. Jobs held by
 * workers whose heartbeat expired go back to the front of their kind's pending list (reclaimOrphanedJobs), so
 * delivery is at least once; consumers must commit idempotently.
 *
 * Wiring: BLMOVE holds its connection until a job arrives or the timeout passes, and anything else
 * sent on that connection waits behind it. So reserve() uses `blockingClient`, which must be a
 * connection of its own (`client.duplicate()`, connected) used by one reserve() at a time; every
 * other command goes through `client`, which may be shared. A process that never calls reserve()
 * (the API) may pass `client` twice.
 */
export class ReliableQueue {
  readonly keys: QueueKeys;
  private readonly prefix: string;
  private readonly scripts = {
    heartbeat: new LuaScript('heartbeat-2.lua'),
    reclaim: new LuaScript('reclaim-5.lua'),
    release: new LuaScript('release-5.lua'),
    enqueueOnce: new LuaScript('enqueue-once-2.lua'),
    deadLetter: new LuaScript('dead-letter-2.lua'),
    requeueDeadLetter: new LuaScript('requeue-dead-letter-2.lua'),
    discardVideoJobs: new LuaScript('discard-video-jobs-5.lua'),
  };

  constructor(
    private readonly client: RedisClient,
    private readonly blockingClient: RedisClient,
    prefix: string,
  ) {
    this.prefix = prefix;
    this.keys = queueKeys(prefix);
  }

  /** Loads the scripts into Redis's cache up front, so an unusable Redis fails at start-up. */
  async load(): Promise<void> {
    await Promise.all(Object.values(this.scripts).map((script) => script.load(this.client)));
  }

  /** Another handle on this queue with a blocking connection of its own, for one more concurrent reserve(). */
  async openLane(): Promise<ReliableQueue & { closeLane(): Promise<void> }> {
    const blocking = this.blockingClient.duplicate();
    blocking.on('error', () => {}); // the shared connections report outages; reserve() reports this one's failures
    await blocking.connect();
    return Object.assign(new ReliableQueue(this.client, blocking, this.prefix), {
      closeLane: async () => void (await blocking.quit().catch(() => undefined)),
    });
  }

  /** Enqueues jobs, each on its kind's pending list; of one kind they are reserved in the order given. */
  async publish(jobs: QueueJob[]): Promise<void> {
    for (const kind of JOB_KINDS) {
      const ofKind = jobs.filter((job) => jobKind(job) === kind);
      // LPUSH of several values pushes each to the left in turn; consumers take from the right.
      if (ofKind.length > 0) await this.client.lPush(this.keys.pending[kind], ofKind.map((job) => JSON.stringify(job)));
    }
  }

  /**
   * Queues the extraction of an accepted video unless it is already queued or held (the upload and the
   * sweep for videos whose upload died before publishing may both ask). True when this call queued it.
   */
  async enqueueExtraction(videoId: string): Promise<boolean> {
    const queued = await this.scripts.enqueueOnce.run(this.client, [this.keys.extractionsEnqueued, this.keys.pending.extract], [videoId, JSON.stringify(extractionJob(videoId))]);
    return Number(queued) === 1;
  }

  /** Of these videos, those whose extraction job is queued or held. */
  async extractionsEnqueued(videoIds: string[]): Promise<Set<string>> {
    if (videoIds.length === 0) return new Set();
    const flags = await this.client.smIsMember(this.keys.extractionsEnqueued, videoIds);
    return new Set(videoIds.filter((_, i) => Boolean(flags[i])));
  }

  /** The extraction job of this video is over (before its ack): a later enqueueExtraction queues one again. */
  async extractionFinished(videoId: string): Promise<void> {
    await this.client.sRem(this.keys.extractionsEnqueued, videoId);
  }

  /**
   * Moves detection jobs from the pending list of versions before job kinds onto pending.detect, to the
   * consuming end in their order, so an upgrade loses none. Returns how many moved.
   */
  async adoptLegacyPending(): Promise<number> {
    let moved = 0;
    while ((await this.client.lMove(this.keys.legacyPending, this.keys.pending.detect, 'LEFT', 'RIGHT')) !== null) moved += 1;
    return moved;
  }

  /**
   * Waits up to timeoutSeconds (fractions allowed; 0 waits forever) for a job and moves it to this
   * worker's processing list. Returns null on timeout. For an element that is not a valid job it
   * throws MalformedJobError carrying the payload, which stays in the processing list until the
   * caller acks it: the worker logs and drops it instead of crashing or losing it silently.
   */
  async reserve(workerId: string, kind: JobKind, timeoutSeconds: number): Promise<ReservedJob | null> {
    const payload = await this.blockingClient.blMove(this.keys.pending[kind], this.keys.processing(workerId), 'RIGHT', 'LEFT', timeoutSeconds);
    if (payload === null) return null;
    const parsed = parseJob(payload);
    if (!parsed.ok) throw new MalformedJobError(payload, parsed.reason);
    if (jobKind(parsed.job) !== kind) throw new MalformedJobError(payload, `a ${jobKind(parsed.job)} job on the ${kind} list`);
    return { job: parsed.job, payload };
  }

  /**
   * Removes a video's jobs of every kind from pending and from the dead letters in one atomic step (it was
   * cancelled or deleted); returns how many. Jobs workers hold are left to them: they acknowledge those without writing.
   */
  async discardVideoJobs(videoId: string): Promise<number> {
    const keys = [this.keys.pending.extract, this.keys.pending.detect, this.keys.legacyPending, this.keys.deadLetters, this.keys.extractionsEnqueued];
    return Number(await this.scripts.discardVideoJobs.run(this.client, keys, [videoId]));
  }

  /** Removes exactly this job (one element) from the worker's processing list. Call only after its results are committed. */
  async ack(workerId: string, reserved: Pick<ReservedJob, 'payload'>): Promise<void> {
    await this.client.lRem(this.keys.processing(workerId), 1, reserved.payload);
  }

  /**
   * Registers the worker and keeps it alive for ttlMs. Call it before the first reserve() and then
   * well within ttlMs (e.g. every ttlMs / 3): a worker that misses its TTL has its jobs reclaimed.
   */
  async heartbeat(workerId: string, ttlMs: number): Promise<void> {
    const ttl = String(Math.max(1, Math.ceil(ttlMs)));
    await this.scripts.heartbeat.run(this.client, [this.keys.workers, this.keys.heartbeat(workerId)], [workerId, ttl]);
  }

  /**
   * Moves the jobs held by registered workers whose heartbeat expired back to the front of pending
   * and unregisters those workers; returns how many jobs moved. Safe to run from many processes at
   * once: each worker is reclaimed by one atomic script, so no job is moved twice or lost.
   */
  async reclaimOrphanedJobs(): Promise<number> {
    const workers = await this.client.sMembers(this.keys.workers);
    // Issued together, node-redis pipelines these into one round trip.
    const moved = await Promise.all(workers.map((workerId) => this.scripts.reclaim.run(this.client, this.workerKeys(workerId), [workerId, 'registered'])));
    return moved.reduce<number>((sum, n) => sum + Number(n), 0);
  }

  /**
   * The safety net under reclaimOrphanedJobs, which only looks at registered workers: finds every
   * processing list by SCAN and reclaims those whose worker is unregistered and has no live
   * heartbeat. Such a list arises when a worker stalls past its TTL between a heartbeat and its
   * next BLMOVE (a reclaimer unregisters it, then the BLMOVE lands) and dies before re-registering.
   * SCAN walks the whole keyspace, so callers run this rarely (at start-up and about once a minute).
   */
  async reclaimUnregisteredJobs(): Promise<number> {
    const workers = new Set(await this.client.sMembers(this.keys.workers));
    let moved = 0;
    for await (const batch of this.client.scanIterator({ MATCH: this.keys.processingPattern, COUNT: 500 })) {
      for (const key of [batch].flat()) {
        const workerId = this.keys.workerOfProcessing(key);
        // Registered workers are reclaimOrphanedJobs' to judge; the script re-checks atomically anyway.
        if (workerId === null || workers.has(workerId)) continue;
        moved += Number(await this.scripts.reclaim.run(this.client, this.workerKeys(workerId), [workerId, 'unregistered']));
      }
    }
    return moved;
  }

  /** Graceful shutdown: hands the worker's held jobs back to the front of pending and unregisters it. Returns how many. */
  async releaseWorker(workerId: string): Promise<number> {
    return Number(await this.scripts.release.run(this.client, this.workerKeys(workerId), [workerId]));
  }

  /**
   * Gives up on a held job: it moves to the dead-letter list with its last error, atomically.
   * Returns false when the job was no longer held (reclaimed meanwhile), in which case nothing moved.
   */
  async deadLetter(workerId: string, reserved: Pick<ReservedJob, 'payload' | 'job'>, error: string, attempts: number): Promise<boolean> {
    const entry: DeadLetter = { job: { ...reserved.job, attempts }, error, attempts, failedAt: new Date().toISOString() };
    const moved = await this.scripts.deadLetter.run(this.client, [this.keys.processing(workerId), this.keys.deadLetters], [reserved.payload, JSON.stringify(entry)]);
    return Number(moved) === 1;
  }

  /** Dead letters, newest first. */
  async listDeadLetters(offset = 0, limit = 100): Promise<{ total: number; items: DeadLetter[] }> {
    const [total, raw] = await Promise.all([this.client.lLen(this.keys.deadLetters), this.client.lRange(this.keys.deadLetters, offset, offset + limit - 1)]);
    return { total, items: raw.map((entry) => JSON.parse(entry) as DeadLetter) };
  }

  /** Queues a dead-lettered job again, next in line, with its attempts reset. False when no such job is dead-lettered. */
  retryDeadLetter(jobId: string): Promise<boolean> {
    return this.takeDeadLetter(jobId, (entry) => JSON.stringify({ ...entry.job, attempts: 0, publishedAt: Date.now() }));
  }

  /** Drops a dead letter for good. False when no such job is dead-lettered. */
  discardDeadLetter(jobId: string): Promise<boolean> {
    return this.takeDeadLetter(jobId, () => '');
  }

  private async takeDeadLetter(jobId: string, nextPayload: (entry: DeadLetter) => string): Promise<boolean> {
    // Find the exact element, then remove it atomically; if another admin took it meanwhile, LREM finds nothing.
    for (const raw of await this.client.lRange(this.keys.deadLetters, 0, -1)) {
      const entry = JSON.parse(raw) as DeadLetter;
      if (entry.job.id !== jobId) continue;
      const taken = await this.scripts.requeueDeadLetter.run(this.client, [this.keys.deadLetters, this.keys.pending[jobKind(entry.job)]], [raw, nextPayload(entry)]);
      return Number(taken) === 1;
    }
    return false;
  }

  /** Jobs waiting (of every kind, and per kind), and jobs held by registered workers. */
  async counts(): Promise<{ pending: number; pendingByKind: Record<JobKind, number>; processing: number }> {
    const workers = await this.client.sMembers(this.keys.workers);
    const [extract, detect, ...held] = await Promise.all([
      this.client.lLen(this.keys.pending.extract),
      this.client.lLen(this.keys.pending.detect),
      ...workers.map((id) => this.client.lLen(this.keys.processing(id))),
    ]);
    return { pending: extract + detect, pendingByKind: { extract, detect }, processing: held.reduce((sum, n) => sum + n, 0) };
  }

  /** KEYS of reclaim-5.lua and release-5.lua, in their order. */
  private workerKeys(workerId: string): string[] {
    return [this.keys.workers, this.keys.heartbeat(workerId), this.keys.processing(workerId), this.keys.pending.extract, this.keys.pending.detect];
  }
}
