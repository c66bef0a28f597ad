import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { makeBatchDynamic, OnnxBatchRewriteError } from '../../../src/detection/onnx-batch.ts';

// A tiny protobuf writer, independent of src/detection/onnx-batch.ts, to hand-build ONNX models.
const varint = (n: number | bigint): number[] => {
  let v = BigInt.asUintN(64, BigInt(n));
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
};
const int = (field: number, n: number | bigint): number[] => [...varint(field * 8), ...varint(n)];
const len = (field: number, payload: number[]): number[] => [...varint(field * 8 + 2), ...varint(payload.length), ...payload];
const str = (field: number, s: string): number[] => len(field, [...Buffer.from(s)]);
const int64le = (values: number[]): number[] => {
  const buf = Buffer.alloc(values.length * 8);
  values.forEach((v, i) => buf.writeBigInt64LE(BigInt(v), i * 8));
  return [...buf];
};

type Dim = number | string;
const valueInfo = (name: string, dims: Dim[], extra: number[] = []): number[] => [
    ...str(1, name),
    ...len(2, len(1, [...int(1, 1), ...len(2, dims.flatMap((d) => len(1, typeof d === 'number' ? int(1, d) : str(2, d))))])),
    ...extra,
  ];
/** INT64 shape tensor: raw_data (little-endian) or packed int64_data. */
const shapeTensor = (name: string, values: number[], raw = true): number[] => [
  ...int(1, values.length),
  ...int(2, 7),
  ...(raw ? [] : len(7, values.flatMap((v) => varint(v)))),
  ...str(8, name),
  ...(raw ? len(9, int64le(values)) : []),
];
const attrInt = (name: string, i: number): number[] => [...str(1, name), ...int(3, i), ...int(20, 2)];
const attrInts = (name: string, ints: number[]): number[] => [...str(1, name), ...ints.flatMap((i) => int(8, i)), ...int(20, 7)];
const node = (op: string, inputs: string[], outputs: string[], attrs: number[][] = []): number[] => [
  ...inputs.flatMap((i) => str(1, i)),
  ...outputs.flatMap((o) => str(2, o)),
  ...str(3, `${op}_${outputs[0]}`),
  ...str(4, op),
  ...attrs.flatMap((a) => len(5, a)),
];

/** A Constant node holding a 1-D INT64 tensor (packed int64_data). */
const constant = (name: string, values: number[]): number[] =>
  node('Constant', [], [name], [[...str(1, 'value'), ...len(5, shapeTensor('', values, false)), ...int(20, 4)]]);

/**
 * The size arithmetic of the unsimplified yolov8s/m head, on z [b,4,2]: Shape -> Gather `index` ->
 * (d + 1) / 2 -> the end of a Slice along axis 1, giving w [b,2,2] for index 1.
 */
const sizeArithmetic = (index: number[]): number[][] => [
  constant('one', [1]),
  constant('two', [2]),
  constant('zero', [0]),
  constant('index', index),
  node('Shape', ['z'], ['s']),
  node('Gather', ['s', 'index'], ['g'], [attrInt('axis', 0)]),
  node('Add', ['g', 'one'], ['g1']),
  node('Div', ['g1', 'two'], ['half']),
  node('Slice', ['z', 'zero', 'half', 'one'], ['w']),
];

interface Spec {
  batch: Dim;
  shape: number[];
  /** Shape as a Constant node with int64_data instead of a raw_data initializer. */
  constantNode?: boolean;
  allowzero?: number;
  extraNodes?: number[][];
  /** More graph outputs, by name and dims after the batch. */
  extraOutputs?: [string, number[]][];
}

/**
 * x [b,2,2,2] -> Reshape(shape) -> y [b,4,2] -> Relu -> z [b,4,2], with a doc string, metadata and
 * fields unknown to onnx.proto (field 99) at several levels, which must survive the rewrite as they are.
 */
function buildModel(spec: Spec): Uint8Array {
  const { batch } = spec;
  const unknown = [...str(99, 'keep me'), ...int(98, 300)];
  const reshapeAttrs = spec.allowzero === undefined ? [] : [attrInt('allowzero', spec.allowzero)];
  const graph = [
    ...(spec.constantNode ? len(1, node('Constant', [], ['shape'], [[...str(1, 'value'), ...len(5, shapeTensor('', spec.shape, false)), ...int(20, 4)]])) : []),
    ...len(1, node('Reshape', ['x', 'shape'], ['y'], reshapeAttrs)),
    ...len(1, node('Relu', ['y'], ['z'])),
    ...(spec.extraNodes ?? []).flatMap((n) => len(1, n)),
    ...str(2, 'tiny'),
    ...(spec.constantNode ? [] : len(5, shapeTensor('shape', spec.shape))),
    ...str(10, 'a graph doc string'),
    ...len(11, valueInfo('x', [batch, 2, 2, 2], unknown)),
    ...len(12, valueInfo('z', [batch, 4, 2])),
    ...(spec.extraOutputs ?? []).flatMap(([name, dims]) => len(12, valueInfo(name, [batch, ...dims]))),
    ...len(13, valueInfo('y', [batch, 4, 2])),
    ...unknown,
  ];
  return Uint8Array.from([
    ...int(1, 8),
    ...str(2, 'hand-built'),
    ...len(7, graph),
    ...len(8, [...str(1, ''), ...int(2, 17)]),
    ...len(14, [...str(1, 'names'), ...str(2, "{0: 'a'}")]),
    ...unknown,
  ]);
}

