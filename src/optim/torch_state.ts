/**
 * VSGD/VAdam optimizer state in the layout of the original PyTorch code (Xie et al.,
 * `variable_optim.VSGD` / `variable_optim.VAdam`), so that a run continues in PyTorch from where it
 * stopped here, or the other way round.
 *
 * Per parameter, the original keeps `step` (updates taken), `noise1` (the noise inside the weights
 * now), `noise2` (scratch: the last noise drawn), and `momentum_buffer` (VSGD with momentum) or
 * `exp_avg`, `exp_avg_sq`, `max_exp_avg_sq` (VAdam; the last with amsgrad). Our state maps onto it:
 * `step` ↔ the chain's step, `noise1`/`noise2` ↔ the weight-noise buffer (official mode) or the
 * noise `perturb` adds (exact mode), `momentum_buffer` ↔ `momentum`, `exp_avg`/`exp_avg_sq`/
 * `max_exp_avg_sq` ↔ `m`/`v`/`vmax`, each in the torch layout of its parameter (linear weights
 * transposed). PyTorch's weights `p` hold the noise, as in our official mode.
 *
 * What cannot carry over: the noise stream. The next noise is drawn by the continuing side's own
 * generator (torch's global RNG, or our Philox stream keyed by seed, step and path), so the
 * trajectories agree in their deterministic part (moments, momentum, noise-free weights after a
 * noise reset) but not in the noise drawn after the hand-over.
 *
 * @module
 */
import { zeros } from "../creation.ts";
import { fromTorchLayout, rebuildTree, torchEntries, type TorchLayout, toTorchLayout } from "../nn/torch.ts";
import { sub } from "../ops/elementwise.ts";
import { Tensor } from "../tensor.ts";
import { mapTree, type TensorTree } from "../tree.ts";
import type { ChainState, LeafState, TransformState } from "./types.ts";
import { vadam, type VadamOptions, vsgd, type VsgdOptions } from "./variable.ts";

/** Which original optimizer, and the options our optimizer was (or will be) built with. */
export type TorchOptimizerSpec =
  | { optimizer: "vsgd"; options: VsgdOptions }
  | { optimizer: "vadam"; options: VadamOptions };

/** A model + optimizer checkpoint in PyTorch layout (three parts, for two safetensors files). */
export interface TorchOptimizerCheckpoint {
  /**
   * The weights as the original optimizer's `p` holds them (with the current noise inside), as a
   * `state_dict` (torch names and layouts): `module.load_state_dict(...)` takes it.
   */
  model: Record<string, Tensor>;
  /**
   * Per-parameter optimizer state, keyed `"<torch parameter name>.<field>"` (`"0.weight.exp_avg"`);
   * `step` is a float64 scalar. Empty at step 0 (the original creates its state on the first step).
   */
  optimizer: Record<string, Tensor>;
  /**
   * Strings: `format` ("nvrm.torch-optimizer/1"), `optimizer` ("VSGD" or "VAdam"), `step`, `mode`,
   * `seed` and `param_group`, the JSON of the original's constructor arguments (`lr`,
   * `variability`, `num_iters`, `noise_type`, …) with the values of the last update.
   */
  metadata: Record<string, string>;
}

/** The format tag written in `metadata.format`. */
export const TORCH_OPTIMIZER_FORMAT = "nvrm.torch-optimizer/1";

const LAW_TO_TORCH: Record<string, string> = { gaussian: "Gaussian", laplace: "Laplace", uniform: "Uniform" };

function build(who: string, spec: TorchOptimizerSpec) {
  if (
    spec === null || typeof spec !== "object" || (spec.optimizer !== "vsgd" && spec.optimizer !== "vadam")
  ) {
    throw new TypeError(
      `${who}: spec must be { optimizer: "vsgd" | "vadam", options }, got ${JSON.stringify(spec)}`,
    );
  }
  const opt = spec.optimizer === "vsgd"
    ? vsgd(spec.options as VsgdOptions)
    : vadam(spec.options as VadamOptions);
  const mode = spec.options.mode ?? "official";
  return {
    opt,
    mode,
    base: spec.optimizer === "vsgd" ? "sgd" : "adam",
    torch: spec.optimizer === "vsgd" ? "VSGD" : "VAdam",
  };
}

