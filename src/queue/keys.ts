/** Every Redis key of the queue; nothing else builds key strings (Lua scripts receive them in KEYS). */
export interface QueueKeys {
  /** Jobs waiting for a worker; LPUSH in, BLMOVE out from the right (FIFO). */
  readonly pending: string;
  /** Jobs that failed MAX_ATTEMPTS times, newest first, with their last error (see DeadLetter). */
  readonly deadLetters: string;
  /** Set of worker ids that may hold jobs; reclaimers check each one's heartbeat. */
  readonly workers: string;
  /** Jobs a worker holds until their results are committed. */
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
    pending: `${base}:pending`,
    workers: `${base}:workers`,
    deadLetters: `${base}:dead`,
    processing: (workerId: string) => `${base}:processing:${workerId}`,
    heartbeat: (workerId: string) => `${base}:heartbeat:${workerId}`,
    // The prefix is the operator's: its glob characters must match themselves.
    processingPattern: `${base.replace(/[*?[\]\\]/g, '\\$&')}:processing:*`,
    workerOfProcessing: (key: string) => (key.startsWith(`${base}:processing:`) ? key.slice(`${base}:processing:`.length) || null : null),
  });
}
