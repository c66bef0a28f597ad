/**
 * Static int8 quantization of a YOLOv8 ONNX export, in QDQ form (QuantizeLinear / DequantizeLinear pairs
 * that ONNX Runtime fuses into QLinearConv, QLinearMul, QLinearSigmoid, ... at load):
 *
 * - Conv weights: int8, symmetric, one scale per output channel ([-127, 127]); Conv biases: int32 at
 *   input scale x weight scale, as ONNX Runtime's QLinearConv wants them.
 * - Activations: 8-bit, one scale and zero point per tensor, from the ranges seen on calibration frames
 *   (collected by running the fp32 model with those tensors made graph outputs). uint8 by default: on
 *   x86 ONNX Runtime runs u8 activations x s8 weights in its VNNI kernels, while int8 activations are not
 *   fused there (or, with session.qdqisint8allowed, run slower than fp32); `npm run bench:detector` shows it.
 * - The detection head stays float: every node between the last activations (SiLU outputs) and the graph
 *   outputs, i.e. the last 1x1 convolutions of each branch, the DFL, the box decoding and the final Concat.
 * - Ops that only move values (MaxPool, Resize, Slice, Split, Reshape, Transpose) keep their input's
 *   quantization, so ONNX Runtime runs them on the 8-bit values without requantizing.
 * - With uint8 activations the input becomes the RGB bytes themselves, uint8 [1, h, w, 3]: pixel / 255 is
 *   exactly a uint8 tensor at scale 1/255, so the first convolution reads them through a DequantizeLinear
 *   with no float pass at all (onnx-preprocess.ts then leaves the input as it is).
 *
 * The model is decoded and re-encoded with protobufjs; a model with parts of onnx.proto the decoder does
 * not know (sparse initializers, functions, training info) is refused rather than written back without them.
 */
import { parseFields, ProtobufWireError } from './protobuf-wire.ts';
import { getModelType, readTensor } from './tfjs/onnx-reader.ts';

/** Thrown for a model the quantizer cannot vouch for. */
export class OnnxQuantizeError extends Error {
  override name = 'OnnxQuantizeError';
}

/** Bumped whenever the quantized graph changes for the same inputs, so cached models are made again. */
export const QUANTIZER_VERSION = 'vidsense-qdq-1';

export type ActivationType = 'uint8' | 'int8';

export interface QuantizeOptions {
  /** 8-bit type of activations (default uint8, see above). Weights are always int8. */
  activations?: ActivationType;
}

const FLOAT = 1, UINT8 = 2, INT8 = 3, INT32 = 6;
const ATTR_INT = 2, ATTR_INTS = 7;

// The decoded protobuf messages (keepCase field names), as far as they are read or written here.
type Int64 = number | { toNumber(): number };
interface PbAttribute { name?: string; type?: number; i?: Int64; ints?: Int64[] }
interface PbNode { input?: string[]; output?: string[]; name?: string; op_type?: string; domain?: string; attribute?: PbAttribute[] }
interface PbTensor { name?: string; data_type?: number; dims?: Int64[]; raw_data?: Uint8Array; float_data?: number[]; int64_data?: Int64[]; int32_data?: number[]; data_location?: number }
interface PbDim { dim_value?: Int64; dim_param?: string }
interface PbValueInfo { name?: string; type?: { tensor_type?: { elem_type?: number; shape?: { dim?: PbDim[] } } } }
interface PbGraph { node: PbNode[]; initializer: PbTensor[]; input: PbValueInfo[]; output: PbValueInfo[]; value_info?: PbValueInfo[]; name?: string }
interface PbModel { graph: PbGraph; opset_import?: { domain?: string; version?: Int64 }[]; metadata_props?: { key?: string; value?: string }[] }

const int64 = (v: Int64 | undefined): number => (v === undefined ? 0 : typeof v === 'number' ? v : v.toNumber());

