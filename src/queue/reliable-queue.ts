import { keySlot, queueKeys, queueLayout, type QueueKeys, type QueueLayout } from './keys.ts';
import { LuaScript } from './lua-script.ts';
import { parseJob } from './parse-job.ts';
import { forEachPrimary, isCluster, primaryOf, refreshTopology, withFailover, type QueueRedis } from './redis-connection.ts';
import { extractionJob, jobKind, type DeadLetter, type JobKind, type QueueJob, type ReservedJob } from './types.ts';

export type { QueueRedis, RedisClient } from './redis-connection.ts';

/** Thrown by reserve() for a list element that is not a job; the caller acknowledges it (with its shard) to drop it. */
export class MalformedJobError extends Error {
  constructor(
    readonly payload: string,
    readonly reason: string,
    readonly shard = 0,
  ) {
    super(`malformed job payload (${reason}): ${payload.slice(0, 200)}`);
    this.name = 'MalformedJobError';
  }
}

/** A publish that fewer replicas than QUEUE_WAIT_REPLICAS acknowledged in time: it is queued, but a failover could lose it. */
export class PublishNotReplicatedError extends Error {
  constructor(
    readonly wanted: number,
    readonly acknowledged: number,
  ) {
    super(`publish acknowledged by ${acknowledged} of ${wanted} replicas (QUEUE_WAIT_REPLICAS) in time; a failover could lose it`);
    this.name = 'PublishNotReplicatedError';
  }
}

export interface QueueOptions {
  /** QUEUE_SHARDS (default 1): must be the same for every process on this prefix (load() checks). */
  shards?: number;
  /** QUEUE_WAIT_REPLICAS (default 0): replicas that must have each publish before publish() returns. */
  waitReplicas?: number;
  waitTimeoutMs?: number;
  /** QUEUE_FAILOVER_TIMEOUT_MS: how long commands retry through a cluster failover. */
  failoverTimeoutMs?: number;
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
 * (the API) may pass `client` twice. On a Redis Cluster both are node-redis cluster clients
 * (`blockingClient` = `client.duplicate()`, which has connections of its own to every node).
 *
 * Shards (QUEUE_SHARDS): the keys are split into shards, each in one cluster slot (keys.ts). A video's
 * jobs all go to the shard of its id; a job never leaves its shard (processing lists, dead letters and
 * reclaims are per shard), so every script and BLMOVE touches one slot. A worker consumes from every
 * shard in turn (see reserve), registers and heartbeats in each, and holds one processing list per shard.
 */
export class ReliableQueue {
  /** Shard 0's keys: all of them when the queue has one shard. */
  readonly keys: QueueKeys;
  readonly layout: QueueLayout;
  private readonly waitReplicas: number;
  private readonly waitTimeoutMs: number;
  private readonly failoverTimeoutMs: number;
  private readonly options: QueueOptions;
  /** Where the next reserve() starts looking; it moves on past each shard served, so shards take turns. */
  private cursor: number;
  /** Payloads this process holds, per worker and shard (see adoptUnheld); shared with the lanes opened from this queue. */
  private held = new Map<string, Map<string, number>>();
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
    private readonly client: QueueRedis,
    private readonly blockingClient: QueueRedis,
    private readonly prefix: string,
    options: QueueOptions = {},
  ) {
    this.options = options;
    this.layout = queueLayout(prefix, { shards: options.shards ?? 1, cluster: isCluster(client) });
    this.keys = this.layout.shards[0]!;
    this.waitReplicas = options.waitReplicas ?? 0;
    this.waitTimeoutMs = options.waitTimeoutMs ?? 2_000;
    this.failoverTimeoutMs = options.failoverTimeoutMs ?? 30_000;
    // Idle workers start on different shards, so between them they wait on all of them.
    this.cursor = Math.floor(Math.random() * this.layout.shards.length);
  }

  private get shards(): readonly QueueKeys[] {
    return this.layout.shards;
  }

  /**
   * Loads the scripts into Redis's cache up front (every primary of a cluster), so an unusable Redis
   * fails at start-up, and checks the shard count (checkShardCount).
   */
  async load(): Promise<void> {
    await forEachPrimary(this.client, (node) => Promise.all(Object.values(this.scripts).map((script) => script.load(node))));
    await this.checkShardCount();
  }

