/**
 * CPU loops for elementwise unary and broadcasting binary kernels.
 *
 * @module
 */
import type { BinaryOp, UnaryOp } from "../backend.ts";
import type { TypedArray } from "../tensor.ts";

/** out[i] = op(x[i]). */
export function unaryLoop(op: UnaryOp, x: TypedArray, out: TypedArray): void {
  const n = x.length;
  switch (op) {
    case "neg":
      for (let i = 0; i < n; i++) out[i] = -x[i];
      return;
    case "exp":
      for (let i = 0; i < n; i++) out[i] = Math.exp(x[i]);
      return;
    case "log":
      for (let i = 0; i < n; i++) out[i] = Math.log(x[i]);
      return;
    case "sqrt":
      for (let i = 0; i < n; i++) out[i] = Math.sqrt(x[i]);
      return;
    case "relu":
      if (x instanceof Float32Array && out instanceof Float32Array) {
        reluF32(x, out);
        return;
      }
      for (let i = 0; i < n; i++) out[i] = x[i] > 0 || x[i] !== x[i] ? x[i] : 0; // NaN propagates, as in PyTorch
      return;
    case "tanh":
      for (let i = 0; i < n; i++) out[i] = Math.tanh(x[i]);
      return;
    case "sigmoid":
      for (let i = 0; i < n; i++) {
        const v = x[i];
        out[i] = v >= 0 ? 1 / (1 + Math.exp(-v)) : Math.exp(v) / (1 + Math.exp(v));
      }
      return;
    case "abs":
      for (let i = 0; i < n; i++) out[i] = Math.abs(x[i]);
      return;
    case "sign":
      for (let i = 0; i < n; i++) out[i] = x[i] > 0 ? 1 : x[i] < 0 ? -1 : 0;
      return;
    case "step":
      // `+(x > 0)` compiles without a branch (a `? 1 : 0` mispredicts on random signs).
      for (let i = 0; i < n; i++) out[i] = +(x[i] > 0);
      return;
    case "square":
      for (let i = 0; i < n; i++) out[i] = x[i] * x[i];
      return;
    case "reciprocal":
      for (let i = 0; i < n; i++) out[i] = 1 / x[i];
      return;
    case "zeroNonFinite":
      for (let i = 0; i < n; i++) out[i] = x[i] - x[i] === 0 ? x[i] : 0; // x − x is NaN unless x is finite
      return;
  }
}

/**
 * float32 ReLU on the bit patterns, without branches (a data-dependent branch mispredicts on half
 * the elements of random-signed data, costing ~10× the loop): keeps x when its sign bit is clear or
 * it is a NaN (NaN propagates, as in PyTorch), else writes +0. Same results as
 * `x > 0 || x !== x ? x : 0`.
 */
function reluF32(x: Float32Array, out: Float32Array): void {
  const xi = new Int32Array(x.buffer, x.byteOffset, x.length);
  const oi = new Int32Array(out.buffer, out.byteOffset, out.length);
  const n = xi.length;
  for (let i = 0; i < n; i++) {
    const b = xi[i];
    // ~(b >> 31): all ones for a clear sign bit; (0x7f800000 − |b|) >> 31: all ones for a NaN.
    oi[i] = b & (~(b >> 31) | ((0x7f800000 - (b & 0x7fffffff)) >> 31));
  }
}

/**
 * The gradient of ReLU in one pass: out[i] = g[i] · step(x[i]) (step = 1 where x > 0, else 0, NaN
 * included), the values of `unaryLoop("step")` followed by `binaryLoop("mul")` without the mask
 * array: g where x > 0, else g·0 (−0 for a negative g, NaN for a non-finite one), rounded to out's
 * dtype. All three arrays have the same length.
 */
export function reluGradLoop(x: TypedArray, g: TypedArray, out: TypedArray): void {
  const n = out.length;
  // `+(x > 0)` compiles without a branch (see unaryLoop's step)
  for (let i = 0; i < n; i++) out[i] = g[i] * +(x[i] > 0);
}

