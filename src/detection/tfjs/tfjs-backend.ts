import { createRequire } from 'node:module';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { setThreadsCount, setWasmPaths } from '@tensorflow/tfjs-backend-wasm';

/**
 * wasm and cpu ship inside npm; node and node-gpu are the native TensorFlow bindings
 * (@tensorflow/tfjs-node, @tensorflow/tfjs-node-gpu), optional and loaded only when asked for.
 */
export type TfjsBackendName = 'wasm' | 'cpu' | 'node' | 'node-gpu';
/** TFJS_BACKEND: a backend, or auto (resolved at run time by resolveTfjsBackend in engine-selection.ts). */
export type TfjsBackendSetting = TfjsBackendName | 'auto';
export type NativeTfjsBackendName = 'node' | 'node-gpu';

export const NATIVE_TFJS_PACKAGES: Readonly<Record<NativeTfjsBackendName, string>> = {
  node: '@tensorflow/tfjs-node',
  'node-gpu': '@tensorflow/tfjs-node-gpu',
};

/** Imports a module by name; injected in tests so every branch runs without the native packages. */
export type ModuleImporter = (specifier: string) => Promise<unknown>;
export const importModule: ModuleImporter = (specifier) => import(specifier);

/** Whether a package is installed, answered without importing it (tests inject one). */
export type PackageProbe = (specifier: string) => boolean;
/**
 * Resolves the package's entry file without loading it: importing tfjs-node(-gpu) loads libtensorflow and
 * registers the 'tensorflow' backend, which cannot be undone, so presence is checked before any import.
 */
export const packageInstalled: PackageProbe = (specifier) => {
  try {
    createRequire(import.meta.url).resolve(specifier);
    return true;
  } catch {
    return false;
  }
};

/**
 * A signature dimension as tfjs-node reports it. Its type says number[], but tfjs-node 4.22 hands over
 * TensorShapeProto.Dim messages (`getTensorShape().getDimList()`), whose getSize() is the number (-1 when
 * unknown); plain numbers are taken too.
 */
export type SavedModelDim = number | { getSize(): number };

/** The part of tfjs-node's TFSavedModel this service uses (`tf.node.loadSavedModel`). */
export interface TfjsSavedModel {
  readonly inputs: { name: string; shape?: SavedModelDim[]; dtype: string }[];
  readonly outputs: { name: string; shape?: SavedModelDim[]; dtype: string }[];
  predict(inputs: tf.Tensor | tf.Tensor[] | tf.NamedTensorMap): tf.Tensor | tf.Tensor[] | tf.NamedTensorMap;
  dispose(): void;
}

/** The part of @tensorflow/tfjs-node(-gpu)'s exports this service uses. */
export interface TfjsNodeModule {
  node: {
    loadSavedModel(path: string, tags?: string[], signature?: string): Promise<TfjsSavedModel>;
  };
}

export interface TfjsBackendOptions {
  /** XNNPACK threads for wasm; only used where the runtime supports wasm threads (Node does not). */
  threads?: number;
  /** How node/node-gpu packages are imported (tests inject one). */
  importer?: ModuleImporter;
  /**
   * node-gpu only: fail when TensorFlow sees no GPU (default true). TFJS_BACKEND=auto turns it off when
   * tfjs-node-gpu is already loaded without a GPU and its CPU kernels are the best left (see resolveTfjsBackend).
   */
  requireGpu?: boolean;
}

let wasmConfigured = false;
/** The native binding loaded into this process: tfjs-node and tfjs-node-gpu must never both load. */
let nativeLoaded: { name: NativeTfjsBackendName; module: TfjsNodeModule } | undefined;

/**
 * Imports @tensorflow/tfjs-node or @tensorflow/tfjs-node-gpu, which registers the 'tensorflow'
 * backend on import. Only one of the two may load in a process (both bind libtensorflow and register
 * the same backend name), so asking for the other one afterwards fails.
 */
export async function loadNativeTfjs(name: NativeTfjsBackendName, importer: ModuleImporter = importModule): Promise<TfjsNodeModule> {
  if (nativeLoaded) {
    if (nativeLoaded.name === name) return nativeLoaded.module;
    throw new Error(
      `TFJS_BACKEND=${name}: ${NATIVE_TFJS_PACKAGES[nativeLoaded.name]} is already loaded in this process; ` +
        `${NATIVE_TFJS_PACKAGES[name]} cannot be loaded beside it`,
    );
  }
  const pkg = NATIVE_TFJS_PACKAGES[name];
  let loaded: unknown;
  try {
    loaded = await importer(pkg);
  } catch (error) {
    throw nativeImportError(name, error);
  }
  // An ESM import of these CommonJS packages puts module.exports on `default`; named exports may or may not be lifted.
  const module = [loaded, (loaded as { default?: unknown } | undefined)?.default].find(
    (candidate): candidate is TfjsNodeModule => typeof (candidate as Partial<TfjsNodeModule> | undefined)?.node?.loadSavedModel === 'function',
  );
  if (!module) throw new Error(`TFJS_BACKEND=${name}: ${pkg} loaded but has no tf.node.loadSavedModel; is it a tfjs-node 4.x build?`);
  nativeLoaded = { name, module };
  return nativeLoaded.module;
}

/** The native binding loaded so far, if any (for the SavedModel loader). */
export function loadedNativeTfjs(): { name: NativeTfjsBackendName; module: TfjsNodeModule } | undefined {
  return nativeLoaded;
}

