import { createHash } from 'node:crypto';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import * as ort from 'onnxruntime-node';
import { hwcToChw } from './letterbox.ts';
import { readOnnxMetadataProps } from './onnx-metadata.ts';
import { calibrationModel, QUANTIZER_VERSION, RangeCollector, writeInt8Model, type ActivationType, type Int8Plan } from './onnx-quantize.ts';
import type { PreparedFrame } from './types.ts';

/** metadata_props key of a quantized model: what it was made from, so a changed model or calibration set makes it again. */
export const INT8_KEY_METADATA = 'vidsense.int8.key';

/** The cached int8 model beside an fp32 one: models/yolov8n.onnx -> models/yolov8n.int8.onnx. */
export function int8ModelPath(modelPath: string): string {
  return `${modelPath.replace(/\.onnx$/i, '')}.int8.onnx`;
}

export interface QuantizeStats {
  frames: number;
  /** Tensors quantized / measured on the calibration frames, and nodes left in float. */
  tensors: number;
  calibrated: number;
  floatNodes: number;
  calibrationMs: number;
  totalMs: number;
}

/**
 * Quantizes an fp32 YOLOv8 export (see onnx-quantize.ts): runs it on ONNX Runtime with the tensors to
 * calibrate made outputs, one frame at a time, then writes the QDQ model.
 */
export async function quantizeInt8(
  modelBytes: Uint8Array,
  frames: readonly PreparedFrame[],
  options: { activations?: ActivationType; metadata?: Record<string, string> } = {},
): Promise<{ bytes: Uint8Array; plan: Int8Plan; stats: QuantizeStats }> {
  if (frames.length === 0) throw new Error('int8 quantization needs at least one calibration frame');
  const started = performance.now();
  const { bytes: calibration, plan } = calibrationModel(modelBytes);
  const { height, width } = plan.input;
  // No graph optimizations: with ~200 outputs ONNX Runtime's fusions and layout changes cost more than they
  // save (measured about twice as slow at 'all'), and the tensors are then exactly the model's own.
  const session = await ort.InferenceSession.create(calibration, { executionProviders: ['cpu'], graphOptimizationLevel: 'disabled' });
  const collector = new RangeCollector();
  try {
    for (const frame of frames) {
      if (frame.pixels.length !== 3 * height * width) throw new Error(`calibration frame has ${frame.pixels.length} bytes, the model takes ${height}x${width}x3`);
      const input = new ort.Tensor('float32', hwcToChw(frame.pixels, height * width), [1, 3, height, width]);
      const outputs = await session.run({ [plan.input.name]: input }, plan.calibrated);
      input.dispose();
      for (const name of plan.calibrated) collector.observe(name, outputs[name]!.data as Float32Array);
      for (const tensor of Object.values(outputs)) tensor.dispose();
    }
  } finally {
    await session.release();
  }
  const calibrationMs = performance.now() - started;
  const { bytes } = writeInt8Model(modelBytes, collector.ranges, options.metadata, { activations: options.activations });
  return {
    bytes,
    plan,
    stats: { frames: frames.length, tensors: plan.tensors.length, calibrated: plan.calibrated.length, floatNodes: plan.floatNodes.length, calibrationMs, totalMs: performance.now() - started },
  };
}

export interface Int8ModelOptions {
  /** The fp32 ONNX export. */
  modelPath: string;
  /** Where the quantized model is kept; default int8ModelPath(modelPath). */
  cachePath?: string;
  /** Names the calibration set (its source's content hash and how frames are taken from it): part of the cache key. */
  calibrationId: string;
  /** The calibration frames at the model's input size; asked for only when the cached model is missing or stale. */
  calibrationFrames: () => Promise<PreparedFrame[]>;
  activations?: ActivationType;
}

/**
 * The int8 model for `modelPath`: the cached file when its key (quantizer version, activation type, the fp32
 * model's SHA-256 and the calibration set) matches, else a new quantization written over it (through a
 * temporary file and a rename, so a concurrent reader sees the old or the new file, never half of one).
 */
export async function ensureInt8Model(options: Int8ModelOptions): Promise<{ path: string; quantized?: QuantizeStats }> {
  const cachePath = options.cachePath ?? int8ModelPath(options.modelPath);
  const activations = options.activations ?? 'uint8';
  const modelBytes = await readFile(options.modelPath);
  const key = sha256([QUANTIZER_VERSION, activations, sha256(modelBytes), options.calibrationId].join('\n'));
  if ((await cachedKey(cachePath)) === key) return { path: cachePath };
  const frames = await options.calibrationFrames();
  const { bytes, stats } = await quantizeInt8(modelBytes, frames, {
    activations,
    metadata: { [INT8_KEY_METADATA]: key, 'vidsense.int8.calibration': options.calibrationId, 'vidsense.int8.activations': activations },
  });
  const temporary = `${cachePath}.${process.pid}.tmp`;
  try {
    await writeFile(temporary, bytes);
    await rename(temporary, cachePath);
  } finally {
    await rm(temporary, { force: true });
  }
  return { path: cachePath, quantized: stats };
}

async function cachedKey(file: string): Promise<string | undefined> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    return readOnnxMetadataProps(bytes).get(INT8_KEY_METADATA);
  } catch {
    return undefined; // not a model we can read: made again
  }
}

export function sha256(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}
