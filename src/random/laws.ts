/**
 * The vocabulary of the noise streams: the laws, their numeric codes and scale factors, and the
 * counter-based address of a stream ({@linkcode StreamKey}). Element `i` of a stream with key
 * `(k0, k1)` and counter words `(c1, c2)` comes from the Philox block with counter
 * `(floor(i / 4), c1, c2, 0)`, lane `i % 4`.
 *
 * @module
 */
import { NOISE_LAWS, type NoiseLaw } from "../types.ts";

export type { NoiseLaw } from "../types.ts";

export { NOISE_LAWS } from "../types.ts";

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
 * Receives the draws of a stream chunk by chunk: element `start + i` of the stream, for
 * `lo ≤ i < hi`, is `draws[off + i]` (a float32 number). The chunks cover `[0, n)` exactly once,
 * in no particular order; `draws` is only valid during the call.
 */
export type NoiseConsumer = (lo: number, hi: number, draws: Float32Array, off: number) => void;

/** The index of each law in NOISE_LAWS (what the fast paths and GPU kernels receive). */
const LAW_CODE: Readonly<Record<NoiseLaw, number>> = { gaussian: 0, laplace: 1, uniform: 2 };

/**
 * The code of `law` (its index in {@linkcode NOISE_LAWS}); an unknown law is a RangeError naming
 * the caller `fn`, the value and the laws accepted.
 */
export function lawCode(fn: string, law: NoiseLaw): number {
  const code = Object.hasOwn(LAW_CODE, law) ? LAW_CODE[law] : undefined;
  if (code === undefined) {
    throw new RangeError(`${fn}: law must be one of ${NOISE_LAWS.join(", ")}, got ${JSON.stringify(law)}`);
  }
  return code;
}

/**
 * The float32 factor that law code `law` multiplies its fixed-point value by, for scale `scale`
 * (as `transformBlock` computes it: `fround(scale · 2^-22)` gaussian, `2^-25` laplace, `2^-24`
 * uniform).
 */
export function lawScale(law: number, scale: number): number {
  return Math.fround(scale * (law === 0 ? 2 ** -22 : law === 1 ? 2 ** -25 : 2 ** -24));
}
