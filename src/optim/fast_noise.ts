/**
 * A faster, bit-identical CPU evaluation of the noise of `src/random/noise.ts` for the fused
 * optimizer loops: the same Philox4x32-10 blocks and the same 25-bit fixed-point transforms, with
 * the same integers at every stage, computed with cheaper operations:
 *
 * - Philox: the high word of a 32×32-bit product from four 16×16-bit `Math.imul`s kept in int32
 *   registers (no float division), round keys computed once per stream.
 * - `q · 2^(25−k)` as a shift instead of `2 **`; `⌊v / n⌋` for the constant divisors of the sine
 *   and cosine series as `⌊(v + ½) · (1/n)⌋`, exact for integers 0 ≤ v < 2^26 (the fractional
 *   part of (v + ½)/n stays ≥ 1/(2n) from an integer, far above the 2^-32 error of the product);
 *   `⌊v / 2⌋` as `⌊v · ½⌋`; no arrays returned per draw.
 *
 * `tests/optim_parity_test.ts` checks every law against `fillNoise`/`transformBlock` on whole
 * streams and on edge-case lanes; if `noise.ts` changes its arithmetic, that test fails and this
 * file must follow (or the kernels can call `transformBlock` directly, at several times the cost).
 *
 * Internal module.
 *
 * @module
 */
import { HALF_PI_Q25, LN2_Q25, LOG_OFFSET, LOG_RECIP, type NoiseLaw } from "../random/noise.ts";

const ONE = 33554432; // 2^25
const INV_ONE = 1 / ONE;
const M0 = 0xd2511f53, M1 = 0xcd9e8d57, W0 = 0x9e3779b9, W1 = 0xbb67ae85;
const M0L = M0 & 0xffff, M0H = M0 >>> 16, M1L = M1 & 0xffff, M1H = M1 >>> 16;
const RECIP = Float64Array.from(LOG_RECIP);
const OFFSET = Float64Array.from(LOG_OFFSET);
const R6 = 1 / 6,
  R12 = 1 / 12,
  R20 = 1 / 20,
  R30 = 1 / 30,
  R42 = 1 / 42,
  R56 = 1 / 56,
  R72 = 1 / 72,
  R90 = 1 / 90;

/** Law codes for the kernels (the index in NOISE_LAWS). */
export const LAW_CODE: Readonly<Record<NoiseLaw, number>> = { gaussian: 0, laplace: 1, uniform: 2 };

/** The ten round keys of a Philox key (k0, k1), interleaved: [k0_0, k1_0, k0_1, k1_1, …]. */
export function roundKeys(k0: number, k1: number, out: Int32Array = new Int32Array(20)): Int32Array {
  for (let r = 0; r < 10; r++) {
    out[2 * r] = k0;
    out[2 * r + 1] = k1;
    k0 = (k0 + W0) | 0;
    k1 = (k1 + W1) | 0;
  }
  return out;
}

/** Philox4x32-10 of counter (c0, c1, c2, 0) under round keys `rk` into `out` (as int32 bits). */
export function philoxBlock(rk: Int32Array, c0: number, c1: number, c2: number, out: Int32Array): void {
  c0 |= 0;
  c1 |= 0;
  c2 |= 0;
  let c3 = 0;
  for (let r = 0; r < 20; r += 2) {
    let al = c0 & 0xffff, ah = c0 >>> 16;
    let ll = Math.imul(M0L, al), lh = Math.imul(M0L, ah), hl = Math.imul(M0H, al);
    let mid = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff);
    const hi0 = (Math.imul(M0H, ah) + (lh >>> 16) + (hl >>> 16) + (mid >>> 16)) | 0;
    al = c2 & 0xffff;
    ah = c2 >>> 16;
    ll = Math.imul(M1L, al);
    lh = Math.imul(M1L, ah);
    hl = Math.imul(M1H, al);
    mid = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff);
    const hi1 = (Math.imul(M1H, ah) + (lh >>> 16) + (hl >>> 16) + (mid >>> 16)) | 0;
    const lo0 = Math.imul(M0, c0), lo1 = Math.imul(M1, c2);
    c0 = hi1 ^ c1 ^ rk[r];
    c1 = lo1;
    c2 = hi0 ^ c3 ^ rk[r + 1];
    c3 = lo0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

/** −ln(1 − d/2^25) in Q25 (noise.ts's five-term series). */
function log1mSeries(d: number): number {
  let h = 8388608 + Math.floor(d * 6710886 * INV_ONE);
  h = 11184810 + Math.floor(d * h * INV_ONE);
  h = 16777216 + Math.floor(d * h * INV_ONE);
  h = ONE + Math.floor(d * h * INV_ONE);
  return Math.floor(d * h * INV_ONE);
}

