/**
 * Pure index arithmetic for translating NCHW ONNX graphs into NHWC TensorFlow.js graphs.
 *
 * Every runtime value carries a `perm`: the tfjs tensor is the ONNX tensor transposed by it, so tfjs
 * dimension k is ONNX dimension perm[k]. NHWC for an NCHW tensor is [0, 2, 3, 1]; identity means the
 * layouts agree. An ONNX axis a is found at tfjs axis perm.indexOf(a).
 */

export const NHWC = [0, 2, 3, 1] as const;

export function identity(rank: number): number[] {
  return Array.from({ length: rank }, (_, i) => i);
}

export function isIdentity(perm: readonly number[]): boolean {
  return perm.every((d, i) => d === i);
}

export function samePerm(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** [values[perm[0]], values[perm[1]], ...]: an ONNX-ordered list (shape, pads) in tfjs order. */
export function permute<T>(values: readonly T[], perm: readonly number[]): T[] {
  return perm.map((d) => values[d]!);
}

/** The tfjs Transpose perm that turns a tensor in layout `from` into layout `to`. */
export function transposeBetween(from: readonly number[], to: readonly number[]): number[] {
  return to.map((d) => from.indexOf(d));
}

/** Transposes row-major data of shape `dims` so that output dimension k is input dimension perm[k]. */
export function transposeData<T extends Float32Array | Int32Array | number[]>(values: T, dims: readonly number[], perm: readonly number[]): T {
  const rank = dims.length;
  if (isIdentity(perm)) return values;
  const outDims = permute(dims, perm);
  const inStrides = strides(dims);
  const count = values.length;
  const out = (Array.isArray(values) ? new Array<number>(count) : new (values.constructor as Float32ArrayConstructor)(count)) as T;
  const index = new Array<number>(rank).fill(0);
  // Walk the output in row-major order, tracking the matching input offset.
  const step = perm.map((d) => inStrides[d]!);
  let inOffset = 0;
  for (let o = 0; o < count; o++) {
    out[o] = values[inOffset]!;
    for (let k = rank - 1; k >= 0; k--) {
      index[k]!++;
      inOffset += step[k]!;
      if (index[k]! < outDims[k]!) break;
      inOffset -= step[k]! * outDims[k]!;
      index[k] = 0;
    }
  }
  return out;
}

export function strides(dims: readonly number[]): number[] {
  const out = new Array<number>(dims.length);
  let s = 1;
  for (let k = dims.length - 1; k >= 0; k--) {
    out[k] = s;
    s *= dims[k]!;
  }
  return out;
}

/** NumPy broadcasting of two shapes (what ONNX elementwise ops use); undefined when incompatible. */
export function broadcastShapes(a: readonly number[], b: readonly number[]): number[] | undefined {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let k = 0; k < rank; k++) {
    const x = a[a.length - rank + k] ?? 1;
    const y = b[b.length - rank + k] ?? 1;
    if (x !== y && x !== 1 && y !== 1) return undefined;
    out.push(x === 1 ? y : x);
  }
  return out;
}

/** Runs of input dimensions and output dimensions of a reshape with equal products. */
export interface ReshapeGroup {
  ins: number[];
  outs: number[];
}

/**
 * Splits a reshape into groups: each group is a run of consecutive input dims that becomes a run of
 * consecutive output dims (a merge, a split, or a 1:1 copy); size-1 dims that appear or vanish form
 * groups with an empty side. Undefined when the element counts differ.
 */
export function reshapeGroups(inShape: readonly number[], outShape: readonly number[]): ReshapeGroup[] | undefined {
  const groups: ReshapeGroup[] = [];
  let i = 0;
  let j = 0;
  while (i < inShape.length || j < outShape.length) {
    const a = inShape[i];
    const b = outShape[j];
    if (a !== undefined && a === b) {
      groups.push({ ins: [i++], outs: [j++] });
      continue;
    }
    if (a === 1) {
      groups.push({ ins: [i++], outs: [] });
      continue;
    }
    if (b === 1) {
      groups.push({ ins: [], outs: [j++] });
      continue;
    }
    if (a === undefined || b === undefined || a === 0 || b === 0) return undefined;
    const ins = [i++];
    const outs = [j++];
    let pa = a;
    let pb = b;
    while (pa !== pb) {
      if (pa < pb) {
        const next = inShape[i];
        if (next === undefined) return undefined;
        pa *= next;
        ins.push(i++);
      } else {
        const next = outShape[j];
        if (next === undefined) return undefined;
        pb *= next;
        outs.push(j++);
      }
    }
    groups.push({ ins, outs });
  }
  return groups;
}

/**
 * The layout a reshape's output can keep without moving data: when every group of input dims sits
 * contiguously and in order in the input layout, reshaping the tfjs tensor group by group gives the
 * ONNX output transposed by the returned perm. Undefined when the reshape needs the ONNX element order.
 */
export function reshapeLayout(groups: readonly ReshapeGroup[], inPerm: readonly number[]): number[] | undefined {
  const groupOf = new Map<number, number>();
  groups.forEach((g, gi) => g.ins.forEach((d) => groupOf.set(d, gi)));
  const order: number[] = [];
  for (let k = 0; k < inPerm.length; k++) {
    const gi = groupOf.get(inPerm[k]!)!;
    const ins = groups[gi]!.ins;
    if (inPerm[k] !== ins[0]) continue; // a later member of a group already placed
    for (let m = 1; m < ins.length; m++) if (inPerm[k + m] !== ins[m]) return undefined;
    order.push(gi);
  }
  // New size-1 dims go right after the group that precedes them in ONNX order.
  groups.forEach((g, gi) => {
    if (g.ins.length) return;
    const at = gi === 0 ? 0 : order.indexOf(gi - 1) + 1;
    order.splice(at, 0, gi);
  });
  return order.flatMap((gi) => groups[gi]!.outs);
}
