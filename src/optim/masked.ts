/**
 * `masked`: apply a transformation to some of the parameters only (optax's `masked`), e.g. no
 * weight decay on biases and normalization parameters, or one optimizer per parameter group.
 *
 * @module
 */
import { Tensor } from "../tensor.ts";
import { mapTree, type TensorTree } from "../tree.ts";
import { fmtValue } from "./hyper.ts";
import { TRAITS, type Traits, traitsOf } from "./transform.ts";
import { leafMap } from "./tree_check.ts";
import type { GradientTransformation, MaskedState, Optimizer, UpdateResult } from "./types.ts";

/**
 * Which parameters a {@linkcode masked} transformation applies to: a function of the leaf's path
 * and tensor, or a tree of booleans shaped like the params in which a boolean may also stand for a
 * whole sub-tree (`{ layers: [{ w: true, b: false }], norm: false }`).
 */
export type Mask = MaskTree | ((path: string, leaf: Tensor) => boolean);

/** A tree of booleans: a boolean, an array of mask trees or an object of mask trees. */
export type MaskTree = boolean | readonly MaskTree[] | { readonly [key: string]: MaskTree };

const isPlain = (x: unknown): x is Record<string, unknown> =>
  x !== null && typeof x === "object" && Object.getPrototypeOf(x) === Object.prototype;

const join = (prefix: string, key: string | number) => (prefix === "" ? String(key) : `${prefix}.${key}`);
const q = JSON.stringify;

/** Checks the form of a mask tree (booleans, arrays and plain objects only). */
function checkMaskTree(who: string, m: unknown, path: string): void {
  if (typeof m === "boolean") return;
  if (Array.isArray(m)) m.forEach((c, i) => checkMaskTree(who, c, join(path, i)));
  else if (isPlain(m)) { for (const k of Object.keys(m)) checkMaskTree(who, m[k], join(path, k)); }
  else {
    throw new TypeError(
      `${who}: mask at path ${
        q(path)
      } must be true, false, an array or an object of those, or the mask must be a function (path, leaf) => boolean; got ${
        fmtValue(m)
      }`,
    );
  }
}

/** The paths of `tree` that `mask` selects, in tree order. */
function selectPaths(who: string, mask: Mask, tree: TensorTree, what: string): string[] {
  const leaves = leafMap(who, tree, what);
  if (typeof mask === "function") {
    const out: string[] = [];
    for (const [path, t] of leaves) {
      const keep = mask(path, t);
      if (typeof keep !== "boolean") {
        throw new TypeError(
          `${who}: the mask function must return true or false, got ${fmtValue(keep)} for path ${q(path)}`,
        );
      }
      if (keep) out.push(path);
    }
    return out;
  }
  const out = new Set<string>();
  const all = (path: string, on: boolean) => {
    if (!on) return;
    for (const p of leaves.keys()) if (path === "" || p === path || p.startsWith(`${path}.`)) out.add(p);
  };
  const walk = (node: unknown, m: unknown, path: string) => {
    if (typeof m === "boolean") return all(path, m);
    if (node instanceof Tensor) {
      throw new TypeError(
        `${who}: mask at path ${q(path)} must be true or false (${what} has a leaf there), got ${
          fmtValue(m)
        }`,
      );
    }
    if (Array.isArray(node)) {
      if (!Array.isArray(m) || m.length !== node.length) {
        throw new TypeError(
          `${who}: mask at path ${
            q(path)
          } must be a boolean or an array of ${node.length} (as ${what}), got ${fmtValue(m)}`,
        );
      }
      node.forEach((c, i) => walk(c, m[i], join(path, i)));
      return;
    }
    const n = node as Record<string, unknown>;
    if (!isPlain(m)) {
      throw new TypeError(
        `${who}: mask at path ${q(path)} must be a boolean or an object (as ${what}), got ${fmtValue(m)}`,
      );
    }
    for (const k of Object.keys(n)) {
      if (!Object.hasOwn(m, k)) {
        throw new TypeError(`${who}: mask has no entry at path ${q(join(path, k))}, which ${what} has`);
      }
    }
    for (const k of Object.keys(m)) {
      if (!Object.hasOwn(n, k)) {
        throw new TypeError(
          `${who}: mask has an entry at path ${q(join(path, k))}, which ${what} does not have`,
        );
      }
      walk(n[k], m[k], join(path, k));
    }
  };
  walk(tree, mask, "");
  return [...leaves.keys()].filter((p) => out.has(p));
}

/**
 * The sub-tree of `tree` holding the leaves at `keep`, at the same paths (arrays become objects
 * keyed by index, so that dropped entries leave no holes): `{}` when none is kept.
 */
function subTree(tree: TensorTree, keep: ReadonlySet<string>): TensorTree {
  const build = (node: unknown, path: string): TensorTree | undefined => {
    if (node instanceof Tensor) return keep.has(path) ? node : undefined;
    const o: Record<string, TensorTree> = {};
    const entries: [string, unknown][] = Array.isArray(node)
      ? node.map((c, i) => [String(i), c])
      : Object.entries(node as Record<string, unknown>);
    for (const [k, c] of entries) {
      const r = build(c, join(path, k));
      if (r !== undefined) o[k] = r;
    }
    return Object.keys(o).length > 0 ? o : undefined;
  };
  return build(tree, "") ?? {};
}

