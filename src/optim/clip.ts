/**
 * Gradient clipping: by the global norm of the whole tree and by value, element by element. Both
 * are composed from ops, so they run on every device, and go before the base optimizer in a
 * {@linkcode chain}.
 *
 * @module
 */
import { add, div, maximum, minimum, mul, sqrt, square, sum } from "../ops/mod.ts";
import type { Tensor } from "../tensor.ts";
import { checkHyper, evalHyper, POSITIVE } from "./hyper.ts";
import { makeLeafwise } from "./leafwise.ts";
import type { GradientTransformation, HyperParam, TransformState } from "./types.ts";

/**
 * Clips the gradients by their global norm (optax's `clip_by_global_norm`,
 * `torch.nn.utils.clip_grad_norm_`): with ‖g‖ = √(Σ over every leaf and element of g²) and
 * c = `maxNorm`,
 *
 *     updates = g · c / max(‖g‖, c)        (= g when ‖g‖ ≤ c, bit for bit; else rescaled to norm c)
 *
 * `maxNorm` is a finite number > 0 or a schedule. Every leaf must have the same dtype and device
 * (one norm is computed for the tree). A NaN or infinite entry anywhere makes the norm non-finite and
 * every update non-finite; put {@linkcode zeroNans} before it to drop such entries. State: the step
 * counter and the last `maxNorm` (no buffers).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tensor } from "@nvrm/core";
 * import { clipByGlobalNorm } from "@nvrm/core/optim";
 * const clip = clipByGlobalNorm(5);
 * const grads = { a: tensor([6], [1], { dtype: "float64" }), b: tensor([8], [1], { dtype: "float64" }) };
 * const { updates } = clip.update(grads, clip.init(grads)); // ‖g‖ = 10 → scaled by 5/10
 * assert.deepEqual([...updates.a.dataSync(), ...updates.b.dataSync()], [3, 4]);
 * ```
 */
export function clipByGlobalNorm(maxNorm: HyperParam): GradientTransformation<TransformState> {
  const who = "clipByGlobalNorm";
  const c = checkHyper(who, "maxNorm", maxNorm, POSITIVE);
  return makeLeafwise({
    kind: who,
    hparams: (step) => ({ maxNorm: evalHyper(who, "maxNorm", c, step, POSITIVE) }),
    apply({ grads, hp }) {
      const entries = [...grads];
      if (entries.length === 0) return { updates: grads };
      const [p0, g0] = entries[0];
      let sq: Tensor | null = null;
      for (const [path, g] of entries) {
        if (g.dtype !== g0.dtype || g.device !== g0.device) {
          throw new TypeError(
            `${who}.update: one norm needs one dtype and device, but the leaf at path ${
              JSON.stringify(path)
            } is ${g.dtype} on ${g.device} and the one at path ${
              JSON.stringify(p0)
            } is ${g0.dtype} on ${g0.device}`,
          );
        }
        const s = sum(square(g));
        sq = sq === null ? s : add(sq, s);
      }
      const factor = div(hp.maxNorm, maximum(sqrt(sq!), hp.maxNorm));
      return { updates: new Map(entries.map(([path, g]) => [path, mul(g, factor)])) };
    },
  });
}

/**
 * Clips every entry of the gradients to [−maxAbs, maxAbs] (optax's `clip`,
 * `torch.nn.utils.clip_grad_value_`):
 *
 *     updates = min(max(g, −maxAbs), maxAbs)         (±Infinity becomes ±maxAbs)
 *
 * One symmetric bound, as both of those: an asymmetric clip of a gradient would bias its direction.
 * `maxAbs` is a finite number > 0 or a schedule. NaN entries are not a number to clip (on the CPU
 * they stay NaN; on WebGPU `min`/`max` of a NaN is up to the driver); put {@linkcode zeroNans} first
 * to replace them. State: the step counter and the last `maxAbs` (no buffers).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tensor } from "@nvrm/core";
 * import { clipByValue } from "@nvrm/core/optim";
 * const clip = clipByValue(0.5);
 * const g = { w: tensor([-2, 0.25, Infinity], [3], { dtype: "float64" }) };
 * assert.deepEqual([...clip.update(g, clip.init(g)).updates.w.dataSync()], [-0.5, 0.25, 0.5]);
 * ```
 */
export function clipByValue(maxAbs: HyperParam): GradientTransformation<TransformState> {
  const who = "clipByValue";
  const c = checkHyper(who, "maxAbs", maxAbs, POSITIVE);
  return makeLeafwise({
    kind: who,
    hparams: (step) => ({ maxAbs: evalHyper(who, "maxAbs", c, step, POSITIVE) }),
    apply({ grads, hp }) {
      const m = hp.maxAbs;
      return { updates: new Map([...grads].map(([path, g]) => [path, minimum(maximum(g, -m), m)])) };
    },
  });
}
