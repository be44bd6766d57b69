/**
 * Noise laws on top of Philox4x32-10. Element `i` of a stream with key `(k0, k1)` and counter words
 * `(c1, c2)` comes from the Philox block with counter `(floor(i / 4), c1, c2, 0)`, lane `i % 4`, so
 * any slice of a stream can be produced independently (on the CPU or on the GPU) and gives the same
 * numbers.
 *
 * | law      | element                                          | std      | excess kurtosis |
 * |----------|--------------------------------------------------|----------|-----------------|
 * | gaussian | Box–Muller on lanes (0,1) and (2,3)              | v        | 0               |
 * | laplace  | inverse CDF, scale b = v                         | √2·v     | 3               |
 * | uniform  | v·(2u − 1), u ∈ (0, 1)                            | v/√3     | −1.2            |
 *
 * **Bit-identical on every device.** The transforms (log, square root, sine and cosine) are not
 * computed with `Math.log` & co., whose last bits differ between JavaScript engines and GPU
 * shader compilers, but in 25-bit fixed point with integer arithmetic only: every intermediate is
 * an integer below 2^53 (exact in a JavaScript number) and every product of two operands below
 * 2^26 (so the WGSL twin in `kernels/random.ts`, which uses 32-bit halves, computes the very same
 * integers). The result is turned into a float32 by one correctly rounded conversion and one
 * correctly rounded multiplication by the float32 scale, operations that WebGPU defines exactly
 * (and that are immune to fused multiply–add contraction). So every draw is a float32 number, the
 * same bits on the CPU (float32 and float64 tensors alike) and on any GPU:
 *
 * - uniform: `s = 2m + 1 − 2^24` from the top 24 bits `m` of a lane; draw `fround(s · v·2^-24)`.
 * - laplace: `L = −ln(t / 2^24)` with `t = 2^24 − |s|` (fixed point, error below 1e-7); draw
 *   `sign(s) · fround(L · v)`.
 * - gaussian: `L = −ln u`, `u = (2m + 1)/2^25` from the even lane; `r = ⌊√(2L)·2^22⌋`;
 *   the angle `2π·(2m′ + 1)/2^25` from the odd lane, split into a quadrant and a polynomial sine
 *   and cosine (error below 1e-8); draws `fround(r·cos) · v` and `fround(r·sin) · v`.
 *
 * @module
 */
import { philox4x32 } from "./philox.ts";

/** The noise laws of the variable optimizers (SPEC.md §2). */
export type NoiseLaw = "gaussian" | "laplace" | "uniform";

/** The noise laws, in a stable order (the index is what GPU kernels receive). */
export const NOISE_LAWS: readonly NoiseLaw[] = ["gaussian", "laplace", "uniform"];

/** A counter-based stream address: key words and the two free counter words. */
export interface StreamKey {
  /** Key word 0 (usually the seed). */
  k0: number;
  /** Key word 1 (usually a hash of the parameter path or of the purpose). */
  k1: number;
  /** Counter word 1 (usually the step). */
  c1: number;
  /** Counter word 2 (a sub-stream, 0 unless stated). */
  c2: number;
}

// ---------------------------------------------------------------------------------------------
// Fixed-point arithmetic (Q25: the integer x stands for x / 2^25). Shared with kernels/random.ts.

/** One in Q25. */
const ONE = 33554432;
const INV_ONE = 1 / ONE;
/** round(ln 2 · 2^25). */
export const LN2_Q25 = 23258160;
/** round(π/2 · 2^25). */
export const HALF_PI_Q25 = 52707179;
/**
 * `LOG_RECIP[j]` = ⌊2^25 · 32 / (33 + j)⌋: the reciprocal of the upper end of the j-th of 32
 * sub-intervals of [1, 2), for the table-driven logarithm.
 */
export const LOG_RECIP: readonly number[] = [
  32537631,
  31580641,
  30678337,
  29826161,
  29020049,
  28256363,
  27531841,
  26843545,
  26188824,
  25565281,
  24970740,
  24403223,
  23860929,
  23342213,
  22845570,
  22369621,
  21913098,
  21474836,
  21053761,
  20648881,
  20259279,
  19884107,
  19522578,
  19173961,
  18837575,
  18512790,
  18199013,
  17895697,
  17602324,
  17318416,
  17043521,
  16777216,
];
/** `LOG_OFFSET[j]` = round(ln(2^25 / LOG_RECIP[j]) · 2^25). */
export const LOG_OFFSET: readonly number[] = [
  1032526,
  2034226,
  3006886,
  3952144,
  4871500,
  5766339,
  6637931,
  7487456,
  8316003,
  9124582,
  9914134,
  10685534,
  11439599,
  12177089,
  12898717,
  13605152,
  14297021,
  14974911,
  15639377,
  16290939,
  16930092,
  17557296,
  18172990,
  18777590,
  19371491,
  19955059,
  20528655,
  21092607,
  21647240,
  22192851,
  22729733,
  23258160,
];

/** ⌊a·b / 2^25⌋ for integers 0 ≤ a, b < 2^26 (the product is exact in a double). */
function mulq(a: number, b: number): number {
  return Math.floor(a * b * INV_ONE);
}

