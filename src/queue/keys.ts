import { JOB_KINDS, type JobKind } from './types.ts';

/** Every Redis key of the queue; nothing else builds key strings (Lua scripts receive them in KEYS). */
export interface QueueKeys {
  /**
   * Jobs waiting for a worker, one list per job kind so a worker that does not take a kind never pops
   * its jobs; LPUSH in, BLMOVE out from the right (FIFO).
   */
  readonly pending: Readonly<Record<JobKind, string>>;
  /** The single pending list of versions before job kinds (detection jobs only); workers move it to pending.detect. */
  readonly legacyPending: string;
  /**
   * Set of video ids whose extraction job is queued or held: publishing one a second time (the upload
   * endpoint and the sweep for uploads that died before publishing) finds it here and adds nothing.
   */
  readonly extractionsEnqueued: string;
  /** Jobs that failed MAX_ATTEMPTS times, newest first, with their last error (see DeadLetter). */
  readonly deadLetters: string;
  /** Set of worker ids that may hold jobs; reclaimers check each one's heartbeat. */
  readonly workers: string;
  /** Jobs a worker holds until their results are committed (all kinds it takes, in one list). */
  processing(workerId: string): string;
  /** Present while the worker is alive (refreshed with a TTL). */
  heartbeat(workerId: string): string;
  /** SCAN MATCH pattern of every worker's processing list, registered or not. */
  readonly processingPattern: string;
  /** The worker id of a processing list's key; null for any other key. */
  workerOfProcessing(key: string): string | null;
}

export function queueKeys(prefix: string): QueueKeys {
  if (prefix === '') throw new Error('queue key prefix must not be empty');
  const base = `${prefix}:queue`;
  return Object.freeze({
    pending: Object.freeze(Object.fromEntries(JOB_KINDS.map((kind) => [kind, `${base}:pending:${kind}`])) as Record<JobKind, string>),
    legacyPending: `${base}:pending`,
    extractionsEnqueued: `${base}:extractions`,
    workers: `${base}:workers`,
    deadLetters: `${base}:dead`,
    processing: (workerId: string) => `${base}:processing:${workerId}`,
    heartbeat: (workerId: string) => `${base}:heartbeat:${workerId}`,
    // The prefix is the operator's: its glob characters must match themselves.
    processingPattern: `${base.replace(/[*?[\]\\]/g, '\\$&')}:processing:*`,
    workerOfProcessing: (key: string) => (key.startsWith(`${base}:processing:`) ? key.slice(`${base}:processing:`.length) || null : null),
  });
}
