/**
 * Containers: `sequential` (layers one after the other, by index or by name) and `residual`
 * (y = body(x) + shortcut(x)). Their params and state are plain records keyed like PyTorch's module
 * names, holding only the children that have params (state), so that a network's dotted paths are
 * PyTorch's `state_dict` keys with `w`/`b` for `weight`/`bias`.
 *
 * @module
 */
import type { CreateOptions } from "../creation.ts";
import { add, addRelu, relu } from "../ops/elementwise.ts";
import { fmtShape, Tensor } from "../tensor.ts";
import type { TensorTree } from "../tree.ts";
import {
  type ApplyContext,
  checkSeed,
  childPath,
  describeLayer,
  EMPTY,
  type Layer,
  layerError,
} from "./layer.ts";
import { fusedActivations, withFusedRelu } from "./batch_norm.ts";

/** Params or state of a container: one entry per child that has any, keyed by the child's name. */
export type LayerTree = { [key: string]: TensorTree };

function checkKey(who: string, key: string): void {
  if (key === "" || key.includes(".")) {
    throw new RangeError(
      `${who}: layer names must be non-empty and contain no ".", got ${JSON.stringify(key)}`,
    );
  }
}

function isLayer(l: unknown): l is Layer {
  return l !== null && typeof l === "object" && typeof (l as Layer).init === "function" &&
    typeof (l as Layer).apply === "function";
}

/** The subtree of child `key` (a layer of kind `childKind`) in a container's params/state, checked. */
function childTree(
  tree: unknown,
  key: string,
  path: string,
  childKind: string,
  what: "params" | "state",
): TensorTree {
  const v = (tree as Record<string, unknown>)[key];
  if (v === undefined || v === null || v instanceof Tensor || typeof v !== "object") {
    throw layerError(
      childPath(path, key),
      childKind,
      `the ${what} tree does not match the network: expected its ${what} (an object) at "${
        childPath(path, key)
      }", got ${
        v === undefined ? "nothing" : v === null ? "null" : v instanceof Tensor ? "a Tensor" : typeof v
      }`,
    );
  }
  return v as TensorTree;
}

/** Checks a container's params/state is a plain record holding exactly `keys`. */
function checkRecord(tree: unknown, keys: readonly string[], path: string, kind: string, what: string): void {
  if (tree === null || typeof tree !== "object" || tree instanceof Tensor || Array.isArray(tree)) {
    throw layerError(
      path,
      kind,
      `the ${what} tree does not match the network: expected an object, got ${
        tree === null
          ? "null"
          : tree instanceof Tensor
          ? "a Tensor"
          : Array.isArray(tree)
          ? "an array"
          : typeof tree
      }`,
    );
  }
  const extra = Object.keys(tree).filter((k) => !keys.includes(k));
  if (extra.length > 0) {
    throw layerError(
      path,
      kind,
      `the ${what} tree does not match the network: unexpected ${
        extra.map((k) => `"${childPath(path, k)}"`).join(", ")
      }` +
        ` (expected ${keys.length ? keys.map((k) => `"${k}"`).join(", ") : "no entries"})`,
    );
  }
}

/**
 * Layers applied one after the other. Given an array, children are named by their index (`"0"`,
 * `"1"`, … as `torch.nn.Sequential`); given a record, by its keys, in insertion order. The params
 * (state) tree is a record with an entry per child that has params (state). A `batchNorm` directly
 * followed by a `relu` runs as one batch norm with the ReLU fused in (the same values, params, state
 * and paths; on WebGPU no ReLU dispatch in training).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nn, randn } from "@nvrm/core";
 * const net = nn.sequential([nn.conv2d(1, 4, 3, { padding: 1 }), nn.batchNorm(4), nn.relu(), nn.flatten()]);
 * const { params, state } = net.init(0, "");
 * assert.deepEqual(Object.keys(params), ["0", "1"]); // the conv and the batch norm
 * const ctx = { training: true, step: 0, seed: 0, path: "" };
 * assert.deepEqual(net.apply(params, state, randn([2, 1, 5, 5]), ctx).y.shape, [2, 100]);
 * ```
 */
