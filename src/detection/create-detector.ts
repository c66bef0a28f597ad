import { existsSync } from 'node:fs';
import { access } from 'node:fs/promises';
import path from 'node:path';
import { DetectorPool } from './detector-pool.ts';
import { OnnxDetector, type OnnxDetectorOptions } from './onnx-detector.ts';
import { convertOnnxFile } from './tfjs/convert-file.ts';
import { chooseEngine } from './engine-selection.ts';
import type { EngineChoice, RequestedEngine } from './engine-selection.ts';
import { importModule, packageInstalled } from './tfjs/tfjs-backend.ts';
import type { ModuleImporter, PackageProbe, TfjsBackendSetting } from './tfjs/tfjs-backend.ts';
import { TfjsDetector } from './tfjs/tfjs-detector.ts';
import type { Detector } from './types.ts';

export type { DetectorEngine } from './engine-selection.ts';

export interface CreateDetectorOptions {
  /** Defaults to ONNX Runtime, the fastest engine installed for the CPU here; auto prefers tfjs-node-gpu on a GPU. */
  engine?: RequestedEngine;
  /** The YOLOv8 ONNX export; the TensorFlow.js engine runs a graph model converted from it. */
  modelPath: string;
  /** Inference threads; 0 or undefined lets the engine choose. */
  threads?: number;
  /**
   * ONNX Runtime: run `lanes` sessions of `threadsPerLane` threads, each on a worker thread of its own
   * (DetectorPool; see planLanes); undefined runs one session of `threads` on the calling thread (its runs
   * then hold the event loop).
   */
  onnxLanes?: { lanes: number; threadsPerLane: number };
  /** ONNX Runtime: frames per session.run (the rewritten model's batch is dynamic). */
  onnxFramesPerRun?: number;
  /** ONNX Runtime: told when the model keeps its fixed batch (frames then run one batch-sized chunk at a time). */
  onOnnxFixedBatch?: (reason: string) => void;
  /** ONNX Runtime: told when the model keeps its float input (the preprocessing fold refused it). */
  onOnnxFloatInput?: (reason: string) => void;
  /** ONNX Runtime: extra session settings (the benchmark asks for the optimized graph). */
  onnxSessionOptions?: OnnxDetectorOptions['sessionOptions'];
  /**
   * TensorFlow.js: the graph model's directory (or a SavedModel's), the backend (auto: node-gpu with a GPU,
   * else node, else wasm, whichever is installed) and the most frames per graph execution (default 8).
   */
  tfjs?: { modelDir: string; backend: TfjsBackendSetting; maxBatch?: number };
  /** Told which engine was picked and why (the worker logs it). */
  onChoice?: (choice: EngineChoice) => void;
  /** How @tensorflow/tfjs-node(-gpu) is imported (tests inject one). */
  importer?: ModuleImporter;
  /** Whether @tensorflow/tfjs-node(-gpu) is installed, checked before importing (tests inject one). */
  isInstalled?: PackageProbe;
}

/** The one place that picks an inference engine. */
export async function createDetector(options: CreateDetectorOptions): Promise<Detector> {
  try {
    await access(options.modelPath);
  } catch {
    // Weights are fetched, never committed, so a missing file usually means the fetch step was skipped.
    throw new Error(`model file not found: ${options.modelPath} (run \`npm run fetch-model\`, or point MODEL_PATH at a YOLOv8 ONNX export)`);
  }
  const importer = options.importer ?? importModule;
  const choice = await chooseEngine(options.engine ?? 'onnx', options.tfjs?.backend ?? 'auto', importer, options.isInstalled ?? packageInstalled);
  options.onChoice?.(choice);
  if (choice.engine === 'tfjs') {
    if (!options.tfjs) throw new Error('the tfjs engine needs tfjs.modelDir and tfjs.backend');
    // chooseEngine always names the backend for tfjs (auto resolved); wasm only guards the type.
    const backend = choice.backend ?? 'wasm';
    // A TF SavedModel directory (node/node-gpu only) is loaded as it is; otherwise the graph model is
    // converted from the ONNX export: idempotent and under a second, so a missing or stale one is made here.
    if (!existsSync(path.join(options.tfjs.modelDir, 'saved_model.pb'))) await convertOnnxFile(options.modelPath, options.tfjs.modelDir);
    return TfjsDetector.create(options.tfjs.modelDir, {
      backend,
      threads: options.threads,
      maxBatch: options.tfjs.maxBatch,
      requireGpu: choice.requireGpu,
      importer,
    });
  }
  if (options.onnxLanes !== undefined) {
    return DetectorPool.create({
      modelPath: options.modelPath,
      ...options.onnxLanes,
      framesPerRun: options.onnxFramesPerRun,
      onFixedBatch: options.onOnnxFixedBatch,
      onFloatInput: options.onOnnxFloatInput,
    });
  }
  return OnnxDetector.create(options.modelPath, {
    threads: options.threads,
    framesPerRun: options.onnxFramesPerRun,
    onFixedBatch: options.onOnnxFixedBatch,
    onFloatInput: options.onOnnxFloatInput,
    sessionOptions: options.onnxSessionOptions,
  });
}
