import type { ModelInfo } from '../types.ts';
import { OnnxConversionError, UnsupportedOnnxOpError } from './conversion-errors.ts';
import { ConstFoldError, binaryConst, concatConst, gatherConst, reshapeConst, shapeTensor, sliceConst } from './const-fold.ts';
import type { ConstTensor } from './const-fold.ts';
import {
  NHWC,
  broadcastShapes,
  identity,
  isIdentity,
  permute,
  reshapeGroups,
  reshapeLayout,
  samePerm,
  transposeBetween,
  transposeData,
} from './layout.ts';
import { OnnxDataType, onnxDataTypeName } from './onnx-reader.ts';
import type { OnnxAttribute, OnnxModel, OnnxNode, OnnxTensor } from './onnx-reader.ts';
import { TfGraphBuilder, attr, shapeProto } from './tf-graph.ts';
import { assertTfjsLoadable } from './tfjs-ops.ts';
import type { TfAttrValue, TfNodeDef, TfTensorInfo, TfWeightSpec } from './tf-graph.ts';

/** Bumped when the converter's output changes, so a converted directory from an older version is redone. */
export const CONVERTER_VERSION = 'vidsense-onnx2tfjs 2';

/** What model.json holds besides the weights manifest, plus the weights themselves. */
export interface ConvertedTfjsModel {
  format: 'graph-model';
  generatedBy: string;
  convertedBy: string;
  modelTopology: { node: TfNodeDef[]; library: Record<string, never>; versions: Record<string, never> };
  signature: { inputs: Record<string, TfTensorInfo>; outputs: Record<string, TfTensorInfo> };
  userDefinedMetadata: TfjsModelMetadata;
  weightSpecs: TfWeightSpec[];
  weightData: Uint8Array;
}

export interface TfjsModelMetadata {
  /** Ultralytics metadata (class names, [height, width], stride) when the ONNX file had it. */
  names?: string[];
  imgsz?: [number, number];
  stride?: number;
  description?: string;
  /** The graph takes and returns the ONNX layouts: input [batch, 3, h, w], output [batch, 4 + classes, anchors]. */
  inputLayout: 'NCHW';
  inputName: string;
  outputName: string;
  /** Every ONNX metadata_props entry, verbatim. */
  onnxMetadata: Record<string, string>;
}

/**
 * ONNX op types the converter translates (every op of YOLOv8 n/s/m/l/x detection exports, simplified or
 * not, and a few neighbours). Shape and Gather are evaluated at conversion time (Gather on constants only),
 * as are Add, Sub, Mul, Div, Pow, Max, Min, Concat, Slice, Reshape, Flatten, Squeeze and Unsqueeze
 * when all their inputs are constants.
 */
export const SUPPORTED_ONNX_OPS = [
  'Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min',
  'Sigmoid', 'Relu', 'Tanh', 'Exp', 'Log', 'Sqrt', 'Neg', 'Abs', 'Floor', 'Ceil', 'Reciprocal', 'LeakyRelu', 'Clip',
  'Identity', 'Constant', 'Shape', 'Gather',
  'Conv', 'MaxPool', 'AveragePool', 'Resize', 'Upsample',
  'Concat', 'Split', 'Slice', 'Reshape', 'Flatten', 'Squeeze', 'Unsqueeze', 'Transpose', 'Softmax',
] as const;

interface RuntimeValue {
  kind: 'runtime';
  /** tfjs input reference: "node" or "node:k". */
  ref: string;
  /** ONNX shape, with the batch dimension at its size in the ONNX file (1 for the stock export). */
  shape: number[];
  /** tfjs dimension k is ONNX dimension perm[k]. */
  perm: number[];
  /** The ONNX axis carrying the batch, which the tfjs graph leaves dynamic (-1). */
  batchAxis: number | undefined;
}

interface ConstValue {
  kind: 'const';
  name: string;
  tensor: ConstTensor;
}

type Value = RuntimeValue | ConstValue;

type Handler = (node: OnnxNode, ctx: Converter) => void;

const UNARY: Record<string, string> = {
  Sigmoid: 'Sigmoid', Relu: 'Relu', Tanh: 'Tanh', Exp: 'Exp', Log: 'Log', Sqrt: 'Sqrt', Neg: 'Neg', Abs: 'Abs',
  Floor: 'Floor', Ceil: 'Ceil', Reciprocal: 'Reciprocal',
};
const BINARY: Record<string, string> = { Add: 'AddV2', Sub: 'Sub', Mul: 'Mul', Div: 'RealDiv', Pow: 'Pow', Max: 'Maximum', Min: 'Minimum' };

/**
 * Converts an ONNX graph (NCHW, opset 11+) into a TensorFlow.js graph model whose convolutions, pools and
 * resizes run in NHWC. Layouts are tracked per value, so transposes appear only where an op needs the
 * ONNX element order (for YOLOv8: one at the input, one at the output). The batch dimension becomes
 * dynamic, so one execute() runs any number of frames.
 */
export function convertOnnxToTfjs(model: OnnxModel, modelInfo?: ModelInfo, options: { loadableOps?: ReadonlySet<string> } = {}): ConvertedTfjsModel {
  const converter = new Converter(model);
  const built = converter.convert();
  // Second check, after the per-ONNX-op one (UnsupportedOnnxOpError): every op written must be one
  // tfjs-converter can execute, so a bad translation fails here and not when a worker loads the model.
  assertTfjsLoadable(built.nodes, options.loadableOps);
  const { inputName, outputName } = converter;
  const userDefinedMetadata: TfjsModelMetadata = {
    inputLayout: 'NCHW',
    inputName,
    outputName,
    onnxMetadata: Object.fromEntries(model.metadata),
  };
  if (modelInfo) {
    userDefinedMetadata.names = modelInfo.names;
    userDefinedMetadata.imgsz = modelInfo.imgsz;
    userDefinedMetadata.stride = modelInfo.stride;
    if (modelInfo.description) userDefinedMetadata.description = modelInfo.description;
  }
  return {
    format: 'graph-model',
    generatedBy: [model.producerName, model.producerVersion].filter(Boolean).join(' ') || 'onnx',
    convertedBy: CONVERTER_VERSION,
    modelTopology: { node: built.nodes, library: {}, versions: {} },
    signature: built.signature,
    userDefinedMetadata,
    weightSpecs: built.weightSpecs,
    weightData: built.weightData,
  };
}

