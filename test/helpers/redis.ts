import { randomBytes } from 'node:crypto';
import type { createClient } from 'redis';

/** A key prefix no other test run uses. */
export function uniquePrefix(): string {
  return `vidsense-test-${process.pid}-${randomBytes(4).toString('hex')}`;
}

export async function deleteKeys(client: ReturnType<typeof createClient>, prefix: string): Promise<void> {
  const keys: string[] = [];
  for await (const batch of client.scanIterator({ MATCH: `${prefix}:*`, COUNT: 500 })) keys.push(...batch);
  if (keys.length > 0) await client.unlink(keys);
}
