/**
 * Stochastic gradient descent with momentum, dampening, Nesterov momentum and coupled (L2) weight
 * decay: `torch.optim.SGD` semantics, as a pure gradient transformation.
 *
 * @module
 */
import type { Tensor } from "../tensor.ts";
import {
  checkBool,
  checkHyper,
  checkOptions,
  evalHyper,
  fmtValue,
  NONNEG,
  UNIT,
  UNIT_CLOSED,
} from "./hyper.ts";
import { type BaseImpl, makeBase } from "./transform.ts";
import type { HyperParam, Optimizer, TransformState } from "./types.ts";

/** Options of {@linkcode sgd} (torch.optim.SGD's, camelCase). */
export interface SgdOptions {
  /** Learning rate (required), ≥ 0. */
  lr: HyperParam;
  /** Momentum factor, in [0, 1). Default 0 (no momentum buffer). */
  momentum?: HyperParam;
  /** Dampening of the momentum, in [0, 1]. Default 0. */
  dampening?: HyperParam;
  /** Coupled weight decay: adds `weightDecay·p` to the gradient. ≥ 0, default 0. */
  weightDecay?: HyperParam;
  /** Nesterov momentum; needs momentum > 0 and dampening = 0. Default false. */
  nesterov?: boolean;
}

/** The option names of {@linkcode sgd}. */
export const SGD_KEYS: readonly string[] = ["lr", "momentum", "dampening", "weightDecay", "nesterov"];

/** The internal description of SGD (shared by `sgd`, `vsgd`, `antiPgd`). */
export function sgdImpl(who: string, o: Record<string, unknown>): BaseImpl {
  if (o.lr === undefined) {
    throw new TypeError(`${who}: lr is required (a finite number >= 0 or a schedule), got undefined`);
  }
  const lr = checkHyper(who, "lr", o.lr, NONNEG);
  const momentum = checkHyper(who, "momentum", o.momentum ?? 0, UNIT);
  const dampening = checkHyper(who, "dampening", o.dampening ?? 0, UNIT_CLOSED);
  const weightDecay = checkHyper(who, "weightDecay", o.weightDecay ?? 0, NONNEG);
  const nesterov = checkBool(who, "nesterov", o.nesterov ?? false);
  const checkNesterov = (m: number, d: number, extra: string) => {
    if (nesterov && (!(m > 0) || d !== 0)) {
      throw new RangeError(
        `${who}: nesterov needs momentum > 0 and dampening = 0, got momentum ${fmtValue(m)} and dampening ${
          fmtValue(d)
        }${extra}`,
      );
    }
  };
  if (typeof momentum === "number" && typeof dampening === "number") checkNesterov(momentum, dampening, "");
  const useMomentum = typeof momentum === "function" || momentum !== 0;
  return {
    role: "base",
    kind: "sgd",
    who,
    meta: { momentum: useMomentum },
    hparams(step) {
      const hp = {
        lr: evalHyper(who, "lr", lr, step, NONNEG),
        momentum: evalHyper(who, "momentum", momentum, step, UNIT),
        dampening: evalHyper(who, "dampening", dampening, step, UNIT_CLOSED),
        weightDecay: evalHyper(who, "weightDecay", weightDecay, step, NONNEG),
      };
      if (typeof momentum === "function" || typeof dampening === "function") {
        checkNesterov(hp.momentum, hp.dampening, ` (schedule values at step ${step})`);
      }
      return hp;
    },
    initBuffers: (_p: Tensor): Record<string, Tensor | null> => (useMomentum ? { momentum: null } : {}),
    needsParams: (hp) => hp.weightDecay !== 0,
    leaf(k, hp, _t, g, p, buffers, noise) {
      return k.sgd({
        g,
        p,
        buf: buffers.momentum ?? null,
        useMomentum,
        lr: hp.lr,
        momentum: hp.momentum,
        dampening: hp.dampening,
        weightDecay: hp.weightDecay,
        nesterov,
        noise,
      });
    },
  };
}

/**
 * SGD with momentum, dampening, Nesterov momentum and coupled weight decay (torch.optim.SGD):
 *
 *     d = g + wd·p
 *     buf = d (first step), then buf = momentum·buf + (1 − dampening)·d     (momentum ≠ 0)
 *     d = nesterov ? d + momentum·buf : buf
 *     updates = −lr·d
 *
 * Every numeric option takes a number or a schedule. State buffers: `momentum` per parameter.
 *
 * @example
 * ```ts
 * import { tensor } from "@nvrm/core";
 * import { applyUpdates, sgd } from "@nvrm/core/optim";
 * const opt = sgd({ lr: 0.1, momentum: 0.9, nesterov: true });
 * let params = { w: tensor([1, -1]) };
 * let state = opt.init(params);
 * const step = opt.update({ w: tensor([0.5, -0.5]) }, state, params);
 * params = applyUpdates(params, step.updates);
 * state = step.state;
 * ```
 */
export function sgd(options: SgdOptions): Optimizer<TransformState> {
  return makeBase(sgdImpl("sgd", checkOptions("sgd", options, SGD_KEYS)));
}
