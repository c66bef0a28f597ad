/**
 * Turns a fixed-batch (batch 1) ONNX export into a dynamic-batch one, at the protobuf wire level.
 *
 * The stock Ultralytics YOLOv8 export fixes the batch at 1 in three places: the graph input's and
 * outputs' dim 0 (dim_value 1), the value_info of every activation, and the detection head's Reshape
 * shape constants ([1,144,-1], [1,4,16,8400], [1,4,8400]). makeBatchDynamic rewrites exactly those:
 * dims become dim_param "batch", and a Reshape shape's leading 1 becomes 0 ("copy the input's dim 0",
 * ONNX Reshape with allowzero = 0). Every other byte of the file is copied as it is; the only
 * re-encoded bytes are the length prefixes of the messages that enclose an edited dimension.
 *
 * Unsimplified exports (yolov8s and yolov8m here) also compute a size in the graph: Shape of the head's
 * [1,4,8400] tensor -> Gather index 1 (the 4, not the batch) -> (4 + 1) / 2 -> Slice ends along axis 1.
 * The output of a Shape is therefore tracked apart from the tensors that carry the batch on axis 0: its
 * element 0 is the batch size and its other elements are fixed (every batched tensor keeps its other
 * dimensions at any batch). A Gather of constant indices >= 1 from it reads fixed dimensions, so what is
 * computed from that is batch-independent and left as it is; any other use of such a shape (reading
 * element 0, a Concat, a Reshape, arithmetic on the whole vector, ...) is refused, as is Size.
 */

import { concatBytes, encodeVarint, parseFields, ProtobufWireError, readVarint, rewriteMessage, WIRE_LEN, WIRE_VARINT, type WireField } from './protobuf-wire.ts';

/** Thrown when a model's structure is not one makeBatchDynamic knows how to rewrite safely. */
export class OnnxBatchRewriteError extends Error {
  override name = 'OnnxBatchRewriteError';
}

/** The symbolic name given to the batch dimension. */
export const BATCH_DIM_PARAM = 'batch';

// Field numbers from onnx.proto.
const MODEL_GRAPH = 7;
const GRAPH_NODE = 1, GRAPH_INITIALIZER = 5, GRAPH_INPUT = 11, GRAPH_OUTPUT = 12, GRAPH_VALUE_INFO = 13;
const NODE_INPUT = 1, NODE_OUTPUT = 2, NODE_OP_TYPE = 4, NODE_ATTRIBUTE = 5, NODE_DOMAIN = 7;
const ATTR_NAME = 1, ATTR_I = 3, ATTR_T = 5, ATTR_G = 6, ATTR_INTS = 8, ATTR_GRAPHS = 11;
const TENSOR_DIMS = 1, TENSOR_DATA_TYPE = 2, TENSOR_INT64_DATA = 7, TENSOR_NAME = 8, TENSOR_RAW_DATA = 9, TENSOR_DATA_LOCATION = 14;
const VALUE_INFO_NAME = 1, VALUE_INFO_TYPE = 2;
const TYPE_TENSOR = 1, TYPE_TENSOR_SHAPE = 2, SHAPE_DIM = 1, DIM_VALUE = 1, DIM_PARAM = 2;
const INT64 = 7;

const utf8 = new TextDecoder('utf-8');
const encoder = new TextEncoder();

function fail(message: string): never {
  throw new OnnxBatchRewriteError(`cannot make the ONNX batch dynamic: ${message}`);
}

/** int64 fields are two's-complement varints: reinterpret the unsigned 64-bit value. */
const signed64 = (value: bigint): bigint => BigInt.asIntN(64, value);

const text = (bytes: Uint8Array, f: WireField): string => utf8.decode(bytes.subarray(f.valueStart, f.end));
const sub = (bytes: Uint8Array, f: WireField): WireField[] => parseFields(bytes, f.valueStart, f.end);

/** Reads a repeated int64 field, packed or not; `at` is each element's byte offset. */
function readInt64s(bytes: Uint8Array, fields: WireField[], field: number): { value: bigint; at: number }[] {
  const out: { value: bigint; at: number }[] = [];
  for (const f of fields) {
    if (f.field !== field) continue;
    if (f.wire === WIRE_VARINT) {
      out.push({ value: signed64(readVarint(bytes, f.valueStart, f.end)[0]), at: f.valueStart });
    } else if (f.wire === WIRE_LEN) {
      let pos = f.valueStart;
      while (pos < f.end) {
        const [value, next] = readVarint(bytes, pos, f.end);
        out.push({ value: signed64(value), at: pos });
        pos = next;
      }
    }
  }
  return out;
}