/** −ln(q / 2^e) in Q25 for integers 1 ≤ q < 2^e ≤ 2^25 (noise.ts's `negLogQ25`). */
export function negLog(q: number, e: number): number {
  const k = 31 - Math.clz32(q);
  const y = q << (25 - k); // q · 2^(25−k) ∈ [2^25, 2^26), exact in int32
  const j = (y - ONE) >>> 20;
  if (e - k === 1 && j === 31) return log1mSeries(ONE - (y >>> 1));
  const d = ONE - Math.floor(y * RECIP[j] * INV_ONE);
  return (e - k) * LN2_Q25 + log1mSeries(d) - OFFSET[j];
}

/**
 * One Box–Muller pair (noise.ts's gaussian law) from the radius lane `b0` and the angle lane `b1`,
 * into `out[p]` and `out[p + 1]`. The sine and cosine series (noise.ts's `sinCosQ25`) run
 * interleaved.
 */
function gaussPair(b0: number, b1: number, sc: number, out: Float64Array, p: number): void {
  const l2 = 2 * negLog(2 * (b0 >>> 8) + 1, 25);
  const r = Math.floor(Math.sqrt(l2 * 524288));
  const a = 2 * (b1 >>> 8) + 1;
  const quad = a >>> 23;
  const x = (a & 0x7fffff) * 4;
  const swap = x >= 16777216;
  const y = swap ? ONE - x : x;
  const t = Math.floor(y * HALF_PI_Q25 * INV_ONE);
  const t2 = Math.floor(t * t * INV_ONE);
  let s = ONE - Math.floor((t2 + 0.5) * R72);
  let c = ONE - Math.floor((t2 + 0.5) * R90);
  s = ONE - Math.floor((Math.floor(t2 * s * INV_ONE) + 0.5) * R42);
  c = ONE - Math.floor((Math.floor(t2 * c * INV_ONE) + 0.5) * R56);
  s = ONE - Math.floor((Math.floor(t2 * s * INV_ONE) + 0.5) * R20);
  c = ONE - Math.floor((Math.floor(t2 * c * INV_ONE) + 0.5) * R30);
  s = ONE - Math.floor((Math.floor(t2 * s * INV_ONE) + 0.5) * R6);
  c = ONE - Math.floor((Math.floor(t2 * c * INV_ONE) + 0.5) * R12);
  const sin0 = Math.floor(t * s * INV_ONE);
  const cos0 = ONE - Math.floor(Math.floor(t2 * c * INV_ONE) * 0.5);
  // sine and cosine of the full angle: swap on the upper half of the octant pair, then the quadrant
  const sn = swap ? cos0 : sin0, cs = swap ? sin0 : cos0;
  const odd = (quad & 1) === 1;
  const u = Math.fround(Math.fround(Math.floor(r * (odd ? sn : cs) * INV_ONE)) * sc);
  const v = Math.fround(Math.fround(Math.floor(r * (odd ? cs : sn) * INV_ONE)) * sc);
  out[p] = quad === 1 || quad === 2 ? -u : u;
  out[p + 1] = quad >= 2 ? -v : v;
}

/** The float32 scale a law multiplies its fixed-point value by (as noise.ts computes it). */
export function lawScale(law: number, scale: number): number {
  return Math.fround(scale * (law === 0 ? 2 ** -22 : law === 1 ? 2 ** -25 : 2 ** -24));
}

/**
 * The four draws of one Philox block (bits in `b`, as int32) under law code `law` with the float32
 * scale `sc` (from {@linkcode lawScale}), into `out` — element for element what `transformBlock`
 * gives.
 */
export function drawBlock(b: Int32Array, law: number, sc: number, out: Float64Array): void {
  if (law === 0) {
    gaussPair(b[0], b[1], sc, out, 0);
    gaussPair(b[2], b[3], sc, out, 2);
  } else if (law === 1) {
    for (let p = 0; p < 4; p++) {
      const s = 2 * (b[p] >>> 8) + 1 - 16777216;
      const v = Math.fround(Math.fround(negLog(16777216 - Math.abs(s), 24)) * sc);
      out[p] = s < 0 ? -v : v;
    }
  } else {
    for (let p = 0; p < 4; p++) out[p] = Math.fround((2 * (b[p] >>> 8) + 1 - 16777216) * sc);
  }
}
