/** Every Redis key of the queue; nothing else builds key strings. */
export interface QueueKeys {
  /** Jobs waiting for a worker; LPUSH in, BLMOVE out from the right (FIFO). */
  pending: string;
  /** Set of worker ids that may hold jobs. */
  workers: string;
  /** Jobs a worker holds until their results are committed. */
  processing(workerId: string): string;
  /** Present while the worker is alive (refreshed with a TTL). */
  heartbeat(workerId: string): string;
  /** Prefix of processing lists and heartbeat keys; scripts add the worker id. */
  processingPrefix: string;
  heartbeatPrefix: string;
}

export function queueKeys(prefix: string): QueueKeys {
  const base = `${prefix}:queue`;
  return {
    pending: `${base}:pending`,
    workers: `${base}:workers`,
    processing: (workerId) => `${base}:processing:${workerId}`,
    heartbeat: (workerId) => `${base}:heartbeat:${workerId}`,
    processingPrefix: `${base}:processing:`,
    heartbeatPrefix: `${base}:heartbeat:`,
  };
}