function readInt(bytes: Uint8Array, fields: WireField[], field: number): bigint | undefined {
  let value: bigint | undefined;
  for (const f of fields) if (f.field === field && f.wire === WIRE_VARINT) value = signed64(readVarint(bytes, f.valueStart, f.end)[0]);
  return value;
}

interface ConstTensor {
  name: string;
  values: bigint[];
  /** Where the first element's bytes are, and how it is stored, so a leading 1 can be patched to 0 in place. */
  first: { at: number; raw: boolean } | undefined;
}

/** Decodes an INT64 tensor held in the file (raw_data or int64_data); undefined for any other tensor. */
function readConstTensor(bytes: Uint8Array, fields: WireField[]): ConstTensor | undefined {
  let name = '';
  for (const f of fields) if (f.field === TENSOR_NAME && f.wire === WIRE_LEN) name = text(bytes, f);
  if (readInt(bytes, fields, TENSOR_DATA_TYPE) !== BigInt(INT64)) return undefined;
  if ((readInt(bytes, fields, TENSOR_DATA_LOCATION) ?? 0n) !== 0n) return undefined; // external data
  const dims = readInt64s(bytes, fields, TENSOR_DIMS);
  if (dims.length > 1) return undefined;
  const raw = fields.find((f) => f.field === TENSOR_RAW_DATA && f.wire === WIRE_LEN);
  if (raw) {
    const length = raw.end - raw.valueStart;
    if (length % 8 !== 0) return undefined;
    const view = new DataView(bytes.buffer, bytes.byteOffset + raw.valueStart, length);
    const values = Array.from({ length: length / 8 }, (_, i) => view.getBigInt64(i * 8, true));
    return { name, values, first: values.length ? { at: raw.valueStart, raw: true } : undefined };
  }
  const data = readInt64s(bytes, fields, TENSOR_INT64_DATA);
  return { name, values: data.map((d) => d.value), first: data[0] && { at: data[0].at, raw: false } };
}

interface NodeInfo {
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  /** Integer and integer-list attributes. */
  ints: Map<string, bigint[]>;
  /** Constant node's value (attribute value or value_ints). */
  constant?: ConstTensor;
  hasSubgraph: boolean;
}

function readNode(bytes: Uint8Array, fields: WireField[]): NodeInfo {
  const node: NodeInfo = { opType: '', domain: '', inputs: [], outputs: [], ints: new Map(), hasSubgraph: false };
  for (const f of fields) {
    if (f.wire !== WIRE_LEN) continue;
    if (f.field === NODE_INPUT) node.inputs.push(text(bytes, f));
    else if (f.field === NODE_OUTPUT) node.outputs.push(text(bytes, f));
    else if (f.field === NODE_OP_TYPE) node.opType = text(bytes, f);
    else if (f.field === NODE_DOMAIN) node.domain = text(bytes, f);
  }
  for (const f of fields) {
    if (f.field !== NODE_ATTRIBUTE || f.wire !== WIRE_LEN) continue;
    const attr = sub(bytes, f);
    const nameField = attr.find((a) => a.field === ATTR_NAME && a.wire === WIRE_LEN);
    const name = nameField ? text(bytes, nameField) : '';
    if (attr.some((a) => a.field === ATTR_G || a.field === ATTR_GRAPHS)) node.hasSubgraph = true;
    const i = readInt(bytes, attr, ATTR_I);
    const ints = readInt64s(bytes, attr, ATTR_INTS);
    if (i !== undefined) node.ints.set(name, [i]);
    else if (ints.length) node.ints.set(name, ints.map((x) => x.value));
    if (node.opType === 'Constant') {
      const t = attr.find((a) => a.field === ATTR_T && a.wire === WIRE_LEN);
      if (name === 'value' && t) node.constant = readConstTensor(bytes, sub(bytes, t));
      if (name === 'value_ints') node.constant = { name: '', values: ints.map((x) => x.value), first: ints[0] && { at: ints[0].at, raw: false } };
    }
  }
  if (node.constant && node.outputs[0] !== undefined) node.constant.name = node.outputs[0];
  return node;
}