class Converter {
  private readonly builder = new TfGraphBuilder();
  private readonly values = new Map<string, Value>();
  private readonly transposed = new Map<string, string>();
  private readonly materialized = new Map<string, string>();
  readonly opset: number;
  inputName = '';
  outputName = '';

  constructor(private readonly model: OnnxModel) {
    this.opset = model.opsets.get('') ?? model.opsets.get('ai.onnx') ?? 0;
    if (this.opset < 11) throw new OnnxConversionError(`ONNX opset ${this.opset} is too old: the converter needs opset 11 or later`);
  }

  convert(): ReturnType<TfGraphBuilder['build']> & { signature: ConvertedTfjsModel['signature'] } {
    const { graph } = this.model;
    if (graph.inputs.length !== 1 || graph.outputs.length !== 1) {
      throw new OnnxConversionError(`the graph has ${graph.inputs.length} inputs and ${graph.outputs.length} outputs; the converter takes one of each`);
    }
    const input = graph.inputs[0]!;
    const output = graph.outputs[0]!;
    if (input.elemType !== OnnxDataType.FLOAT) throw new OnnxConversionError(`input "${input.name}" is ${onnxDataTypeName(input.elemType)}, expected FLOAT`);
    const shape = input.shape;
    if (!shape || shape.length !== 4 || shape.slice(1).some((d) => typeof d !== 'number' || d <= 0)) {
      throw new OnnxConversionError(`input "${input.name}" has shape [${shape?.join(', ') ?? '?'}]; expected [batch, channels, height, width] with fixed channels, height and width`);
    }
    const batch = typeof shape[0] === 'number' && shape[0] > 0 ? shape[0] : 1;
    const inputShape = [batch, ...(shape.slice(1) as number[])];
    this.inputName = this.builder.reserve(input.name);
    this.outputName = this.builder.reserve(output.name);
    this.builder.addNamed(this.inputName, 'Placeholder', [], { dtype: attr.dtype('float32'), shape: attr.shape([-1, ...inputShape.slice(1)]) });
    this.values.set(input.name, { kind: 'runtime', ref: this.inputName, shape: inputShape, perm: identity(4), batchAxis: 0 });
    for (const [name, tensor] of graph.initializers) this.values.set(name, { kind: 'const', name, tensor });

    for (const node of sortTopologically(graph.nodes, new Set(this.values.keys()))) {
      if (node.domain !== '' && node.domain !== 'ai.onnx') {
        throw new UnsupportedOnnxOpError(`${node.domain}.${node.opType}`, node.name, SUPPORTED_ONNX_OPS);
      }
      const handler = HANDLERS[node.opType];
      if (!handler) throw new UnsupportedOnnxOpError(node.opType, node.name, SUPPORTED_ONNX_OPS);
      handler(node, this);
    }

    const result = this.values.get(output.name);
    if (!result) throw new OnnxConversionError(`graph output "${output.name}" is not produced by any node`);
    if (result.kind !== 'runtime' || result.batchAxis !== 0) {
      throw new OnnxConversionError(`graph output "${output.name}" does not depend on the input batch`);
    }
    const declared = output.shape;
    if (declared?.every((d) => typeof d === 'number') && declared.slice(1).join() !== result.shape.slice(1).join()) {
      throw new OnnxConversionError(`converted output shape [${result.shape.join(', ')}] differs from the declared [${declared.join(', ')}]`);
    }
    // The output keeps the ONNX layout, so decoding code is shared with ONNX Runtime.
    const tfPerm = transposeBetween(result.perm, identity(result.shape.length));
    if (isIdentity(tfPerm)) this.builder.addNamed(this.outputName, 'Identity', [result.ref], { T: attr.dtype('float32') });
    else this.builder.addNamed(this.outputName, 'Transpose', [result.ref, this.builder.intConstant('perm', tfPerm)], { T: attr.dtype('float32'), Tperm: attr.dtype('int32') });

    const tensorInfo = (name: string, dims: number[]): TfTensorInfo => ({ name: `${name}:0`, dtype: 'DT_FLOAT', tensorShape: shapeProto(dims) });
    return {
      ...this.builder.build(),
      signature: {
        inputs: { [input.name]: tensorInfo(this.inputName, [-1, ...inputShape.slice(1)]) },
        outputs: { [output.name]: tensorInfo(this.outputName, [-1, ...result.shape.slice(1)]) },
      },
    };
  }

  // ---- values -------------------------------------------------------------------------------------

  value(node: OnnxNode, index: number): Value | undefined {
    const name = node.inputs[index];
    if (name === undefined || name === '') return undefined;
    const value = this.values.get(name);
    if (!value) throw new OnnxConversionError(`node "${node.name}" (${node.opType}) reads "${name}", which nothing produces`);
    return value;
  }

  runtime(node: OnnxNode, index: number): RuntimeValue {
    const value = this.value(node, index);
    if (!value) throw new OnnxConversionError(`node "${node.name}" (${node.opType}) is missing input ${index}`);
    if (value.kind === 'runtime') return value;
    const rank = value.tensor.dims.length;
    return { kind: 'runtime', ref: this.materialize(value, identity(rank), rank), shape: value.tensor.dims, perm: identity(rank), batchAxis: undefined };
  }

  /** A constant input; one holding the batch size (from Shape) only where `batchSizeAllowed`. */
  constant(node: OnnxNode, index: number, what: string, batchSizeAllowed = false): ConstTensor | undefined {
    const value = this.value(node, index);
    if (!value) return undefined;
    if (value.kind !== 'const') throw new OnnxConversionError(`node "${node.name}" (${node.opType}): ${what} must be a constant, it is computed at run time`);
    if (!batchSizeAllowed && value.tensor.batchElements?.length) {
      throw new OnnxConversionError(`node "${node.name}" (${node.opType}): ${what} depends on the batch size, which the converted graph keeps dynamic`);
    }
    return value.tensor;
  }

  ints(node: OnnxNode, index: number, what: string, batchSizeAllowed = false): number[] | undefined {
    const tensor = this.constant(node, index, what, batchSizeAllowed);
    return tensor ? Array.from(tensor.values, Number) : undefined;
  }

  setRuntime(node: OnnxNode, index: number, ref: string, shape: number[], perm: number[], batchAxis: number | undefined): void {
    const name = node.outputs[index];
    if (name === undefined || name === '') return;
    this.values.set(name, { kind: 'runtime', ref, shape, perm, batchAxis });
  }

  setConstant(node: OnnxNode, index: number, tensor: ConstTensor): void {
    const name = node.outputs[index];
    if (name) this.values.set(name, { kind: 'const', name, tensor });
  }