  /**
   * Every process must split the queue the same way: with another QUEUE_SHARDS a video's jobs would be
   * looked for in the wrong shard, and jobs in shards beyond the count never consumed. The first process
   * stores its count (SET NX); a process with another count refuses to start. A sharded queue also
   * refuses to start over jobs still waiting in the unsharded (one-shard, one-Redis) keys.
   */
  async checkShardCount(): Promise<void> {
    const wanted = String(this.shards.length);
    const stored = await withFailover(this.client, this.failoverTimeoutMs, async () => {
      const existing = await this.client.get(this.layout.shardCountKey);
      if (existing !== null) return existing;
      const unsharded = queueKeys(this.prefix);
      if (unsharded.pending.detect !== this.keys.pending.detect) {
        for (const list of [...Object.values(unsharded.pending), unsharded.legacyPending]) {
          if ((await this.client.lLen(list)) > 0) throw new Error(`QUEUE_SHARDS=${wanted}: jobs of an unsharded queue are still waiting in ${list}; drain them with the previous settings first`);
        }
      }
      await this.client.set(this.layout.shardCountKey, wanted, { NX: true });
      return (await this.client.get(this.layout.shardCountKey)) ?? wanted;
    });
    if (stored !== wanted) {
      throw new Error(`QUEUE_SHARDS=${wanted}, but this queue (${this.layout.shardCountKey}) was created with ${stored} shards; every process must use the same count`);
    }
  }

  /**
   * Enqueues jobs, each in the shard of its video, one LPUSH a shard; within a shard they are reserved
   * in the order given. With QUEUE_WAIT_REPLICAS it then waits (WAIT) until that many replicas of each
   * shard's primary have the jobs, so a failover cannot lose them; without enough replicas within
   * QUEUE_FAILOVER_TIMEOUT_MS it throws PublishNotReplicatedError (the jobs are queued, not guaranteed).
   */
  async publish(jobs: QueueJob[]): Promise<void> {
    if (jobs.length === 0) return;
    // One list per shard and kind; of one kind (and video) jobs are reserved in the order given.
    const lists = new Map<string, string[]>();
    for (const job of jobs) {
      const pending = this.shards[this.layout.shardOfVideo(job.videoId)]!.pending[jobKind(job)];
      lists.set(pending, [...(lists.get(pending) ?? []), JSON.stringify(job)]);
    }
    await Promise.all(
      [...lists].map(async ([pending, payloads]) => {
        // LPUSH of several values pushes each to the left in turn; consumers take from the right.
        await withFailover(this.client, this.failoverTimeoutMs, () => this.client.lPush(pending, payloads));
        if (this.waitReplicas > 0) await this.waitForReplicas(pending);
      }),
    );
  }

  /** Another handle on this queue with a blocking connection of its own, for one more concurrent reserve(). */
  async openLane(): Promise<ReliableQueue & { closeLane(): Promise<void> }> {
    const blocking = this.blockingClient.duplicate();
    blocking.on('error', () => {}); // the shared connections report outages; reserve() reports this one's failures
    await blocking.connect();
    const lane = new ReliableQueue(this.client, blocking, this.prefix, this.options);
    // Lanes of one worker share its processing lists: a lane must not adopt a job another lane holds.
    lane.held = this.held;
    return Object.assign(lane, {
      closeLane: async () => void (await blocking.close().catch(() => undefined)),
    });
  }

  /**
   * Queues the extraction of an accepted video unless it is already queued or held (the upload and the
   * sweep for videos whose upload died before publishing may both ask). True when this call queued it.
   * Set and list are the video's shard's (one slot); with QUEUE_WAIT_REPLICAS it waits as publish does.
   */
  async enqueueExtraction(videoId: string): Promise<boolean> {
    const keys = this.shards[this.layout.shardOfVideo(videoId)]!;
    const queued = await withFailover(this.client, this.failoverTimeoutMs, () =>
      this.scripts.enqueueOnce.run(this.client, [keys.extractionsEnqueued, keys.pending.extract], [videoId, JSON.stringify(extractionJob(videoId))]),
    );
    if (this.waitReplicas > 0) await this.waitForReplicas(keys.pending.extract);
    return Number(queued) === 1;
  }

