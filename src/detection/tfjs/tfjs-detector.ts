import { stat } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { loadGraphModel } from '@tensorflow/tfjs-converter';
import type { GraphModel } from '@tensorflow/tfjs-converter';
import { writeFrameToBatch } from '../letterbox.ts';
import { decodeYoloOutput } from '../postprocess.ts';
import type { DetectOptions, DetectTimings, Detection, Detector, ModelInfo, PreparedFrame } from '../types.ts';
import type { TfjsModelMetadata } from './convert.ts';
import { readTfjsModelArtifacts } from './model-files.ts';
import { initTfjsBackend } from './tfjs-backend.ts';
import type { TfjsBackendName } from './tfjs-backend.ts';

export interface TfjsDetectorOptions {
  /** tfjs backend; process-wide in tfjs (default wasm). */
  backend?: TfjsBackendName;
  /** XNNPACK threads for the wasm backend, where the runtime supports wasm threads. */
  threads?: number;
  /** Most frames per graph execution: larger batches are run in chunks to bound peak memory (default 8). */
  maxBatch?: number;
}

/**
 * YOLOv8 on TensorFlow.js, from a graph model made by scripts/convert-model.ts. The converted graph has
 * a dynamic batch and keeps ONNX's input and output layouts ([N, 3, h, w] in, [N, 4 + classes, anchors]
 * out), so frames are stacked as for ONNX Runtime and decoded by the same postprocess code.
 */
export class TfjsDetector implements Detector {
  readonly engine = 'tfjs';

  private constructor(
    private readonly model: GraphModel,
    readonly modelInfo: ModelInfo,
    readonly device: string,
    private readonly maxBatch: number,
  ) {}

  /** `modelPath` is the converted model's directory or its model.json. */
  static async create(modelPath: string, options: TfjsDetectorOptions = {}): Promise<TfjsDetector> {
    const dir = (await stat(modelPath)).isDirectory() ? modelPath : path.dirname(modelPath);
    const artifacts = await readTfjsModelArtifacts(dir);
    const metadata = artifacts.userDefinedMetadata as unknown as Partial<TfjsModelMetadata> | undefined;
    const modelInfo = modelInfoFrom(dir, metadata);
    const device = await initTfjsBackend(options.backend ?? 'wasm', { threads: options.threads });
    const model = await loadGraphModel({ load: async () => artifacts });
    try {
      checkSignature(dir, model, modelInfo);
      return new TfjsDetector(model, modelInfo, device, Math.max(1, options.maxBatch ?? 8));
    } catch (error) {
      model.dispose();
      throw error;
    }
  }

  async detectBatch(frames: PreparedFrame[], options: DetectOptions, timings?: DetectTimings): Promise<Detection[][]> {
    const results: Detection[][] = [];
    for (let start = 0; start < frames.length; start += this.maxBatch) {
      results.push(...(await this.runChunk(frames.slice(start, start + this.maxBatch), options, timings)));
    }
    return results;
  }

  /**
   * Runs frames through the graph in one execution and returns the raw output ([N, 4 + classes,
   * anchors], row-major), for callers that decode themselves (tests, tools).
   */
  async runRaw(frames: PreparedFrame[]): Promise<{ values: Float32Array; dims: number[] }> {
    const [h, w] = this.modelInfo.imgsz;
    const frameSize = 3 * h * w;
    for (const frame of frames) {
      if (frame.tensor.length !== frameSize) throw new Error(`frame tensor has ${frame.tensor.length} values, the model takes 3x${h}x${w}`);
    }
    let data: Float32Array;
    if (frames.length === 1) {
      data = frames[0]!.tensor; // no copy for the common single-frame case
    } else {
      data = new Float32Array(frames.length * frameSize);
      frames.forEach((frame, i) => writeFrameToBatch(data, frame, i));
    }
    // One execution per call; the executor disposes its intermediates, both ends are disposed here.
    const input = tf.tensor4d(data, [frames.length, 3, h, w], 'float32');
    let output: tf.Tensor | undefined;
    try {
      output = this.model.execute(input) as tf.Tensor;
      const dims = output.shape;
      const values = (await output.data()) as Float32Array;
      if (dims.length !== 3 || dims[0] !== frames.length) throw new Error(`model output has shape [${dims.join(', ')}], expected [${frames.length}, 4 + classes, anchors]`);
      return { values, dims };
    } finally {
      input.dispose();
      output?.dispose();
    }
  }

  private async runChunk(frames: PreparedFrame[], options: DetectOptions, timings?: DetectTimings): Promise<Detection[][]> {
    const inferenceStarted = performance.now();
    const { values, dims } = await this.runRaw(frames);
    const postprocessStarted = performance.now();
    const [, channels, anchors] = dims as [number, number, number];
    const perImage = channels * anchors;
    const results = frames.map((frame, i) =>
      decodeYoloOutput(values.subarray(i * perImage, (i + 1) * perImage), anchors, channels - 4, frame, this.modelInfo.names, options),
    );
    if (timings) {
      timings.inferenceMs += postprocessStarted - inferenceStarted;
      timings.postprocessMs += performance.now() - postprocessStarted;
    }
    return results;
  }

  async close(): Promise<void> {
    this.model.dispose();
  }
}

function modelInfoFrom(dir: string, metadata: Partial<TfjsModelMetadata> | undefined): ModelInfo {
  const { names, imgsz, stride, description, inputLayout } = metadata ?? {};
  if (!Array.isArray(names) || !names.length || !Array.isArray(imgsz) || imgsz.length !== 2 || typeof stride !== 'number') {
    throw new Error(`${dir}/model.json has no class names, imgsz and stride in userDefinedMetadata; convert an Ultralytics export with scripts/convert-model.ts`);
  }
  if (inputLayout !== 'NCHW') throw new Error(`${dir}/model.json: expected a model converted by scripts/convert-model.ts (NCHW input)`);
  const info: ModelInfo = { names, imgsz: [imgsz[0], imgsz[1]], stride };
  if (description) info.description = description;
  return info;
}

function checkSignature(dir: string, model: GraphModel, info: ModelInfo): void {
  const input = model.inputs[0];
  const output = model.outputs[0];
  const [, c, h, w] = input?.shape ?? [];
  if (model.inputs.length !== 1 || c !== 3 || h !== info.imgsz[0] || w !== info.imgsz[1]) {
    throw new Error(`${dir}: model input has shape [${input?.shape?.join(', ')}], expected [batch, 3, ${info.imgsz.join(', ')}]`);
  }
  const channels = output?.shape?.[1];
  if (model.outputs.length !== 1 || (channels !== undefined && channels !== 4 + info.names.length)) {
    throw new Error(`${dir}: model output has ${channels} channels but the metadata names ${info.names.length} classes (expected 4 + ${info.names.length})`);
  }
}
