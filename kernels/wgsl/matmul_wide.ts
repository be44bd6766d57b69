/**
 * The register-blocked matmul ("8x8"): the products of {@linkcode matmulKernel} with 8×8 outputs per
 * thread instead of 4×4, for large products. A workgroup of (TN/8)×(TM/8) threads computes a TM×TN
 * tile of C, TM and TN each 64 or 128 ({@linkcode chooseWideTile}; 128×128 = 256 threads). Per step
 * of K a thread reads two vec4s of A and two of B from workgroup memory for 64 multiply-adds (the
 * 4×4 kernel: one and one for 16).
 *
 * - Workgroup memory holds K slices laid out k-major (`As[k][m]`, `Bs[k][n]`, vec4 along m and n),
 *   whatever the operands' layout, so the inner loop only reads vec4s; transposed operands are
 *   transposed as they are staged.
 * - Double buffering: two slices of each operand; the next slice is read from global memory into
 *   registers before the current one is multiplied and written to the other buffer after, so its
 *   latency hides behind the arithmetic; one barrier per slice. TK = 16 for 64×64 tiles and 8
 *   otherwise, keeping both buffers within 16 KiB (WebGPU's default workgroup storage limit).
 * - A thread's rows are `ty·4 + 0…3` and `TM/2 + ty·4 + 0…3` (its columns likewise, with tx): the
 *   threads of a row read consecutive vec4s (no bank conflicts) and store consecutive vec4s of C.
 * - Each output is summed as in the 4×4 kernel, `acc += a·b` for k = 0, 1, … K−1 in order, so both
 *   kernels give the same bits wherever the shader compiler treats `acc += a * b` alike in both.
 *
 * Supports every variant of the 4×4 kernel, sharing its prologue, store and epilogue
 * (`matmulPrologue`, `storeAccumulator` of `matmul.ts`) and the loaders: the operand modes
 * `vec-k`/`vec-m`/`vec-n` and `fn-k`/`fn-m`/`fn-n`, batches (broadcast strides), split K, every
 * {@linkcode MatmulFusion}, and the convolutions' implicit GEMM (`MatmulGather`: the setup per
 * `wid.z`, the stores through the loaders' `cStore`) with B gathered by column (`col-n`): each
 * thread gathers one column (`colB` once, before the K loop), rows `bk + j·R` of each slice, R = the
 * threads per column (TM/64).
 *
 * @module
 */
import { storage, uniformBlock } from "./common.ts";
import {
  fusionFunctions,
  fusionStorage,
  gatherColumn,
  maskedVecRead,
  MATMUL_WORDS,
  matmulPrologue,
  type MatmulVariant,
  storeAccumulator,
} from "./matmul.ts";

/** A tile of C for the 8×8 kernel: `m` rows × `n` columns, each 64 or 128. */
export interface WideTile {
  /** Rows (of M) per workgroup. */
  m: 64 | 128;
  /** Columns (of N) per workgroup. */
  n: 64 | 128;
}

/** A variant of the 8×8 kernel: a {@linkcode MatmulVariant} with a {@linkcode WideTile}. */
export type WideVariant = Omit<MatmulVariant, "tile"> & { tile: WideTile };

/**
 * Workgroups below which {@linkcode chooseWideTile} halves a tile side: about two 256-thread groups
 * on each core of a 132-core GPU (an H100/H200), one wave.
 */
export const WIDE_TARGET_GROUPS = 256;

/**
 * The tile of an M×N product repeated `batches` times for the 8×8 kernel: each side 128, or 64 when
 * the dimension is at most 64; then, while fewer than {@linkcode WIDE_TARGET_GROUPS} workgroups
 * would run, the larger side (rows on a tie) is halved down to 64.
 */
export function chooseWideTile(M: number, N: number, batches: number): WideTile {
  let m = M > 64 ? 128 : 64, n = N > 64 ? 128 : 64;
  const groups = () => Math.ceil(M / m) * Math.ceil(N / n) * batches;
  while (groups() < WIDE_TARGET_GROUPS && Math.max(m, n) > 64) {
    if (m >= n) m = 64;
    else n = 64;
  }
  return { m: m as WideTile["m"], n: n as WideTile["n"] };
}

