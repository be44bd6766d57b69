/**
 * Tiled matrix multiplication C = op(A)·op(B), batched, in the style of TensorFlow.js's WebGPU
 * matmul: a workgroup of (TN/4)×(TM/4) threads computes a TM×TN tile of C (4×4 outputs per
 * thread), staging 16-deep slices of A and B in workgroup memory; global loads are vec4 when the
 * contiguous dimension is a multiple of 4. Transposed operands are read in place (no explicit
 * transposes). Tiles are rectangular so that a small dimension (the 3 or 6 channels of a first
 * convolution) does not pay for a 64-wide tile: {@linkcode chooseTile}.
 *
 * Operands can also come from loader functions (`fn loadA(off, m, k) -> f32`,
 * `fn loadB(off, k, n) -> f32`): the convolutions use them for implicit-GEMM im2col.
 *
 * @module
 */
import { storage, uniformBlock } from "./common.ts";

/**
 * How an operand is loaded: `vec-x` reads vec4s along logical dim x (A: k = row-major, m = stored
 * transposed; B: n = row-major, k = stored transposed); `fn-x` calls the loader function, with
 * consecutive threads walking dim x.
 */
export type OperandMode = "vec-k" | "vec-m" | "vec-n" | "fn-k" | "fn-m" | "fn-n";

/** A matmul kernel variant (its "shape class"). */
export interface MatmulVariant {
  /** Tile: rows (M) × columns (N) of C per workgroup, from {@linkcode chooseTile}. */
  tile: MatmulTile;
  /** How A (logical M×K) is loaded: "vec-k" | "vec-m" | "fn-k" | "fn-m". */
  a: OperandMode;
  /** How B (logical K×N) is loaded: "vec-n" | "vec-k" | "fn-n" | "fn-k". */
  b: OperandMode;
  /** vec4 stores of C (N % 4 == 0). */
  cVec: boolean;
  /** z indexes K-chunks of `U(5)` elements (partial products) instead of batches. */
  splitK: boolean;
  /** WGSL of the loader functions needed by `fn-*` modes (may read U(20…35)). */
  loaders: string;
}

/**
 * Uniform words: M, N, K, batches, batchRank, kChunk, pad, pad, batchShape[4], aBatchStrides[4],
 * bBatchStrides[4], then 16 words for loaders (convolution geometry).
 */
export const MATMUL_WORDS = 36;

/** The plain loaders of the `fn-*` modes of row-major or transposed operands (only those needed). */
export function plainLoaders(transA: boolean, transB: boolean, needA: boolean, needB: boolean): string {
  return (needA
    ? `fn loadA(off: u32, m: u32, k: u32) -> f32 { return A[off + ${
      transA ? "k * U(0) + m" : "m * U(2) + k"
    }]; }\n`
    : "") +
    (needB
      ? `fn loadB(off: u32, k: u32, n: u32) -> f32 { return B[off + ${
        transB ? "n * U(2) + k" : "k * U(1) + n"
      }]; }\n`
      : "");
}

/** A tile of C: `m` rows × `n` columns, each 8, 16, 32 or 64 (and `n` up to 128). */
export interface MatmulTile {
  /** Rows (of M) per workgroup. */
  m: 8 | 16 | 32 | 64;
  /** Columns (of N) per workgroup. */
  n: 8 | 16 | 32 | 64 | 128;
}

const pow2Tile = (x: number, lo: number, hi: number) =>
  Math.min(hi, Math.max(lo, 2 ** Math.ceil(Math.log2(x))));

/**
 * The tile of an M×N product repeated `batches` times: each side the smallest power of two ≥ the
 * dimension, from 8 to 64 (a 3- or 6-row product takes 8-row tiles instead of wasting 90% of a
 * 64-row one); then, while fewer than 128 workgroups would run, the larger side is halved down to
 * 32 (small products need more workgroups); 8-row tiles take 128 columns (64 threads per group)
 * when that still leaves 128 workgroups.
 */
export function chooseTile(M: number, N: number, batches: number): MatmulTile {
  let m = pow2Tile(M, 8, 64), n = pow2Tile(N, 8, 64);
  const groups = () => Math.ceil(M / m) * Math.ceil(N / n) * batches;
  while (groups() < 128 && Math.max(m, n) > 32) {
    if (m >= n) m /= 2;
    else n /= 2;
  }
  if (m === 8 && Math.ceil(N / 128) * batches >= 128) n = 128;
  return { m: m as MatmulTile["m"], n: n as MatmulTile["n"] };
}

