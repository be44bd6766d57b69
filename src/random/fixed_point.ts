/**
 * The reference arithmetic of the noise laws: the bit-exact specification that every fast path
 * follows (the JavaScript path in `noise_js.ts`, the WebAssembly SIMD twin in
 * `kernels/wasm/noise_wasm.ts` and the WGSL twin in `kernels/wgsl/random.ts`).
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
 * 2^26 (so the WGSL twin, which uses 32-bit halves, computes the very same integers). The result
 * is turned into a float32 by one correctly rounded conversion and one correctly rounded
 * multiplication by the float32 scale, operations that WebGPU defines exactly (and that are
 * immune to fused multiply–add contraction). So every draw is a float32 number, the same bits on
 * the CPU (float32 and float64 tensors alike) and on any GPU:
 *
 * - uniform: `s = 2m + 1 − 2^24` from the top 24 bits `m` of a lane; draw `fround(s · v·2^-24)`.
 * - laplace: `L = −ln(t / 2^24)` with `t = 2^24 − |s|` (fixed point, error below 1e-7); draw
 *   `sign(s) · fround(L · v)`.
 * - gaussian: `L = −ln u`, `u = (2m + 1)/2^25` from the even lane; `r = ⌊√(2L)·2^22⌋`;
 *   the angle `2π·(2m′ + 1)/2^25` from the odd lane, split into a quadrant and a polynomial sine
 *   and cosine (error below 1e-8); draws `fround(r·cos) · v` and `fround(r·sin) · v`.
 *
 * {@linkcode transformBlock} (with {@linkcode negLogQ25} and {@linkcode sinCosQ25}) states this
 * arithmetic operation for operation, as the WGSL twin does; it is written for clarity, not speed.
 *
 * @module
 */
import type { NoiseLaw } from "../types.ts";

// Fixed-point arithmetic (Q25: the integer x stands for x / 2^25).

import {
  HALF_PI_Q25,
  INV_ONE_Q25,
  LN2_Q25,
  LOG_OFFSET,
  LOG_RECIP,
  ONE_Q25,
} from "../../kernels/noise_tables.ts";

export { HALF_PI_Q25, INV_ONE_Q25, LN2_Q25, LOG_OFFSET, LOG_RECIP, ONE_Q25 };
const ONE = ONE_Q25;
const INV_ONE = INV_ONE_Q25;

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
