/**
 * The transformation machinery: the internal protocol of the built-in transformations, the
 * leaf-by-leaf drivers (with the fused base + noise step), {@linkcode chain},
 * {@linkcode applyUpdates} and {@linkcode hyperparams}.
 *
 * One file (about 500 lines) because it is one protocol: the base and noise drivers, `chain`'s
 * fusion of a base step with the noise stage after it, and the state checks all read and write
 * the same private state layout (`newState`, `checkState`, the `IMPL` descriptions); split, that
 * layout would have to be exported to every part.
 *
 * @module
 */
import type { NoiseLaw } from "../random/noise.ts";
import { hashString } from "../random/philox.ts";
import { fmtShape, sameShape, type Tensor } from "../tensor.ts";
import { mapTree, type TensorTree } from "../tree.ts";
import { fmtValue } from "./hyper.ts";
import { type KernelResult, type NoiseStage, type OptimKernels, optimKernels } from "./fused_ops.ts";
import { checkTree, initLeaves, leafMap, withBuffers } from "./tree_check.ts";
import type {
  ChainState,
  GradientTransformation,
  LeafState,
  Optimizer,
  TransformState,
  UpdateResult,
} from "./types.ts";

/** Key of the internal description a built-in transformation carries (for fusion in `chain`). */
export const IMPL: unique symbol = Symbol("nvrm.optim.impl");

/** Internal description of a base transformation (`sgd`, `adam`). */
export interface BaseImpl {
  /** Marks a base transformation. */
  readonly role: "base";
  /** "sgd" or "adam". */
  readonly kind: string;
  /** Name for errors ("vsgd", "adam", …). */
  readonly who: string;
  /** Configuration recorded in (and checked against) the state. */
  readonly meta: Readonly<Record<string, string | number | boolean>>;
  /** The checked hyperparameter values for the update with 0-based index `step`. */
  hparams(step: number): Record<string, number>;
  /** Initial buffers of one parameter. */
  initBuffers(p: Tensor): Record<string, Tensor | null>;
  /** Whether this update reads the params. */
  needsParams(hp: Record<string, number>): boolean;
  /** One parameter array, on its device's kernels, with an optional fused noise stage. */
  leaf(
    k: OptimKernels,
    hp: Record<string, number>,
    t: number,
    g: Tensor,
    p: Tensor | null,
    buffers: Readonly<Record<string, Tensor | null>>,
    noise: NoiseStage | undefined,
  ): KernelResult;
}

/**
 * Internal description of the weight-noise transformation: the noise stage of a chain (built by
 * `makeNoise`), as opposed to a {@linkcode BaseImpl} base update.
 */
export interface NoiseTransform {
  /** Marks the noise transformation. */
  readonly role: "noise";
  /** Name for errors. */
  readonly who: string;
  /** "official" (noise inside the params) or "exact" (params exact, noise added by `perturb`). */
  readonly mode: "official" | "exact";
  /** Noise law. */
  readonly law: NoiseLaw;
  /** The noise reset period: every `numIters` steps the noise is removed and not redrawn (∞: never). */
  readonly numIters: number;
  /** Seed used by `init`. */
  readonly seed: number;
  /** `{ variability, numIters }` for the forward pass of the step with 0-based index `step`. */
  hparams(step: number): Record<string, number>;
}

type Impl = BaseImpl | NoiseTransform;
type WithImpl = { [IMPL]?: Impl; [TRAITS]?: Traits };

/**
 * Key of the facts about a transformation that {@linkcode chain} needs and cannot see from the
 * outside (the op-composed transformations, `masked` and chains carry them).
 */
export const TRAITS: unique symbol = Symbol("nvrm.optim.traits");

/** What {@linkcode chain} needs to know about a member. Internal. */
export interface Traits {
  /** Whether the next update, from `state`, reads the params (weight decay does). */
  readsParams(state: unknown): boolean;
  /** Whether it carries weight noise (then it must be the last member of a chain). */
  readonly noise: boolean;
}

