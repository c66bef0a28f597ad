import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { assertByteRange, assertSafeKey, StorageKeyError, type ByteRange, type VideoStorage } from './video-storage.ts';

/** VideoStorage on a local directory (a Docker shared volume in deployment). */
export class LocalStorage implements VideoStorage {
  readonly driver = 'local';
  private readonly root: string;

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  async writeStream(key: string, data: Readable): Promise<{ bytes: number }> {
    const target = this.resolve(key);
    await fs.mkdir(path.dirname(target), { recursive: true });
    // Write to a temporary name and rename, so readers never see a partial object.
    const partial = `${target}.partial-${process.pid}-${Date.now()}`;
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
    const partial = `${target}.partial-${process.pid}-${Date.now()}`;
    try {
      await fs.writeFile(partial, data);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      await fs.mkdir(path.dirname(target), { recursive: true });
      await fs.writeFile(partial, data);
    }
    await fs.rename(partial, target);
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
    await fs.rm(this.resolve(prefix), { recursive: true, force: true });
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

  private resolve(key: string): string {
    assertSafeKey(key);
    const resolved = path.resolve(this.root, key);
    // Belt and braces: assertSafeKey already refuses '..', but a symlinked root must not be escaped either.
    if (!resolved.startsWith(this.root + path.sep)) throw new StorageKeyError(key);
    return resolved;
  }
}