// Fields of ModelProto and GraphProto that the decoder knows; anything else would be lost on re-encoding.
const KNOWN_MODEL_FIELDS = new Set([1, 2, 3, 4, 5, 6, 7, 8, 14]);
const KNOWN_GRAPH_FIELDS = new Set([1, 2, 5, 10, 11, 12, 13]);

/** Ops run on 8-bit values, and which of their inputs carry activations (the rest are parameters). */
const QUANTIZED_OPS: Record<string, 'all' | 'first'> = {
  Conv: 'first',
  Sigmoid: 'first',
  Mul: 'all',
  Add: 'all',
  Concat: 'all',
  MaxPool: 'first',
  Resize: 'first',
  Slice: 'first',
  Split: 'first',
  Reshape: 'first',
  Transpose: 'first',
};
/** Of those, the ones that only move values: their outputs keep the input's scale and zero point. */
const KEEPS_INPUT_QUANTIZATION = new Set(['MaxPool', 'Resize', 'Slice', 'Split', 'Reshape', 'Transpose']);

export interface TensorRange {
  min: number;
  max: number;
}

/** What the quantizer found in a model: the tensors to calibrate and the nodes it leaves in float. */
export interface Int8Plan {
  /** Activation tensors that get a QuantizeLinear/DequantizeLinear pair, in graph order. */
  tensors: string[];
  /** Of those, the ones whose range must be measured (the rest copy their input's). */
  calibrated: string[];
  /** Nodes left in float (the detection head). */
  floatNodes: string[];
  quantizedNodes: number;
  /** The image input: name and [height, width]. */
  input: { name: string; height: number; width: number };
}

interface Analysis extends Int8Plan {
  model: PbModel;
  /** Tensor -> the tensor whose quantization it shares (itself when calibrated). */
  sharesWith: Map<string, string>;
  /** Indices of the float nodes. */
  head: Set<number>;
}

function fail(message: string): never {
  throw new OnnxQuantizeError(`cannot quantize the model: ${message}`);
}

function decode(bytes: Uint8Array): PbModel {
  try {
    for (const f of parseFields(bytes)) {
      if (!KNOWN_MODEL_FIELDS.has(f.field)) fail(`it uses ModelProto field ${f.field}, which this quantizer would drop`);
      if (f.field === 7) {
        for (const g of parseFields(bytes, f.valueStart, f.end)) if (!KNOWN_GRAPH_FIELDS.has(g.field)) fail(`its graph uses GraphProto field ${g.field} (sparse initializers or quantization annotations), which this quantizer would drop`);
      }
    }
  } catch (error) {
    if (error instanceof ProtobufWireError) fail(`not an ONNX model: ${error.message}`);
    throw error;
  }
  const model = getModelType().decode(bytes) as unknown as PbModel;
  if (!model.graph?.node?.length) fail('it has no graph');
  model.graph.initializer ??= [];
  model.graph.input ??= [];
  model.graph.output ??= [];
  return model;
}

/** Analyses a YOLOv8 export: which tensors get quantized, and the float head. */
export function planInt8(modelBytes: Uint8Array): Int8Plan {
  const { model: _model, sharesWith: _shares, head: _head, ...plan } = analyse(decode(modelBytes));
  return plan;
}

