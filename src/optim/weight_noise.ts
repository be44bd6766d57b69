/**
 * The neural-variability step as a transformation of its own: after the base update, replace the
 * noise inside the weights by fresh noise (`u ← u + n_new − n_old`), and every `numIters`-th step
 * (`numIters` is the noise reset period) remove it and draw none (`u ← u − n_old`), so that the
 * weights are noise-free then.
 *
 * @module
 */
import { NOISE_LAWS, type NoiseLaw } from "../random/noise.ts";
import { checkHyper, checkOptions, evalHyper, fmtValue, NONNEG } from "./hyper.ts";
import { makeNoise, type NoiseTransform } from "./transform.ts";
import type { HyperParam, Optimizer, TransformState } from "./types.ts";

/**
 * Where the noise lives: inside the params ("official", as the original code) or only in `perturb`
 * ("exact": the params stay exact).
 */
export type VariabilityMode = "official" | "exact";

/** Options of {@linkcode weightNoise}. */
export interface WeightNoiseOptions {
  /**
   * Scale v of the noise, ≥ 0 (default 0.01): the std for "gaussian", the Laplace scale b for
   * "laplace" (std √2·v), the half-width for "uniform" (std v/√3). A schedule gives the scale of
   * the noise in the forward pass of each step. 0 is an exact no-op: no noise is drawn and the
   * updates pass through bit for bit.
   */
  variability?: HyperParam;
  /**
   * The noise reset period, in steps (default 1000, the original's name and default): every
   * `numIters` steps the noise is removed and not redrawn, so the weights after steps `numIters`,
   * `2·numIters`, … are noise-free and the next gradient is taken at them. A positive integer, or
   * `Infinity` for never (Anti-PGD). 0 is rejected.
   */
  numIters?: number;
  /** Noise law: "gaussian" (default), "laplace" or "uniform". */
  noise?: NoiseLaw;
  /** Seed of the counter-based generator, an integer in [0, 2^32). Default 0. */
  seed?: number;
  /**
   * "official" (default): the noise lives inside the params, as in the original code (`perturb` is
   * the identity, `clean` subtracts the stored noise). "exact": the params stay exact, `perturb`
   * adds the noise of the step about to be taken, `clean` is the identity. Same trajectory in exact
   * arithmetic, weight decay included: in a chain, the members before an exact-mode weight noise
   * see θ + n (the weights the gradient was taken at), as in the official code.
   */
  mode?: VariabilityMode;
}

/** The option names of {@linkcode weightNoise}. */
export const NOISE_KEYS: readonly string[] = ["variability", "numIters", "noise", "seed", "mode"];

/** The internal description of the weight-noise step. */
export function noiseImpl(who: string, o: Record<string, unknown>, fixedNumIters?: number): NoiseTransform {
  const variability = checkHyper(who, "variability", o.variability ?? 0.01, NONNEG);
  const numIters = fixedNumIters ?? o.numIters ?? 1000;
  if (
    typeof numIters !== "number" ||
    !(numIters === Infinity || (Number.isInteger(numIters) && numIters >= 1))
  ) {
    throw new RangeError(
      `${who}: numIters (the noise reset period, in steps) must be a positive integer or Infinity ` +
        `(never reset), got ${fmtValue(numIters)}`,
    );
  }
  const law = o.noise ?? "gaussian";
  if (!NOISE_LAWS.includes(law as NoiseLaw)) {
    throw new RangeError(
      `${who}: noise must be one of ${NOISE_LAWS.map((l) => JSON.stringify(l)).join(", ")}, got ${
        fmtValue(law)
      }`,
    );
  }
  const seed = o.seed ?? 0;
  if (typeof seed !== "number" || !Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) {
    throw new RangeError(`${who}: seed must be an integer in [0, 2^32), got ${fmtValue(seed)}`);
  }
  const mode = o.mode ?? "official";
  if (mode !== "official" && mode !== "exact") {
    throw new RangeError(`${who}: mode must be "official" or "exact", got ${fmtValue(mode)}`);
  }
  return {
    role: "noise",
    who,
    mode,
    law: law as NoiseLaw,
    numIters,
    seed,
    hparams: (step) => ({ variability: evalHyper(who, "variability", variability, step, NONNEG), numIters }),
  };
}

/**
 * The neural-variability step for any optimizer; it must go last in a {@linkcode chain}. In the
 * official mode, with u the incoming update, s the 1-based step and `numIters` the noise reset
 * period:
 *
 *     s % numIters ≠ 0:  n_new = noise(seed, s, path);  updates = u + (n_new − n_old);  n_old ← n_new
 *     s % numIters = 0:  updates = u − n_old;  n_old ← 0        (the weights are noise-free)
 *
 * In exact mode the updates pass through and `perturb(params, state)` returns θ + n for the step
 * about to be taken. Noise element i of the parameter at `path` on step s is element i of the
 * Philox4x32-10 stream with key (seed, hashString(path)) and counter (⌊i/4⌋, s, 0, 0), exactly as
 * `fillNoise`: the same numbers whatever other parameters exist, on every device, after a resume.
 *
 * @example
 * ```ts
 * import { adam, chain, weightNoise } from "@nvrm/core/optim";
 * const opt = chain(adam({ lr: 1e-3 }), weightNoise({ variability: 0.01, noise: "laplace", numIters: 500 }));
 * ```
 */
export function weightNoise(options: WeightNoiseOptions = {}): Optimizer<TransformState> {
  return makeNoise(noiseImpl("weightNoise", checkOptions("weightNoise", options, NOISE_KEYS)));
}
