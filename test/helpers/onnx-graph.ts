import * as tf from '@tensorflow/tfjs-core';
import { loadGraphModel } from '@tensorflow/tfjs-converter';
import type { ConvertedTfjsModel } from '../../src/detection/tfjs/convert.ts';
import { getModelType } from '../../src/detection/tfjs/onnx-reader.ts';
import type { OnnxAttribute, OnnxModel, OnnxNode, OnnxTensor } from '../../src/detection/tfjs/onnx-reader.ts';

/** Small ONNX graphs, in the parsed form onnx-reader.ts hands to the converter, for unit tests. */

/** Numbers are INT attributes, arrays INTS; `{ float: x }` is a FLOAT attribute (LeakyRelu's alpha, say). */
export type OnnxAttrs = Record<string, number | number[] | string | { float: number }>;

export function onnxNode(opType: string, inputs: string[], outputs: string[], attrs: OnnxAttrs = {}): OnnxNode {
  const attributes = new Map<string, OnnxAttribute>();
  for (const [key, value] of Object.entries(attrs)) {
    attributes.set(
      key,
      typeof value === 'string'
        ? { kind: 'string', value }
        : Array.isArray(value)
          ? { kind: 'ints', value }
          : typeof value === 'number'
            ? { kind: 'int', value }
            : { kind: 'float', value: value.float },
    );
  }
  return { name: `${opType}:${outputs[0]}`, opType, domain: '', inputs, outputs, attributes };
}

export function floatTensor(name: string, dims: number[], values: number[]): OnnxTensor {
  return { name, dataType: 1, dims, kind: 'float', values: Float32Array.from(values) };
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

/**
 * Serializes a model in the parsed form back to ONNX protobuf, so the same small graph runs on ONNX
 * Runtime as the reference. Covers what these helpers build: float and int64 tensors, int/ints/float/string
 * attributes, a float input with a fixed shape and a float output.
 */
export function encodeOnnxModel(model: OnnxModel): Uint8Array {
  const tensor = (t: OnnxTensor) =>
    t.kind === 'float'
      ? { name: t.name, data_type: 1, dims: t.dims, float_data: Array.from(t.values) }
      : { name: t.name, data_type: 7, dims: t.dims, int64_data: t.values };
  const attribute = (name: string, a: OnnxAttribute) => {
    switch (a.kind) {
      case 'float':
        return { name, type: 1, f: a.value };
      case 'int':
        return { name, type: 2, i: a.value };
      case 'string':
        return { name, type: 3, s: Buffer.from(a.value, 'utf8') };
      case 'tensor':
        return { name, type: 4, t: tensor(a.value) };
      case 'floats':
        return { name, type: 6, floats: a.value };
      case 'ints':
        return { name, type: 7, ints: a.value };
      default:
        throw new Error(`encodeOnnxModel: attribute kind ${a.kind} is not supported`);
    }
  };
  const valueInfo = (name: string, shape: (number | string | undefined)[] | undefined) => ({
    name,
    type: { tensor_type: { elem_type: 1, ...(shape ? { shape: { dim: shape.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d ?? 'n' })) } } : {}) } },
  });
  const { graph } = model;
  const type = getModelType();
  const message = type.fromObject({
    ir_version: model.irVersion,
    producer_name: model.producerName,
    opset_import: [...model.opsets].map(([domain, version]) => ({ domain, version })),
    graph: {
      name: graph.name,
      node: graph.nodes.map((n) => ({
        name: n.name,
        op_type: n.opType,
        domain: n.domain,
        input: n.inputs,
        output: n.outputs,
        attribute: [...n.attributes].map(([name, a]) => attribute(name, a)),
      })),
      initializer: [...graph.initializers.values()].map(tensor),
      input: graph.inputs.map((i) => valueInfo(i.name, i.shape)),
      output: graph.outputs.map((o) => valueInfo(o.name, o.shape)),
    },
  });
  return type.encode(message).finish();
}