function analyse(model: PbModel): Analysis {
  const graph = model.graph;
  const opset = int64(model.opset_import?.find((o) => (o.domain ?? '') === '' || o.domain === 'ai.onnx')?.version);
  if (opset < 13) fail(`its opset is ${opset}; per-channel QuantizeLinear/DequantizeLinear need 13 or later`);
  const initializers = new Set(graph.initializer.map((t) => t.name ?? ''));
  const inputs = graph.input.filter((i) => !initializers.has(i.name ?? ''));
  if (inputs.length !== 1) fail(`it has ${inputs.length} inputs, expected one image input`);
  const input = inputs[0]!;
  const inputType = input.type?.tensor_type;
  const dims = (inputType?.shape?.dim ?? []).map((d) => (d.dim_value !== undefined && int64(d.dim_value) > 0 ? int64(d.dim_value) : undefined));
  if (inputType?.elem_type !== FLOAT || dims.length !== 4 || dims[1] !== 3 || dims[2] === undefined || dims[3] === undefined) {
    fail(`input "${input.name}" is not a float [batch, 3, height, width] image with a fixed size`);
  }
  const inputName = input.name ?? '';

  const producer = new Map<string, number>();
  const consumers = new Map<string, number[]>();
  graph.node.forEach((node, i) => {
    if ((node.domain ?? '') !== '' && node.domain !== 'ai.onnx') fail(`node "${node.name}" is in custom domain "${node.domain}"`);
    for (const out of node.output ?? []) producer.set(out, i);
    for (const inp of node.input ?? []) if (inp) consumers.set(inp, [...(consumers.get(inp) ?? []), i]);
  });
  const constants = new Set([...initializers, ...graph.node.filter((n) => n.op_type === 'Constant').flatMap((n) => n.output ?? [])]);

  // SiLU outputs: Mul(x, Sigmoid(x)). The head starts after the last of them.
  const isSilu = (tensor: string): boolean => {
    const node = graph.node[producer.get(tensor) ?? -1];
    if (node?.op_type !== 'Mul' || node.input?.length !== 2) return false;
    const [a, b] = node.input as [string, string];
    const sig = (t: string) => graph.node[producer.get(t) ?? -1];
    return (sig(b)?.op_type === 'Sigmoid' && sig(b)!.input?.[0] === a) || (sig(a)?.op_type === 'Sigmoid' && sig(a)!.input?.[0] === b);
  };
  const head = new Set<number>();
  const stack = graph.output.map((o) => producer.get(o.name ?? '')).filter((i): i is number => i !== undefined);
  while (stack.length) {
    const i = stack.pop()!;
    if (head.has(i)) continue;
    head.add(i);
    for (const t of graph.node[i]!.input ?? []) {
      if (!t || constants.has(t) || isSilu(t)) continue;
      if (t === inputName) fail('no SiLU activation separates the detection head from the input; only YOLOv8 detection exports are supported');
      const p = producer.get(t);
      if (p !== undefined) stack.push(p);
    }
  }
  if (head.size === 0) fail('its outputs are not computed by any node');

  // Float activation tensors flowing through quantizable ops, in graph order.
  const floatData = new Set<string>([inputName]);
  const quantizedNodes = new Set<number>();
  graph.node.forEach((node, i) => {
    const op = node.op_type ?? '';
    const dataInputs = QUANTIZED_OPS[op] === 'first' ? (node.input ?? []).slice(0, 1) : (node.input ?? []);
    if (head.has(i) || !(op in QUANTIZED_OPS) || !dataInputs.some((t) => floatData.has(t))) return;
    if (dataInputs.some((t) => t && !floatData.has(t) && !constants.has(t))) fail(`node "${node.name}" (${op}) mixes activations with values of unknown type`);
    quantizedNodes.add(i);
    for (const out of node.output ?? []) floatData.add(out);
  });
  if (![...quantizedNodes].some((i) => graph.node[i]!.op_type === 'Conv')) fail('it has no convolution to quantize');

  // A tensor is quantized when a quantized node makes it, or reads it (the input, and head-side activations).
  const tensors: string[] = [];
  const sharesWith = new Map<string, string>();
  const quantize = (t: string, sharedWith: string) => {
    if (sharesWith.has(t)) return;
    sharesWith.set(t, sharedWith);
    tensors.push(t);
  };
  quantize(inputName, inputName);
  graph.node.forEach((node, i) => {
    if (!quantizedNodes.has(i)) return;
    const op = node.op_type ?? '';
    for (const out of node.output ?? []) {
      if (graph.output.some((o) => o.name === out)) fail(`graph output "${out}" would be quantized`);
      const source = node.input?.[0] ?? '';
      quantize(out, KEEPS_INPUT_QUANTIZATION.has(op) ? (sharesWith.get(source) ?? source) : out);
    }
  });
  for (const t of tensors) {
    if (t !== inputName && !consumers.get(t)?.length) fail(`tensor "${t}" is computed but never used`);
  }
  return {
    model,
    tensors,
    // The input's scale is fixed (pixel / 255); every other tensor that does not share is measured.
    calibrated: tensors.filter((t) => t !== inputName && sharesWith.get(t) === t),
    floatNodes: [...head].sort((a, b) => a - b).map((i) => graph.node[i]!.name ?? `node ${i}`),
    quantizedNodes: quantizedNodes.size,
    input: { name: inputName, height: dims[2]!, width: dims[3]! },
    sharesWith,
    head,
  };
}

