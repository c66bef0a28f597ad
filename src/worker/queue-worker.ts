import { randomUUID } from 'node:crypto';
import os from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from '../logger.ts';
import { MalformedJobError } from '../queue/reliable-queue.ts';
import { jobKind, type JobKind, type QueueJob, type ReservedJob } from '../queue/types.ts';
import { errorMessage } from '../errors/error-message.ts';
import { isTransientError } from '../errors/transient-error.ts';
import { handlerFor, type HandlerRegistry, type JobHandler } from './job-handlers.ts';

/** Reclaim passes per SCAN sweep for unregistered processing lists (a minute at the default 5 s interval). */
const UNREGISTERED_SWEEP_EVERY = 12;

/** One blocking reserve at a time: each lane of a worker has one of its own. */
export interface LaneQueue {
  reserve(workerId: string, kind: JobKind, timeoutSeconds: number): Promise<ReservedJob | null>;
}

export interface WorkerQueue extends LaneQueue {
  /** Another LaneQueue with its own blocking connection, closed by closeLane(). */
  openLane(): Promise<LaneQueue & { closeLane(): Promise<void> }>;
  /** Moves jobs left on the single pending list of versions before job kinds; returns how many. */
  adoptLegacyPending(): Promise<number>;
  ack(workerId: string, reserved: Pick<ReservedJob, 'payload' | 'shard'>): Promise<void>;
  heartbeat(workerId: string, ttlMs: number): Promise<void>;
  reclaimOrphanedJobs(): Promise<number>;
  /** Reclaims processing lists of unregistered dead workers (a SCAN; run rarely). */
  reclaimUnregisteredJobs(): Promise<number>;
  /** Returns how many held jobs went back to pending. */
  releaseWorker(workerId: string): Promise<number>;
  deadLetter(workerId: string, reserved: Pick<ReservedJob, 'payload' | 'job' | 'shard'>, error: string, attempts: number): Promise<boolean>;
}

export interface WorkerSettings {
  heartbeatTtlMs: number;
  reclaimIntervalMs: number;
  /** Failed deliveries of a job (errors and worker deaths) before it is dead-lettered. */
  maxAttempts: number;
  /** First retry delay; doubles each attempt up to retryMaxMs, with jitter. */
  retryBaseMs: number;
  retryMaxMs: number;
  /**
   * How long one blocking reserve waits before the loop checks whether it should stop. Capped at
   * half the heartbeat TTL (see reserveAndPrepare).
   */
  reserveTimeoutSeconds?: number;
}

interface Reserved {
  reserved: ReservedJob;
  handler: JobHandler;
  prepared: Promise<unknown>;
}

/**
 * The consume loop of the reliable queue, for every job kind: WORKER_ROLES picks the kinds, the
 * registry their handlers. Each kind has its lanes (a handler's concurrency), each lane a blocking
 * connection that moves jobs from that kind's pending list into this worker's one processing list. A
 * job leaves that list only after its handler has committed its results. One heartbeat covers every
 * held job, however long its handler runs (an extraction takes minutes). A prefetching handler (detect)
 * has its next job reserved and prepared while the current one runs, so decoding overlaps inference.
 */