/** The two member states of a vsgd/vadam chain state, checked. */
function members(who: string, state: unknown, base: string): [TransformState, TransformState] {
  const s = state as ChainState;
  if (
    s === null || typeof s !== "object" || s.kind !== "chain" || !Array.isArray(s.inner) ||
    s.inner.length !== 2
  ) {
    throw new TypeError(`${who}: state must be the state of a vsgd or vadam optimizer (a chain of two)`);
  }
  const [b, n] = s.inner as [TransformState, TransformState];
  if (b?.kind !== base || n?.kind !== "weightNoise") {
    throw new TypeError(
      `${who}: state is a chain of ${b?.kind} and ${n?.kind}, the spec's optimizer needs ${base} and weightNoise`,
    );
  }
  return [b, n];
}

/** The original's constructor arguments for a state (values of its last update). */
function paramGroup(spec: TorchOptimizerSpec, b: TransformState, n: TransformState): string {
  const hp = b.hparams, nh = n.hparams;
  const law = LAW_TO_TORCH[String(n.meta.law ?? spec.options.noise ?? "gaussian")];
  const numIters = nh.numIters === Infinity ? "Infinity" : JSON.stringify(nh.numIters);
  const group: Record<string, unknown> = spec.optimizer === "vsgd"
    ? {
      lr: hp.lr,
      variability: nh.variability,
      num_iters: "@NUM_ITERS@",
      momentum: hp.momentum,
      dampening: hp.dampening,
      weight_decay: hp.weightDecay,
      noise_type: law,
      nesterov: spec.options.nesterov ?? false,
    }
    : {
      lr: hp.lr,
      variability: nh.variability,
      num_iters: "@NUM_ITERS@",
      betas: [hp.b1, hp.b2],
      eps: hp.eps,
      weight_decay: hp.weightDecay,
      noise_type: law,
      amsgrad: spec.options.amsgrad ?? false,
      decoupled: spec.options.decoupled ?? false,
    };
  // Python's json reads `Infinity` (antiPgd-like runs that never reset); JSON.stringify cannot write it.
  return JSON.stringify(group).replace('"@NUM_ITERS@"', numIters);
}

