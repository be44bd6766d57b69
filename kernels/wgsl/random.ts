/**
 * WGSL twin of `src/random/philox.ts` and `src/random/fixed_point.ts`: Philox4x32-10 in 32-bit integer
 * arithmetic and the fixed-point noise transforms, operation for operation, so that a GPU draw is
 * bit-identical to the CPU's for the same (key, counter, lane). See `src/random/fixed_point.ts` for the
 * arithmetic and why it is exact on every device (integers only, then one correctly rounded
 * conversion and one multiplication, both immune to fused multiply–add contraction).
 *
 * The law is compiled into each kernel (no branch on a uniform), and the logarithm's 64-word table
 * travels in the kernel's uniforms and is copied once per workgroup into workgroup memory
 * ({@linkcode loadLogTable}): a table in `var<private>` or `const` storage is materialised per
 * invocation by some compilers (on lavapipe it doubled the cost of a draw).
 *
 * @module
 */
import { HALF_PI_Q25, LN2_Q25, LOG_OFFSET, LOG_RECIP } from "../noise_tables.ts";
import { NOISE_LAWS, type NoiseLaw } from "../../src/types.ts";
import { main1d, storage, uniformBlock } from "./common.ts";

/** The logarithm table (`LOG_RECIP` then `LOG_OFFSET`), 64 words, passed in the uniforms. */
export const LOG_TABLE: readonly number[] = [...LOG_RECIP, ...LOG_OFFSET];

/**
 * The law's index in the WGSL (0 gaussian, 1 laplace, 2 uniform: the order of `NOISE_LAWS`);
 * an unknown law is a RangeError naming `who`.
 */
export function lawIndex(law: NoiseLaw, who = "noise"): number {
  const i = NOISE_LAWS.indexOf(law);
  if (i < 0) {
    throw new RangeError(
      `${who}: noise law must be one of ${NOISE_LAWS.join(", ")}, got ${JSON.stringify(law)}`,
    );
  }
  return i;
}

/** Whether draws of the law read the logarithm table (gaussian and laplace do). */
export function lawNeedsTable(law: NoiseLaw): boolean {
  return law !== "uniform";
}

/**
 * WGSL statements that copy the logarithm table from uniform words `base`…`base + 63` into
 * workgroup memory; they must come first in the entry point (before any early return: they end
 * with a barrier). Empty for the uniform law.
 */
export function loadLogTable(law: NoiseLaw, base: number): string {
  if (!lawNeedsTable(law)) return "";
  return `if (lid.x < 64u) { LOGT[lid.x] = U(${base}u + lid.x); }
  workgroupBarrier();`;
}

/** The kernel's uniform words `base`… with the table appended when the law needs it. */
export function withLogTable(words: readonly number[], law: NoiseLaw, base: number): number[] {
  if (words.length > base) {
    throw new RangeError(`withLogTable: ${words.length} words exceed the table base ${base}`);
  }
  const out = [...words];
  while (out.length < base) out.push(0);
  return lawNeedsTable(law) ? [...out, ...LOG_TABLE] : out;
}

/**
 * WGSL functions: `philox(k0, k1, c) -> vec4<u32>` and `noise_block(b, law, scale) -> vec4<f32>`
 * (call it with a literal law so that the compiler drops the other laws), and the workgroup table
 * `LOGT` that {@linkcode loadLogTable} fills.
 */