/**
 * Whether the 8×8 kernel supports a variant: every variant of {@linkcode matmulKernel}'s (a `col-n`
 * gather is B's only; each thread then gathers one column, a wide tile having a multiple of its
 * columns in threads).
 */
export function wideSupports(v: Omit<MatmulVariant, "tile">): boolean {
  return v.a !== "col-n";
}

/** The depth of the K slices of a tile: both double-buffered slices within 16 KiB. */
export function wideSliceDepth(t: WideTile): 8 | 16 {
  return t.m + t.n <= 128 ? 16 : 8;
}

const LANES = "xyzw";

/**
 * WGSL of a variant of the 8×8 kernel. Bindings and uniform words as {@linkcode matmulKernel}'s:
 * A (read), B (read), C (write), then the fusion's (`fusionBindings` of `matmul.ts`); dispatch
 * ⌈N/TN⌉ × ⌈rows/TM⌉ × batches workgroups.
 */
export function matmulWideKernel(v: WideVariant): string {
  if (!wideSupports(v)) {
    throw new RangeError(
      `matmulWideKernel: variant with a ${v.a} is not supported; expected A loaded by vec-k, vec-m, fn-k or fn-m`,
    );
  }
  const TM = v.tile.m, TN = v.tile.n, TK = wideSliceDepth(v.tile);
  if ((TM !== 64 && TM !== 128) || (TN !== 64 && TN !== 128)) {
    throw new RangeError(`matmulWideKernel: tile ${TM}x${TN}; expected each side 64 or 128`);
  }
  const TM4 = TM / 4, TN4 = TN / 4, NT = (TM / 8) * (TN / 8), TK4 = TK / 4;
  const aSlice = TK * TM4, bSlice = TK * TN4; // vec4s of one slice of As / Bs
  const aChunks = aSlice / NT, bChunks = bSlice / NT; // vec4 chunks each thread stages per slice
  const f = v.fusion ?? {};
  const aVec = v.a.startsWith("vec"), bVec = v.b.startsWith("vec");
  const vecRead = maskedVecRead;
  // A chunk is 4 consecutive elements along k ("k") or along m/n ("mn") of operand element s.
  const aAlongK = v.a.endsWith("-k"), bAlongK = v.b.endsWith("-k");

  // Reads chunk i of A (slice starting at kk) into register pa{i}.
  const readA = (i: number, kk: string) => {
    const head = aAlongK
      ? `let s = tid + ${i * NT}u; let gm = m0 + s / ${TK4}u; let gk = ${kk} + (s % ${TK4}u) * 4u;`
      : `let s = tid + ${i * NT}u; let gk = ${kk} + s / ${TM4}u; let gm = m0 + (s % ${TM4}u) * 4u;`;
    let body: string;
    if (v.a === "vec-k") {
      body = `if (gm < M && gk < kEnd) { x = ${vecRead("A", "(aOff + gm * K + gk) / 4u", f.maskA)}; }${
        f.onesRowA ? ` else if (gm == M && gk < kEnd) { x = vec4<f32>(1.0); }` : ""
      }`;
    } else if (v.a === "vec-m") {
      body = `if (gk < kEnd && gm < M) { x = ${vecRead("A", "(aOff + gk * M + gm) / 4u", f.maskA)}; }${
        f.onesRowA ? ` else if (gm == M && gk < kEnd) { x = vec4<f32>(1.0, 0.0, 0.0, 0.0); }` : ""
      }`;
    } else {
      body = [0, 1, 2, 3].map((c) => {
        const [m, k] = aAlongK ? ["gm", `gk + ${c}u`] : [`gm + ${c}u`, "gk"];
        return `if (${m} < M && ${k} < kEnd) { x.${LANES[c]} = loadA(aOff, ${m}, ${k}); }${
          f.onesRowA ? ` else if (${m} == M && ${k} < kEnd) { x.${LANES[c]} = 1.0; }` : ""
        }`;
      }).join("\n      ");
    }
    return `{ ${head}\n      var x = vec4<f32>(0.0);\n      ${body}\n      pa${i} = x; }`;
  };
  // Writes register pa{i} into the slice buffer starting at vec4 `base` of As.
  const stageA = (i: number, base: string) =>
    aAlongK
      ? `{ let s = tid + ${i * NT}u; let m = s / ${TK4}u; let kq = (s % ${TK4}u) * 4u;\n      ${
        [0, 1, 2, 3].map((c) => `As[${base} + (kq + ${c}u) * ${TM4}u + m / 4u][m % 4u] = pa${i}.${LANES[c]};`)
          .join("\n      ")
      } }`
      : `{ let s = tid + ${i * NT}u; As[${base} + s] = pa${i}; }`;
  // col-n: the thread's column bn, rows bk + j·R of the slice (R = NT/TN threads per column), four
  // of them per chunk: lanes c of chunk i hold row bk + (4i + c)·R.
  const R = NT / TN;
  const colRow = (i: number, c: number) => `bk + ${(4 * i + c) * R}u`;
  const readB = (i: number, kk: string) => {
    if (v.b === "col-n") {
      return `{ var x = vec4<f32>(0.0);\n      ${
        [0, 1, 2, 3].map((c) =>
          `{ let gk = ${kk} + ${colRow(i, c)}; if (bColOk && gk < kEnd) { x.${
            LANES[c]
          } = loadCol(bCol, gk); } }`
        ).join("\n      ")
      }\n      pb${i} = x; }`;
    }
    const head = bAlongK
      ? `let s = tid + ${i * NT}u; let gn = n0 + s / ${TK4}u; let gk = ${kk} + (s % ${TK4}u) * 4u;`
      : `let s = tid + ${i * NT}u; let gk = ${kk} + s / ${TN4}u; let gn = n0 + (s % ${TN4}u) * 4u;`;
    let body: string;
    if (v.b === "vec-n") {
      body = `if (gk < kEnd && gn < N) { x = ${vecRead("B", "(bOff + gk * N + gn) / 4u", f.maskB)}; }`;
    } else if (v.b === "vec-k") {
      body = `if (gn < N && gk < kEnd) { x = ${vecRead("B", "(bOff + gn * K + gk) / 4u", f.maskB)}; }`;
    } else {
      body = [0, 1, 2, 3].map((c) => {
        const [n, k] = bAlongK ? ["gn", `gk + ${c}u`] : [`gn + ${c}u`, "gk"];
        return `if (${n} < N && ${k} < kEnd) { x.${LANES[c]} = loadB(bOff, ${k}, ${n}); }`;
      }).join("\n      ");
    }
    return `{ ${head}\n      var x = vec4<f32>(0.0);\n      ${body}\n      pb${i} = x; }`;
  };
  const stageB = (i: number, base: string) =>
    v.b === "col-n"
      ? `{ ${
        [0, 1, 2, 3].map((c) =>
          `Bs[${base} + (${colRow(i, c)}) * ${TN4}u + bn / 4u][bn % 4u] = pb${i}.${LANES[c]};`
        )
          .join("\n      ")
      } }`
      : bAlongK
      ? `{ let s = tid + ${i * NT}u; let n = s / ${TK4}u; let kq = (s % ${TK4}u) * 4u;\n      ${
        [0, 1, 2, 3].map((c) => `Bs[${base} + (kq + ${c}u) * ${TN4}u + n / 4u][n % 4u] = pb${i}.${LANES[c]};`)
          .join("\n      ")
      } }`
      : `{ let s = tid + ${i * NT}u; Bs[${base} + s] = pb${i}; }`;
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);
  const read = (kk: string) =>
    [...range(aChunks).map((i) => readA(i, kk)), ...range(bChunks).map((i) => readB(i, kk))].join("\n    ");
  const stage = (aBase: string, bBase: string) =>
    [...range(aChunks).map((i) => stageA(i, aBase)), ...range(bChunks).map((i) => stageB(i, bBase))]
      .join("\n    ");

  // Accumulators acc{r}_{h}: row r (0…3: ty·4 + r; 4…7: TM/2 + ty·4 + r − 4), columns h (0: tx·4…; 1: TN/2 + tx·4…).
  const rows = range(8), halves = [0, 1];
  const accDecl = rows.map((r) => halves.map((h) => `var acc${r}_${h} = vec4<f32>(0.0);`).join(" "))
    .join("\n  ");
  const fmas = rows.map((r) =>
    halves.map((h) => `acc${r}_${h} += a${r >> 2}.${LANES[r & 3]} * b${h};`).join(" ")
  ).join("\n      ");

  const rowOf = (r: number) => (r < 4 ? `m0 + ty * 4u + ${r}u` : `m0 + ${TM / 2 + r - 4}u + ty * 4u`);
  const colOf = (h: number) => (h === 0 ? `n0 + tx * 4u` : `n0 + ${TN / 2}u + tx * 4u`);
  const storeOne = (r: number, h: number) =>
    `{ let gm = ${rowOf(r)}; let gn = ${colOf(h)};\n  ${storeAccumulator(v, `acc${r}_${h}`, "gm", "gn")} }`;
  const store = rows.flatMap((r) => halves.map((h) => storeOne(r, h))).join("\n  ");

  const extra = fusionStorage(f, aVec, bVec);
  const reluFns = fusionFunctions(f);
  const regs = [
    ...range(aChunks).map((i) => `var pa${i}: vec4<f32>;`),
    ...range(bChunks).map((i) => `var pb${i}: vec4<f32>;`),
  ]
    .join(" ");
  return `${uniformBlock(MATMUL_WORDS)}${storage(1, "A", aVec ? "vec4<f32>" : "f32")}${
    storage(2, "B", bVec ? "vec4<f32>" : "f32")
  }${storage(3, "C", v.cVec ? "vec4<f32>" : "f32", true)}${extra}
${v.loaders}${reluFns}
var<workgroup> As: array<vec4<f32>, ${2 * aSlice}>;
var<workgroup> Bs: array<vec4<f32>, ${2 * bSlice}>;

@compute @workgroup_size(${TN / 8}, ${TM / 8}, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  ${matmulPrologue(v)}
  let tx = lid.x; let ty = lid.y;
  let tid = ty * ${TN / 8}u + tx;
  let m0 = wid.y * ${TM}u; let n0 = wid.x * ${TN}u;${v.b === "col-n" ? `\n  ${gatherColumn(TN)}` : ""}
  ${accDecl}
  ${regs}
  // the first slice, staged in buffer 0
  ${read("kBeg")}
  ${stage("0u", "0u")}
  workgroupBarrier();
  var cur = 0u;
  for (var k0 = kBeg; k0 < kEnd; k0 += ${TK}u) {
    let kn = k0 + ${TK}u;
    // the next slice into registers, before the arithmetic on this one
    if (kn < kEnd) {
    ${read("kn")}
    }
    let aBase = cur * ${aSlice}u; let bBase = cur * ${bSlice}u;
    for (var k = 0u; k < ${TK}u; k++) {
      let a0 = As[aBase + k * ${TM4}u + ty]; let a1 = As[aBase + k * ${TM4}u + ${TM4 / 2}u + ty];
      let b0 = Bs[bBase + k * ${TN4}u + tx]; let b1 = Bs[bBase + k * ${TN4}u + ${TN4 / 2}u + tx];
      ${fmas}
    }
    cur = 1u - cur;
    if (kn < kEnd) {
    ${stage(`cur * ${aSlice}u`, `cur * ${bSlice}u`)}
    }
    workgroupBarrier();
  }
  let cOff = z * M * N;
  ${store}
}`;
}
