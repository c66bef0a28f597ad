import { access } from 'node:fs/promises';
import { OnnxDetector } from './onnx-detector.ts';
import type { Detector } from './types.ts';

export interface CreateDetectorOptions {
  modelPath: string;
  /** Inference threads; 0 or undefined lets the engine choose. */
  threads?: number;
}

/** The one place that picks an inference engine (ONNX Runtime only for now). */
export async function createDetector(options: CreateDetectorOptions): Promise<Detector> {
  try {
    await access(options.modelPath);
  } catch {
    // Weights are fetched, never committed, so a missing file usually means the fetch step was skipped.
    throw new Error(`model file not found: ${options.modelPath} (run \`npm run fetch-model\`, or point MODEL_PATH at a YOLOv8 ONNX export)`);
  }
  return OnnxDetector.create(options.modelPath, { threads: options.threads });
}