export const RANDOM_WGSL = `
fn mulhi(a: u32, b: u32) -> u32 {
  let al = a & 0xffffu; let ah = a >> 16u; let bl = b & 0xffffu; let bh = b >> 16u;
  let ll = al * bl; let lh = al * bh; let hl = ah * bl; let hh = ah * bh;
  let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
  return hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
}

fn philox(key0: u32, key1: u32, ctr: vec4<u32>) -> vec4<u32> {
  var c0 = ctr.x; var c1 = ctr.y; var c2 = ctr.z; var c3 = ctr.w;
  var k0 = key0; var k1 = key1;
  for (var r = 0u; r < 10u; r++) {
    let hi0 = mulhi(0xd2511f53u, c0); let lo0 = 0xd2511f53u * c0;
    let hi1 = mulhi(0xcd9e8d57u, c2); let lo1 = 0xcd9e8d57u * c2;
    let n0 = hi1 ^ c1 ^ k0;
    let n2 = hi0 ^ c3 ^ k1;
    c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
    k0 = k0 + 0x9e3779b9u; k1 = k1 + 0xbb67ae85u;
  }
  return vec4<u32>(c0, c1, c2, c3);
}

// floor(a*b / 2^25) for a, b < 2^26, from 13-bit halves (every partial sum stays below 2^28):
// a*b = ah*bh*2^26 + (ah*bl + al*bh)*2^13 + al*bl, and nested floors of divisions by powers of
// two compose exactly.
fn mulq(a: u32, b: u32) -> u32 {
  let ah = a >> 13u; let al = a & 0x1fffu; let bh = b >> 13u; let bl = b & 0x1fffu;
  return 2u * ah * bh + ((ah * bl + al * bh + ((al * bl) >> 13u)) >> 12u);
}

// LOG_RECIP (words 0-31) and LOG_OFFSET (words 32-63), filled by loadLogTable.
var<workgroup> LOGT: array<u32, 64>;

fn log1m_series(d: u32) -> u32 {
  var h = 6710886u;
  h = 8388608u + mulq(d, h);
  h = 11184810u + mulq(d, h);
  h = 16777216u + mulq(d, h);
  h = 33554432u + mulq(d, h);
  return mulq(d, h);
}

// -ln(q / 2^e) in Q25, 1 <= q < 2^e, e <= 25.
fn neglog_q25(q: u32, e: u32) -> u32 {
  let k = firstLeadingBit(q);
  let y = q << (25u - k);
  let j = (y - 33554432u) >> 20u;
  if (e - k == 1u && j == 31u) { return log1m_series(33554432u - (y >> 1u)); }
  let d = 33554432u - mulq(y, LOGT[j]);
  return (e - k) * ${LN2_Q25}u + log1m_series(d) - LOGT[32u + j];
}

// r*r > (nhi, nlo) as 64-bit numbers, r < 2^26.
fn sq_gt(r: u32, nhi: u32, nlo: u32) -> bool {
  let lo = r * r; let hi = mulhi(r, r);
  return hi > nhi || (hi == nhi && lo > nlo);
}

// floor(sqrt(l2 * 2^19)) for l2 < 2^31: an approximate float root, then exact integer correction.
fn isqrt_q(l2: u32) -> u32 {
  let nhi = l2 >> 13u; let nlo = l2 << 19u;
  var r = u32(sqrt(f32(nhi) * 4294967296.0 + f32(nlo)));
  loop { if (!sq_gt(r, nhi, nlo)) { break; } r = r - 1u; }
  loop { if (sq_gt(r + 1u, nhi, nlo)) { break; } r = r + 1u; }
  return r;
}

// (sin, cos) of (pi/2) * x / 2^25 in Q25, 0 <= x < 2^25.
fn sincos_q25(x: u32) -> vec2<u32> {
  let swap = x >= 16777216u;
  let y = select(x, 33554432u - x, swap);
  let t = mulq(y, ${HALF_PI_Q25}u);
  let t2 = mulq(t, t);
  var s = 33554432u - t2 / 72u;
  s = 33554432u - mulq(t2, s) / 42u;
  s = 33554432u - mulq(t2, s) / 20u;
  s = 33554432u - mulq(t2, s) / 6u;
  let sn = mulq(t, s);
  var c = 33554432u - t2 / 90u;
  c = 33554432u - mulq(t2, c) / 56u;
  c = 33554432u - mulq(t2, c) / 30u;
  c = 33554432u - mulq(t2, c) / 12u;
  let cs = 33554432u - mulq(t2, c) / 2u;
  return select(vec2<u32>(sn, cs), vec2<u32>(cs, sn), swap);
}

// Correctly rounded u32 -> f32 (two exact parts, one rounding add).
fn to_f32(x: u32) -> f32 {
  return f32(x >> 8u) * 256.0 + f32(x & 255u);
}

fn gauss_pair(b0: u32, b1: u32, sc: f32) -> vec2<f32> {
  let r = isqrt_q(2u * neglog_q25(2u * (b0 >> 8u) + 1u, 25u));
  let a = 2u * (b1 >> 8u) + 1u;
  let quad = a >> 23u;
  let sc2 = sincos_q25((a & 0x7fffffu) * 4u);
  let even = quad == 0u || quad == 2u;
  let ca = select(sc2.x, sc2.y, even);
  let sa = select(sc2.y, sc2.x, even);
  let x = to_f32(mulq(r, ca)) * sc;
  let y = to_f32(mulq(r, sa)) * sc;
  return vec2<f32>(select(x, -x, quad == 1u || quad == 2u), select(y, -y, quad >= 2u));
}

fn laplace1(b: u32, sc: f32) -> f32 {
  let s = i32(2u * (b >> 8u) + 1u) - 16777216;
  let v = to_f32(neglog_q25(16777216u - u32(abs(s)), 24u)) * sc;
  return select(v, -v, s < 0);
}

fn uniform1(b: u32, sc: f32) -> f32 {
  return f32(i32(2u * (b >> 8u) + 1u) - 16777216) * sc;
}

// Four draws of law (0 gaussian, 1 laplace, 2 uniform) with scale 'scale' from one Philox block.
fn noise_block(b: vec4<u32>, law: u32, scale: f32) -> vec4<f32> {
  if (law == 0u) {
    let sc = scale * 2.384185791015625e-7;
    return vec4<f32>(gauss_pair(b.x, b.y, sc), gauss_pair(b.z, b.w, sc));
  }
  if (law == 1u) {
    let sc = scale * 2.98023223876953125e-8;
    return vec4<f32>(laplace1(b.x, sc), laplace1(b.y, sc), laplace1(b.z, sc), laplace1(b.w, sc));
  }
  let sc = scale * 5.9604644775390625e-8;
  return vec4<f32>(uniform1(b.x, sc), uniform1(b.y, sc), uniform1(b.z, sc), uniform1(b.w, sc));
}
`;

