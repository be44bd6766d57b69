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
 * @module
 */
import { philox4x32, uniformOpen } from "./philox.ts";

/** The noise laws of the variable optimizers (SPEC.md §2). */
export type NoiseLaw = "gaussian" | "laplace" | "uniform";

/** The noise laws, in a stable order (the index is what GPU kernels receive). */
export const NOISE_LAWS: readonly NoiseLaw[] = ["gaussian", "laplace", "uniform"];

const TWO_PI = 2 * Math.PI;

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

/**
 * Fills `out[j]` with element `start + j` of the stream `key` under `law` with scale `scale`
 * (`out.length` elements). `scale` is the std for gaussian, the Laplace scale b, or the half-width
 * of the uniform law.
 */
export function fillNoise(
  out: Float32Array | Float64Array,
  law: NoiseLaw,
  scale: number,
  key: StreamKey,
  start = 0,
): void {
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

/** Turns one Philox block into four draws of `law` with scale `scale`. */
export function transformBlock(
  block: Uint32Array,
  law: NoiseLaw,
  scale: number,
  out: Float64Array,
): void {
  if (law === "gaussian") {
    for (let p = 0; p < 4; p += 2) {
      const r = Math.sqrt(-2 * Math.log(uniformOpen(block[p]))) * scale;
      const a = TWO_PI * uniformOpen(block[p + 1]);
      out[p] = r * Math.cos(a);
      out[p + 1] = r * Math.sin(a);
    }
  } else if (law === "laplace") {
    for (let p = 0; p < 4; p++) {
      const u = uniformOpen(block[p]) - 0.5;
      out[p] = u < 0 ? scale * Math.log(1 + 2 * u) : -scale * Math.log(1 - 2 * u);
    }
  } else {
    for (let p = 0; p < 4; p++) out[p] = scale * (2 * uniformOpen(block[p]) - 1);
  }
}
