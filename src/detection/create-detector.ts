import { access } from 'node:fs/promises';
import { OnnxDetector } from './onnx-detector.ts';
import { convertOnnxFile } from './tfjs/convert-file.ts';
import type { TfjsBackendName } from './tfjs/tfjs-backend.ts';
import { TfjsDetector } from './tfjs/tfjs-detector.ts';
import type { Detector } from './types.ts';

export type DetectorEngine = 'onnx' | 'tfjs';

export interface CreateDetectorOptions {
  /** Defaults to ONNX Runtime, the fastest engine installed for the CPU here. */
  engine?: DetectorEngine;
  /** The YOLOv8 ONNX export; the TensorFlow.js engine runs a graph model converted from it. */
  modelPath: string;
  /** Inference threads; 0 or undefined lets the engine choose. */
  threads?: number;
  tfjs?: { modelDir: string; backend: TfjsBackendName };
}

/** The one place that picks an inference engine. */
export async function createDetector(options: CreateDetectorOptions): Promise<Detector> {
  try {
    await access(options.modelPath);
  } catch {
    // Weights are fetched, never committed, so a missing file usually means the fetch step was skipped.
    throw new Error(`model file not found: ${options.modelPath} (run \`npm run fetch-model\`, or point MODEL_PATH at a YOLOv8 ONNX export)`);
  }
  if (options.engine === 'tfjs') {
    if (!options.tfjs) throw new Error('the tfjs engine needs tfjs.modelDir and tfjs.backend');
    // Converting is idempotent and takes under a second, so a missing or stale graph model is made here.
    await convertOnnxFile(options.modelPath, options.tfjs.modelDir);
    return TfjsDetector.create(options.tfjs.modelDir, { backend: options.tfjs.backend, threads: options.threads });
  }
  return OnnxDetector.create(options.modelPath, { threads: options.threads });
}
