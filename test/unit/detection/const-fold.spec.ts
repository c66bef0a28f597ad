import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { binaryConst, concatConst, ConstFoldError, gatherConst, reshapeConst, shapeTensor, sliceConst } from '../../../src/detection/tfjs/const-fold.ts';
import type { ConstTensor } from '../../../src/detection/tfjs/const-fold.ts';
import { OnnxConversionError } from '../../../src/detection/tfjs/conversion-errors.ts';
import { convertOnnxToTfjs } from '../../../src/detection/tfjs/convert.ts';
import type { OnnxModel, OnnxNode, OnnxTensor } from '../../../src/detection/tfjs/onnx-reader.ts';
import { initTfjsBackend } from '../../../src/detection/tfjs/tfjs-backend.ts';
import { int64Tensor, onnxGraph, onnxNode, runConverted } from '../../helpers/onnx-graph.ts';

// ---- the folds themselves, on tensors as convert.ts hands them over --------------------------------

const int = (dims: number[], values: number[], batchElements?: number[]): ConstTensor => ({ dims, kind: 'int', values, ...(batchElements ? { batchElements } : {}) });
const float = (dims: number[], values: number[]): ConstTensor => ({ dims, kind: 'float', values: Float32Array.from(values) });
/** dims, values and marks of a result, as plain data. */
const plain = (t: ConstTensor) => ({ dims: t.dims, kind: t.kind, values: Array.from(t.values), batchElements: t.batchElements });
const foldError = (pattern: RegExp) => (e: unknown) => e instanceof ConstFoldError && pattern.test(e.message);

