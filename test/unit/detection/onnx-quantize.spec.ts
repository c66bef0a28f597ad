import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { hwcToChw } from '../../../src/detection/letterbox.ts';
import { activationParams, calibrationModel, OnnxQuantizeError, planInt8, quantizeWeights, RangeCollector, writeInt8Model } from '../../../src/detection/onnx-quantize.ts';
import { readOnnxModel } from '../../../src/detection/tfjs/onnx-reader.ts';
import { encodeOnnxModel, floatTensor, onnxGraph, onnxNode } from '../../helpers/onnx-graph.ts';

const SIZE = 4;
const seeded = (n: number, seed: number) => Array.from({ length: n }, (_, i) => Math.sin(i * 1.7 + seed) * 0.5);

/**
 * A YOLOv8-shaped toy: Conv -> SiLU -> MaxPool -> Conv -> SiLU -> (residual Add) -> the "head": a 1x1
 * Conv and a Concat with the head's own Sigmoid, as output0.
 */
function toyModel(withSilu = true): Uint8Array {
  const silu = (x: string, out: string) => (withSilu ? [onnxNode('Sigmoid', [x], [`${out}_sig`]), onnxNode('Mul', [x, `${out}_sig`], [out])] : [onnxNode('Relu', [x], [out])]);
  const nodes = [
    onnxNode('Conv', ['images', 'w0', 'b0'], ['c0'], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }),
    ...silu('c0', 'a0'),
    onnxNode('MaxPool', ['a0'], ['p0'], { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [1, 1] }),
    onnxNode('Conv', ['p0', 'w1', 'b1'], ['c1'], { kernel_shape: [1, 1] }),
    ...silu('c1', 'a1'),
    onnxNode('Add', ['a1', 'p0'], ['r1']),
    onnxNode('Conv', ['r1', 'w1', 'b1'], ['c2'], { kernel_shape: [1, 1] }),
    ...silu('c2', 'a2'),
    onnxNode('Conv', ['a2', 'wh', 'bh'], ['h0'], { kernel_shape: [1, 1] }),
    onnxNode('Sigmoid', ['h0'], ['h1']),
    onnxNode('Concat', ['h0', 'h1'], ['output0'], { axis: 1 }),
  ];
  const initializers = [
    floatTensor('w0', [4, 3, 3, 3], seeded(108, 1)),
    floatTensor('b0', [4], [0.1, -0.2, 0.05, 0]),
    floatTensor('w1', [4, 4, 1, 1], seeded(16, 2)),
    floatTensor('b1', [4], [0, 0.3, -0.1, 0.2]),
    floatTensor('wh', [2, 4, 1, 1], seeded(8, 3)),
    floatTensor('bh', [2], [0.5, -0.5]),
  ];
  return encodeOnnxModel(onnxGraph(nodes, initializers, [1, 3, SIZE, SIZE], 'output0'));
}

const image = (seed: number) => Uint8Array.from({ length: SIZE * SIZE * 3 }, (_, i) => Math.floor(((Math.sin(i * 0.9 + seed) + 1) / 2) * 255));

async function run(model: Uint8Array, feeds: Record<string, ort.Tensor>): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(model);
  try {
    const out = await session.run(feeds);
    return Float32Array.from(out[session.outputNames[0]!]!.data as Float32Array);
  } finally {
    await session.release();
  }
}