/** Uniform words of the raw Philox kernel: nBlocks, k0, k1, c1, c2. */
export const PHILOX_WORDS = 8;

/** Raw Philox output: out[4b + lane] = philox(k0, k1, (b, c1, c2, 0))[lane]. Bindings: out (u32, write). */
export function philoxKernel(): string {
  return `${uniformBlock(PHILOX_WORDS)}${storage(1, "Y", "u32", true)}${RANDOM_WGSL}
${main1d()}
  if (i >= U(0)) { return; }
  let b = philox(U(1), U(2), vec4<u32>(i, U(3), U(4), 0u));
  Y[4u * i] = b.x; Y[4u * i + 1u] = b.y; Y[4u * i + 2u] = b.z; Y[4u * i + 3u] = b.w;
}`;
}

/**
 * Uniform words of the noise kernel: n, k0, k1, c1, c2, (unused), scale (f32), (unused), then the
 * logarithm table from word 8 (gaussian and laplace).
 */
export const NOISE_WORDS = 72;
/** Where the logarithm table starts in the noise kernel's uniforms. */
export const NOISE_TABLE_BASE = 8;

/** The noise kernel's uniform words. */
export function noiseUniforms(
  n: number,
  key: { k0: number; k1: number; c1: number; c2: number },
  law: NoiseLaw,
  scaleBits: number,
): number[] {
  return withLogTable(
    [n, key.k0 >>> 0, key.k1 >>> 0, key.c1 >>> 0, key.c2 >>> 0, 0, scaleBits, 0],
    law,
    NOISE_TABLE_BASE,
  );
}

/**
 * out[i] = element i of the stream (like `fillNoise(out, law, scale, key)`), one thread per Philox
 * block. Bindings: out (write). Uniforms: {@linkcode noiseUniforms}.
 */
export function noiseKernel(law: NoiseLaw): string {
  return `${uniformBlock(NOISE_WORDS)}${storage(1, "Y", "f32", true)}${RANDOM_WGSL}
${main1d()}
  ${loadLogTable(law, NOISE_TABLE_BASE)}
  let n = U(0);
  if (4u * i >= n) { return; }
  let v = noise_block(philox(U(1), U(2), vec4<u32>(i, U(3), U(4), 0u)), ${lawIndex(law)}u, UF(6u));
  for (var l = 0u; l < 4u; l++) { if (4u * i + l < n) { Y[4u * i + l] = v[l]; } }
}`;
}

/**
 * The transform alone, for tests on chosen words: Y[4b + l] = noise_block(X[4b…4b+3])[l] for
 * b < U(0), scale UF(6). Bindings: X (u32, read), Y (write). Uniforms as {@linkcode noiseUniforms}
 * (the key words unused).
 */
export function transformKernel(law: NoiseLaw): string {
  return `${uniformBlock(NOISE_WORDS)}${storage(1, "X", "u32")}${storage(2, "Y", "f32", true)}${RANDOM_WGSL}
${main1d()}
  ${loadLogTable(law, NOISE_TABLE_BASE)}
  if (i >= U(0)) { return; }
  let v = noise_block(vec4<u32>(X[4u * i], X[4u * i + 1u], X[4u * i + 2u], X[4u * i + 3u]), ${
    lawIndex(law)
  }u, UF(6u));
  Y[4u * i] = v.x; Y[4u * i + 1u] = v.y; Y[4u * i + 2u] = v.z; Y[4u * i + 3u] = v.w;
}`;
}
