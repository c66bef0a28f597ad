import type { DetectionRepository, FrameResult, VideoRecord, VideoRepository } from '../db/types.ts';
import type { BatchSlot, FrameSize } from '../detection/letterbox.ts';
import type { DetectOptions, Detection, Detector, PreparedFrame } from '../detection/types.ts';
import { errorMessage } from '../errors/error-message.ts';
import type { Logger } from '../logger.ts';
import { noopObserver, type PipelineObserver } from '../metrics/observer.ts';
import type { DetectionJob, FrameRef } from '../queue/types.ts';
import type { VideoStorage } from '../storage/video-storage.ts';

/**
 * Decodes and letterboxes a frame, into `slot` of the job's batch buffer when given; `scaledFrom` is the
 * video's size, which boxes map back to when extraction stored the frame scaled (see letterbox.ts).
 */
export type PrepareFrame = (jpeg: Buffer, imgsz: [number, number], slot?: BatchSlot, scaledFrom?: FrameSize) => Promise<PreparedFrame>;

/** Milliseconds spent per stage, summed over the jobs a worker handled (reported by /readyz and the benchmark). */
export interface StageTimings {
  jobs: number;
  frames: number;
  queueWaitMs: number;
  readDecodeMs: number;
  inferenceMs: number;
  postprocessMs: number;
  insertMs: number;
}

/** What happens to a job's frames once its detections are committed. */
export interface FrameLifecycle {
  /** KEEP_FRAMES: false deletes the job's frames from storage after the commit. */
  keepFrames: boolean;
  logger: Pick<Logger, 'warn'>;
}

/** What detectAndCommit did: frames newly recorded, and milliseconds the detector call took. */
export interface CommitOutcome {
  written: number;
  detectMs: number;
}

/** A job whose frames are read, decoded and letterboxed, waiting for the detector. */
export interface PreparedJob {
  job: DetectionJob;
  /** undefined when the video is gone, cancelled or its extraction failed: the job is acknowledged with no work. */
  capturedAt: Date | undefined;
  /** In job order; a frame that could not be decoded carries its error instead of a tensor. */
  frames: Array<{ ref: FrameRef; prepared?: PreparedFrame; error?: string }>;
  /** The buffer the frames were decoded into; reused for a later job once the detector is done with it. */
  batch?: Uint8Array;
}

/**
 * Batch buffers kept for later jobs. A job's buffer is large (16 frames of 640×640: 19.7 MB), and a fresh one
 * faults in every page on first touch: in CPU profiles of the worker's main thread over a bench run, decoding
 * into slots took 472 ms with a fresh buffer a job and 364 ms with reuse (398 frames). Four covers the jobs a
 * worker holds at once (one a detector lane, up to four lanes; or one lane and its prefetched job).
 */
const SPARE_BATCHES = 4;

/**
 * Detection rules for one job: read its frames, run the detector on the batch, commit the results.
 * Split into prepare and detect so the worker can prepare the next job while this one infers.
 */
export class DetectionService {
  readonly timings: StageTimings = { jobs: 0, frames: 0, queueWaitMs: 0, readDecodeMs: 0, inferenceMs: 0, postprocessMs: 0, insertMs: 0 };
  /** Buffers of jobs the detector is done with, smallest first. */
  private readonly spareBatches: ArrayBuffer[] = [];

  constructor(
    private readonly videos: Pick<VideoRepository, 'get'>,
    private readonly detections: Pick<DetectionRepository, 'commitFrames' | 'committedFrames'>,
    private readonly storage: Pick<VideoStorage, 'read' | 'delete'>,
    private readonly detector: Detector,
    private readonly prepareFrame: PrepareFrame,
    private readonly options: DetectOptions,
    private readonly lifecycle: FrameLifecycle,
    private readonly observer: PipelineObserver = noopObserver,
  ) {}

