import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type { Logger } from '../logger.ts';
import { MalformedJobError } from '../queue/reliable-queue.ts';
import type { ReservedJob } from '../queue/types.ts';
import type { DetectionService, PreparedJob } from '../services/detection.service.ts';
import { errorMessage } from '../services/ingest.service.ts';
import { isTransientError } from './transient-error.ts';

export interface WorkerQueue {
  reserve(workerId: string, timeoutSeconds: number): Promise<ReservedJob | null>;
  ack(workerId: string, reserved: Pick<ReservedJob, 'payload'>): Promise<void>;
  heartbeat(workerId: string, ttlMs: number): Promise<void>;
  reclaimOrphanedJobs(): Promise<number>;
  releaseWorker(workerId: string): Promise<unknown>;
  deadLetter(workerId: string, reserved: Pick<ReservedJob, 'payload' | 'job'>, error: string, attempts: number): Promise<boolean>;
}

export interface WorkerSettings {
  heartbeatTtlMs: number;
  reclaimIntervalMs: number;
  /** Failed deliveries of a job (errors and worker deaths) before it is dead-lettered. */
  maxAttempts: number;
  /** First retry delay; doubles each attempt up to retryMaxMs, with jitter. */
  retryBaseMs: number;
  retryMaxMs: number;
  /** How long one blocking reserve waits before the loop checks whether it should stop. */
  reserveTimeoutSeconds?: number;
}

interface Reserved {
  reserved: ReservedJob;
  prepared: Promise<PreparedJob>;
}

/**
 * The consume loop of the reliable queue. A job leaves this worker's processing list only after its
 * detections are committed. While one job is on the detector the next is reserved and prepared, so
 * reading and decoding overlap inference.
 */
export class DetectionWorker {
  readonly id = `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  private running = false;
  private loop: Promise<void> | undefined;
  private timers: NodeJS.Timeout[] = [];

  constructor(
    private readonly queue: WorkerQueue,
    private readonly detection: DetectionService,
    private readonly settings: WorkerSettings,
    private readonly logger: Logger,
  ) {}

  /** True from start() until stop(): the worker is taking jobs. */
  get isRunning(): boolean {
    return this.running;
  }

  async start(): Promise<void> {
    this.running = true;
    await this.queue.heartbeat(this.id, this.settings.heartbeatTtlMs);
    // Jobs held by workers that died come back before this one starts taking new work.
    const reclaimed = await this.queue.reclaimOrphanedJobs();
    if (reclaimed > 0) this.logger.warn('reclaimed jobs from dead workers', { reclaimed });
    this.every(Math.max(100, Math.floor(this.settings.heartbeatTtlMs / 3)), () => this.queue.heartbeat(this.id, this.settings.heartbeatTtlMs));
    this.every(this.settings.reclaimIntervalMs, async () => {
      const count = await this.queue.reclaimOrphanedJobs();
      if (count > 0) this.logger.warn('reclaimed jobs from dead workers', { reclaimed: count });
    });
    this.logger.info('worker started', { workerId: this.id });
    this.loop = this.run();
  }

  /** Stops taking jobs, finishes the one in hand and returns any prefetched job to the queue. */
  async stop(): Promise<void> {
    this.running = false;
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    await this.loop;
    await this.queue.releaseWorker(this.id);
    this.logger.info('worker stopped', { workerId: this.id, stageTimings: this.detection.timings });
  }

  private every(ms: number, task: () => Promise<unknown>): void {
    const timer = setInterval(() => {
      task().catch((error: unknown) => this.logger.warn('periodic queue task failed', { error: errorMessage(error) }));
    }, ms);
    timer.unref();
    this.timers.push(timer);
  }

  private async run(): Promise<void> {
    let next = this.reserveAndPrepare();
    while (this.running) {
      const current = await next;
      if (!this.running) break; // a prefetched job stays in our processing list; releaseWorker returns it
      next = this.reserveAndPrepare();
      if (current) await this.complete(current);
    }
    await next.catch(() => undefined);
  }

  private async reserveAndPrepare(): Promise<Reserved | undefined> {
    if (!this.running) return undefined;
    try {
      const reserved = await this.queue.reserve(this.id, this.settings.reserveTimeoutSeconds ?? 1);
      if (!reserved) return undefined;
      const prepared = this.detection.prepare(reserved.job);
      prepared.catch(() => undefined); // handled in complete(); avoid an unhandled rejection meanwhile
      return { reserved, prepared };
    } catch (error) {
      if (error instanceof MalformedJobError) {
        // Not a job we could ever run: log it and drop it rather than let it block the list.
        this.logger.error('dropping a malformed job', { error: error.message });
        await this.queue.ack(this.id, { payload: error.payload }).catch(() => undefined);
        return undefined;
      }
      this.logger.warn('reserving a job failed; retrying', { error: errorMessage(error) });
      await sleep(1000);
      return undefined;
    }
  }

  /**
   * Runs one job to a commit. An unreachable PostgreSQL or Redis is not the job's fault: the job is
   * held and retried until the service returns, without counting. Any other failure (a frame that
   * cannot be read, a detector error) counts as an attempt; after maxAttempts the job is dead-lettered
   * and its frames are recorded as failed, so the rest of the video still completes.
   */
  private async complete({ reserved, prepared }: Reserved): Promise<void> {
    const { job } = reserved;
    let attempts = job.attempts ?? 0;
    if (attempts >= this.settings.maxAttempts) {
      await prepared.catch(() => undefined);
      await this.giveUp(reserved, attempts, `workers died ${attempts} times while holding it`);
      return;
    }
    let current = prepared;
    for (let outage = 0; ; ) {
      try {
        const started = performance.now();
        const written = await this.detection.detectAndCommit(await current);
        await this.queue.ack(this.id, reserved);
        this.logger.debug('job committed', { jobId: job.id, frames: job.frames.length, written, ms: Math.round(performance.now() - started) });
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
            await this.giveUp(reserved, attempts, errorMessage(error));
            return;
          }
          delay = this.backoff(attempts);
          this.logger.warn('job failed; retrying', { jobId: job.id, attempts, delayMs: delay, error: errorMessage(error) });
        }
        await sleep(delay);
        current = this.detection.prepare(job);
        current.catch(() => undefined);
      }
    }
  }

  /** Exponential backoff with equal jitter: half the delay fixed, half random, so retries spread out. */
  private backoff(attempt: number): number {
    const delay = Math.min(this.settings.retryMaxMs, this.settings.retryBaseMs * 2 ** (attempt - 1));
    return Math.round(delay / 2 + Math.random() * (delay / 2));
  }

  private async giveUp(reserved: ReservedJob, attempts: number, lastError: string): Promise<void> {
    const { job } = reserved;
    const reason = `dead-lettered after ${attempts} attempts: ${lastError}`;
    this.logger.error('job dead-lettered', { jobId: job.id, videoId: job.videoId, attempts, error: lastError });
    try {
      // Failed frames first: if we die before the move below, the job is reclaimed and nothing is lost.
      await this.detection.recordFailedJob(job, reason);
    } catch (error) {
      this.logger.error('could not record the failed frames; the video stays incomplete until the dead letter is retried', { jobId: job.id, error: errorMessage(error) });
    }
    await this.queue.deadLetter(this.id, reserved, lastError, attempts);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
