/**
 * The driver of the transformations composed from ops (`clipByGlobalNorm`, `clipByValue`,
 * `addDecayedWeights`, `zeroNans`): they keep the built-in state layout (`kind`, `step`, `hparams`,
 * per-path `leaves`), so the tree checks, `hyperparams`, `serialize` and `chain` treat them like
 * `sgd` or `adam`. Internal module.
 *
 * @module
 */
import type { Tensor } from "../tensor.ts";
import { mapTree, type TensorTree } from "../tree.ts";
import { checkState, newState, TRAITS, type Traits } from "./transform.ts";
import { checkTree, initLeaves, leafMap, withBuffers } from "./tree_check.ts";
import type { GradientTransformation, LeafState, TransformState, UpdateResult } from "./types.ts";

/** What one update of a leafwise transformation sees. */
export interface LeafwiseStep {
  /** The incoming updates (gradients), by path. */
  readonly grads: ReadonlyMap<string, Tensor>;
  /** The params by path, when given (always given when `readsParams` says so). */
  readonly params: ReadonlyMap<string, Tensor> | undefined;
  /** The per-path state records (buffers from the previous update). */
  readonly leaves: Readonly<Record<string, LeafState>>;
  /** The hyperparameters of this update (evaluated at `state.step`). */
  readonly hp: Readonly<Record<string, number>>;
  /** The whole incoming state (for the fields of `initExtra`). */
  readonly state: TransformState;
}

/** The result of one update: the outgoing updates and, for stateful ones, the new buffers. */
export interface LeafwiseResult {
  /** The outgoing updates, by path (every path of the incoming ones). */
  readonly updates: ReadonlyMap<string, Tensor>;
  /** New buffers by path; absent: the buffers stay as they were. */
  readonly buffers?: ReadonlyMap<string, Record<string, Tensor | null>>;
  /** New values of the fields of `initExtra`; absent: they stay as they were. */
  readonly extra?: Record<string, unknown>;
}

/** Description of a leafwise transformation. */
export interface LeafwiseSpec {
  /** The state's `kind`, also its name in errors. */
  readonly kind: string;
  /** The checked hyperparameters of the update with 0-based index `step`. */
  hparams(step: number): Record<string, number>;
  /**
   * Initial buffers of one parameter (default none). Buffers have the parameter's shape and dtype
   * (`deserialize` checks that); anything else goes in `initExtra`.
   */
  initBuffers?(p: Tensor): Record<string, Tensor | null>;
  /** Further top-level fields of the state, made from the parameter paths (plain data). */
  initExtra?(paths: readonly string[]): Record<string, unknown>;
  /** Whether an update with these hyperparameters reads the params (default false). */
  readsParams?(hp: Readonly<Record<string, number>>): boolean;
  /** One update. */
  apply(step: LeafwiseStep): LeafwiseResult;
}

const noBuffers = (): Record<string, Tensor | null> => ({});

/** Builds the pure `init`/`update` pair of a leafwise transformation. */
export function makeLeafwise(spec: LeafwiseSpec): GradientTransformation<TransformState> {
  const who = spec.kind;
  const reads = (hp: Readonly<Record<string, number>>) => spec.readsParams?.(hp) ?? false;
  const traits: Traits = {
    readsParams: (s) => reads(spec.hparams((s as TransformState).step)),
    noise: false,
  };
  const t = {
    init(params: TensorTree): TransformState {
      const hp = spec.hparams(0);
      const leaves = initLeaves(`${who}.init`, params, spec.initBuffers ?? noBuffers);
      const s = newState(who, 0, hp, Object.freeze({}), leaves);
      return spec.initExtra ? Object.freeze({ ...s, ...spec.initExtra(Object.keys(leaves)) }) : s;
    },
    update<T extends TensorTree>(
      grads: T,
      state: TransformState,
      params?: TensorTree,
    ): UpdateResult<T, TransformState> {
      const w = `${who}.update`;
      checkState(w, state, who, {});
      const gm = leafMap(w, grads, "grads");
      checkTree(w, "grads", gm, state);
      const hp = spec.hparams(state.step);
      let pm: Map<string, Tensor> | undefined;
      if (params !== undefined) {
        pm = leafMap(w, params, "params");
        checkTree(w, "params", pm, state);
      } else if (reads(hp)) {
        throw new TypeError(
          `${w}: params are required (it reads the weights); call update(grads, state, params)`,
        );
      }
      const r = spec.apply({ grads: gm, params: pm, leaves: state.leaves, hp, state });
      const leaves: Record<string, LeafState> = {};
      for (const path of gm.keys()) {
        const b = r.buffers?.get(path);
        leaves[path] = b ? withBuffers(state.leaves[path], b) : state.leaves[path];
      }
      const next = newState(who, state.step + 1, hp, state.meta, leaves);
      if (!spec.initExtra) {
        return { updates: mapTree(grads, (_, path) => r.updates.get(path)!, w), state: next };
      }
      const extra: Record<string, unknown> = {};
      for (const k of Object.keys(spec.initExtra([]))) {
        extra[k] = r.extra?.[k] ?? (state as unknown as Record<string, unknown>)[k];
      }
      return {
        updates: mapTree(grads, (_, path) => r.updates.get(path)!, w),
        state: Object.freeze({ ...next, ...extra }),
      };
    },
    [TRAITS]: traits,
  };
  return t;
}
