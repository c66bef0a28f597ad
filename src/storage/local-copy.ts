import { createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { VideoStorage } from './video-storage.ts';

/**
 * Runs `use` on a local file holding the stored object, for ffmpeg. A storage without local files (S3)
 * has the object downloaded into a private temporary directory under `workDir`, deleted afterwards
 * whatever happens. Each step downloads its own copy: steps may run much later (or on other hosts),
 * so no copy outlives one step.
 */
export async function withLocalCopy<T>(
  storage: Pick<VideoStorage, 'localPath' | 'createReadStream'>,
  key: string,
  workDir: string | undefined,
  use: (file: string) => Promise<T>,
): Promise<T> {
  const local = storage.localPath(key);
  if (local !== undefined) return use(local);
  const dir = await fs.mkdtemp(path.join(workDir ?? os.tmpdir(), 'vidsense-source-'));
  try {
    const file = path.join(dir, 'source');
    await pipeline(await storage.createReadStream(key), createWriteStream(file, { flags: 'wx' }));
    return await use(file);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}
