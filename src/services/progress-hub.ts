import type { CatalogVideo, VideoCatalog } from '../db/video-catalog.repository.ts';
import { errorMessage } from '../errors/error-message.ts';

/** One event stream's view of a video. */
export interface ProgressListener {
  /** The video's status or frame counts changed (the listener may still see a repeat and skip it). */
  update(video: CatalogVideo): void;
  /** The video no longer exists. */
  gone(): void;
  /** The process is shutting down: end the stream (a client reconnects to another API process). */
  closed(): void;
}

interface Watched {
  listeners: Set<ProgressListener>;
  /** status and counts last seen, to tell listeners only of changes. */
  lastSeen: string;
}

export function progressKey(video: Pick<CatalogVideo, 'status' | 'framesDone' | 'framesTotal' | 'framesFailed'>): string {
  return `${video.status}|${video.framesDone}|${video.framesTotal ?? ''}|${video.framesFailed}`;
}

/**
 * Live progress for every event stream of one API process: a single poll loop, running only while
 * some stream is open, reads all watched videos in one query every pollMs and tells each video's
 * listeners when its status or counts change. Many listeners of one video, or of many, cost one
 * query per tick, not one per client.
 */
export class ProgressHub {
  private readonly watched = new Map<string, Watched>();
  private timer: NodeJS.Timeout | undefined;
  private closing = false;
  private failing = false;

  constructor(
    private readonly catalog: Pick<VideoCatalog, 'getMany'>,
    private readonly pollMs: number,
    private readonly logger: { warn(message: string, meta?: object): unknown; info(message: string): unknown },
  ) {}

  /** Starts telling `listener` about `video` (as read by the caller, which has sent it already). Returns the unwatch function. */
  watch(video: CatalogVideo, listener: ProgressListener): () => void {
    if (this.closing) {
      listener.closed();
      return () => {};
    }
    let entry = this.watched.get(video.id);
    if (!entry) {
      entry = { listeners: new Set(), lastSeen: progressKey(video) };
      this.watched.set(video.id, entry);
    }
    entry.listeners.add(listener);
    this.schedule();
    return () => {
      const current = this.watched.get(video.id);
      if (!current) return;
      current.listeners.delete(listener);
      if (current.listeners.size === 0) this.watched.delete(video.id);
    };
  }

  /** Streams open now (for tests and metrics). */
  get listenerCount(): number {
    let count = 0;
    for (const entry of this.watched.values()) count += entry.listeners.size;
    return count;
  }

  /** Shutdown: ends every stream and stops polling; later watchers are closed at once. */
  close(): void {
    this.closing = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    const listeners = [...this.watched.values()].flatMap((entry) => [...entry.listeners]);
    this.watched.clear();
    for (const listener of listeners) listener.closed();
  }

  private schedule(): void {
    if (this.timer !== undefined || this.closing || this.watched.size === 0) return;
    this.timer = setTimeout(() => void this.poll(), this.pollMs);
  }

  private async poll(): Promise<void> {
    const ids = [...this.watched.keys()];
    try {
      if (ids.length === 0) return; // the last stream closed while the timer ran
      const videos = new Map((await this.catalog.getMany(ids)).map((video) => [video.id, video]));
      if (this.failing) this.logger.info('progress polling recovered');
      this.failing = false;
      for (const id of ids) {
        const entry = this.watched.get(id);
        if (!entry) continue;
        const video = videos.get(id);
        if (!video) {
          this.watched.delete(id);
          for (const listener of entry.listeners) listener.gone();
          continue;
        }
        const seen = progressKey(video);
        if (seen === entry.lastSeen) continue;
        entry.lastSeen = seen;
        for (const listener of [...entry.listeners]) listener.update(video);
      }
    } catch (error) {
      // Streams stay open (pings go on) and resume when the database is back.
      if (!this.failing) this.logger.warn('progress polling failed; retrying', { error: errorMessage(error) });
      this.failing = true;
    } finally {
      this.timer = undefined;
      this.schedule();
    }
  }
}
