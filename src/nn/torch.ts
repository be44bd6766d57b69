/**
 * The PyTorch name and layout of the built-in models' parameters, so that a params tree becomes a
 * `state_dict` that `module.load_state_dict(...)` takes, and back.
 *
 * Our linear layers hold `w` as `[in, out]` (`y = x·w + b`); `torch.nn.Linear.weight` is
 * `[out, in]` (`y = x·Wᵀ + b`), so linear weights are transposed on the way; convolution weights
 * are `[O, C, kh, kw]` on both sides. `w` is called `weight` and `b` `bias`.
 *
 * @module
 */
import { getBackend } from "../backend.ts";
import { transpose } from "../ops/shape.ts";
import { fmtShape, sameShape, Tensor } from "../tensor.ts";
import type { TensorTree } from "../tree.ts";

/** The PyTorch name of one parameter and whether its layout is the transpose of ours. */
export interface TorchName {
  /** The `state_dict` key, e.g. `"0.weight"`. */
  name: string;
  /** True when the torch tensor is the 2-D transpose of ours (linear weights). */
  transpose: boolean;
}

/**
 * How a model's parameters are named in PyTorch:
 *
 * - `"mlp"`: {@linkcode mlp} as `nn.Sequential(nn.Linear, nn.ReLU(), nn.Linear, …)` (activations
 *   take indices too): `layers.i.w` [in, out] → `{2i}.weight` [out, in], `layers.i.b` → `{2i}.bias`;
 * - `"lenet"`: {@linkcode lenet} as a module with `conv1`, `conv2` (`nn.Conv2d`) and
 *   `fc = nn.ModuleList([nn.Linear ×3])` (see the README for the class): `conv1.w` → `conv1.weight`,
 *   `fc.i.w` [in, out] → `fc.i.weight` [out, in], biases `… .bias`;
 * - `"layers"`: a model built from the layer library (`resnet18`, `resnet34`, `resnet20`, `vgg`, or
 *   any `nn.sequential` whose names are the PyTorch module's): our dotted path is the torch key with
 *   the last part renamed, `w` → `weight` (transposed when 2-D: linear weights), `b` → `bias`,
 *   `runningMean` → `running_mean`, `runningVar` → `running_var` (BatchNorm's state); BatchNorm's
 *   `num_batches_tracked` has no counterpart and is ignored when read;
 * - a function from our dotted path and shape to a {@linkcode TorchName}, for other modules.
 */
export type TorchLayout =
  | "mlp"
  | "lenet"
  | "layers"
  | ((path: string, shape: readonly number[]) => TorchName);

/** One leaf of a tree with its PyTorch name (internal: shared with the optimizer-state map). */
export interface TorchEntry extends TorchName {
  /** Our dotted path. */
  path: string;
  /** Our tensor. */
  tensor: Tensor;
}

/** Our leaf names that differ from PyTorch's (besides `w`/`b`): BatchNorm's running statistics. */
const STATE_NAMES: Readonly<Record<string, string>> = {
  runningMean: "running_mean",
  runningVar: "running_var",
};

/** The `"layers"` layout: the dotted path with its last part renamed. */
function layersName(path: string, shape: readonly number[]): TorchName {
  const parts = path.split(".");
  const leaf = parts.pop()!;
  if (leaf in STATE_NAMES) return { name: [...parts, STATE_NAMES[leaf]].join("."), transpose: false };
  return renameLeaf(parts.join("."), leaf, shape);
}

/** `w` → `weight` (transposed when 2-D), `b` → `bias`; other names unchanged. */
function renameLeaf(prefix: string, leaf: string, shape: readonly number[]): TorchName {
  const name = leaf === "w" ? "weight" : leaf === "b" ? "bias" : leaf;
  return { name: prefix === "" ? name : `${prefix}.${name}`, transpose: leaf === "w" && shape.length === 2 };
}

function builtin(kind: "mlp" | "lenet"): (path: string, shape: readonly number[]) => TorchName {
  return (path, shape) => {
    const parts = path.split(".");
    const leaf = parts.pop()!;
    if (kind === "mlp") {
      if (parts.length !== 2 || parts[0] !== "layers" || !/^\d+$/.test(parts[1]) || !"wb".includes(leaf)) {
        throw new Error(`torch layout "mlp": unexpected parameter path "${path}" (expected layers.<i>.w|b)`);
      }
      return renameLeaf(String(2 * Number(parts[1])), leaf, shape);
    }
    const ok = (parts.length === 1 && (parts[0] === "conv1" || parts[0] === "conv2")) ||
      (parts.length === 2 && parts[0] === "fc" && /^\d+$/.test(parts[1]));
    if (!ok || !"wb".includes(leaf)) {
      throw new Error(
        `torch layout "lenet": unexpected parameter path "${path}" (expected conv1|conv2|fc.<i> . w|b)`,
      );
    }
    return renameLeaf(parts.join("."), leaf, shape);
  };
}

