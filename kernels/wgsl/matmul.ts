/**
 * Tiled matrix multiplication C = op(A)·op(B), batched, in the style of TensorFlow.js's WebGPU
 * matmul: a workgroup of (TN/4)×(TM/4) threads computes a TM×TN tile of C (4×4 outputs per
 * thread), staging 16-deep slices of A and B in workgroup memory; global loads are vec4 when the
 * contiguous dimension is a multiple of 4. Transposed operands are read in place (no explicit
 * transposes). Tiles are rectangular so that a small dimension (the 3 or 6 channels of a first
 * convolution) does not pay for a 64-wide tile: {@linkcode chooseTile}.
 *
 * Operands can also come from loader functions (`fn loadA(off, m, k) -> f32`,
 * `fn loadB(off, k, n) -> f32`): the convolutions use them for implicit-GEMM im2col, with a
 * per-column gather for B (`col-n`) and their own store addressing ({@linkcode MatmulGather}).
 *
 * A variant can fuse the work around a fully connected layer or a convolution
 * ({@linkcode MatmulFusion}): a bias (per column, or per row for a convolution's output channels)
 * and a ReLU in the epilogue (forward), an operand multiplied by the ReLU's step mask as it is
 * loaded, and a row of ones appended to A, whose row of C is the column sums of B (the bias
 * gradient).
 *
 * @module
 */
import { NAN_RELU_WGSL, storage, uniformBlock } from "./common.ts";

/**
 * How an operand is loaded: `vec-x` reads vec4s along logical dim x (A: k = row-major, m = stored
 * transposed; B: n = row-major, k = stored transposed); `fn-x` calls the loader function, with
 * consecutive threads walking dim x. `col-n` (B only) is a gather by column: consecutive threads walk
 * n, the loaders define `struct Col`, `fn colB(n: u32) -> Col` (what a column's loads share) and
 * `fn loadCol(col: Col, k: u32) -> f32`; with tiles of 16 rows or more each thread loads one column
 * only, so `colB` runs once per thread, before the K loop.
 */
export type OperandMode = "vec-k" | "vec-m" | "vec-n" | "fn-k" | "fn-m" | "fn-n" | "col-n";

/** A matmul kernel variant (its "shape class"). */
export interface MatmulVariant {
  /** Tile: rows (M) × columns (N) of C per workgroup, from {@linkcode chooseTile}. */
  tile: MatmulTile;
  /** How A (logical M×K) is loaded: "vec-k" | "vec-m" | "fn-k" | "fn-m". */
  a: OperandMode;
  /** How B (logical K×N) is loaded: "vec-n" | "vec-k" | "fn-n" | "fn-k" | "col-n". */
  b: OperandMode;
  /** vec4 stores of C (N % 4 == 0). */
  cVec: boolean;
  /** z indexes K-chunks of `U(5)` elements (partial products) instead of batches. */
  splitK: boolean;
  /** WGSL of the loader functions needed by `fn-*` modes (may read U(20…35)). */
  loaders: string;
  /** Work fused around the product (none when absent). */
  fusion?: MatmulFusion;
  /** Implicit-GEMM addressing (the convolutions; none when absent). */
  gather?: MatmulGather;
}

/**
 * The addressing of an implicit GEMM: z indexes products that `setup` tells apart (no batch
 * offsets), and C is stored through the loaders' `fn cStore(m: u32, n: u32, v: f32)` (and
 * `fn cStore4(m, n, v: vec4<f32>)` for `cVec`, columns n…n+3), which may skip a position.
 */
export interface MatmulGather {
  /** WGSL run once per workgroup, after `let z = wid.z;` (may set private variables and define lets). */
  setup: string;
  /** WGSL expression of this workgroup's K (default `U(2)`); it may name a let of `setup`. */
  k?: string;
}

/**
 * Work fused into a matmul (each off unless set). Its storage bindings follow C (binding 3) in the
 * order of {@linkcode fusionBindings}.
 */
