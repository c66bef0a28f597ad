import type { RedisClient } from './lua-script.ts';

/** The Redis settings that decide whether an acknowledged publish survives a crash. */
export interface RedisDurability {
  appendonly: string;
  appendfsync: string;
  maxmemoryPolicy: string;
}

/**
 * What is wrong with these settings for a zero-loss queue: AOF must be on (else a restart loses every
 * queued job), and nothing may be evicted (an evicted job is a lost job). appendfsync everysec is
 * accepted, with its window of up to one second of acknowledged writes, and reported as a note.
 */
export function durabilityProblems(settings: RedisDurability): { problems: string[]; notes: string[] } {
  const problems: string[] = [];
  const notes: string[] = [];
  if (settings.appendonly !== 'yes') problems.push('appendonly is off: queued jobs are lost when Redis restarts (set appendonly yes)');
  if (settings.maxmemoryPolicy !== 'noeviction') problems.push(`maxmemory-policy is ${settings.maxmemoryPolicy}: Redis may evict queued jobs (set noeviction)`);
  if (settings.appendonly === 'yes' && settings.appendfsync === 'everysec') notes.push('appendfsync everysec: up to 1 s of acknowledged writes can be lost if the host crashes');
  if (settings.appendonly === 'yes' && settings.appendfsync === 'no') problems.push('appendfsync no: the OS decides when the AOF reaches disk (set always, or everysec)');
  return { problems, notes };
}

/** Reads the settings with CONFIG GET; undefined when the server refuses CONFIG (some managed services do). */
export async function readRedisDurability(client: RedisClient): Promise<RedisDurability | undefined> {
  try {
    const config = await client.configGet(['appendonly', 'appendfsync', 'maxmemory-policy']);
    return { appendonly: config.appendonly ?? 'unknown', appendfsync: config.appendfsync ?? 'unknown', maxmemoryPolicy: config['maxmemory-policy'] ?? 'unknown' };
  } catch {
    return undefined;
  }
}
