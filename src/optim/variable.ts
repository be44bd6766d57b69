/**
 * The variable optimizers of Xie et al. (Neural Computation 2021) — VSGD and VAdam — and Anti-PGD,
 * as chains of a base optimizer and the weight-noise step (fused into one pass per array).
 *
 * @module
 */
import { ADAM_KEYS, adamImpl, type AdamOptions } from "./adam.ts";
import { checkOptions } from "./hyper.ts";
import { SGD_KEYS, sgdImpl, type SgdOptions } from "./sgd.ts";
import { makeBase, makeChain, makeNoise } from "./transform.ts";
import type { ChainState, Optimizer } from "./types.ts";
import { NOISE_KEYS, noiseImpl, type WeightNoiseOptions } from "./weight_noise.ts";

/** Options of {@linkcode vsgd}: the original VSGD's arguments (camelCase) plus `seed` and `mode`. */
export interface VsgdOptions extends SgdOptions, WeightNoiseOptions {}

/** Options of {@linkcode vadam}: the original VAdam's arguments (camelCase) plus `seed` and `mode`. */
export interface VadamOptions extends AdamOptions, WeightNoiseOptions {}

/** Options of {@linkcode antiPgd}: VSGD's without `numIters` (Anti-PGD never resets). */
export type AntiPgdOptions = Omit<VsgdOptions, "numIters">;

/**
 * Variable SGD (VSGD): `chain(sgd(...), weightNoise(...))`, one fused pass per parameter array.
 * Defaults as the original: `variability` 0.01, `numIters` 1000, `momentum` 0, `dampening` 0,
 * `weightDecay` 0, `noise` "gaussian", `nesterov` false; `lr` is required. `numIters` is the noise
 * reset period: every `numIters` steps the noise is removed and not redrawn (a positive integer, or
 * `Infinity` for never). Our additions: `seed` (default 0) and `mode` ("official", the default,
 * keeps the noise inside the params as the original; "exact" keeps the params exact and adds the
 * noise in `perturb`). `variability` 0 is allowed and gives exactly `sgd`.
 *
 * @example
 * ```ts
 * import { tensor } from "@nvrm/core";
 * import { applyUpdates, vsgd } from "@nvrm/core/optim";
 *
 * // minimise |w − 3|² with VSGD, then read the noise-free weights
 * const opt = vsgd({ lr: 0.1, variability: 0.01, numIters: 50, seed: 1 });
 * let params = { w: tensor([0, 0], [2], { dtype: "float64" }) };
 * let state = opt.init(params);
 * for (let i = 0; i < 200; i++) {
 *   const w = opt.perturb(params, state).w.dataSync();           // where the gradient is taken
 *   const grads = { w: tensor(Array.from(w, (x) => 2 * (x - 3)), [2], { dtype: "float64" }) };
 *   const step = opt.update(grads, state, params);
 *   params = applyUpdates(params, step.updates);
 *   state = step.state;
 * }
 * const w = opt.clean(params, state).w.dataSync();
 * if (Math.abs(w[0] - 3) > 0.05) throw new Error(`did not converge: ${w[0]}`);
 * ```
 */
export function vsgd(options: VsgdOptions): Optimizer<ChainState> {
  const o = checkOptions("vsgd", options, [...SGD_KEYS, ...NOISE_KEYS]);
  return makeChain("vsgd", [makeBase(sgdImpl("vsgd", o)), makeNoise(noiseImpl("vsgd", o))]);
}

/**
 * Variable Adam (VAdam): `chain(adam(...), weightNoise(...))`, one fused pass per parameter array.
 * Defaults as the original: `lr` 1e-3, `variability` 0.01, `numIters` 1000 (the noise reset period,
 * see {@linkcode vsgd}), `betas` [0.9, 0.999], `eps` 1e-8, `weightDecay` 0, `noise` "gaussian",
 * `amsgrad` false, `decoupled` false; plus `seed` (default 0) and `mode` ("official" or "exact",
 * see {@linkcode vsgd}).
 *
 * @example
 * ```ts
 * import { tensor } from "@nvrm/core";
 * import { applyUpdates, hyperparams, vadam } from "@nvrm/core/optim";
 *
 * const opt = vadam({ lr: 1e-2, variability: 0.01, numIters: 100, noise: "uniform", mode: "exact" });
 * let params = { w: tensor([1, 2, 3], [3], { dtype: "float64" }) };
 * let state = opt.init(params);
 * for (let i = 0; i < 10; i++) {
 *   const noisy = opt.perturb(params, state).w.dataSync(); // θ + n in exact mode
 *   const grads = { w: tensor(Array.from(noisy, (x) => 2 * x), [3], { dtype: "float64" }) };
 *   const step = opt.update(grads, state, params);
 *   params = applyUpdates(params, step.updates);
 *   state = step.state;
 * }
 * console.log(hyperparams(state).lr, opt.clean(params, state).w.shape);
 * ```
 */
export function vadam(options: VadamOptions = {}): Optimizer<ChainState> {
  const o = checkOptions("vadam", options, [...ADAM_KEYS, ...NOISE_KEYS]);
  return makeChain("vadam", [makeBase(adamImpl("vadam", o)), makeNoise(noiseImpl("vadam", o))]);
}

/**
 * Anti-correlated perturbed gradient descent (Anti-PGD, Orvieto et al. 2022): VSGD that never
 * resets its noise (`numIters`, the noise reset period, is Infinity), so the weights always carry
 * the latest noise and the increments n_t − n_{t−1} are anti-correlated. Takes VSGD's options
 * except `numIters`.
 */
export function antiPgd(options: AntiPgdOptions): Optimizer<ChainState> {
  const o = checkOptions("antiPgd", options, [...SGD_KEYS, ...NOISE_KEYS.filter((k) => k !== "numIters")]);
  return makeChain("antiPgd", [
    makeBase(sgdImpl("antiPgd", o)),
    makeNoise(noiseImpl("antiPgd", o, Infinity)),
  ]);
}
