/**
 * `@nvrm/core/optim` — optimizers as pure functions, optax style, and the variable optimizers of
 * "Artificial Neural Variability for Deep Learning" (Xie et al., Neural Computation 2021).
 *
 * An optimizer is `{ init(params), update(grads, state, params), perturb(params, state),
 * clean(params, state) }`; `update` returns `{ updates, state }` and mutates nothing;
 * `applyUpdates(params, updates)` adds the updates. Transformations compose with `chain`;
 * `weightNoise` turns any optimizer into a variable one when it goes last. `vsgd`, `vadam`
 * (official semantics and defaults of the original PyTorch code) and `antiPgd` are ready-made
 * chains. Every numeric hyperparameter takes a number or a schedule; the state is plain data that
 * `serialize`/`deserialize` round-trip bit-exactly.
 *
 * Each step runs as fused kernels of the parameter's device (CPU loops over typed arrays, or WGSL
 * dispatches on WebGPU) that draw exactly the noise {@linkcode fillNoise} draws, so a run gives the
 * same weights on both devices up to float32 rounding.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tensor } from "@nvrm/core";
 * import { applyUpdates, vsgd } from "@nvrm/core/optim";
 *
 * const opt = vsgd({ lr: 0.1, variability: 0.05, numIters: 10, seed: 0 });
 * let params = { w: tensor([1, 2], [2], { dtype: "float64" }) };
 * let state = opt.init(params);
 * for (let i = 0; i < 10; i++) {
 *   const w = opt.perturb(params, state).w.dataSync();
 *   const grads = { w: tensor(Array.from(w, (x) => 2 * x), [2], { dtype: "float64" }) }; // ∇|w|²
 *   const step = opt.update(grads, state, params);
 *   params = applyUpdates(params, step.updates);
 *   state = step.state;
 * }
 * // Noise-free weights, nearer 0; step 10 is a noise reset (numIters 10), so the params hold none now.
 * const w = opt.clean(params, state).w.dataSync();
 * assert.ok(Math.abs(w[0]) < 0.5 && Math.abs(w[1]) < 0.5);
 * assert.deepEqual(w, params.w.dataSync());
 * ```
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tensor } from "@nvrm/core";
 * import { applyUpdates, hyperparams, multiStepSchedule, vadam } from "@nvrm/core/optim";
 *
 * // VAdam in exact mode: the params stay exact, perturb() hands out θ + n for the gradient
 * const opt = vadam({
 *   lr: multiStepSchedule({ init: 1e-2, milestones: [20, 30], stepsPerEpoch: 469 }),
 *   variability: 0.01,
 *   noise: "laplace",
 *   mode: "exact",
 * });
 * let params = { w: tensor([1, -2, 3], [3], { dtype: "float64" }) };
 * let state = opt.init(params);
 * for (let i = 0; i < 5; i++) {
 *   const noisy = opt.perturb(params, state).w.dataSync();
 *   const grads = { w: tensor(Array.from(noisy, (x) => 2 * x), [3], { dtype: "float64" }) };
 *   const step = opt.update(grads, state, params);
 *   params = applyUpdates(params, step.updates);
 *   state = step.state;
 * }
 * const h = hyperparams(state); // { step: 5, lr: 0.01, b1: 0.9, …, variability: 0.01, numIters: 1000 }
 * assert.deepEqual([h.step, h.lr, h.variability, h.numIters], [5, 0.01, 0.01, 1000]);
 * ```
 *
 * @module
 */

export type {
  ChainState,
  GradientTransformation,
  HyperParam,
  LeafState,
  MaskedState,
  Optimizer,
  Schedule,
  TransformState,
  UpdateResult,
} from "./types.ts";
export { applyUpdates, chain, hyperparams } from "./transform.ts";
export { clipByGlobalNorm, clipByValue } from "./clip.ts";
export { type Mask, masked, type MaskTree } from "./masked.ts";
export { addDecayedWeights } from "./decay.ts";
export { type NonFiniteCount, nonFiniteCounts, zeroNans, type ZeroNansState } from "./zero_nans.ts";
export { sgd, type SgdOptions } from "./sgd.ts";
export { adam, type AdamOptions, adamw, type AdamWOptions } from "./adam.ts";
export { type VariabilityMode, weightNoise, type WeightNoiseOptions } from "./weight_noise.ts";
export {
  antiPgd,
  type AntiPgdOptions,
  vadam,
  type VadamOptions,
  vsgd,
  type VsgdOptions,
} from "./variable.ts";
export {
  constantSchedule,
  cosineDecaySchedule,
  joinSchedules,
  linearSchedule,
  linearWarmup,
  multiStepSchedule,
  piecewiseConstantSchedule,
  stepDecaySchedule,
  warmupCosineSchedule,
} from "./schedules.ts";
export { deserialize, serialize, serializeAsync, STATE_FORMAT_VERSION } from "./serialize.ts";
export { fillNoise, NOISE_LAWS, type NoiseLaw, type StreamKey } from "../random/noise.ts";
export {
  fromTorchOptimizerState,
  TORCH_OPTIMIZER_FORMAT,
  type TorchOptimizerCheckpoint,
  type TorchOptimizerInput,
  type TorchOptimizerSpec,
  toTorchOptimizerState,
} from "./torch_state.ts";
