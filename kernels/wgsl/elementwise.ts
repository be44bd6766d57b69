/**
 * Elementwise WGSL kernels: unary ops, binary ops with NumPy broadcasting (a same-shape fast path,
 * scalar fast paths, and a general strided path over up to 8 coalesced dims), fill, and a strided
 * copy that implements transpose, slice, its adjoint and concat.
 *
 * @module
 */
import type { BinaryOp, UnaryOp } from "../../src/types.ts";
import { main1d, NAN_RELU_WGSL, RELU_GRAD_WGSL, storage, uniformBlock } from "./common.ts";

/** Largest rank of the strided kernels (after coalescing dims). */
export const MAX_RANK = 8;

/** WGSL expression of each unary op, in terms of `x`. */
export const UNARY_WGSL: Readonly<Record<UnaryOp, string>> = {
  neg: "-x",
  exp: "exp(x)",
  log: "log(x)",
  sqrt: "sqrt(x)",
  // NaN propagates, as on the CPU (`NAN_RELU_WGSL`).
  relu: "relu1(x)",
  // exp-based: some drivers' tanh overflows to NaN for large |x|.
  tanh: "tanh_(x)",
  sigmoid: "sigmoid_(x)",
  abs: "abs(x)",
  sign: "sign(x)",
  step: "select(0.0, 1.0, x > 0.0)",
  square: "x * x",
  reciprocal: "1.0 / x",
  // On the exponent bits: a compiler may assume no NaN or infinity reaches a comparison.
  zeroNonFinite: "select(0.0, x, (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u)",
};

/** WGSL expression of each binary op, in terms of `a` and `b`. */
export const BINARY_WGSL: Readonly<Record<BinaryOp, string>> = {
  add: "a + b",
  sub: "a - b",
  mul: "a * b",
  div: "a / b",
  pow: "pow_(a, b)",
  // The CPU's rule (a ≥ b or a is NaN: a; else b), NaN in either side propagating; not WGSL's max/min,
  // whose NaN result is unspecified.
  maximum: "select(select(select(b, a, a >= b), b, isnan_(b)), a, isnan_(a))",
  minimum: "select(select(select(b, a, a <= b), b, isnan_(b)), a, isnan_(a))",
  gt: "select(0.0, 1.0, a > b)",
  ge: "select(0.0, 1.0, a >= b)",
  eq: "select(0.0, 1.0, a == b)",
};

const HELPERS = `
${NAN_RELU_WGSL}fn tanh_(x: f32) -> f32 {
  let t = exp(-2.0 * abs(x));
  return sign(x) * (1.0 - t) / (1.0 + t);
}
fn sigmoid_(x: f32) -> f32 {
  if (x >= 0.0) { return 1.0 / (1.0 + exp(-x)); }
  let e = exp(x);
  return e / (1.0 + e);
}
// Math.pow semantics for negative bases with integer exponents; NaN for other negative bases.
fn pow_(a: f32, b: f32) -> f32 {
  if (b == 0.0) { return 1.0; }
  if (a == 0.0) { return select(bitcast<f32>(0x7f800000u), 0.0, b > 0.0); }
  let r = exp2(b * log2(abs(a)));
  if (a > 0.0) { return r; }
  if (round(b) != b) { return bitcast<f32>(0x7fc00000u); }
  let odd = (abs(b) % 2.0) == 1.0;
  return select(r, -r, odd);
}
`;

/** Uniform words of the unary kernel: n. */
export const UNARY_WORDS = 4;

/** y[i] = op(x[i]). Bindings: x (read), y (write). Uniforms: [n]. */
export function unaryKernel(op: UnaryOp): string {
  return `${uniformBlock(UNARY_WORDS)}${storage(1, "X", "f32")}${storage(2, "Y", "f32", true)}${HELPERS}
${main1d()}
  if (i >= U(0)) { return; }
  let x = X[i];
  Y[i] = ${UNARY_WGSL[op]};
}`;
}

/**
 * Broadcast modes of the binary kernel; `constA`/`constB`: that operand is one value, read from
 * uniform word 2 (f32 bits) instead of its (bound, unread) buffer.
 */
export type BinaryMode = "same" | "scalarA" | "scalarB" | "constA" | "constB" | "general";

/** Uniform words of the binary kernel: n, rank, pad, pad, shape[8], aStrides[8], bStrides[8]. */
export const BINARY_WORDS = 4 + 3 * MAX_RANK;