  alias(node: OnnxNode, value: Value): void {
    const name = node.outputs[0];
    if (name) this.values.set(name, value);
  }

  /** Node name for the op that produces `node`'s first output. */
  nameFor(node: OnnxNode): string {
    return this.builder.uniqueName(node.outputs[0] || node.name);
  }

  add(name: string, op: string, inputs: string[], attrs: Record<string, TfAttrValue> = {}): string {
    return this.builder.addNamed(name, op, inputs, attrs);
  }

  intConstant(base: string, values: readonly number[], shape?: readonly number[]): string {
    return this.builder.intConstant(base, values, shape);
  }

  floatConstant(base: string, shape: readonly number[], values: Float32Array): string {
    return this.builder.constant(base, shape, 'float32', values);
  }

  /** The value's tfjs tensor in layout `perm`, adding (and reusing) one Transpose when the layouts differ. */
  inLayout(value: RuntimeValue, perm: readonly number[]): string {
    if (samePerm(value.perm, perm)) return value.ref;
    const key = `${value.ref}|${perm.join(',')}`;
    const cached = this.transposed.get(key);
    if (cached) return cached;
    const tfPerm = transposeBetween(value.perm, perm);
    const ref = this.builder.add(`${value.ref}/transpose`, 'Transpose', [value.ref, this.intConstant('perm', tfPerm)], {
      T: attr.dtype('float32'),
      Tperm: attr.dtype('int32'),
    });
    this.transposed.set(key, ref);
    return ref;
  }

  /** A constant as a tfjs Const node, broadcast up to `rank` (leading 1s) and transposed into layout `perm`. */
  materialize(value: ConstValue, perm: readonly number[], rank: number): string {
    if (value.tensor.batchElements?.length) {
      throw new OnnxConversionError(`"${value.name}" holds the batch size, which the converted graph keeps dynamic; it cannot be used as data`);
    }
    const dims = [...new Array<number>(Math.max(0, rank - value.tensor.dims.length)).fill(1), ...value.tensor.dims];
    const key = `${value.name}|${rank}|${perm.join(',')}`;
    const cached = this.materialized.get(key);
    if (cached) return cached;
    const data = transposeData(value.tensor.values, dims, perm);
    const shape = permute(dims, perm);
    const ref =
      value.tensor.kind === 'float'
        ? this.builder.constant(isIdentity(perm) ? value.name : `${value.name}/nhwc`, shape, 'float32', Float32Array.from(data))
        : this.builder.constant(value.name, shape, 'int32', Int32Array.from(data as number[]));
    this.materialized.set(key, ref);
    return ref;
  }
}

// ---- attributes -----------------------------------------------------------------------------------

function attribute(node: OnnxNode, name: string): OnnxAttribute | undefined {
  return node.attributes.get(name);
}

function intAttr(node: OnnxNode, name: string, fallback: number): number {
  const a = attribute(node, name);
  return a?.kind === 'int' ? a.value : fallback;
}

function floatAttr(node: OnnxNode, name: string, fallback: number): number {
  const a = attribute(node, name);
  return a?.kind === 'float' ? a.value : a?.kind === 'int' ? a.value : fallback;
}

function intsAttr(node: OnnxNode, name: string): number[] | undefined {
  const a = attribute(node, name);
  return a?.kind === 'ints' ? a.value : undefined;
}

function stringAttr(node: OnnxNode, name: string, fallback: string): string {
  const a = attribute(node, name);
  return a?.kind === 'string' ? a.value : fallback;
}

function fail(node: OnnxNode, why: string): never {
  throw new OnnxConversionError(`cannot convert ONNX node "${node.name}" (${node.opType}): ${why}`);
}

/** Runs a conversion-time evaluation, reporting a fold that cannot be done against the node. */
function fold(node: OnnxNode, evaluate: () => ConstTensor): ConstTensor {
  try {
    return evaluate();
  } catch (error) {
    if (error instanceof ConstFoldError) fail(node, error.message);
    throw error;
  }
}

function normalizeAxis(node: OnnxNode, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) fail(node, `axis ${axis} is out of range for rank ${rank}`);
  return a;
}

// ---- spatial ops (Conv, pools, Resize) ------------------------------------------------------------

/**
 * Convolutions, pools and resizes run on tfjs [N, H, W, C] tensors. A value already in [N, W, H, C]
 * (which YOLOv8's DFL head produces) is used as is, with the kernel, strides and pads swapped, since
 * those ops treat both spatial axes alike.
 */
function spatialInput(ctx: Converter, node: OnnxNode): { x: RuntimeValue; ref: string; swapped: boolean } {
  const x = ctx.runtime(node, 0);
  if (x.shape.length !== 4) fail(node, `expected a 4-D [N, C, H, W] input, got rank ${x.shape.length}`);
  if (x.batchAxis !== undefined && x.batchAxis !== 0) fail(node, 'the batch must be the first dimension');
  const swapped = samePerm(x.perm, [0, 3, 2, 1]);
  return { x, ref: swapped ? x.ref : ctx.inLayout(x, NHWC), swapped };
}

interface Window {
  kernel: [number, number];
  strides: [number, number];
  dilations: [number, number];
  /** [top, left, bottom, right], as ONNX orders pads. */
  pads: [number, number, number, number];
  out: [number, number];
}

function windowOf(node: OnnxNode, inH: number, inW: number, kernel: [number, number], ceilMode = false): Window {
  const strides = (intsAttr(node, 'strides') ?? [1, 1]) as [number, number];
  const dilations = (intsAttr(node, 'dilations') ?? [1, 1]) as [number, number];
  if (strides.length !== 2 || dilations.length !== 2) fail(node, 'only 2-D windows are supported');
  const autoPad = stringAttr(node, 'auto_pad', 'NOTSET');
  let pads = (intsAttr(node, 'pads') ?? [0, 0, 0, 0]) as [number, number, number, number];
  const sizes = [inH, inW];
  if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
    const begin: number[] = [];
    const end: number[] = [];
    for (let k = 0; k < 2; k++) {
      const out = Math.ceil(sizes[k]! / strides[k]!);
      const total = Math.max(0, (out - 1) * strides[k]! + (kernel[k]! - 1) * dilations[k]! + 1 - sizes[k]!);
      const small = Math.floor(total / 2);
      begin.push(autoPad === 'SAME_UPPER' ? small : total - small);
      end.push(total - begin[k]!);
    }
    pads = [begin[0]!, begin[1]!, end[0]!, end[1]!];
  } else if (autoPad === 'VALID') {
    pads = [0, 0, 0, 0];
  } else if (autoPad !== 'NOTSET') {
    fail(node, `auto_pad ${autoPad} is not supported`);
  }
  const round = ceilMode ? Math.ceil : Math.floor;
  const outOf = (k: 0 | 1): number =>
    round((sizes[k]! + pads[k]! + pads[k + 2]! - ((kernel[k]! - 1) * dilations[k]! + 1)) / strides[k]!) + 1;
  return { kernel, strides, dilations, pads, out: [outOf(0), outOf(1)] };
}

