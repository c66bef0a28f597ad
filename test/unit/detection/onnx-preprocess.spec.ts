import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { hwcToChw } from '../../../src/detection/letterbox.ts';
import { makeBatchDynamic } from '../../../src/detection/onnx-batch.ts';
import { foldPreprocessing, OnnxPreprocessFoldError } from '../../../src/detection/onnx-preprocess.ts';
import { readOnnxModel } from '../../../src/detection/tfjs/onnx-reader.ts';
import { encodeOnnxModel, floatTensor, onnxGraph, onnxNode } from '../../helpers/onnx-graph.ts';

/** images [1, 3, h, w] -> Mul by 1 (so the graph has a node that reads the input) -> out. */
function passThrough(h: number, w: number, inputShape: (number | string)[] = [1, 3, h, w]): Uint8Array {
  const model = onnxGraph([onnxNode('Mul', ['images', 'one'], ['out'])], [floatTensor('one', [], [1])], inputShape as number[], 'out');
  return encodeOnnxModel(model);
}

async function run(model: Uint8Array, feeds: Record<string, ort.Tensor>): Promise<ort.Tensor> {
  const session = await ort.InferenceSession.create(model);
  try {
    return (await session.run(feeds)).out!;
  } finally {
    await session.release();
  }
}

describe('foldPreprocessing (uint8 NHWC input, normalisation in the graph)', () => {
  it('gives the nodes behind the input exactly the values of hwcToChw, for every byte value', async () => {
    // 16 x 16 pixels x 3 channels covers 0..255 in each channel at different positions.
    const [h, w] = [16, 16];
    const rgb = Uint8Array.from({ length: h * w * 3 }, (_, i) => (i * 7 + (i % 3) * 85) % 256);
    const folded = foldPreprocessing(passThrough(h, w));
    const out = await run(folded, { images_rgb8: new ort.Tensor('uint8', rgb, [1, h, w, 3]) });
    assert.deepEqual(out.dims, [1, 3, h, w]);
    assert.deepEqual([...(out.data as Float32Array)], [...hwcToChw(rgb, h * w)], 'bit-identical to the JavaScript conversion');
  });

  it('declares the new input as uint8 [batch, h, w, 3], keeps a symbolic batch, and leaves every other node alone', () => {
    const dynamic = makeBatchDynamic(passThrough(4, 6));
    const model = readOnnxModel(foldPreprocessing(dynamic));
    assert.deepEqual(model.graph.inputs.map((i) => [i.name, i.elemType, i.shape]), [['images_rgb8', 2, ['batch', 4, 6, 3]]]);
    assert.deepEqual(model.graph.nodes.map((n) => n.opType), ['Transpose', 'Cast', 'Div', 'Mul']);
    assert.deepEqual(model.graph.nodes[3]!.inputs, ['images', 'one'], 'the original node reads the folded values under the old name');
    assert.deepEqual(model.graph.nodes[0]!.attributes.get('perm'), { kind: 'ints', value: [0, 3, 1, 2] });
  });

  it('runs a dynamic batch', async () => {
    const folded = foldPreprocessing(makeBatchDynamic(passThrough(2, 2)));
    const rgb = Uint8Array.from({ length: 3 * 2 * 2 * 3 }, (_, i) => i * 20);
    const out = await run(folded, { images_rgb8: new ort.Tensor('uint8', rgb, [3, 2, 2, 3]) });
    assert.deepEqual(out.dims, [3, 3, 2, 2]);
    assert.deepEqual([...(out.data as Float32Array)], [...hwcToChw(rgb, 4)]);
  });

  it('returns a model that already takes uint8 NHWC as it is', () => {
    const folded = foldPreprocessing(passThrough(2, 2));
    assert.equal(foldPreprocessing(folded), folded);
  });

  it('does not collide with names already in the graph', () => {
    const model = onnxGraph([onnxNode('Mul', ['images', 'images_rgb8'], ['out'])], [floatTensor('images_rgb8', [], [1])], [1, 3, 2, 2], 'out');
    const folded = readOnnxModel(foldPreprocessing(encodeOnnxModel(model)));
    assert.equal(folded.graph.inputs[0]!.name, 'images_rgb8_1');
  });

  it('refuses inputs that are not one float [batch, 3, h, w] image', () => {
    assert.throws(() => foldPreprocessing(passThrough(2, 2, [1, 4, 2, 2])), OnnxPreprocessFoldError);
    assert.throws(() => foldPreprocessing(passThrough(2, 2, [1, 3, 4])), /not \[batch, 3, height, width\]/);
    assert.throws(() => foldPreprocessing(Uint8Array.from([0x3a, 0x02, 0x0a])), OnnxPreprocessFoldError);
  });
});
