import { JOB_KINDS, type JobKind } from './types.ts';

/** Every Redis key of the queue; nothing else builds key strings (Lua scripts receive them in KEYS). */
export interface QueueKeys {
  /** The shard these keys belong to (0 when the queue has one). */
  readonly shard: number;
  /**
   * Jobs waiting for a worker, one list per job kind so a worker that does not take a kind never pops
   * its jobs; LPUSH in, BLMOVE out from the right (FIFO).
   */
  readonly pending: Readonly<Record<JobKind, string>>;
  /**
   * The single pending list of versions before job kinds (detection jobs only); workers move it to
   * pending.detect. Untagged: it only ever existed in the one-shard, one-Redis layout.
   */
  readonly legacyPending: string;
  /**
   * Set of video ids (of this shard) whose extraction job is queued or held: publishing one a second time
   * (the upload endpoint and the sweep for uploads that died before publishing) finds it here and adds nothing.
   */
  readonly extractionsEnqueued: string;
  /** Jobs that failed MAX_ATTEMPTS times, newest first, with their last error (see DeadLetter). */
  readonly deadLetters: string;
  /** Set of worker ids that may hold jobs in this shard; reclaimers check each one's heartbeat. */
  readonly workers: string;
  /** Jobs a worker holds (from this shard, all kinds it takes, in one list) until their results are committed. */
  processing(workerId: string): string;
  /** Present while the worker is alive (refreshed with a TTL); one per shard, so a script sees it in its slot. */
  heartbeat(workerId: string): string;
  /** SCAN MATCH pattern of every worker's processing list of this shard, registered or not. */
  readonly processingPattern: string;
  /** The worker id of a processing list's key; null for any other key. */
  workerOfProcessing(key: string): string | null;
}

export interface QueueLayoutOptions {
  /** QUEUE_SHARDS. */
  shards: number;
  /** On a Redis Cluster every shard's keys carry a hash tag, so each shard lives in one slot. */
  cluster: boolean;
}

/** The keys of every shard, and where a video's jobs go. */
export interface QueueLayout {
  readonly shards: readonly QueueKeys[];
  /** Holds QUEUE_SHARDS as the first process stored it; every other process must agree. */
  readonly shardCountKey: string;
  shardOfVideo(videoId: string): number;
}

/**
 * The keys of one shard. With one shard on a single Redis they are the original, untagged
 * `<prefix>:queue:*` keys, so an existing deployment's queue carries over unchanged (its one pending list,
 * legacyPending, is moved to pending.detect by the workers). Otherwise every key
 * of shard s is `<prefix>:queue:{<tag>}:*`: Redis Cluster hashes only the part in braces, so a shard's
 * pending list, processing lists, heartbeats, worker set and dead letters share one slot, as every
 * multi-key script and BLMOVE needs. The prefix stays first, so `<prefix>:*` still finds every key.
 */
export function queueKeys(prefix: string, shard = 0, layout: QueueLayoutOptions = { shards: 1, cluster: false }): QueueKeys {
  if (prefix === '') throw new Error('queue key prefix must not be empty');
  if (!Number.isInteger(shard) || shard < 0 || shard >= layout.shards) throw new Error(`shard ${shard} is not one of ${layout.shards}`);
  const tagged = layout.cluster || layout.shards > 1;
  const base = tagged ? `${prefix}:queue:{${shardTag(shard, layout.shards)}}` : `${prefix}:queue`;
  return Object.freeze({
    shard,
    pending: Object.freeze(Object.fromEntries(JOB_KINDS.map((kind) => [kind, `${base}:pending:${kind}`])) as Record<JobKind, string>),
    legacyPending: `${prefix}:queue:pending`,
    extractionsEnqueued: `${base}:extractions`,
    workers: `${base}:workers`,
    deadLetters: `${base}:dead`,
    processing: (workerId: string) => `${base}:processing:${workerId}`,
    heartbeat: (workerId: string) => `${base}:heartbeat:${workerId}`,
    // The prefix is the operator's: its glob characters must match themselves (braces are not glob syntax).
    processingPattern: `${base.replace(/[*?[\]\\]/g, '\\$&')}:processing:*`,
    workerOfProcessing: (key: string) => (key.startsWith(`${base}:processing:`) ? key.slice(`${base}:processing:`.length) || null : null),
  });
}

export function queueLayout(prefix: string, options: QueueLayoutOptions): QueueLayout {
  if (!Number.isInteger(options.shards) || options.shards < 1) throw new Error(`QUEUE_SHARDS must be a whole number >= 1, got ${options.shards}`);
  const shards = Object.freeze(Array.from({ length: options.shards }, (_, shard) => queueKeys(prefix, shard, options)));
  return Object.freeze({
    shards,
    shardCountKey: `${prefix}:queue:shards`,
    shardOfVideo: (videoId: string) => shardOfVideo(videoId, options.shards),
  });
}

/** The shard of a video's jobs: FNV-1a (32-bit) of its id's UTF-8 bytes, modulo the shard count. Stable across processes and versions. */
export function shardOfVideo(videoId: string, shards: number): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(videoId, 'utf8')) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % shards;
}

/**
 * The hash tag of shard s of n: `s<s>` with the smallest suffix `-<k>` that puts its slot in the s-th
 * n-th of the 16384 slots. `redis-cli --cluster create` gives each primary an equal run of slots, so with
 * QUEUE_SHARDS a multiple of the primaries every primary gets the same number of shards; plain tags
 * would not spread (the slots of "0", "1" and "2" fall on two of three primaries).
 */
export function shardTag(shard: number, shards: number): string {
  if (shards === 1) return `s${shard}`;
  const from = Math.floor((shard * 16384) / shards);
  const to = Math.floor(((shard + 1) * 16384) / shards);
  for (let k = 0; ; k += 1) {
    const tag = `s${shard}-${k}`;
    const slot = keySlot(tag);
    if (slot >= from && slot < to) return tag;
  }
}

/** Redis Cluster's slot of a key: CRC16 (XMODEM) of its hash tag (or the whole key when it has none) modulo 16384. */
export function keySlot(key: string): number {
  const open = key.indexOf('{');
  const close = open >= 0 ? key.indexOf('}', open + 1) : -1;
  const hashed = open >= 0 && close > open + 1 ? key.slice(open + 1, close) : key;
  let crc = 0;
  for (const byte of Buffer.from(hashed, 'utf8')) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit += 1) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}