/** tfjs order of a window's per-axis values: [H, W], or [W, H] for a swapped input. */
function spatial<T>(values: readonly [T, T], swapped: boolean): [T, T] {
  return swapped ? [values[1], values[0]] : [values[0], values[1]];
}

function explicitPaddings(window: Window, swapped: boolean): number[] {
  const [top, left, bottom, right] = window.pads;
  const [first, second] = spatial<[number, number]>([[top, bottom], [left, right]], swapped);
  return [0, 0, ...first, ...second, 0, 0];
}

function convert2dConv(node: OnnxNode, ctx: Converter): void {
  const { x, ref, swapped } = spatialInput(ctx, node);
  const weight = ctx.constant(node, 1, 'the weight');
  const bias = ctx.constant(node, 2, 'the bias');
  if (!weight || weight.kind !== 'float' || weight.dims.length !== 4) fail(node, 'expected a constant float weight [out, in/groups, kh, kw]');
  const [outChannels, inPerGroup, kh, kw] = weight.dims as [number, number, number, number];
  const [, inChannels, inH, inW] = x.shape as [number, number, number, number];
  const group = intAttr(node, 'group', 1);
  const window = windowOf(node, inH, inW, [kh, kw]);
  const values = weight.values as Float32Array;

  let op: string;
  let filterDims: number[];
  let filter: Float32Array;
  if (group === 1) {
    if (inPerGroup !== inChannels) fail(node, `weight takes ${inPerGroup} input channels, the input has ${inChannels}`);
    op = 'Conv2D';
    // OIHW -> HWIO (or WHIO for a swapped input).
    const perm = swapped ? [3, 2, 1, 0] : [2, 3, 1, 0];
    filterDims = permute(weight.dims, perm);
    filter = transposeData(values, weight.dims, perm);
  } else if (group === inChannels && inPerGroup === 1 && outChannels % inChannels === 0) {
    op = 'DepthwiseConv2dNative';
    // [C * M, 1, kh, kw] -> [kh, kw, C, M]: output channel c * M + m reads input channel c.
    const multiplier = outChannels / inChannels;
    const dims = [inChannels, multiplier, kh, kw];
    const perm = swapped ? [3, 2, 0, 1] : [2, 3, 0, 1];
    filterDims = permute(dims, perm);
    filter = transposeData(values, dims, perm);
  } else {
    fail(node, `grouped convolution (group ${group}, ${inChannels} input channels) is not supported; only group 1 and depthwise`);
  }
  if (window.dilations.some((d) => d !== 1) && op === 'DepthwiseConv2dNative' && window.strides.some((s) => s !== 1)) {
    fail(node, 'depthwise convolution with both strides and dilations is not supported by tfjs');
  }

  const name = ctx.nameFor(node);
  const filterRef = ctx.floatConstant(`${name}/filter`, filterDims, filter);
  const padding: Record<string, TfAttrValue> = window.pads.every((p) => p === 0)
    ? { padding: attr.string('VALID') }
    : { padding: attr.string('EXPLICIT'), explicit_paddings: attr.ints(explicitPaddings(window, swapped)) };
  const attrs: Record<string, TfAttrValue> = {
    T: attr.dtype('float32'),
    data_format: attr.string('NHWC'),
    strides: attr.ints([1, ...spatial(window.strides, swapped), 1]),
    dilations: attr.ints([1, ...spatial(window.dilations, swapped), 1]),
    ...padding,
  };
  const inputs = [ref, filterRef];
  if (bias) {
    if (bias.kind !== 'float' || bias.values.length !== outChannels) fail(node, `bias must hold ${outChannels} floats`);
    inputs.push(ctx.floatConstant(`${name}/bias`, [outChannels], Float32Array.from(bias.values)));
    op = op === 'Conv2D' ? '_FusedConv2D' : 'FusedDepthwiseConv2dNative';
    Object.assign(attrs, { fused_ops: attr.strings(['BiasAdd']), num_args: attr.int(1), epsilon: attr.float(0) });
  }
  ctx.add(name, op, inputs, attrs);
  ctx.setRuntime(node, 0, name, [x.shape[0]!, outChannels, ...window.out], swapped ? [0, 3, 2, 1] : [...NHWC], 0);
}

function convertPool(node: OnnxNode, ctx: Converter): void {
  const { x, ref, swapped } = spatialInput(ctx, node);
  const kernel = intsAttr(node, 'kernel_shape');
  if (!kernel || kernel.length !== 2) fail(node, 'only 2-D pooling with a kernel_shape is supported');
  const [, channels, inH, inW] = x.shape as [number, number, number, number];
  const window = windowOf(node, inH, inW, kernel as [number, number], intAttr(node, 'ceil_mode', 0) === 1);
  const floorWindow = windowOf(node, inH, inW, kernel as [number, number]);
  if (window.out.join() !== floorWindow.out.join()) fail(node, 'ceil_mode=1 that changes the output size is not supported');
  if (window.dilations.some((d) => d !== 1)) fail(node, 'dilated pooling is not supported');
  const isMax = node.opType === 'MaxPool';
  if (!isMax && intAttr(node, 'count_include_pad', 0) !== 0 && window.pads.some((p) => p !== 0)) {
    fail(node, 'AveragePool with count_include_pad=1 and padding is not supported');
  }
  const name = ctx.nameFor(node);
  // tfjs pools take SAME or VALID only. SAME matches when it gives the same output size and the same
  // leading pad (the windows then start at the same rows and columns); otherwise pad explicitly.
  let padding = 'VALID';
  let input = ref;
  if (window.pads.some((p) => p !== 0)) {
    const sizes = [inH, inW];
    const same = [0, 1].every((k) => {
      const out = Math.ceil(sizes[k]! / window.strides[k]!);
      const total = Math.max(0, (out - 1) * window.strides[k]! + window.kernel[k]! - sizes[k]!);
      return out === window.out[k] && window.pads[k] === Math.floor(total / 2);
    });
    if (same) {
      padding = 'SAME';
    } else if (isMax) {
      const paddings = explicitPaddings(window, swapped);
      input = ctx.add(`${name}/pad`, 'PadV2', [
        ref,
        ctx.intConstant('paddings', paddings, [4, 2]),
        ctx.floatConstant(`${name}/pad_value`, [], Float32Array.of(-Infinity)),
      ], { T: attr.dtype('float32'), Tpaddings: attr.dtype('int32') });
    } else {
      fail(node, `padding [${window.pads.join(', ')}] is not expressible as SAME or VALID`);
    }
  }
  ctx.add(name, isMax ? 'MaxPool' : 'AvgPool', [input], {
    T: attr.dtype('float32'),
    data_format: attr.string('NHWC'),
    ksize: attr.ints([1, ...spatial(window.kernel, swapped), 1]),
    strides: attr.ints([1, ...spatial(window.strides, swapped), 1]),
    padding: attr.string(padding),
  });
  ctx.setRuntime(node, 0, name, [x.shape[0]!, channels, ...window.out], swapped ? [0, 3, 2, 1] : [...NHWC], 0);
}

