import { createRequire } from 'node:module';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { setThreadsCount, setWasmPaths } from '@tensorflow/tfjs-backend-wasm';

export type TfjsBackendName = 'wasm' | 'cpu';

export interface TfjsBackendOptions {
  /** XNNPACK threads for wasm; only used where the runtime supports wasm threads (Node does not). */
  threads?: number;
}

let wasmConfigured = false;

/**
 * Selects and initialises a tfjs backend. The backend is process-wide state in tfjs, so every tfjs
 * model in the process runs on the last backend selected. wasm (XNNPACK, SIMD) is the default: it is
 * several times faster than the pure-JavaScript cpu backend and needs no native build.
 */
export async function initTfjsBackend(name: TfjsBackendName = 'wasm', options: TfjsBackendOptions = {}): Promise<string> {
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
