/**
 * `addDecayedWeights`: the weight-decay term as a transformation of its own (optax's
 * `add_decayed_weights`), so that it can be masked.
 *
 * @module
 */
import { checkHyper, evalHyper, NONNEG } from "./hyper.ts";
import { optimKernels } from "./fused_ops.ts";
import { makeLeafwise } from "./leafwise.ts";
import { type Mask, masked } from "./masked.ts";
import type { GradientTransformation, HyperParam } from "./types.ts";

/**
 * Adds the decayed weights to the incoming updates (optax's `add_decayed_weights`): with p the
 * params and wd = `weightDecay`,
 *
 *     updates = u + wd·p
 *
 * Placed before a base optimizer it is L2 weight decay on the gradient:
 * `chain(addDecayedWeights(wd), sgd({ lr }))` steps exactly as `sgd({ lr, weightDecay: wd })`
 * (torch.optim.SGD's `weight_decay`), and with `mask` only on the parameters the mask selects
 * (see {@linkcode masked}: a function `(path, leaf) => boolean` or a tree of booleans), e.g. not on
 * biases and normalization parameters. For decoupled decay (AdamW) on a parameter group, mask the
 * optimizer itself: `chain(masked(adamw({ lr, weightDecay }), isWeight), masked(adam({ lr }), isOther))`.
 * In a chain ending with exact-mode weight noise, p is θ + n, the weights the gradient was taken
 * at (as the built-in weight decay). `weightDecay` is a finite number ≥ 0 or a schedule; the update
 * reads the params (`update(grads, state, params)`) unless it is 0. State: the step counter and
 * the last value, under the name `addDecayedWeights` in {@linkcode hyperparams}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tensor } from "@nvrm/core";
 * import { addDecayedWeights, chain, sgd } from "@nvrm/core/optim";
 *
 * // no decay on the bias: the mask is a tree of booleans shaped like the params
 * const opt = chain(addDecayedWeights(0.5, { w: true, b: false }), sgd({ lr: 0.1 }));
 * const params = { w: tensor([2], [1], { dtype: "float64" }), b: tensor([2], [1], { dtype: "float64" }) };
 * const grads = { w: tensor([1], [1], { dtype: "float64" }), b: tensor([1], [1], { dtype: "float64" }) };
 * const { updates } = opt.update(grads, opt.init(params), params);
 * assert.deepEqual([updates.w.dataSync()[0], updates.b.dataSync()[0]], [-0.2, -0.1]); // −0.1·(1 + 0.5·2), −0.1·1
 * ```
 */
export function addDecayedWeights(weightDecay: HyperParam, mask?: Mask): GradientTransformation<unknown> {
  const who = "addDecayedWeights";
  const wd = checkHyper(who, "weightDecay", weightDecay, NONNEG);
  const t = makeLeafwise({
    kind: who,
    hparams: (step) => ({ addDecayedWeights: evalHyper(who, "weightDecay", wd, step, NONNEG) }),
    readsParams: (hp) => hp.addDecayedWeights !== 0,
    apply({ grads, params, hp }) {
      const c = hp.addDecayedWeights;
      if (c === 0) return { updates: grads };
      return {
        updates: new Map(
          [...grads].map(([path, u]) => [path, optimKernels(u.device).addScaled(u, params!.get(path)!, c)]),
        ),
      };
    },
  });
  return mask === undefined ? t : masked(t, mask);
}