describe('conversion-time constant folding (const-fold.ts)', () => {
  describe('binaryConst', () => {
    it('divides integers truncating toward zero, as ONNX Runtime does, and floats exactly', () => {
      // (+ 0 turns a -0 from Math.trunc into 0: int64 has no negative zero.)
      const div = (a: number, b: number) => binaryConst('Div', int([], [a]), int([], [b])).values[0]! + 0;
      assert.deepEqual([div(5, 2), div(-5, 2), div(5, -2), div(-5, -2), div(4, 2), div(1, 3), div(-1, 3), div(-7, 3)], [2, -2, -2, 2, 2, 0, 0, -2]);
      // The head of unsimplified YOLOv8 exports: (4 + 1) / 2 -> 2, as an int64 [1] tensor.
      assert.deepEqual(plain(binaryConst('Div', binaryConst('Add', int([1], [4]), int([1], [1])), int([1], [2]))), { dims: [1], kind: 'int', values: [2], batchElements: undefined });
      assert.deepEqual(Array.from(binaryConst('Div', float([2], [5, -5]), float([], [2])).values), [2.5, -2.5]);
      assert.throws(() => binaryConst('Div', int([1], [5]), int([1], [0])), foldError(/integer division by zero/));
    });

    it('evaluates Add, Sub, Mul, Pow, Max and Min in the operands’ type', () => {
      const a = int([3], [2, -3, 7]);
      const b = int([3], [3, 2, -1]);
      const ops = ['Add', 'Sub', 'Mul', 'Pow', 'Max', 'Min'].map((op) => [op, binaryConst(op, a, b).values]);
      assert.deepEqual(Object.fromEntries(ops), { Add: [5, -1, 6], Sub: [-1, -5, 8], Mul: [6, -6, -7], Pow: [8, 9, 0], Max: [3, 2, 7], Min: [2, -3, -1] });
      const f = binaryConst('Mul', float([2], [1.5, -2]), float([2], [2, 0.25]));
      assert.equal(f.kind, 'float');
      assert.ok(f.values instanceof Float32Array);
      assert.deepEqual(Array.from(f.values), [3, -0.5]);
    });

    it('broadcasts NumPy-style from the trailing axis', () => {
      // [2, 1] with [3] -> [2, 3]
      assert.deepEqual(plain(binaryConst('Add', int([2, 1], [10, 20]), int([3], [1, 2, 3]))), { dims: [2, 3], kind: 'int', values: [11, 12, 13, 21, 22, 23], batchElements: undefined });
      // a scalar with [2, 2]; the scalar on either side
      assert.deepEqual(binaryConst('Sub', int([], [10]), int([2, 2], [1, 2, 3, 4])).values, [9, 8, 7, 6]);
      assert.deepEqual(binaryConst('Sub', int([2, 2], [1, 2, 3, 4]), int([], [10])).values, [-9, -8, -7, -6]);
      // [1, 3] with [2, 1, 1]: rank grows, both sides broadcast
      const c = binaryConst('Mul', float([1, 3], [1, 2, 3]), float([2, 1, 1], [1, -1]));
      assert.deepEqual([c.dims, Array.from(c.values)], [[2, 1, 3], [1, 2, 3, -1, -2, -3]]);
      assert.throws(() => binaryConst('Add', int([2], [1, 2]), int([3], [1, 2, 3])), foldError(/shapes \[2\] and \[3\] do not broadcast/));
    });

    it('refuses mixed types and ops it cannot evaluate', () => {
      assert.throws(() => binaryConst('Add', int([1], [1]), float([1], [1])), foldError(/the operands differ in type/));
      assert.throws(() => binaryConst('Mod', int([1], [5]), int([1], [2])), foldError(/Mod cannot be evaluated at conversion time/));
    });
  });

  describe('Shape, Gather, Slice, Concat and Reshape on constants', () => {
    it('Shape gives int64 dims with the batch entry marked, honouring start and end', () => {
      assert.deepEqual(plain(shapeTensor([1, 4, 8400], 0)), { dims: [3], kind: 'int', values: [1, 4, 8400], batchElements: [0] });
      assert.deepEqual(plain(shapeTensor([4, 1, 8400], 1)).batchElements, [1], 'the batch axis need not be 0');
      assert.deepEqual(plain(shapeTensor([1, 4, 8400], 0, 1)), { dims: [2], kind: 'int', values: [4, 8400], batchElements: undefined });
      assert.deepEqual(plain(shapeTensor([1, 4, 8400], 0, -2, -1)), { dims: [1], kind: 'int', values: [4], batchElements: undefined });
      assert.deepEqual(plain(shapeTensor([1, 4, 8400], 0, 0, 1)), { dims: [1], kind: 'int', values: [1], batchElements: [0] });
      assert.deepEqual(plain(shapeTensor([2, 3], undefined)), { dims: [2], kind: 'int', values: [2, 3], batchElements: undefined }, 'the shape of a constant');
      assert.deepEqual(shapeTensor([2, 3], undefined, 5, 9).dims, [0], 'start and end are clamped');
    });

    it('Gather picks entries (negative indices from the end), along any axis, and follows the batch mark', () => {
      const shape = shapeTensor([1, 4, 8400], 0);
      assert.deepEqual(plain(gatherConst(shape, int([1], [1]), 0)), { dims: [1], kind: 'int', values: [4], batchElements: undefined });
      assert.deepEqual(plain(gatherConst(shape, int([], [-1]), 0)), { dims: [], kind: 'int', values: [8400], batchElements: undefined }, 'a scalar index drops the axis');
      assert.deepEqual(plain(gatherConst(shape, int([2], [2, 0]), 0)), { dims: [2], kind: 'int', values: [8400, 1], batchElements: [1] });
      assert.deepEqual(plain(gatherConst(shape, int([1], [-3]), 0)).batchElements, [0]);
      const m = float([2, 3], [0, 1, 2, 10, 11, 12]);
      const picked = gatherConst(m, int([2], [2, 0]), 1);
      assert.deepEqual([picked.dims, Array.from(picked.values)], [[2, 2], [2, 0, 12, 10]]);
      assert.throws(() => gatherConst(shape, int([1], [3]), 0), foldError(/index 3 is out of range for a dimension of 3/));
      assert.throws(() => gatherConst(shape, int([1], [-4]), 0), foldError(/index -4 is out of range/));
      assert.throws(() => gatherConst(shape, float([1], [1]), 0), foldError(/indices must be integers/));
    });

    it('Slice takes begin, end and step per axis and follows the batch mark', () => {
      const m = int([3, 4], [0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23]);
      assert.deepEqual(plain(sliceConst(m, [1, 0], [3, 4], [1, 2])), { dims: [2, 2], kind: 'int', values: [10, 12, 20, 22], batchElements: undefined });
      assert.deepEqual(sliceConst(m, [0, 3], [3, 3], [1, 1]).dims, [3, 0], 'an empty range');
      const shape = shapeTensor([1, 4, 8400], 0);
      assert.deepEqual(plain(sliceConst(shape, [0], [2], [1])), { dims: [2], kind: 'int', values: [1, 4], batchElements: [0] });
      assert.deepEqual(plain(sliceConst(shape, [1], [3], [1])), { dims: [2], kind: 'int', values: [4, 8400], batchElements: undefined });
    });

    it('Concat joins along an axis, keeping the kind and moving the batch marks with their entries', () => {
      const batch = gatherConst(shapeTensor([1, 3, 8, 8], 0), int([1], [0]), 0);
      assert.deepEqual(plain(concatConst([int([1], [-1]), batch, int([2], [4, 16])], 0)), { dims: [4], kind: 'int', values: [-1, 1, 4, 16], batchElements: [1] });
      assert.deepEqual(plain(concatConst([batch, batch], 0)).batchElements, [0, 1]);
      const joined = concatConst([float([2, 1], [1, 2]), float([2, 2], [3, 4, 5, 6])], 1);
      assert.deepEqual([joined.dims, joined.kind, Array.from(joined.values)], [[2, 3], 'float', [1, 3, 4, 2, 5, 6]]);
      assert.ok(joined.values instanceof Float32Array);
      assert.deepEqual(Array.from(concatConst([float([1, 2], [1, 2]), float([2, 2], [3, 4, 5, 6])], 0).values), [1, 2, 3, 4, 5, 6]);
      assert.throws(() => concatConst([int([1], [1]), float([1], [1])], 0), foldError(/inputs differ in type or rank/));
      assert.throws(() => concatConst([int([1, 2], [1, 2]), int([1, 3], [1, 2, 3])], 0), foldError(/inputs differ in a dimension other than the axis/));
    });

    it('Reshape changes the dims only, keeping values and marks', () => {
      const t = int([2], [1, 7], [0]);
      assert.deepEqual(plain(reshapeConst(t, [1, 2])), { dims: [1, 2], kind: 'int', values: [1, 7], batchElements: [0] });
    });

    it('refuses arithmetic on the batch size, which the converted graph keeps dynamic', () => {
      const batch = gatherConst(shapeTensor([1, 3, 8, 8], 0), int([1], [0]), 0);
      for (const [a, b] of [[batch, int([1], [2])], [int([1], [2]), batch]]) {
        assert.throws(() => binaryConst('Mul', a!, b!), foldError(/the operand holds the batch size, which the converted graph keeps dynamic/));
      }
      // The fixed entries of the same shape fold freely.
      const channels = gatherConst(shapeTensor([1, 3, 8, 8], 0), int([1], [1]), 0);
      assert.deepEqual(binaryConst('Mul', channels, int([1], [2])).values, [6]);
    });
  });
});

