/**
 * Folds the network's input normalisation into an ONNX model, at the protobuf wire level: the float
 * [batch, 3, h, w] input in [0, 1] becomes a uint8 [batch, h, w, 3] input of RGB bytes (what the decoder
 * writes), followed in the graph by
 *
 *   Transpose(perm 0,3,1,2) -> Cast(float) -> Div(255) -> the original input's name
 *
 * so every node that read the old input reads the same values (Div, like Ultralytics' `im / 255`, not a
 * multiplication by 1/255), and no JavaScript loop touches pixels. The transpose runs on bytes, a quarter of
 * the float traffic. Only the graph input is replaced and three nodes and one scalar initializer are added;
 * every other byte of the file is kept as it is.
 *
 * A model whose input is already uint8 [batch, h, w, 3] (one made by the int8 quantizer, which feeds the
 * bytes to its first quantized convolution directly) is returned unchanged.
 */

import { concatBytes, encodeVarint, parseFields, ProtobufWireError, readVarint, WIRE_LEN, WIRE_VARINT, type WireField } from './protobuf-wire.ts';

/** Thrown when a model's input is not one foldPreprocessing knows how to replace. */
export class OnnxPreprocessFoldError extends Error {
  override name = 'OnnxPreprocessFoldError';
}

const MODEL_GRAPH = 7;
const GRAPH_NODE = 1, GRAPH_INITIALIZER = 5, GRAPH_INPUT = 11, GRAPH_OUTPUT = 12, GRAPH_VALUE_INFO = 13;
const NODE_INPUT = 1, NODE_OUTPUT = 2, NODE_NAME = 3, NODE_OP_TYPE = 4, NODE_ATTRIBUTE = 5;
const ATTR_NAME = 1, ATTR_I = 3, ATTR_INTS = 8, ATTR_TYPE = 20;
const ATTR_TYPE_INT = 2, ATTR_TYPE_INTS = 7;
const TENSOR_DIMS = 1, TENSOR_DATA_TYPE = 2, TENSOR_NAME = 8, TENSOR_RAW_DATA = 9;
const VALUE_INFO_NAME = 1, VALUE_INFO_TYPE = 2;
const TYPE_TENSOR = 1, TENSOR_ELEM_TYPE = 1, TENSOR_SHAPE = 2, SHAPE_DIM = 1, DIM_VALUE = 1;
export const ONNX_FLOAT = 1;
export const ONNX_UINT8 = 2;

const utf8 = new TextDecoder('utf-8');
const encoder = new TextEncoder();

function fail(message: string): never {
  throw new OnnxPreprocessFoldError(`cannot fold the input normalisation into the ONNX model: ${message}`);
}

// Protobuf encoding of the few messages written here.
const tag = (field: number, wire: number): Uint8Array => encodeVarint((field << 3) | wire);
export const lenField = (field: number, payload: Uint8Array): Uint8Array => concatBytes([tag(field, WIRE_LEN), encodeVarint(payload.length), payload]);
export const varintField = (field: number, value: number): Uint8Array => concatBytes([tag(field, WIRE_VARINT), encodeVarint(value)]);
export const stringField = (field: number, value: string): Uint8Array => lenField(field, encoder.encode(value));

function intAttribute(name: string, value: number): Uint8Array {
  return concatBytes([stringField(ATTR_NAME, name), varintField(ATTR_I, value), varintField(ATTR_TYPE, ATTR_TYPE_INT)]);
}

function intsAttribute(name: string, values: number[]): Uint8Array {
  return concatBytes([stringField(ATTR_NAME, name), ...values.map((v) => varintField(ATTR_INTS, v)), varintField(ATTR_TYPE, ATTR_TYPE_INTS)]);
}

