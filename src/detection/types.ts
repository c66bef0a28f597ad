/** A detection in source-frame pixels: box is [x1, y1, x2, y2], clipped to the frame. */
export interface Detection {
  classId: number;
  className: string;
  confidence: number;
  box: [number, number, number, number];
}

/** What a YOLOv8 export says about itself (ONNX metadata_props), so custom-trained models work. */
export interface ModelInfo {
  /** Class names indexed by class id. */
  names: string[];
  /** Network input [height, width]. */
  imgsz: [number, number];
  stride: number;
  /** Free-form description of where the model came from (metadata "description"/"version"), for logs. */
  description?: string;
}

/** A decoded frame ready for the network: letterboxed RGB bytes plus the mapping back to source pixels. */
export interface PreparedFrame {
  /**
   * RGB bytes, row by row (HWC), imgsz[0] x imgsz[1] pixels with gray 114 padding. Engines normalise
   * (/ 255) and reorder them themselves: ONNX Runtime inside the model (onnx-preprocess.ts).
   */
  pixels: Uint8Array;
  sourceWidth: number;
  sourceHeight: number;
  /** Scale applied to the source before padding. */
  scale: number;
  padLeft: number;
  padTop: number;
}

export interface DetectOptions {
  confidenceThreshold: number;
  iouThreshold: number;
}

/** Per-call timings, so the worker and the benchmark can report stages without re-measuring. */
export interface DetectTimings {
  inferenceMs: number;
  postprocessMs: number;
  /** Engine runs made (session.run / graph execute), counted when present: frames per run is what batching really did. */
  runs?: number;
}

/**
 * An inference engine behind one interface (ONNX Runtime, TensorFlow.js).
 * detectBatch takes frames of one video and returns one detection list per frame, in order.
 */
export interface Detector {
  readonly engine: string;
  /** Where the engine runs its kernels: ONNX Runtime's execution provider, or the tfjs backend. */
  readonly backend: string;
  readonly device: string;
  readonly modelInfo: ModelInfo;
  detectBatch(frames: PreparedFrame[], options: DetectOptions, timings?: DetectTimings): Promise<Detection[][]>;
  close(): Promise<void>;
}