/** −ln(1 − d/2^25) in Q25 for 0 ≤ d ≤ 2^25/32 + 1 (five series terms, error < 2^-30). */
function log1mSeries(d: number): number {
  let h = 6710886; // 1/5
  h = 8388608 + mulq(d, h); // 1/4
  h = 11184810 + mulq(d, h); // 1/3
  h = 16777216 + mulq(d, h); // 1/2
  h = ONE + mulq(d, h);
  return mulq(d, h);
}

/**
 * −ln(q / 2^e) in Q25 for integers 1 ≤ q < 2^e, e ≤ 25: q = 2^k·y with y ∈ [1, 2), y reduced by a
 * table to within 1/33 of 1 and finished with a series. Exported for the parity tests.
 */
export function negLogQ25(q: number, e: number): number {
  const k = 31 - Math.clz32(q);
  const y = q * 2 ** (25 - k); // [2^25, 2^26)
  const j = (y - ONE) >>> 20;
  if (e - k === 1 && j === 31) return log1mSeries(ONE - y / 2); // y/2 near 1: no cancellation
  const d = ONE - mulq(y, LOG_RECIP[j]);
  return (e - k) * LN2_Q25 + log1mSeries(d) - LOG_OFFSET[j];
}

/**
 * sin and cos of (π/2)·x/2^25 for 0 ≤ x < 2^25, both in Q25 (Taylor to degree 9/10 on an octant).
 * Exported for the parity tests.
 */
export function sinCosQ25(x: number): [number, number] {
  const swap = x >= 16777216;
  const y = swap ? ONE - x : x;
  const t = mulq(y, HALF_PI_Q25);
  const t2 = mulq(t, t);
  let s = ONE - Math.floor(t2 / 72);
  s = ONE - Math.floor(mulq(t2, s) / 42);
  s = ONE - Math.floor(mulq(t2, s) / 20);
  s = ONE - Math.floor(mulq(t2, s) / 6);
  const sin = mulq(t, s);
  let c = ONE - Math.floor(t2 / 90);
  c = ONE - Math.floor(mulq(t2, c) / 56);
  c = ONE - Math.floor(mulq(t2, c) / 30);
  c = ONE - Math.floor(mulq(t2, c) / 12);
  const cos = ONE - Math.floor(mulq(t2, c) / 2);
  return swap ? [cos, sin] : [sin, cos];
}

const f32 = Math.fround;

/**
 * Fills `out[j]` with element `start + j` of the stream `key` under `law` with scale `scale`
 * (`out.length` elements). `scale` is the std for gaussian, the Laplace scale b, or the half-width
 * of the uniform law. Every value is a float32 number, bit-identical to the GPU's.
 */
export function fillNoise(
  out: Float32Array | Float64Array,
  law: NoiseLaw,
  scale: number,
  key: StreamKey,
  start = 0,
): void {
  if (!NOISE_LAWS.includes(law)) {
    throw new RangeError(
      `fillNoise: law must be one of ${NOISE_LAWS.join(", ")}, got ${JSON.stringify(law)}`,
    );
  }
  const n = out.length;
  const block = new Uint32Array(4);
  const vals = new Float64Array(4);
  let j = 0;
  while (j < n) {
    const i = start + j;
    const b = Math.floor(i / 4);
    philox4x32(key.k0, key.k1, b, key.c1, key.c2, 0, block);
    transformBlock(block, law, scale, vals);
    for (let lane = i - b * 4; lane < 4 && j < n; lane++, j++) out[j] = vals[lane];
  }
}

/**
 * Turns one Philox block into four draws of `law` with scale `scale` (float32 values; see the
 * module documentation for the exact arithmetic).
 */
export function transformBlock(
  block: Uint32Array,
  law: NoiseLaw,
  scale: number,
  out: Float64Array,
): void {
  if (law === "gaussian") {
    const sc = f32(scale * 2 ** -22);
    for (let p = 0; p < 4; p += 2) {
      const l2 = 2 * negLogQ25(2 * (block[p] >>> 8) + 1, 25); // 2·(−ln u) in Q25
      const r = Math.floor(Math.sqrt(l2 * 524288)); // √(2L) in Q22 (exact floor: l2·2^19 < 2^50)
      const a = 2 * (block[p + 1] >>> 8) + 1; // angle in units of 2π/2^25
      const quad = a >>> 23;
      const [s, c] = sinCosQ25((a & 0x7fffff) * 4);
      // (cos, sin) of the full angle from the quadrant.
      const ca = quad === 0 ? c : quad === 1 ? s : quad === 2 ? c : s;
      const sa = quad === 0 ? s : quad === 1 ? c : quad === 2 ? s : c;
      const cNeg = quad === 1 || quad === 2, sNeg = quad >= 2;
      const x = f32(f32(mulq(r, ca)) * sc), y = f32(f32(mulq(r, sa)) * sc);
      out[p] = cNeg ? -x : x;
      out[p + 1] = sNeg ? -y : y;
    }
  } else if (law === "laplace") {
    const sc = f32(scale * 2 ** -25);
    for (let p = 0; p < 4; p++) {
      const s = 2 * (block[p] >>> 8) + 1 - 16777216;
      const v = f32(f32(negLogQ25(16777216 - Math.abs(s), 24)) * sc);
      out[p] = s < 0 ? -v : v;
    }
  } else {
    const sc = f32(scale * 2 ** -24);
    for (let p = 0; p < 4; p++) out[p] = f32((2 * (block[p] >>> 8) + 1 - 16777216) * sc);
  }
}