/**
 * The traits of any transformation: from its built-in description, its own `[TRAITS]`, or, for a
 * transformation we know nothing about, the safe guesses (reads the params, carries no noise).
 */
export function traitsOf(t: unknown): Traits {
  const w = t as WithImpl;
  if (w?.[TRAITS]) return w[TRAITS];
  const a = w?.[IMPL];
  if (a?.role === "base") {
    return { readsParams: (s) => a.needsParams(a.hparams((s as TransformState).step)), noise: false };
  }
  if (a?.role === "noise") return { readsParams: () => false, noise: true };
  return { readsParams: () => true, noise: false };
}

const freeze = Object.freeze;

/** Throws unless `state` is a built-in state of `kind` whose configuration matches `meta`. */
export function checkState(
  who: string,
  state: unknown,
  kind: string,
  meta: Readonly<Record<string, unknown>>,
): asserts state is TransformState {
  const s = state as TransformState;
  if (s === null || typeof s !== "object" || s.kind !== kind) {
    const got = s !== null && typeof s === "object" && "kind" in s
      ? `a ${JSON.stringify(s.kind)} state`
      : fmtValue(s);
    throw new TypeError(`${who}: state must be a ${JSON.stringify(kind)} state (from init), got ${got}`);
  }
  if (!Number.isInteger(s.step) || s.step < 0 || typeof s.leaves !== "object" || s.leaves === null) {
    throw new TypeError(
      `${who}: state is malformed (step ${fmtValue(s.step)}); use the state returned by init/update`,
    );
  }
  for (const [k, v] of Object.entries(meta)) {
    if (s.meta?.[k] !== v) {
      throw new Error(
        `${who}: the state was made with ${k} ${fmtValue(s.meta?.[k])}, this optimizer has ${k} ${
          fmtValue(v)
        }; build the optimizer with ${k} ${
          fmtValue(s.meta?.[k])
        } to continue from this state, or start a new one with init`,
      );
    }
  }
}

/** A frozen built-in state (the layout every built-in transformation shares). Internal. */
export function newState(
  kind: string,
  step: number,
  hparams: Record<string, number>,
  meta: Readonly<Record<string, string | number | boolean>>,
  leaves: Record<string, LeafState>,
): TransformState {
  return freeze({ kind, step, hparams: freeze(hparams), meta, leaves: freeze(leaves) });
}

/**
 * What a weight-noise state must share with the optimizer that continues it: the mode, the law and
 * the seed (a state resumed under another seed would silently switch noise streams).
 */
function noiseMeta(n: NoiseTransform): Record<string, string | number> {
  return { mode: n.mode, law: n.law, seed: n.seed };
}

/** The noise stage of the official step for one leaf: step `s` (1-based), scale `v`. */
function stageFor(n: NoiseTransform, ns: TransformState, path: string, s: number, v: number): NoiseStage {
  return {
    law: n.law,
    scale: v,
    key: { k0: ns.meta.seed as number, k1: hashString(path), c1: s >>> 0, c2: 0 },
    reset: s % n.numIters === 0,
    nOld: ns.leaves[path].buffers.noise ?? null,
  };
}

/**
 * One update of a base transformation, leaf by leaf; with `noise`, the official weight-noise step
 * is fused into the same kernel call.
 */
