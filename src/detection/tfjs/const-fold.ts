/**
 * Conversion-time evaluation of ONNX ops whose inputs are all constants. Exports that were not run
 * through onnx-simplifier (the stock Ultralytics YOLOv8s/m/l/x files) keep small shape computations in
 * the graph, e.g. the head's `distance.chunk(2, 1)`: Shape -> Gather -> Add -> Div -> Mul -> Slice.
 * Every shape but the batch is fixed, so these fold into the constants the converter needs.
 *
 * The batch is the one dimension the converted graph leaves dynamic, so a shape element that holds it
 * is marked (`batchElements`) and followed through the folds that only move elements; arithmetic on it,
 * or any use other than a Reshape's batch entry, is refused rather than baked in as the file's batch.
 */
import { broadcastShapes, strides } from './layout.ts';

export interface ConstTensor {
  dims: number[];
  kind: 'float' | 'int';
  values: Float32Array | number[];
  /** Flat indices of the elements that hold the batch size (which the converted graph keeps dynamic). */
  batchElements?: number[];
}

/** A fold that cannot be done; the converter reports it against the ONNX node. */
export class ConstFoldError extends Error {
  override name = 'ConstFoldError';
}

const count = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);

/** A tensor whose element i is element from[i] of `source` (the folds that only move elements). */
function pick(source: ConstTensor, dims: number[], from: readonly number[]): ConstTensor {
  const values = source.kind === 'float' ? Float32Array.from(from, (i) => source.values[i]!) : from.map((i) => source.values[i]!);
  const marks = source.batchElements;
  const batchElements = marks ? from.flatMap((s, i) => (marks.includes(s) ? [i] : [])) : [];
  return { dims, kind: source.kind, values, ...(batchElements.length ? { batchElements } : {}) };
}

/** Calls visit(per-axis index) for every element of `dims`, in row-major order. */
function forEachIndex(dims: readonly number[], visit: (index: readonly number[]) => void): void {
  const total = count(dims);
  const index = new Array<number>(dims.length).fill(0);
  for (let o = 0; o < total; o++) {
    visit(index);
    for (let k = dims.length - 1; k >= 0; k--) {
      if (++index[k]! < dims[k]!) break;
      index[k] = 0;
    }
  }
}

function offsetOf(index: readonly number[], stride: readonly number[]): number {
  return index.reduce((sum, i, k) => sum + i * stride[k]!, 0);
}

/** ONNX Shape (opset 15's start/end included): the dims as int64, the batch entry marked. */
export function shapeTensor(dims: readonly number[], batchAxis: number | undefined, start = 0, end = dims.length): ConstTensor {
  const clamp = (v: number): number => Math.min(Math.max(v < 0 ? v + dims.length : v, 0), dims.length);
  const [from, to] = [clamp(start), Math.max(clamp(start), clamp(end))];
  const values = dims.slice(from, to);
  const tensor: ConstTensor = { dims: [values.length], kind: 'int', values };
  if (batchAxis !== undefined && batchAxis >= from && batchAxis < to) tensor.batchElements = [batchAxis - from];
  return tensor;
}

/** ONNX Gather: output dims are data.dims[:axis] + indices.dims + data.dims[axis + 1:]. */
export function gatherConst(data: ConstTensor, indices: ConstTensor, axis: number): ConstTensor {
  if (indices.kind !== 'int') throw new ConstFoldError('indices must be integers');
  const dim = data.dims[axis]!;
  const picked = Array.from(indices.values, (v) => {
    const i = v < 0 ? v + dim : v;
    if (!Number.isInteger(i) || i < 0 || i >= dim) throw new ConstFoldError(`index ${v} is out of range for a dimension of ${dim}`);
    return i;
  });
  const outer = count(data.dims.slice(0, axis));
  const inner = count(data.dims.slice(axis + 1));
  const from: number[] = [];
  for (let o = 0; o < outer; o++) for (const i of picked) for (let k = 0; k < inner; k++) from.push((o * dim + i) * inner + k);
  return pick(data, [...data.dims.slice(0, axis), ...indices.dims, ...data.dims.slice(axis + 1)], from);
}