function convertResize(node: OnnxNode, ctx: Converter): void {
  const { x, ref, swapped } = spatialInput(ctx, node);
  const [n, c, inH, inW] = x.shape as [number, number, number, number];
  // Resize: (X, roi, scales, sizes); Upsample: (X, scales).
  const scales = ctx.constant(node, node.opType === 'Upsample' ? 1 : 2, 'scales');
  const sizes = node.opType === 'Upsample' ? undefined : ctx.ints(node, 3, 'sizes');
  let outH: number;
  let outW: number;
  if (sizes && sizes.length === 4) {
    if (sizes[0] !== n || sizes[1] !== c) fail(node, 'only spatial resizing is supported');
    [outH, outW] = [sizes[2]!, sizes[3]!];
  } else if (scales && scales.values.length === 4) {
    const s = Array.from(scales.values);
    if (s[0] !== 1 || s[1] !== 1) fail(node, 'only spatial resizing is supported');
    [outH, outW] = [Math.floor(inH * s[2]!), Math.floor(inW * s[3]!)];
  } else {
    fail(node, 'needs constant 4-element scales or sizes');
  }
  const mode = stringAttr(node, 'mode', 'nearest');
  const transform = stringAttr(node, 'coordinate_transformation_mode', node.opType === 'Upsample' ? 'asymmetric' : 'half_pixel');
  const nearestMode = stringAttr(node, 'nearest_mode', 'round_prefer_floor');
  let op: string;
  let alignCorners = false;
  let halfPixel = false;
  // tfjs nearest: src = floor(dst * in/out) (align_corners: round), or floor((dst + 0.5) * in/out) with half-pixel centers.
  if (mode === 'nearest') {
    op = 'ResizeNearestNeighbor';
    if (transform === 'asymmetric' && (nearestMode === 'floor' || node.opType === 'Upsample')) {
      // defaults
    } else if ((transform === 'half_pixel' || transform === 'pytorch_half_pixel' || transform === 'tf_half_pixel_for_nn') && nearestMode === 'round_prefer_ceil') {
      halfPixel = true;
    } else if (transform === 'align_corners' && nearestMode === 'round_prefer_ceil') {
      alignCorners = true;
    } else {
      fail(node, `nearest resize with coordinate_transformation_mode=${transform} and nearest_mode=${nearestMode} has no tfjs equivalent`);
    }
  } else if (mode === 'linear' || mode === 'bilinear') {
    op = 'ResizeBilinear';
    if (transform === 'half_pixel' || transform === 'pytorch_half_pixel') halfPixel = true;
    else if (transform === 'align_corners') alignCorners = true;
    else if (transform !== 'asymmetric') fail(node, `linear resize with coordinate_transformation_mode=${transform} is not supported`);
  } else {
    fail(node, `mode ${mode} is not supported`);
  }
  const name = ctx.nameFor(node);
  ctx.add(name, op, [ref, ctx.intConstant('size', spatial([outH, outW], swapped))], {
    T: attr.dtype('float32'),
    align_corners: attr.bool(alignCorners),
    half_pixel_centers: attr.bool(halfPixel),
  });
  ctx.setRuntime(node, 0, name, [n, c, outH, outW], swapped ? [0, 3, 2, 1] : [...NHWC], 0);
}

// ---- elementwise ----------------------------------------------------------------------------------

function convertUnary(node: OnnxNode, ctx: Converter): void {
  const x = ctx.runtime(node, 0);
  const name = ctx.nameFor(node);
  const attrs: Record<string, TfAttrValue> = { T: attr.dtype('float32') };
  let op = UNARY[node.opType]!;
  if (node.opType === 'LeakyRelu') {
    op = 'LeakyRelu';
    attrs.alpha = attr.float(floatAttr(node, 'alpha', 0.01));
  }
  ctx.add(name, op, [x.ref], attrs);
  ctx.setRuntime(node, 0, name, x.shape, x.perm, x.batchAxis);
}

function convertClip(node: OnnxNode, ctx: Converter): void {
  const x = ctx.runtime(node, 0);
  const min = ctx.constant(node, 1, 'min')?.values[0] ?? -3.4028234663852886e38;
  const max = ctx.constant(node, 2, 'max')?.values[0] ?? 3.4028234663852886e38;
  const name = ctx.nameFor(node);
  ctx.add(name, 'ClipByValue', [x.ref, ctx.floatConstant(`${name}/min`, [], Float32Array.of(min)), ctx.floatConstant(`${name}/max`, [], Float32Array.of(max))], {
    T: attr.dtype('float32'),
  });
  ctx.setRuntime(node, 0, name, x.shape, x.perm, x.batchAxis);
}

/**
 * Binary ops broadcast NumPy-style from the trailing axis. The output takes the layout of the
 * full-rank run-time operand; constants are broadcast to that rank and transposed into it at
 * conversion time, so the model stays free of run-time transposes.
 */