function runBase(
  b: BaseImpl,
  state: unknown,
  grads: TensorTree,
  params: TensorTree | undefined,
  noise?: { impl: NoiseTransform; state: unknown },
): { updates: TensorTree; state: TransformState; noiseState?: TransformState } {
  const who = `${b.who}.update`;
  checkState(who, state, b.kind, b.meta);
  let ns: TransformState | undefined;
  if (noise) {
    checkState(`${noise.impl.who}.update`, noise.state, "weightNoise", noiseMeta(noise.impl));
    ns = noise.state;
    if (ns.step !== state.step) {
      throw new Error(`${who}: the states of the chain are out of step (${state.step} and ${ns.step})`);
    }
  }
  const gm = leafMap(who, grads, "grads");
  checkTree(who, "grads", gm, state);
  if (ns) checkTree(who, "grads", gm, ns);
  const hp = b.hparams(state.step);
  let pm: Map<string, Tensor> | undefined;
  if (params !== undefined) {
    pm = leafMap(who, params, "params");
    checkTree(who, "params", pm, state);
  } else if (b.needsParams(hp)) {
    throw new TypeError(
      `${who}: params are required (weight decay reads them); call update(grads, state, params)`,
    );
  }
  const t = state.step + 1;
  const nhp = noise ? noise.impl.hparams(t) : undefined;
  const leaves: Record<string, LeafState> = {};
  const nleaves: Record<string, LeafState> = {};
  const ups = new Map<string, Tensor>();
  for (const [path, g] of gm) {
    const ls = state.leaves[path];
    const stage = noise ? stageFor(noise.impl, ns!, path, t, nhp!.variability) : undefined;
    const r = b.leaf(optimKernels(g.device), hp, t, g, pm?.get(path) ?? null, ls.buffers, stage);
    leaves[path] = withBuffers(ls, { ...r.buffers });
    if (noise) nleaves[path] = withBuffers(ns!.leaves[path], { noise: r.noise ?? null });
    ups.set(path, r.u);
  }
  const updates = mapTree(grads, (_, path) => ups.get(path)!, who);
  return {
    updates,
    state: newState(b.kind, t, hp, state.meta, leaves),
    noiseState: noise ? newState("weightNoise", t, nhp!, ns!.meta, nleaves) : undefined,
  };
}

/** One update of the weight-noise transformation on its own (after any other transformation). */
function runNoise(
  n: NoiseTransform,
  state: unknown,
  updatesIn: TensorTree,
): { updates: TensorTree; state: TransformState } {
  const who = `${n.who}.update`;
  checkState(who, state, "weightNoise", noiseMeta(n));
  const um = leafMap(who, updatesIn, "grads");
  checkTree(who, "grads", um, state);
  const s = state.step + 1;
  const hp = n.hparams(s);
  if (n.mode === "exact") {
    return { updates: updatesIn, state: newState("weightNoise", s, hp, state.meta, { ...state.leaves }) };
  }
  const leaves: Record<string, LeafState> = {};
  const ups = new Map<string, Tensor>();
  for (const [path, u] of um) {
    const r = optimKernels(u.device).noise(u, stageFor(n, state, path, s, hp.variability));
    leaves[path] = withBuffers(state.leaves[path], { noise: r.noise });
    ups.set(path, r.u);
  }
  return {
    updates: mapTree(updatesIn, (_, path) => ups.get(path)!, who),
    state: newState("weightNoise", s, hp, state.meta, leaves),
  };
}

/** Builds the optimizer of a base transformation (`perturb` and `clean` are the identity). */
export function makeBase(b: BaseImpl): Optimizer<TransformState> {
  const identity = <T extends TensorTree>(who: string, params: T, state: TransformState): T => {
    checkState(who, state, b.kind, b.meta);
    checkTree(who, "params", leafMap(who, params, "params"), state);
    return params;
  };
  const opt = {
    init(params: TensorTree): TransformState {
      const hp = b.hparams(0);
      return newState(
        b.kind,
        0,
        hp,
        freeze({ ...b.meta }),
        initLeaves(`${b.who}.init`, params, b.initBuffers),
      );
    },
    update<T extends TensorTree>(
      grads: T,
      state: TransformState,
      params?: TensorTree,
    ): UpdateResult<T, TransformState> {
      const r = runBase(b, state, grads, params);
      return { updates: r.updates as T, state: r.state };
    },
    perturb<T extends TensorTree>(params: T, state: TransformState): T {
      return identity(`${b.who}.perturb`, params, state);
    },
    clean<T extends TensorTree>(params: T, state: TransformState): T {
      return identity(`${b.who}.clean`, params, state);
    },
    [IMPL]: b,
  };
  return opt;
}