/** `tree` with the leaves at `keep` replaced by those of `part` (same paths). */
function merge<T extends TensorTree>(who: string, tree: T, keep: ReadonlySet<string>, part: TensorTree): T {
  if (keep.size === 0) return tree;
  const pm = leafMap(who, part, "the wrapped transformation's result");
  return mapTree(tree, (t, path) => (keep.has(path) ? pm.get(path) ?? t : t), who);
}

/**
 * Applies `transform` to the parameters that `mask` selects and passes the others' gradients
 * through unchanged (optax's `masked`): with M the selected paths,
 *
 *     updates[p] = transform(g restricted to M, params restricted to M)[p]    for p in M
 *     updates[p] = g[p]                                                       otherwise
 *
 * The wrapped transformation sees only the selected leaves, at their usual paths (so the weight
 * noise of a masked `weightNoise` is the noise those parameters get unmasked), and keeps state for
 * them only. `mask` is a function `(path, leaf) => boolean` (called on the params at `init` and on
 * the gradients at each update; they must select the same paths) or a tree of booleans shaped like
 * the params, where a boolean may stand for a whole sub-tree. `perturb` and `clean` go to the
 * wrapped transformation when it has them (a masked weight noise is still weight noise: it must go
 * last in a chain). Two masked transformations with complementary masks give one optimizer per
 * parameter group.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tensor } from "@nvrm/core";
 * import { addDecayedWeights, chain, masked, sgd } from "@nvrm/core/optim";
 *
 * // weight decay on matrices only: biases (rank 1) get plain SGD
 * const opt = chain(masked(addDecayedWeights(0.1), (_path, p) => p.rank > 1), sgd({ lr: 1 }));
 * const params = { w: tensor([1, 1], [1, 2], { dtype: "float64" }), b: tensor([1], [1], { dtype: "float64" }) };
 * const grads = { w: tensor([0, 0], [1, 2], { dtype: "float64" }), b: tensor([1], [1], { dtype: "float64" }) };
 * const { updates } = opt.update(grads, opt.init(params), params);
 * assert.deepEqual([...updates.w.dataSync(), ...updates.b.dataSync()], [-0.1, -0.1, -1]);
 * ```
 */
export function masked(transform: GradientTransformation<any>, mask: Mask): Optimizer<MaskedState> {
  const who = "masked";
  if (
    transform === null || typeof transform !== "object" || typeof transform.init !== "function" ||
    typeof transform.update !== "function"
  ) {
    throw new TypeError(
      `${who}: transform must be a gradient transformation (an object with init and update), got ${
        fmtValue(transform)
      }`,
    );
  }
  if (typeof mask !== "function") checkMaskTree(who, mask, "");
  const inner = transform as Partial<Optimizer<unknown>> & GradientTransformation<unknown>;
  const checkMasked = (w: string, state: unknown): MaskedState => {
    const s = state as MaskedState;
    if (s === null || typeof s !== "object" || s.kind !== "masked" || !Array.isArray(s.paths)) {
      throw new TypeError(`${w}: state must be a "masked" state (from init), got ${fmtValue(s)}`);
    }
    return s;
  };
  /** The selected paths of `tree`, checked against the state's. */
  const selected = (w: string, tree: TensorTree, what: string, s: MaskedState): Set<string> => {
    const paths = selectPaths(w, mask, tree, what);
    if (paths.length !== s.paths.length || paths.some((p, i) => p !== s.paths[i])) {
      throw new Error(
        `${w}: the mask selects ${fmtValue(paths)} in the ${what}, but the state was made for ${
          fmtValue(s.paths)
        } (was the state made for another parameter tree?)`,
      );
    }
    return new Set(paths);
  };
  const through =
    (method: "perturb" | "clean") => <T extends TensorTree>(params: T, state: MaskedState): T => {
      const w = `${who}.${method}`;
      const s = checkMasked(w, state);
      const keep = selected(w, params, "params", s);
      const f = inner[method];
      if (typeof f !== "function") return params;
      return merge(w, params, keep, f.call(inner, subTree(params, keep), s.inner));
    };
  const traits: Traits = {
    readsParams: (s) => traitsOf(inner).readsParams((s as MaskedState).inner),
    noise: traitsOf(inner).noise,
  };
  const opt = {
    init(params: TensorTree): MaskedState {
      const paths = selectPaths(`${who}.init`, mask, params, "params");
      const innerState = inner.init(subTree(params, new Set(paths)));
      return Object.freeze({ kind: "masked" as const, paths: Object.freeze(paths), inner: innerState });
    },
    update<T extends TensorTree>(
      grads: T,
      state: MaskedState,
      params?: TensorTree,
    ): UpdateResult<T, MaskedState> {
      const w = `${who}.update`;
      const s = checkMasked(w, state);
      const keep = selected(w, grads, "grads", s);
      const r = inner.update(
        subTree(grads, keep),
        s.inner,
        params === undefined ? undefined : subTree(params, keep),
      );
      return {
        updates: merge(w, grads, keep, r.updates),
        state: Object.freeze({ kind: "masked" as const, paths: s.paths, inner: r.state }),
      };
    },
    perturb: through("perturb"),
    clean: through("clean"),
    [TRAITS]: traits,
  };
  return opt;
}
