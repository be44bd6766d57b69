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
 * 2^26 (so the WGSL twin in `kernels/wgsl/random.ts`, which uses 32-bit halves, computes the very same
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
 * `transformBlock` (with `negLogQ25` and `sinCosQ25`) states this arithmetic operation for
 * operation, as the WGSL twin does. {@linkcode fillNoise} computes the same integers faster, on
 * one of two paths with identical output ({@linkcode setNoiseImpl} picks one, for tests and
 * benchmarks):
 *
 * - `"wasm"`: WebAssembly SIMD generated at run time (`noise_wasm.ts`), used by default wherever
 *   the engine has fixed-width SIMD;
 * - `"js"`: plain JavaScript, the fallback: Philox with 16-bit `Math.imul` halves and round keys
 *   computed once per stream; `q · 2^(25−k)` as a shift; `⌊v / n⌋` for the constant divisors of
 *   the sine and cosine series as `⌊(v + ½) · (1/n)⌋`, exact for integers 0 ≤ v < 2^26 (the
 *   fractional part of (v + ½)/n stays ≥ 1/(2n) from an integer, far above the 2^-32 error of the
 *   product); no arrays allocated per draw.
 *
 * Long streams are drawn by several threads where WebAssembly shared memory and blocking
 * `Atomics.wait` exist (`noise_threads.ts`: unreferenced `node:worker_threads` workers running the
 * same generated module over the same memory, each drawing whole chunks of the stream; see
 * {@linkcode setNoiseThreads}). Every element is a pure function of its counter, so the thread
 * that draws it changes no bit. {@linkcode streamNoise} hands the draws to a consumer chunk by
 * chunk, straight from where they were generated, for the optimizers' fused loops.
 *
 * @module
 */
import { NoiseWorkerPool, type ThreadSupport, threadSupport } from "../../kernels/wasm/noise_threads.ts";
import {
  BLOCKS_PER_ITER,
  KEYS_BYTE,
  OUT_BYTE,
  REGION_BYTE,
  WasmNoise,
} from "../../kernels/wasm/noise_wasm.ts";
import { ThreadChoice } from "../../kernels/wasm/thread_choice.ts";

import type { NoiseLaw } from "../types.ts";

export type { NoiseLaw } from "../types.ts";

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

// ---------------------------------------------------------------------------------------------
// The JavaScript path: the same integers as transformBlock, with cheaper operations.

const M0 = 0xd2511f53, M1 = 0xcd9e8d57, W0 = 0x9e3779b9, W1 = 0xbb67ae85;
const M0L = M0 & 0xffff, M0H = M0 >>> 16, M1L = M1 & 0xffff, M1H = M1 >>> 16;
const RECIP = Float64Array.from(LOG_RECIP);
const OFFSET = Float64Array.from(LOG_OFFSET);
const R6 = 1 / 6, R12 = 1 / 12, R20 = 1 / 20, R30 = 1 / 30, R42 = 1 / 42, R56 = 1 / 56, R72 = 1 / 72;
const R90 = 1 / 90;

/** The ten round keys of a Philox key (k0, k1), interleaved: [k0_0, k1_0, k0_1, k1_1, …]. */
function roundKeys(k0: number, k1: number, out: Int32Array): Int32Array {
  for (let r = 0; r < 10; r++) {
    out[2 * r] = k0;
    out[2 * r + 1] = k1;
    k0 = (k0 + W0) | 0;
    k1 = (k1 + W1) | 0;
  }
  return out;
}

/** Philox4x32-10 of counter (c0, c1, c2, 0) under round keys `rk` into `out` (as int32 bits). */
function philoxBlock(rk: Int32Array, c0: number, c1: number, c2: number, out: Int32Array): void {
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

/** `log1mSeries`, without divisions. */
function log1mFast(d: number): number {
  let h = 8388608 + Math.floor(d * 6710886 * INV_ONE);
  h = 11184810 + Math.floor(d * h * INV_ONE);
  h = 16777216 + Math.floor(d * h * INV_ONE);
  h = ONE + Math.floor(d * h * INV_ONE);
  return Math.floor(d * h * INV_ONE);
}

/** `negLogQ25` for integers 1 ≤ q < 2^e ≤ 2^25, with a shift for the reduction. */
function negLogFast(q: number, e: number): number {
  const k = 31 - Math.clz32(q);
  const y = q << (25 - k); // q · 2^(25−k) ∈ [2^25, 2^26), exact in int32
  const j = (y - ONE) >>> 20;
  if (e - k === 1 && j === 31) return log1mFast(ONE - (y >>> 1));
  const d = ONE - Math.floor(y * RECIP[j] * INV_ONE);
  return (e - k) * LN2_Q25 + log1mFast(d) - OFFSET[j];
}

/**
 * One Box–Muller pair (the gaussian law of `transformBlock`) from the radius lane `b0` and the
 * angle lane `b1`, into `out[p]` and `out[p + 1]`; the sine and cosine series of `sinCosQ25` run
 * interleaved.
 */
function gaussPair(b0: number, b1: number, sc: number, out: Float64Array, p: number): void {
  const l2 = 2 * negLogFast(2 * (b0 >>> 8) + 1, 25);
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
  const u = f32(f32(Math.floor(r * (odd ? sn : cs) * INV_ONE)) * sc);
  const v = f32(f32(Math.floor(r * (odd ? cs : sn) * INV_ONE)) * sc);
  out[p] = quad === 1 || quad === 2 ? -u : u;
  out[p + 1] = quad >= 2 ? -v : v;
}

/** The index of each law in NOISE_LAWS (what the fast paths and GPU kernels receive). */
const LAW_CODE: Readonly<Record<NoiseLaw, number>> = { gaussian: 0, laplace: 1, uniform: 2 };

/** The float32 factor a law multiplies its fixed-point value by (as `transformBlock` computes it). */
function lawScale(law: number, scale: number): number {
  return f32(scale * (law === 0 ? 2 ** -22 : law === 1 ? 2 ** -25 : 2 ** -24));
}

/** The four draws of the Philox block `b` (int32 bits) under law code `law` and factor `sc`. */
function drawBlock(b: Int32Array, law: number, sc: number, out: Float64Array): void {
  if (law === 0) {
    gaussPair(b[0], b[1], sc, out, 0);
    gaussPair(b[2], b[3], sc, out, 2);
  } else if (law === 1) {
    for (let p = 0; p < 4; p++) {
      const s = 2 * (b[p] >>> 8) + 1 - 16777216;
      const v = f32(f32(negLogFast(16777216 - Math.abs(s), 24)) * sc);
      out[p] = s < 0 ? -v : v;
    }
  } else {
    for (let p = 0; p < 4; p++) out[p] = f32((2 * (b[p] >>> 8) + 1 - 16777216) * sc);
  }
}

// Scratch of the JavaScript path (no allocation per call).
const BITS = new Int32Array(4);
const DRAWS = new Float64Array(4);
const KEYS = new Int32Array(20);

function fillJs(
  out: Float32Array | Float64Array,
  law: number,
  sc: number,
  key: StreamKey,
  start: number,
): void {
  const rk = roundKeys(key.k0, key.k1, KEYS), c1 = key.c1, c2 = key.c2, n = out.length;
  let j = 0;
  while (j < n) {
    const i = start + j, b = Math.floor(i / 4);
    philoxBlock(rk, b, c1, c2, BITS);
    drawBlock(BITS, law, sc, DRAWS);
    for (let lane = i - b * 4; lane < 4 && j < n; lane++, j++) out[j] = DRAWS[lane];
  }
}

// ---------------------------------------------------------------------------------------------
// Choosing the path.

/** Which implementation {@linkcode fillNoise} uses: `"auto"` (WebAssembly where available). */
export type NoiseImpl = "auto" | "wasm" | "js";

const TABLES = { recip: LOG_RECIP, offset: LOG_OFFSET, ln2: LN2_Q25, halfPi: HALF_PI_Q25 };
let requested: NoiseImpl = "auto";
/** The WebAssembly engines, created on first use; null where they cannot be. */
let engine: WasmNoise | null | undefined;
let rawEngine: WasmNoise | null | undefined;
let engineError: unknown;

function wasmEngine(): WasmNoise | null {
  if (engine === undefined) {
    try {
      // shared memory where it exists (the workers draw into it), private memory otherwise
      engine = typeof SharedArrayBuffer === "function" ? sharedEngine() : null;
      engine ??= new WasmNoise(TABLES);
    } catch (e) {
      engine = null;
      engineError = e;
    }
  }
  return engine;
}

function sharedEngine(): WasmNoise | null {
  try {
    return new WasmNoise(TABLES, false, true);
  } catch {
    return null;
  }
}

/** Whether the WebAssembly path can run here (compiles its module on the first call). */
export function noiseWasmAvailable(): boolean {
  return wasmEngine() !== null;
}

/**
 * Selects the implementation of {@linkcode fillNoise}: `"wasm"` (throws where WebAssembly SIMD is
 * unavailable), `"js"`, or `"auto"` (the default: WebAssembly where available). Both give the same
 * bits; this exists for tests and benchmarks.
 */
export function setNoiseImpl(impl: NoiseImpl): void {
  if (impl !== "auto" && impl !== "wasm" && impl !== "js") {
    throw new RangeError(`setNoiseImpl: impl must be "auto", "wasm" or "js", got ${JSON.stringify(impl)}`);
  }
  if (impl === "wasm" && wasmEngine() === null) {
    throw new Error(`setNoiseImpl: WebAssembly SIMD is unavailable here (${engineError})`);
  }
  requested = impl;
}

/** The implementation {@linkcode fillNoise} uses now: `"wasm"` or `"js"`. */
export function getNoiseImpl(): "wasm" | "js" {
  return requested !== "js" && wasmEngine() !== null ? "wasm" : "js";
}

function checkLaw(fn: string, law: NoiseLaw): number {
  const code = Object.hasOwn(LAW_CODE, law) ? LAW_CODE[law] : undefined;
  if (code === undefined) {
    throw new RangeError(`${fn}: law must be one of ${NOISE_LAWS.join(", ")}, got ${JSON.stringify(law)}`);
  }
  return code;
}

/**
 * Fills `out[j]` with element `start + j` of the stream `key` under `law` with scale `scale`
 * (`out.length` elements). `scale` is the std for gaussian, the Laplace scale b, or the half-width
 * of the uniform law. Every value is a float32 number, bit-identical to the GPU's and to
 * {@linkcode transformBlock} of the stream's Philox blocks, whichever path computes it.
 *
 * @example
 * ```ts
 * import { fillNoise } from "@nvrm/core";
 * const n = new Float32Array(10);
 * fillNoise(n, "gaussian", 0.01, { k0: 0, k1: 1, c1: 2, c2: 0 }); // element i from block ⌊i/4⌋
 * const tail = new Float32Array(3);
 * fillNoise(tail, "gaussian", 0.01, { k0: 0, k1: 1, c1: 2, c2: 0 }, 7); // elements 7, 8, 9
 * console.log(tail[0] === n[7]); // true
 * ```
 */
export function fillNoise(
  out: Float32Array | Float64Array,
  law: NoiseLaw,
  scale: number,
  key: StreamKey,
  start = 0,
): void {
  const code = checkLaw("fillNoise", law);
  const sc = lawScale(code, scale);
  const w = requested === "js" || streaming ? null : wasmEngine();
  if (w === null) fillJs(out, code, sc, key, start);
  else if (poolFor(w, out.length) === null) w.fill(out, code, sc, key.k0, key.k1, key.c1, key.c2, start);
  else {
    streamWasm(w, out.length, code, sc, key, start, (lo, hi, draws, off) => {
      out.set(draws.subarray(off + lo, off + hi), lo);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Streams: the draws handed to a consumer chunk by chunk, on one thread or several.

/**
 * Receives the draws of a stream chunk by chunk: element `start + i` of the stream, for
 * `lo ≤ i < hi`, is `draws[off + i]` (a float32 number). The chunks cover `[0, n)` exactly once,
 * in no particular order; `draws` is only valid during the call.
 */
export type NoiseConsumer = (lo: number, hi: number, draws: Float32Array, off: number) => void;

/** Blocks the calling thread draws per chunk when it works alone (2048 elements, in L1). */
const SOLO_BLOCKS = 512;
/** Blocks per threaded round (the draw region holds one round: 512 Ki elements, 2 MiB). */
const ROUND_BLOCKS = 1 << 17;
/** Blocks per chunk of a threaded round, at most (8192 elements). */
const MAX_CHUNK_BLOCKS = 2048;
/** Streams of at least this many elements use the workers (when {@linkcode setNoiseThreads} is "auto"). */
export const NOISE_THREAD_MIN = 32768;
/** Most participants (the calling thread and workers) "auto" uses. */
const AUTO_MAX_THREADS = 8;

let threadSetting: number | "auto" = "auto";
/** True while the WebAssembly draw buffers are being handed to a consumer. */
let streaming = false;
let support: ThreadSupport | undefined;
/** The worker pool of the current engine; null when workers are unavailable here. */
let pool: NoiseWorkerPool | null | undefined;

function autoThreads(): number {
  support ??= threadSupport();
  return support.ok ? Math.min(AUTO_MAX_THREADS, support.participants) : 1;
}

/** The pool to draw `n` elements with, or null for the calling thread alone. */
function poolFor(w: WasmNoise, n: number): NoiseWorkerPool | null {
  if (threadSetting === 1 || !w.shared) return null;
  if (threadSetting === "auto" && n < NOISE_THREAD_MIN) return null;
  if (pool === undefined) {
    support ??= threadSupport();
    const parts = threadSetting === "auto" ? autoThreads() : threadSetting;
    try {
      pool = support.ok && parts > 1 ? new NoiseWorkerPool(w, parts, support.kind) : null;
    } catch {
      pool = null; // workers cannot be started here: the calling thread draws alone
    }
  }
  return pool;
}

/**
 * How many threads draw long noise streams: `"auto"` (the default: the calling thread plus
 * workers, one per further hardware thread, at most 8 in all, for streams of at least
 * {@linkcode NOISE_THREAD_MIN} elements, and only while that measures faster than the calling
 * thread alone), `1` (the calling thread only), or a count ≥ 2 (that many, for streams of any
 * length: for tests and benchmarks). Every setting gives the same bits. Workers exist where shared
 * WebAssembly memory and blocking `Atomics.wait` do (Deno, Node, Bun: unreferenced
 * `node:worker_threads`, which never keep a process alive); elsewhere the calling thread draws
 * alone. Changing the number of participants restarts the workers.
 */
export function setNoiseThreads(threads: number | "auto"): void {
  if (threads !== "auto" && !(Number.isInteger(threads) && threads >= 1 && threads <= 64)) {
    throw new RangeError(
      `setNoiseThreads: threads must be "auto" or an integer in [1, 64], got ${String(threads)}`,
    );
  }
  const want = threads === "auto" ? autoThreads() : threads;
  if (pool && want > 1 && pool.size + 1 !== want) shutdownNoiseWorkers(); // a pool of another size
  threadSetting = threads;
}

/** The participants a long noise stream gets now (1: the calling thread alone). */
export function getNoiseThreads(): number {
  support ??= threadSupport();
  if (requested === "js" || !support.ok || wasmEngine()?.shared !== true) return 1;
  return threadSetting === "auto" ? autoThreads() : threadSetting;
}

/** Workers started and chunks they drew (since the pool started). */
export function noiseThreadStats(): { workers: number; workerChunks: number } {
  return { workers: pool?.size ?? 0, workerChunks: pool?.workerChunks ?? 0 };
}

/** Stops the noise workers (they restart on the next long stream). */
export function shutdownNoiseWorkers(): void {
  pool?.shutdown();
  pool = undefined;
}

/** "auto": the calling thread alone or with the workers, per size class of n (`ThreadChoice`). */
const choice = new ThreadChoice(16);

function streamWasm(
  w: WasmNoise,
  n: number,
  law: number,
  sc: number,
  key: StreamKey,
  start: number,
  consume: NoiseConsumer,
): void {
  streaming = true;
  try {
    w.setKeys(key.k0, key.k1);
    streamWasmWith(w, poolFor(w, n), n, law, sc, key, start, consume);
  } finally {
    streaming = false;
  }
}

function streamWasmWith(
  w: WasmNoise,
  p: NoiseWorkerPool | null,
  n: number,
  law: number,
  sc: number,
  key: StreamKey,
  start: number,
  consume: NoiseConsumer,
): void {
  if (p === null) return streamSolo(w, n, law, sc, key, start, consume);
  if (threadSetting !== "auto") return streamThreaded(w, p, n, law, sc, key, start, consume);
  const threaded = choice.useThreads(n);
  const worked = p.workerChunks, t0 = performance.now();
  if (threaded) streamThreaded(w, p, n, law, sc, key, start, consume);
  else streamSolo(w, n, law, sc, key, start, consume);
  // (threaded calls count only if the workers took part: while they start, this thread does it all)
  if (!threaded || p.workerChunks !== worked) choice.record(n, threaded, performance.now() - t0);
}

/** The calling thread alone: chunks of `SOLO_BLOCKS` drawn at `OUT_BYTE` and consumed in order. */
function streamSolo(
  w: WasmNoise,
  n: number,
  law: number,
  sc: number,
  key: StreamKey,
  start: number,
  consume: NoiseConsumer,
): void {
  const c1 = key.c1 | 0, c2 = key.c2 | 0;
  const B = Math.floor(start / 4), lane0 = start - 4 * B, nb = Math.ceil((lane0 + n) / 4);
  const fn = w.fns[law], view = w.f32(), base = OUT_BYTE / 4 + lane0;
  for (let kb = 0; kb < nb; kb += SOLO_BLOCKS) {
    const cnt = Math.min(SOLO_BLOCKS, nb - kb);
    fn(Math.ceil(cnt / BLOCKS_PER_ITER), (B + kb) | 0, c1, c2, sc, OUT_BYTE, KEYS_BYTE);
    consume(Math.max(0, 4 * kb - lane0), Math.min(n, 4 * (kb + cnt) - lane0), view, base - 4 * kb);
  }
}

/** The calling thread and the workers: rounds of at most `ROUND_BLOCKS` in the draw region. */
function streamThreaded(
  w: WasmNoise,
  p: NoiseWorkerPool,
  n: number,
  law: number,
  sc: number,
  key: StreamKey,
  start: number,
  consume: NoiseConsumer,
): void {
  const c1 = key.c1 | 0, c2 = key.c2 | 0;
  const B = Math.floor(start / 4), lane0 = start - 4 * B, nb = Math.ceil((lane0 + n) / 4);
  const parts = p.size + 1;
  for (let rb = 0; rb < nb; rb += ROUND_BLOCKS) {
    const cnt = Math.min(ROUND_BLOCKS, nb - rb);
    // about four chunks per participant, a multiple of the function's step, at most 8192 elements
    const cb = Math.min(MAX_CHUNK_BLOCKS, BLOCKS_PER_ITER * Math.ceil(cnt / (4 * parts * BLOCKS_PER_ITER)));
    w.reserve(REGION_BYTE + 16 * (cnt + BLOCKS_PER_ITER));
    const view = w.f32(), off = REGION_BYTE / 4 + lane0 - 4 * rb;
    p.round(law, sc, B + rb, cnt, c1, c2, cb, (lo, hi) => {
      consume(Math.max(0, 4 * (rb + lo) - lane0), Math.min(n, 4 * (rb + hi) - lane0), view, off);
    });
    if (p.broken) {
      // A worker stalled (this thread finished its round): retire the engine, whose memory a late
      // write may still reach, and draw the rest on the JavaScript path.
      engine = undefined;
      pool = undefined;
      const done = 4 * (rb + cnt) - lane0;
      if (done < n) {
        streamJs(
          n - done,
          law,
          sc,
          key,
          start + done,
          (a, b, d, o) => consume(a + done, b + done, d, o - done),
        );
      }
      return;
    }
  }
}

/** Scratch of the JavaScript stream. */
const JS_CHUNK = 2048;
let jsScratch: Float32Array | undefined;
let jsDepth = 0;

function streamJs(
  n: number,
  law: number,
  sc: number,
  key: StreamKey,
  start: number,
  consume: NoiseConsumer,
): void {
  // a stream started inside a consumer gets its own scratch
  const buf = jsDepth === 0 ? (jsScratch ??= new Float32Array(JS_CHUNK)) : new Float32Array(JS_CHUNK);
  jsDepth++;
  try {
    for (let c = 0; c < n; c += JS_CHUNK) {
      const e = Math.min(n, c + JS_CHUNK);
      fillJs(e - c === JS_CHUNK ? buf : buf.subarray(0, e - c), law, sc, key, start + c);
      consume(c, e, buf, -c);
    }
  } finally {
    jsDepth--;
  }
}

/**
 * Hands the elements `start .. start + n` of the stream `key` under `law` with scale `scale` (the
 * numbers {@linkcode fillNoise} writes) to `consume`, chunk by chunk, without an output array: a
 * fused loop reads each draw once, straight from where it was generated. Long streams are drawn
 * by several threads (see {@linkcode setNoiseThreads}); the chunks then arrive in no particular
 * order, all on the calling thread.
 */
export function streamNoise(
  n: number,
  law: NoiseLaw,
  scale: number,
  key: StreamKey,
  start: number,
  consume: NoiseConsumer,
): void {
  const code = checkLaw("streamNoise", law);
  const sc = lawScale(code, scale);
  if (n <= 0) return;
  // a stream started inside a consumer must not reuse the draw buffers still being read: it runs
  // on the JavaScript path (same bits)
  const w = requested === "js" || streaming ? null : wasmEngine();
  if (w === null) streamJs(n, code, sc, key, start, consume);
  else streamWasm(w, n, code, sc, key, start, consume);
}

/**
 * The draws of `law` with scale `scale` of given Philox blocks: `out[4b + lane]` is lane `lane`
 * of `transformBlock(words[4b .. 4b + 4), law, scale)` (`words.length` a multiple of 4, `out` at
 * least as long), computed by the path `impl` (default: the one {@linkcode fillNoise} uses). For
 * checking the fast paths against `transformBlock` on chosen lane values.
 */
export function transformBlocks(
  words: Uint32Array,
  law: NoiseLaw,
  scale: number,
  out: Float32Array | Float64Array,
  impl: NoiseImpl = "auto",
): void {
  const code = checkLaw("transformBlocks", law);
  if (words.length % 4 !== 0 || out.length < words.length) {
    throw new RangeError(
      `transformBlocks: words.length must be a multiple of 4 and out at least as long, got ${words.length} and ${out.length}`,
    );
  }
  const sc = lawScale(code, scale);
  const useWasm = impl === "wasm" || (impl === "auto" && requested !== "js" && wasmEngine() !== null);
  if (useWasm) {
    if (rawEngine === undefined) {
      try {
        rawEngine = new WasmNoise(TABLES, true);
      } catch (e) {
        rawEngine = null;
        engineError = e;
      }
    }
    if (rawEngine === null) {
      throw new Error(`transformBlocks: WebAssembly SIMD is unavailable here (${engineError})`);
    }
    if (out instanceof Float32Array) rawEngine.transform(words, code, sc, out);
    else {
      const tmp = new Float32Array(words.length);
      rawEngine.transform(words, code, sc, tmp);
      out.set(tmp);
    }
    return;
  }
  for (let b = 0; b < words.length; b += 4) {
    for (let l = 0; l < 4; l++) BITS[l] = words[b + l];
    drawBlock(BITS, code, sc, DRAWS);
    for (let l = 0; l < 4; l++) out[b + l] = DRAWS[l];
  }
}