type Fn2 = (a: number, b: number) => number;
const BINARY: Record<BinaryOp, Fn2> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
  pow: (a, b) => Math.pow(a, b),
  maximum: (a, b) => (a >= b || a !== a ? a : b), // NaN propagates
  minimum: (a, b) => (a <= b || a !== a ? a : b),
  gt: (a, b) => (a > b ? 1 : 0),
  ge: (a, b) => (a >= b ? 1 : 0),
  eq: (a, b) => (a === b ? 1 : 0),
};

/** Same-shape loops for the hot ops (monomorphic, no closure call per element). */
function sameShapeLoop(op: BinaryOp, a: TypedArray, b: TypedArray, out: TypedArray): boolean {
  const n = out.length;
  switch (op) {
    case "add":
      for (let i = 0; i < n; i++) out[i] = a[i] + b[i];
      return true;
    case "sub":
      for (let i = 0; i < n; i++) out[i] = a[i] - b[i];
      return true;
    case "mul":
      for (let i = 0; i < n; i++) out[i] = a[i] * b[i];
      return true;
    case "div":
      for (let i = 0; i < n; i++) out[i] = a[i] / b[i];
      return true;
  }
  return false;
}

/**
 * Strides of `shape` seen from an output of rank `outRank`: 0 on broadcast (size-1 or missing)
 * axes.
 */
function broadcastStrides(shape: readonly number[], outShape: readonly number[]): number[] {
  const r = outShape.length, off = r - shape.length;
  const s = new Array<number>(r).fill(0);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i + off] = shape[i] === 1 && outShape[i + off] !== 1 ? 0 : acc;
    acc *= shape[i];
  }
  return s;
}

/**
 * out = op(a, b) with NumPy broadcasting to `outShape`. Fast paths: equal shapes, a scalar
 * operand, and an operand that repeats along the leading axes (bias rows).
 */
export function binaryLoop(
  op: BinaryOp,
  a: TypedArray,
  aShape: readonly number[],
  b: TypedArray,
  bShape: readonly number[],
  out: TypedArray,
  outShape: readonly number[],
): void {
  const n = out.length;
  if (n === 0) return;
  const f = BINARY[op];
  if (a.length === n && b.length === n) {
    if (!sameShapeLoop(op, a, b, out)) { for (let i = 0; i < n; i++) out[i] = f(a[i], b[i]); }
    return;
  }
  if (b.length === 1) {
    const bv = b[0];
    if (a.length === n) {
      for (let i = 0; i < n; i++) out[i] = f(a[i], bv);
      return;
    }
  }
  if (a.length === 1 && b.length === n) {
    const av = a[0];
    for (let i = 0; i < n; i++) out[i] = f(av, b[i]);
    return;
  }
  // Row broadcast: b's shape equals the trailing dims of out and a is full (or vice versa).
  if (a.length === n && isTrailing(bShape, outShape)) {
    const m = b.length;
    for (let i = 0; i < n; i += m) for (let j = 0; j < m; j++) out[i + j] = f(a[i + j], b[j]);
    return;
  }
  if (b.length === n && isTrailing(aShape, outShape)) {
    const m = a.length;
    for (let i = 0; i < n; i += m) for (let j = 0; j < m; j++) out[i + j] = f(a[j], b[i + j]);
    return;
  }
  // Block broadcast: one operand varies along one run of axes only (a per-channel bias [1, C, 1, 1]
  // against [N, C, H, W]) and the other is full.
  if (a.length === n) {
    const blk = blockOf(bShape, outShape);
    if (blk !== null) {
      blockLoop(op, f, a, b, blk, out, false);
      return;
    }
  }
  if (b.length === n) {
    const blk = blockOf(aShape, outShape);
    if (blk !== null) {
      blockLoop(op, f, b, a, blk, out, true);
      return;
    }
  }
  // General case: odometer over the output index.
  const r = outShape.length;
  const sa = broadcastStrides(aShape, outShape), sb = broadcastStrides(bShape, outShape);
  const idx = new Array<number>(r).fill(0);
  let ia = 0, ib = 0;
  const last = r - 1, dLast = outShape[last], saL = sa[last], sbL = sb[last];
  for (let o = 0; o < n; o += dLast) {
    for (let j = 0; j < dLast; j++) out[o + j] = f(a[ia + j * saL], b[ib + j * sbL]);
    for (let ax = last - 1; ax >= 0; ax--) {
      idx[ax]++;
      ia += sa[ax];
      ib += sb[ax];
      if (idx[ax] < outShape[ax]) break;
      ia -= sa[ax] * outShape[ax];
      ib -= sb[ax] * outShape[ax];
      idx[ax] = 0;
    }
  }
}

