/**
 * The per-device kernels of the optimizers, and how a parameter is routed to the kernels of its
 * device (the `optim` part of the device's backend).
 *
 * Every optimizer step is expressed leaf by leaf in terms of five kernels: `sgd`, `adam` (each with
 * an optional fused {@linkcode NoiseStage}, so that `vsgd`/`vadam` touch each array once), `noise`
 * (the weight-noise step after any other transformation), `perturb` (θ + n for exact mode) and
 * `addScaled` (applying updates, removing noise). The CPU kernels (in `src/cpu/optim.ts`) are loops
 * over `t.storage` typed arrays; the WebGPU kernels (in `src/webgpu/optim.ts`) are fused WGSL
 * dispatches. Each is the optional `optim` part of its device's backend, and {@linkcode optimKernels}
 * looks it up by the device of a parameter. The noise of a kernel must
 * equal `fillNoise(out, stage.law, stage.scale, stage.key)` element for element (same Philox
 * counter layout: element i comes from block `(floor(i/4), key.c1, key.c2, 0)`, lane `i % 4`).
 *
 * Kernels are pure: they allocate their outputs and never write to their inputs.
 *
 * @module
 */
import type { NoiseLaw, StreamKey } from "../random/noise.ts";
import type { Device, Tensor } from "../tensor.ts";
import { getBackend } from "../backend.ts";

/**
 * The weight-noise step fused after a base update (official mode). With u the base update of one
 * parameter array:
 *
 *     draw  (reset false, scale ≠ 0):  n_new = noise(law, scale, key);  u' = u + (n_new − n_old)
 *     reset (or scale = 0):            n_new = 0 (returned as null);     u' = u − n_old
 *
 * `n_new` is rounded to the parameter's dtype before it enters u', so that the stored noise is
 * exactly what was added. A `null` `nOld` stands for zeros.
 */
export interface NoiseStage {
  /** The law of the new noise. */
  readonly law: NoiseLaw;
  /** Its scale: the std (gaussian), the Laplace scale b, or the half-width (uniform). */
  readonly scale: number;
  /** The counter-based stream: k0 = seed, k1 = hashString(path), c1 = step, c2 = 0. */
  readonly key: StreamKey;
  /** True on every `numIters`-th step (the noise reset period): remove the old noise and draw none. */
  readonly reset: boolean;
  /** The noise currently inside the parameter (null: zeros). */
  readonly nOld: Tensor | null;
}

/** Arguments of the SGD kernel (torch.optim.SGD semantics) for one parameter array. */
export interface SgdKernelArgs {
  /** Gradient. */
  readonly g: Tensor;
  /** Parameter (needed when `weightDecay` ≠ 0, else may be null). */
  readonly p: Tensor | null;
  /** Momentum buffer (null before the first momentum step). */
  readonly buf: Tensor | null;
  /** Keep a momentum buffer (momentum ≠ 0 or scheduled). */
  readonly useMomentum: boolean;
  /** Learning rate. */
  readonly lr: number;
  /** Momentum factor. */
  readonly momentum: number;
  /** Dampening. */
  readonly dampening: number;
  /** Coupled (L2) weight decay. */
  readonly weightDecay: number;
  /** Nesterov momentum. */
  readonly nesterov: boolean;
  /** Fused weight-noise step, if any. */
  readonly noise?: NoiseStage;
}

/** Arguments of the Adam kernel (torch.optim.Adam/AdamW semantics) for one parameter array. */
export interface AdamKernelArgs {
  /** Gradient. */
  readonly g: Tensor;
  /** Parameter (needed when `weightDecay` ≠ 0, else may be null). */
  readonly p: Tensor | null;
  /** First moment (null: zeros). */
  readonly m: Tensor | null;
  /** Second moment (null: zeros). */
  readonly v: Tensor | null;
  /** Running maximum of the second moment, AMSGrad only (null: zeros). */
  readonly vmax: Tensor | null;
  /** The 1-based step number t (bias corrections use b1^t, b2^t). */
  readonly t: number;
  /** Learning rate. */
  readonly lr: number;
  /** β1. */
  readonly b1: number;
  /** β2. */
  readonly b2: number;
  /** ε. */
  readonly eps: number;
  /** Weight decay. */
  readonly weightDecay: number;
  /** Decoupled (AdamW) decay instead of L2 on the gradient. */
  readonly decoupled: boolean;
  /** AMSGrad. */
  readonly amsgrad: boolean;
  /** Fused weight-noise step, if any. */
  readonly noise?: NoiseStage;
}

/** What a base kernel returns for one parameter array. */
export interface KernelResult {
  /** The update u (add it to the parameter). */
  readonly u: Tensor;
  /** The new buffers (`momentum` for SGD; `m`, `v`, `vmax` for Adam). */
  readonly buffers: Readonly<Record<string, Tensor | null>>;
  /** The new noise n_new when a noise stage was fused (null: zeros). */
  readonly noise?: Tensor | null;
}

/** The optimizer kernels of one device. */
export interface OptimKernels {
  /**
   * SGD: `d = g + wd·p`; with momentum `buf = d` (first step) or `buf = momentum·buf +
   * (1 − dampening)·d`, then `d = nesterov ? d + momentum·buf : buf`; `u = −lr·d`; then the fused
   * noise stage if given. Buffers: `{ momentum }`.
   */
  sgd(a: SgdKernelArgs): KernelResult;
  /**
   * Adam: `g ← g + wd·p` unless decoupled; `m = b1·m + (1 − b1)·g`; `v = b2·v + (1 − b2)·g·g`;
   * `v̂ = amsgrad ? (vmax = max(vmax, v)) : v`; `denom = √v̂ / √(1 − b2^t) + eps`;
   * `s = (lr / (1 − b1^t))·m / denom`; `u = −s` (decoupled: `u = −(lr·wd)·p − s`); then the fused
   * noise stage if given. Buffers: `{ m, v }` plus `vmax` with AMSGrad.
   */
  adam(a: AdamKernelArgs): KernelResult;
  /** The weight-noise step alone, after any update u (see {@linkcode NoiseStage}). */
  noise(u: Tensor, stage: NoiseStage): { u: Tensor; noise: Tensor | null };
  /** θ + n with n = noise(law, scale, key) rounded to θ's dtype (exact mode's `perturb`). */
  perturb(p: Tensor, law: NoiseLaw, scale: number, key: StreamKey): Tensor;
  /** a + alpha·b, elementwise, same shapes (`applyUpdates` with alpha 1, `clean` with −1). */
  addScaled(a: Tensor, b: Tensor, alpha: number): Tensor;
}

/**
 * The optimizer kernels of `device`: the `optim` part of its backend. Throws when the device has no
 * backend or its backend has no optimizer kernels.
 */
export function optimKernels(device: Device): OptimKernels {
  const k = getBackend(device).optim;
  if (!k) throw new Error(`optim: the "${device}" backend has no optimizer kernels (Backend.optim)`);
  return k;
}
