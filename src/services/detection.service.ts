import type { DetectionRepository, FrameResult, VideoRepository } from '../db/types.ts';
import type { DetectOptions, Detector, PreparedFrame } from '../detection/types.ts';
import type { DetectionJob } from '../queue/types.ts';
import type { VideoStorage } from '../storage/video-storage.ts';

export type PrepareFrame = (jpeg: Buffer, imgsz: [number, number]) => Promise<PreparedFrame>;

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

/** A job whose frames are read, decoded and letterboxed, waiting for the detector. */
export interface PreparedJob {
  job: DetectionJob;
  /** undefined when the video is gone or failed: the job is acknowledged with no work. */
  capturedAt: Date | undefined;
  frames: PreparedFrame[];
}

/**
 * Detection rules for one job: read its frames, run the detector on the batch, commit the results.
 * Split into prepare and detect so the worker can prepare the next job while this one infers.
 */
export class DetectionService {
  readonly timings: StageTimings = { jobs: 0, frames: 0, queueWaitMs: 0, readDecodeMs: 0, inferenceMs: 0, postprocessMs: 0, insertMs: 0 };

  constructor(
    private readonly videos: Pick<VideoRepository, 'get' | 'markFailed'>,
    private readonly detections: Pick<DetectionRepository, 'commitFrames'>,
    private readonly storage: Pick<VideoStorage, 'read'>,
    private readonly detector: Detector,
    private readonly prepareFrame: PrepareFrame,
    private readonly options: DetectOptions,
  ) {}

  async prepare(job: DetectionJob): Promise<PreparedJob> {
    if (job.publishedAt !== undefined) this.timings.queueWaitMs += Math.max(0, Date.now() - job.publishedAt);
    const video = await this.videos.get(job.videoId);
    if (!video || video.status === 'failed') return { job, capturedAt: undefined, frames: [] };
    const started = performance.now();
    const imgsz = this.detector.modelInfo.imgsz;
    const frames = await Promise.all(job.frames.map(async (frame) => this.prepareFrame(await this.storage.read(frame.key), imgsz)));
    this.timings.readDecodeMs += performance.now() - started;
    return { job, capturedAt: video.capturedAt, frames };
  }

  /** Runs the detector and commits; returns how many frames were newly recorded (0 for a redelivery). */
  async detectAndCommit(prepared: PreparedJob): Promise<number> {
    if (prepared.capturedAt === undefined) return 0;
    const stage = { inferenceMs: 0, postprocessMs: 0 };
    const detections = await this.detector.detectBatch(prepared.frames, this.options, stage);
    const results: FrameResult[] = prepared.job.frames.map((frame, i) => ({
      frameIndex: frame.index,
      ptsMs: frame.ptsMs,
      detections: detections[i] ?? [],
    }));
    const insertStarted = performance.now();
    const added = await this.detections.commitFrames(prepared.job.videoId, prepared.capturedAt, results);
    this.timings.insertMs += performance.now() - insertStarted;
    this.timings.inferenceMs += stage.inferenceMs;
    this.timings.postprocessMs += stage.postprocessMs;
    this.timings.jobs += 1;
    this.timings.frames += results.length;
    return added;
  }

  failVideo(videoId: string, reason: string): Promise<void> {
    return this.videos.markFailed(videoId, reason);
  }
}