type Dim0 = { kind: 'value'; value: bigint } | { kind: 'param' } | { kind: 'unknown' } | undefined;

/** The leading dimension of a ValueInfoProto's tensor shape; undefined when it has no shape or rank 0. */
function readDim0(bytes: Uint8Array, valueInfo: WireField[]): { name: string; dim0: Dim0 } {
  const nameField = valueInfo.find((f) => f.field === VALUE_INFO_NAME && f.wire === WIRE_LEN);
  const name = nameField ? text(bytes, nameField) : '';
  const type = valueInfo.find((f) => f.field === VALUE_INFO_TYPE && f.wire === WIRE_LEN);
  const tensor = type && sub(bytes, type).find((f) => f.field === TYPE_TENSOR && f.wire === WIRE_LEN);
  const shape = tensor && sub(bytes, tensor).find((f) => f.field === TYPE_TENSOR_SHAPE && f.wire === WIRE_LEN);
  const dim = shape && sub(bytes, shape).find((f) => f.field === SHAPE_DIM && f.wire === WIRE_LEN);
  if (!dim) return { name, dim0: undefined };
  const dimFields = sub(bytes, dim);
  const value = readInt(bytes, dimFields, DIM_VALUE);
  if (dimFields.some((f) => f.field === DIM_PARAM)) return { name, dim0: { kind: 'param' } };
  return { name, dim0: value === undefined ? { kind: 'unknown' } : { kind: 'value', value } };
}

/** Rewrites a ValueInfoProto so its shape's first dimension is dim_param "batch". */
function rewriteDim0(bytes: Uint8Array, valueInfo: WireField): Uint8Array {
  const firstOnly = (field: number, edit: (f: WireField) => Uint8Array) => {
    let done = false;
    return (f: WireField) => {
      if (done || f.field !== field) return undefined;
      done = true;
      return edit(f);
    };
  };
  const param = encoder.encode(BATCH_DIM_PARAM);
  const newDim = (dim: WireField): Uint8Array => {
    const kept = parseFields(bytes, dim.valueStart, dim.end)
      .filter((f) => f.field !== DIM_VALUE && f.field !== DIM_PARAM)
      .map((f) => bytes.subarray(f.start, f.end));
    return concatBytes([Uint8Array.of((DIM_PARAM << 3) | WIRE_LEN), encodeVarint(param.length), param, ...kept]);
  };
  return rewriteMessage(bytes, valueInfo.valueStart, valueInfo.end,
    firstOnly(VALUE_INFO_TYPE, (type) => rewriteMessage(bytes, type.valueStart, type.end,
      firstOnly(TYPE_TENSOR, (tensor) => rewriteMessage(bytes, tensor.valueStart, tensor.end,
        firstOnly(TYPE_TENSOR_SHAPE, (shape) => rewriteMessage(bytes, shape.valueStart, shape.end,
          firstOnly(SHAPE_DIM, newDim))))))));
}

const isDefaultDomain = (domain: string): boolean => domain === '' || domain === 'ai.onnx';

/**
 * Returns a copy of a batch-1 ONNX model whose batch dimension is dynamic ("batch"), or the very same
 * bytes when the model's inputs are already dynamic. Throws OnnxBatchRewriteError for a model whose
 * structure it cannot vouch for (a Reshape whose shape is not a constant with a leading 1, an op that
 * mixes the batch axis with others, a size computed from the batch, a fixed batch other than 1, ...).
 */
export function makeBatchDynamic(modelBytes: Uint8Array): Uint8Array {
  try {
    return rewriteBatchDynamic(modelBytes);
  } catch (error) {
    if (error instanceof ProtobufWireError) fail(error.message);
    throw error;
  }
}