// ---- the batch mark through the converter (convert.ts), on minimal graphs -------------------------

const node = onnxNode;
const int64 = int64Tensor;

/** images [1, 3, 2, 2] (the file's batch of 1) through `nodes` to `out`, with int64 initializers. */
const model = (nodes: OnnxNode[], initializers: OnnxTensor[]): OnnxModel => onnxGraph(nodes, initializers, [1, 3, 2, 2], 'out');

/** Shape of the input and its batch entry, as unsimplified exports compute `x.shape[0]`. */
const BATCH_SIZE = [node('Shape', ['images'], ['shape']), node('Gather', ['shape', 'zero'], ['n'], { axis: 0 })];
const CONSTANTS = [int64('zero', [0]), int64('one', [1]), int64('two', [2]), int64('minus1', [-1]), int64('three', [3])];

const refused = (nodes: OnnxNode[], pattern: RegExp) =>
  assert.throws(() => convertOnnxToTfjs(model(nodes, CONSTANTS)), (e: unknown) => e instanceof OnnxConversionError && pattern.test(e.message));

async function runAtBatch(m: OnnxModel, batch: number): Promise<{ shape: number[]; values: Float32Array; input: Float32Array }> {
  const input = Float32Array.from({ length: batch * 12 }, (_, i) => i - 5);
  const x = tf.tensor4d(input, [batch, 3, 2, 2]);
  try {
    return { ...(await runConverted(convertOnnxToTfjs(m), x)), input };
  } finally {
    x.dispose();
  }
}

