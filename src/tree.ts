/**
 * Trees of tensors: plain objects and arrays whose leaves are {@linkcode Tensor}s. Params, grads,
 * updates and optimizer buffers all share one tree shape; leaves are addressed by a dotted path
 * such as `"layers.0.w"`.
 *
 * A key that contains the separator `"."` (or is empty) makes paths ambiguous: `{ "a.b": t }` and
 * `{ a: { b: u } }` both have the path `"a.b"`. `treeLeaves` refuses a tree in which two leaves get
 * the same path; with `strictKeys` (what the optimizers use, since their state is keyed by path) it
 * refuses any such key.
 *
 * @module
 */
import { Tensor } from "./tensor.ts";

/** The separator of the parts of a leaf's path. */
export const PATH_SEPARATOR = ".";

/** A tree whose leaves are tensors: a tensor, an array of trees or an object of trees. */
export type TensorTree = Tensor | readonly TensorTree[] | { readonly [key: string]: TensorTree };

/** One leaf of a tree and its path. */
export interface TreeLeaf {
  /** Dotted path from the root (`""` for a bare tensor). */
  path: string;
  /** The tensor at that path. */
  tensor: Tensor;
}

function joinPath(prefix: string, key: string | number): string {
  return prefix === "" ? String(key) : `${prefix}.${key}`;
}

/**
 * The leaves of a tree in a deterministic order (arrays by index, objects by sorted key), each with
 * its path. Throws on a leaf that is not a tensor, naming its path, and on two leaves with the same
 * path (keys that contain the separator), naming both keys. With `options.strictKeys`, also throws
 * on any object key that contains the separator `"."` or is empty, even when no paths collide.
 */
export function treeLeaves(
  tree: TensorTree,
  who = "tree",
  options: { readonly strictKeys?: boolean } = {},
): TreeLeaf[] {
  const out: TreeLeaf[] = [];
  const seen = new Map<string, string>(); // path → the key path (JSON) that made it
  const strict = options.strictKeys === true;
  const walk = (node: unknown, path: string, keys: string) => {
    if (node instanceof Tensor) {
      const first = seen.get(path);
      if (first !== undefined) {
        throw new TypeError(
          `${who}: the leaves at ${first} and ${keys} both have the path ${
            JSON.stringify(path)
          }; rename the keys so that none contains "${PATH_SEPARATOR}"`,
        );
      }
      seen.set(path, keys);
      out.push({ path, tensor: node });
    } else if (Array.isArray(node)) node.forEach((c, i) => walk(c, joinPath(path, i), `${keys}[${i}]`));
    else if (node !== null && typeof node === "object" && Object.getPrototypeOf(node) === Object.prototype) {
      for (const k of Object.keys(node).sort()) {
        if (strict && (k === "" || k.includes(PATH_SEPARATOR))) {
          throw new TypeError(
            `${who}: key ${JSON.stringify(k)} at path ${JSON.stringify(path)} ${
              k === "" ? "is empty" : `contains the path separator "${PATH_SEPARATOR}"`
            }; leaves are addressed by dotted paths, so ${
              JSON.stringify(joinPath(path, k))
            } would be ambiguous (nest the objects instead: { a: { b: … } } rather than { "a.b": … })`,
          );
        }
        walk((node as Record<string, unknown>)[k], joinPath(path, k), `${keys}[${JSON.stringify(k)}]`);
      }
    } else {
      throw new TypeError(
        `${who}: leaf at path "${path}" must be a Tensor, an array or a plain object, got ${
          node === null ? "null" : typeof node
        }`,
      );
    }
  };
  walk(tree, "", "root");
  return out;
}

/** Applies `fn` to every leaf (with its path), returning a tree of the same shape. */
export function mapTree<T extends TensorTree>(
  tree: T,
  fn: (t: Tensor, path: string) => Tensor,
  who = "mapTree",
): T {
  const walk = (node: unknown, path: string): unknown => {
    if (node instanceof Tensor) return fn(node, path);
    if (Array.isArray(node)) return node.map((c, i) => walk(c, joinPath(path, i)));
    if (node !== null && typeof node === "object" && Object.getPrototypeOf(node) === Object.prototype) {
      const o: Record<string, unknown> = {};
      for (const k of Object.keys(node).sort()) {
        o[k] = walk((node as Record<string, unknown>)[k], joinPath(path, k));
      }
      return o;
    }
    throw new TypeError(
      `${who}: leaf at path "${path}" must be a Tensor, got ${node === null ? "null" : typeof node}`,
    );
  };
  return walk(tree, "") as T;
}

/**
 * Combines several trees of the same structure leaf by leaf. Throws, naming the path, when a tree
 * lacks a leaf the first one has or has one the first lacks. Leaf shapes are not compared: `fn`
 * sees the tensors as they are.
 */
export function zipTrees<T extends TensorTree>(
  trees: readonly TensorTree[],
  fn: (leaves: Tensor[], path: string) => Tensor,
  who = "zipTrees",
  names: readonly string[] = trees.map((_, i) => `tree ${i}`),
): T {
  const lists = trees.map((t, i) =>
    new Map(treeLeaves(t, `${who} (${names[i]})`).map((l) => [l.path, l.tensor]))
  );
  const first = lists[0];
  for (let i = 1; i < lists.length; i++) {
    for (const p of first.keys()) {
      if (!lists[i].has(p)) {
        throw new Error(`${who}: ${names[i]} has no leaf at path "${p}" (${names[0]} does)`);
      }
    }
    for (const p of lists[i].keys()) {
      if (!first.has(p)) throw new Error(`${who}: ${names[i]} has an extra leaf at path "${p}"`);
    }
  }
  return mapTree(trees[0] as T, (_t, path) => fn(lists.map((l) => l.get(path)!), path), who);
}
