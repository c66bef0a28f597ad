import * as tf from '@tensorflow/tfjs-core';
import { loadGraphModel } from '@tensorflow/tfjs-converter';
import type { ConvertedTfjsModel } from '../../src/detection/tfjs/convert.ts';
import type { OnnxAttribute, OnnxModel, OnnxNode, OnnxTensor } from '../../src/detection/tfjs/onnx-reader.ts';

/** Small ONNX graphs, in the parsed form onnx-reader.ts hands to the converter, for unit tests. */

export type OnnxAttrs = Record<string, number | number[] | string>;

export function onnxNode(opType: string, inputs: string[], outputs: string[], attrs: OnnxAttrs = {}): OnnxNode {
  const attributes = new Map<string, OnnxAttribute>();
  for (const [key, value] of Object.entries(attrs)) {
    attributes.set(key, typeof value === 'string' ? { kind: 'string', value } : Array.isArray(value) ? { kind: 'ints', value } : { kind: 'int', value });
  }
  return { name: `${opType}:${outputs[0]}`, opType, domain: '', inputs, outputs, attributes };
}

export function int64Tensor(name: string, values: number[], dims = [values.length]): OnnxTensor {
  return { name, dataType: 7, dims, kind: 'int', values };
}

/** A float `images` input of `inputShape` through `nodes` to the float output `output`. */
export function onnxGraph(nodes: OnnxNode[], initializers: OnnxTensor[], inputShape: number[], output: string): OnnxModel {
  return {
    irVersion: 8,
    producerName: 'test',
    producerVersion: '',
    opsets: new Map([['', 17]]),
    metadata: new Map(),
    graph: {
      name: 'test',
      nodes,
      initializers: new Map(initializers.map((t) => [t.name, t])),
      inputs: [{ name: 'images', elemType: 1, shape: inputShape }],
      outputs: [{ name: output, elemType: 1, shape: undefined }],
      valueInfo: new Map(),
    },
  };
}

/** Loads a converted model in tfjs (on the active backend), runs `input` through it and disposes everything. */
export async function runConverted(converted: ConvertedTfjsModel, input: tf.Tensor): Promise<{ values: Float32Array; shape: number[] }> {
  const model = await loadGraphModel({
    load: async () => ({
      modelTopology: converted.modelTopology,
      weightSpecs: converted.weightSpecs,
      weightData: converted.weightData.slice().buffer,
      signature: converted.signature,
    }),
  });
  try {
    const output = model.execute(input) as tf.Tensor;
    const result = { values: output.dataSync() as Float32Array, shape: output.shape };
    output.dispose();
    return result;
  } finally {
    model.dispose();
  }
}