/** Builds the weight-noise transformation from its description. */
export function makeNoise(n: NoiseTransform): Optimizer<TransformState> {
  const perturbWho = `${n.who}.perturb`, cleanWho = `${n.who}.clean`;
  return {
    init(params: TensorTree): TransformState {
      const hp = n.hparams(0);
      const official = n.mode === "official";
      return newState(
        "weightNoise",
        0,
        hp,
        freeze({ mode: n.mode, seed: n.seed, law: n.law }),
        initLeaves(
          `${n.who}.init`,
          params,
          (): Record<string, Tensor | null> => (official ? { noise: null } : {}),
        ),
      );
    },
    update<T extends TensorTree>(
      grads: T,
      state: TransformState,
      _params?: TensorTree,
    ): UpdateResult<T, TransformState> {
      const r = runNoise(n, state, grads);
      return { updates: r.updates as T, state: r.state };
    },
    perturb<T extends TensorTree>(params: T, state: TransformState): T {
      checkState(perturbWho, state, "weightNoise", noiseMeta(n));
      const pm = leafMap(perturbWho, params, "params");
      checkTree(perturbWho, "params", pm, state);
      if (n.mode === "official") return params;
      const s = state.step;
      if (s % n.numIters === 0) return params;
      const v = n.hparams(s).variability;
      if (v === 0) return params;
      const k0 = state.meta.seed as number;
      return mapTree(
        params,
        (p, path) =>
          optimKernels(p.device).perturb(p, n.law, v, { k0, k1: hashString(path), c1: s >>> 0, c2: 0 }),
        perturbWho,
      );
    },
    clean<T extends TensorTree>(params: T, state: TransformState): T {
      checkState(cleanWho, state, "weightNoise", noiseMeta(n));
      const pm = leafMap(cleanWho, params, "params");
      checkTree(cleanWho, "params", pm, state);
      if (n.mode === "exact") return params;
      return mapTree(params, (p, path) => {
        const nz = state.leaves[path].buffers.noise;
        return nz ? optimKernels(p.device).addScaled(p, nz, -1) : p;
      }, cleanWho);
    },
    [IMPL]: n,
  } as Optimizer<TransformState>;
}

function implOf(t: unknown): Impl | undefined {
  return (t as WithImpl)?.[IMPL];
}

/**
 * Chains transformations: the updates of each feed the next (optax's `chain`). The state is
 * `{ kind: "chain", inner: [...] }`. `perturb` and `clean` go through every member that has them.
 * A `weightNoise` transformation must come last (after the learning rate is applied; noise placed
 * earlier would be scaled by it). A base optimizer directly followed by official-mode weight
 * noise runs as one fused step per parameter array.
 *
 * @example
 * ```ts
 * import { tensor } from "@nvrm/core";
 * import { applyUpdates, chain, sgd, weightNoise } from "@nvrm/core/optim";
 * const opt = chain(sgd({ lr: 0.1, momentum: 0.9 }), weightNoise({ variability: 0.01, numIters: 100 }));
 * let params = { w: tensor([1, 2, 3], [3], { dtype: "float64" }) };
 * const state = opt.init(params);
 * const grads = { w: tensor([0.1, 0.2, 0.3], [3], { dtype: "float64" }) };
 * const step = opt.update(grads, state, params);
 * params = applyUpdates(params, step.updates);
 * ```
 */
export function chain(...transforms: GradientTransformation<any>[]): Optimizer<ChainState> {
  return makeChain("chain", transforms);
}

