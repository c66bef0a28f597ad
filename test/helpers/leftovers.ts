/** What a refused or failed upload may have left behind: files in storage, jobs in Redis, rows in PostgreSQL. */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { createClient } from 'redis';
import type { Sql } from '../../src/db/client.ts';

/** Every file under a storage directory, as paths relative to it (partial files of writes in progress included). */
export async function storedFiles(storageDir: string): Promise<string[]> {
  const entries = await fs.readdir(storageDir, { recursive: true, withFileTypes: true }).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return [];
    throw error;
  });
  return entries.filter((entry) => entry.isFile()).map((entry) => path.relative(storageDir, path.join(entry.parentPath, entry.name))).sort();
}

/** Entries of every Redis list under the prefix (pending, processing, dead letters...). */
export async function queuedItems(redis: ReturnType<typeof createClient>, prefix: string): Promise<number> {
  let items = 0;
  for await (const batch of redis.scanIterator({ MATCH: `${prefix}:*`, COUNT: 500 })) {
    for (const key of batch) if ((await redis.type(key)) === 'list') items += await redis.lLen(key);
  }
  return items;
}

export async function videoRows(sql: Sql): Promise<number> {
  const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM videos`;
  return row!.n;
}

export interface Deployment {
  storageDir: string;
  redis: ReturnType<typeof createClient>;
  prefix: string;
  sql: Sql;
}

/** Nothing in storage, no queued item in Redis, no videos row. */
export async function leftovers(deployment: Deployment): Promise<{ files: string[]; queued: number; videos: number }> {
  return {
    files: await storedFiles(deployment.storageDir),
    queued: await queuedItems(deployment.redis, deployment.prefix),
    videos: await videoRows(deployment.sql),
  };
}

export const NOTHING_LEFT = { files: [], queued: 0, videos: 0 };