/** The leaves of a tree (dotted paths, sorted keys as `treeLeaves`). */
function leavesOf(who: string, tree: TensorTree): { path: string; tensor: Tensor }[] {
  const out: { path: string; tensor: Tensor }[] = [];
  const walk = (node: unknown, path: string) => {
    if (node instanceof Tensor) out.push({ path, tensor: node });
    else if (Array.isArray(node)) node.forEach((c, i) => walk(c, path === "" ? String(i) : `${path}.${i}`));
    else if (node !== null && typeof node === "object" && Object.getPrototypeOf(node) === Object.prototype) {
      for (const k of Object.keys(node).sort()) {
        walk((node as Record<string, unknown>)[k], path === "" ? k : `${path}.${k}`);
      }
    } else {
      throw new TypeError(
        `${who}: leaf at path "${path}" must be a Tensor, got ${node === null ? "null" : typeof node}`,
      );
    }
  };
  walk(tree, "");
  return out;
}

/**
 * Every leaf of `tree` with its PyTorch name, checked: names unique, transposed leaves 2-D.
 * Internal (the optimizer-state map uses it too).
 */
export function torchEntries(who: string, layout: TorchLayout, tree: TensorTree): TorchEntry[] {
  const fn = layout === "mlp" || layout === "lenet"
    ? builtin(layout)
    : layout === "layers"
    ? layersName
    : layout;
  if (typeof fn !== "function") {
    throw new TypeError(
      `${who}: layout must be "mlp", "lenet", "layers" or a function, got ${JSON.stringify(layout)}`,
    );
  }
  const seen = new Map<string, string>();
  return leavesOf(who, tree).map(({ path, tensor: t }) => {
    let tn: TorchName;
    try {
      tn = fn(path, t.shape);
    } catch (e) {
      throw new Error(`${who}: ${(e as Error).message}`, { cause: e });
    }
    if (tn === null || typeof tn !== "object" || typeof tn.name !== "string" || tn.name === "") {
      throw new TypeError(`${who}: the layout gave no name for "${path}" (got ${JSON.stringify(tn)})`);
    }
    if (tn.transpose && t.rank !== 2) {
      throw new RangeError(
        `${who}: "${path}" has shape ${fmtShape(t.shape)}; only 2-D weights are transposed`,
      );
    }
    const prev = seen.get(tn.name);
    if (prev !== undefined) throw new Error(`${who}: "${prev}" and "${path}" both map to "${tn.name}"`);
    seen.set(tn.name, path);
    return { path, tensor: t, name: tn.name, transpose: !!tn.transpose };
  });
}

/** Our tensor in torch layout (a new tensor when transposed; the same tensor otherwise). */
export function toTorchLayout(e: TorchName, t: Tensor): Tensor {
  return e.transpose ? transpose(t) : t;
}

/**
 * A torch-layout tensor `src` brought to our layout, dtype-checked and placed on `like`'s device;
 * `what` names it in errors.
 */
export function fromTorchLayout(who: string, what: string, e: TorchName, src: Tensor, like: Tensor): Tensor {
  const want = e.transpose ? [like.shape[1], like.shape[0]] : like.shape;
  if (!(src instanceof Tensor)) {
    throw new TypeError(`${who}: ${what} must be a Tensor, got ${src === null ? "null" : typeof src}`);
  }
  if (!sameShape(src.shape, want)) {
    throw new RangeError(
      `${who}: ${what} has shape ${fmtShape(src.shape)}, expected ${fmtShape(want)}` +
        (e.transpose ? ` (torch [out, in] of our ${fmtShape(like.shape)})` : ""),
    );
  }
  if (src.dtype !== like.dtype) {
    throw new TypeError(`${who}: ${what} is ${src.dtype}, expected ${like.dtype} (as the template)`);
  }
  if (src.device !== like.device && src.device !== "cpu") {
    throw new TypeError(
      `${who}: ${what} is on ${src.device} and the template on ${like.device}; move it with toDevice first`,
    );
  }
  const t = e.transpose ? transpose(src) : src;
  return t.device === like.device ? t : getBackend(like.device).fromArray(t.dataSync(), t.shape, t.dtype);
}