  /** Of these videos, those whose extraction job is queued or held. */
  async extractionsEnqueued(videoIds: string[]): Promise<Set<string>> {
    if (videoIds.length === 0) return new Set();
    const byShard = new Map<number, string[]>();
    for (const id of videoIds) {
      const shard = this.layout.shardOfVideo(id);
      byShard.set(shard, [...(byShard.get(shard) ?? []), id]);
    }
    const found = new Set<string>();
    await Promise.all(
      [...byShard].map(async ([shard, ids]) => {
        const flags = await withFailover(this.client, this.failoverTimeoutMs, () => this.client.smIsMember(this.shards[shard]!.extractionsEnqueued, ids));
        ids.forEach((id, i) => flags[i] && found.add(id));
      }),
    );
    return found;
  }

  /** The extraction job of this video is over (before its ack): a later enqueueExtraction queues one again. */
  async extractionFinished(videoId: string): Promise<void> {
    const keys = this.shards[this.layout.shardOfVideo(videoId)]!;
    await withFailover(this.client, this.failoverTimeoutMs, () => this.client.sRem(keys.extractionsEnqueued, videoId));
  }

  /** The pending list of versions before job kinds exists only in the untagged layout: one shard on one Redis. */
  private get hasLegacyPending(): boolean {
    return this.shards.length === 1 && !isCluster(this.client);
  }

  /**
   * Moves detection jobs from the pending list of versions before job kinds onto pending.detect, to the
   * consuming end in their order, so an upgrade loses none. Returns how many moved. Only the one-shard,
   * one-Redis layout had that list (a sharded queue refuses to start over it, see checkShardCount).
   */
  async adoptLegacyPending(): Promise<number> {
    if (!this.hasLegacyPending) return 0;
    let moved = 0;
    while ((await this.client.lMove(this.keys.legacyPending, this.keys.pending.detect, 'LEFT', 'RIGHT')) !== null) moved += 1;
    return moved;
  }

  /**
   * WAIT on the connection that wrote to `key`'s primary: it returns once that many replicas have
   * every write made on that connection so far (this LPUSH included). A primary without enough replicas
   * (one died, or was just promoted and has none yet) is waited for until the failover timeout.
   */
  private async waitForReplicas(key: string): Promise<void> {
    const deadline = Date.now() + this.failoverTimeoutMs;
    const args = ['WAIT', String(this.waitReplicas), String(this.waitTimeoutMs)];
    for (;;) {
      const acknowledged = Number(
        await withFailover(this.client, this.failoverTimeoutMs, () =>
          isCluster(this.client) ? this.client.sendCommand(key, false, args) : this.client.sendCommand(args),
        ),
      );
      if (acknowledged >= this.waitReplicas) return;
      if (Date.now() >= deadline) throw new PublishNotReplicatedError(this.waitReplicas, acknowledged);
    }
  }

  /**
   * Waits up to timeoutSeconds (fractions allowed; 0 waits forever) for a job and moves it to this
   * worker's processing list. Returns null on timeout. For an element that is not a valid job it
   * throws MalformedJobError carrying the payload, which stays in the processing list until the
   * caller acks it: the worker logs and drops it instead of crashing or losing it silently.
   */
  async reserve(workerId: string, kind: JobKind, timeoutSeconds: number): Promise<ReservedJob | null> {
    const taken = await this.take(workerId, kind, timeoutSeconds);
    if (taken === null) return null;
    const { shard, payload } = taken;
    this.hold(workerId, shard, payload, 1);
    const parsed = parseJob(payload);
    if (!parsed.ok) throw new MalformedJobError(payload, parsed.reason, shard);
    if (jobKind(parsed.job) !== kind) throw new MalformedJobError(payload, `a ${jobKind(parsed.job)} job on the ${kind} list`, shard);
    return { job: parsed.job, payload, shard };
  }

