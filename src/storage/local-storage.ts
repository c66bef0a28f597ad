import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { assertByteRange, assertSafeKey, StorageKeyError, type ByteRange, type StorageSpace, type VideoStorage } from './video-storage.ts';

/** The temporary name of a write in progress: `<key>.partial-<pid>-<ms>`, renamed to the key when complete. */
const PARTIAL = /\.partial-\d+-\d+$/;

function partialName(target: string): string {
  return `${target}.partial-${process.pid}-${Date.now()}`;
}

/** VideoStorage on a local directory (a Docker shared volume in deployment). */
export class LocalStorage implements VideoStorage, StorageSpace {
  readonly driver = 'local';
  private readonly root: string;

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  async writeStream(key: string, data: Readable): Promise<{ bytes: number }> {
    const target = this.resolve(key);
    await fs.mkdir(path.dirname(target), { recursive: true });
    // Write to a temporary name and rename, so readers never see a partial object.
    const partial = partialName(target);
    let bytes = 0;
    const countBytes = async function* (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        bytes += chunk.length;
        yield chunk;
      }
    };
    try {
      await pipeline(data, countBytes, createWriteStream(partial, { flags: 'wx' }));
      await fs.rename(partial, target);
    } catch (error) {
      await fs.rm(partial, { force: true });
      throw error;
    }
    return { bytes };
  }

  async write(key: string, data: Buffer): Promise<void> {
    const target = this.resolve(key);
    const partial = partialName(target);
    try {
      try {
        await fs.writeFile(partial, data);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        await fs.mkdir(path.dirname(target), { recursive: true });
        await fs.writeFile(partial, data);
      }
      await fs.rename(partial, target);
    } catch (error) {
      // A full disk fails writeFile after it created the file: the part written must not stay.
      await fs.rm(partial, { force: true });
      throw error;
    }
  }

  async read(key: string): Promise<Buffer> {
    return fs.readFile(this.resolve(key));
  }

  async createReadStream(key: string, range?: ByteRange): Promise<Readable> {
    const file = this.resolve(key);
    if (range) assertByteRange(range);
    await fs.access(file);
    return createReadStream(file, range && { start: range.start, end: range.end });
  }

  async exists(key: string): Promise<boolean> {
    const file = this.resolve(key); // an unsafe key is refused, not reported missing
    try {
      await fs.access(file);
      return true;
    } catch {
      return false;
    }
  }

  async size(key: string): Promise<number | undefined> {
    const file = this.resolve(key);
    try {
      const stats = await fs.stat(file);
      return stats.isFile() ? stats.size : undefined;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  localPath(key: string): string {
    return this.resolve(key);
  }

  async delete(keys: string[]): Promise<void> {
    const files = keys.map((key) => this.resolve(key));
    // A few at a time: a job's frames, or a source video; rm with force ignores what is already gone.
    for (let start = 0; start < files.length; start += 64) {
      await Promise.all(files.slice(start, start + 64).map((file) => fs.rm(file, { force: true })));
    }
  }

  async deletePrefix(prefix: string): Promise<void> {
    // A process still writing into the directory (an extraction that has not seen its video deleted
    // yet) makes rm fail with ENOTEMPTY; it stops within a second, so rm tries again meanwhile.
    await fs.rm(this.resolve(prefix), { recursive: true, force: true, maxRetries: 8, retryDelay: 50 });
  }

  async list(prefix: string): Promise<string[]> {
    const base = this.resolve(prefix);
    const entries = await fs.readdir(base, { recursive: true, withFileTypes: true }).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return [];
      throw error;
    });
    return entries
      .filter((entry) => entry.isFile())
      .map((entry) => path.relative(this.root, path.join(entry.parentPath, entry.name)).split(path.sep).join('/'))
      .sort();
  }

  async freeBytes(): Promise<number> {
    // The root may not exist yet on a fresh machine: its nearest existing parent is on the same disk.
    let dir = this.root;
    for (;;) {
      try {
        const stats = await fs.statfs(dir);
        return stats.bavail * stats.bsize;
      } catch (error) {
        const parent = path.dirname(dir);
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || parent === dir) throw error;
        dir = parent;
      }
    }
  }

  async sweepStalePartials(olderThanMs: number): Promise<{ removed: number; young: number }> {
    const entries = await fs.readdir(this.root, { recursive: true, withFileTypes: true }).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return [];
      throw error;
    });
    let removed = 0;
    let young = 0;
    const now = Date.now();
    for (const entry of entries) {
      if (!entry.isFile() || !PARTIAL.test(entry.name)) continue;
      const file = path.join(entry.parentPath, entry.name);
      const stats = await fs.stat(file).catch(() => undefined);
      if (!stats) continue; // finished (renamed) or removed meanwhile
      if (now - stats.mtimeMs < olderThanMs) {
        young += 1;
        continue;
      }
      await fs.rm(file, { force: true });
      removed += 1;
    }
    return { removed, young };
  }

  private resolve(key: string): string {
    assertSafeKey(key);
    const resolved = path.resolve(this.root, key);
    // Belt and braces: assertSafeKey already refuses '..', but a symlinked root must not be escaped either.
    if (!resolved.startsWith(this.root + path.sep)) throw new StorageKeyError(key);
    return resolved;
  }
}
