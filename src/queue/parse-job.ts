import type { QueueJob } from './types.ts';

/** Validates a job read from Redis: anything else in the list must not crash a worker. */
export function parseJob(payload: string): { ok: true; job: QueueJob } | { ok: false; reason: string } {
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  if (typeof value !== 'object' || value === null) return { ok: false, reason: 'not an object' };
  const job = value as Record<string, unknown>;
  if (typeof job.id !== 'string' || typeof job.videoId !== 'string') return { ok: false, reason: 'missing id or videoId' };
  if (job.publishedAt !== undefined && typeof job.publishedAt !== 'number') return { ok: false, reason: 'bad publishedAt' };
  if (job.attempts !== undefined && !(Number.isInteger(job.attempts) && (job.attempts as number) >= 0)) return { ok: false, reason: 'bad attempts' };
  if (job.kind === 'extract') return { ok: true, job: job as unknown as QueueJob };
  // No kind: a detection job published before job kinds existed.
  if (job.kind !== undefined && job.kind !== 'detect') return { ok: false, reason: 'unknown kind' };
  if (!Array.isArray(job.frames) || job.frames.length === 0) return { ok: false, reason: 'no frames' };
  for (const frame of job.frames as unknown[]) {
    const f = frame as Record<string, unknown> | null;
    if (!f || !Number.isInteger(f.index) || (f.index as number) < 0 || typeof f.ptsMs !== 'number' || typeof f.key !== 'string') {
      return { ok: false, reason: 'bad frame entry' };
    }
  }
  return { ok: true, job: job as unknown as QueueJob };
}