/**
 * A params tree as a PyTorch `state_dict`: a flat object from torch names (`"0.weight"`) to
 * tensors in torch layout (linear weights transposed to `[out, in]`), ready for
 * `saveSafetensors(path, stateDict)` and, in Python,
 * `module.load_state_dict(safetensors.torch.load_file(path))`. `layout` says how the model is
 * named in PyTorch (see {@linkcode TorchLayout}); `state` is the model's non-trainable state
 * (buffers such as running statistics) when it has one, named by the same layout.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fromTorchStateDict, mlp, toTorchStateDict } from "@nvrm/core";
 *
 * const net = mlp([784, 256, 10], { seed: 0 });
 * const sd = toTorchStateDict("mlp", net.params); // nn.Sequential(Linear, ReLU, Linear)
 * assert.deepEqual(Object.keys(sd).sort(), ["0.bias", "0.weight", "2.bias", "2.weight"]);
 * assert.deepEqual(sd["0.weight"].shape, [256, 784]);
 * const { params } = fromTorchStateDict("mlp", sd, net.params);
 * assert.deepEqual(params.layers[0].w.dataSync(), net.params.layers[0].w.dataSync());
 * ```
 */
export function toTorchStateDict(
  layout: TorchLayout,
  params: TensorTree,
  state?: TensorTree,
): Record<string, Tensor> {
  const who = "toTorchStateDict";
  const out: Record<string, Tensor> = {};
  const entries = [
    ...torchEntries(who, layout, params),
    ...(state ? torchEntries(`${who} (state)`, layout, state) : []),
  ];
  for (const e of entries) {
    if (Object.hasOwn(out, e.name)) throw new Error(`${who}: params and state both have "${e.name}"`);
    Object.defineProperty(out, e.name, {
      value: toTorchLayout(e, e.tensor),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}

/** Options of {@linkcode fromTorchStateDict}. */
export interface FromTorchOptions {
  /**
   * True (default, as PyTorch's `load_state_dict`): every key of the state dict must be used; false
   * ignores extra keys (e.g. BatchNorm's `num_batches_tracked`).
   */
  strict?: boolean;
}

/**
 * The inverse of {@linkcode toTorchStateDict}: a PyTorch `state_dict` (for example
 * `(await loadSafetensors(path)).tree` of a file written by `safetensors.torch.save_file(
 * module.state_dict(), path)`) as trees shaped like `params` (and `state`), each tensor in our
 * layout, dtype and on the template leaf's device. Every template leaf must be in the state dict
 * with the matching shape (`[out, in]` for linear weights) and dtype; with `strict` (the default)
 * the state dict may hold nothing else. Errors name the torch key and our path.
 */
export function fromTorchStateDict<P extends TensorTree, S extends TensorTree | undefined = undefined>(
  layout: TorchLayout,
  stateDict: Readonly<Record<string, Tensor>>,
  params: P,
  state?: S,
  options: FromTorchOptions = {},
): { params: P; state: S } {
  const who = "fromTorchStateDict";
  if (stateDict === null || typeof stateDict !== "object") {
    throw new TypeError(`${who}: stateDict must be an object of tensors, got ${stateDict}`);
  }
  const used = new Set<string>();
  const convert = <T extends TensorTree>(tree: T, what: string): T => {
    const map = new Map<string, Tensor>();
    for (const e of torchEntries(`${who} (${what})`, layout, tree)) {
      if (!Object.hasOwn(stateDict, e.name)) {
        throw new Error(
          `${who}: the state dict has no "${e.name}" (for our ${what} "${e.path}"); it has ${
            Object.keys(stateDict).slice(0, 8).map((k) => `"${k}"`).join(", ") || "no keys"
          }`,
        );
      }
      used.add(e.name);
      map.set(e.path, fromTorchLayout(who, `"${e.name}" (our "${e.path}")`, e, stateDict[e.name], e.tensor));
    }
    return rebuildTree(tree, map);
  };
  const p = convert(params, "params");
  const s = state === undefined ? undefined : convert(state as TensorTree, "state");
  if (options.strict ?? true) {
    const ignored = (k: string) => layout === "layers" && k.endsWith("num_batches_tracked");
    const extra = Object.keys(stateDict).filter((k) => !used.has(k) && !ignored(k));
    if (extra.length > 0) {
      throw new Error(
        `${who}: the state dict has keys the model does not: ${
          extra.slice(0, 8).map((k) => `"${k}"`).join(", ")
        }${extra.length > 8 ? ", …" : ""} (pass { strict: false } to ignore them)`,
      );
    }
  }
  return { params: p, state: s as S };
}

/** `tree`'s structure with the tensors of `map` (by dotted path). */
export function rebuildTree<T extends TensorTree>(tree: T, map: Map<string, Tensor>): T {
  const walk = (node: unknown, path: string): unknown => {
    if (node instanceof Tensor) return map.get(path)!;
    if (Array.isArray(node)) return node.map((c, i) => walk(c, path === "" ? String(i) : `${path}.${i}`));
    const o: Record<string, unknown> = {};
    for (const k of Object.keys(node as object).sort()) {
      o[k] = walk((node as Record<string, unknown>)[k], path === "" ? k : `${path}.${k}`);
    }
    return o;
  };
  return walk(tree, "") as T;
}