function isTrailing(shape: readonly number[], outShape: readonly number[]): boolean {
  // shape (with leading 1s stripped) equals the trailing dims of outShape.
  let s = 0;
  while (s < shape.length && shape[s] === 1) s++;
  const k = shape.length - s;
  if (k === 0) return false;
  for (let i = 0; i < k; i++) if (shape[s + i] !== outShape[outShape.length - k + i]) return false;
  return true;
}

/**
 * When `shape` (right-aligned against `outShape`) is 1 everywhere except one run of axes where it
 * equals `outShape`, the sizes `[outer, mid, inner]` of the output seen as before/within/after that
 * run; else null.
 */
function blockOf(shape: readonly number[], outShape: readonly number[]): [number, number, number] | null {
  const r = outShape.length, off = r - shape.length;
  let s = -1, e = -1;
  for (let i = 0; i < shape.length; i++) {
    if (shape[i] !== 1) {
      if (s < 0) s = i + off;
      e = i + off;
    }
  }
  if (s < 0) return null;
  let outer = 1, mid = 1, inner = 1;
  for (let i = 0; i < r; i++) {
    if (i < s) outer *= outShape[i];
    else if (i <= e) {
      if (shape[i - off] !== outShape[i]) return null;
      mid *= outShape[i];
    } else inner *= outShape[i];
  }
  return [outer, mid, inner];
}

/**
 * out = op(full, vec) (or op(vec, full) when `vecFirst`), `vec` repeated over the outer axes and
 * constant along the inner ones.
 */
function blockLoop(
  op: BinaryOp,
  f: Fn2,
  full: TypedArray,
  vec: TypedArray,
  [outer, mid, inner]: [number, number, number],
  out: TypedArray,
  vecFirst: boolean,
): void {
  let i = 0;
  for (let o = 0; o < outer; o++) {
    for (let m = 0; m < mid; m++) {
      const v = vec[m], end = i + inner;
      if (op === "add") {
        for (; i < end; i++) out[i] = full[i] + v;
      } else if (op === "mul") {
        for (; i < end; i++) out[i] = full[i] * v;
      } else if (op === "sub" && !vecFirst) {
        for (; i < end; i++) out[i] = full[i] - v;
      } else if (vecFirst) {
        for (; i < end; i++) out[i] = f(v, full[i]);
      } else {
        for (; i < end; i++) out[i] = f(full[i], v);
      }
    }
  }
}

/**
 * The epilogue of a fully connected layer, in place on the rows of `z` (`[rows, n]`, a fresh matmul
 * product): z ← z + bias (broadcast over the rows, when given), rounded to z's dtype, then ReLU
 * when `relu`. The same values as `binaryLoop("add")` followed by `unaryLoop("relu")`.
 */
export function biasReluRows(z: TypedArray, bias: TypedArray | null, n: number, relu: boolean): void {
  const len = z.length;
  if (bias) {
    for (let i = 0; i < len; i += n) for (let j = 0; j < n; j++) z[i + j] += bias[j];
  }
  if (relu) {
    for (let i = 0; i < len; i++) {
      const v = z[i];
      z[i] = v > 0 || v !== v ? v : 0; // NaN propagates, −0 becomes +0: as unaryLoop's relu
    }
  }
}
