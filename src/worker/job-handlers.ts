import { errorMessage } from '../errors/error-message.ts';
import type { Logger } from '../logger.ts';
import type { DetectionJob, ExtractionJob, JobKind, QueueJob } from '../queue/types.ts';
import type { DetectionService, PreparedJob } from '../services/detection.service.ts';
import type { ExtractionService } from '../services/extraction.service.ts';

/** What a handler gets besides its job. */
export interface JobContext {
  /** Aborted when the worker stops: a long job may give up (the job is handed back and resumes elsewhere). */
  signal: AbortSignal;
}

/**
 * How a worker runs one kind of job. The queue worker owns delivery (reserve, heartbeats, retries with
 * backoff, dead letters, acks); a handler only does the work, and must be safe to run again on a job
 * that was partly done (delivery is at least once).
 */
export interface JobHandler<J extends QueueJob = QueueJob, P = unknown> {
  readonly kind: JobKind;
  /** Jobs of this kind one worker runs at once (each on a blocking connection of its own). */
  readonly concurrency: number;
  /** Reserve and prepare the next job while this one runs (detect: decoding overlaps inference). */
  readonly prefetch: boolean;
  /** Work that can start before the previous job of this lane is done. */
  prepare(job: J): Promise<P>;
  /** Runs the job to its commit; throws to retry (transient errors do not count as attempts). */
  run(prepared: P, context: JobContext): Promise<void>;
  /**
   * The job is to be dead-lettered: record its failure where users see it (failed frames, a failed video).
   * False when its video was cancelled or deleted: the job is acknowledged instead, as nobody wants it.
   */
  recordFailure(job: J, reason: string): Promise<boolean>;
  /** Now and then, and at start: finds work that should be queued and is not. Returns how many jobs it queued. */
  sweep?(): Promise<number>;
}

/** The job type of each kind. */
export interface JobOfKind {
  extract: ExtractionJob;
  detect: DetectionJob;
}

/**
 * The one place a job kind meets its code: at most one handler per kind, typed for that kind's jobs. A
 * process registers the kinds it can run (an extract-only worker has no detector, so no detect handler).
 */
export type HandlerRegistry = { readonly [K in JobKind]?: JobHandler<JobOfKind[K]> };

/** The registry's handler for a kind, or undefined when this process has none. */
export function handlerFor(registry: HandlerRegistry, kind: JobKind): JobHandler | undefined {
  const handler = registry[kind] as JobHandler | undefined;
  if (handler && handler.kind !== kind) throw new Error(`the ${kind} entry of the registry handles ${handler.kind} jobs`);
  return handler;
}

/**
 * Detection: read and decode a batch of frames, detect, commit; `lanes` jobs at once when the detector runs
 * that many sessions (DetectorPool), one per lane.
 */
export function detectHandler(detection: DetectionService, settings: { heartbeatTtlMs: number; lanes?: number }, logger: Pick<Logger, 'warn'>): JobHandler<DetectionJob, PreparedJob> {
  const lanes = settings.lanes ?? 1;
  return {
    kind: 'detect',
    concurrency: lanes,
    // One lane prefetches so decoding overlaps its inference; with several, one lane decodes while the others
    // infer (measured on 2 cores: prefetching as well changed nothing but the memory held).
    prefetch: lanes === 1,
    prepare: (job) => detection.prepare(job),
    async run(prepared) {
      const { detectMs } = await detection.detectAndCommit(prepared);
      if (detectMs > settings.heartbeatTtlMs / 2) {
        // A synchronous engine blocks heartbeats while it runs: past the TTL, this live worker's jobs get reclaimed.
        logger.warn('a detector run took over half the heartbeat TTL; raise HEARTBEAT_TTL_MS or lower BATCH_SIZE', {
          jobId: prepared.job.id,
          frames: prepared.job.frames.length,
          detectMs: Math.round(detectMs),
          heartbeatTtlMs: settings.heartbeatTtlMs,
        });
      }
    },
    recordFailure: (job, reason) => detection.recordFailedJob(job, reason),
  };
}

/**
 * Extraction: ffmpeg decodes the upload and the frames are stored and published as detection jobs.
 * It takes minutes, so it is never prefetched (a held job waits for nobody else), and the worker's
 * heartbeat keeps running beside it. sweep() queues extractions of uploads whose API died before publishing.
 */
export function extractHandler(extraction: ExtractionService, settings: { concurrency: number; sweepGraceMs: number }, logger: Pick<Logger, 'warn'>): JobHandler<ExtractionJob, ExtractionJob> {
  return {
    kind: 'extract',
    concurrency: settings.concurrency,
    prefetch: false,
    prepare: async (job) => job,
    run: (job, { signal }) => extraction.run(job, signal),
    recordFailure: (job, reason) => extraction.recordFailedJob(job, reason),
    async sweep() {
      try {
        return await extraction.sweepUnqueued(settings.sweepGraceMs);
      } catch (error) {
        logger.warn('the sweep for unqueued extractions failed', { error: errorMessage(error) });
        return 0;
      }
    },
  };
}