/** out[i] = op(a[·], b[·]) with broadcasting. Bindings: a, b (read), out (write). */
export function binaryKernel(op: BinaryOp, mode: BinaryMode): string {
  let index: string;
  if (mode === "same") index = "let ia = i; let ib = i;";
  else if (mode === "scalarA") index = "let ia = 0u; let ib = i;";
  else if (mode === "scalarB") index = "let ia = i; let ib = 0u;";
  else if (mode === "constA" || mode === "constB") index = "let ia = i; let ib = i;";
  else {
    index = `var rem = i; var ia = 0u; var ib = 0u;
  for (var d = i32(U(1)) - 1; d >= 0; d--) {
    let s = U(4u + u32(d));
    let c = rem % s;
    rem = rem / s;
    ia += c * U(${4 + MAX_RANK}u + u32(d));
    ib += c * U(${4 + 2 * MAX_RANK}u + u32(d));
  }`;
  }
  return `${uniformBlock(BINARY_WORDS)}${storage(1, "A", "f32")}${storage(2, "B", "f32")}${
    storage(3, "Y", "f32", true)
  }${HELPERS}
${main1d()}
  if (i >= U(0)) { return; }
  ${index}
  let a = ${mode === "constA" ? "UF(2u)" : "A[ia]"};
  let b = ${mode === "constB" ? "UF(2u)" : "B[ib]"};
  Y[i] = ${BINARY_WGSL[op]};
}`;
}

/**
 * A kernel over n elements (uniform 0) reading the f32 arrays `x` and `z`, whose `body` sets Y[i]
 * (with the WGSL functions `helpers`).
 */
function pairKernel(x: string, z: string, body: string, helpers = ""): string {
  return `${uniformBlock(BINARY_WORDS)}${storage(1, x, "f32")}${storage(2, z, "f32")}${
    storage(3, "Y", "f32", true)
  }${helpers}
${main1d()}
  if (i >= U(0)) { return; }
  ${body}
}`;
}

/**
 * ReLU's gradient: `Y[i] = G[i] · step(X[i])` ({@linkcode RELU_GRAD_WGSL}), the product of the
 * binary mul with the unary step, so the same values. Bindings: x, g (read), y (write). Uniforms: [n].
 */
export function reluGradKernel(): string {
  return pairKernel("X", "G", "Y[i] = reluGrad1(X[i], G[i]);", RELU_GRAD_WGSL);
}

/**
 * `Y[i] = relu(X[i] + Z[i])`: the binary add, then the unary relu (`relu1`, NaN propagating), in one
 * pass (a residual block's output). Bindings: x, z (read), y (write). Uniforms: [n].
 */
export function addReluKernel(): string {
  return pairKernel("X", "Z", "Y[i] = relu1(X[i] + Z[i]);", NAN_RELU_WGSL);
}

/**
 * `Y[i] = a·X[i] + b·Z[i]` (uniforms: n, a and b as f32 bits): the binary mul twice and an add in
 * one pass. Bindings: x, z (read), y (write).
 */
export function axpbyKernel(): string {
  return pairKernel("X", "Z", "Y[i] = UF(1u) * X[i] + UF(2u) * Z[i];");
}

/** Uniform words of the fill kernel: n, value (f32 bits). */
export const FILL_WORDS = 4;

/** y[i] = value. Bindings: y (write). */
export function fillKernel(): string {
  return `${uniformBlock(FILL_WORDS)}${storage(1, "Y", "f32", true)}
${main1d()}
  if (i >= U(0)) { return; }
  Y[i] = UF(1u);
}`;
}

/**
 * Uniform words of the strided copy: n, rank, srcOffset, dstOffset, shape[8], srcStrides[8],
 * dstStrides[8].
 */
export const COPY_WORDS = 4 + 3 * MAX_RANK;

/**
 * Strided copy: for each index vector c of `shape`, dst[dstOffset + c·dstStrides] =
 * src[srcOffset + c·srcStrides]. Bindings: src (read), dst (write).
 */
export function copyKernel(): string {
  return `${uniformBlock(COPY_WORDS)}${storage(1, "S", "f32")}${storage(2, "D", "f32", true)}
${main1d()}
  if (i >= U(0)) { return; }
  var rem = i; var is = U(2); var id = U(3);
  for (var d = i32(U(1)) - 1; d >= 0; d--) {
    let s = U(4u + u32(d));
    let c = rem % s;
    rem = rem / s;
    is += c * U(${4 + MAX_RANK}u + u32(d));
    id += c * U(${4 + 2 * MAX_RANK}u + u32(d));
  }
  D[id] = S[is];
}`;
}