export function sequential(
  layers: readonly Layer[] | Readonly<Record<string, Layer>>,
): Layer<LayerTree, LayerTree> {
  const who = "nn.sequential";
  if (layers === null || typeof layers !== "object") {
    throw new TypeError(`${who}: layers must be an array or a record of layers, got ${layers}`);
  }
  const entries: [string, Layer][] = Array.isArray(layers)
    ? layers.map((l, i) => [String(i), l])
    : Object.entries(layers as Record<string, Layer>);
  for (const [k, l] of entries) {
    checkKey(who, k);
    if (!isLayer(l)) {
      throw new TypeError(`${who}: layer "${k}" is not a layer (needs init and apply), got ${typeof l}`);
    }
  }
  const paramKeys = entries.filter(([, l]) => l.hasParams).map(([k]) => k);
  const stateKeys = entries.filter(([, l]) => l.hasState).map(([k]) => k);
  const kind = `sequential of ${entries.length}`;
  return {
    kind,
    hasParams: paramKeys.length > 0,
    hasState: stateKeys.length > 0,
    init(seed: number, path: string, options: CreateOptions = {}) {
      checkSeed(who, seed);
      const params: LayerTree = {}, state: LayerTree = {};
      for (const [k, l] of entries) {
        const r = l.init(seed, childPath(path, k), options);
        if (l.hasParams) params[k] = r.params;
        if (l.hasState) state[k] = r.state;
      }
      return { params, state };
    },
    apply(params: LayerTree, state: LayerTree, x: Tensor, ctx: ApplyContext) {
      checkRecord(params, paramKeys, ctx.path, kind, "params");
      checkRecord(state, stateKeys, ctx.path, kind, "state");
      const next: LayerTree = {};
      let h = x;
      const fuse = fusedActivations();
      for (let i = 0; i < entries.length; i++) {
        const [k, l] = entries[i];
        const p = l.hasParams ? childTree(params, k, ctx.path, l.kind, "params") : EMPTY;
        const s = l.hasState ? childTree(state, k, ctx.path, l.kind, "state") : EMPTY;
        // layer i's forward with layer i + 1 (a relu) folded in, which is then skipped
        const withRelu = fuse && i + 1 < entries.length ? withFusedRelu(l, entries[i + 1][1]) : undefined;
        const r = (withRelu ?? l.apply)(p, s, h, { ...ctx, path: childPath(ctx.path, k) });
        if (l.hasState) next[k] = r.state;
        h = r.y;
        if (withRelu) i++; // the relu ran inside
      }
      return { y: h, state: next };
    },
  };
}

/** Options of {@linkcode residual}. */
export interface ResidualOptions {
  /** Applied to the sum: `"relu"` (as ResNet's blocks) or none (default). */
  activation?: "relu" | "none";
}

/**
 * A residual connection: y = act(body(x) + shortcut(x)), with the identity as the shortcut when none
 * is given (with `activation: "relu"`, the sum and the ReLU in one pass). The body's children sit at
 * the residual's own level and the shortcut under `shortcut`, as in PyTorch's ResNet `BasicBlock`
 * (`conv1`, `bn1`, …, `shortcut.0`, `shortcut.1`): the params (state) tree is the body's record plus
 * a `shortcut` entry when the shortcut has params (state).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nn, randn } from "@nvrm/core";
 * const block = nn.residual(
 *   nn.sequential({ conv1: nn.conv2d(4, 4, 3, { padding: 1, bias: false }), bn1: nn.batchNorm(4) }),
 *   undefined,
 *   { activation: "relu" },
 * );
 * const { params, state } = block.init(0, "block");
 * assert.deepEqual(Object.keys(params), ["conv1", "bn1"]);
 * const ctx = { training: false, step: 0, seed: 0, path: "block" };
 * assert.deepEqual(block.apply(params, state, randn([1, 4, 6, 6]), ctx).y.shape, [1, 4, 6, 6]);
 * ```
 */
