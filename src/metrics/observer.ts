/**
 * What the pipeline tells the metrics about. Services call these; they never import the metrics
 * library, and without metrics (unit tests, tools) they get noopObserver.
 */
export type Stage = 'read' | 'decode_letterbox' | 'inference' | 'nms' | 'insert' | 'extraction';

export interface PipelineObserver {
  /**
   * Seconds one stage took: read and decode_letterbox per frame, inference, nms and insert per job
   * (one detector run, one transaction), extraction per video.
   */
  stage(stage: Stage, seconds: number): void;
  /** A job's detections were committed: frames run through the detector, and frames that would not decode. */
  jobCommitted(frames: { processed: number; corrupt: number }): void;
  /** A job was given up on (dead-lettered) and its frames recorded as failed. */
  jobDeadLettered(frames: number): void;
  /** An upload was accepted (bytes stored). */
  uploadAccepted(bytes: number): void;
}

export const noopObserver: PipelineObserver = {
  stage() {},
  jobCommitted() {},
  jobDeadLettered() {},
  uploadAccepted() {},
};

/** What cancel and delete tell the metrics (issue 9.6): kept apart from the pipeline's stages. */
export interface LifecycleObserver {
  /** A video was cancelled or deleted; jobsDiscarded: its queued or dead-lettered jobs removed then. */
  videoStopped(action: 'cancelled' | 'deleted', jobsDiscarded: number): void;
}

export const noopLifecycleObserver: LifecycleObserver = { videoStopped() {} };
