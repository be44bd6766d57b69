/**
 * The plain-JavaScript noise path: the integers of `transformBlock` (`fixed_point.ts`) computed
 * with cheaper operations, for engines without WebAssembly SIMD and for streams started inside a
 * consumer (whose draw buffers must not be reused). Philox runs with 16-bit `Math.imul` halves and
 * round keys computed once per stream; `q · 2^(25−k)` is a shift; `⌊v / n⌋` for the constant
 * divisors of the sine and cosine series is `⌊(v + ½) · (1/n)⌋`, exact for integers
 * 0 ≤ v < 2^26 (the fractional part of (v + ½)/n stays ≥ 1/(2n) from an integer, far above the
 * 2^-32 error of the product); no arrays are allocated per draw.
 *
 * Laws arrive as codes (`lawCode`) and scales as the float32 factor of `lawScale`.
 *
 * @module
 */
import { HALF_PI_Q25, INV_ONE_Q25, LN2_Q25, LOG_OFFSET, LOG_RECIP, ONE_Q25 } from "./fixed_point.ts";
import type { NoiseConsumer, StreamKey } from "./laws.ts";

const ONE = ONE_Q25;
const INV_ONE = INV_ONE_Q25;
const f32 = Math.fround;

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

/**
 * Fills `out[j]` with element `start + j` of the stream `key` under law code `law` and factor `sc`
 * (`lawScale`), on the calling thread.
 */
export function fillJs(
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

/** Scratch of the JavaScript stream. */
const JS_CHUNK = 2048;
let jsScratch: Float32Array | undefined;
let jsDepth = 0;

/**
 * Hands elements `start .. start + n` of the stream `key` (law code `law`, factor `sc`) to
 * `consume` in chunks of 2048, in order. A stream started inside a consumer gets its own scratch.
 */
export function streamJs(
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
 * The draws of given Philox blocks: `out[4b + lane]` is lane `lane` of the draws of
 * `words[4b .. 4b + 4)` under law code `law` and factor `sc` (`words.length` a multiple of 4).
 */
export function drawBlocksJs(
  words: Uint32Array,
  law: number,
  sc: number,
  out: Float32Array | Float64Array,
): void {
  for (let b = 0; b < words.length; b += 4) {
    for (let l = 0; l < 4; l++) BITS[l] = words[b + l];
    drawBlock(BITS, law, sc, DRAWS);
    for (let l = 0; l < 4; l++) out[b + l] = DRAWS[l];
  }
}