export interface MatmulFusion {
  /** Epilogue: C[m, n] += Bias[n] (binding `Bias`, f32 `[N]`). */
  bias?: boolean;
  /**
   * Epilogue: C[m, n] += Bias[m] (binding `Bias`, f32 `[M]`): a bias per row, a convolution's per
   * output channel. Not together with `bias`.
   */
  biasRows?: boolean;
  /** Epilogue, after the bias: C = relu(C), as the unary relu (NaN propagating: {@linkcode fusionFunctions}). */
  relu?: boolean;
  /**
   * A is read as A · step(MaskA) elementwise (`MaskA` laid out as A is stored; step(y) = 1 where
   * y > 0, else 0): the gradient through a ReLU whose output is `MaskA`.
   */
  maskA?: boolean;
  /** B is read as B · step(MaskB) elementwise (as `maskA`). */
  maskB?: boolean;
  /**
   * A gets one more row, row M, of ones: that row of C (Σ_k op(B)[k, n], the column sums of B) goes
   * to `CRow` (f32 `[N]`), not to C. Dispatch ⌈(M + 1)/TM⌉ rows of tiles.
   */
  onesRowA?: boolean;
}

/** The extra storage bindings of a fusion, in binding order after C (binding 3). */
export function fusionBindings(f: MatmulFusion = {}): { name: string; kind: "read" | "write" }[] {
  const out: { name: string; kind: "read" | "write" }[] = [];
  if (f.bias || f.biasRows) out.push({ name: "Bias", kind: "read" });
  if (f.maskA) out.push({ name: "MaskA", kind: "read" });
  if (f.maskB) out.push({ name: "MaskB", kind: "read" });
  if (f.onesRowA) out.push({ name: "CRow", kind: "write" });
  return out;
}

/** A cache-key suffix naming the fused work of `f` ("" when none). */
export function fusionKey(f: MatmulFusion = {}): string {
  return (f.bias ? "+b" : "") + (f.biasRows ? "+bm" : "") + (f.relu ? "+relu" : "") +
    (f.maskA ? "+mA" : "") + (f.maskB ? "+mB" : "") + (f.onesRowA ? "+1row" : "");
}

/**
 * Uniform words: M, N, K, batches, batchRank, kChunk, pad, pad, batchShape[4], aBatchStrides[4],
 * bBatchStrides[4], then 16 words for loaders (convolution geometry).
 */
export const MATMUL_WORDS = 36;

/**
 * The plain loaders of the `fn-*` modes of row-major or transposed operands (only those needed);
 * with `mask`, the operand is multiplied by the step of its mask (`MaskA`/`MaskB`, same index).
 */
