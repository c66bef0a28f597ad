/** One frame of a detection job: where it is stored and when it occurs in the source. */
export interface FrameRef {
  index: number;
  ptsMs: number;
  key: string;
}

/** A job: up to BATCH_SIZE frames of one video. Serialized as JSON in Redis lists. */
export interface DetectionJob {
  id: string;
  videoId: string;
  frames: FrameRef[];
  /** Epoch milliseconds when the job was published; the worker reports queue wait from it. */
  publishedAt?: number;
  /** Deliveries that ended without a commit (worker died or gave up); missing means none. */
  attempts?: number;
}

/** A job that failed MAX_ATTEMPTS times, kept with its last error until retried or discarded. */
export interface DeadLetter {
  job: DetectionJob;
  error: string;
  attempts: number;
  /** ISO time of the last failure. */
  failedAt: string;
}

/** A job handed to a worker, with the exact payload needed to acknowledge it. */
export interface ReservedJob {
  job: DetectionJob;
  /** The raw list element; ack removes exactly this element from the worker's processing list. */
  payload: string;
  /** The queue shard it was reserved from (set by reserve); absent: the shard of the job's video. */
  shard?: number;
}
