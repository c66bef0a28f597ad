/**
 * The TensorFlow GraphDef JSON that tfjs-converter's GraphModel loads (model.json "modelTopology"),
 * and a builder that names nodes and collects their weights into one buffer.
 */

export type TfDtype = 'float32' | 'int32';

export interface TfAttrValue {
  i?: string;
  f?: number;
  b?: boolean;
  /** Strings are base64, as protobuf's JSON mapping writes bytes. */
  s?: string;
  type?: string;
  list?: { i?: string[]; s?: string[]; f?: number[] };
  shape?: TfShapeProto;
  tensor?: { dtype: string; tensorShape: TfShapeProto };
}

export interface TfShapeProto {
  dim?: { size: string }[];
}

export interface TfNodeDef {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, TfAttrValue>;
}

export interface TfWeightSpec {
  name: string;
  shape: number[];
  dtype: TfDtype;
}

export interface TfTensorInfo {
  name: string;
  dtype: string;
  tensorShape: TfShapeProto;
}

/** Attribute value helpers, in protobuf JSON form (int64 as decimal strings, bytes as base64). */
export const attr = {
  int: (value: number): TfAttrValue => ({ i: String(value) }),
  float: (value: number): TfAttrValue => ({ f: value }),
  bool: (value: boolean): TfAttrValue => ({ b: value }),
  string: (value: string): TfAttrValue => ({ s: Buffer.from(value, 'utf8').toString('base64') }),
  ints: (values: readonly number[]): TfAttrValue => ({ list: { i: values.map(String) } }),
  strings: (values: readonly string[]): TfAttrValue => ({ list: { s: values.map((v) => Buffer.from(v, 'utf8').toString('base64')) } }),
  dtype: (dtype: TfDtype): TfAttrValue => ({ type: tfDtypeEnum(dtype) }),
  shape: (dims: readonly number[]): TfAttrValue => ({ shape: shapeProto(dims) }),
};

export function tfDtypeEnum(dtype: TfDtype): string {
  return dtype === 'float32' ? 'DT_FLOAT' : 'DT_INT32';
}

export function shapeProto(dims: readonly number[]): TfShapeProto {
  return dims.length ? { dim: dims.map((d) => ({ size: String(d) })) } : {};
}

export interface BuiltGraph {
  nodes: TfNodeDef[];
  weightSpecs: TfWeightSpec[];
  weightData: Uint8Array;
}

/** Collects nodes and constant weights; every node gets a unique name that tfjs can parse. */
export class TfGraphBuilder {
  private readonly nodes: TfNodeDef[] = [];
  private readonly weights: { spec: TfWeightSpec; data: Float32Array | Int32Array }[] = [];
  private readonly names = new Set<string>();
  /** Small integer constants (axes, begins, sizes) are shared by value instead of repeated per node. */
  private readonly smallConstants = new Map<string, string>();

  /** Keeps a name free for a node added later (graph inputs and outputs keep their ONNX names). */
  reserve(name: string): string {
    const clean = sanitizeName(name);
    if (this.names.has(clean)) throw new Error(`duplicate graph name ${clean}`);
    this.names.add(clean);
    return clean;
  }

  uniqueName(base: string): string {
    const clean = sanitizeName(base);
    let name = clean;
    for (let n = 1; this.names.has(name); n++) name = `${clean}_${n}`;
    this.names.add(name);
    return name;
  }

  /** Adds an op node under `name` (already reserved or unique) and returns the name to use as an input. */
  addNamed(name: string, op: string, inputs: string[], attrs: Record<string, TfAttrValue> = {}): string {
    this.nodes.push({ name, op, input: inputs, attr: attrs });
    return name;
  }

  add(base: string, op: string, inputs: string[], attrs: Record<string, TfAttrValue> = {}): string {
    return this.addNamed(this.uniqueName(base), op, inputs, attrs);
  }

  constant(base: string, shape: readonly number[], dtype: TfDtype, data: Float32Array | Int32Array): string {
    const count = shape.reduce((a, b) => a * b, 1);
    if (data.length !== count) throw new Error(`constant ${base}: ${data.length} values for shape [${shape.join(', ')}]`);
    const small = dtype === 'int32' && count <= 16;
    const key = small ? `${shape.join('x')}:${Array.from(data).join(',')}` : undefined;
    if (key !== undefined) {
      const existing = this.smallConstants.get(key);
      if (existing) return existing;
    }
    const name = this.uniqueName(base);
    this.weights.push({ spec: { name, shape: [...shape], dtype }, data });
    this.nodes.push({
      name,
      op: 'Const',
      attr: { dtype: attr.dtype(dtype), value: { tensor: { dtype: tfDtypeEnum(dtype), tensorShape: shapeProto(shape) } } },
    });
    if (key !== undefined) this.smallConstants.set(key, name);
    return name;
  }

  intConstant(base: string, values: readonly number[], shape: readonly number[] = [values.length]): string {
    return this.constant(base, shape, 'int32', Int32Array.from(values));
  }

  build(): BuiltGraph {
    const total = this.weights.reduce((sum, w) => sum + w.data.byteLength, 0);
    const weightData = new Uint8Array(total);
    let offset = 0;
    for (const { data } of this.weights) {
      weightData.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), offset);
      offset += data.byteLength;
    }
    return { nodes: this.nodes, weightSpecs: this.weights.map((w) => w.spec), weightData };
  }
}

/**
 * TensorFlow node names match [A-Za-z0-9.][A-Za-z0-9_.\\/>-]*, and tfjs reads "name:k" as output k of
 * "name", so ONNX names such as "/model.22/Concat_output_0" lose their leading slash and any colon.
 */
export function sanitizeName(name: string): string {
  const clean = name.replace(/[^A-Za-z0-9_./-]/g, '_').replace(/^[^A-Za-z0-9.]+/, '');
  return clean || 'node';
}
