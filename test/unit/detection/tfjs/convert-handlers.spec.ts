import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import * as ort from 'onnxruntime-node';
import { UnloadableTfjsOpError } from '../../../../src/detection/tfjs/conversion-errors.ts';
import { convertOnnxToTfjs } from '../../../../src/detection/tfjs/convert.ts';
import type { OnnxModel, OnnxNode, OnnxTensor } from '../../../../src/detection/tfjs/onnx-reader.ts';
import { initTfjsBackend } from '../../../../src/detection/tfjs/tfjs-backend.ts';
import { assertTfjsLoadable, tfjsLoadableOps } from '../../../../src/detection/tfjs/tfjs-ops.ts';
import { encodeOnnxModel, floatTensor, int64Tensor, onnxGraph, onnxNode, runConverted } from '../../../helpers/onnx-graph.ts';

/**
 * Each converter handler on a tiny ONNX graph: ONNX Runtime runs the graph itself (the reference), tfjs
 * runs the converted graph on the cpu and the wasm backend, both with a batch of 2 different images
 * (the converted batch is dynamic; the ONNX input is declared with a symbolic batch for ONNX Runtime).
 *
 * Tolerance: |tfjs - ONNX Runtime| <= 1e-5 + 1e-5 * |ONNX Runtime| per element. Every value here is a
 * float32 computation over at most 18 products or one transcendental function, so the engines differ
 * only by float32 rounding and by their exp/log/tanh approximations (a few ulp).
 */
const ABS_TOLERANCE = 1e-5;
const REL_TOLERANCE = 1e-5;
const INT_MAX = 2 ** 31 - 1; // "to the end" in Slice, as exporters write it (INT64_MAX loses precision in JavaScript)

const node = onnxNode;

interface Case {
  title: string;
  nodes: OnnxNode[];
  initializers?: OnnxTensor[];
  /** ONNX input shape [1, C, H, W]; run with a batch of `batch` (2 unless a Resize `sizes` pins the batch). */
  shape: number[];
  batch?: number;
  /** A different graph for ONNX Runtime, where the converted op is not valid at opset 17 (Upsample). */
  reference?: OnnxNode[];
  /** The tfjs ops the conversion must contain. */
  ops: string[];
}

const resize = (mode: string, transform: string, scales: number[], extra: Record<string, string> = {}): Pick<Case, 'nodes' | 'initializers'> => ({
  nodes: [node('Resize', ['images', '', 'scales'], ['out'], { mode, coordinate_transformation_mode: transform, ...extra })],
  initializers: [floatTensor('scales', [4], [1, 1, ...scales])],
});

/** |x| + 0.1: a positive input for Log, Sqrt, Reciprocal and Pow. */
const positive = [node('Abs', ['images'], ['abs']), node('Add', ['abs', 'tenth'], ['pos'])];
const tenth = floatTensor('tenth', [], [0.1]);