  async prepare(job: DetectionJob): Promise<PreparedJob> {
    if (job.publishedAt !== undefined) this.timings.queueWaitMs += Math.max(0, Date.now() - job.publishedAt);
    const video = await this.videos.get(job.videoId);
    if (!takesResults(video)) return { job, capturedAt: undefined, frames: [] };
    // A redelivered job skips frames already recorded: no second inference, and no read of frames
    // deleted after that commit. Asked on every delivery, since a redelivery need not carry an
    // attempt (an in-place retry after a failed ack, a job handed back at shutdown).
    const committed = await this.detections.committedFrames(job.videoId, job.frames.map((ref) => ref.index));
    const started = performance.now();
    const imgsz = this.detector.modelInfo.imgsz;
    const pending = job.frames.filter((ref) => !committed.has(ref.index));
    // One buffer for the job: each frame is decoded straight into its slot, so a run over consecutive
    // frames needs no packing copy (a corrupt frame leaves a gap, and the runs around it are copied).
    const batch = this.takeBatch(pending.length * 3 * imgsz[0] * imgsz[1]);
    const scaledFrom = { width: video.source.width, height: video.source.height };
    const frames = await Promise.all(
      pending.map(async (ref, index) => {
        // A read failure (storage down, frame missing) fails the whole attempt and is retried; a frame
        // that reads but will not decode is corrupt, and only that frame fails.
        const readStarted = performance.now();
        const jpeg = await this.storage.read(ref.key);
        const decodeStarted = performance.now();
        this.observer.stage('read', (decodeStarted - readStarted) / 1000);
        try {
          const frame = { ref, prepared: await this.prepareFrame(jpeg, imgsz, { batch, index }, scaledFrom) };
          this.observer.stage('decode_letterbox', (performance.now() - decodeStarted) / 1000);
          return frame;
        } catch (error) {
          return { ref, error: `corrupt frame: ${errorMessage(error)}` };
        }
      }),
    );
    this.timings.readDecodeMs += performance.now() - started;
    return { job, capturedAt: video.capturedAt, frames, batch };
  }

  /**
   * Runs the detector and commits. Returns how many frames were newly recorded (0 for a redelivery)
   * and how long the detector call took (a synchronous engine blocks the event loop, heartbeats included).
   */
  async detectAndCommit(prepared: PreparedJob): Promise<CommitOutcome> {
    if (prepared.capturedAt === undefined) {
      // The video is gone, cancelled or its extraction failed: the frames will never be used, whatever KEEP_FRAMES says.
      await this.deleteFrames(prepared.job);
      return { written: 0, detectMs: 0 };
    }
    if (prepared.frames.length === 0) {
      // Every frame was committed before: a worker may have died before deleting them.
      await this.deleteJobFrames(prepared.job);
      return { written: 0, detectMs: 0 };
    }
    const stage = { inferenceMs: 0, postprocessMs: 0 };
    const decodable = prepared.frames.filter((frame) => frame.prepared !== undefined);
    // Its frames view a buffer that went to a later job once the detector had them: stale pixels, never run again.
    if (decodable.length > 0 && prepared.batch === undefined) throw new Error('this prepared job was already run; prepare the job again');
    const detectStarted = performance.now();
    let detections: Detection[][];
    try {
      detections = await this.detector.detectBatch(decodable.map((frame) => frame.prepared!), this.options, stage);
    } finally {
      // Settled, the detector holds no view of the frames (a DetectorPool has copied them to its lanes).
      this.giveBackBatch(prepared);
    }
    const detectMs = performance.now() - detectStarted;
    const byIndex = new Map(decodable.map((frame, i) => [frame.ref.index, detections[i] ?? []]));
    const results: FrameResult[] = prepared.frames.map(({ ref, error }) => ({
      frameIndex: ref.index,
      ptsMs: ref.ptsMs,
      detections: byIndex.get(ref.index) ?? [],
      ...(error === undefined ? {} : { error }),
    }));
    const insertStarted = performance.now();
    // Cancelled or deleted since prepare(): commitFrames sees it under the video's row lock and writes nothing.
    const added = await this.detections.commitFrames(prepared.job.videoId, prepared.capturedAt, results);
    const insertMs = performance.now() - insertStarted;
    this.timings.insertMs += insertMs;
    this.timings.inferenceMs += stage.inferenceMs;
    this.timings.postprocessMs += stage.postprocessMs;
    this.timings.jobs += 1;
    this.timings.frames += results.length;
    this.observer.stage('inference', stage.inferenceMs / 1000);
    this.observer.stage('nms', stage.postprocessMs / 1000);
    this.observer.stage('insert', insertMs / 1000);
    this.observer.jobCommitted({ processed: decodable.length, corrupt: prepared.frames.length - decodable.length });
    await this.deleteJobFrames(prepared.job);
    return { written: added, detectMs };
  }