function node(opType: string, name: string, inputs: string[], outputs: string[], attributes: Uint8Array[] = []): Uint8Array {
  return lenField(
    GRAPH_NODE,
    concatBytes([
      ...inputs.map((i) => stringField(NODE_INPUT, i)),
      ...outputs.map((o) => stringField(NODE_OUTPUT, o)),
      stringField(NODE_NAME, name),
      stringField(NODE_OP_TYPE, opType),
      ...attributes.map((a) => lenField(NODE_ATTRIBUTE, a)),
    ]),
  );
}

/** A float32 scalar initializer. */
function floatScalar(name: string, value: number): Uint8Array {
  const raw = new Uint8Array(4);
  new DataView(raw.buffer).setFloat32(0, value, true);
  return lenField(GRAPH_INITIALIZER, concatBytes([varintField(TENSOR_DATA_TYPE, ONNX_FLOAT), stringField(TENSOR_NAME, name), lenField(TENSOR_RAW_DATA, raw)]));
}

interface InputInfo {
  field: WireField;
  name: string;
  elemType: number;
  /** The raw bytes of each TensorShapeProto.Dimension, so a symbolic batch is kept as it is. */
  dims: Uint8Array[];
  /** Each dimension's dim_value, undefined when symbolic or unknown. */
  values: (number | undefined)[];
}

function readInput(bytes: Uint8Array, field: WireField): InputInfo {
  const fields = parseFields(bytes, field.valueStart, field.end);
  const nameField = fields.find((f) => f.field === VALUE_INFO_NAME && f.wire === WIRE_LEN);
  const name = nameField ? utf8.decode(bytes.subarray(nameField.valueStart, nameField.end)) : '';
  const type = fields.find((f) => f.field === VALUE_INFO_TYPE && f.wire === WIRE_LEN);
  const tensor = type && parseFields(bytes, type.valueStart, type.end).find((f) => f.field === TYPE_TENSOR && f.wire === WIRE_LEN);
  if (!tensor) fail(`input "${name}" is not a tensor`);
  const tensorFields = parseFields(bytes, tensor.valueStart, tensor.end);
  const elem = tensorFields.find((f) => f.field === TENSOR_ELEM_TYPE && f.wire === WIRE_VARINT);
  const shape = tensorFields.find((f) => f.field === TENSOR_SHAPE && f.wire === WIRE_LEN);
  const dimFields = shape ? parseFields(bytes, shape.valueStart, shape.end).filter((f) => f.field === SHAPE_DIM && f.wire === WIRE_LEN) : [];
  return {
    field,
    name,
    elemType: elem ? Number(readVarint(bytes, elem.valueStart, elem.end)[0]) : 0,
    dims: dimFields.map((d) => bytes.subarray(d.valueStart, d.end)),
    values: dimFields.map((d) => {
      const value = parseFields(bytes, d.valueStart, d.end).find((f) => f.field === DIM_VALUE && f.wire === WIRE_VARINT);
      return value ? Number(readVarint(bytes, value.valueStart, value.end)[0]) : undefined;
    }),
  };
}

/** A ValueInfoProto of a uint8 tensor with these dimensions (raw Dimension messages). */
function uint8ValueInfo(field: number, name: string, dims: Uint8Array[]): Uint8Array {
  const shape = concatBytes(dims.map((d) => lenField(SHAPE_DIM, d)));
  const tensor = concatBytes([varintField(TENSOR_ELEM_TYPE, ONNX_UINT8), lenField(TENSOR_SHAPE, shape)]);
  return lenField(field, concatBytes([stringField(VALUE_INFO_NAME, name), lenField(VALUE_INFO_TYPE, lenField(TYPE_TENSOR, tensor))]));
}

/** Whether an input is already the folded form: uint8 [batch, h, w, 3]. */
const isFolded = (input: InputInfo): boolean => input.elemType === ONNX_UINT8 && input.dims.length === 4 && input.values[3] === 3;

/** Returns the model with a uint8 NHWC input (see above), or the same bytes when it already has one. */
export function foldPreprocessing(modelBytes: Uint8Array): Uint8Array {
  try {
    return fold(modelBytes);
  } catch (error) {
    if (error instanceof ProtobufWireError) fail(error.message);
    throw error;
  }
}

