/**
 * CPU loops that move data around: reductions, transposes, slices and concatenation.
 *
 * @module
 */
import { stridesOf, type TypedArray } from "../tensor.ts";

/**
 * Reduces `x` of `shape` over the sorted `axes` with `op` into `out` (size = product of the kept
 * dims). Sum and max; the tensor is seen as [outer, reduced, inner] blocks when the axes are
 * contiguous, otherwise an odometer walk.
 */
export function reduceLoop(
  op: "sum" | "max",
  x: TypedArray,
  shape: readonly number[],
  axes: readonly number[],
  out: TypedArray,
): void {
  const r = shape.length;
  const isMax = op === "max";
  out.fill(isMax ? -Infinity : 0);
  if (x.length === 0) return;
  const contiguous = axes.every((a, i) => i === 0 || a === axes[i - 1] + 1);
  if (contiguous && axes.length > 0) {
    let outer = 1, red = 1, inner = 1;
    for (let i = 0; i < r; i++) {
      if (i < axes[0]) outer *= shape[i];
      else if (i <= axes[axes.length - 1]) red *= shape[i];
      else inner *= shape[i];
    }
    for (let o = 0; o < outer; o++) {
      const ob = o * inner, xb = o * red * inner;
      if (inner === 1) {
        let acc = isMax ? -Infinity : 0;
        if (isMax) {
          for (let k = 0; k < red; k++) {
            acc = x[xb + k] > acc || x[xb + k] !== x[xb + k] ? x[xb + k] : acc;
          }
        } else for (let k = 0; k < red; k++) acc += x[xb + k];
        out[ob] = acc;
      } else {
        for (let k = 0; k < red; k++) {
          const xk = xb + k * inner;
          if (isMax) {
            for (let j = 0; j < inner; j++) {
              out[ob + j] = x[xk + j] > out[ob + j] || x[xk + j] !== x[xk + j] ? x[xk + j] : out[ob + j];
            }
          } else for (let j = 0; j < inner; j++) out[ob + j] += x[xk + j];
        }
      }
    }
    return;
  }
  // Kept axes contiguous, reduced ones before and after them (sum over [0, 2, 3] of [N, C, H, W]: a
  // bias gradient): [outer, mid, inner] blocks, each run of `inner` summed in a float64 accumulator.
  if (keptRun(r, axes)) {
    let outer = 1, mid = 1, inner = 1, s = 0;
    while (s < r && axes.includes(s)) outer *= shape[s++];
    while (s < r && !axes.includes(s)) mid *= shape[s++];
    while (s < r) inner *= shape[s++];
    const acc = new Float64Array(mid).fill(isMax ? -Infinity : 0);
    let i = 0;
    for (let o = 0; o < outer; o++) {
      for (let m = 0; m < mid; m++) {
        const end = i + inner;
        let a = acc[m];
        if (isMax) { for (; i < end; i++) a = x[i] > a || x[i] !== x[i] ? x[i] : a; }
        else {
          for (; i < end; i++) a += x[i];
        }
        acc[m] = a;
      }
    }
    for (let m = 0; m < mid; m++) out[m] = acc[m];
    return;
  }
  // General: output strides with 0 on reduced axes.
  const reduced = new Set(axes);
  const keptShape = shape.map((d, i) => (reduced.has(i) ? 1 : d));
  const ks = stridesOf(keptShape).map((s, i) => (reduced.has(i) ? 0 : s));
  const idx = new Array<number>(r).fill(0);
  let o = 0;
  for (let i = 0; i < x.length; i++) {
    if (isMax) out[o] = x[i] > out[o] || x[i] !== x[i] ? x[i] : out[o]; // NaN propagates
    else out[o] += x[i];
    for (let ax = r - 1; ax >= 0; ax--) {
      idx[ax]++;
      o += ks[ax];
      if (idx[ax] < shape[ax]) break;
      o -= ks[ax] * shape[ax];
      idx[ax] = 0;
    }
  }
}

/** Whether the axes not in the sorted `axes` form one contiguous run (and some are reduced). */
function keptRun(r: number, axes: readonly number[]): boolean {
  let runs = 0, prevKept = false;
  for (let i = 0; i < r; i++) {
    const kept = !axes.includes(i);
    if (kept && !prevKept) runs++;
    prevKept = kept;
  }
  return runs === 1 && axes.length > 0;
}

/** out = x with axes permuted (`perm[i]` = input axis of output axis i). */
export function transposeLoop(
  x: TypedArray,
  shape: readonly number[],
  perm: readonly number[],
  out: TypedArray,
): void {
  const r = shape.length;
  const xs = stridesOf(shape);
  const outShape = perm.map((p) => shape[p]);
  const ps = perm.map((p) => xs[p]); // input stride of each output axis
  if (r === 2 && perm[0] === 1) {
    const R = shape[0], C = shape[1];
    const B = 32;
    for (let i0 = 0; i0 < R; i0 += B) {
      for (let j0 = 0; j0 < C; j0 += B) {
        const i1 = Math.min(R, i0 + B), j1 = Math.min(C, j0 + B);
        for (let i = i0; i < i1; i++) for (let j = j0; j < j1; j++) out[j * R + i] = x[i * C + j];
      }
    }
    return;
  }
  const idx = new Array<number>(r).fill(0);
  let src = 0;
  for (let o = 0; o < out.length; o++) {
    out[o] = x[src];
    for (let ax = r - 1; ax >= 0; ax--) {
      idx[ax]++;
      src += ps[ax];
      if (idx[ax] < outShape[ax]) break;
      src -= ps[ax] * outShape[ax];
      idx[ax] = 0;
    }
  }
}

/**
 * Visits the flat input offsets of a strided slice in output order, calling `f(outIndex, inIndex)`.
 */
export function forEachSliceIndex(
  shape: readonly number[],
  begin: readonly number[],
  step: readonly number[],
  outShape: readonly number[],
  f: (o: number, i: number) => void,
): void {
  const r = shape.length;
  const xs = stridesOf(shape);
  let n = 1;
  for (const d of outShape) n *= d;
  if (n === 0) return;
  let src = 0;
  for (let ax = 0; ax < r; ax++) src += begin[ax] * xs[ax];
  const ss = xs.map((s, ax) => s * step[ax]);
  const idx = new Array<number>(r).fill(0);
  for (let o = 0; o < n; o++) {
    f(o, src);
    for (let ax = r - 1; ax >= 0; ax--) {
      idx[ax]++;
      src += ss[ax];
      if (idx[ax] < outShape[ax]) break;
      src -= ss[ax] * outShape[ax];
      idx[ax] = 0;
    }
  }
}

/** Concatenates arrays of shapes that differ only along `axis`. */
export function concatLoop(
  xs: readonly TypedArray[],
  shapes: readonly (readonly number[])[],
  axis: number,
  out: TypedArray,
): void {
  let outer = 1;
  for (let i = 0; i < axis; i++) outer *= shapes[0][i];
  const chunks = shapes.map((s) => {
    let c = 1;
    for (let i = axis; i < s.length; i++) c *= s[i];
    return c;
  });
  const rowLen = chunks.reduce((a, b) => a + b, 0);
  for (let o = 0; o < outer; o++) {
    let off = o * rowLen;
    for (let k = 0; k < xs.length; k++) {
      const c = chunks[k];
      out.set(xs[k].subarray(o * c, o * c + c), off);
      off += c;
    }
  }
}