describe('onnx-quantize (static QDQ int8)', () => {
  it('quantizes weights per output channel, symmetric in [-127, 127]', () => {
    const { data, scales } = quantizeWeights(Float32Array.from([1, -0.5, 0.25, 0, 0, 0, 0.03, -0.04]), 2);
    assert.deepEqual([...scales], [Math.fround(1 / 127), Math.fround(0.04 / 127)]);
    assert.deepEqual([...data], [127, -64, 32, 0, 0, 0, 95, -127]);
    assert.deepEqual([...quantizeWeights(new Float32Array(2), 1).scales], [1], 'an all-zero channel gets scale 1');
  });

  it('gives activations an asymmetric 8-bit range that includes zero', () => {
    assert.deepEqual(activationParams({ min: -1, max: 3 }, 'uint8'), { scale: Math.fround(4 / 255), zeroPoint: 64 });
    assert.deepEqual(activationParams({ min: 0.5, max: 1 }, 'uint8'), { scale: Math.fround(1 / 255), zeroPoint: 0 });
    assert.deepEqual(activationParams({ min: -1, max: 3 }, 'int8'), { scale: Math.fround(4 / 255), zeroPoint: -64 });
    assert.deepEqual(activationParams({ min: 0, max: 0 }, 'uint8'), { scale: 1, zeroPoint: 0 });
  });

  it('keeps the head (from the last SiLU to the output) in float, and lets value-moving ops share their input\'s quantization', () => {
    const plan = planInt8(toyModel());
    assert.deepEqual(plan.floatNodes, ['Conv:h0', 'Sigmoid:h1', 'Concat:output0']);
    assert.deepEqual(plan.tensors, ['images', 'c0', 'a0_sig', 'a0', 'p0', 'c1', 'a1_sig', 'a1', 'r1', 'c2', 'a2_sig', 'a2']);
    assert.ok(!plan.calibrated.includes('p0'), 'MaxPool shares its input\'s range');
    assert.ok(!plan.calibrated.includes('images'), 'the input\'s scale is 1/255');
    assert.deepEqual(plan.input, { name: 'images', height: SIZE, width: SIZE });
  });

  it('writes a model that takes the RGB bytes and stays close to the float model', async () => {
    const model = toyModel();
    const { bytes: calibration, plan } = calibrationModel(model);
    const session = await ort.InferenceSession.create(calibration);
    const collector = new RangeCollector();
    for (const seed of [1, 2, 3]) {
      const out = await session.run({ images: new ort.Tensor('float32', hwcToChw(image(seed), SIZE * SIZE), [1, 3, SIZE, SIZE]) }, plan.calibrated);
      for (const name of plan.calibrated) collector.observe(name, out[name]!.data as Float32Array);
    }
    await session.release();
    const { bytes } = writeInt8Model(model, collector.ranges, { 'vidsense.test': 'yes' });
    const parsed = readOnnxModel(bytes);
    assert.deepEqual(parsed.graph.inputs.map((i) => [i.name, i.elemType, i.shape]), [['images_rgb8', 2, [1, SIZE, SIZE, 3]]]);
    assert.equal(parsed.metadata.get('vidsense.test'), 'yes');
    assert.equal(parsed.graph.nodes.filter((n) => n.opType === 'QuantizeLinear').length, plan.tensors.length - 1, 'one pair per tensor, the input already bytes');
    assert.equal(parsed.graph.initializers.get('w0_quantized')?.dataType, 3, 'int8 weights');
    assert.equal(parsed.graph.initializers.get('b0_quantized')?.dataType, 6, 'int32 bias');
    assert.ok(parsed.graph.initializers.has('wh') && !parsed.graph.initializers.has('w0'), 'the head keeps float weights; quantized ones go');

    const pixels = image(4);
    const expected = await run(model, { images: new ort.Tensor('float32', hwcToChw(pixels, SIZE * SIZE), [1, 3, SIZE, SIZE]) });
    const actual = await run(bytes, { images_rgb8: new ort.Tensor('uint8', pixels, [1, SIZE, SIZE, 3]) });
    const worst = Math.max(...expected.map((v, i) => Math.abs(v - actual[i]!)));
    const spread = Math.max(...expected) - Math.min(...expected);
    assert.ok(worst < 0.05 * spread, `max |int8 - fp32| ${worst} of a ${spread} spread`);
  });

  it('refuses models it cannot vouch for', () => {
    assert.throws(() => planInt8(toyModel(false)), /no SiLU activation separates the detection head/);
    assert.throws(() => planInt8(Uint8Array.from([0x3a, 0x02, 0x0a])), OnnxQuantizeError);
    // A sparse initializer (GraphProto field 15) would be lost on re-encoding.
    const model = toyModel();
    assert.throws(() => writeInt8Model(appendToGraph(model, [0x7a, 0x00]), new Map()), /GraphProto field 15/);
    assert.throws(() => writeInt8Model(model, new Map()), /no calibrated range for tensor "c0"/);
  });
});

/** The model with `extra` bytes appended inside its graph message (field 7, re-length-prefixed). */
function appendToGraph(model: Uint8Array, extra: number[]): Uint8Array {
  const parsed = readOnnxModel(model); // only to be sure the input is a model
  assert.ok(parsed.graph.nodes.length > 0);
  const out: number[] = [];
  let pos = 0;
  while (pos < model.length) {
    const tag = model[pos]!;
    let len = 0;
    let shift = 0;
    let p = pos + 1;
    if ((tag & 7) === 0) {
      while (model[p]! & 0x80) p++;
      out.push(...model.subarray(pos, p + 1));
      pos = p + 1;
      continue;
    }
    for (;;) {
      const b = model[p++]!;
      len |= (b & 0x7f) << shift;
      shift += 7;
      if (b < 0x80) break;
    }
    const payload = [...model.subarray(p, p + len)];
    if (tag === 0x3a) payload.push(...extra);
    const n = payload.length;
    const varint: number[] = [];
    for (let v = n; ; v >>>= 7) {
      if (v < 0x80) {
        varint.push(v);
        break;
      }
      varint.push((v & 0x7f) | 0x80);
    }
    out.push(tag, ...varint, ...payload);
    pos = p + len;
  }
  return Uint8Array.from(out);
}
