/**
 * Models with state: a network built from layers, its initial params and state (two separate trees:
 * the optimizers see only the params), and its forward pass in training or evaluation mode.
 *
 * @module
 */
import type { CreateOptions } from "../creation.ts";
import type { Tensor } from "../tensor.ts";
import type { TensorTree } from "../tree.ts";
import { checkSeed, type Layer } from "./layer.ts";

/** Options of a {@linkcode StatefulModel}'s `apply`. */
export interface ApplyOptions {
  /** Training mode (batch statistics, dropout) or evaluation mode (running statistics). */
  training: boolean;
  /** The global training step, keying the dropout masks (default 0). */
  step?: number;
  /** The run's seed, keying the dropout masks (default: the model's seed). */
  seed?: number;
}

/**
 * A model with non-trainable state (such as BatchNorm's running statistics): `params` and `state`
 * are its initial trees; `apply` is the pure forward pass that returns the logits and the next
 * state; `forward` is the evaluation-mode pass with the initial state, `(params, x) → logits`, so a
 * stateful model also fits wherever a plain `{ params, forward }` model does.
 */
export interface StatefulModel<P extends TensorTree = TensorTree, S extends TensorTree = TensorTree> {
  /** Freshly initialized parameters (trainable). */
  params: P;
  /** Freshly initialized state (not trainable, not perturbed by weight noise). */
  state: S;
  /** Logits for a batch and the next state (in evaluation mode, the state given). Pure. */
  apply(params: P, state: S, x: Tensor, options: ApplyOptions): { y: Tensor; state: S };
  /** Logits in evaluation mode with the model's initial state. */
  forward(params: P, x: Tensor): Tensor;
}

/** Options of {@linkcode statefulModel}. */
export interface StatefulModelOptions extends CreateOptions {
  /** Seed of the initialization (and the default dropout seed), default 0. */
  seed?: number;
  /** The model's name, prefixed to its errors (default "model"). */
  name?: string;
  /** Brings an input batch to the layout the network computes in, or throws (default: as given). */
  input?: (x: Tensor) => Tensor;
}

/**
 * A {@linkcode StatefulModel} from a layer (usually an `nn.sequential`): initializes it at the root
 * path with the seed, and wraps its `apply` so that errors start with the model's name.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nn, randn, statefulModel } from "@nvrm/core";
 * const net = statefulModel(nn.sequential([nn.linear(4, 8), nn.batchNorm(8), nn.relu(), nn.linear(8, 2)]), { seed: 1 });
 * const r = net.apply(net.params, net.state, randn([16, 4]), { training: true, step: 0 });
 * assert.deepEqual(r.y.shape, [16, 2]);
 * assert.deepEqual(net.forward(net.params, randn([3, 4])).shape, [3, 2]);
 * ```
 */
export function statefulModel<P extends TensorTree, S extends TensorTree>(
  layer: Layer<P, S>,
  options: StatefulModelOptions = {},
): StatefulModel<P, S> {
  const name = options.name ?? "model";
  const seed = checkSeed(name, options.seed ?? 0);
  const { params, state } = layer.init(seed, "", { dtype: options.dtype, device: options.device });
  const input = options.input ?? ((x: Tensor) => x);
  const apply = (p: P, s: S, x: Tensor, o: ApplyOptions) => {
    if (o === null || typeof o !== "object" || typeof o.training !== "boolean") {
      throw new TypeError(
        `${name}: apply needs options { training: boolean, step?, seed? }, got ${JSON.stringify(o)}`,
      );
    }
    const step = o.step ?? 0;
    if (!Number.isInteger(step) || step < 0) {
      throw new RangeError(`${name}: step must be an integer ≥ 0, got ${step}`);
    }
    const runSeed = checkSeed(name, o.seed ?? seed);
    try {
      return layer.apply(p, s, input(x), { training: o.training, step, seed: runSeed, path: "" });
    } catch (e) {
      if (!(e instanceof Error) || e.message.startsWith(`${name}: `)) throw e;
      const C = e instanceof RangeError ? RangeError : e instanceof TypeError ? TypeError : Error;
      throw new C(`${name}: ${e.message}`, { cause: e });
    }
  };
  return { params, state, apply, forward: (p, x) => apply(p, state, x, { training: false }).y };
}
