import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { OnnxConversionError, UnsupportedOnnxOpError } from '../../../../src/detection/tfjs/conversion-errors.ts';
import { convertOnnxToTfjs } from '../../../../src/detection/tfjs/convert.ts';
import type { OnnxTensor } from '../../../../src/detection/tfjs/onnx-reader.ts';
import { initTfjsBackend } from '../../../../src/detection/tfjs/tfjs-backend.ts';
import { int64Tensor, onnxGraph, onnxNode, runConverted } from '../../../helpers/onnx-graph.ts';

const node = onnxNode;

function floats(name: string, dims: number[], values: number[]): OnnxTensor {
  return { name, dataType: 1, dims, kind: 'float', values: Float32Array.from(values) };
}

const ints = (name: string, values: number[]): OnnxTensor => int64Tensor(name, values);
const graph = onnxGraph;
const run = runConverted;

// ---- a plain NCHW reference for one image ------------------------------------------------------------

interface Chw {
  c: number;
  h: number;
  w: number;
  data: Float32Array;
}

const at = (x: Chw, c: number, y: number, xx: number): number => x.data[(c * x.h + y) * x.w + xx]!;

function conv(x: Chw, weight: number[], bias: number[], out: number, k: number, stride: number, pad: number): Chw {
  const h = Math.floor((x.h + 2 * pad - k) / stride) + 1;
  const w = Math.floor((x.w + 2 * pad - k) / stride) + 1;
  const data = new Float32Array(out * h * w);
  for (let o = 0; o < out; o++)
    for (let i = 0; i < h; i++)
      for (let j = 0; j < w; j++) {
        let sum = bias[o]!;
        for (let c = 0; c < x.c; c++)
          for (let u = 0; u < k; u++)
            for (let v = 0; v < k; v++) {
              const y = i * stride - pad + u;
              const xx = j * stride - pad + v;
              if (y >= 0 && y < x.h && xx >= 0 && xx < x.w) sum += at(x, c, y, xx) * weight[((o * x.c + c) * k + u) * k + v]!;
            }
        data[(o * h + i) * w + j] = sum;
      }
  return { c: out, h, w, data };
}

/** Max pool with pads [top, left, bottom, right], padding never chosen. */
function maxPool(x: Chw, k: number, stride: number, pads: number[]): Chw {
  const h = Math.floor((x.h + pads[0]! + pads[2]! - k) / stride) + 1;
  const w = Math.floor((x.w + pads[1]! + pads[3]! - k) / stride) + 1;
  const data = new Float32Array(x.c * h * w);
  for (let c = 0; c < x.c; c++)
    for (let i = 0; i < h; i++)
      for (let j = 0; j < w; j++) {
        let best = -Infinity;
        for (let u = 0; u < k; u++)
          for (let v = 0; v < k; v++) {
            const y = i * stride - pads[0]! + u;
            const xx = j * stride - pads[1]! + v;
            if (y >= 0 && y < x.h && xx >= 0 && xx < x.w) best = Math.max(best, at(x, c, y, xx));
          }
        data[(c * h + i) * w + j] = best;
      }
  return { c: x.c, h, w, data };
}

function upsample2(x: Chw): Chw {
  const h = 2 * x.h;
  const w = 2 * x.w;
  const data = new Float32Array(x.c * h * w);
  for (let c = 0; c < x.c; c++) for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) data[(c * h + i) * w + j] = at(x, c, i >> 1, j >> 1);
  return { c: x.c, h, w, data };
}