describe('the batch-size mark through ONNX to tfjs conversion', () => {
  before(async () => {
    await initTfjsBackend('wasm');
  });

  it('lets a Reshape take the batch size on its batch axis, which stays dynamic', async () => {
    // x.reshape(x.shape[0], -1): target Concat(n, [-1]) = [1, -1] in the file, [batch, 12] at run time.
    const m = model([...BATCH_SIZE, node('Concat', ['n', 'minus1'], ['target'], { axis: 0 }), node('Reshape', ['images', 'target'], ['out'])], CONSTANTS);
    const reshape = convertOnnxToTfjs(m).modelTopology.node.find((n) => n.op === 'Reshape');
    assert.ok(reshape, 'a tfjs Reshape');
    for (const batch of [1, 3]) {
      const { shape, values, input } = await runAtBatch(m, batch);
      assert.deepEqual(shape, [batch, 12], `batch ${batch}: not baked in as the file's batch of 1`);
      assert.deepEqual(Array.from(values), Array.from(input));
    }
  });

  it('folds size arithmetic on the fixed dimensions (the unsimplified YOLOv8 head)', async () => {
    // channels = x.shape[1]; half = (channels + 1) / 2 = 2 with integer division; out = x[:, :half]
    const m = model(
      [
        node('Shape', ['images'], ['shape']),
        node('Gather', ['shape', 'one'], ['c'], { axis: 0 }),
        node('Add', ['c', 'one'], ['c1']),
        node('Div', ['c1', 'two'], ['half']),
        node('Slice', ['images', 'zero', 'half', 'one'], ['out']),
      ],
      CONSTANTS,
    );
    const ops = convertOnnxToTfjs(m).modelTopology.node.map((n) => n.op);
    assert.deepEqual(ops.filter((op) => /Shape|Gather|Add|Div|RealDiv/.test(op)), [], 'nothing of the arithmetic is left at run time');
    const { shape, values, input } = await runAtBatch(m, 2);
    assert.deepEqual(shape, [2, 2, 2, 2]);
    // Per image the first 2 of 3 channels (4 values each).
    assert.deepEqual(Array.from(values), Array.from(input).filter((_, i) => i % 12 < 8));
  });

  it('refuses arithmetic on the batch size, naming the node', () => {
    refused([...BATCH_SIZE, node('Mul', ['n', 'two'], ['twice']), node('Concat', ['twice', 'minus1'], ['target'], { axis: 0 }), node('Reshape', ['images', 'target'], ['out'])],
      /node "Mul:twice" \(Mul\): the operand holds the batch size, which the converted graph keeps dynamic/);
    refused([...BATCH_SIZE, node('Div', ['three', 'n'], ['q']), node('Reshape', ['images', 'q'], ['out'])], /node "Div:q" \(Div\): the operand holds the batch size/);
    // As data next to a run-time tensor, it would be the file's batch of 1 frozen into the graph.
    refused([...BATCH_SIZE, node('Add', ['images', 'n'], ['out'])], /"n" holds the batch size, which the converted graph keeps dynamic; it cannot be used as data/);
  });

  it('refuses the batch size on another axis of a Reshape, or where a fixed size is needed', () => {
    // target [n, 3, n, -1] = [1, 3, 1, 4]: the batch axis is right, the entry at 2 is not.
    refused([...BATCH_SIZE, node('Concat', ['n', 'three', 'n', 'minus1'], ['target'], { axis: 0 }), node('Reshape', ['images', 'target'], ['out'])],
      /node "Reshape:out" \(Reshape\): a target shape entry other than the batch holds the batch size/);
    // Slice bounds and the target shape of a constant are fixed numbers in the tfjs graph.
    refused([...BATCH_SIZE, node('Slice', ['images', 'zero', 'n', 'one'], ['out'])], /node "Slice:out" \(Slice\): ends depends on the batch size, which the converted graph keeps dynamic/);
    refused([...BATCH_SIZE, node('Reshape', ['one', 'n'], ['c']), node('Add', ['images', 'c'], ['out'])],
      /node "Reshape:c" \(Reshape\): the target shape of a constant depends on the batch size/);
  });
});