function convertBinary(node: OnnxNode, ctx: Converter): void {
  const a = ctx.value(node, 0);
  const b = ctx.value(node, 1);
  if (!a || !b) fail(node, 'needs two inputs');
  if (a.kind === 'const' && b.kind === 'const') {
    ctx.setConstant(node, 0, fold(node, () => binaryConst(node.opType, a.tensor, b.tensor)));
    return;
  }
  const shapeOf = (v: Value): number[] => (v.kind === 'const' ? v.tensor.dims : v.shape);
  const shape = broadcastShapes(shapeOf(a), shapeOf(b));
  if (!shape) fail(node, `shapes [${shapeOf(a).join(', ')}] and [${shapeOf(b).join(', ')}] do not broadcast`);
  const rank = shape.length;
  const lead = [a, b].find((v): v is RuntimeValue => v.kind === 'runtime' && v.shape.length === rank) ?? (a.kind === 'runtime' ? a : (b as RuntimeValue));
  // Lower-rank run-time operands broadcast the same in both layouts only when the layout is the identity.
  const others = [a, b].filter((v) => v !== lead);
  const needsIdentity = others.some((v) => v.kind === 'runtime' && v.shape.length !== rank) || lead.shape.length !== rank;
  const perm = needsIdentity ? identity(rank) : lead.perm;
  const refOf = (v: Value): string => {
    if (v.kind === 'const') return ctx.materialize(v, perm, rank);
    return v.shape.length === rank ? ctx.inLayout(v, perm) : ctx.inLayout(v, identity(v.shape.length));
  };
  const name = ctx.nameFor(node);
  ctx.add(name, BINARY[node.opType]!, [refOf(a), refOf(b)], { T: attr.dtype('float32') });
  const batchAxis = [a, b].map((v) => (v.kind === 'runtime' && v.batchAxis !== undefined ? v.batchAxis + rank - v.shape.length : undefined)).find((x) => x !== undefined);
  ctx.setRuntime(node, 0, name, shape, perm, batchAxis);
}

// ---- layout-sensitive tensor ops ------------------------------------------------------------------

function convertConcat(node: OnnxNode, ctx: Converter): void {
  const values = node.inputs.map((_, i) => ctx.value(node, i)).filter((v): v is Value => v !== undefined);
  const lead = values.find((v): v is RuntimeValue => v.kind === 'runtime');
  if (!lead) {
    const tensors = values.map((v) => (v as ConstValue).tensor);
    if (tensors.length === 0) fail(node, 'needs at least one input');
    const axis = normalizeAxis(node, intAttr(node, 'axis', 0), tensors[0]!.dims.length);
    ctx.setConstant(node, 0, fold(node, () => concatConst(tensors, axis)));
    return;
  }
  const rank = lead.shape.length;
  const axis = normalizeAxis(node, intAttr(node, 'axis', 0), rank);
  if (axis === lead.batchAxis) fail(node, 'concatenating along the batch dimension is not supported');
  const refs = values.map((v) => {
    if (v.kind === 'const') {
      if (lead.batchAxis !== undefined) fail(node, 'concatenating a constant with batched values is not supported');
      return ctx.materialize(v, lead.perm, rank);
    }
    return ctx.inLayout(v, lead.perm);
  });
  const shape = [...lead.shape];
  shape[axis] = values.reduce((sum, v) => sum + (v.kind === 'const' ? v.tensor.dims[axis]! : v.shape[axis]!), 0);
  const name = ctx.nameFor(node);
  ctx.add(name, 'ConcatV2', [...refs, ctx.intConstant('axis', [lead.perm.indexOf(axis)], [])], {
    T: attr.dtype('float32'),
    N: attr.int(refs.length),
    Tidx: attr.dtype('int32'),
  });
  ctx.setRuntime(node, 0, name, shape, lead.perm, lead.batchAxis);
}

function convertSplit(node: OnnxNode, ctx: Converter): void {
  const x = ctx.runtime(node, 0);
  const axis = normalizeAxis(node, intAttr(node, 'axis', 0), x.shape.length);
  if (axis === x.batchAxis) fail(node, 'splitting along the batch dimension is not supported');
  const dim = x.shape[axis]!;
  const outputs = node.outputs.length;
  let sizes = ctx.opset >= 13 ? ctx.ints(node, 1, 'split') : intsAttr(node, 'split');
  if (!sizes) {
    if (dim % outputs !== 0) fail(node, `cannot split ${dim} into ${outputs} equal parts`);
    sizes = new Array<number>(outputs).fill(dim / outputs);
  }
  if (sizes.length !== outputs || sizes.reduce((s, v) => s + v, 0) !== dim) fail(node, `split sizes [${sizes.join(', ')}] do not cover ${dim}`);
  const name = ctx.nameFor(node);
  ctx.add(name, 'SplitV', [x.ref, ctx.intConstant('size_splits', sizes), ctx.intConstant('axis', [x.perm.indexOf(axis)], [])], {
    T: attr.dtype('float32'),
    Tlen: attr.dtype('int32'),
    num_split: attr.int(outputs),
  });
  sizes.forEach((size, k) => {
    const shape = [...x.shape];
    shape[axis] = size;
    ctx.setRuntime(node, k, k === 0 ? name : `${name}:${k}`, shape, x.perm, x.batchAxis);
  });
}

function convertSlice(node: OnnxNode, ctx: Converter): void {
  const input = ctx.value(node, 0);
  if (!input) fail(node, 'needs an input');
  const x = input.kind === 'runtime' ? input : { shape: input.tensor.dims, batchAxis: undefined };
  const rank = x.shape.length;
  const starts = ctx.ints(node, 1, 'starts');
  const ends = ctx.ints(node, 2, 'ends');
  if (!starts || !ends || starts.length !== ends.length) fail(node, 'needs constant starts and ends of equal length');
  const axes = (ctx.ints(node, 3, 'axes') ?? starts.map((_, i) => i)).map((a) => normalizeAxis(node, a, rank));
  const steps = ctx.ints(node, 4, 'steps') ?? starts.map(() => 1);
  // Per ONNX axis: begin, end (exclusive) and step after clamping; untouched axes are taken whole.
  const begin = x.shape.map(() => 0);
  const end = [...x.shape];
  const step = x.shape.map(() => 1);
  axes.forEach((axis, i) => {
    const dim = x.shape[axis]!;
    const s = steps[i]!;
    if (!(s > 0)) fail(node, `step ${s} is not supported (only positive steps)`);
    const clamp = (v: number): number => Math.min(Math.max(v < 0 ? v + dim : v, 0), dim);
    begin[axis] = clamp(starts[i]!);
    end[axis] = Math.max(begin[axis]!, clamp(ends[i]!));
    step[axis] = s;
    if (axis === x.batchAxis && (begin[axis] !== 0 || end[axis] !== dim || s !== 1)) fail(node, 'slicing the batch dimension is not supported');
  });
  if (input.kind === 'const') {
    ctx.setConstant(node, 0, fold(node, () => sliceConst(input.tensor, begin, end, step)));
    return;
  }
  const shape = x.shape.map((_, a) => Math.ceil((end[a]! - begin[a]!) / step[a]!));
  const name = ctx.nameFor(node);
  const tf = (values: number[]): number[] => permute(values, input.perm);
  if (step.every((s) => s === 1)) {
    // The batch axis keeps size -1 ("to the end"), so any batch size works.
    const size = shape.map((d, a) => (a === input.batchAxis ? -1 : d));
    ctx.add(name, 'Slice', [input.ref, ctx.intConstant('begin', tf(begin)), ctx.intConstant('size', tf(size))], { T: attr.dtype('float32'), Index: attr.dtype('int32') });
  } else {
    const batchMask = input.batchAxis === undefined ? 0 : 1 << input.perm.indexOf(input.batchAxis);
    ctx.add(name, 'StridedSlice', [input.ref, ctx.intConstant('begin', tf(begin)), ctx.intConstant('end', tf(end)), ctx.intConstant('strides', tf(step))], {
      T: attr.dtype('float32'),
      Index: attr.dtype('int32'),
      begin_mask: attr.int(batchMask),
      end_mask: attr.int(batchMask),
      ellipsis_mask: attr.int(0),
      new_axis_mask: attr.int(0),
      shrink_axis_mask: attr.int(0),
    });
  }
  ctx.setRuntime(node, 0, name, shape, input.perm, input.batchAxis);
}