const CASES: Case[] = [
  // ---- AveragePool -----------------------------------------------------------------------------
  { title: 'AveragePool 2x2 stride 2 (VALID)', shape: [1, 3, 6, 8], ops: ['AvgPool'], nodes: [node('AveragePool', ['images'], ['out'], { kernel_shape: [2, 2], strides: [2, 2] })] },
  {
    title: 'AveragePool 3x3 stride 1 pads 1, count_include_pad 0 (SAME: padding not counted)',
    shape: [1, 3, 5, 6],
    ops: ['AvgPool'],
    nodes: [node('AveragePool', ['images'], ['out'], { kernel_shape: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1] })],
  },
  {
    title: 'AveragePool 3x3 stride 2 pads 1 on an odd size (SAME)',
    shape: [1, 2, 7, 7],
    ops: ['AvgPool'],
    nodes: [node('AveragePool', ['images'], ['out'], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] })],
  },
  // ---- Resize / Upsample -------------------------------------------------------------------------
  { title: 'Resize nearest, asymmetric + floor, x2', shape: [1, 2, 3, 4], ops: ['ResizeNearestNeighbor'], ...resize('nearest', 'asymmetric', [2, 2], { nearest_mode: 'floor' }) },
  {
    title: 'Resize nearest, half_pixel + round_prefer_ceil, x1.75 / x2.25',
    shape: [1, 2, 4, 4],
    ops: ['ResizeNearestNeighbor'],
    ...resize('nearest', 'half_pixel', [1.75, 2.25], { nearest_mode: 'round_prefer_ceil' }),
  },
  {
    title: 'Resize nearest, half_pixel + round_prefer_ceil, down 8 -> 5',
    shape: [1, 2, 8, 8],
    ops: ['ResizeNearestNeighbor'],
    ...resize('nearest', 'half_pixel', [0.625, 0.625], { nearest_mode: 'round_prefer_ceil' }),
  },
  {
    title: 'Resize nearest, align_corners + round_prefer_ceil, x1.75 / x2.25',
    shape: [1, 2, 4, 4],
    ops: ['ResizeNearestNeighbor'],
    ...resize('nearest', 'align_corners', [1.75, 2.25], { nearest_mode: 'round_prefer_ceil' }),
  },
  { title: 'Resize linear, half_pixel, x1.75 / x2.25', shape: [1, 2, 4, 4], ops: ['ResizeBilinear'], ...resize('linear', 'half_pixel', [1.75, 2.25]) },
  { title: 'Resize linear, half_pixel, down 8 -> 5 / 8 -> 4', shape: [1, 2, 8, 8], ops: ['ResizeBilinear'], ...resize('linear', 'half_pixel', [0.625, 0.5]) },
  { title: 'Resize linear, pytorch_half_pixel, x2', shape: [1, 2, 3, 5], ops: ['ResizeBilinear'], ...resize('linear', 'pytorch_half_pixel', [2, 2]) },
  { title: 'Resize linear, align_corners, x1.75 / x2.25', shape: [1, 2, 4, 4], ops: ['ResizeBilinear'], ...resize('linear', 'align_corners', [1.75, 2.25]) },
  { title: 'Resize linear, asymmetric, x2', shape: [1, 2, 3, 4], ops: ['ResizeBilinear'], ...resize('linear', 'asymmetric', [2, 2]) },
  {
    title: 'Resize nearest by sizes (batch 1: opset 17 sizes name the batch too)',
    shape: [1, 2, 4, 5],
    batch: 1,
    ops: ['ResizeNearestNeighbor'],
    nodes: [node('Resize', ['images', '', '', 'sizes'], ['out'], { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' })],
    initializers: [int64Tensor('sizes', [1, 2, 8, 10])],
  },
  {
    title: 'Upsample nearest x2 (checked against Resize nearest asymmetric + floor: Upsample is gone from opset 10 on)',
    shape: [1, 2, 3, 4],
    ops: ['ResizeNearestNeighbor'],
    nodes: [node('Upsample', ['images', 'scales'], ['out'], { mode: 'nearest' })],
    initializers: [floatTensor('scales', [4], [1, 1, 2, 2])],
    reference: [node('Resize', ['images', '', 'scales'], ['out'], { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' })],
  },
  {
    title: 'Upsample linear x2 (checked against Resize linear asymmetric)',
    shape: [1, 2, 3, 4],
    ops: ['ResizeBilinear'],
    nodes: [node('Upsample', ['images', 'scales'], ['out'], { mode: 'linear' })],
    initializers: [floatTensor('scales', [4], [1, 1, 2, 2])],
    reference: [node('Resize', ['images', '', 'scales'], ['out'], { mode: 'linear', coordinate_transformation_mode: 'asymmetric' })],
  },
  // ---- Clip, LeakyRelu, unary ops -------------------------------------------------------------------
  {
    title: 'Clip with min and max',
    shape: [1, 3, 4, 4],
    ops: ['ClipByValue'],
    nodes: [node('Clip', ['images', 'min', 'max'], ['out'])],
    initializers: [floatTensor('min', [], [-0.5]), floatTensor('max', [], [0.75])],
  },
  {
    title: 'Clip with max only',
    shape: [1, 3, 4, 4],
    ops: ['ClipByValue'],
    nodes: [node('Clip', ['images', '', 'max'], ['out'])],
    initializers: [floatTensor('max', [], [0.3])],
  },
  { title: 'LeakyRelu alpha 0.2', shape: [1, 3, 4, 4], ops: ['LeakyRelu'], nodes: [node('LeakyRelu', ['images'], ['out'], { alpha: { float: 0.2 } })] },
  { title: 'LeakyRelu default alpha (0.01)', shape: [1, 3, 4, 4], ops: ['LeakyRelu'], nodes: [node('LeakyRelu', ['images'], ['out'])] },
  ...['Tanh', 'Exp', 'Floor', 'Ceil', 'Neg', 'Abs', 'Sigmoid', 'Relu'].map(
    (op): Case => ({ title: op, shape: [1, 3, 4, 5], ops: [op], nodes: [node(op, ['images'], ['out'])] }),
  ),
  ...['Log', 'Sqrt', 'Reciprocal'].map(
    (op): Case => ({ title: `${op} of |x| + 0.1`, shape: [1, 3, 4, 5], ops: [op], nodes: [...positive, node(op, ['pos'], ['out'])], initializers: [tenth] }),
  ),
  // ---- depthwise convolution (group = channels) ---------------------------------------------------------
  {
    title: 'depthwise Conv 3x3 stride 2 pads 1 with bias',
    shape: [1, 3, 7, 6],
    ops: ['FusedDepthwiseConv2dNative'],
    nodes: [node('Conv', ['images', 'w', 'b'], ['out'], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], group: 3 })],
    initializers: [floatTensor('w', [3, 1, 3, 3], wave(27, 0.7)), floatTensor('b', [3], [0.1, -0.2, 0.3])],
  },
  {
    title: 'depthwise Conv with channel multiplier 2, no bias',
    shape: [1, 3, 5, 5],
    ops: ['DepthwiseConv2dNative'],
    nodes: [node('Conv', ['images', 'w'], ['out'], { kernel_shape: [3, 3], pads: [1, 1, 1, 1], group: 3 })],
    initializers: [floatTensor('w', [6, 1, 3, 3], wave(54, 1.3))],
  },
  {
    title: 'depthwise Conv dilation 2, asymmetric pads',
    shape: [1, 2, 8, 7],
    ops: ['FusedDepthwiseConv2dNative'],
    nodes: [node('Conv', ['images', 'w', 'b'], ['out'], { kernel_shape: [3, 3], dilations: [2, 2], pads: [2, 1, 1, 2], group: 2 })],
    initializers: [floatTensor('w', [2, 1, 3, 3], wave(18, 2.1)), floatTensor('b', [2], [0.5, -0.5])],
  },
  {
    title: 'depthwise Conv auto_pad SAME_UPPER stride 2 on an even size',
    shape: [1, 2, 6, 6],
    ops: ['FusedDepthwiseConv2dNative'],
    nodes: [node('Conv', ['images', 'w', 'b'], ['out'], { kernel_shape: [3, 3], strides: [2, 2], auto_pad: 'SAME_UPPER', group: 2 })],
    initializers: [floatTensor('w', [2, 1, 3, 3], wave(18, 0.4)), floatTensor('b', [2], [0, 1])],
  },
  // ---- Slice (Slice and StridedSlice) ------------------------------------------------------------------
  {
    title: 'Slice of the input (NCHW): channels 1..3, rows from -4 to the end',
    shape: [1, 4, 6, 5],
    ops: ['Slice'],
    nodes: [node('Slice', ['images', 'starts', 'ends', 'axes'], ['out'])],
    initializers: [int64Tensor('starts', [1, -4]), int64Tensor('ends', [3, INT_MAX]), int64Tensor('axes', [1, 2])],
  },
  {
    title: 'Slice with steps 2 and a negative axis (StridedSlice)',
    shape: [1, 4, 6, 7],
    ops: ['StridedSlice'],
    nodes: [node('Slice', ['images', 'starts', 'ends', 'axes', 'steps'], ['out'])],
    initializers: [int64Tensor('starts', [0, 1]), int64Tensor('ends', [INT_MAX, -1]), int64Tensor('axes', [-2, -1]), int64Tensor('steps', [2, 2])],
  },
  {
    title: 'Slice after a Conv (NHWC layout inside): channels, rows and stepped columns',
    shape: [1, 3, 6, 7],
    ops: ['StridedSlice', '_FusedConv2D'],
    nodes: [node('Conv', ['images', 'w', 'b'], ['conv'], { kernel_shape: [1, 1] }), node('Slice', ['conv', 'starts', 'ends', 'axes', 'steps'], ['out'])],
    initializers: [
      floatTensor('w', [5, 3, 1, 1], wave(15, 0.9)),
      floatTensor('b', [5], [0, 0.1, 0.2, 0.3, 0.4]),
      int64Tensor('starts', [1, 2, -6]),
      int64Tensor('ends', [4, 100, INT_MAX]),
      int64Tensor('axes', [1, 2, 3]),
      int64Tensor('steps', [1, 1, 3]),
    ],
  },
  {
    title: 'Slice with the starts/ends/axes of an empty-step default (all axes, steps omitted)',
    shape: [1, 3, 5, 5],
    ops: ['Slice'],
    nodes: [node('Slice', ['images', 'starts', 'ends'], ['out'])],
    initializers: [int64Tensor('starts', [0, 1, 1, 0]), int64Tensor('ends', [INT_MAX, 3, -1, 4])],
  },
  // ---- binary ops with broadcast constants ------------------------------------------------------------
  {
    title: 'Sub, Div, Max, Min and Pow with per-channel and per-column constants',
    shape: [1, 3, 4, 5],
    ops: ['Sub', 'RealDiv', 'Maximum', 'Minimum', 'Pow'],
    nodes: [
      ...positive,
      node('Sub', ['images', 'channel'], ['sub']),
      node('Div', ['sub', 'column'], ['div']),
      node('Max', ['div', 'channel'], ['max']),
      node('Min', ['max', 'column'], ['min']),
      node('Pow', ['pos', 'exponent'], ['pow']),
      node('Add', ['min', 'pow'], ['out']),
    ],
    initializers: [tenth, floatTensor('channel', [1, 3, 1, 1], [0.5, -0.25, 1]), floatTensor('column', [5], [1, 2, -3, 4, 0.5]), floatTensor('exponent', [], [1.5])],
  },
];

/** Deterministic values in about [-amplitude, amplitude]. */
function wave(count: number, seed: number, amplitude = 1): number[] {
  return Array.from({ length: count }, (_, i) => amplitude * Math.sin(i * 1.7 + seed) * Math.cos(i * 0.31 * seed));
}

function modelOf(c: Case, nodes: OnnxNode[]): OnnxModel {
  return onnxGraph(nodes, c.initializers ?? [], c.shape, 'out');
}

/** The same model with a symbolic batch, so ONNX Runtime takes a batch of 2 as the converted graph does. */
function withDynamicBatch(model: OnnxModel): OnnxModel {
  const input = model.graph.inputs[0]!;
  return { ...model, graph: { ...model.graph, inputs: [{ ...input, shape: ['N', ...input.shape!.slice(1)] }] } };
}

interface Reference {
  input: Float32Array;
  dims: number[];
  values: Float32Array;
  outDims: readonly number[];
}

const references = new Map<string, Reference>();

before(async function () {
  this.timeout(60_000);
  // ONNX Runtime's outputs once per case; tfjs is compared against them on each backend.
  for (const c of CASES) {
    const batch = c.batch ?? 2;
    const dims = [batch, ...c.shape.slice(1)];
    const input = Float32Array.from(wave(dims.reduce((a, b) => a * b, 1), 3.3, 2));
    const session = await ort.InferenceSession.create(encodeOnnxModel(withDynamicBatch(modelOf(c, c.reference ?? c.nodes))));
    try {
      const result = await session.run({ images: new ort.Tensor('float32', input, dims) });
      const out = result.out!;
      references.set(c.title, { input, dims, values: Float32Array.from(out.data as Float32Array), outDims: out.dims });
    } finally {
      await session.release();
    }
  }
});

for (const backend of ['cpu', 'wasm'] as const) {
  describe(`converter handlers vs ONNX Runtime on tiny graphs (tfjs ${backend} backend)`, () => {
    before(async () => {
      await initTfjsBackend(backend);
    });

    for (const c of CASES) {
      it(c.title, async () => {
        assert.equal(tf.getBackend(), backend);
        const converted = convertOnnxToTfjs(modelOf(c, c.nodes));
        const ops = converted.modelTopology.node.map((n) => n.op);
        for (const op of c.ops) assert.ok(ops.includes(op), `expected a ${op} node, got ${ops.join(', ')}`);
        const reference = references.get(c.title)!;
        const input = tf.tensor4d(reference.input, reference.dims as [number, number, number, number]);
        const { values, shape } = await runConverted(converted, input);
        input.dispose();
        assert.deepEqual(shape, [...reference.outDims]);
        for (let i = 0; i < values.length; i++) {
          const expected = reference.values[i]!;
          const delta = Math.abs(values[i]! - expected);
          assert.ok(delta <= ABS_TOLERANCE + REL_TOLERANCE * Math.abs(expected), `element ${i}: tfjs ${values[i]} vs ONNX Runtime ${expected}`);
        }
      });
    }
  });
}

describe('converter output: only ops tfjs-converter can execute', () => {
  it('reads the op names from the tfjs-converter op mappers', () => {
    const ops = tfjsLoadableOps();
    for (const op of ['Placeholder', 'Const', '_FusedConv2D', 'FusedDepthwiseConv2dNative', 'ResizeBilinear', 'StridedSlice', 'ClipByValue']) assert.ok(ops.has(op), op);
    assert.ok(!ops.has('Relu6Grad'));
  });

  it('names an op the converted graph uses that tfjs-converter has no mapper for, with its nodes', () => {
    const model = onnxGraph([node('Clip', ['images', 'min', 'max'], ['out'])], [floatTensor('min', [], [0]), floatTensor('max', [], [6])], [1, 3, 4, 4], 'out');
    const withoutClip = new Set([...tfjsLoadableOps()].filter((op) => op !== 'ClipByValue'));
    assert.throws(
      () => convertOnnxToTfjs(model, undefined, { loadableOps: withoutClip }),
      (error: unknown) => {
        assert.ok(error instanceof UnloadableTfjsOpError);
        assert.deepEqual([...error.ops.keys()], ['ClipByValue']);
        assert.match(error.message, /uses TensorFlow op that @tensorflow\/tfjs-converter cannot execute: ClipByValue \(node "out_?\d*"\)/);
        return true;
      },
    );
    assert.throws(() => assertTfjsLoadable([{ name: 'a', op: 'Erfinv' }, { name: 'b', op: 'Erfinv' }, { name: 'c', op: 'Const' }]), /ops? that .* cannot execute: Erfinv \(nodes "a", "b"\)/);
  });
});