function fold(bytes: Uint8Array): Uint8Array {
  const graphFields = parseFields(bytes).filter((f) => f.field === MODEL_GRAPH);
  if (graphFields.length !== 1 || graphFields[0]!.wire !== WIRE_LEN) fail('the model does not have exactly one graph');
  const graphField = graphFields[0]!;
  const graph = parseFields(bytes, graphField.valueStart, graphField.end);

  // Every name in the graph, so the new ones cannot collide.
  const names = new Set<string>();
  const initializers = new Set<string>();
  const addName = (f: WireField, field: number, into = names) => {
    for (const sub of parseFields(bytes, f.valueStart, f.end)) if (sub.field === field && sub.wire === WIRE_LEN) into.add(utf8.decode(bytes.subarray(sub.valueStart, sub.end)));
  };
  for (const f of graph) {
    if (f.wire !== WIRE_LEN) continue;
    if (f.field === GRAPH_NODE) {
      addName(f, NODE_INPUT);
      addName(f, NODE_OUTPUT);
    } else if (f.field === GRAPH_INITIALIZER) {
      addName(f, TENSOR_NAME);
      addName(f, TENSOR_NAME, initializers);
    } else if (f.field === GRAPH_INPUT || f.field === GRAPH_OUTPUT || f.field === GRAPH_VALUE_INFO) {
      addName(f, VALUE_INFO_NAME);
    }
  }
  const unique = (base: string): string => {
    let name = base;
    for (let i = 1; names.has(name); i++) name = `${base}_${i}`;
    names.add(name);
    return name;
  };

  // Graph inputs fed by the caller (before IR 4, initializers were listed as inputs too).
  const inputs = graph
    .filter((f) => f.field === GRAPH_INPUT && f.wire === WIRE_LEN)
    .map((f) => readInput(bytes, f))
    .filter((input) => !initializers.has(input.name));
  if (inputs.length !== 1) fail(`the graph has ${inputs.length} inputs, expected one image input`);
  const input = inputs[0]!;
  if (isFolded(input)) return bytes;
  if (input.elemType !== ONNX_FLOAT) fail(`input "${input.name}" has element type ${input.elemType}, expected float`);
  if (input.dims.length !== 4 || input.values[1] !== 3) fail(`input "${input.name}" is not [batch, 3, height, width]`);

  const rgb = unique(`${input.name}_rgb8`);
  const nchw = unique(`${input.name}_rgb8_nchw`);
  const float = unique(`${input.name}_rgb8_float`);
  const divisor = unique(`${input.name}_rgb8_divisor`);
  const newNodes = concatBytes([
    node('Transpose', unique('vidsense_preprocess/Transpose'), [rgb], [nchw], [intsAttribute('perm', [0, 3, 1, 2])]),
    node('Cast', unique('vidsense_preprocess/Cast'), [nchw], [float], [intAttribute('to', ONNX_FLOAT)]),
    node('Div', unique('vidsense_preprocess/Div'), [float, divisor], [input.name]),
  ]);
  const [batch, , height, width] = input.dims as [Uint8Array, Uint8Array, Uint8Array, Uint8Array];
  const newInput = uint8ValueInfo(GRAPH_INPUT, rgb, [batch, height, width, varintField(DIM_VALUE, 3)]);

  const chunks: Uint8Array[] = [];
  let nodesPlaced = false;
  for (const f of graph) {
    if (f.field === GRAPH_NODE && !nodesPlaced) {
      chunks.push(newNodes); // first, so the node list stays in topological order
      nodesPlaced = true;
    }
    chunks.push(f.start === input.field.start ? newInput : bytes.subarray(f.start, f.end));
  }
  if (!nodesPlaced) fail('the graph has no nodes');
  chunks.push(floatScalar(divisor, 255));
  const newGraph = concatBytes(chunks);
  return concatBytes([bytes.subarray(0, graphField.start), lenField(MODEL_GRAPH, newGraph), bytes.subarray(graphField.end)]);
}