/** WGSL of a matmul variant. Bindings: A (read), B (read), C (write). */
export function matmulKernel(v: MatmulVariant): string {
  const TM = v.tile.m, TN = v.tile.n, TM4 = TM / 4, TN4 = TN / 4, NT = TM4 * TN4, TK = 16;
  const aVec = v.a.startsWith("vec"), bVec = v.b.startsWith("vec");
  const scatter = (arr: string, T4: number, kExpr: string, rowExpr: string, val: string) =>
    [0, 1, 2, 3].map((c) =>
      `${arr}[(${kExpr} + ${c}u) * ${T4}u + ${rowExpr} / 4u][${rowExpr} % 4u] = ${val}.${"xyzw"[c]};`
    )
      .join("\n      ");
  let loadA: string;
  if (v.a === "vec-k") {
    loadA = `for (var s = tid; s < ${(TM * TK) / 4}u; s += ${NT}u) {
      let m = s / 4u; let kq = (s % 4u) * 4u; let gm = m0 + m; let gk = k0 + kq;
      var x = vec4<f32>(0.0);
      if (gm < M && gk < kEnd) { x = A[(aOff + gm * K + gk) / 4u]; }
      ${scatter("As", TM4, "kq", "m", "x")}
    }`;
  } else if (v.a === "vec-m") {
    loadA = `for (var s = tid; s < ${(TM * TK) / 4}u; s += ${NT}u) {
      let k = s / ${TM4}u; let mq = s % ${TM4}u; let gk = k0 + k; let gm = m0 + mq * 4u;
      var x = vec4<f32>(0.0);
      if (gk < kEnd && gm < M) { x = A[(aOff + gk * M + gm) / 4u]; }
      As[k * ${TM4}u + mq] = x;
    }`;
  } else {
    const [m, k] = v.a === "fn-k" ? [`e / ${TK}u`, `e % ${TK}u`] : [`e % ${TM}u`, `e / ${TM}u`];
    loadA = `for (var e = tid; e < ${TM * TK}u; e += ${NT}u) {
      let m = ${m}; let k = ${k}; let gm = m0 + m; let gk = k0 + k;
      var x = 0.0;
      if (gm < M && gk < kEnd) { x = loadA(aOff, gm, gk); }
      As[k * ${TM4}u + m / 4u][m % 4u] = x;
    }`;
  }
  let loadB: string;
  if (v.b === "vec-n") {
    loadB = `for (var s = tid; s < ${(TN * TK) / 4}u; s += ${NT}u) {
      let k = s / ${TN4}u; let nq = s % ${TN4}u; let gk = k0 + k; let gn = n0 + nq * 4u;
      var x = vec4<f32>(0.0);
      if (gk < kEnd && gn < N) { x = B[(bOff + gk * N + gn) / 4u]; }
      Bs[k * ${TN4}u + nq] = x;
    }`;
  } else if (v.b === "vec-k") {
    loadB = `for (var s = tid; s < ${(TN * TK) / 4}u; s += ${NT}u) {
      let n = s / 4u; let kq = (s % 4u) * 4u; let gn = n0 + n; let gk = k0 + kq;
      var x = vec4<f32>(0.0);
      if (gn < N && gk < kEnd) { x = B[(bOff + gn * K + gk) / 4u]; }
      ${scatter("Bs", TN4, "kq", "n", "x")}
    }`;
  } else {
    const [n, k] = v.b === "fn-n" ? [`e % ${TN}u`, `e / ${TN}u`] : [`e / ${TK}u`, `e % ${TK}u`];
    loadB = `for (var e = tid; e < ${TN * TK}u; e += ${NT}u) {
      let n = ${n}; let k = ${k}; let gn = n0 + n; let gk = k0 + k;
      var x = 0.0;
      if (gn < N && gk < kEnd) { x = loadB(bOff, gk, gn); }
      Bs[k * ${TN4}u + n / 4u][n % 4u] = x;
    }`;
  }
  const store = v.cVec
    ? [0, 1, 2, 3].map((i) =>
      `if (gm + ${i}u < M && gn < N) { C[(cOff + (gm + ${i}u) * N + gn) / 4u] = acc${i}; }`
    )
      .join("\n  ")
    : [0, 1, 2, 3].map((i) =>
      [0, 1, 2, 3].map((c) =>
        `if (gm + ${i}u < M && gn + ${c}u < N) { C[cOff + (gm + ${i}u) * N + gn + ${c}u] = acc${i}.${
          "xyzw"[c]
        }; }`
      ).join("\n  ")
    ).join("\n  ");
  const offsets = v.splitK ? `kBeg = z * U(5); kEnd = min(K, kBeg + U(5));` : `var rem = z;
  for (var d = i32(U(4)) - 1; d >= 0; d--) {
    let s = U(8u + u32(d));
    let c = rem % s;
    rem = rem / s;
    aOff += c * U(12u + u32(d));
    bOff += c * U(16u + u32(d));
  }`;
  return `${uniformBlock(MATMUL_WORDS)}${storage(1, "A", aVec ? "vec4<f32>" : "f32")}${
    storage(2, "B", bVec ? "vec4<f32>" : "f32")
  }${storage(3, "C", v.cVec ? "vec4<f32>" : "f32", true)}
${v.loaders}
var<workgroup> As: array<vec4<f32>, ${(TK * TM) / 4}>;
var<workgroup> Bs: array<vec4<f32>, ${(TK * TN) / 4}>;

@compute @workgroup_size(${TN4}, ${TM4}, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let M = U(0); let N = U(1); let K = U(2);
  let z = wid.z;
  var aOff = 0u; var bOff = 0u; var kBeg = 0u; var kEnd = K;
  ${offsets}
  let tid = lid.y * ${TN4}u + lid.x;
  let m0 = wid.y * ${TM}u; let n0 = wid.x * ${TN}u;
  var acc0 = vec4<f32>(0.0); var acc1 = vec4<f32>(0.0); var acc2 = vec4<f32>(0.0); var acc3 = vec4<f32>(0.0);
  for (var k0 = kBeg; k0 < kEnd; k0 += ${TK}u) {
    ${loadA}
    ${loadB}
    workgroupBarrier();
    for (var k = 0u; k < ${TK}u; k++) {
      let a = As[k * ${TM4}u + lid.y];
      let b = Bs[k * ${TN4}u + lid.x];
      acc0 += a.x * b; acc1 += a.y * b; acc2 += a.z * b; acc3 += a.w * b;
    }
    workgroupBarrier();
  }
  let cOff = z * M * N;
  let gm = m0 + lid.y * 4u; let gn = n0 + lid.x * 4u;
  ${store}
}`;
}