function rewriteBatchDynamic(bytes: Uint8Array): Uint8Array {
  const graphFields = parseFields(bytes).filter((f) => f.field === MODEL_GRAPH);
  if (graphFields.length !== 1 || graphFields[0]!.wire !== WIRE_LEN) fail('the model does not have exactly one graph');
  const graphField = graphFields[0]!;
  const graph = sub(bytes, graphField);

  const constants = new Map<string, ConstTensor>();
  const initializerNames = new Set<string>();
  for (const f of graph) {
    if (f.field !== GRAPH_INITIALIZER || f.wire !== WIRE_LEN) continue;
    const fields = sub(bytes, f);
    const nameField = fields.find((t) => t.field === TENSOR_NAME && t.wire === WIRE_LEN);
    if (nameField) initializerNames.add(text(bytes, nameField));
    const tensor = readConstTensor(bytes, fields);
    if (tensor) constants.set(tensor.name, tensor);
  }
  const nodes = graph.filter((f) => f.field === GRAPH_NODE && f.wire === WIRE_LEN).map((f) => readNode(bytes, sub(bytes, f)));
  for (const node of nodes) if (node.constant) constants.set(node.constant.name, node.constant);

  // Graph inputs that are fed by the caller (before IR 4, initializers were listed as inputs too).
  const inputs = graph
    .filter((f) => f.field === GRAPH_INPUT && f.wire === WIRE_LEN)
    .map((f) => ({ field: f, ...readDim0(bytes, sub(bytes, f)) }))
    .filter((input) => !initializerNames.has(input.name));
  if (inputs.length === 0) fail('the graph has no inputs');
  const fixed = inputs.filter((i) => i.dim0?.kind === 'value');
  if (fixed.length === 0) return bytes; // already dynamic
  if (fixed.length !== inputs.length) fail('some graph inputs have a fixed batch and some do not');
  for (const input of fixed) {
    if (input.dim0?.kind === 'value' && input.dim0.value !== 1n) fail(`input "${input.name}" has a fixed batch of ${input.dim0.value}, not 1`);
  }

  // Values that carry the batch dimension on axis 0: the tensors computed from the graph inputs.
  const batched = new Set(inputs.map((i) => i.name));
  // Shapes of batched tensors (Shape outputs): element 0 is the batch size, the others are fixed.
  const batchShapes = new Map<string, string>(); // shape value -> the batched tensor it is the shape of
  const patches = new Map<number, boolean>(); // byte offset -> raw little-endian int64 (else a one-byte varint)
  const reshapeShapes = new Set<string>();
  const axisZeroOps: Record<string, bigint | undefined> = { Concat: undefined, Split: 0n, Gather: 0n, Softmax: -1n, LogSoftmax: -1n, Flatten: 1n };
  for (const node of nodes) {
    const where = `${node.opType} node producing "${node.outputs[0] ?? '?'}"`;
    const shapeInput = node.inputs.find((name) => batchShapes.has(name));
    if (shapeInput !== undefined) {
      const of = `the shape of "${batchShapes.get(shapeInput)}" (element 0 of which is the batch size)`;
      const gathersFromShape = isDefaultDomain(node.domain) && node.opType === 'Gather' && node.inputs[0] === shapeInput;
      if (!gathersFromShape || node.inputs.slice(1).some((name) => batchShapes.has(name) || batched.has(name))) {
        fail(`${where} uses ${of}; only a Gather of constant indices >= 1 from it (fixed dimensions) is supported`);
      }
      const axis = node.ints.get('axis')?.[0] ?? 0n;
      if (axis !== 0n) fail(`${where} gathers ${of} along axis ${axis}`);
      const indicesName = node.inputs[1] ?? '';
      const indices = constants.get(indicesName);
      if (!indices) fail(`${where} reads ${of} at indices "${indicesName}", which are not an INT64 constant`);
      if (indices.values.includes(0n)) fail(`${where} reads element 0 of ${of}: the graph computes with the batch size`);
      if (indices.values.some((i) => i < 0n)) fail(`${where} reads ${of} at negative indices [${indices.values.join(', ')}], which may be the batch size`);
      continue; // fixed dimensions: the output, and what is computed from it, do not depend on the batch
    }
    if (!node.inputs.some((name) => batched.has(name))) continue;
    if (!isDefaultDomain(node.domain)) fail(`${where} is in custom domain "${node.domain}"`);
    if (node.hasSubgraph) fail(`${where} has a subgraph`);
    if (node.opType === 'Shape') {
      const start = node.ints.get('start')?.[0] ?? 0n;
      if (start < 0n) fail(`${where} has start=${start}, which may include the batch axis`);
      // From start >= 1 the shape holds fixed dimensions only, like a constant.
      if (start === 0n && node.outputs[0] !== undefined) batchShapes.set(node.outputs[0], node.inputs[0] ?? '');
      continue;
    }
    if (node.opType === 'Size') fail(`${where} counts the elements of a batch-dependent tensor`);
    for (const output of node.outputs) batched.add(output);
    switch (node.opType) {
      case 'Reshape': {
        if (!batched.has(node.inputs[0] ?? '')) fail(`${where} reshapes a batch-dependent shape`);
        if ((node.ints.get('allowzero')?.[0] ?? 0n) !== 0n) fail(`${where} has allowzero=1, so 0 cannot copy the batch`);
        const shapeName = node.inputs[1] ?? '';
        const shape = constants.get(shapeName);
        if (!shape) fail(`${where} takes its shape from "${shapeName}", which is not an INT64 constant`);
        const first = shape.values[0];
        if (first === 0n || first === -1n) break; // already copies or infers the batch
        if (first !== 1n || !shape.first) fail(`${where} has shape [${shape.values.join(', ')}]; expected a leading 1 (the batch)`);
        patches.set(shape.first.at, shape.first.raw);
        reshapeShapes.add(shapeName);
        break;
      }
      case 'Resize':
        if (node.inputs[3]) fail(`${where} resizes to fixed sizes`);
        break;
      case 'Transpose': {
        const perm = node.ints.get('perm');
        if (!perm || perm[0] !== 0n) fail(`${where} moves the batch axis (perm ${perm ? `[${perm.join(', ')}]` : 'reversed'})`);
        break;
      }
      case 'Slice': {
        const axes = constants.get(node.inputs[3] ?? '');
        if (!axes || axes.values.includes(0n)) fail(`${where} may slice the batch axis`);
        break;
      }
      default:
        if (node.opType in axisZeroOps) {
          const axis = node.ints.get('axis')?.[0] ?? axisZeroOps[node.opType];
          if (axis === undefined || axis === 0n) fail(`${where} works along the batch axis`);
        }
    }
  }
  // A shape constant that also feeds anything else would change that node too.
  for (const node of nodes) {
    node.inputs.forEach((name, i) => {
      if (reshapeShapes.has(name) && !(node.opType === 'Reshape' && i === 1 && batched.has(node.inputs[0] ?? ''))) {
        fail(`the Reshape shape "${name}" is also used by a ${node.opType} node`);
      }
    });
  }

  // Which graph inputs, outputs and value_infos get dim 0 -> "batch" (keyed by their field's offset).
  const dimEdits = new Set<number>(fixed.map((i) => i.field.start));
  for (const f of graph) {
    if (f.wire !== WIRE_LEN || (f.field !== GRAPH_OUTPUT && f.field !== GRAPH_VALUE_INFO)) continue;
    const { name, dim0 } = readDim0(bytes, sub(bytes, f));
    if (f.field === GRAPH_OUTPUT && !batched.has(name)) fail(`output "${name}" does not depend on the input`);
    if (!batched.has(name) || dim0?.kind !== 'value') continue;
    if (dim0.value === 1n) dimEdits.add(f.start);
    else if (f.field === GRAPH_OUTPUT) fail(`output "${name}" has a fixed batch of ${dim0.value}, not 1`);
  }

  // Reshape constants: a leading 1 becomes 0 in place (same length: varint 0x01 -> 0x00, or LE int64 01.. -> 00..).
  // A copy (Buffer#slice would share memory with the caller's bytes).
  const patched = new Uint8Array(bytes);
  for (const [at, raw] of patches) {
    const expected = raw ? [1, 0, 0, 0, 0, 0, 0, 0] : [1];
    if (!expected.every((b, i) => patched[at + i] === b)) fail(`unexpected encoding of a Reshape shape at byte ${at}`);
    patched[at] = 0;
  }
  const newGraph = rewriteMessage(patched, graphField.valueStart, graphField.end, (f) =>
    dimEdits.has(f.start) ? rewriteDim0(patched, f) : undefined,
  );
  return rewriteMessage(patched, 0, patched.length, (f) => (f.start === graphField.start ? newGraph : undefined));
}
