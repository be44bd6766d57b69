/**
 * The inverted-dropout mask, one thread per Philox4x32-10 block of four elements (the WGSL Philox
 * of `random.ts`, bit-identical to `src/random/philox.ts`): element i is `scale` when the top 24
 * bits of word i mod 4 of the block with key (k0, k1) and counter (⌊i/4⌋, c1, c2, 0) are ≥
 * `threshold`, else 0. Integer comparisons only, so the mask equals the CPU's bit for bit.
 *
 * Uniforms: n, k0, k1, c1, c2, threshold, scale (f32 bits).
 *
 * @module
 */
import { main1d, storage, uniformBlock } from "./common.ts";
import { RANDOM_WGSL } from "./random.ts";

/** Uniform words of the dropout-mask kernel. */
export const DROPOUT_WORDS = 8;

/** The dropout-mask kernel. Bindings: mask (write). */
export function dropoutMaskKernel(): string {
  return `${uniformBlock(DROPOUT_WORDS)}${storage(1, "Y", "f32", true)}${RANDOM_WGSL}
${main1d()}
  let n = U(0);
  if (4u * i >= n) { return; }
  let w = philox(U(1), U(2), vec4<u32>(i, U(3), U(4), 0u));
  let t = U(5); let sc = UF(6u);
  for (var l = 0u; l < 4u; l++) {
    if (4u * i + l < n) { Y[4u * i + l] = select(0.0, sc, (w[l] >> 8u) >= t); }
  }
}`;
}