/** Per-axis begin, (clamped) end and positive step, as convertSlice computes them. */
export function sliceConst(x: ConstTensor, begin: readonly number[], end: readonly number[], step: readonly number[]): ConstTensor {
  const dims = x.dims.map((_, a) => Math.ceil((end[a]! - begin[a]!) / step[a]!));
  const stride = strides(x.dims);
  const from: number[] = [];
  forEachIndex(dims, (index) => from.push(offsetOf(index.map((i, a) => begin[a]! + i * step[a]!), stride)));
  return pick(x, dims, from);
}

export function concatConst(parts: readonly ConstTensor[], axis: number): ConstTensor {
  const first = parts[0]!;
  if (parts.some((p) => p.kind !== first.kind || p.dims.length !== first.dims.length)) throw new ConstFoldError('inputs differ in type or rank');
  if (parts.some((p) => p.dims.some((d, a) => a !== axis && d !== first.dims[a]))) throw new ConstFoldError('inputs differ in a dimension other than the axis');
  // Lay the parts end to end in one source, then pick along the axis.
  const marks: number[] = [];
  let base = 0;
  for (const p of parts) {
    marks.push(...(p.batchElements ?? []).map((m) => m + base));
    base += p.values.length;
  }
  const all = parts.flatMap((p) => Array.from(p.values));
  const joined: ConstTensor = { dims: [base], kind: first.kind, values: first.kind === 'float' ? Float32Array.from(all) : all };
  if (marks.length) joined.batchElements = marks;
  const outer = count(first.dims.slice(0, axis));
  const inner = count(first.dims.slice(axis + 1));
  const from: number[] = [];
  for (let o = 0; o < outer; o++) {
    let partBase = 0;
    for (const p of parts) {
      const block = p.dims[axis]! * inner;
      for (let k = 0; k < block; k++) from.push(partBase + o * block + k);
      partBase += p.values.length;
    }
  }
  const dims = [...first.dims];
  dims[axis] = parts.reduce((sum, p) => sum + p.dims[axis]!, 0);
  return pick(joined, dims, from);
}

export function reshapeConst(x: ConstTensor, dims: number[]): ConstTensor {
  return { ...x, dims };
}

type Arith = (a: number, b: number) => number;

const INT_OPS: Record<string, Arith> = {
  Add: (a, b) => a + b,
  Sub: (a, b) => a - b,
  Mul: (a, b) => a * b,
  // ONNX integer division truncates toward zero (C semantics), as ONNX Runtime computes it.
  Div: (a, b) => {
    if (b === 0) throw new ConstFoldError('integer division by zero');
    return Math.trunc(a / b);
  },
  Pow: (a, b) => Math.trunc(a ** b),
  Max: Math.max,
  Min: Math.min,
};

const FLOAT_OPS: Record<string, Arith> = {
  Add: (a, b) => a + b,
  Sub: (a, b) => a - b,
  Mul: (a, b) => a * b,
  Div: (a, b) => a / b,
  Pow: (a, b) => a ** b,
  Max: Math.max,
  Min: Math.min,
};

/** Elementwise Add/Sub/Mul/Div/Pow/Max/Min with NumPy broadcasting, in the operands' type. */
export function binaryConst(op: string, a: ConstTensor, b: ConstTensor): ConstTensor {
  if (a.batchElements?.length || b.batchElements?.length) {
    throw new ConstFoldError('the operand holds the batch size, which the converted graph keeps dynamic');
  }
  if (a.kind !== b.kind) throw new ConstFoldError('the operands differ in type');
  const fn = (a.kind === 'int' ? INT_OPS : FLOAT_OPS)[op];
  if (!fn) throw new ConstFoldError(`${op} cannot be evaluated at conversion time`);
  const dims = broadcastShapes(a.dims, b.dims);
  if (!dims) throw new ConstFoldError(`shapes [${a.dims.join(', ')}] and [${b.dims.join(', ')}] do not broadcast`);
  // Strides of each operand over the output's axes (0 along a broadcast axis).
  const broadcastStrides = (t: ConstTensor): number[] => {
    const own = strides(t.dims);
    return dims.map((_, k) => {
      const a = k - (dims.length - t.dims.length);
      return a < 0 || t.dims[a] === 1 ? 0 : own[a]!;
    });
  };
  const [sa, sb] = [broadcastStrides(a), broadcastStrides(b)];
  const out: number[] = [];
  forEachIndex(dims, (index) => out.push(fn(a.values[offsetOf(index, sa)]!, b.values[offsetOf(index, sb)]!)));
  return a.kind === 'float' ? { dims, kind: 'float', values: Float32Array.from(out) } : { dims, kind: 'int', values: out };
}
