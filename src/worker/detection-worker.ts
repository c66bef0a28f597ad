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
}

export interface WorkerSettings {
  heartbeatTtlMs: number;
  reclaimIntervalMs: number;
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

  private async complete({ reserved, prepared }: Reserved): Promise<void> {
    const { job } = reserved;
    for (let attempt = 1; ; attempt += 1) {
      try {
        const started = performance.now();
        const added = await this.detection.detectAndCommit(await (attempt === 1 ? prepared : this.detection.prepare(job)));
        await this.queue.ack(this.id, reserved);
        this.logger.debug('job committed', { jobId: job.id, frames: job.frames.length, added, ms: Math.round(performance.now() - started) });
        return;
      } catch (error) {
        if (isTransientError(error) && this.running) {
          // The job stays in our processing list while we wait, so a crash now loses nothing.
          const delay = Math.min(30_000, 250 * 2 ** Math.min(attempt, 7));
          this.logger.warn('transient failure; retrying job', { jobId: job.id, attempt, delayMs: delay, error: errorMessage(error) });
          await sleep(delay);
          continue;
        }
        if (isTransientError(error)) return; // shutting down: releaseWorker puts the job back
        // A permanent failure (unreadable frame, bad data) would fail again on every delivery:
        // record it on the video and drop the job rather than loop forever.
        this.logger.error('job failed permanently', { jobId: job.id, videoId: job.videoId, error: errorMessage(error) });
        await this.detection.failVideo(job.videoId, `detection failed on frames ${job.frames[0]?.index}..${job.frames.at(-1)?.index}: ${errorMessage(error)}`);
        await this.queue.ack(this.id, reserved);
        return;
      }
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