describe('ONNX to tfjs graph conversion', () => {
  before(async () => {
    await initTfjsBackend('wasm');
  });

  it('translates conv, pools, resize, concat, reshape, transpose, softmax and slice into NHWC with a dynamic batch', async () => {
    const weight = Array.from({ length: 3 * 2 * 3 * 3 }, (_, i) => Math.sin(i) / 3);
    const bias = [0.1, -0.2, 0.3];
    const offsets = [0.5, -0.5, 1, 2];
    const model = graph(
      [
        node('Conv', ['images', 'w', 'b'], ['conv'], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], dilations: [1, 1], group: 1 }),
        node('Sigmoid', ['conv'], ['sig']),
        node('Mul', ['conv', 'sig'], ['silu']),
        node('MaxPool', ['silu'], ['same'], { kernel_shape: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1] }),
        node('MaxPool', ['same'], ['padded'], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 0, 0] }),
        node('Resize', ['padded', '', 'scales'], ['up'], { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' }),
        node('Concat', ['up', 'silu'], ['cat'], { axis: 1 }),
        node('Reshape', ['cat', 'shape'], ['flat']),
        node('Transpose', ['flat'], ['tr'], { perm: [0, 2, 1] }),
        node('Softmax', ['tr'], ['soft'], { axis: -1 }),
        node('Slice', ['soft', 'starts', 'ends', 'axes'], ['sliced']),
        node('Add', ['sliced', 'offsets'], ['out']),
      ],
      [
        floats('w', [3, 2, 3, 3], weight),
        floats('b', [3], bias),
        floats('scales', [4], [1, 1, 2, 2]),
        ints('shape', [1, 6, -1]),
        ints('starts', [1]),
        ints('ends', [5]),
        ints('axes', [2]),
        floats('offsets', [1, 4], offsets),
      ],
      [1, 2, 7, 7],
      'out',
    );
    const converted = convertOnnxToTfjs(model);
    const ops = converted.modelTopology.node.map((n) => n.op);
    assert.ok(ops.includes('PadV2'), 'an asymmetric max-pool pad becomes an explicit -inf pad');
    assert.equal(ops.filter((op) => op === 'Transpose').length, 1, 'only the input is transposed');

    // Two different images in one batch, although the ONNX graph was exported for batch 1.
    const images = [0, 1].map((n) => Float32Array.from({ length: 2 * 7 * 7 }, (_, i) => Math.cos(i * (n + 1) * 0.37)));
    const input = tf.tensor4d(Float32Array.from([...images[0]!, ...images[1]!]), [2, 2, 7, 7]);
    const { values, shape } = await run(converted, input);
    input.dispose();
    assert.deepEqual(shape, [2, 16, 4]);

    images.forEach((image, n) => {
      const c = conv({ c: 2, h: 7, w: 7, data: image }, weight, bias, 3, 3, 2, 1);
      const silu: Chw = { ...c, data: c.data.map((v) => v / (1 + Math.exp(-v))) };
      const up = upsample2(maxPool(maxPool(silu, 3, 1, [1, 1, 1, 1]), 3, 2, [1, 1, 0, 0]));
      const cat: Chw = { c: 6, h: 4, w: 4, data: Float32Array.from([...up.data, ...silu.data]) };
      for (let p = 0; p < 16; p++) {
        const row = Array.from({ length: 6 }, (_, ch) => cat.data[ch * 16 + p]!);
        const max = Math.max(...row);
        const sum = row.reduce((s, v) => s + Math.exp(v - max), 0);
        for (let k = 0; k < 4; k++) {
          const expected = Math.exp(row[k + 1]! - max) / sum + offsets[k]!;
          const actual = values[(n * 16 + p) * 4 + k]!;
          assert.ok(Math.abs(actual - expected) < 1e-5, `image ${n}, position ${p}, column ${k}: ${actual} vs ${expected}`);
        }
      }
    });
  });

  it('translates Split (as newer Ultralytics exports write C2f) along the NHWC channel axis', async () => {
    const model = graph(
      [
        node('Relu', ['images'], ['relu']),
        node('MaxPool', ['relu'], ['pool'], { kernel_shape: [1, 1], strides: [1, 1] }),
        node('Split', ['pool', 'split'], ['a', 'b'], { axis: 1 }),
        node('Concat', ['b', 'a'], ['out'], { axis: 1 }),
      ],
      [ints('split', [1, 3])],
      [1, 4, 2, 2],
      'out',
    );
    const data = Float32Array.from({ length: 2 * 16 }, (_, i) => i - 3);
    const input = tf.tensor4d(data, [2, 4, 2, 2]);
    const { values, shape } = await run(convertOnnxToTfjs(model), input);
    input.dispose();
    assert.deepEqual(shape, [2, 4, 2, 2]);
    // Per image: channels 1..3 then channel 0, each 2x2, after ReLU.
    const expected = [0, 1].flatMap((n) => [1, 2, 3, 0].flatMap((c) => Array.from(data.subarray(n * 16 + c * 4, n * 16 + c * 4 + 4), (v) => Math.max(0, v))));
    assert.deepEqual(Array.from(values), expected);
  });

  it('names an unsupported operator and the node that uses it', () => {
    const model = graph([node('Sigmoid', ['images'], ['s']), node('GridSample', ['s', 's'], ['out'])], [], [1, 3, 8, 8], 'out');
    assert.throws(
      () => convertOnnxToTfjs(model),
      (error: unknown) => {
        assert.ok(error instanceof UnsupportedOnnxOpError);
        assert.equal(error.opType, 'GridSample');
        assert.match(error.message, /node "GridSample:out": operator GridSample is not supported/);
        assert.match(error.message, /Conv, MaxPool/);
        return true;
      },
    );
  });

  it('explains supported operators used in ways it cannot translate', () => {
    const grouped = graph(
      [node('Conv', ['images', 'w'], ['out'], { kernel_shape: [1, 1], group: 2 })],
      [floats('w', [4, 2, 1, 1], new Array(8).fill(1))],
      [1, 4, 8, 8],
      'out',
    );
    assert.throws(() => convertOnnxToTfjs(grouped), (error: unknown) => error instanceof OnnxConversionError && /grouped convolution \(group 2/.test(error.message));
    const batchMerge = graph([node('Reshape', ['images', 'shape'], ['out'])], [ints('shape', [-1])], [1, 3, 8, 8], 'out');
    assert.throws(() => convertOnnxToTfjs(batchMerge), /batch dimension, which must stay dynamic/);
    const oldOpset = graph([node('Relu', ['images'], ['out'])], [], [1, 3, 8, 8], 'out');
    oldOpset.opsets.set('', 9);
    assert.throws(() => convertOnnxToTfjs(oldOpset), /opset 9 is too old/);
  });
});