  /** A buffer of at least `bytes`: the smallest spare that fits, else a new one. */
  private takeBatch(bytes: number): Uint8Array {
    const spare = this.spareBatches.findIndex((buffer) => buffer.byteLength >= bytes);
    const buffer = spare >= 0 ? this.spareBatches.splice(spare, 1)[0]! : new ArrayBuffer(bytes);
    return new Uint8Array(buffer, 0, bytes);
  }

  /** Keeps the job's buffer for a later job (the largest ones when there are too many); the job loses it. */
  private giveBackBatch(prepared: PreparedJob): void {
    const buffer = prepared.batch?.buffer as ArrayBuffer | undefined;
    prepared.batch = undefined;
    if (!buffer || buffer.byteLength === 0) return;
    this.spareBatches.push(buffer);
    this.spareBatches.sort((a, b) => a.byteLength - b.byteLength);
    if (this.spareBatches.length > SPARE_BATCHES) this.spareBatches.shift();
  }

  /**
   * The detections are committed, so the frames have served their purpose. All the job's frames,
   * not only those processed now: frames committed by an earlier delivery whose worker died before
   * deleting them go too (frames already gone are no error). Only after a successful commit (a
   * dead-lettered job keeps its frames for a retry), and a failure here never fails the job: it only
   * leaves frames behind. A redelivery skips committed frames in prepare(), so their absence does not matter.
   */
  private async deleteJobFrames(job: DetectionJob): Promise<void> {
    if (this.lifecycle.keepFrames) return;
    await this.deleteFrames(job);
  }

  private async deleteFrames(job: DetectionJob): Promise<void> {
    try {
      await this.storage.delete(job.frames.map((ref) => ref.key));
    } catch (error) {
      this.lifecycle.logger.warn("could not delete a job's frames", { jobId: job.id, videoId: job.videoId, error: errorMessage(error) });
    }
  }

  /**
   * Records every frame of a job the worker gave up on as failed, so the video can still finish.
   * Returns false when the video takes no results (deleted, cancelled, its extraction failed): the
   * job is then acknowledged rather than dead-lettered, since nobody will ever want it.
   */
  async recordFailedJob(job: DetectionJob, reason: string): Promise<boolean> {
    const video = await this.videos.get(job.videoId);
    if (!takesResults(video)) {
      await this.deleteFrames(job);
      return false;
    }
    await this.detections.commitFrames(job.videoId, video.capturedAt, job.frames.map((ref) => ({ frameIndex: ref.index, ptsMs: ref.ptsMs, detections: [], error: reason, retryable: true })));
    this.observer.jobDeadLettered(job.frames.length);
    return true;
  }
}

/**
 * Whether a video still wants its jobs' results (commitFrames makes the same check under the row lock).
 * A deleted or cancelled video does not, nor one whose extraction failed; one that failed because its
 * frames did still does (a retried dead letter may complete it).
 */
function takesResults(video: VideoRecord | undefined): video is VideoRecord {
  return video !== undefined && video.status !== 'cancelled' && !(video.status === 'failed' && video.framesTotal === null);
}
