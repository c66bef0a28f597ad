import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { chooseEngine, resolveTfjsBackend } from '../../../src/detection/engine-selection.ts';
import { initTfjsBackend, loadNativeTfjs, resetNativeTfjsForTests } from '../../../src/detection/tfjs/tfjs-backend.ts';
import type { ModuleImporter, PackageProbe, TfjsSavedModel } from '../../../src/detection/tfjs/tfjs-backend.ts';
import { parseUltralyticsMetadata, TfjsDetector } from '../../../src/detection/tfjs/tfjs-detector.ts';

/** Stands in for tfjs-node's NodeJSKernelBackend: the pure-JS cpu kernels plus the two GPU flags. */
class FakeTensorflowBackend extends MathBackendCPU {
  constructor(
    readonly isGPUPackage: boolean,
    readonly isUsingGpuDevice: boolean,
  ) {
    super();
  }
}

/** Unregisters the fake 'tensorflow' backend (findBackend would initialise it; a failed factory stays registered). */
function forgetTensorflowBackend(): void {
  if ('tensorflow' in tf.engine().registryFactory) tf.removeBackend('tensorflow');
}

interface FakeNative {
  importer: ModuleImporter;
  imported: string[];
}

const GPU_PACKAGE = '@tensorflow/tfjs-node-gpu';
const CPU_PACKAGE = '@tensorflow/tfjs-node';
/** Package-presence probes: both native packages installed, or only the ones named. */
const bothInstalled: PackageProbe = () => true;
const only = (...packages: string[]): PackageProbe => (specifier) => packages.includes(specifier);

/**
 * An importer whose tfjs-node(-gpu) registers a 'tensorflow' backend on import, as the real one does;
 * packages in `failing` throw on import as a binding without libtensorflow does.
 */
function fakeNative(options: { gpu: boolean; savedModel?: (dir: string) => TfjsSavedModel; esmDefault?: boolean; failing?: string[] }): FakeNative {
  const imported: string[] = [];
  return {
    imported,
    importer: async (specifier) => {
      imported.push(specifier);
      if (options.failing?.includes(specifier)) throw new Error('libtensorflow.so.2: cannot open shared object file: No such file or directory');
      tf.registerBackend('tensorflow', () => new FakeTensorflowBackend(specifier === '@tensorflow/tfjs-node-gpu', options.gpu), 3);
      // tfjs kernels are registered per backend name: lend the cpu backend's to the fake.
      for (const kernel of tf.getKernelsForBackend('cpu')) {
        if (!tf.getKernel(kernel.kernelName, 'tensorflow')) tf.registerKernel({ ...kernel, backendName: 'tensorflow' });
      }
      const module = {
        node: {
          loadSavedModel: async (dir: string) => {
            if (!options.savedModel) throw new Error('no SavedModel in this fake');
            return options.savedModel(dir);
          },
        },
      };
      return options.esmDefault ? { default: module } : module;
    },
  };
}

/** Signature dimensions in tfjs-node 4.22's form: TensorShapeProto.Dim messages, read with getSize(). */
function dimMessages(sizes: number[]): { getSize(): number }[] {
  return sizes.map((size) => ({ getSize: () => size }));
}

function missing(): FakeNative {
  const imported: string[] = [];
  return {
    imported,
    importer: async (specifier) => {
      imported.push(specifier);
      throw Object.assign(new Error(`Cannot find package '${specifier}' imported from /work/main/src`), { code: 'ERR_MODULE_NOT_FOUND' });
    },
  };
}

/** Hooks for a suite using fakeNative: forget the fake binding after each test, and leave a real backend active for later specs. */
function undoFakeNativeTfjs(): void {
  after(async () => {
    await tf.setBackend('cpu');
  });
  afterEach(() => {
    resetNativeTfjsForTests();
    forgetTensorflowBackend();
  });
}

