import * as tf from '@tensorflow/tfjs-core';
import {
  importModule,
  loadedNativeTfjs,
  loadNativeTfjs,
  NATIVE_TFJS_PACKAGES,
  nativeNotInstalledMessage,
  packageInstalled,
  tensorflowBackendUsesGpu,
} from './tfjs/tfjs-backend.ts';
import type { ModuleImporter, PackageProbe, TfjsBackendName, TfjsBackendSetting } from './tfjs/tfjs-backend.ts';

export type DetectorEngine = 'onnx' | 'tfjs';
export type RequestedEngine = DetectorEngine | 'auto';

export interface EngineChoice {
  engine: DetectorEngine;
  /** The tfjs backend, when engine is tfjs. */
  backend?: TfjsBackendName;
  /** false when TFJS_BACKEND=auto settled on tfjs-node-gpu's kernels on the CPU (see resolveTfjsBackend). */
  requireGpu?: boolean;
  /** Why this engine was picked, for the start-up log and /readyz. */
  reason: string;
}

/**
 * Resolves DETECTOR_ENGINE. onnx is taken as asked; tfjs runs on TFJS_BACKEND (auto resolved by
 * resolveTfjsBackend). auto runs TensorFlow.js on @tensorflow/tfjs-node-gpu when that package is
 * installed, imports and its backend sees a CUDA GPU; otherwise ONNX Runtime, the fastest CPU engine
 * installed (tfjs-node on the CPU is not preferred over it).
 */
export async function chooseEngine(
  requested: RequestedEngine,
  tfjsBackend: TfjsBackendSetting,
  importer: ModuleImporter = importModule,
  isInstalled: PackageProbe = packageInstalled,
): Promise<EngineChoice> {
  if (requested === 'onnx') return { engine: 'onnx', reason: 'DETECTOR_ENGINE=onnx' };
  if (requested === 'tfjs') {
    const { backend, requireGpu, reason } = await resolveTfjsBackend(tfjsBackend, importer, isInstalled);
    return { engine: 'tfjs', backend, ...(requireGpu === false ? { requireGpu } : {}), reason: `DETECTOR_ENGINE=tfjs, ${reason}` };
  }
  const gpu = await probeTfjsNodeGpu(importer, isInstalled);
  if (gpu.ok) return { engine: 'tfjs', backend: 'node-gpu', reason: `auto: ${gpu.detail}` };
  return { engine: 'onnx', reason: `auto: ${gpu.detail}; using ONNX Runtime on the CPU` };
}

/**
 * Resolves TFJS_BACKEND. A named backend is taken as asked. auto picks, at run time: node-gpu when
 * @tensorflow/tfjs-node-gpu is installed and sees a GPU; else node when @tensorflow/tfjs-node is installed;
 * else wasm. Presence is checked by resolving each package before importing it, and the two native
 * packages are never both loaded: once tfjs-node-gpu has loaded (its binding cannot be unloaded), a
 * missing GPU leaves its own tensorflow backend on the CPU, libtensorflow's CPU kernels as in tfjs-node.
 */
export async function resolveTfjsBackend(
  setting: TfjsBackendSetting,
  importer: ModuleImporter = importModule,
  isInstalled: PackageProbe = packageInstalled,
): Promise<{ backend: TfjsBackendName; requireGpu?: boolean; reason: string }> {
  if (setting !== 'auto') return { backend: setting, reason: `TFJS_BACKEND=${setting}` };
  const gpuPackage = NATIVE_TFJS_PACKAGES['node-gpu'];
  const cpuPackage = NATIVE_TFJS_PACKAGES.node;
  const notes: string[] = [];
  const loaded = loadedNativeTfjs()?.name;
  if (loaded !== 'node') {
    if (loaded === 'node-gpu' || isInstalled(gpuPackage)) {
      const gpu = await probeTfjsNodeGpu(importer, isInstalled);
      if (gpu.ok) return { backend: 'node-gpu', reason: `TFJS_BACKEND=auto: ${gpu.detail}` };
      if (loadedNativeTfjs()?.name === 'node-gpu') {
        return {
          backend: 'node-gpu',
          requireGpu: false,
          reason: `TFJS_BACKEND=auto: ${gpu.detail}; running its tensorflow backend on the CPU (${cpuPackage} cannot be loaded beside it)`,
        };
      }
      notes.push(gpu.detail);
    } else {
      notes.push(`${gpuPackage} is not installed`);
    }
  }
  if (loaded === 'node' || isInstalled(cpuPackage)) {
    try {
      await loadNativeTfjs('node', importer);
      return { backend: 'node', reason: `TFJS_BACKEND=auto: ${[...notes, `using ${cpuPackage} (libtensorflow on the CPU)`].join('; ')}` };
    } catch (error) {
      notes.push(error instanceof Error ? error.message : String(error));
    }
  } else {
    notes.push(`${cpuPackage} is not installed`);
  }
  return { backend: 'wasm', reason: `TFJS_BACKEND=auto: ${notes.join('; ')}; using wasm` };
}

/**
 * Imports @tensorflow/tfjs-node-gpu (when installed), selects its 'tensorflow' backend and asks whether
 * it runs on a GPU. Never throws: any failure is a reason not to use it. When it loads but finds no GPU
 * the binding stays loaded (it cannot be unloaded) and 'tensorflow' stays the active tfjs backend; the
 * ONNX engine picked then does not use tfjs, and a later initTfjsBackend selects its backend explicitly.
 */
export async function probeTfjsNodeGpu(
  importer: ModuleImporter = importModule,
  isInstalled: PackageProbe = packageInstalled,
): Promise<{ ok: boolean; detail: string }> {
  const pkg = NATIVE_TFJS_PACKAGES['node-gpu'];
  if (loadedNativeTfjs()?.name !== 'node-gpu' && !isInstalled(pkg)) return { ok: false, detail: nativeNotInstalledMessage('node-gpu') };
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