function convertSoftmax(node: OnnxNode, ctx: Converter): void {
  const x = ctx.runtime(node, 0);
  const rank = x.shape.length;
  const axis = normalizeAxis(node, intAttr(node, 'axis', ctx.opset >= 13 ? -1 : 1), rank);
  // Before opset 13, Softmax flattened everything from `axis` on: the same as a last-axis softmax only then.
  if (ctx.opset < 13 && axis !== rank - 1) fail(node, `opset ${ctx.opset} Softmax over axis ${axis} of a rank-${rank} tensor is not supported`);
  // tfjs softmax works on the last tfjs axis; move the axis there if the layout puts it elsewhere.
  const perm = x.perm.indexOf(axis) === rank - 1 ? x.perm : [...x.perm.filter((d) => d !== axis), axis];
  const name = ctx.nameFor(node);
  ctx.add(name, 'Softmax', [ctx.inLayout(x, perm)], { T: attr.dtype('float32') });
  ctx.setRuntime(node, 0, name, x.shape, perm, x.batchAxis);
}

/** Transpose never moves data: the output is the input under another layout. */
function convertTranspose(node: OnnxNode, ctx: Converter): void {
  const x = ctx.runtime(node, 0);
  const rank = x.shape.length;
  const p = intsAttr(node, 'perm') ?? identity(rank).reverse();
  if (p.length !== rank || [...p].sort().some((d, i) => d !== i)) fail(node, `perm [${p.join(', ')}] is not a permutation of ${rank} axes`);
  // Output axis i is input axis p[i]; tfjs axis k holds input axis x.perm[k], which is output axis p.indexOf(x.perm[k]).
  const perm = x.perm.map((d) => p.indexOf(d));
  ctx.setRuntime(node, 0, x.ref, permute(x.shape, p), perm, x.batchAxis === undefined ? undefined : p.indexOf(x.batchAxis));
}

function convertReshapeLike(node: OnnxNode, ctx: Converter): void {
  const input = ctx.value(node, 0);
  if (!input) fail(node, 'needs an input');
  const inShape = input.kind === 'const' ? input.tensor.dims : input.shape;
  const count = inShape.reduce((a, b) => a * b, 1);
  let outShape: number[];
  /** Target entries that hold the batch size (a shape computed with Shape): allowed only on the batch axis. */
  let batchEntries: number[] = [];
  switch (node.opType) {
    case 'Reshape': {
      const targetTensor = ctx.constant(node, 1, 'the target shape', true);
      if (!targetTensor) fail(node, 'needs a target shape');
      const target = Array.from(targetTensor.values, Number);
      batchEntries = targetTensor.batchElements ?? [];
      const allowZero = intAttr(node, 'allowzero', 0) === 1;
      outShape = target.map((d, i) => (d === 0 && !allowZero ? inShape[i]! : d));
      const unknown = outShape.indexOf(-1);
      if (unknown >= 0) {
        const known = outShape.reduce((a, d, i) => (i === unknown ? a : a * d), 1);
        outShape[unknown] = count / known;
      }
      break;
    }
    case 'Flatten': {
      const axis = intAttr(node, 'axis', 1);
      const a = axis < 0 ? axis + inShape.length : axis;
      const head = inShape.slice(0, a).reduce((p, d) => p * d, 1);
      outShape = [head, count / head];
      break;
    }
    case 'Squeeze': {
      const axes = (ctx.opset >= 13 ? ctx.ints(node, 1, 'axes') : intsAttr(node, 'axes'))?.map((a) => normalizeAxis(node, a, inShape.length));
      outShape = inShape.filter((d, i) => (axes ? !axes.includes(i) : d !== 1));
      break;
    }
    default: {
      // Unsqueeze
      const axes = ctx.opset >= 13 ? ctx.ints(node, 1, 'axes') : intsAttr(node, 'axes');
      if (!axes) fail(node, 'needs axes');
      const rank = inShape.length + axes.length;
      const inserted = new Set(axes.map((a) => normalizeAxis(node, a, rank)));
      const rest = [...inShape];
      outShape = Array.from({ length: rank }, (_, i) => (inserted.has(i) ? 1 : rest.shift()!));
    }
  }
  if (outShape.some((d) => !Number.isInteger(d) || d < 0) || outShape.reduce((a, b) => a * b, 1) !== count) {
    fail(node, `cannot reshape [${inShape.join(', ')}] into [${outShape.join(', ')}]`);
  }
  if (input.kind === 'const') {
    if (batchEntries.length) fail(node, 'the target shape of a constant depends on the batch size, which the converted graph keeps dynamic');
    ctx.setConstant(node, 0, reshapeConst(input.tensor, outShape));
    return;
  }
  const x = input;
  const groups = reshapeGroups(inShape, outShape);
  if (!groups) fail(node, `cannot reshape [${inShape.join(', ')}] into [${outShape.join(', ')}]`);
  // The batch must survive as one whole dimension, which becomes -1 in the tfjs shape.
  let batchAxis: number | undefined;
  if (x.batchAxis !== undefined) {
    const group = groups.find((g) => g.ins.includes(x.batchAxis!));
    if (!group || group.ins.length !== 1 || group.outs.length !== 1) {
      fail(node, `reshaping [${inShape.join(', ')}] into [${outShape.join(', ')}] merges or drops the batch dimension, which must stay dynamic`);
    }
    batchAxis = group.outs[0];
  }
  if (batchEntries.some((k) => k !== batchAxis)) fail(node, 'a target shape entry other than the batch holds the batch size');
  // Keep the current layout when the reshape is expressible in it; otherwise go back to the ONNX order.
  let inPerm = x.perm;
  let outPerm = reshapeLayout(groups, inPerm);
  if (!outPerm) {
    inPerm = identity(inShape.length);
    outPerm = reshapeLayout(groups, inPerm)!;
  }
  const tfIn = permute(inShape, inPerm);
  const tfOut = permute(outShape, outPerm);
  if (tfIn.join() === tfOut.join() && samePerm(inPerm, x.perm)) {
    ctx.setRuntime(node, 0, x.ref, outShape, outPerm, batchAxis);
    return;
  }
  const name = ctx.nameFor(node);
  const shapeRef = ctx.intConstant('shape', tfOut.map((d, k) => (outPerm[k] === batchAxis ? -1 : d)));
  ctx.add(name, 'Reshape', [ctx.inLayout(x, inPerm), shapeRef], { T: attr.dtype('float32'), Tshape: attr.dtype('int32') });
  ctx.setRuntime(node, 0, name, outShape, outPerm, batchAxis);
}

