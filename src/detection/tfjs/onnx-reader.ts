import protobuf from 'protobufjs';

/**
 * The part of onnx.proto (onnx/onnx, proto3 syntax, field numbers unchanged since IR version 3) that a
 * converter needs: the graph, its nodes, attributes, initializers and value infos, and metadata_props.
 * Fields not listed here (sparse tensors, training info, functions, type protos other than tensors)
 * are skipped by the protobuf decoder, which is what protobuf does with unknown fields.
 */
const ONNX_PROTO = `
syntax = "proto3";
package onnx;

message StringStringEntryProto { string key = 1; string value = 2; }
message OperatorSetIdProto { string domain = 1; int64 version = 2; }

message TensorProto {
  repeated int64 dims = 1;
  int32 data_type = 2;
  repeated float float_data = 4 [packed = true];
  repeated int32 int32_data = 5 [packed = true];
  repeated bytes string_data = 6;
  repeated int64 int64_data = 7 [packed = true];
  string name = 8;
  bytes raw_data = 9;
  repeated double double_data = 10 [packed = true];
  repeated uint64 uint64_data = 11 [packed = true];
  string doc_string = 12;
  repeated StringStringEntryProto external_data = 13;
  int32 data_location = 14;
}

message TensorShapeProto {
  message Dimension {
    oneof value { int64 dim_value = 1; string dim_param = 2; }
    string denotation = 3;
  }
  repeated Dimension dim = 1;
}

message TypeProto {
  message Tensor { int32 elem_type = 1; TensorShapeProto shape = 2; }
  oneof value { Tensor tensor_type = 1; }
  string denotation = 6;
}

message ValueInfoProto { string name = 1; TypeProto type = 2; string doc_string = 3; }

message AttributeProto {
  string name = 1;
  float f = 2;
  int64 i = 3;
  bytes s = 4;
  TensorProto t = 5;
  GraphProto g = 6;
  repeated float floats = 7;
  repeated int64 ints = 8;
  repeated bytes strings = 9;
  repeated TensorProto tensors = 10;
  repeated GraphProto graphs = 11;
  string doc_string = 13;
  int32 type = 20;
  string ref_attr_name = 21;
}

message NodeProto {
  repeated string input = 1;
  repeated string output = 2;
  string name = 3;
  string op_type = 4;
  repeated AttributeProto attribute = 5;
  string doc_string = 6;
  string domain = 7;
}

message GraphProto {
  repeated NodeProto node = 1;
  string name = 2;
  repeated TensorProto initializer = 5;
  string doc_string = 10;
  repeated ValueInfoProto input = 11;
  repeated ValueInfoProto output = 12;
  repeated ValueInfoProto value_info = 13;
}

message ModelProto {
  int64 ir_version = 1;
  string producer_name = 2;
  string producer_version = 3;
  string domain = 4;
  int64 model_version = 5;
  string doc_string = 6;
  GraphProto graph = 7;
  repeated OperatorSetIdProto opset_import = 8;
  repeated StringStringEntryProto metadata_props = 14;
}
`;

/** TensorProto.DataType values this reader decodes. */
export const OnnxDataType = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  INT32: 6,
  INT64: 7,
  BOOL: 9,
  DOUBLE: 11,
} as const;

const DATA_TYPE_NAMES: Record<number, string> = {
  0: 'UNDEFINED', 1: 'FLOAT', 2: 'UINT8', 3: 'INT8', 4: 'UINT16', 5: 'INT16', 6: 'INT32', 7: 'INT64', 8: 'STRING',
  9: 'BOOL', 10: 'FLOAT16', 11: 'DOUBLE', 12: 'UINT32', 13: 'UINT64', 14: 'COMPLEX64', 15: 'COMPLEX128', 16: 'BFLOAT16',
};

export function onnxDataTypeName(code: number): string {
  return DATA_TYPE_NAMES[code] ?? `data type ${code}`;
}

/** Thrown for a file that is not an ONNX model or uses a part of ONNX this reader does not decode. */
export class OnnxFormatError extends Error {
  override name = 'OnnxFormatError';
}

