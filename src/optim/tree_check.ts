/**
 * Matching trees (grads, params, updates) against an optimizer state, with errors that name the
 * parameter path. Internal module.
 *
 * @module
 */
import { fmtShape, sameShape, type Tensor } from "../tensor.ts";
import { type TensorTree, treeLeaves } from "../tree.ts";
import type { LeafState, TransformState } from "./types.ts";

const q = (path: string) => JSON.stringify(path);

/**
 * The leaves of `tree` by path; `what` names the tree in errors ("grads", "params"). Keys that
 * contain the path separator are refused (the state is keyed by path).
 */
export function leafMap(who: string, tree: TensorTree, what: string): Map<string, Tensor> {
  if (tree === undefined || tree === null) throw new TypeError(`${who}: ${what} is missing (got ${tree})`);
  const m = new Map<string, Tensor>();
  for (const l of treeLeaves(tree, `${who} (${what})`, { strictKeys: true })) m.set(l.path, l.tensor);
  return m;
}

/** Throws unless `t` has the shape, dtype and device the state recorded for `path`. */
export function checkLeaf(who: string, what: string, path: string, t: Tensor, ls: LeafState): void {
  if (!sameShape(t.shape, ls.shape)) {
    throw new RangeError(
      `${who}: ${what} at path ${q(path)} has shape ${fmtShape(t.shape)}, the optimizer state expects ${
        fmtShape(ls.shape)
      }`,
    );
  }
  if (t.dtype !== ls.dtype) {
    throw new TypeError(
      `${who}: ${what} at path ${q(path)} is ${t.dtype}, the optimizer state expects ${ls.dtype}`,
    );
  }
  if (t.device !== ls.device) {
    throw new TypeError(
      `${who}: ${what} at path ${q(path)} is on ${t.device}, the optimizer state is on ${ls.device}`,
    );
  }
}

/** Throws unless the leaves of a tree are exactly the state's, with matching shapes. */
export function checkTree(
  who: string,
  what: string,
  leaves: Map<string, Tensor>,
  state: TransformState,
): void {
  for (const path of Object.keys(state.leaves)) {
    const t = leaves.get(path);
    if (t === undefined) {
      throw new Error(
        `${who}: ${what} has no leaf at path ${
          q(path)
        }, which the optimizer state has (was the state made for another parameter tree?)`,
      );
    }
    checkLeaf(who, what, path, t, state.leaves[path]);
  }
  if (leaves.size !== Object.keys(state.leaves).length) {
    for (const path of leaves.keys()) {
      if (!Object.hasOwn(state.leaves, path)) {
        throw new Error(
          `${who}: ${what} has a leaf at path ${q(path)} that the optimizer state does not have`,
        );
      }
    }
  }
}

/** Per-leaf records for a new state: shape, dtype, device of each param plus initial buffers. */
export function initLeaves(
  who: string,
  params: TensorTree,
  buffers: (t: Tensor) => Record<string, Tensor | null>,
): Record<string, LeafState> {
  const out: Record<string, LeafState> = {};
  for (const [path, t] of leafMap(who, params, "params")) {
    out[path] = Object.freeze({
      shape: Object.freeze(t.shape.slice()),
      dtype: t.dtype,
      device: t.device,
      buffers: Object.freeze(buffers(t)),
    });
  }
  return Object.freeze(out);
}

/** A new leaf record with the old one's shape, dtype, device and new buffers. */
export function withBuffers(ls: LeafState, buffers: Record<string, Tensor | null>): LeafState {
  return Object.freeze({
    shape: ls.shape,
    dtype: ls.dtype,
    device: ls.device,
    buffers: Object.freeze(buffers),
  });
}
