import type { DetectionRepository, FrameResult, VideoRecord, VideoRepository } from '../db/types.ts';
import type { BatchSlot, FrameSize } from '../detection/letterbox.ts';
import type { DetectOptions, Detector, PreparedFrame } from '../detection/types.ts';
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
}

/**
 * Detection rules for one job: read its frames, run the detector on the batch, commit the results.
 * Split into prepare and detect so the worker can prepare the next job while this one infers.
 */
export class DetectionService {
  readonly timings: StageTimings = { jobs: 0, frames: 0, queueWaitMs: 0, readDecodeMs: 0, inferenceMs: 0, postprocessMs: 0, insertMs: 0 };

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
    const batch = new Uint8Array(pending.length * 3 * imgsz[0] * imgsz[1]);
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
    return { job, capturedAt: video.capturedAt, frames };
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
    const detectStarted = performance.now();
    const detections = await this.detector.detectBatch(decodable.map((frame) => frame.prepared!), this.options, stage);
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