/**
 * A constant tensor. Floating-point data (FLOAT, DOUBLE) is held as float32, integer and boolean data as
 * plain numbers: int64 values past 2^53 (ONNX's INT64_MAX meaning "to the end" in Slice) lose precision
 * but stay huge, which is all such values mean.
 */
export type OnnxTensor =
  | { name: string; dataType: number; dims: number[]; kind: 'float'; values: Float32Array }
  | { name: string; dataType: number; dims: number[]; kind: 'int'; values: number[] };

/** A dimension is a number when fixed, a symbolic name (dim_param) or undefined when unknown. */
export type OnnxDim = number | string | undefined;

export interface OnnxValueInfo {
  name: string;
  /** Element type (TensorProto.DataType), 0 when not given. */
  elemType: number;
  /** undefined when the shape is not given at all (rank unknown). */
  shape: OnnxDim[] | undefined;
}

export type OnnxAttribute =
  | { kind: 'float'; value: number }
  | { kind: 'int'; value: number }
  | { kind: 'string'; value: string }
  | { kind: 'tensor'; value: OnnxTensor }
  | { kind: 'floats'; value: number[] }
  | { kind: 'ints'; value: number[] }
  | { kind: 'strings'; value: string[] }
  | { kind: 'graph' | 'graphs' | 'tensors' | 'unknown'; value: undefined };

export interface OnnxNode {
  name: string;
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  attributes: Map<string, OnnxAttribute>;
}

export interface OnnxGraph {
  name: string;
  nodes: OnnxNode[];
  initializers: Map<string, OnnxTensor>;
  /** Graph inputs that are not initializers: the values a caller feeds. */
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
  valueInfo: Map<string, OnnxValueInfo>;
}

export interface OnnxModel {
  irVersion: number;
  producerName: string;
  producerVersion: string;
  /** Opset version per domain ('' is the default ai.onnx domain). */
  opsets: Map<string, number>;
  metadata: Map<string, string>;
  graph: OnnxGraph;
}

// AttributeProto.AttributeType values.
const ATTR_FLOAT = 1, ATTR_INT = 2, ATTR_STRING = 3, ATTR_TENSOR = 4, ATTR_GRAPH = 5;
const ATTR_FLOATS = 6, ATTR_INTS = 7, ATTR_STRINGS = 8, ATTR_TENSORS = 9, ATTR_GRAPHS = 10;

let modelType: protobuf.Type | undefined;

/** The onnx.ModelProto message type (tests also encode small models with it for ONNX Runtime). */
export function getModelType(): protobuf.Type {
  modelType ??= protobuf.parse(ONNX_PROTO, { keepCase: true }).root.lookupType('onnx.ModelProto');
  return modelType;
}

// The decoded message, as protobufjs builds it (keepCase: field names as in onnx.proto).
type Int64 = number | { toNumber(): number };
interface RawTensor {
  dims?: Int64[]; data_type?: number; float_data?: number[]; int32_data?: number[]; int64_data?: Int64[]; name?: string;
  raw_data?: Uint8Array; double_data?: number[]; uint64_data?: Int64[]; data_location?: number;
}
interface RawDim { dim_value?: Int64; dim_param?: string; value?: string }
interface RawValueInfo { name?: string; type?: { tensor_type?: { elem_type?: number; shape?: { dim?: RawDim[] } } } }
interface RawAttribute {
  name?: string; type?: number; f?: number; i?: Int64; s?: Uint8Array; t?: RawTensor; floats?: number[]; ints?: Int64[];
  strings?: Uint8Array[]; tensors?: RawTensor[]; g?: unknown; graphs?: unknown[];
}
interface RawNode { input?: string[]; output?: string[]; name?: string; op_type?: string; domain?: string; attribute?: RawAttribute[] }
interface RawGraph {
  node?: RawNode[]; name?: string; initializer?: RawTensor[]; input?: RawValueInfo[]; output?: RawValueInfo[]; value_info?: RawValueInfo[];
}
interface RawModel {
  ir_version?: Int64; producer_name?: string; producer_version?: string; graph?: RawGraph;
  opset_import?: { domain?: string; version?: Int64 }[]; metadata_props?: { key?: string; value?: string }[];
}