function setOwn(o: Record<string, unknown>, k: string, v: unknown): void {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

/**
 * Exports a VSGD/VAdam run (the raw params and state that `update`/`fit` hand back) in the
 * original PyTorch optimizer's layout: the weights the original's `p` must hold, the per-parameter
 * state and the hyperparameters (see {@linkcode TorchOptimizerCheckpoint}). `layout` names the
 * model's parameters in PyTorch (`"mlp"`, `"lenet"` or a function, see `toTorchStateDict`); `spec`
 * is the optimizer and the options it was built with (`nesterov` and `decoupled` are read from
 * them). In exact mode the weights get the noise `perturb` would add, as the original keeps it.
 * Save the parts with `saveSafetensors`; the README shows the Python side. The noise stream does
 * not carry over (see the module doc); learning-rate schedules must be recreated in PyTorch
 * (`param_group.lr` is the last update's value).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mlp, randn } from "@nvrm/core";
 * import { applyUpdates, toTorchOptimizerState, vsgd } from "@nvrm/core/optim";
 *
 * const net = mlp([4, 8, 3], { seed: 0 });
 * const options = { lr: 0.1, momentum: 0.9, variability: 0.01, numIters: 100 };
 * const opt = vsgd(options);
 * let params = net.params, state = opt.init(params);
 * const grads = { layers: net.params.layers.map((l) => ({ w: randn(l.w.shape), b: randn(l.b.shape) })) };
 * const r = opt.update(grads, state, params);
 * params = applyUpdates(params, r.updates);
 * state = r.state;
 * const ckpt = toTorchOptimizerState("mlp", params, state, { optimizer: "vsgd", options });
 * assert.deepEqual(ckpt.optimizer["0.weight.momentum_buffer"].shape, [8, 4]); // torch [out, in]
 * assert.equal(JSON.parse(ckpt.metadata.param_group).num_iters, 100);
 * // then: await saveSafetensors("model.safetensors", ckpt.model);
 * //       await saveSafetensors("optim.safetensors", ckpt.optimizer, ckpt.metadata);
 * ```
 */
export function toTorchOptimizerState(
  layout: TorchLayout,
  rawParams: TensorTree,
  state: ChainState,
  spec: TorchOptimizerSpec,
): TorchOptimizerCheckpoint {
  const who = "toTorchOptimizerState";
  const { opt, mode, base, torch } = build(who, spec);
  const [b, n] = members(who, state, base);
  const weights = opt.perturb(rawParams, state); // checks the state against the options and the tree
  const entries = torchEntries(who, layout, rawParams);
  // The noise inside torch's p: the stored buffer (official) or what perturb adds (exact).
  const exactNoise = mode === "exact"
    ? new Map(
      torchEntries(
        who,
        layout,
        opt.perturb(mapTree(rawParams, (t) => zeros(t.shape, { dtype: t.dtype, device: t.device })), state),
      )
        .map((e) => [e.path, e.tensor]),
    )
    : undefined;
  const model: Record<string, Tensor> = {};
  const optimizer: Record<string, Tensor> = {};
  const wmap = new Map(torchEntries(who, layout, weights).map((e) => [e.path, e.tensor]));
  const step = b.step;
  for (const e of entries) {
    setOwn(model, e.name, toTorchLayout(e, wmap.get(e.path)!));
    if (step === 0) continue;
    const like = (t: Tensor | null | undefined) =>
      toTorchLayout(e, t ?? zeros(e.tensor.shape, { dtype: e.tensor.dtype, device: e.tensor.device }));
    const put = (field: string, t: Tensor) => setOwn(optimizer, `${e.name}.${field}`, t);
    put("step", new Tensor(new Float64Array([step]), [], "float64", "cpu"));
    const noise = like(mode === "exact" ? exactNoise!.get(e.path) : n.leaves[e.path].buffers.noise);
    put("noise1", noise);
    put("noise2", noise);
    const bufs = b.leaves[e.path].buffers;
    if (base === "sgd") {
      if (bufs.momentum) put("momentum_buffer", like(bufs.momentum));
    } else {
      put("exp_avg", like(bufs.m));
      put("exp_avg_sq", like(bufs.v));
      if ("vmax" in bufs) put("max_exp_avg_sq", like(bufs.vmax));
    }
  }
  const metadata: Record<string, string> = {
    format: TORCH_OPTIMIZER_FORMAT,
    optimizer: torch,
    step: String(step),
    mode,
    seed: String(n.meta.seed),
    param_group: paramGroup(spec, b, n),
  };
  return { model, optimizer, metadata };
}

/** Input of {@linkcode fromTorchOptimizerState}: the parts of a {@linkcode TorchOptimizerCheckpoint}. */
export interface TorchOptimizerInput {
  /** The module's `state_dict` (torch names and layouts), e.g. `(await loadSafetensors(path)).tree`. */
  model: Readonly<Record<string, Tensor>>;
  /** The per-parameter optimizer state, keyed `"<torch parameter name>.<field>"`. */
  optimizer: Readonly<Record<string, Tensor>>;
  /** The optimizer file's metadata; when it names an `optimizer`, it must be the spec's. */
  metadata?: Readonly<Record<string, string>>;
}

const FIELDS: Record<string, readonly string[]> = {
  sgd: ["step", "noise1", "noise2", "momentum_buffer"],
  adam: ["step", "noise1", "noise2", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
};

/**
 * Imports a run saved in the original PyTorch layout (by the README's Python snippet, or by
 * {@linkcode toTorchOptimizerState}): returns the raw params and the optimizer state to continue
 * with `opt.update` or `fit` (`rawParams`, `state`), for an optimizer built from `spec`. `template`
 * is the model's params tree (shapes, dtypes and devices to check against and load into). Every
 * parameter must have the same `step` (the original keeps one per parameter; ours is one counter);
 * every field the spec's optimizer needs must be there and nothing else. Official mode keeps
 * torch's noise in the weights and removes it at the next step, as the original would; exact mode
 * takes the weights minus `noise1` (noise-free, up to rounding) and draws its own noise from then
 * on. The hyperparameter record (`hyperparams(state)`) takes the file's `param_group` values.
 */
export function fromTorchOptimizerState<P extends TensorTree>(
  layout: TorchLayout,
  checkpoint: TorchOptimizerInput,
  template: P,
  spec: TorchOptimizerSpec,
): { rawParams: P; state: ChainState } {
  const who = "fromTorchOptimizerState";
  const { opt, mode, base, torch } = build(who, spec);
  if (checkpoint === null || typeof checkpoint !== "object") {
    throw new TypeError(`${who}: checkpoint must be { model, optimizer, metadata? }, got ${checkpoint}`);
  }
  const meta = checkpoint.metadata ?? {};
  if (meta.optimizer !== undefined && meta.optimizer !== torch) {
    throw new Error(`${who}: the checkpoint is for ${meta.optimizer}, the spec asks for ${torch}`);
  }
  const state0 = opt.init(template);
  const [b0, n0] = members(who, state0, base);
  const entries = torchEntries(who, layout, template);
  const sd = checkpoint.optimizer ?? {};
  const model = checkpoint.model;
  if (model === null || typeof model !== "object") {
    throw new TypeError(`${who}: checkpoint.model must be a state dict`);
  }
  // Keys: each must belong to a parameter and be a field of this optimizer.
  const known = new Set<string>();
  for (const e of entries) for (const f of FIELDS[base]) known.add(`${e.name}.${f}`);
  for (const k of Object.keys(sd)) {
    if (!known.has(k)) {
      throw new Error(
        `${who}: optimizer key "${k}" is not a ${torch} field (${
          FIELDS[base].join(", ")
        }) of a model parameter`,
      );
    }
  }
  const has = (e: { name: string }, f: string) => Object.hasOwn(sd, `${e.name}.${f}`);
  // One step for all.
  const withStep = entries.filter((e) => has(e, "step"));
  if (withStep.length !== 0 && withStep.length !== entries.length) {
    const missing = entries.find((e) => !has(e, "step"))!;
    throw new Error(
      `${who}: parameter "${missing.name}" has no optimizer state but others do (a parameter that never ` +
        `got a gradient in PyTorch); our optimizer keeps one step for all parameters`,
    );
  }
  let step = 0;
  for (const e of withStep) {
    const t = sd[`${e.name}.step`];
    if (!(t instanceof Tensor) || t.size !== 1) {
      throw new TypeError(`${who}: "${e.name}.step" must be a scalar tensor`);
    }
    const s = t.dataSync()[0];
    if (!Number.isSafeInteger(s) || s < 1) {
      throw new RangeError(`${who}: "${e.name}.step" is ${s}, expected an integer ≥ 1`);
    }
    if (e !== withStep[0] && s !== step) {
      throw new Error(
        `${who}: "${e.name}.step" is ${s} but "${withStep[0].name}.step" is ${step}; one step for all`,
      );
    }
    step = s;
  }
  const weights = new Map<string, Tensor>();
  const bleaves: Record<string, LeafState> = {}, nleaves: Record<string, LeafState> = {};
  for (const e of entries) {
    const key = (f: string) => `${e.name}.${f}`;
    if (!Object.hasOwn(model, e.name)) {
      throw new Error(`${who}: the model state dict has no "${e.name}" (our "${e.path}")`);
    }
    const w = fromTorchLayout(who, `model "${e.name}"`, e, model[e.name], e.tensor);
    const read = (f: string, required: boolean): Tensor | null => {
      if (!has(e, f)) {
        if (required && step > 0) throw new Error(`${who}: optimizer key "${key(f)}" is missing`);
        return null;
      }
      return fromTorchLayout(who, `optimizer "${key(f)}"`, e, sd[key(f)], e.tensor);
    };
    const noise1 = read("noise1", true);
    read("noise2", false); // scratch in the original: checked, not kept
    const bufs0 = b0.leaves[e.path].buffers;
    const bufs: Record<string, Tensor | null> = {};
    if (base === "sgd") {
      const mb = read("momentum_buffer", false);
      if ("momentum" in bufs0) bufs.momentum = mb;
      else if (mb) {
        throw new Error(
          `${who}: "${key("momentum_buffer")}" is in the file but the options have no momentum`,
        );
      }
    } else {
      bufs.m = read("exp_avg", true);
      bufs.v = read("exp_avg_sq", true);
      const vmax = read("max_exp_avg_sq", false);
      if ("vmax" in bufs0) {
        if (step > 0 && !vmax) {
          throw new Error(`${who}: amsgrad needs "${key("max_exp_avg_sq")}", which is missing`);
        }
        bufs.vmax = vmax;
      } else if (vmax) {
        throw new Error(`${who}: "${key("max_exp_avg_sq")}" is in the file but amsgrad is off`);
      }
    }
    bleaves[e.path] = freezeLeaf(b0.leaves[e.path], bufs);
    if (mode === "official") {
      nleaves[e.path] = freezeLeaf(n0.leaves[e.path], { noise: noise1 });
      weights.set(e.path, w);
    } else {
      nleaves[e.path] = freezeLeaf(n0.leaves[e.path], {});
      weights.set(e.path, noise1 ? sub(w, noise1) : w);
    }
  }
  const group = parseGroup(who, meta.param_group);
  const bh = { ...b0.hparams }, nh = { ...n0.hparams };
  if (group) {
    const num = (k: string) => (typeof group[k] === "number" ? group[k] as number : undefined);
    const set = (o: Record<string, number>, ours: string, v: number | undefined) => {
      if (v !== undefined && ours in o) o[ours] = v;
    };
    set(bh, "lr", num("lr"));
    set(bh, "momentum", num("momentum"));
    set(bh, "dampening", num("dampening"));
    set(bh, "weightDecay", num("weight_decay"));
    set(bh, "eps", num("eps"));
    if (Array.isArray(group.betas)) {
      set(bh, "b1", group.betas[0] as number);
      set(bh, "b2", group.betas[1] as number);
    }
    set(nh, "variability", num("variability"));
  }
  const fz = Object.freeze;
  const bs: TransformState = fz({ kind: b0.kind, step, hparams: fz(bh), meta: b0.meta, leaves: fz(bleaves) });
  const ns: TransformState = fz({ kind: n0.kind, step, hparams: fz(nh), meta: n0.meta, leaves: fz(nleaves) });
  return {
    rawParams: rebuildTree(template, weights),
    state: fz({ kind: "chain", inner: fz([bs, ns]) }) as ChainState,
  };
}

function freezeLeaf(ls: LeafState, buffers: Record<string, Tensor | null>): LeafState {
  return Object.freeze({
    shape: ls.shape,
    dtype: ls.dtype,
    device: ls.device,
    buffers: Object.freeze(buffers),
  });
}

function parseGroup(who: string, text: string | undefined): Record<string, unknown> | undefined {
  if (text === undefined) return undefined;
  try {
    // Python's json writes Infinity / NaN for non-finite floats.
    const v = JSON.parse(text.replace(/\bInfinity\b/g, '"Infinity"').replace(/\bNaN\b/g, '"NaN"'));
    if (v === null || typeof v !== "object" || Array.isArray(v)) throw new Error("not an object");
    return v as Record<string, unknown>;
  } catch (e) {
    throw new Error(`${who}: metadata param_group is not a JSON object (${(e as Error).message})`);
  }
}