/** The fp32 model with every tensor to calibrate added as a graph output, for ONNX Runtime to hand back. */
export function calibrationModel(modelBytes: Uint8Array): { bytes: Uint8Array; plan: Int8Plan } {
  const model = decode(modelBytes);
  const { model: _model, sharesWith: _shares, head: _head, ...plan } = analyse(model);
  const existing = new Set(model.graph.output.map((o) => o.name));
  for (const name of plan.calibrated) {
    if (!existing.has(name)) model.graph.output.push({ name, type: { tensor_type: { elem_type: FLOAT } } });
  }
  return { bytes: encode(model), plan };
}

/** Running minimum and maximum of each calibrated tensor over the calibration frames. */
export class RangeCollector {
  readonly ranges = new Map<string, TensorRange>();
  frames = 0;

  observe(name: string, values: Float32Array): void {
    let min = Infinity;
    let max = -Infinity;
    for (let i = 0; i < values.length; i++) {
      const v = values[i]!;
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const range = this.ranges.get(name);
    if (!range) this.ranges.set(name, { min, max });
    else {
      range.min = Math.min(range.min, min);
      range.max = Math.max(range.max, max);
    }
  }
}

interface QuantParams {
  scale: number;
  zeroPoint: number;
}

/**
 * Asymmetric 8-bit parameters for a range. The range always includes 0 (so zero, and the padding of
 * convolutions, is exact); a range of one value gets scale 1.
 */
export function activationParams({ min, max }: TensorRange, type: ActivationType): QuantParams {
  const lo = Math.min(0, min);
  const hi = Math.max(0, max);
  const [qmin, qmax] = type === 'uint8' ? [0, 255] : [-128, 127];
  const scale = hi > lo ? Math.fround((hi - lo) / (qmax - qmin)) : 1;
  const zeroPoint = Math.min(qmax, Math.max(qmin, Math.round(qmin - lo / scale)));
  return { scale, zeroPoint };
}

/** Symmetric int8 per-channel weights: [-127, 127], one scale per output channel (axis 0). */
export function quantizeWeights(values: Float32Array, channels: number): { data: Int8Array; scales: Float32Array } {
  const perChannel = values.length / channels;
  const data = new Int8Array(values.length);
  const scales = new Float32Array(channels);
  for (let c = 0; c < channels; c++) {
    let absMax = 0;
    for (let i = c * perChannel; i < (c + 1) * perChannel; i++) absMax = Math.max(absMax, Math.abs(values[i]!));
    const scale = absMax > 0 ? Math.fround(absMax / 127) : 1;
    scales[c] = scale;
    for (let i = c * perChannel; i < (c + 1) * perChannel; i++) data[i] = Math.max(-127, Math.min(127, Math.round(values[i]! / scale)));
  }
  return { data, scales };
}

export interface Int8Result {
  bytes: Uint8Array;
  plan: Int8Plan;
}

/**
 * Writes the QDQ model from the fp32 model and the calibrated ranges (every name in plan.calibrated).
 * `metadata` is added to the model's metadata_props (the cache key, say).
 */
export function writeInt8Model(modelBytes: Uint8Array, ranges: ReadonlyMap<string, TensorRange>, metadata: Record<string, string> = {}, options: QuantizeOptions = {}): Int8Result {
  const type = options.activations ?? 'uint8';
  const model = decode(modelBytes);
  const analysis = analyse(model);
  const { model: _m, sharesWith, head, ...plan } = analysis;
  const graph = model.graph;
  const names = new Set<string>([...graph.initializer.map((t) => t.name ?? ''), ...graph.node.flatMap((n) => [...(n.input ?? []), ...(n.output ?? [])])]);
  const unique = (base: string) => {
    let name = base;
    for (let i = 1; names.has(name); i++) name = `${base}_${i}`;
    names.add(name);
    return name;
  };
  const initializers = new Map(graph.initializer.map((t) => [t.name ?? '', t]));
  const newInitializers: PbTensor[] = [];
  const tensor = (name: string, dataType: number, dims: number[], raw: ArrayBufferView): string => {
    newInitializers.push({ name, data_type: dataType, dims, raw_data: new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength) });
    return name;
  };
  const node = (op: string, name: string, input: string[], output: string[], attrs: PbAttribute[] = []): PbNode => ({ op_type: op, name: unique(name), input, output, attribute: attrs });
  const zeroPointArray = (values: number[]) => (type === 'uint8' ? Uint8Array.from(values) : Int8Array.from(values));
  const qType = type === 'uint8' ? UINT8 : INT8;