const utf8 = new TextDecoder('utf-8');

/** protobufjs gives int64 as a Long when the `long` package is installed, else as a number. */
function int64(value: Int64 | undefined): number {
  if (value === undefined) return 0;
  return typeof value === 'number' ? value : value.toNumber();
}

/** Parses a serialized ONNX ModelProto. */
export function readOnnxModel(bytes: Uint8Array): OnnxModel {
  let raw: RawModel;
  try {
    raw = getModelType().decode(bytes) as unknown as RawModel;
  } catch (error) {
    throw new OnnxFormatError(`not an ONNX model: ${(error as Error).message}`);
  }
  if (!raw.graph || !raw.graph.node?.length) throw new OnnxFormatError('not an ONNX model: it has no graph nodes');
  const opsets = new Map<string, number>();
  for (const opset of raw.opset_import ?? []) opsets.set(opset.domain ?? '', int64(opset.version));
  const metadata = new Map<string, string>();
  for (const entry of raw.metadata_props ?? []) if (entry.key !== undefined) metadata.set(entry.key, entry.value ?? '');
  return {
    irVersion: int64(raw.ir_version),
    producerName: raw.producer_name ?? '',
    producerVersion: raw.producer_version ?? '',
    opsets,
    metadata,
    graph: readGraph(raw.graph),
  };
}

function readGraph(raw: RawGraph): OnnxGraph {
  const initializers = new Map<string, OnnxTensor>();
  for (const tensor of raw.initializer ?? []) {
    const parsed = readTensor(tensor);
    initializers.set(parsed.name, parsed);
  }
  const valueInfo = new Map<string, OnnxValueInfo>();
  for (const info of raw.value_info ?? []) {
    const parsed = readValueInfo(info);
    valueInfo.set(parsed.name, parsed);
  }
  return {
    name: raw.name ?? '',
    nodes: (raw.node ?? []).map(readNode),
    initializers,
    // Before IR version 4, initializers were also listed as graph inputs.
    inputs: (raw.input ?? []).map(readValueInfo).filter((input) => !initializers.has(input.name)),
    outputs: (raw.output ?? []).map(readValueInfo),
    valueInfo,
  };
}

function readValueInfo(raw: RawValueInfo): OnnxValueInfo {
  const tensorType = raw.type?.tensor_type;
  const dims = tensorType?.shape?.dim;
  return {
    name: raw.name ?? '',
    elemType: tensorType?.elem_type ?? 0,
    // `value` names the member of the oneof that is set; unset fields read as protobuf defaults, not undefined.
    shape: dims?.map((dim): OnnxDim => (dim.value === 'dim_value' ? int64(dim.dim_value) : dim.value === 'dim_param' ? dim.dim_param : undefined)),
  };
}

function readNode(raw: RawNode, index: number): OnnxNode {
  const attributes = new Map<string, OnnxAttribute>();
  for (const attribute of raw.attribute ?? []) attributes.set(attribute.name ?? '', readAttribute(attribute));
  const opType = raw.op_type ?? '';
  return {
    // Names are optional in ONNX; the converter needs one per node for its own node names.
    name: raw.name || `${opType}_${index}`,
    opType,
    domain: raw.domain ?? '',
    inputs: raw.input ?? [],
    outputs: raw.output ?? [],
    attributes,
  };
}

