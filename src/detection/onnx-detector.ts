import { readFile } from 'node:fs/promises';
import * as ort from 'onnxruntime-node';
import { hwcToChw, packBatch } from './letterbox.ts';
import { makeBatchDynamic, OnnxBatchRewriteError } from './onnx-batch.ts';
import { readOnnxModelInfo } from './onnx-metadata.ts';
import { foldPreprocessing, OnnxPreprocessFoldError } from './onnx-preprocess.ts';
import { decodeYoloBatch } from './postprocess.ts';
import type { DetectOptions, DetectTimings, Detection, Detector, ModelInfo, PreparedFrame } from './types.ts';

export interface OnnxDetectorOptions {
  /** ORT intra-op threads; 0 or undefined lets ORT choose (one per physical core). */
  threads?: number;
  /**
   * Frames per session.run when the batch is dynamic. Default 1: on ORT's CPU provider larger runs are
   * slower per frame and cost 60–90 MB of RSS per extra frame (measured by `npm run bench:detector`).
   */
  framesPerRun?: number;
  /** Told when the model keeps its fixed batch because the batch rewrite refused it, and why. */
  onFixedBatch?: (reason: string) => void;
  /** Told when the model keeps its float input because the preprocessing fold refused it (frames are then converted in JavaScript). */
  onFloatInput?: (reason: string) => void;
  /**
   * Extra ONNX Runtime session settings (SessionOptions fields, e.g. optimizedModelFilePath for the benchmark's
   * look at which kernels ran); they override the detector's own.
   */
  sessionOptions?: ort.InferenceSession.SessionOptions;
}

/** YOLOv8 on ONNX Runtime's CPU execution provider. */
export class OnnxDetector implements Detector {
  readonly engine = 'onnx';
  readonly backend = 'cpu'; // the execution provider
  readonly device = 'cpu';

  private constructor(
    private readonly session: ort.InferenceSession,
    readonly modelInfo: ModelInfo,
    private readonly inputName: string,
    private readonly outputName: string,
    /** Frames per session.run: the model's fixed batch dimension, or undefined when it is dynamic. */
    private readonly fixedBatch: number | undefined,
    private readonly framesPerRun: number,
    /** uint8: RGB bytes [batch, h, w, 3] (the fold); float32: [batch, 3, h, w] in [0, 1], converted here. */
    private readonly inputType: 'uint8' | 'float32',
  ) {}

  /** Frames one session.run takes: the model's fixed batch, or framesPerRun for a dynamic-batch model. */
  get runFrames(): number {
    return this.fixedBatch ?? this.framesPerRun;
  }