/** For tests only: forget the loaded native module (the real binding cannot be unloaded). */
export function resetNativeTfjsForTests(): void {
  nativeLoaded = undefined;
}

function nativeImportError(name: NativeTfjsBackendName, error: unknown): Error {
  const pkg = NATIVE_TFJS_PACKAGES[name];
  const code = (error as { code?: string } | undefined)?.code;
  const message = error instanceof Error ? error.message : String(error);
  const notInstalled = (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && message.includes(pkg);
  const text = notInstalled
    ? nativeNotInstalledMessage(name)
    : `TFJS_BACKEND=${name}: ${pkg} failed to load (${message}); if libtensorflow is missing, reinstall the package (${installHint(name)})`;
  return new Error(text, { cause: error });
}

function installHint(name: NativeTfjsBackendName): string {
  const pkg = NATIVE_TFJS_PACKAGES[name];
  const ordinary =
    `\`npm install ${pkg}\`, whose install script downloads the libtensorflow${name === 'node-gpu' ? ' GPU (CUDA)' : ''} shared library ` +
    'from storage.googleapis.com, outside the npm registry';
  return name === 'node'
    ? `install it with \`bash scripts/install-tfjs-node\`: ${ordinary}, or where that host is unreachable libtensorflow from pip's tensorflow-cpu wheel`
    : `install it with ${ordinary} (so it needs that network access), or stage another libtensorflow with \`bash scripts/install-tfjs-node node-gpu\``;
}

export function nativeNotInstalledMessage(name: NativeTfjsBackendName): string {
  return `TFJS_BACKEND=${name} needs ${NATIVE_TFJS_PACKAGES[name]}, which is not installed: ${installHint(name)}`;
}

/** True when the active backend is tfjs-node's and its binding sees a GPU device. */
export function tensorflowBackendUsesGpu(): boolean {
  if (tf.getBackend() !== 'tensorflow') return false;
  // NodeJSKernelBackend: isGPUPackage is set for @tensorflow/tfjs-node-gpu, isUsingGpuDevice asks the
  // binding whether TensorFlow lists a GPU device (TF_DeviceList with type "GPU").
  const backend = tf.backend() as { isGPUPackage?: unknown; isUsingGpuDevice?: unknown };
  return backend.isGPUPackage === true && backend.isUsingGpuDevice === true;
}

/**
 * Selects and initialises a tfjs backend and returns the device to report: 'wasm', 'cpu',
 * 'tensorflow-cpu' or 'tensorflow-gpu'. The backend is process-wide state in tfjs, so every tfjs
 * model in the process runs on the last backend selected. wasm (XNNPACK, SIMD) is the default: it is
 * several times faster than the pure-JavaScript cpu backend and needs no native build.
 */
export async function initTfjsBackend(name: TfjsBackendName = 'wasm', options: TfjsBackendOptions = {}): Promise<string> {
  if (name === 'node' || name === 'node-gpu') {
    await loadNativeTfjs(name, options.importer);
    if (!(await tf.setBackend('tensorflow'))) throw new Error(`TFJS_BACKEND=${name}: the "tensorflow" backend of ${NATIVE_TFJS_PACKAGES[name]} failed to initialise`);
    await tf.ready();
    if (tensorflowBackendUsesGpu()) return 'tensorflow-gpu';
    // Asking for node-gpu means asking for a GPU: running on the CPU instead would hide a broken CUDA set-up.
    if (name === 'node-gpu' && options.requireGpu !== false) {
      throw new Error(
        `TFJS_BACKEND=node-gpu: ${NATIVE_TFJS_PACKAGES[name]} loaded but TensorFlow sees no GPU device (NVIDIA driver, or the CUDA and cuDNN libraries its libtensorflow was built for missing: 11.2 and 8.1 for the stock 2.9.1, ` +
          `or no GPU visible to this process); set TFJS_BACKEND=auto, node or wasm to run on the CPU, or DETECTOR_ENGINE=auto to fall back to ONNX Runtime`,
      );
    }
    return 'tensorflow-cpu';
  }
  if (name === 'wasm' && !wasmConfigured) {
    // The .wasm binaries ship in the package; point at them on disk so nothing is fetched over the network.
    const require = createRequire(import.meta.url);
    const dist = path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + path.sep;
    setWasmPaths(dist);
    if (options.threads && options.threads > 0) setThreadsCount(options.threads);
    wasmConfigured = true;
  }
  await withoutProcessHandlers(async () => {
    if (!(await tf.setBackend(name))) throw new Error(`TensorFlow.js backend "${name}" failed to initialise`);
    await tf.ready();
  });
  return tf.getBackend();
}

/**
 * The wasm backend's Emscripten glue installs process-wide 'uncaughtException' and 'unhandledRejection'
 * listeners that rethrow. They would pre-empt the service's own handlers (and mocha's), so any such
 * listener added while the backend initialises is removed again.
 */
async function withoutProcessHandlers(initialise: () => Promise<void>): Promise<void> {
  const exceptionListeners = new Set(process.listeners('uncaughtException'));
  const rejectionListeners = new Set(process.listeners('unhandledRejection'));
  try {
    await initialise();
  } finally {
    for (const listener of process.listeners('uncaughtException')) {
      if (!exceptionListeners.has(listener)) process.removeListener('uncaughtException', listener);
    }
    for (const listener of process.listeners('unhandledRejection')) {
      if (!rejectionListeners.has(listener)) process.removeListener('unhandledRejection', listener);
    }
  }
}