export function residual(
  body: Layer<LayerTree, LayerTree>,
  shortcut?: Layer,
  options: ResidualOptions = {},
): Layer<LayerTree, LayerTree> {
  const who = "nn.residual";
  if (!isLayer(body)) throw new TypeError(`${who}: body is not a layer (needs init and apply)`);
  if (shortcut !== undefined && !isLayer(shortcut)) {
    throw new TypeError(`${who}: shortcut is not a layer (needs init and apply)`);
  }
  const act = options.activation ?? "none";
  if (act !== "relu" && act !== "none") {
    throw new RangeError(`${who}: activation must be "relu" or "none", got ${act}`);
  }
  const SC = "shortcut";
  const kind = `residual${shortcut ? " with a projection shortcut" : ""}`;
  const split = (tree: LayerTree, has: boolean | undefined, path: string, what: "params" | "state") => {
    if (tree === null || typeof tree !== "object" || tree instanceof Tensor || Array.isArray(tree)) {
      throw layerError(path, kind, `the ${what} tree does not match the network: expected an object`);
    }
    const { [SC]: sc, ...rest } = tree;
    if (has && (sc === undefined || sc === null || typeof sc !== "object")) {
      throw layerError(
        path,
        kind,
        `the ${what} tree does not match the network: "${childPath(path, SC)}" is missing`,
      );
    }
    return { rest: rest as LayerTree, sc: has ? sc : EMPTY };
  };
  return {
    kind,
    hasParams: body.hasParams || !!shortcut?.hasParams,
    hasState: body.hasState || !!shortcut?.hasState,
    init(seed: number, path: string, opts: CreateOptions = {}) {
      checkSeed(who, seed);
      const b = body.init(seed, path, opts);
      for (const t of [b.params, b.state]) {
        if (t === null || typeof t !== "object" || t instanceof Tensor || Array.isArray(t)) {
          throw new TypeError(`${who}: the body's params and state must be records (use nn.sequential)`);
        }
        if (Object.hasOwn(t, SC)) {
          throw new RangeError(`${who}: the body has a child named "${SC}", which the shortcut uses`);
        }
      }
      const params: LayerTree = { ...b.params }, state: LayerTree = { ...b.state };
      if (shortcut) {
        const s = shortcut.init(seed, childPath(path, SC), opts);
        if (shortcut.hasParams) params[SC] = s.params;
        if (shortcut.hasState) state[SC] = s.state;
      }
      return { params, state };
    },
    apply(params: LayerTree, state: LayerTree, x: Tensor, ctx: ApplyContext) {
      const p = split(params, shortcut?.hasParams, ctx.path, "params");
      const s = split(state, shortcut?.hasState, ctx.path, "state");
      const rb = body.apply(p.rest, s.rest, x, ctx);
      const rs = shortcut
        ? shortcut.apply(p.sc, s.sc, x, { ...ctx, path: childPath(ctx.path, SC) })
        : { y: x, state: EMPTY };
      const a = rb.y, c = rs.y;
      if (a.rank !== c.rank || a.shape.some((d, i) => d !== c.shape[i])) {
        throw layerError(
          ctx.path,
          kind,
          `the body gives ${fmtShape(a.shape)} and the ${shortcut ? "shortcut" : "identity shortcut"} ${
            fmtShape(c.shape)
          }; they must match (${
            describeLayer(ctx.path, kind)
          } needs a projection shortcut when the stride or channels change)`,
        );
      }
      const next: LayerTree = { ...rb.state };
      if (shortcut?.hasState) next[SC] = rs.state;
      const y = act === "none" ? add(a, c) : fusedActivations() ? addRelu(a, c) : relu(add(a, c));
      return { y, state: next };
    },
  };
}