describe('makeBatchDynamic', () => {
  it('rewrites the batch dims and a raw_data Reshape shape, leaving every other byte as it was', () => {
    const fixed = buildModel({ batch: 1, shape: [1, 4, -1] });
    const input = Buffer.from(fixed); // Buffer#slice shares memory: the input must not be patched in place
    const dynamic = makeBatchDynamic(input);
    assert.deepEqual(input, Buffer.from(fixed), 'the input is left as it was');
    assert.deepEqual(Buffer.from(dynamic), Buffer.from(buildModel({ batch: 'batch', shape: [0, 4, -1] })));
  });

  it('rewrites a Constant node shape held as packed int64_data', () => {
    const fixed = buildModel({ batch: 1, shape: [1, 4, 2], constantNode: true });
    assert.deepEqual(Buffer.from(makeBatchDynamic(fixed)), Buffer.from(buildModel({ batch: 'batch', shape: [0, 4, 2], constantNode: true })));
  });

  it('keeps explicit allowzero=0 and shapes that already lead with 0 or -1', () => {
    const fixed = buildModel({ batch: 1, shape: [-1, 4, 2], allowzero: 0 });
    assert.deepEqual(Buffer.from(makeBatchDynamic(fixed)), Buffer.from(buildModel({ batch: 'batch', shape: [-1, 4, 2], allowzero: 0 })));
  });

  it('returns an already-dynamic model as the same bytes, so a second pass changes nothing', () => {
    const dynamic = buildModel({ batch: 'N', shape: [1, 4, -1] });
    assert.equal(makeBatchDynamic(dynamic), dynamic);
    const once = makeBatchDynamic(buildModel({ batch: 1, shape: [1, 4, -1] }));
    assert.equal(makeBatchDynamic(once), once);
  });

  it('gives a model that ONNX Runtime runs at any batch', async () => {
    const session = await ort.InferenceSession.create(makeBatchDynamic(buildModel({ batch: 1, shape: [1, 4, -1] })));
    try {
      assert.deepEqual(session.inputMetadata[0]?.isTensor && session.inputMetadata[0].shape, ['batch', 2, 2, 2]);
      const x = Float32Array.from({ length: 3 * 8 }, (_, i) => i - 10);
      const { z } = await session.run({ x: new ort.Tensor('float32', x, [3, 2, 2, 2]) });
      assert.deepEqual(z!.dims, [3, 4, 2]);
      assert.deepEqual([...(z!.data as Float32Array)], [...x].map((v) => Math.max(v, 0)));
    } finally {
      await session.release();
    }
  });

  it('leaves size arithmetic on fixed dimensions (Shape -> Gather of index >= 1) as it is, and ONNX Runtime runs it at any batch', async () => {
    const spec = { shape: [1, 4, -1], extraNodes: sizeArithmetic([1]), extraOutputs: [['w', [2, 2]]] } satisfies Omit<Spec, 'batch'>;
    const dynamic = makeBatchDynamic(buildModel({ batch: 1, ...spec }));
    assert.deepEqual(Buffer.from(dynamic), Buffer.from(buildModel({ ...spec, batch: 'batch', shape: [0, 4, -1] })));
    // Shape with start >= 1 holds fixed dimensions only.
    const fromStart = [constant('index', [0]), node('Shape', ['z'], ['s'], [attrInt('start', 1)]), node('Gather', ['s', 'index'], ['g'], [attrInt('axis', 0)])];
    assert.doesNotThrow(() => makeBatchDynamic(buildModel({ batch: 1, shape: [1, 4, -1], extraNodes: fromStart })));
    const session = await ort.InferenceSession.create(dynamic);
    try {
      for (const batch of [1, 3]) {
        const x = Float32Array.from({ length: batch * 8 }, (_, i) => i - 10);
        const { z, w } = await session.run({ x: new ort.Tensor('float32', x, [batch, 2, 2, 2]) });
        assert.deepEqual(z!.dims, [batch, 4, 2]);
        assert.deepEqual(w!.dims, [batch, 2, 2]);
        // w = z[:, 0:2, :]: the first 4 of each image's 8 values.
        const relu = [...x].map((v) => Math.max(v, 0));
        assert.deepEqual([...(w!.data as Float32Array)], relu.filter((_, i) => i % 8 < 4));
      }
    } finally {
      await session.release();
    }
  });

  it('refuses a graph that computes with the batch size', () => {
    const refuse = (extraNodes: number[][], pattern: RegExp) =>
      assert.throws(
        () => makeBatchDynamic(buildModel({ batch: 1, shape: [1, 4, -1], extraNodes })),
        (e: unknown) => e instanceof OnnxBatchRewriteError && pattern.test(e.message),
      );
    const ofZ = String.raw`the shape of "z" \(element 0 of which is the batch size\)`;
    refuse(sizeArithmetic([0]), new RegExp(`Gather node producing "g" reads element 0 of ${ofZ}: the graph computes with the batch size`));
    refuse(sizeArithmetic([2, 0]), /reads element 0 of the shape of "z"/);
    refuse(sizeArithmetic([-2]), /Gather node producing "g" reads the shape of "z" .* at negative indices \[-2\], which may be the batch size/);
    refuse([constant('index', [1]), node('Shape', ['z'], ['s']), node('Gather', ['s', 'index'], ['g'], [attrInt('axis', 1)])], /gathers the shape of "z" .* along axis 1/);
    refuse([node('Shape', ['z'], ['s']), node('Gather', ['s', 'z'], ['g'])], /only a Gather of constant indices >= 1/);
    refuse([node('Shape', ['x'], ['s']), node('Shape', ['z'], ['t']), node('Gather', ['s', 't'], ['g'])], /Gather node producing "g" uses the shape of "x"/);
    refuse([node('Shape', ['z'], ['s']), node('Cast', ['s'], ['c'], [attrInt('to', 1)])], new RegExp(`Cast node producing "c" uses ${ofZ}; only a Gather of constant indices >= 1 from it \\(fixed dimensions\\) is supported`));
    refuse([node('Shape', ['z'], ['s']), node('Concat', ['s', 's'], ['c'], [attrInt('axis', 0)])], /Concat node producing "c" uses the shape of "z"/);
    refuse([node('Shape', ['z'], ['s']), node('Reshape', ['z', 's'], ['r'])], /Reshape node producing "r" uses the shape of "z"/);
    refuse([node('Shape', ['z'], ['s'], [attrInt('start', -3)])], /Shape node producing "s" has start=-3, which may include the batch axis/);
    refuse([node('Size', ['z'], ['n'])], /Size node producing "n" counts the elements of a batch-dependent tensor/);
    // A Gather of a batched tensor (not of its shape) along axis 0 still mixes images.
    refuse([constant('index', [1]), node('Gather', ['z', 'index'], ['g'], [attrInt('axis', 0)])], /Gather node producing "g" works along the batch axis/);
  });

  it('refuses structures it cannot vouch for', () => {
    const refuse = (spec: Spec, pattern: RegExp) =>
      assert.throws(() => makeBatchDynamic(buildModel(spec)), (e: unknown) => e instanceof OnnxBatchRewriteError && pattern.test(e.message));
    refuse({ batch: 1, shape: [2, 2, 2] }, /Reshape node producing "y" has shape \[2, 2, 2\]; expected a leading 1/);
    refuse({ batch: 2, shape: [2, 4, -1] }, /fixed batch of 2, not 1/);
    refuse({ batch: 1, shape: [1, 4, -1], allowzero: 1 }, /allowzero=1/);
    refuse({ batch: 1, shape: [1, 4, -1], extraNodes: [node('Transpose', ['z'], ['t'], [attrInts('perm', [1, 0, 2])])] }, /moves the batch axis/);
    refuse({ batch: 1, shape: [1, 4, -1], extraNodes: [node('Concat', ['z', 'z'], ['c'], [attrInt('axis', 0)])] }, /along the batch axis/);
    refuse({ batch: 1, shape: [1, 4, -1], extraNodes: [node('Shape', ['x'], ['s']), node('Reshape', ['z', 's'], ['r'])] }, /Reshape node producing "r" uses the shape of "x"/);
    refuse({ batch: 1, shape: [1, 4, -1], extraNodes: [...sizeArithmetic([1]), node('Reshape', ['z', 'half'], ['r'])] }, /takes its shape from "half", which is not an INT64 constant/);
    refuse({ batch: 1, shape: [1, 4, -1], extraNodes: [node('Add', ['shape', 'shape'], ['a'])] }, /also used by a Add node/);
    assert.throws(() => makeBatchDynamic(Uint8Array.of(0x0f)), OnnxBatchRewriteError);
  });
});
