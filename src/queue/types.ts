/** What a queued job asks a worker to do; WORKER_ROLES picks the kinds a worker takes. */
export const JOB_KINDS = ['extract', 'detect'] as const;
export type JobKind = (typeof JOB_KINDS)[number];

/** One frame of a detection job: where it is stored and when it occurs in the source. */
export interface FrameRef {
  index: number;
  ptsMs: number;
  key: string;
}

/** A detection job: up to BATCH_SIZE frames of one video. Serialized as JSON in Redis lists. */
export interface DetectionJob {
  /** Absent in jobs published before job kinds existed: those are detection jobs. */
  kind?: 'detect';
  id: string;
  videoId: string;
  frames: FrameRef[];
  /** Epoch milliseconds when the job was published; the worker reports queue wait from it. */
  publishedAt?: number;
  /** Deliveries that ended without a commit (worker died or gave up); missing means none. */
  attempts?: number;
}

/** Frame extraction of one accepted video (published by the upload endpoint, one per video). */
export interface ExtractionJob {
  kind: 'extract';
  id: string;
  videoId: string;
  publishedAt?: number;
  attempts?: number;
}

export type QueueJob = DetectionJob | ExtractionJob;

export function jobKind(job: Pick<QueueJob, 'kind'>): JobKind {
  return job.kind ?? 'detect';
}

/** The one extraction job of a video: the same id however often it is published (see ReliableQueue.enqueueExtraction). */
export function extractionJob(videoId: string): ExtractionJob {
  return { kind: 'extract', id: `extract:${videoId}`, videoId, publishedAt: Date.now() };
}

/** A job that failed MAX_ATTEMPTS times, kept with its last error until retried or discarded. */
export interface DeadLetter {
  job: QueueJob;
  error: string;
  attempts: number;
  /** ISO time of the last failure. */
  failedAt: string;
}

/** A job handed to a worker, with the exact payload needed to acknowledge it. */
export interface ReservedJob<J extends QueueJob = QueueJob> {
  job: J;
  /** The raw list element; ack removes exactly this element from the worker's processing list. */
  payload: string;
  /** The queue shard it was reserved from (set by reserve); absent: the shard of the job's video. */
  shard?: number;
}