export function plainLoaders(
  transA: boolean,
  transB: boolean,
  needA: boolean,
  needB: boolean,
  mask: { a?: boolean; b?: boolean } = {},
): string {
  const read = (arr: string, masked: boolean | undefined, idx: string) =>
    masked
      ? `let i = off + ${idx}; return ${arr}[i] * step1(Mask${arr}[i]);`
      : `return ${arr}[off + ${idx}];`;
  return (needA
    ? `fn loadA(off: u32, m: u32, k: u32) -> f32 { ${
      read("A", mask.a, transA ? "k * U(0) + m" : "m * U(2) + k")
    } }\n`
    : "") +
    (needB
      ? `fn loadB(off: u32, k: u32, n: u32) -> f32 { ${
        read("B", mask.b, transB ? "n * U(2) + k" : "k * U(1) + n")
      } }\n`
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

/**
 * The epilogue of a fused product (`f`) applied to one value, or to the four consecutive columns
 * `col`…`col + 3` of a vec4 (`vec`), all in row `row` (needed by `biasRows` only): the bias, then
 * the ReLU (WGSL expression).
 */
export function fusedEpilogue(f: MatmulFusion, val: string, col: string, vec: boolean, row?: string): string {
  let e = val;
  if (f.bias && f.biasRows) throw new Error("fusedEpilogue: a fusion has either bias or biasRows, not both");
  if (f.biasRows) {
    if (row === undefined) throw new Error("fusedEpilogue: biasRows needs the row of the value");
    e = vec ? `(${e} + vec4<f32>(Bias[${row}]))` : `(${e} + Bias[${row}])`;
  }
  if (f.bias) {
    e = vec
      ? `(${e} + vec4<f32>(Bias[${col}], Bias[${col} + 1u], Bias[${col} + 2u], Bias[${col} + 3u]))`
      : `(${e} + Bias[${col}])`;
  }
  if (f.relu) e = vec ? `max4relu(${e})` : `relu1(${e})`;
  return e;
}

/**
 * The storage declarations of a fusion's bindings (from binding 4, in {@linkcode fusionBindings}
 * order; a mask is read as vec4s when its operand is).
 */
export function fusionStorage(f: MatmulFusion, aVec: boolean, bVec: boolean): string {
  return fusionBindings(f).map((b, i) => {
    const vec = (b.name === "MaskA" && aVec) || (b.name === "MaskB" && bVec);
    return storage(4 + i, b.name, vec ? "vec4<f32>" : "f32", b.kind === "write");
  }).join("");
}

/**
 * The WGSL functions a fusion calls (`NAN_RELU_WGSL`: the epilogue's ReLU, the unary relu's own, and
 * the masks' step, `step1`/`step4`, also for the loaders of the convolutions), or nothing.
 */
export function fusionFunctions(f: MatmulFusion): string {
  return f.relu || f.maskA || f.maskB ? NAN_RELU_WGSL : "";
}

/**
 * WGSL: a vec4 load `arr[idx]` of operand A or B, times the step of its mask (`MaskA`/`MaskB`, same
 * index) when `masked` (the `fn-*` loaders mask themselves).
 */
export function maskedVecRead(arr: "A" | "B", idx: string, masked: boolean | undefined): string {
  return masked ? `${arr}[${idx}] * step4(Mask${arr}[${idx}])` : `${arr}[${idx}]`;
}

/**
 * WGSL of the start of `main` shared by the matmul kernels: the lets `M`, `N`, `K`, `z` (= wid.z)
 * and the vars `aOff`, `bOff` (batch offsets), `kBeg`, `kEnd` (this workgroup's range of K), from
 * the batch strides, the split K (z = the K chunk) or the implicit-GEMM `setup`. Every value that
 * bounds the K loop (and so the barriers in it) derives from uniforms and `wid` only.
 */
export function matmulPrologue(v: Omit<MatmulVariant, "tile">): string {
  const g = v.gather;
  const head = g
    ? `let M = U(0); let N = U(1);\n  let z = wid.z;\n  ${g.setup}\n  let K = ${g.k ?? "U(2)"};`
    : `let M = U(0); let N = U(1); let K = U(2);
  let z = wid.z;`;
  const offsets = g ? "" : v.splitK ? `kBeg = z * U(5); kEnd = min(K, kBeg + U(5));` : `var rem = z;
  for (var d = i32(U(4)) - 1; d >= 0; d--) {
    let s = U(8u + u32(d));
    let c = rem % s;
    rem = rem / s;
    aOff += c * U(12u + u32(d));
    bOff += c * U(16u + u32(d));
  }`;
  return `${head}
  var aOff = 0u; var bOff = 0u; var kBeg = 0u; var kEnd = K;
  ${offsets}`;
}

/**
 * WGSL for a `col-n` B whose tile of `tn` columns each thread gathers one column of (the thread
 * count a multiple of `tn`): the thread's column `bn`, its first row of a slice `bk`, its `Col`
 * (`colB` run once, before the K loop) and whether the column is inside N. Needs `tid`, `n0`, `N`.
 */
export function gatherColumn(tn: number): string {
  return `let bn = tid % ${tn}u; let bk = tid / ${tn}u; let bCol = colB(n0 + bn); let bColOk = n0 + bn < N;`;
}

/**
 * WGSL storing one vec4 accumulator `acc`: row `row` (expression), columns `col` … `col + 3` of C,
 * through the fusion's epilogue; with a gather through the loaders' `cStore4`/`cStore`, else into C
 * at `cOff` (vec4 when `cVec`); with `onesRowA`, row M (the row of ones) goes to `CRow` unfused.
 */
export function storeAccumulator(
  v: Omit<MatmulVariant, "tile">,
  acc: string,
  row: string,
  col: string,
): string {
  const f = v.fusion ?? {};
  const fin = (val: string, c: string, vec: boolean) => fusedEpilogue(f, val, c, vec, row);
  const lane = (c: number) => `${acc}.${"xyzw"[c]}`;
  const at = (c: number) => (c === 0 ? col : `${col} + ${c}u`);
  let body: string;
  if (v.cVec) {
    const put = v.gather
      ? `cStore4(${row}, ${col}, ${fin(acc, col, true)});`
      : `C[(cOff + (${row}) * N + ${col}) / 4u] = ${fin(acc, col, true)};`;
    body = `if (${row} < M && ${col} < N) { ${put} }`;
  } else {
    body = [0, 1, 2, 3].map((c) => {
      const val = fin(lane(c), at(c), false);
      const put = v.gather
        ? `cStore(${row}, ${at(c)}, ${val});`
        : `C[cOff + (${row}) * N + ${at(c)}] = ${val};`;
      return `if (${row} < M && ${at(c)} < N) { ${put} }`;
    }).join("\n  ");
  }
  if (f.onesRowA) {
    body += `\n  if (${row} == M) { ${
      [0, 1, 2, 3].map((c) => `if (${at(c)} < N) { CRow[${at(c)}] = ${lane(c)}; }`).join(" ")
    } }`;
  }
  return body;
}

/** WGSL of a matmul variant. Bindings: A (read), B (read), C (write), then the fusion's ({@linkcode fusionBindings}). */
export function matmulKernel(v: MatmulVariant): string {
  const TM = v.tile.m, TN = v.tile.n, TM4 = TM / 4, TN4 = TN / 4, NT = TM4 * TN4, TK = 16;
  const f = v.fusion ?? {};
  const aVec = v.a.startsWith("vec"), bVec = v.b.startsWith("vec");
  const scatter = (arr: string, T4: number, kExpr: string, rowExpr: string, val: string) =>
    [0, 1, 2, 3].map((c) =>
      `${arr}[(${kExpr} + ${c}u) * ${T4}u + ${rowExpr} / 4u][${rowExpr} % 4u] = ${val}.${"xyzw"[c]};`
    )
      .join("\n      ");
  const vecRead = maskedVecRead;
  // With a row of ones appended to A: row M of A reads 1 (only vec-k needs all four lanes: K % 4 == 0).
  const ones = (one: string) => f.onesRowA ? ` else if (gm == M && gk < kEnd) { x = ${one}; }` : "";
  let loadA: string;
  if (v.a === "vec-k") {
    loadA = `for (var s = tid; s < ${(TM * TK) / 4}u; s += ${NT}u) {
      let m = s / 4u; let kq = (s % 4u) * 4u; let gm = m0 + m; let gk = k0 + kq;
      var x = vec4<f32>(0.0);
      if (gm < M && gk < kEnd) { x = ${vecRead("A", "(aOff + gm * K + gk) / 4u", f.maskA)}; }${
      ones("vec4<f32>(1.0)")
    }
      ${scatter("As", TM4, "kq", "m", "x")}
    }`;
  } else if (v.a === "vec-m") {
    loadA = `for (var s = tid; s < ${(TM * TK) / 4}u; s += ${NT}u) {
      let k = s / ${TM4}u; let mq = s % ${TM4}u; let gk = k0 + k; let gm = m0 + mq * 4u;
      var x = vec4<f32>(0.0);
      if (gk < kEnd && gm < M) { x = ${vecRead("A", "(aOff + gk * M + gm) / 4u", f.maskA)}; }${
      ones("vec4<f32>(1.0, 0.0, 0.0, 0.0)")
    }
      As[k * ${TM4}u + mq] = x;
    }`;
  } else {
    const [m, k] = v.a === "fn-k" ? [`e / ${TK}u`, `e % ${TK}u`] : [`e % ${TM}u`, `e / ${TM}u`];
    loadA = `for (var e = tid; e < ${TM * TK}u; e += ${NT}u) {
      let m = ${m}; let k = ${k}; let gm = m0 + m; let gk = k0 + k;
      var x = 0.0;
      if (gm < M && gk < kEnd) { x = loadA(aOff, gm, gk); }${ones("1.0")}
      As[k * ${TM4}u + m / 4u][m % 4u] = x;
    }`;
  }
  let loadB: string;
  if (v.b === "vec-n") {
    loadB = `for (var s = tid; s < ${(TN * TK) / 4}u; s += ${NT}u) {
      let k = s / ${TN4}u; let nq = s % ${TN4}u; let gk = k0 + k; let gn = n0 + nq * 4u;
      var x = vec4<f32>(0.0);
      if (gk < kEnd && gn < N) { x = ${vecRead("B", "(bOff + gk * N + gn) / 4u", f.maskB)}; }
      Bs[k * ${TN4}u + nq] = x;
    }`;
  } else if (v.b === "vec-k") {
    loadB = `for (var s = tid; s < ${(TN * TK) / 4}u; s += ${NT}u) {
      let n = s / 4u; let kq = (s % 4u) * 4u; let gn = n0 + n; let gk = k0 + kq;
      var x = vec4<f32>(0.0);
      if (gn < N && gk < kEnd) { x = ${vecRead("B", "(bOff + gn * K + gk) / 4u", f.maskB)}; }
      ${scatter("Bs", TN4, "kq", "n", "x")}
    }`;
  } else if (v.b === "col-n" && NT % TN === 0) {
    // each thread loads column tid % TN only: its gather state comes from before the K loop
    loadB = `for (var i = 0u; i < ${(TN * TK) / NT}u; i++) {
      let k = bk + i * ${NT / TN}u; let gk = k0 + k;
      var x = 0.0;
      if (bColOk && gk < kEnd) { x = loadCol(bCol, gk); }
      Bs[k * ${TN4}u + bn / 4u][bn % 4u] = x;
    }`;
  } else if (v.b === "col-n") {
    loadB = `for (var e = tid; e < ${TN * TK}u; e += ${NT}u) {
      let n = e % ${TN}u; let k = e / ${TN}u; let gn = n0 + n; let gk = k0 + k;
      var x = 0.0;
      if (gn < N && gk < kEnd) { x = loadCol(colB(gn), gk); }
      Bs[k * ${TN4}u + n / 4u][n % 4u] = x;
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
  const store = [0, 1, 2, 3].map((i) => storeAccumulator(v, `acc${i}`, `gm + ${i}u`, "gn")).join("\n  ");
  const extra = fusionStorage(f, aVec, bVec);
  const reluFns = fusionFunctions(f);
  return `${uniformBlock(MATMUL_WORDS)}${storage(1, "A", aVec ? "vec4<f32>" : "f32")}${
    storage(2, "B", bVec ? "vec4<f32>" : "f32")
  }${storage(3, "C", v.cVec ? "vec4<f32>" : "f32", true)}${extra}
${v.loaders}${reluFns}
var<workgroup> As: array<vec4<f32>, ${(TK * TM) / 4}>;
var<workgroup> Bs: array<vec4<f32>, ${(TK * TN) / 4}>;

@compute @workgroup_size(${TN4}, ${TM4}, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  ${matmulPrologue(v)}
  let tid = lid.y * ${TN4}u + lid.x;
  let m0 = wid.y * ${TM}u; let n0 = wid.x * ${TN}u;${
    v.b === "col-n" && NT % TN === 0 ? `\n  ${gatherColumn(TN)}` : ""
  }
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
