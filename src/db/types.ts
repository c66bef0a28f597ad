import type { Detection } from '../detection/types.ts';
import type { PreviewFormat } from '../media/preview-args.ts';

export type VideoStatus = 'queued' | 'extracting' | 'processing' | 'completed' | 'failed' | 'cancelled';

/** Statuses a video can be cancelled from: it is still being extracted or detected. */
export const ACTIVE_STATUSES: readonly VideoStatus[] = ['queued', 'extracting', 'processing'];

export interface SourceMetadata {
  durationMs: number | null;
  fps: number | null;
  width: number;
  height: number;
  codec: string;
  /** The container's creation_time tag, when present. */
  creationTime: Date | null;
  /** The video stream's start_time: frame timestamps are measured from it. */
  startTimeMs: number;
}

/** A browser-playable copy of a video (see PreviewService). */
export interface VideoPreview {
  /** Storage key of the preview file. */
  key: string;
  mimeType: PreviewFormat['mimeType'];
}

export interface VideoRecord {
  id: string;
  status: VideoStatus;
  originalName: string;
  sizeBytes: number;
  storageKey: string;
  /** Requested sampling rate; null means every frame. */
  sampleFps: number | null;
  source: SourceMetadata;
  /** Wall-clock time of frame 0: creation_time when present, else upload time. */
  capturedAt: Date;
  framesTotal: number | null;
  framesDone: number;
  /** Frames recorded without detections because they could not be processed (see FrameResult.error). */
  framesFailed: number;
  error: string | null;
  createdAt: Date;
  updatedAt: Date;
  completedAt: Date | null;
  /** null until the preview is written, and for good when it could not be. */
  preview: VideoPreview | null;
  /** Extraction is over and the preview is being made (it is written after the frames, at a lower CPU priority). */
  previewPending: boolean;
}

export interface NewVideo {
  id: string;
  originalName: string;
  sizeBytes: number;
  storageKey: string;
  sampleFps: number | null;
  source: SourceMetadata;
  capturedAt: Date;
  /** ffprobe's format and video stream, kept as JSONB for questions the typed columns do not answer. */
  probe: unknown;
  /** The API key that uploaded it; absent or null: no owner (only admin keys see it). */
  ownerKeyId?: string | null;
}

export interface FrameResult {
  frameIndex: number;
  ptsMs: number;
  detections: Detection[];
  /** Set when the frame could not be processed (corrupt image, dead-lettered job); it then has no detections. */
  error?: string;
  /**
   * With error: the failure may pass on another try (the frames of a dead-lettered job), so a retried
   * dead letter processes the frame again. Absent: failed for good (a corrupt image).
   */
  retryable?: boolean;
}

export interface FrameDetectionsPage {
  frames: FrameResult[];
  nextCursor: number | null;
}

export interface DetectionQuery {
  videoId: string;
  /** Return frames with frame_index > cursor. */
  cursor: number | null;
  limit: number;
  className?: string;
  minConfidence?: number;
}

export interface VideoRepository {
  create(video: NewVideo): Promise<VideoRecord>;
  get(id: string): Promise<VideoRecord | undefined>;
  /**
   * An extraction job starts (or resumes) on a queued or extracting video: the status becomes
   * 'extracting'. Returns the checkpoint, frames already stored and published (0 on a first run), or
   * undefined when the video is no longer to be extracted (failed, extracted, or gone).
   */
  startExtraction(id: string): Promise<number | undefined>;
  /**
   * Checkpoint: the frames below this index are stored and their detection jobs published. Never moves
   * back. False when the video is no longer 'extracting' (deleted, cancelled, failed or extracted by
   * another delivery): the extraction stops there.
   */
  recordFramesPublished(id: string, frames: number): Promise<boolean>;
  /** Videos still 'queued' that were created over olderThanMs ago, oldest first, after a keyset cursor. */
  listQueued(olderThanMs: number, after: { createdAt: Date; id: string } | undefined, limit: number): Promise<Array<{ id: string; createdAt: Date }>>;
  /**
   * Extraction is over: frames_total is known. The status becomes 'processing', or at once
   * 'completed' / 'failed' when every frame is already recorded (or there were none; see commitFrames).
   */
  markExtracted(id: string, framesTotal: number, previewPending?: boolean): Promise<VideoRecord>;
  /**
   * The video's extraction failed: it becomes 'failed' with this error if it is still being extracted
   * ('queued' or 'extracting'). False when it is not (another delivery of its extraction job finished it
   * meanwhile, or it was cancelled or deleted): it is left as it is, frames and all.
   */
  markFailed(id: string, error: string): Promise<boolean>;
  /**
   * Stops the video where it is: a queued, extracting or processing video becomes 'cancelled' (its
   * frames recorded so far stay). Waits for a commit of the video in progress (its row lock), so a
   * commit either lands before and is kept, or after and is refused. Returns the video as it is now
   * (any status: the caller tells a finished one apart), or undefined when it does not exist.
   */
  cancel(id: string): Promise<VideoRecord | undefined>;
  /** True when the video was cancelled or deleted: its extraction should stop (polled by ExtractionService). */
  isCancelled(id: string): Promise<boolean>;
  /**
   * Records the video's browser-playable preview, or (null) that it has none for good; either way it is no
   * longer pending. False when the video no longer exists (deleted meanwhile).
   */
  setPreview(id: string, preview: VideoPreview | null): Promise<boolean>;
  /** Removes the video and everything that references it (frames, detections, class counts); a missing video is no error. */
  delete(id: string): Promise<void>;
}

export interface DetectionRepository {
  /**
   * Commits one job's results in one transaction, idempotently: frames already recorded for the
   * video are skipped (a redelivered job adds nothing) unless a success replaces a recorded failure.
   * frames_done counts processed frames, frames_failed frames recorded with an error. When together
   * they reach frames_total the video becomes 'failed' if no frame succeeded, else 'completed', with
   * `error` summarising the failed frames (null when none failed). A video that failed because its
   * frames did still takes commits, so a retried dead letter can complete it; one whose extraction
   * failed takes none. Returns how many frames were written.
   */
  commitFrames(videoId: string, capturedAt: Date, frames: FrameResult[]): Promise<number>;
  listFrames(query: DetectionQuery): Promise<FrameDetectionsPage>;
  /** Which of these frames need no more work: recorded with their detections, or failed for good (not retryably). */
  committedFrames(videoId: string, frameIndexes: number[]): Promise<Set<number>>;
}