  static async create(modelPath: string, options: OnnxDetectorOptions = {}): Promise<OnnxDetector> {
    const bytes = await readFile(modelPath);
    // Metadata first: a file that is not a YOLOv8 export fails with a clear message before ORT loads it.
    const modelInfo = readOnnxModelInfo(bytes);
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'all',
      // One model, one image stream: parallelism comes from intra-op threads, not from running nodes concurrently.
      executionMode: 'sequential',
      // int8 models: x86 CPUs without VNNI (SSE4.1, AVX2, AVX-512 without VNNI) multiply u8 activations by s8
      // weights in 16-bit pairs that saturate; this has ONNX Runtime use its exact (slower) u8 x u8 kernels
      // there, and changes nothing on VNNI CPUs or for float models. Seen on a host without AVX2: int8 kept
      // the astronaut photo's person at 0.587 (fp32 0.711) with it, 0.448 without.
      extra: { session: { x64quantprecision: '1' } },
    };
    if (options.threads && options.threads > 0) sessionOptions.intraOpNumThreads = options.threads;
    Object.assign(sessionOptions, options.sessionOptions);
    // The stock export fixes the batch at 1; with it made dynamic one session.run takes every frame of a batch.
    // A graph the rewrite cannot vouch for keeps its fixed batch (frames then run in chunks of that size).
    let modelBytes: Uint8Array = bytes;
    try {
      modelBytes = makeBatchDynamic(bytes);
    } catch (error) {
      if (!(error instanceof OnnxBatchRewriteError)) throw error;
      options.onFixedBatch?.(error.message);
    }
    // Normalisation and layout move into the graph, so the frames' bytes are the input as they are.
    try {
      modelBytes = foldPreprocessing(modelBytes);
    } catch (error) {
      if (!(error instanceof OnnxPreprocessFoldError)) throw error;
      options.onFloatInput?.(error.message);
    }
    // The bytes are already in memory for the metadata, so ORT loads from them instead of re-reading the file.
    const session = await ort.InferenceSession.create(modelBytes, sessionOptions);
    try {
      const inputName = session.inputNames[0];
      const outputName = session.outputNames[0];
      if (inputName === undefined || outputName === undefined) throw new Error(`${modelPath}: the model has no inputs or outputs`);
      const input = session.inputMetadata[0];
      const inputType = input?.isTensor && input.type === 'uint8' ? 'uint8' : 'float32';
      const fixedBatch = checkShapes(modelPath, modelInfo, input, session.outputMetadata[0], inputType);
      return new OnnxDetector(session, modelInfo, inputName, outputName, fixedBatch, Math.max(1, options.framesPerRun ?? 1), inputType);
    } catch (error) {
      await session.release();
      throw error;
    }
  }

  async detectBatch(frames: PreparedFrame[], options: DetectOptions, timings?: DetectTimings): Promise<Detection[][]> {
    const results: Detection[][] = [];
    // A dynamic-batch model takes framesPerRun frames a run; a fixed-batch one (a graph the rewrite refused) its own batch.
    const chunk = this.runFrames;
    for (let start = 0; start < frames.length; start += chunk) {
      results.push(...(await this.runChunk(frames.slice(start, start + chunk), options, timings)));
    }
    return results;
  }

  private async runChunk(frames: PreparedFrame[], options: DetectOptions, timings?: DetectTimings): Promise<Detection[][]> {
    const [h, w] = this.modelInfo.imgsz;
    const inferenceStarted = performance.now();
    // A fixed batch larger than the chunk is zero-padded; the padding's outputs are ignored.
    const batch = this.fixedBatch ?? frames.length;
    const data = packBatch(frames, this.modelInfo.imgsz, batch);
    const input =
      this.inputType === 'uint8' ? new ort.Tensor('uint8', data, [batch, h, w, 3]) : new ort.Tensor('float32', hwcToChw(data, h * w), [batch, 3, h, w]);
    let outputs: ort.InferenceSession.ReturnType;
    try {
      outputs = await this.session.run({ [this.inputName]: input }, [this.outputName]);
    } finally {
      input.dispose();
    }
    const postprocessStarted = performance.now();
    try {
      const output = outputs[this.outputName];
      if (!output || output.type !== 'float32' || output.dims.length !== 3) {
        throw new Error(`model output "${this.outputName}" is not a float32 [batch, 4 + classes, anchors] tensor`);
      }
      const results = decodeYoloBatch(output.data as Float32Array, output.dims, frames, this.modelInfo.names, options);
      if (timings) {
        timings.inferenceMs += postprocessStarted - inferenceStarted;
        timings.postprocessMs += performance.now() - postprocessStarted;
        if (timings.runs !== undefined) timings.runs++;
      }
      return results;
    } finally {
      for (const tensor of Object.values(outputs)) tensor.dispose();
    }
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}

/**
 * Checks the graph against the metadata (a mismatch would silently give garbage boxes) and returns
 * the fixed batch size, or undefined for a dynamic batch (symbolic name or -1).
 */
function checkShapes(
  modelPath: string,
  info: ModelInfo,
  input: ort.InferenceSession.ValueMetadata | undefined,
  output: ort.InferenceSession.ValueMetadata | undefined,
  inputType: 'uint8' | 'float32',
): number | undefined {
  if (!input?.isTensor || input.shape.length === 0) return 1; // shape unknown: one frame per run is always safe
  const nhwc = inputType === 'uint8';
  const [n, c, h, w] = nhwc ? [input.shape[0], input.shape[3], input.shape[1], input.shape[2]] : input.shape;
  const fixed = (d: number | string | undefined): d is number => typeof d === 'number' && d > 0;
  if (input.shape.length !== 4 || (fixed(c) && c !== 3)) {
    const expected = nhwc ? '[batch, height, width, 3]' : '[batch, 3, height, width]';
    throw new Error(`${modelPath}: input "${input.name}" has shape [${input.shape.join(', ')}], expected ${expected}`);
  }
  const [ih, iw] = info.imgsz;
  if ((fixed(h) && h !== ih) || (fixed(w) && w !== iw)) {
    throw new Error(`${modelPath}: input is ${String(h)}x${String(w)} but the metadata says imgsz [${ih}, ${iw}]`);
  }
  if (output?.isTensor && output.shape.length === 3 && fixed(output.shape[1]) && output.shape[1] !== 4 + info.names.length) {
    throw new Error(
      `${modelPath}: output "${output.name}" has ${output.shape[1]} channels but metadata names ${info.names.length} classes ` +
        `(expected 4 + ${info.names.length}); only YOLOv8 detection exports are supported`,
    );
  }
  return fixed(n) ? n : undefined;
}
