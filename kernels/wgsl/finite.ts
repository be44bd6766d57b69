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

/** Uniform words of {@linkcode markNonFiniteKernel}: n, code. */
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
 */
export function markNonFiniteKernel(): string {
  return `${uniformBlock(MARK_WORDS)}${storage(1, "X", "f32")}` +
    `@group(0) @binding(2) var<storage, read_write> G: array<atomic<u32>>;\n${NON_FINITE}` +
    `${main1d()}
  if (i >= U(0u)) { return; }
  if (nonFinite(X[i])) { atomicMax(&G[0], 0xffffffffu - U(1u)); }
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
