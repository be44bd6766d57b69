/**
 * Philox4x32-10, the counter-based generator of Salmon et al. (SC'11), in plain 32-bit integer
 * arithmetic so that the WGSL twin in `kernels/wgsl/` produces the very same bits.
 *
 * A draw is a pure function of a 64-bit key `(k0, k1)` and a 128-bit counter `(c0, c1, c2, c3)`:
 * no hidden state, so any element of any stream can be recomputed at any time, on any device.
 *
 * @module
 */

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/** High 32 bits of the 64-bit product of two uint32 values (exact, via 16-bit halves). */
export function mulhi32(a: number, b: number): number {
  const al = a & 0xffff, ah = a >>> 16, bl = b & 0xffff, bh = b >>> 16;
  const ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
  const mid = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  return (hh + (lh >>> 16) + (hl >>> 16) + Math.floor(mid / 65536)) >>> 0;
}

/**
 * One Philox4x32-10 block: writes four uint32 outputs for key `(k0, k1)` and counter
 * `(c0, c1, c2, c3)` into `out[offset..offset+4)`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { philox4x32 } from "./philox.ts";
 * const out = new Uint32Array(4);
 * philox4x32(0, 0, 0, 0, 0, 0, out);
 * // Random123 known-answer vector
 * assert.deepEqual([...out], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
 * ```
 */
export function philox4x32(
  k0: number,
  k1: number,
  c0: number,
  c1: number,
  c2: number,
  c3: number,
  out: Uint32Array,
  offset = 0,
): void {
  k0 >>>= 0;
  k1 >>>= 0;
  c0 >>>= 0;
  c1 >>>= 0;
  c2 >>>= 0;
  c3 >>>= 0;
  for (let r = 0; r < 10; r++) {
    const hi0 = mulhi32(M0, c0), lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi32(M1, c2), lo1 = Math.imul(M1, c2) >>> 0;
    const n0 = (hi1 ^ c1 ^ k0) >>> 0;
    const n2 = (hi0 ^ c3 ^ k1) >>> 0;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 = (k0 + W0) >>> 0;
    k1 = (k1 + W1) >>> 0;
  }
  out[offset] = c0;
  out[offset + 1] = c1;
  out[offset + 2] = c2;
  out[offset + 3] = c3;
}

/** 2^-24: maps the top 24 bits of a uint32 to a float32-exact uniform on [0, 1). */
export const U24 = 1 / 16777216;

/** Uniform in the open interval (0, 1), exactly representable in float32: ((x >>> 8) + 0.5) · 2^-24. */
export function uniformOpen(x: number): number {
  return ((x >>> 8) + 0.5) * U24;
}

/**
 * 32-bit FNV-1a hash of a string's UTF-16 code units: turns a parameter path such as
 * `"layers.0.w"` into a Philox key word, so noise depends on the path and not on how many
 * other parameters exist.
 */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}