  // Scale and zero point of each quantized tensor.
  const inputName = plan.input.name;
  const params = new Map<string, QuantParams>();
  const inputParams: QuantParams = { scale: Math.fround(1 / 255), zeroPoint: type === 'uint8' ? 0 : -128 };
  for (const t of plan.tensors) {
    const owner = sharesWith.get(t) ?? t;
    if (owner === inputName) {
      params.set(t, inputParams);
      continue;
    }
    const range = ranges.get(owner);
    if (!range || !Number.isFinite(range.min) || !Number.isFinite(range.max)) fail(`no calibrated range for tensor "${owner}"`);
    params.set(t, activationParams(range, type));
  }
  // One scale/zero-point initializer pair per distinct quantization, shared by the tensors that share it.
  const paramNames = new Map<string, [string, string]>();
  const paramInputs = (t: string): [string, string] => {
    const owner = sharesWith.get(t) ?? t;
    let pair = paramNames.get(owner);
    if (!pair) {
      const p = params.get(t)!;
      pair = [tensor(unique(`${owner}_scale`), FLOAT, [], Float32Array.of(p.scale)), tensor(unique(`${owner}_zero_point`), qType, [], zeroPointArray([p.zeroPoint]))];
      paramNames.set(owner, pair);
    }
    return pair;
  };

  // Every reader of a quantized tensor reads its dequantized copy.
  const dequantized = new Map(plan.tensors.map((t) => [t, unique(`${t}_dequantized`)]));
  const nodes: PbNode[] = [];
  const qdq = (t: string): void => {
    const [scale, zeroPoint] = paramInputs(t);
    const q = unique(`${t}_quantized`);
    nodes.push(node('QuantizeLinear', `${t}_QuantizeLinear`, [t, scale, zeroPoint], [q]));
    nodes.push(node('DequantizeLinear', `${t}_DequantizeLinear`, [q, scale, zeroPoint], [dequantized.get(t)!]));
  };

  let newInput: PbValueInfo | undefined;
  if (type === 'uint8') {
    // The RGB bytes are the quantized input: uint8 [1, h, w, 3] -> NCHW (still bytes) -> DequantizeLinear(1/255, 0).
    const rgb = unique(`${inputName}_rgb8`);
    const nchw = unique(`${inputName}_rgb8_nchw`);
    const [scale, zeroPoint] = paramInputs(inputName);
    nodes.push(node('Transpose', 'vidsense_preprocess/Transpose', [rgb], [nchw], [{ name: 'perm', type: ATTR_INTS, ints: [0, 3, 1, 2] }]));
    nodes.push(node('DequantizeLinear', `${inputName}_DequantizeLinear`, [nchw, scale, zeroPoint], [dequantized.get(inputName)!]));
    const batch = graph.input.find((i) => i.name === inputName)!.type!.tensor_type!.shape!.dim![0]!;
    newInput = {
      name: rgb,
      type: { tensor_type: { elem_type: UINT8, shape: { dim: [batch, { dim_value: plan.input.height }, { dim_value: plan.input.width }, { dim_value: 3 }] } } },
    };
  } else {
    qdq(inputName);
  }