export class QueueWorker {
  readonly id = `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  private running = false;
  private loop: Promise<void> | undefined;
  private lanes: Array<LaneQueue & { closeLane?(): Promise<void> }> = [];
  private timers: NodeJS.Timeout[] = [];
  /** Aborted by stop(): wakes the loop from a backoff sleep. */
  private stopping = new AbortController();

  constructor(
    private readonly queue: WorkerQueue,
    private readonly handlers: HandlerRegistry,
    /** The job kinds this worker takes (WORKER_ROLES); each needs a handler in the registry. */
    private readonly roles: readonly JobKind[],
    private readonly settings: WorkerSettings,
    private readonly logger: Logger,
  ) {
    if (roles.length === 0) throw new Error('a worker needs at least one role');
    for (const kind of roles) if (!handlerFor(handlers, kind)) throw new Error(`no handler for ${kind} jobs`);
  }

  private get served(): JobHandler[] {
    return this.roles.map((kind) => handlerFor(this.handlers, kind)!);
  }

  /** True from start() until stop(): the worker is taking jobs. */
  get isRunning(): boolean {
    return this.running;
  }

  async start(): Promise<void> {
    this.running = true;
    this.stopping = new AbortController();
    await this.queue.heartbeat(this.id, this.settings.heartbeatTtlMs);
    // Jobs held by workers that died come back before this one starts taking new work.
    const reclaimed = (await this.queue.reclaimOrphanedJobs()) + (await this.queue.reclaimUnregisteredJobs());
    if (reclaimed > 0) this.logger.warn('reclaimed jobs from dead workers', { reclaimed });
    const adopted = await this.queue.adoptLegacyPending();
    if (adopted > 0) this.logger.info('moved detection jobs from the pending list of an earlier version', { adopted });
    await this.sweep();
    this.every(Math.max(100, Math.floor(this.settings.heartbeatTtlMs / 3)), () => this.queue.heartbeat(this.id, this.settings.heartbeatTtlMs));
    let passes = 0;
    this.every(this.settings.reclaimIntervalMs, async () => {
      // The SCAN-based sweep catches what the workers set cannot lead to; it costs a keyspace walk, so only every few passes.
      passes += 1;
      const count = (await this.queue.reclaimOrphanedJobs()) + (passes % UNREGISTERED_SWEEP_EVERY === 0 ? await this.queue.reclaimUnregisteredJobs() : 0);
      if (count > 0) this.logger.warn('reclaimed jobs from dead workers', { reclaimed: count });
      if (passes % UNREGISTERED_SWEEP_EVERY === 0) await this.sweep();
    });
    // The first lane of all uses the queue's own blocking connection; every other lane opens one.
    const kinds = this.served.flatMap((handler) => Array.from({ length: handler.concurrency }, () => handler));
    this.lanes = [this.queue];
    try {
      for (let i = 1; i < kinds.length; i += 1) this.lanes.push(await this.queue.openLane());
    } catch (error) {
      await this.closeLanes();
      throw error;
    }
    this.logger.info('worker started', { workerId: this.id, roles: this.roles, lanes: kinds.length });
    this.loop = Promise.all(kinds.map((handler, i) => this.run(this.lanes[i]!, handler))).then(() => undefined);
  }

  private async sweep(): Promise<void> {
    for (const handler of this.served) await handler.sweep?.();
  }

  private async closeLanes(): Promise<void> {
    await Promise.all(this.lanes.map((lane) => lane.closeLane?.()));
    this.lanes = [];
  }

  /**
   * Stops taking jobs, finishes the one on the detector and returns any other held job (prefetched,
   * waiting out a backoff, or an extraction, which stops) to the queue.
   */
  async stop(): Promise<void> {
    this.running = false;
    this.stopping.abort();
    // Heartbeats go on until the loop has ended: the job in hand must not be reclaimed meanwhile.
    await this.loop;
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    await this.closeLanes();
    const handedBack = await this.queue.releaseWorker(this.id);
    this.logger.info('worker stopped', { workerId: this.id, handedBack });
  }

  private every(ms: number, task: () => Promise<unknown>): void {
    const timer = setInterval(() => {
      task().catch((error: unknown) => this.logger.warn('periodic queue task failed', { error: errorMessage(error) }));
    }, ms);
    timer.unref();
    this.timers.push(timer);
  }

  /** One lane: reserve a job of the handler's kind, run it, repeat (the next reserved early when it prefetches). */
  private async run(lane: LaneQueue, handler: JobHandler): Promise<void> {
    let next = this.reserveAndPrepare(lane, handler);
    while (this.running) {
      const current = await next;
      if (!this.running) break; // a prefetched job stays in our processing list; releaseWorker returns it
      if (handler.prefetch) next = this.reserveAndPrepare(lane, handler);
      if (current) await this.complete(current);
      if (!handler.prefetch) next = this.reserveAndPrepare(lane, handler);
    }
    await next.catch(() => undefined);
  }

  private async reserveAndPrepare(lane: LaneQueue, handler: JobHandler): Promise<Reserved | undefined> {
    if (!this.running) return undefined;
    try {
      // Register again first: a reclaimer may have unregistered this worker while it was stalled, and
      // a job moved into the list of an unregistered worker is never reclaimed if it then dies. The
      // blocking wait stays under the TTL, so the job cannot arrive after this heartbeat expired.
      await this.queue.heartbeat(this.id, this.settings.heartbeatTtlMs);
      const reserved = await lane.reserve(this.id, handler.kind, this.reserveTimeoutSeconds());
      if (!reserved) return undefined;
      const prepared = handler.prepare(reserved.job);
      prepared.catch(() => undefined); // handled in complete(); avoid an unhandled rejection meanwhile
      return { reserved, handler, prepared };
    } catch (error) {
      if (error instanceof MalformedJobError) {
        // Not a job we could ever run: log it and drop it rather than let it block the list.
        this.logger.error('dropping a malformed job', { error: error.message });
        await this.queue.ack(this.id, { payload: error.payload, shard: error.shard }).catch(() => undefined);
        return undefined;
      }
      this.logger.warn('reserving a job failed; retrying', { error: errorMessage(error) });
      await this.sleep(1000);
      return undefined;
    }
  }

  /**
   * Runs one job to a commit. An unreachable PostgreSQL or Redis is not the job's fault: the job is
   * held and retried until the service returns, without counting. Any other failure (a frame that
   * cannot be read, a detector error) counts as an attempt; after maxAttempts the job is dead-lettered
   * and its handler records the failure (a detect job's frames as failed, so the rest of the video still
   * completes; an extract job's video as failed).
   */
  private async complete({ reserved, handler, prepared }: Reserved): Promise<void> {
    const { job } = reserved;
    let attempts = job.attempts ?? 0;
    if (attempts >= this.settings.maxAttempts) {
      await prepared.catch(() => undefined);
      await this.giveUp(reserved, handler, attempts, `workers died ${attempts} times while holding it`);
      return;
    }
    let current = prepared;
    for (let outage = 0; ; ) {
      try {
        const started = performance.now();
        await handler.run(await current, { signal: this.stopping.signal });
        await this.queue.ack(this.id, reserved);
        this.logger.debug('job done', { jobId: job.id, kind: jobKind(job), ms: Math.round(performance.now() - started) });
        return;
      } catch (error) {
        // Shutting down: the job stays in our processing list and releaseWorker hands it back.
        if (!this.running) return;
        let delay: number;
        if (isTransientError(error)) {
          outage += 1;
          delay = this.backoff(outage);
          this.logger.warn('backing service unavailable; holding the job and retrying', { jobId: job.id, delayMs: delay, error: errorMessage(error) });
        } else {
          attempts += 1;
          if (attempts >= this.settings.maxAttempts) {
            await this.giveUp(reserved, handler, attempts, errorMessage(error));
            return;
          }
          delay = this.backoff(attempts);
          this.logger.warn('job failed; retrying', { jobId: job.id, attempts, delayMs: delay, error: errorMessage(error) });
        }
        await this.sleep(delay);
        // Stopped during the backoff: the job stays in our processing list and releaseWorker hands it back.
        if (!this.running) return;
        current = handler.prepare(job);
        current.catch(() => undefined);
      }
    }
  }

  /** Exponential backoff with equal jitter: half the delay fixed, half random, so retries spread out. */
  private backoff(attempt: number): number {
    const delay = Math.min(this.settings.retryMaxMs, this.settings.retryBaseMs * 2 ** (attempt - 1));
    return Math.round(delay / 2 + Math.random() * (delay / 2));
  }

  /**
   * Records the job's failure (failed frames, or a failed video), then moves it to the dead letters. While PostgreSQL or Redis
   * is unreachable the job is held and this is retried with backoff, as in an outage during a commit:
   * dead-lettering without the failed frames would leave the video 'processing' for good. Never
   * throws (run() must not reject); on stop the job stays held and releaseWorker hands it back.
   */
  private async giveUp(reserved: ReservedJob, handler: JobHandler, attempts: number, lastError: string): Promise<void> {
    const { job } = reserved;
    const reason = `dead-lettered after ${attempts} attempts: ${lastError}`;
    for (let outage = 1; this.running; outage += 1) {
      try {
        // Failed frames first: if we die before the move below, the job is reclaimed and nothing is lost.
        if (!(await handler.recordFailure(job, reason))) {
          // Its video was deleted or cancelled meanwhile: no dead letter, which nobody would retry.
          await this.queue.ack(this.id, reserved);
          this.logger.info('job of a stopped video acknowledged instead of dead-lettered', { jobId: job.id, videoId: job.videoId });
          return;
        }
      } catch (error) {
        if (isTransientError(error)) {
          await this.holdThroughOutage(job, outage, 'recording the failed frames', error);
          continue;
        }
        // Not an outage, so a retry here would fail the same way; the dead letter's retry can record them.
        this.logger.error('could not record the failed frames; the video stays incomplete until the dead letter is retried', { jobId: job.id, error: errorMessage(error) });
      }
      try {
        await this.queue.deadLetter(this.id, reserved, lastError, attempts);
        this.logger.error('job dead-lettered', { jobId: job.id, videoId: job.videoId, attempts, error: lastError });
        return;
      } catch (error) {
        // Whatever Redis said, the job is still held: keep it and try again (recording again is idempotent).
        await this.holdThroughOutage(job, outage, 'moving it to the dead letters', error);
      }
    }
  }

  private async holdThroughOutage(job: QueueJob, outage: number, step: string, error: unknown): Promise<void> {
    const delayMs = this.backoff(outage);
    this.logger.warn(`dead-lettering a job failed at ${step}; holding the job and retrying`, { jobId: job.id, delayMs, error: errorMessage(error) });
    await this.sleep(delayMs);
  }

  /** Milliseconds of backoff that stop() cuts short. */
  private sleep(ms: number): Promise<void> {
    return delay(ms, undefined, { signal: this.stopping.signal }).catch(() => undefined);
  }

  /** Under half the TTL: a job BLMOVEd at the end of the wait still finds this worker's heartbeat alive. */
  private reserveTimeoutSeconds(): number {
    return Math.min(this.settings.reserveTimeoutSeconds ?? 1, this.settings.heartbeatTtlMs / 2000);
  }
}
