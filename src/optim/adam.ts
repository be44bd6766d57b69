/**
 * Adam, AMSGrad and AdamW: `torch.optim.Adam` / `torch.optim.AdamW` semantics, as pure gradient
 * transformations.
 *
 * @module
 */
import type { Tensor } from "../tensor.ts";
import { checkBool, checkHyper, checkOptions, evalHyper, fmtValue, NONNEG, POSITIVE, UNIT } from "./hyper.ts";
import { type BaseImpl, makeBase } from "./transform.ts";
import type { HyperParam, Optimizer, TransformState } from "./types.ts";

/** Options of {@linkcode adam} (torch.optim.Adam's, camelCase). */
export interface AdamOptions {
  /** Learning rate, ≥ 0. Default 1e-3. */
  lr?: HyperParam;
  /** `[β1, β2]`, each in [0, 1). Default `[0.9, 0.999]`. */
  betas?: readonly [HyperParam, HyperParam];
  /** ε added to the denominator, > 0. Default 1e-8. */
  eps?: HyperParam;
  /** Weight decay, ≥ 0. Default 0. Coupled (L2 on the gradient) unless `decoupled`. */
  weightDecay?: HyperParam;
  /** AMSGrad: normalise by the running maximum of the second moment. Default false. */
  amsgrad?: boolean;
  /** Decoupled weight decay (AdamW): `p ← p·(1 − lr·wd)` instead of L2. Default false. */
  decoupled?: boolean;
}

/** The option names of {@linkcode adam}. */
export const ADAM_KEYS: readonly string[] = ["lr", "betas", "eps", "weightDecay", "amsgrad", "decoupled"];

/** The internal description of Adam (shared by `adam`, `adamw`, `vadam`). */
export function adamImpl(
  who: string,
  o: Record<string, unknown>,
  defaults: { weightDecay?: number; decoupled?: boolean } = {},
): BaseImpl {
  const lr = checkHyper(who, "lr", o.lr ?? 1e-3, NONNEG);
  const betas = o.betas ?? [0.9, 0.999];
  if (!Array.isArray(betas) || betas.length !== 2) {
    throw new TypeError(`${who}: betas must be a pair [b1, b2], got ${fmtValue(betas)}`);
  }
  const b1 = checkHyper(who, "betas[0]", betas[0], UNIT);
  const b2 = checkHyper(who, "betas[1]", betas[1], UNIT);
  const eps = checkHyper(who, "eps", o.eps ?? 1e-8, POSITIVE);
  const weightDecay = checkHyper(who, "weightDecay", o.weightDecay ?? defaults.weightDecay ?? 0, NONNEG);
  const amsgrad = checkBool(who, "amsgrad", o.amsgrad ?? false);
  const decoupled = checkBool(who, "decoupled", o.decoupled ?? defaults.decoupled ?? false);
  return {
    role: "base",
    kind: "adam",
    who,
    meta: { amsgrad },
    hparams(step) {
      return {
        lr: evalHyper(who, "lr", lr, step, NONNEG),
        b1: evalHyper(who, "betas[0]", b1, step, UNIT),
        b2: evalHyper(who, "betas[1]", b2, step, UNIT),
        eps: evalHyper(who, "eps", eps, step, POSITIVE),
        weightDecay: evalHyper(who, "weightDecay", weightDecay, step, NONNEG),
      };
    },
    initBuffers: (
      _p: Tensor,
    ): Record<string, Tensor | null> => (amsgrad ? { m: null, v: null, vmax: null } : { m: null, v: null }),
    needsParams: (hp) => hp.weightDecay !== 0,
    leaf(k, hp, t, g, p, buffers, noise) {
      return k.adam({
        g,
        p,
        m: buffers.m ?? null,
        v: buffers.v ?? null,
        vmax: buffers.vmax ?? null,
        t,
        lr: hp.lr,
        b1: hp.b1,
        b2: hp.b2,
        eps: hp.eps,
        weightDecay: hp.weightDecay,
        decoupled,
        amsgrad,
        noise,
      });
    },
  };
}

/**
 * Adam (torch.optim.Adam), with AMSGrad and coupled (L2) or decoupled (AdamW) weight decay:
 *
 *     g ← g + wd·p                      (coupled)      or  updates += −lr·wd·p  (decoupled)
 *     m = b1·m + (1 − b1)·g ;  v = b2·v + (1 − b2)·g²
 *     v̂ = amsgrad ? (vmax = max(vmax, v)) : v
 *     updates = −(lr / (1 − b1^t))·m / (√v̂ / √(1 − b2^t) + eps)
 *
 * Every numeric option takes a number or a schedule. State buffers: `m`, `v` (and `vmax`).
 *
 * @example
 * ```ts
 * import { tensor } from "@nvrm/core";
 * import { adam, applyUpdates } from "@nvrm/core/optim";
 * const opt = adam({ lr: 1e-3, amsgrad: true });
 * let params = { w: tensor([1, -1]) };
 * const state = opt.init(params);
 * const step = opt.update({ w: tensor([0.5, -0.5]) }, state, params);
 * params = applyUpdates(params, step.updates);
 * ```
 */
export function adam(options: AdamOptions = {}): Optimizer<TransformState> {
  return makeBase(adamImpl("adam", checkOptions("adam", options, ADAM_KEYS)));
}

/** Options of {@linkcode adamw}: Adam's, without `decoupled` (always true). */
export type AdamWOptions = Omit<AdamOptions, "decoupled">;

/**
 * AdamW (torch.optim.AdamW): {@linkcode adam} with decoupled weight decay, default
 * `weightDecay` 1e-2.
 */
export function adamw(options: AdamWOptions = {}): Optimizer<TransformState> {
  const keys = ADAM_KEYS.filter((k) => k !== "decoupled");
  return makeBase(
    adamImpl("adamw", checkOptions("adamw", options, keys), { weightDecay: 1e-2, decoupled: true }),
  );
}
