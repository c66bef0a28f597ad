import type { Readable } from 'node:stream';

/** Bytes start to end of an object, both inclusive (as HTTP ranges count them); end is below the object's size. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * Where uploads and frames live. Keys are '/'-separated relative paths chosen by the service
 * (e.g. "videos/<id>/source", "videos/<id>/frames/000042.jpg"); adapters must refuse keys that
 * would escape their root.
 */
export interface VideoStorage {
  readonly driver: string;
  /** Streams data into key; resolves with the byte count once it is durable. Partial writes are removed on failure. */
  writeStream(key: string, data: Readable): Promise<{ bytes: number }>;
  write(key: string, data: Buffer): Promise<void>;
  read(key: string): Promise<Buffer>;
  /** Streams the object, or only range's bytes of it; rejects when the key is not there. */
  createReadStream(key: string, range?: ByteRange): Promise<Readable>;
  exists(key: string): Promise<boolean>;
  /** The object's size in bytes, or undefined when the key is not there. */
  size(key: string): Promise<number | undefined>;
  /** A path on local disk that ffmpeg/ffprobe can open, or undefined when the adapter has none (S3). */
  localPath(key: string): string | undefined;
  /** Removes exactly these keys; a key that is not there is no error. */
  delete(keys: string[]): Promise<void>;
  /** Removes every key under prefix (a "directory"); no error if nothing is there. */
  deletePrefix(prefix: string): Promise<void>;
  /** Every key under prefix, sorted, as full keys (the same form write takes). */
  list(prefix: string): Promise<string[]>;
}

/** What the service asks of a store about its space, apart from reading and writing objects. */
export interface StorageSpace {
  /** Bytes free for writing, or undefined where the store has no such limit (S3). */
  freeBytes(): Promise<number | undefined>;
  /**
   * Removes temporary files of writes that never finished (their process was killed), untouched for
   * olderThanMs; a write still in progress is never that old. Returns how many were removed, and how
   * many younger ones were left for a later sweep.
   */
  sweepStalePartials(olderThanMs: number): Promise<{ removed: number; young: number }>;
}

export class StorageKeyError extends Error {
  constructor(key: string) {
    super(`storage key escapes its root or is malformed: ${JSON.stringify(key)}`);
    this.name = 'StorageKeyError';
  }
}

/** Validates a relative '/'-separated key: no empty, '.' or '..' segments, no backslashes or NULs. */
export function assertSafeKey(key: string): void {
  if (key.length === 0 || key.length > 1024 || key.startsWith('/') || /[\\\0]/.test(key)) throw new StorageKeyError(key);
  for (const segment of key.split('/')) {
    if (segment === '' || segment === '.' || segment === '..') throw new StorageKeyError(key);
  }
}

/** Refuses a range that no object has: negative, fractional or reversed bounds. */
export function assertByteRange(range: ByteRange): void {
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new RangeError(`not a byte range: ${start}-${end}`);
  }
}