function convertConstant(node: OnnxNode, ctx: Converter): void {
  const value = attribute(node, 'value');
  let tensor: ConstTensor;
  if (value?.kind === 'tensor') tensor = toConstTensor(node, value.value);
  else if (attribute(node, 'value_float')?.kind === 'float') tensor = { dims: [], kind: 'float', values: Float32Array.of(floatAttr(node, 'value_float', 0)) };
  else if (attribute(node, 'value_floats')?.kind === 'floats') {
    const floats = (attribute(node, 'value_floats') as { value: number[] }).value;
    tensor = { dims: [floats.length], kind: 'float', values: Float32Array.from(floats) };
  } else if (attribute(node, 'value_int')?.kind === 'int') tensor = { dims: [], kind: 'int', values: [intAttr(node, 'value_int', 0)] };
  else if (intsAttr(node, 'value_ints')) tensor = { dims: [intsAttr(node, 'value_ints')!.length], kind: 'int', values: intsAttr(node, 'value_ints')! };
  else fail(node, 'only tensor, float(s) and int(s) constants are supported');
  ctx.setConstant(node, 0, tensor);
}

function toConstTensor(node: OnnxNode, tensor: OnnxTensor): ConstTensor {
  if (tensor.kind === 'float') return { dims: tensor.dims, kind: 'float', values: tensor.values };
  if (tensor.dataType === OnnxDataType.BOOL) fail(node, 'boolean constants are not supported');
  return { dims: tensor.dims, kind: 'int', values: tensor.values };
}

/**
 * Every dimension but the batch is fixed, so Shape is a constant; the batch entry holds the ONNX file's
 * batch and is marked, so that nothing bakes it into the graph (see const-fold.ts).
 */
function convertShape(node: OnnxNode, ctx: Converter): void {
  const value = ctx.value(node, 0);
  if (!value) fail(node, 'needs an input');
  const [dims, batchAxis] = value.kind === 'const' ? [value.tensor.dims, undefined] : [value.shape, value.batchAxis];
  ctx.setConstant(node, 0, shapeTensor(dims, batchAxis, intAttr(node, 'start', 0), intAttr(node, 'end', dims.length)));
}

/** Gather of constants (typically a Shape's entries), evaluated at conversion time. */
function convertGather(node: OnnxNode, ctx: Converter): void {
  const data = ctx.value(node, 0);
  if (!data) fail(node, 'needs data');
  if (data.kind !== 'const') fail(node, 'gathering from a tensor computed at run time is not supported (only from constants such as a Shape)');
  const indices = ctx.constant(node, 1, 'the indices');
  if (!indices) fail(node, 'needs indices');
  const axis = normalizeAxis(node, intAttr(node, 'axis', 0), data.tensor.dims.length);
  ctx.setConstant(node, 0, fold(node, () => gatherConst(data.tensor, indices, axis)));
}

function convertIdentity(node: OnnxNode, ctx: Converter): void {
  const value = ctx.value(node, 0);
  if (!value) fail(node, 'needs an input');
  ctx.alias(node, value);
}

const HANDLERS: Record<string, Handler> = {
  Conv: convert2dConv,
  MaxPool: convertPool,
  AveragePool: convertPool,
  Resize: convertResize,
  Upsample: convertResize,
  LeakyRelu: convertUnary,
  Clip: convertClip,
  Concat: convertConcat,
  Split: convertSplit,
  Slice: convertSlice,
  Softmax: convertSoftmax,
  Transpose: convertTranspose,
  Reshape: convertReshapeLike,
  Flatten: convertReshapeLike,
  Squeeze: convertReshapeLike,
  Unsqueeze: convertReshapeLike,
  Constant: convertConstant,
  Identity: convertIdentity,
  Shape: convertShape,
  Gather: convertGather,
  ...Object.fromEntries(Object.keys(UNARY).map((op) => [op, convertUnary])),
  ...Object.fromEntries(Object.keys(BINARY).map((op) => [op, convertBinary])),
};

/** ONNX requires topological order, but exporters occasionally break it; Kahn's algorithm restores it. */
function sortTopologically(nodes: OnnxNode[], available: Set<string>): OnnxNode[] {
  const ready = new Set(available);
  const pending = [...nodes];
  const sorted: OnnxNode[] = [];
  while (pending.length) {
    const before = sorted.length;
    for (let i = 0; i < pending.length; ) {
      const node = pending[i]!;
      if (node.inputs.every((name) => name === '' || ready.has(name))) {
        sorted.push(node);
        node.outputs.forEach((name) => ready.add(name));
        pending.splice(i, 1);
      } else {
        i++;
      }
    }
    if (sorted.length === before) {
      const node = pending[0]!;
      const missing = node.inputs.filter((name) => name !== '' && !ready.has(name));
      throw new OnnxConversionError(`ONNX node "${node.name}" (${node.opType}) reads ${missing.map((m) => `"${m}"`).join(', ')}, which nothing produces (or the graph has a cycle)`);
    }
  }
  return sorted;
}
