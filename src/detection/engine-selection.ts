import * as tf from '@tensorflow/tfjs-core';
import { importModule, loadNativeTfjs, NATIVE_TFJS_PACKAGES, tensorflowBackendUsesGpu } from './tfjs/tfjs-backend.ts';
import type { ModuleImporter, TfjsBackendName } from './tfjs/tfjs-backend.ts';

export type DetectorEngine = 'onnx' | 'tfjs';
export type RequestedEngine = DetectorEngine | 'auto';

export interface EngineChoice {
  engine: DetectorEngine;
  /** The tfjs backend, when engine is tfjs. */
  backend?: TfjsBackendName;
  /** Why this engine was picked, for the start-up log. */
  reason: string;
}

/**
 * Resolves DETECTOR_ENGINE. onnx and tfjs are taken as asked. auto runs TensorFlow.js on
 * @tensorflow/tfjs-node-gpu when that package imports and its backend sees a CUDA GPU; otherwise ONNX
 * Runtime, the fastest CPU engine installed (tfjs-node on the CPU is not preferred over it).
 */
export async function chooseEngine(
  requested: RequestedEngine,
  tfjsBackend: TfjsBackendName,
  importer: ModuleImporter = importModule,
): Promise<EngineChoice> {
  if (requested === 'onnx') return { engine: 'onnx', reason: 'DETECTOR_ENGINE=onnx' };
  if (requested === 'tfjs') return { engine: 'tfjs', backend: tfjsBackend, reason: `DETECTOR_ENGINE=tfjs, TFJS_BACKEND=${tfjsBackend}` };
  const gpu = await probeTfjsNodeGpu(importer);
  if (gpu.ok) return { engine: 'tfjs', backend: 'node-gpu', reason: `auto: ${gpu.detail}` };
  return { engine: 'onnx', reason: `auto: ${gpu.detail}; using ONNX Runtime on the CPU` };
}

/**
 * Imports @tensorflow/tfjs-node-gpu, selects its 'tensorflow' backend and asks whether it runs on a
 * GPU. Never throws: any failure is a reason not to use it. When it loads but finds no GPU the binding
 * stays loaded (it cannot be unloaded) and 'tensorflow' stays the active tfjs backend; the ONNX engine
 * picked then does not use tfjs, and a later initTfjsBackend selects its backend explicitly.
 */
export async function probeTfjsNodeGpu(importer: ModuleImporter = importModule): Promise<{ ok: boolean; detail: string }> {
  const pkg = NATIVE_TFJS_PACKAGES['node-gpu'];
  try {
    await loadNativeTfjs('node-gpu', importer);
  } catch (error) {
    return { ok: false, detail: error instanceof Error ? error.message : String(error) };
  }
  try {
    if (!(await tf.setBackend('tensorflow'))) return { ok: false, detail: `${pkg} loaded but its "tensorflow" backend failed to initialise` };
    await tf.ready();
    if (tf.engine().backendName !== 'tensorflow') return { ok: false, detail: `${pkg} loaded but the active backend is "${tf.engine().backendName}"` };
    if (!tensorflowBackendUsesGpu()) {
      return { ok: false, detail: `${pkg} loaded but TensorFlow sees no GPU device (CUDA/cuDNN libraries or driver missing?)` };
    }
    return { ok: true, detail: `${pkg} sees a GPU` };
  } catch (error) {
    return { ok: false, detail: `${pkg} failed to initialise: ${error instanceof Error ? error.message : String(error)}` };
  }
}
