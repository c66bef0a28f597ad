import { access, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { loadGraphModel } from '@tensorflow/tfjs-converter';
import type { GraphModel } from '@tensorflow/tfjs-converter';
import { packBatch } from '../letterbox.ts';
import { decodeYoloBatch } from '../postprocess.ts';
import type { DetectOptions, DetectTimings, Detection, Detector, ModelInfo, PreparedFrame } from '../types.ts';
import type { TfjsModelMetadata } from './convert.ts';
import { readTfjsModelArtifacts } from './model-files.ts';
import { initTfjsBackend, loadNativeTfjs } from './tfjs-backend.ts';
import type { ModuleImporter, SavedModelDim, TfjsBackendName, TfjsSavedModel } from './tfjs-backend.ts';

export interface TfjsDetectorOptions {
  /** tfjs backend; process-wide in tfjs (default wasm). */
  backend?: TfjsBackendName;
  /** XNNPACK threads for the wasm backend, where the runtime supports wasm threads. */
  threads?: number;
  /** Most frames per graph execution: larger batches are run in chunks to bound peak memory (default 8). */
  maxBatch?: number;
  /** node-gpu: fail when TensorFlow sees no GPU (default true; see initTfjsBackend). */
  requireGpu?: boolean;
  /** How @tensorflow/tfjs-node(-gpu) is imported for the node backends (tests inject one). */
  importer?: ModuleImporter;
}

/** One network behind the detector: a converted graph model, or a TF SavedModel on tfjs-node. */
interface ModelRunner {
  /** Runs an NCHW float32 batch; returns [N, 4 + classes, anchors]. Intermediates are the runner's to dispose. */
  run(input: tf.Tensor4D): tf.Tensor;
  /** The model's fixed batch size, or undefined when the batch dimension is dynamic. */
  fixedBatch: number | undefined;
  dispose(): void;
}

/**
 * YOLOv8 on TensorFlow.js, from a graph model made by scripts/convert-model.ts. The converted graph has
 * a dynamic batch and keeps ONNX's input and output layouts ([N, 3, h, w] in, [N, 4 + classes, anchors]
 * out), so frames are stacked as for ONNX Runtime and decoded by the same postprocess code.
 *
 * On the node and node-gpu backends it also runs a TensorFlow SavedModel directory (Ultralytics
 * `format=saved_model`: saved_model.pb, variables/ and metadata.yaml) through tf.node.loadSavedModel.
 */
export class TfjsDetector implements Detector {
  readonly engine = 'tfjs';

  /** tfjs's active backend: wasm, cpu, or tensorflow (tfjs-node and tfjs-node-gpu). Process-wide in tfjs. */
  get backend(): string {
    return tf.getBackend();
  }

  private constructor(
    private readonly model: ModelRunner,
    readonly modelInfo: ModelInfo,
    readonly device: string,
    private readonly maxBatch: number,
  ) {}

  /** `modelPath` is the converted model's directory or its model.json. */
  static async create(modelPath: string, options: TfjsDetectorOptions = {}): Promise<TfjsDetector> {
    const dir = (await stat(modelPath)).isDirectory() ? modelPath : path.dirname(modelPath);
    if (await isSavedModelDir(dir)) return TfjsDetector.createFromSavedModel(dir, options);
    const artifacts = await readTfjsModelArtifacts(dir);
    const metadata = artifacts.userDefinedMetadata as unknown as Partial<TfjsModelMetadata> | undefined;
    const modelInfo = modelInfoFrom(dir, metadata);
    const device = await initTfjsBackend(options.backend ?? 'wasm', { threads: options.threads, importer: options.importer, requireGpu: options.requireGpu });
    const model = await loadGraphModel({ load: async () => artifacts });
    try {
      checkSignature(dir, model, modelInfo);
      const runner: ModelRunner = { run: (input) => model.execute(input) as tf.Tensor, fixedBatch: undefined, dispose: () => model.dispose() };
      return new TfjsDetector(runner, modelInfo, device, Math.max(1, options.maxBatch ?? 8));
    } catch (error) {
      model.dispose();
      throw error;
    }
  }

  /** A TF SavedModel directory; only tfjs-node(-gpu) can run one. */
  private static async createFromSavedModel(dir: string, options: TfjsDetectorOptions): Promise<TfjsDetector> {
    const backend = options.backend ?? 'wasm';
    if (backend !== 'node' && backend !== 'node-gpu') {
      throw new Error(
        `${dir} is a TensorFlow SavedModel, which only TFJS_BACKEND=node or node-gpu can load (tf.node.loadSavedModel); ` +
          `TFJS_BACKEND=${backend} runs a graph model converted from the ONNX export (npm run convert-model)`,
      );
    }
    const modelInfo = parseUltralyticsMetadata(dir, await readSavedModelMetadata(dir));
    const device = await initTfjsBackend(backend, { importer: options.importer, requireGpu: options.requireGpu });
    const tfnode = await loadNativeTfjs(backend, options.importer);
    const model = await tfnode.node.loadSavedModel(dir, ['serve'], 'serving_default');
    try {
      const runner = savedModelRunner(dir, model, modelInfo);
      const maxBatch = runner.fixedBatch ?? Math.max(1, options.maxBatch ?? 8);
      return new TfjsDetector(runner, modelInfo, device, maxBatch);
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
    // A fixed-batch model (a SavedModel exported at batch 1, say) takes zero padding; its outputs are cut off.
    const batch = this.model.fixedBatch ?? frames.length;
    const data = packBatch(frames, this.modelInfo.imgsz, batch);
    // One execution per call; the runner disposes its intermediates, both ends are disposed here.
    const input = tf.tensor4d(data, [batch, 3, h, w], 'float32');
    let output: tf.Tensor | undefined;
    try {
      output = this.model.run(input);
      const dims = output.shape;
      let values = (await output.data()) as Float32Array;
      if (dims.length !== 3 || dims[0] !== batch) throw new Error(`model output has shape [${dims.join(', ')}], expected [${batch}, 4 + classes, anchors]`);
      if (batch !== frames.length) {
        values = values.subarray(0, frames.length * dims[1]! * dims[2]!);
        dims[0] = frames.length;
      }
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
    const results = decodeYoloBatch(values, dims, frames, this.modelInfo.names, options);
    if (timings) {
      timings.inferenceMs += postprocessStarted - inferenceStarted;
      timings.postprocessMs += performance.now() - postprocessStarted;
      if (timings.runs !== undefined) timings.runs++;
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

async function isSavedModelDir(dir: string): Promise<boolean> {
  try {
    await access(path.join(dir, 'saved_model.pb'));
    return true;
  } catch {
    return false;
  }
}

async function readSavedModelMetadata(dir: string): Promise<string> {
  try {
    return await readFile(path.join(dir, 'metadata.yaml'), 'utf8');
  } catch {
    throw new Error(`${dir}: a SavedModel needs the metadata.yaml Ultralytics writes beside saved_model.pb (class names, imgsz, stride)`);
  }
}

/**
 * Reads names, imgsz, stride and description from an Ultralytics metadata.yaml. Only the flat shapes
 * Ultralytics writes are understood (`stride: 32`, `imgsz:` then `- 640` lines, `names:` then
 * `  0: person` lines), so no YAML library is needed.
 */
export function parseUltralyticsMetadata(dir: string, text: string): ModelInfo {
  const unquote = (v: string) => v.trim().replace(/^'(.*)'$/, (_, x: string) => x.replace(/''/g, "'")).replace(/^"(.*)"$/, '$1');
  const names: string[] = [];
  const imgsz: number[] = [];
  let stride: number | undefined;
  let description: string | undefined;
  let section: 'names' | 'imgsz' | undefined;
  for (const line of text.split(/\r?\n/)) {
    const top = /^([A-Za-z_]+):\s*(.*)$/.exec(line);
    if (top) {
      const [, key, value] = top as unknown as [string, string, string];
      section = key === 'names' || key === 'imgsz' ? key : undefined;
      if (key === 'stride') stride = Number(value);
      if (key === 'description' && value) description = unquote(value);
      if (key === 'imgsz' && value.startsWith('[')) imgsz.push(...value.replace(/[[\]]/g, '').split(',').map(Number));
      continue;
    }
    if (section === 'imgsz') {
      const item = /^\s*-\s*(\d+)\s*$/.exec(line);
      if (item) imgsz.push(Number(item[1]));
    } else if (section === 'names') {
      const item = /^\s+'?(\d+)'?:\s*(.*)$/.exec(line);
      if (item) names[Number(item[1])] = unquote(item[2]!);
    }
  }
  if (imgsz.length === 1) imgsz.push(imgsz[0]!);
  if (!names.length || names.some((n) => n === undefined) || imgsz.length !== 2 || imgsz.some((v) => !Number.isInteger(v) || v <= 0) || !stride) {
    throw new Error(`${dir}/metadata.yaml: expected Ultralytics metadata with names, imgsz and stride`);
  }
  const info: ModelInfo = { names, imgsz: [imgsz[0]!, imgsz[1]!], stride };
  if (description) info.description = description;
  return info;
}

/** A signature dimension as a number (-1 when unknown); see SavedModelDim. */
function dimSize(dim: SavedModelDim): number {
  return typeof dim === 'number' ? dim : Number(dim.getSize());
}

/**
 * Adapts a YOLOv8 SavedModel: Ultralytics exports it through onnx2tf with an NHWC input
 * ([batch, h, w, 3]) and the ONNX output layout ([batch, 4 + classes, anchors]); an NCHW input or an
 * [batch, anchors, 4 + classes] output is taken too.
 */
function savedModelRunner(dir: string, model: TfjsSavedModel, info: ModelInfo): ModelRunner {
  const [h, w] = info.imgsz;
  const channels = 4 + info.names.length;
  if (model.inputs.length !== 1 || model.outputs.length !== 1) {
    throw new Error(`${dir}: expected a SavedModel signature with one input and one output, got ${model.inputs.length} and ${model.outputs.length}`);
  }
  const shape = (model.inputs[0]!.shape ?? []).map(dimSize);
  const nhwc = shape[3] === 3 || shape[1] !== 3;
  const expected = nhwc ? [h, w, 3] : [3, h, w];
  if (shape.length !== 4 || shape.slice(1).some((d, i) => d > 0 && d !== expected[i])) {
    throw new Error(`${dir}: SavedModel input has shape [${shape.join(', ')}], expected [batch, ${expected.join(', ')}]`);
  }
  const fixedBatch = shape[0] !== undefined && shape[0] > 0 ? shape[0] : undefined;
  return {
    fixedBatch,
    run: (input) =>
      tf.tidy(() => {
        const x = nhwc ? tf.transpose(input, [0, 2, 3, 1]) : input;
        const result = model.predict(x);
        // A Tensor, or one output in an array or a name map (no instanceof: tfjs-node may bundle its own tfjs-core copy).
        let out = (Array.isArray(result) ? result[0] : typeof (result as tf.Tensor).rank === 'number' ? result : Object.values(result)[0]) as tf.Tensor;
        if (out.rank === 3 && out.shape[1] !== channels && out.shape[2] === channels) out = tf.transpose(out, [0, 2, 1]);
        return out;
      }),
    dispose: () => model.dispose(),
  };
}