/** {@linkcode chain} with a name for error messages (the aliases use it). Internal. */
export function makeChain(
  who: string,
  transforms: readonly GradientTransformation<any>[],
): Optimizer<ChainState> {
  transforms.forEach((t, i) => {
    if (
      t === null || typeof t !== "object" || typeof t.init !== "function" || typeof t.update !== "function"
    ) {
      throw new TypeError(
        `${who}: argument ${i} must be a gradient transformation (an object with init and update), got ${
          fmtValue(t)
        }`,
      );
    }
    if (traitsOf(t).noise && i !== transforms.length - 1) {
      const what = implOf(t)?.role === "noise"
        ? "it is"
        : "it carries weight noise (a vsgd/vadam/antiPgd or a chain or masked transformation ending with weightNoise) and is";
      throw new Error(
        `${who}: weightNoise must be the last transformation (${what} argument ${i} of ${transforms.length}); noise placed before other transformations gets scaled by them`,
      );
    }
  });
  const list = transforms.slice();
  const last = list.length - 1;
  const checkChain = (w: string, state: unknown): readonly unknown[] => {
    const s = state as ChainState;
    if (s === null || typeof s !== "object" || s.kind !== "chain" || !Array.isArray(s.inner)) {
      throw new TypeError(`${w}: state must be a chain state (from init), got ${fmtValue(s)}`);
    }
    if (s.inner.length !== list.length) {
      throw new Error(`${w}: the state has ${s.inner.length} members, this chain has ${list.length}`);
    }
    return s.inner;
  };
  /** `perturb` or `clean` of the chain: the members' own, in order, each on the previous result. */
  const through =
    (method: "perturb" | "clean") => <T extends TensorTree>(params: T, state: ChainState): T => {
      const inner = checkChain(`${who}.${method}`, state);
      let p: T = params;
      list.forEach((t, i) => {
        const f = (t as Partial<Optimizer<unknown>>)[method];
        if (typeof f === "function") p = f.call(t, p, inner[i]) as T;
      });
      return p;
    };
  const opt = {
    init(params: TensorTree): ChainState {
      return freeze({ kind: "chain", inner: freeze(list.map((t) => t.init(params))) });
    },
    update<T extends TensorTree>(
      grads: T,
      state: ChainState,
      params?: TensorTree,
    ): UpdateResult<T, ChainState> {
      const inner = checkChain(`${who}.update`, state);
      const out = inner.slice();
      let u: TensorTree = grads;
      // the members before the last see the weights the gradient was taken at; the last its own params
      const seen = paramsSeenByBase(list, inner, params);
      for (let i = 0; i < list.length; i++) {
        const a = implOf(list[i]), b = implOf(list[i + 1]);
        if (a?.role === "base" && b?.role === "noise" && b.mode === "official") {
          const r = runBase(a, inner[i], u, seen, { impl: b, state: inner[i + 1] });
          u = r.updates;
          out[i] = r.state;
          out[i + 1] = r.noiseState;
          i++;
        } else {
          const r = list[i].update(u, inner[i], i === last ? params : seen);
          u = r.updates;
          out[i] = r.state;
        }
      }
      return { updates: u as T, state: freeze({ kind: "chain", inner: freeze(out) }) };
    },
    perturb: through("perturb"),
    clean: through("clean"),
    [TRAITS]: {
      readsParams: (state: unknown) =>
        list.some((t, i) => traitsOf(t).readsParams((state as ChainState).inner[i])),
      noise: list.length > 0 && traitsOf(list[last]).noise,
    } satisfies Traits,
  };
  return opt;
}

/**
 * The params the members before a last member that carries weight noise see: `perturb(params)` of
 * that member, i.e. θ + n_t in exact mode, the weights the gradient was taken at, exactly as in
 * official mode (where the noise lives inside the params and `perturb` is the identity), so weight
 * decay acts on the same weights in both modes and the trajectories agree. The noise is only
 * regenerated when some member reads the params (weight decay, or a transformation we do not know).
 */