  /**
   * Removes a video's jobs of every kind from pending and from the dead letters of its shard in one atomic
   * step (it was cancelled or deleted); returns how many. Jobs workers hold are left to them: they
   * acknowledge those without writing.
   */
  async discardVideoJobs(videoId: string): Promise<number> {
    const keys = this.shards[this.layout.shardOfVideo(videoId)]!;
    // Without the legacy list (a tagged shard) the detect list goes in its place: a second pass that finds
    // nothing, and every key stays in the shard's slot.
    const legacy = this.hasLegacyPending ? keys.legacyPending : keys.pending.detect;
    const scriptKeys = [keys.pending.extract, keys.pending.detect, legacy, keys.deadLetters, keys.extractionsEnqueued];
    return Number(await withFailover(this.client, this.failoverTimeoutMs, () => this.scripts.discardVideoJobs.run(this.client, scriptKeys, [videoId])));
  }

  /**
   * One shard: BLMOVE for the whole timeout. Several: one non-blocking LMOVE a shard, starting at the
   * cursor, then (all empty) a blocking BLMOVE on one shard at a time for a short slice each, in turn,
   * until the timeout. A BLMOVE can wait on one list only, so a job published to another shard waits at
   * most (shards - 1) slices for this worker; idle workers start on different shards. After a shard
   * serves a job the cursor moves past it: under load every shard is served in turn.
   */
  private async take(workerId: string, kind: JobKind, timeoutSeconds: number): Promise<{ shard: number; payload: string } | null> {
    const count = this.shards.length;
    if (count === 1) return this.takeFrom(workerId, kind, 0, timeoutSeconds);
    for (let i = 0; i < count; i += 1) {
      const shard = (this.cursor + i) % count;
      const keys = this.shards[shard]!;
      const payload = await this.guardTake(workerId, shard, () => this.blockingClient.lMove(keys.pending[kind], keys.processing(workerId), 'RIGHT', 'LEFT'));
      if (payload !== null) {
        this.cursor = (shard + 1) % count;
        return { shard, payload };
      }
    }
    const sliceMs = Math.min(100, Math.max(20, Math.floor(300 / count)));
    const deadline = timeoutSeconds === 0 ? Infinity : Date.now() + timeoutSeconds * 1000;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) return null;
      const shard = this.cursor;
      this.cursor = (shard + 1) % count;
      const taken = await this.takeFrom(workerId, kind, shard, Math.min(sliceMs, left) / 1000);
      if (taken !== null) return taken;
    }
  }

  private async takeFrom(workerId: string, kind: JobKind, shard: number, timeoutSeconds: number): Promise<{ shard: number; payload: string } | null> {
    const keys = this.shards[shard]!;
    const payload = await this.guardTake(workerId, shard, () => this.blockingClient.blMove(keys.pending[kind], keys.processing(workerId), 'RIGHT', 'LEFT', timeoutSeconds));
    return payload === null ? null : { shard, payload };
  }

  /**
   * A move whose reply is lost (the connection or the primary died mid-command) may still have happened:
   * the job then sits in this worker's processing list, where no reclaimer looks while the worker lives.
   * So after such a failure the worker adopts whatever its list holds that it does not know of.
   */
  private async guardTake(workerId: string, shard: number, move: () => Promise<string | null>): Promise<string | null> {
    try {
      return await move();
    } catch (error) {
      await refreshTopology(this.blockingClient).catch(() => undefined);
      const adopted = await this.adoptUnheld(workerId, shard).catch(() => null);
      if (adopted !== null) return adopted;
      throw error;
    }
  }

  /** An element of the worker's processing list (in this shard) that this process does not hold; null when none. */
  private async adoptUnheld(workerId: string, shard: number): Promise<string | null> {
    const keys = this.shards[shard]!;
    const list = await withFailover(this.client, this.failoverTimeoutMs, () => this.client.lRange(keys.processing(workerId), 0, -1));
    const known = new Map(this.held.get(`${workerId}\0${shard}`) ?? []);
    for (const payload of list) {
      const count = known.get(payload) ?? 0;
      if (count > 0) known.set(payload, count - 1);
      else return payload;
    }
    return null;
  }

  private hold(workerId: string, shard: number, payload: string, delta: 1 | -1): void {
    const key = `${workerId}\0${shard}`;
    const payloads = this.held.get(key) ?? new Map<string, number>();
    const count = (payloads.get(payload) ?? 0) + delta;
    if (count > 0) payloads.set(payload, count);
    else payloads.delete(payload);
    if (payloads.size > 0) this.held.set(key, payloads);
    else this.held.delete(key);
  }

  /** The shard a reserved job came from: as reserve() said, else its video's. */
  private shardOf(reserved: { shard?: number; job?: Pick<QueueJob, 'videoId'> }): number {
    if (reserved.shard !== undefined) return reserved.shard;
    if (reserved.job) return this.layout.shardOfVideo(reserved.job.videoId);
    if (this.shards.length === 1) return 0;
    throw new Error('ack of a job without its shard on a sharded queue');
  }

  /** Removes exactly this job (one element) from the worker's processing list. Call only after its results are committed. */
  async ack(workerId: string, reserved: Pick<ReservedJob, 'payload'> & { shard?: number; job?: Pick<QueueJob, 'videoId'> }): Promise<void> {
    const shard = this.shardOf(reserved);
    // No WAIT: an ack lost in a failover only brings the job back (reclaimed, run again, committed idempotently).
    await withFailover(this.client, this.failoverTimeoutMs, () => this.client.lRem(this.shards[shard]!.processing(workerId), 1, reserved.payload));
    this.hold(workerId, shard, reserved.payload, -1);
  }

  /**
   * Registers the worker and keeps it alive for ttlMs, in every shard. Call it before the first reserve()
   * and then well within ttlMs (e.g. every ttlMs / 3): a worker that misses its TTL has its jobs reclaimed.
   */
  async heartbeat(workerId: string, ttlMs: number): Promise<void> {
    const ttl = String(Math.max(1, Math.ceil(ttlMs)));
    await Promise.all(
      this.shards.map((keys) =>
        withFailover(this.client, this.failoverTimeoutMs, () => this.scripts.heartbeat.run(this.client, [keys.workers, keys.heartbeat(workerId)], [workerId, ttl])),
      ),
    );
  }

  /**
   * Moves the jobs held by registered workers whose heartbeat expired back to the front of pending
   * and unregisters those workers; returns how many jobs moved. Safe to run from many processes at
   * once: each worker is reclaimed by one atomic script, so no job is moved twice or lost.
   */
  async reclaimOrphanedJobs(): Promise<number> {
    const moved = await Promise.all(
      this.shards.map((keys) =>
        withFailover(this.client, this.failoverTimeoutMs, async () => {
          const workers = await this.client.sMembers(keys.workers);
          // Issued together, node-redis pipelines these into one round trip.
          const counts = await Promise.all(workers.map((workerId) => this.scripts.reclaim.run(this.client, this.workerKeys(keys, workerId), [workerId, 'registered'])));
          return counts.reduce<number>((sum, n) => sum + Number(n), 0);
        }),
      ),
    );
    return moved.reduce((sum, n) => sum + n, 0);
  }

  /**
   * The safety net under reclaimOrphanedJobs, which only looks at registered workers: finds every
   * processing list by SCAN and reclaims those whose worker is unregistered and has no live
   * heartbeat. Such a list arises when a worker stalls past its TTL between a heartbeat and its
   * next BLMOVE (a reclaimer unregisters it, then the BLMOVE lands) and dies before re-registering.
   * SCAN walks the whole keyspace, so callers run this rarely (at start-up and about once a minute).
   */
  async reclaimUnregisteredJobs(): Promise<number> {
    let moved = 0;
    for (const keys of this.shards) {
      moved += await withFailover(this.client, this.failoverTimeoutMs, async () => {
        const workers = new Set(await this.client.sMembers(keys.workers));
        // On a cluster the shard's keys all live on the primary serving its slot: SCAN there.
        const node = await primaryOf(this.client, keySlot(keys.workers));
        let count = 0;
        for await (const batch of node.scanIterator({ MATCH: keys.processingPattern, COUNT: 500 })) {
          for (const key of [batch].flat()) {
            const workerId = keys.workerOfProcessing(key);
            // Registered workers are reclaimOrphanedJobs' to judge; the script re-checks atomically anyway.
            if (workerId === null || workers.has(workerId)) continue;
            count += Number(await this.scripts.reclaim.run(this.client, this.workerKeys(keys, workerId), [workerId, 'unregistered']));
          }
        }
        return count;
      });
    }
    return moved;
  }

  /** Graceful shutdown: hands the worker's held jobs back to the front of pending (in every shard) and unregisters it. Returns how many. */
  async releaseWorker(workerId: string): Promise<number> {
    const moved = await Promise.all(
      this.shards.map(async (keys) => {
        const count = Number(await withFailover(this.client, this.failoverTimeoutMs, () => this.scripts.release.run(this.client, this.workerKeys(keys, workerId), [workerId])));
        this.held.delete(`${workerId}\0${keys.shard}`);
        return count;
      }),
    );
    return moved.reduce((sum, n) => sum + n, 0);
  }

  /**
   * Gives up on a held job: it moves to the dead-letter list with its last error, atomically.
   * Returns false when the job was no longer held (reclaimed meanwhile), in which case nothing moved.
   */
  async deadLetter(workerId: string, reserved: Pick<ReservedJob, 'payload' | 'job' | 'shard'>, error: string, attempts: number): Promise<boolean> {
    const keys = this.shards[this.shardOf(reserved)]!;
    const entry: DeadLetter = { job: { ...reserved.job, attempts }, error, attempts, failedAt: new Date().toISOString() };
    const moved = await withFailover(this.client, this.failoverTimeoutMs, () =>
      this.scripts.deadLetter.run(this.client, [keys.processing(workerId), keys.deadLetters], [reserved.payload, JSON.stringify(entry)]),
    );
    this.hold(workerId, keys.shard, reserved.payload, -1);
    return Number(moved) === 1;
  }

  /**
   * Dead letters, newest first. Each shard keeps its own list; with several, all are read and merged by
   * failure time (dead letters are few: each is a job that failed MAX_ATTEMPTS times).
   */
  async listDeadLetters(offset = 0, limit = 100): Promise<{ total: number; items: DeadLetter[] }> {
    if (this.shards.length === 1) {
      const [total, raw] = await Promise.all([this.client.lLen(this.keys.deadLetters), this.client.lRange(this.keys.deadLetters, offset, offset + limit - 1)]);
      return { total, items: raw.map((entry) => JSON.parse(entry) as DeadLetter) };
    }
    const lists = await Promise.all(this.shards.map((keys) => withFailover(this.client, this.failoverTimeoutMs, () => this.client.lRange(keys.deadLetters, 0, -1))));
    const all = lists.flat().map((entry) => JSON.parse(entry) as DeadLetter);
    all.sort((a, b) => b.failedAt.localeCompare(a.failedAt));
    return { total: all.length, items: all.slice(offset, offset + limit) };
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
    // It goes back to the pending list of its own shard (the shard of its video, as when it was published).
    for (const keys of this.shards) {
      for (const raw of await this.client.lRange(keys.deadLetters, 0, -1)) {
        const entry = JSON.parse(raw) as DeadLetter;
        if (entry.job.id !== jobId) continue;
        const taken = await this.scripts.requeueDeadLetter.run(this.client, [keys.deadLetters, keys.pending[jobKind(entry.job)]], [raw, nextPayload(entry)]);
        return Number(taken) === 1;
      }
    }
    return false;
  }

  /** Jobs waiting (of every kind, and per kind), and jobs held by registered workers, over every shard. */
  async counts(): Promise<{ pending: number; pendingByKind: Record<JobKind, number>; processing: number }> {
    const perShard = await Promise.all(
      this.shards.map(async (keys) => {
        const workers = await this.client.sMembers(keys.workers);
        const [extract, detect, ...held] = await Promise.all([
          this.client.lLen(keys.pending.extract),
          this.client.lLen(keys.pending.detect),
          ...workers.map((id) => this.client.lLen(keys.processing(id))),
        ]);
        return { extract, detect, processing: held.reduce((sum, n) => sum + n, 0) };
      }),
    );
    const extract = perShard.reduce((sum, n) => sum + n.extract, 0);
    const detect = perShard.reduce((sum, n) => sum + n.detect, 0);
    return { pending: extract + detect, pendingByKind: { extract, detect }, processing: perShard.reduce((sum, n) => sum + n.processing, 0) };
  }

  /** KEYS of reclaim-5.lua and release-5.lua, in their order: all in one shard, so one slot. */
  private workerKeys(keys: QueueKeys, workerId: string): string[] {
    return [keys.workers, keys.heartbeat(workerId), keys.processing(workerId), keys.pending.extract, keys.pending.detect];
  }
}