  const quantizedTensors = new Set(plan.tensors);
  graph.node.forEach((original, index) => {
    const n: PbNode = { ...original, input: (original.input ?? []).map((t) => dequantized.get(t) ?? t) };
    if (n.op_type === 'Conv' && !head.has(index)) {
      quantizeConvParameters(n, original, params.get(original.input![0]!)!);
    }
    nodes.push(n);
    for (const out of original.output ?? []) if (quantizedTensors.has(out) && out !== inputName) qdq(out);
  });

  function quantizeConvParameters(n: PbNode, original: PbNode, inputQuant: QuantParams): void {
    const [, weightName, biasName] = original.input as [string, string, string | undefined];
    const weight = initializers.get(weightName);
    if (!weight) fail(`Conv "${original.name}" has weights "${weightName}" that are not an initializer`);
    const w = readTensor(weight as never);
    if (w.kind !== 'float' || w.dims.length !== 4) fail(`Conv "${original.name}" weights are not float [out, in, kh, kw]`);
    const channels = w.dims[0]!;
    const { data, scales } = quantizeWeights(w.values, channels);
    const wq = tensor(unique(`${weightName}_quantized`), INT8, w.dims, data);
    const ws = tensor(unique(`${weightName}_scale`), FLOAT, [channels], scales);
    const wz = tensor(unique(`${weightName}_zero_point`), INT8, [channels], new Int8Array(channels));
    const wdq = unique(`${weightName}_dequantized`);
    nodes.push(node('DequantizeLinear', `${weightName}_DequantizeLinear`, [wq, ws, wz], [wdq], [{ name: 'axis', type: ATTR_INT, i: 0 }]));
    n.input![1] = wdq;
    if (biasName) {
      const bias = initializers.get(biasName);
      if (!bias) fail(`Conv "${original.name}" has a bias "${biasName}" that is not an initializer`);
      const b = readTensor(bias as never);
      if (b.kind !== 'float' || b.values.length !== channels) fail(`Conv "${original.name}" bias is not float [${channels}]`);
      const biasScales = scales.map((s) => Math.fround(s * inputQuant.scale));
      const bq = Int32Array.from(b.values, (v, c) => Math.max(-(2 ** 31), Math.min(2 ** 31 - 1, Math.round(v / biasScales[c]!))));
      const bqName = tensor(unique(`${biasName}_quantized`), INT32, [channels], bq);
      const bsName = tensor(unique(`${biasName}_scale`), FLOAT, [channels], biasScales);
      const bzName = tensor(unique(`${biasName}_zero_point`), INT32, [channels], new Int32Array(channels));
      const bdq = unique(`${biasName}_dequantized`);
      nodes.push(node('DequantizeLinear', `${biasName}_DequantizeLinear`, [bqName, bsName, bzName], [bdq], [{ name: 'axis', type: ATTR_INT, i: 0 }]));
      n.input![2] = bdq;
    }
  }

  // Weights now held as int8 go; float initializers still read by another node (none in YOLOv8) stay.
  const read = new Set(nodes.flatMap((n) => n.input ?? []));
  graph.initializer = [...graph.initializer.filter((t) => read.has(t.name ?? '')), ...newInitializers];
  graph.node = nodes;
  if (newInput) graph.input = [...graph.input.filter((i) => i.name !== inputName), newInput];
  // Shapes of the float tensors are still right; the input's entry went with the input.
  if (graph.value_info) graph.value_info = graph.value_info.filter((v) => v.name !== inputName);
  model.metadata_props = [...(model.metadata_props ?? []).filter((e) => !(e.key ?? '').startsWith('vidsense.')), ...Object.entries(metadata).map(([key, value]) => ({ key, value }))];
  return { bytes: encode(model), plan };
}

function encode(model: PbModel): Uint8Array {
  const type = getModelType();
  return type.encode(model as never).finish();
}