describe('engine selection (DETECTOR_ENGINE, TFJS_BACKEND=node|node-gpu) with an injected importer', () => {
  undoFakeNativeTfjs();

  it('takes onnx and tfjs as asked without importing anything', async () => {
    const native = fakeNative({ gpu: true });
    assert.deepEqual(await chooseEngine('onnx', 'wasm', native.importer), { engine: 'onnx', reason: 'DETECTOR_ENGINE=onnx' });
    const tfjs = await chooseEngine('tfjs', 'cpu', native.importer);
    assert.equal(tfjs.engine, 'tfjs');
    assert.equal(tfjs.backend, 'cpu');
    assert.deepEqual(native.imported, []);
  });

  it('auto picks tfjs on node-gpu when tfjs-node-gpu imports and sees a GPU', async () => {
    const native = fakeNative({ gpu: true, esmDefault: true });
    const choice = await chooseEngine('auto', 'wasm', native.importer, bothInstalled);
    assert.equal(choice.engine, 'tfjs');
    assert.equal(choice.backend, 'node-gpu');
    assert.match(choice.reason, /tfjs-node-gpu sees a GPU/);
    assert.deepEqual(native.imported, ['@tensorflow/tfjs-node-gpu']);
    assert.equal(tf.getBackend(), 'tensorflow');
  });

  it('auto falls back to onnx when tfjs-node-gpu is not installed, naming the package and libtensorflow, without importing it', async () => {
    const native = missing();
    const choice = await chooseEngine('auto', 'wasm', native.importer, only());
    assert.deepEqual(native.imported, [], 'presence is resolved before any import');
    assert.equal(choice.engine, 'onnx');
    assert.equal(choice.backend, undefined);
    assert.match(choice.reason, /@tensorflow\/tfjs-node-gpu, which is not installed/);
    assert.match(choice.reason, /libtensorflow/);
    assert.match(choice.reason, /ONNX Runtime/);
  });

  it('auto falls back to onnx when tfjs-node-gpu loads but TensorFlow sees no GPU', async () => {
    const choice = await chooseEngine('auto', 'wasm', fakeNative({ gpu: false }).importer, bothInstalled);
    assert.equal(choice.engine, 'onnx');
    assert.match(choice.reason, /sees no GPU device/);
  });

  it('auto falls back to onnx when the binding fails to load (libtensorflow missing)', async () => {
    const importer: ModuleImporter = async () => {
      throw new Error('libtensorflow.so.2: cannot open shared object file: No such file or directory');
    };
    const choice = await chooseEngine('auto', 'wasm', importer, bothInstalled);
    assert.equal(choice.engine, 'onnx');
    assert.match(choice.reason, /tfjs-node-gpu failed to load \(libtensorflow\.so\.2: cannot open/);
  });

  it('auto falls back to onnx when the package has no tf.node (not a tfjs-node build)', async () => {
    const choice = await chooseEngine('auto', 'wasm', async () => ({ version: '0' }), bothInstalled);
    assert.equal(choice.engine, 'onnx');
    assert.match(choice.reason, /has no tf\.node\.loadSavedModel/);
  });

  it('auto falls back to onnx when the tensorflow backend fails to initialise', async () => {
    const importer: ModuleImporter = async () => {
      tf.registerBackend('tensorflow', () => {
        throw new Error('CUDA driver version is insufficient');
      });
      return { node: { loadSavedModel: async () => assert.fail('not called') } };
    };
    const choice = await chooseEngine('auto', 'wasm', importer, bothInstalled);
    assert.equal(choice.engine, 'onnx');
    assert.match(choice.reason, /failed to initialise/);
  });

  it('TFJS_BACKEND=node fails clearly when @tensorflow/tfjs-node is not installed', async () => {
    await assert.rejects(initTfjsBackend('node', { importer: missing().importer }), (error: Error) => {
      assert.match(error.message, /^TFJS_BACKEND=node needs @tensorflow\/tfjs-node, which is not installed/);
      assert.match(error.message, /downloads the libtensorflow shared library from storage\.googleapis\.com/);
      return true;
    });
  });

  it('TFJS_BACKEND=node reports the CPU device of the tensorflow backend', async () => {
    assert.equal(await initTfjsBackend('node', { importer: fakeNative({ gpu: false }).importer }), 'tensorflow-cpu');
  });

  it('TFJS_BACKEND=node-gpu is an error when the binding sees no GPU, instead of running on the CPU', async () => {
    await assert.rejects(initTfjsBackend('node-gpu', { importer: fakeNative({ gpu: false }).importer }), (error: Error) => {
      assert.match(error.message, /^TFJS_BACKEND=node-gpu: @tensorflow\/tfjs-node-gpu loaded but TensorFlow sees no GPU device/);
      assert.match(error.message, /TFJS_BACKEND=auto, node or wasm to run on the CPU/);
      return true;
    });
  });

  it('TFJS_BACKEND=node-gpu reports tensorflow-gpu when the binding sees a GPU', async () => {
    assert.equal(await initTfjsBackend('node-gpu', { importer: fakeNative({ gpu: true }).importer }), 'tensorflow-gpu');
  });

  it('never loads tfjs-node and tfjs-node-gpu in one process', async () => {
    const native = fakeNative({ gpu: true });
    await loadNativeTfjs('node', native.importer);
    await loadNativeTfjs('node', native.importer); // the same one again is fine and imports nothing
    await assert.rejects(loadNativeTfjs('node-gpu', native.importer), /@tensorflow\/tfjs-node is already loaded in this process; @tensorflow\/tfjs-node-gpu cannot be loaded beside it/);
    assert.deepEqual(native.imported, ['@tensorflow/tfjs-node']);
    // auto then finds tfjs-node-gpu unusable and stays on onnx
    assert.equal((await chooseEngine('auto', 'wasm', native.importer, bothInstalled)).engine, 'onnx');
  });
});

describe('TFJS_BACKEND=auto (resolved at run time, fakes for the native packages)', () => {
  undoFakeNativeTfjs();

  it('is wasm when neither native package is installed, importing nothing', async () => {
    const native = fakeNative({ gpu: true });
    const choice = await resolveTfjsBackend('auto', native.importer, only());
    assert.equal(choice.backend, 'wasm');
    assert.equal(choice.requireGpu, undefined);
    assert.equal(choice.reason, 'TFJS_BACKEND=auto: @tensorflow/tfjs-node-gpu is not installed; @tensorflow/tfjs-node is not installed; using wasm');
    assert.deepEqual(native.imported, []);
  });

  it('is node-gpu when tfjs-node-gpu is installed and sees a GPU; tfjs-node is never imported', async () => {
    const native = fakeNative({ gpu: true });
    const choice = await resolveTfjsBackend('auto', native.importer, bothInstalled);
    assert.equal(choice.backend, 'node-gpu');
    assert.match(choice.reason, /^TFJS_BACKEND=auto: @tensorflow\/tfjs-node-gpu sees a GPU$/);
    assert.deepEqual(native.imported, [GPU_PACKAGE]);
    assert.equal(await initTfjsBackend(choice.backend, { importer: native.importer }), 'tensorflow-gpu');
  });

  it('is node when only tfjs-node is installed; tfjs-node-gpu is never imported', async () => {
    const native = fakeNative({ gpu: false });
    const choice = await resolveTfjsBackend('auto', native.importer, only(CPU_PACKAGE));
    assert.equal(choice.backend, 'node');
    assert.match(choice.reason, /tfjs-node-gpu is not installed; using @tensorflow\/tfjs-node \(libtensorflow on the CPU\)/);
    assert.deepEqual(native.imported, [CPU_PACKAGE]);
    assert.equal(await initTfjsBackend(choice.backend, { importer: native.importer }), 'tensorflow-cpu');
  });

  it('keeps tfjs-node-gpu on the CPU when it loads without a GPU: tfjs-node is not loaded beside it', async () => {
    const native = fakeNative({ gpu: false });
    const choice = await resolveTfjsBackend('auto', native.importer, bothInstalled);
    assert.equal(choice.backend, 'node-gpu');
    assert.equal(choice.requireGpu, false);
    assert.match(choice.reason, /sees no GPU device .*; running its tensorflow backend on the CPU \(@tensorflow\/tfjs-node cannot be loaded beside it\)/);
    assert.deepEqual(native.imported, [GPU_PACKAGE]);
    assert.equal(await initTfjsBackend(choice.backend, { importer: native.importer, requireGpu: choice.requireGpu }), 'tensorflow-cpu');
  });

  it('is node when tfjs-node-gpu is installed but fails to load (libtensorflow missing)', async () => {
    const native = fakeNative({ gpu: false, failing: [GPU_PACKAGE] });
    const choice = await resolveTfjsBackend('auto', native.importer, bothInstalled);
    assert.equal(choice.backend, 'node');
    assert.match(choice.reason, /tfjs-node-gpu failed to load \(libtensorflow\.so\.2: cannot open.*; using @tensorflow\/tfjs-node/);
    assert.deepEqual(native.imported, [GPU_PACKAGE, CPU_PACKAGE]);
  });

  it('is wasm when the installed tfjs-node fails to load, saying why', async () => {
    const native = fakeNative({ gpu: false, failing: [CPU_PACKAGE] });
    const choice = await resolveTfjsBackend('auto', native.importer, only(CPU_PACKAGE));
    assert.equal(choice.backend, 'wasm');
    assert.match(choice.reason, /tfjs-node failed to load .*; using wasm$/);
  });

  it('takes a named backend as asked, importing nothing', async () => {
    const native = fakeNative({ gpu: true });
    assert.deepEqual(await resolveTfjsBackend('cpu', native.importer, bothInstalled), { backend: 'cpu', reason: 'TFJS_BACKEND=cpu' });
    assert.deepEqual(native.imported, []);
  });

  it('DETECTOR_ENGINE=tfjs carries the resolved backend and why into the engine choice', async () => {
    const choice = await chooseEngine('tfjs', 'auto', fakeNative({ gpu: false }).importer, bothInstalled);
    assert.equal(choice.engine, 'tfjs');
    assert.equal(choice.backend, 'node-gpu');
    assert.equal(choice.requireGpu, false);
    assert.match(choice.reason, /^DETECTOR_ENGINE=tfjs, TFJS_BACKEND=auto: /);
    resetNativeTfjsForTests();
    forgetTensorflowBackend();
    const wasm = await chooseEngine('tfjs', 'auto', missing().importer, only());
    assert.deepEqual(wasm.backend, 'wasm');
  });

  it('DETECTOR_ENGINE=auto keeps its rule whatever TFJS_BACKEND says: tfjs only on a GPU, else ONNX Runtime', async () => {
    assert.equal((await chooseEngine('auto', 'auto', fakeNative({ gpu: true }).importer, bothInstalled)).backend, 'node-gpu');
    resetNativeTfjsForTests();
    forgetTensorflowBackend();
    const native = fakeNative({ gpu: false });
    assert.equal((await chooseEngine('auto', 'auto', native.importer, only(CPU_PACKAGE))).engine, 'onnx');
    assert.deepEqual(native.imported, [], 'tfjs-node is not tried: on the CPU ONNX Runtime is faster');
  });
});

describe('TF SavedModel on tfjs-node (faked binding)', () => {
  let dir: string;
  after(async () => {
    await tf.setBackend('cpu');
  });
  const metadata = [
    "description: Ultralytics YOLOv8n model trained on 'coco.yaml'",
    'stride: 32',
    'task: detect',
    'batch: 1',
    'imgsz:',
    '- 32',
    '- 32',
    'names:',
    '  0: person',
    "  1: 'traffic light'",
    'args:',
    '  batch: 1',
    '',
  ].join('\n');

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'vidsense-savedmodel-'));
    await writeFile(path.join(dir, 'saved_model.pb'), '');
    await writeFile(path.join(dir, 'metadata.yaml'), metadata);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  afterEach(() => {
    resetNativeTfjsForTests();
    forgetTensorflowBackend();
  });

  it('parses the Ultralytics metadata.yaml', () => {
    assert.deepEqual(parseUltralyticsMetadata(dir, metadata), {
      names: ['person', 'traffic light'],
      imgsz: [32, 32],
      stride: 32,
      description: "Ultralytics YOLOv8n model trained on 'coco.yaml'",
    });
    assert.throws(() => parseUltralyticsMetadata(dir, 'stride: 32\n'), /expected Ultralytics metadata with names, imgsz and stride/);
  });

  it('refuses a SavedModel on wasm with a message naming node/node-gpu', async () => {
    await assert.rejects(TfjsDetector.create(dir, { backend: 'wasm' }), /is a TensorFlow SavedModel, which only TFJS_BACKEND=node or node-gpu can load/);
  });

  it('runs an NHWC batch-1 SavedModel through tf.node.loadSavedModel and disposes every tensor', async () => {
    const seen: number[][] = [];
    let disposed = false;
    const savedModel: TfjsSavedModel = {
      // Shapes as tfjs-node 4.22 reports them: TensorShapeProto.Dim messages, not numbers.
      inputs: [{ name: 'images', shape: dimMessages([1, 32, 32, 3]), dtype: 'float32' }],
      outputs: [{ name: 'output_0', shape: dimMessages([1, 6, 21]), dtype: 'float32' }],
      predict: (x) => {
        const input = x as tf.Tensor;
        seen.push(input.shape);
        // One confident 'traffic light' box centred at (16, 16), 8x8 in input pixels, at anchor 0.
        const out = new Float32Array(6 * 21);
        out[0] = 16; out[21] = 16; out[42] = 8; out[63] = 8; out[5 * 21] = 0.9;
        return { output_0: tf.tensor3d(out, [1, 6, 21]) };
      },
      dispose: () => {
        disposed = true;
      },
    };
    const native = fakeNative({ gpu: true, savedModel: () => savedModel });
    const detector = await TfjsDetector.create(dir, { backend: 'node-gpu', importer: native.importer });
    assert.equal(detector.device, 'tensorflow-gpu');
    assert.deepEqual(detector.modelInfo.names, ['person', 'traffic light']);
    const frame = { tensor: new Float32Array(3 * 32 * 32), sourceWidth: 32, sourceHeight: 32, scale: 1, padLeft: 0, padTop: 0 };
    const before = tf.memory().numTensors;
    // Three frames on a batch-1 model: three runs of one frame each.
    const results = await detector.detectBatch([frame, frame, frame], { confidenceThreshold: 0.25, iouThreshold: 0.7 });
    assert.equal(tf.memory().numTensors, before);
    assert.deepEqual(seen, [[1, 32, 32, 3], [1, 32, 32, 3], [1, 32, 32, 3]]);
    assert.equal(results.length, 3);
    for (const detections of results) {
      assert.equal(detections.length, 1);
      assert.equal(detections[0]!.className, 'traffic light');
      assert.deepEqual(detections[0]!.box, [12, 12, 20, 20]);
    }
    await detector.close();
    assert.equal(disposed, true);
  });
});
