/**
 * WGSL of the non-finite guard of `fit` on the GPU: kernels that record, without any read-back,
 * whether an array holds a NaN or an infinity, and a select that applies a step only when it was
 * finite. Guard words are u32s kept in float32 storage buffers (a guard is a 1- or 2-element tensor
 * of the caller's): 0 means "all finite"; a mark is stored as 2^32 − 1 − code with `atomicMax`, so
 * that the smallest code marked wins and the word stays non-zero.
 *
 * A value is non-finite when its exponent bits are all ones (`bits & 0x7f800000 == 0x7f800000`):
 * tested on the bit pattern, since WGSL lets a compiler assume float arithmetic never yields NaN.
 *
 * @module
 */
import { main1d, storage, uniformBlock } from "./common.ts";

/** Uniform words of {@linkcode markNonFiniteKernel} per array: n, code, first thread, pad. */
export const MARK_WORDS = 4;
/** Uniform words of {@linkcode guardSelectKernel}: n. */
export const SELECT_WORDS = 4;
/** Uniform words of {@linkcode foldGuardKernel}: base code. */
export const FOLD_WORDS = 4;

const NON_FINITE =
  `fn nonFinite(v: f32) -> bool { return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u; }\n`;

/**
 * Bindings X (read, f32) and G (read_write, atomic u32). When any of X[0..n) is non-finite:
 * `G[0] ← max(G[0], 0xffffffff − code)` (uniform 0: n, 1: code).
 *
 * Over several arrays at once (`arrays` > 1: one dispatch for the updates of a whole step), the
 * bindings are X_0 … X_{arrays−1}, then G, and each array has {@linkcode MARK_WORDS} uniform words
 * (n, code, its first thread, pad; thread t belongs to the last array whose first thread is ≤ t).
 */
export function markNonFiniteKernel(arrays = 1): string {
  if (!Number.isInteger(arrays) || arrays < 1) {
    throw new RangeError(`markNonFiniteKernel: arrays must be an integer >= 1, got ${arrays}`);
  }
  const x = (l: number) => (arrays === 1 ? "X" : `X_${l}`);
  let decl = "";
  for (let l = 0; l < arrays; l++) decl += storage(1 + l, x(l), "f32");
  const check = (l: number) => {
    const w = MARK_WORDS * l;
    return `{ let j = i - U(${w + 2}u);
    if (j >= U(${w}u)) { return; }
    if (nonFinite(${x(l)}[j])) { atomicMax(&G[0], 0xffffffffu - U(${w + 1}u)); } }`;
  };
  let body = "";
  for (let l = arrays - 1; l >= 0; l--) {
    body += l === 0 ? check(0) : `if (i >= U(${MARK_WORDS * l + 2}u)) ${check(l)} else `;
  }
  return `${uniformBlock(MARK_WORDS * arrays)}${decl}` +
    `@group(0) @binding(${1 + arrays}) var<storage, read_write> G: array<atomic<u32>>;\n${NON_FINITE}` +
    `${main1d()}
  ${body}
}
`;
}

/**
 * Bindings F (read, u32 guard), A and B (read, f32) and O (write): `O[i] = F[0] ≠ 0 ? A[i] : B[i]`
 * for i < n (uniform 0) — the previous value where the step was marked, the new one otherwise.
 */
export function guardSelectKernel(): string {
  return `${uniformBlock(SELECT_WORDS)}${storage(1, "F", "u32")}${storage(2, "A", "f32")}` +
    `${storage(3, "B", "f32")}${storage(4, "O", "f32", true)}${main1d()}
  if (i >= U(0u)) { return; }
  O[i] = select(B[i], A[i], F[0] != 0u);
}
`;
}

/**
 * One invocation. Bindings S (read, a step's u32 guard, leaf codes) and E (read_write, the epoch's
 * guard of 2 words). When S[0] ≠ 0, with leaf = 0xffffffff − S[0]:
 * `E[0] ← max(E[0], 0xffffffff − (base + leaf))` and `E[1] += 1` (the count of marked steps).
 */
export function foldGuardKernel(): string {
  return `${uniformBlock(FOLD_WORDS)}${storage(1, "S", "u32")}${storage(2, "E", "u32", true)}` +
    `@compute @workgroup_size(1)
fn main() {
  let s = S[0];
  if (s == 0u) { return; }
  let code = U(0u) + (0xffffffffu - s);
  E[0] = max(E[0], 0xffffffffu - code);
  E[1] = E[1] + 1u;
}
`;
}