function paramsSeenByBase(
  list: readonly GradientTransformation<any>[],
  inner: readonly unknown[],
  params: TensorTree | undefined,
): TensorTree | undefined {
  const last = list[list.length - 1];
  if (params === undefined || !traitsOf(last).noise) return params;
  const n = implOf(last);
  if (n?.role === "noise" && n.mode === "official") return params;
  const perturb = (last as Partial<Optimizer<unknown>>).perturb;
  if (typeof perturb !== "function") return params;
  const reads = list.slice(0, -1).some((t, i) => traitsOf(t).readsParams(inner[i]));
  return reads ? perturb.call(last, params, inner[list.length - 1]) : params;
}

/**
 * `params + updates`, leaf by leaf: a new tree (nothing is mutated). Throws, naming the path, when
 * the trees differ in structure, shape, dtype or device.
 *
 * @example
 * ```ts
 * import { tensor } from "@nvrm/core";
 * import { applyUpdates } from "@nvrm/core/optim";
 * const p = applyUpdates({ w: tensor([1, 2]) }, { w: tensor([0.5, -0.5]) });
 * console.log(p.w.dataSync()); // Float32Array [1.5, 1.5]
 * ```
 */
export function applyUpdates<T extends TensorTree>(params: T, updates: TensorTree): T {
  const who = "applyUpdates";
  const um = leafMap(who, updates, "updates");
  const pm = leafMap(who, params, "params");
  for (const path of um.keys()) {
    if (!pm.has(path)) {
      throw new Error(`${who}: updates has a leaf at path ${JSON.stringify(path)} that params lacks`);
    }
  }
  return mapTree(params, (p, path) => {
    const u = um.get(path);
    if (u === undefined) throw new Error(`${who}: updates has no leaf at path ${JSON.stringify(path)}`);
    if (!sameShape(p.shape, u.shape)) {
      throw new RangeError(
        `${who}: updates at path ${JSON.stringify(path)} has shape ${fmtShape(u.shape)}, params has ${
          fmtShape(p.shape)
        }`,
      );
    }
    if (p.dtype !== u.dtype || p.device !== u.device) {
      throw new TypeError(
        `${who}: updates at path ${
          JSON.stringify(path)
        } is ${u.dtype} on ${u.device}, params is ${p.dtype} on ${p.device}`,
      );
    }
    return optimKernels(p.device).addScaled(p, u, 1);
  }, who);
}

/**
 * The current hyperparameters recorded in an optimizer state, for logging: the values the most
 * recent update used (after `init`, those of step 0), merged over the members of a chain, plus
 * `step` (updates applied). For weight noise, `variability` is the scale of the noise the most
 * recent update drew, i.e. of the noise in the next forward pass.
 *
 * @example
 * ```ts
 * import { tensor } from "@nvrm/core";
 * import { cosineDecaySchedule, hyperparams, vsgd } from "@nvrm/core/optim";
 * const opt = vsgd({ lr: cosineDecaySchedule({ init: 0.1, decaySteps: 1000 }), variability: 0.01 });
 * const state = opt.init({ w: tensor([0, 0]) });
 * console.log(hyperparams(state)); // { step: 0, lr: 0.1, momentum: 0, …, variability: 0.01, numIters: 1000 }
 * ```
 */
export function hyperparams(state: unknown): Record<string, number> {
  const out: Record<string, number> = {};
  let step = 0;
  const walk = (s: unknown) => {
    if (s === null || typeof s !== "object") return;
    const c = s as ChainState;
    if (c.kind === "chain" && Array.isArray(c.inner)) {
      c.inner.forEach(walk);
      return;
    }
    if ((s as { kind?: unknown }).kind === "masked") {
      walk((s as { inner?: unknown }).inner);
      return;
    }
    const t = s as TransformState;
    if (typeof t.step === "number" && t.hparams && typeof t.hparams === "object") {
      step = Math.max(step, t.step);
      Object.assign(out, t.hparams);
    }
  };
  walk(state);
  return { step, ...out };
}