function readAttribute(raw: RawAttribute): OnnxAttribute {
  switch (raw.type) {
    case ATTR_FLOAT:
      return { kind: 'float', value: raw.f ?? 0 };
    case ATTR_INT:
      return { kind: 'int', value: int64(raw.i) };
    case ATTR_STRING:
      return { kind: 'string', value: utf8.decode(raw.s ?? new Uint8Array()) };
    case ATTR_TENSOR:
      if (!raw.t) throw new OnnxFormatError(`attribute ${raw.name} is a tensor attribute without a tensor`);
      return { kind: 'tensor', value: readTensor(raw.t) };
    case ATTR_FLOATS:
      return { kind: 'floats', value: raw.floats ?? [] };
    case ATTR_INTS:
      return { kind: 'ints', value: (raw.ints ?? []).map(int64) };
    case ATTR_STRINGS:
      return { kind: 'strings', value: (raw.strings ?? []).map((s) => utf8.decode(s)) };
    case ATTR_GRAPH:
      return { kind: 'graph', value: undefined };
    case ATTR_GRAPHS:
      return { kind: 'graphs', value: undefined };
    case ATTR_TENSORS:
      return { kind: 'tensors', value: undefined };
    default:
      return { kind: 'unknown', value: undefined };
  }
}

/** Decodes a TensorProto's data from raw_data (little-endian) or the typed repeated fields. */
export function readTensor(raw: RawTensor): OnnxTensor {
  const name = raw.name ?? '';
  const dataType = raw.data_type ?? 0;
  const dims = (raw.dims ?? []).map(int64);
  const count = dims.reduce((a, b) => a * b, 1);
  if (raw.data_location === 1) throw new OnnxFormatError(`tensor "${name}" keeps its data in an external file, which is not supported`);
  const rawData = raw.raw_data && raw.raw_data.length > 0 ? raw.raw_data : undefined;
  // raw_data may sit at any byte offset of the file, so typed views are taken on an aligned copy.
  const view = rawData ? new DataView(rawData.buffer, rawData.byteOffset, rawData.byteLength) : undefined;
  const checkSize = (bytesPerValue: number): void => {
    if (rawData && rawData.byteLength !== count * bytesPerValue) {
      throw new OnnxFormatError(`tensor "${name}" has ${rawData.byteLength} bytes of raw_data for ${count} ${onnxDataTypeName(dataType)} values`);
    }
  };
  switch (dataType) {
    case OnnxDataType.FLOAT: {
      checkSize(4);
      const values = view ? new Float32Array(count) : Float32Array.from(raw.float_data ?? []);
      if (view) for (let i = 0; i < count; i++) values[i] = view.getFloat32(4 * i, true);
      return { name, dataType, dims, kind: 'float', values: checkCount(name, values, count) };
    }
    case OnnxDataType.DOUBLE: {
      checkSize(8);
      const values = view ? new Float32Array(count) : Float32Array.from(raw.double_data ?? []);
      if (view) for (let i = 0; i < count; i++) values[i] = view.getFloat64(8 * i, true);
      return { name, dataType, dims, kind: 'float', values: checkCount(name, values, count) };
    }
    case OnnxDataType.INT64: {
      checkSize(8);
      const values = view ? Array.from({ length: count }, (_, i) => Number(view.getBigInt64(8 * i, true))) : (raw.int64_data ?? []).map(int64);
      return { name, dataType, dims, kind: 'int', values: checkCount(name, values, count) };
    }
    case OnnxDataType.INT32:
    case OnnxDataType.INT8:
    case OnnxDataType.UINT8:
    case OnnxDataType.BOOL: {
      // These all travel in int32_data when not raw.
      const size = dataType === OnnxDataType.INT32 ? 4 : 1;
      checkSize(size);
      const read = (i: number): number =>
        size === 4 ? view!.getInt32(4 * i, true) : dataType === OnnxDataType.INT8 ? view!.getInt8(i) : view!.getUint8(i);
      const values = view ? Array.from({ length: count }, (_, i) => read(i)) : [...(raw.int32_data ?? [])];
      return { name, dataType, dims, kind: 'int', values: checkCount(name, values, count) };
    }
    default:
      throw new OnnxFormatError(`tensor "${name}" has data type ${onnxDataTypeName(dataType)}, which is not supported`);
  }
}

function checkCount<T extends { length: number }>(name: string, values: T, count: number): T {
  if (values.length !== count) throw new OnnxFormatError(`tensor "${name}" has ${values.length} values for shape of ${count}`);
  return values;
}
