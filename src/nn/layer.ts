/**
 * The layer protocol: a layer is a pair of pure functions, `init` (parameters and non-trainable
 * state, e.g. BatchNorm's running statistics, as two separate trees) and `apply` (a forward pass
 * that returns its output and the next state). Layers compose with `sequential` and `residual`;
 * a whole network becomes a {@linkcode StatefulModel} with {@linkcode statefulModel}.
 *
 * @module
 */
import type { CreateOptions } from "../creation.ts";
import { fmtShape, Tensor } from "../tensor.ts";
import type { TensorTree } from "../tree.ts";

/** The context of one forward pass through a layer. */
export interface ApplyContext {
  /** Training mode (batch statistics, dropout active) or evaluation mode (running statistics, no dropout). */
  training: boolean;
  /** The global training step (keys dropout masks, so that a resumed run draws the same masks). */
  step: number;
  /** The run's seed (keys dropout masks). */
  seed: number;
  /** The layer's dotted path in the network (`""` at the root), e.g. `"layer1.0.conv1"`; names it in errors. */
  path: string;
}

/** What a layer's `apply` returns: its output and its next state (the same tree shape as the state given). */
export interface LayerOutput<S extends TensorTree = TensorTree> {
  /** The output. */
  y: Tensor;
  /** The next state (the state given, unchanged, for stateless layers and in evaluation mode). */
  state: S;
}

/**
 * A layer: PyTorch-default initialization and a pure forward pass. Layers without parameters (or
 * state) have `{}` there and `hasParams` (`hasState`) false; containers leave such children out of
 * their trees, so a network's params tree holds only its trainable tensors at PyTorch-like paths.
 */
export interface Layer<P extends TensorTree = TensorTree, S extends TensorTree = TensorTree> {
  /** What the layer is, for errors (e.g. `"conv2d 3→64, 3×3"`). */
  readonly kind: string;
  /** True when `init` gives trainable tensors. */
  readonly hasParams: boolean;
  /** True when `init` gives a state (running statistics). */
  readonly hasState: boolean;
  /**
   * Fresh parameters and state. Every random draw is keyed by `(seed, path + "." + leaf)`, so a
   * layer's draw depends only on the seed and where it sits. `options` sets the dtype and device.
   */
  init(seed: number, path: string, options?: CreateOptions): { params: P; state: S };
  /** The forward pass of a batch `x`: the output and the next state. Pure: mutates nothing. */
  apply(params: P, state: S, x: Tensor, ctx: ApplyContext): LayerOutput<S>;
}

/** How a layer's path reads in messages. */
export function describeLayer(path: string, kind: string): string {
  return path === "" ? `layer (${kind}) at the root` : `layer "${path}" (${kind})`;
}

/** An error of the layer at `path`, of the same class as `cause` when given. */
export function layerError(path: string, kind: string, message: string, cause?: unknown): Error {
  const text = `${describeLayer(path, kind)}: ${message}`;
  if (cause instanceof RangeError) return new RangeError(text, { cause });
  if (cause instanceof TypeError) return new TypeError(text, { cause });
  return cause === undefined ? new RangeError(text) : new Error(text, { cause });
}

/** Runs `fn` and prefixes any error it throws with the layer's path and kind. */
export function atLayer<T>(path: string, kind: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof Error && e.message.startsWith("layer ")) throw e; // already names a layer
    throw layerError(path, kind, e instanceof Error ? e.message : String(e), e);
  }
}

/** Checks that `x` is a tensor of rank `rank` (one of them) before a layer reads its shape. */
export function checkInput(
  path: string,
  kind: string,
  x: Tensor,
  ranks: readonly number[],
  want: string,
): void {
  if (!(x instanceof Tensor)) {
    throw layerError(path, kind, `x must be a Tensor ${want}, got ${x === null ? "null" : typeof x}`);
  }
  if (!ranks.includes(x.rank)) throw layerError(path, kind, `x must be ${want}, got ${fmtShape(x.shape)}`);
}

/** `path` extended by `key`. */
export function childPath(path: string, key: string): string {
  return path === "" ? key : `${path}.${key}`;
}

/** The checked seed of an init call (uint32). */
export function checkSeed(who: string, seed: number): number {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new RangeError(`${who}: seed must be an integer in [0, 2^32), got ${seed}`);
  }
  return seed;
}

/** A positive integer argument of a layer builder, checked. */
export function positiveInt(who: string, name: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) {
    throw new RangeError(`${who}: ${name} must be a positive integer, got ${v}`);
  }
  return v;
}

/** The empty tree (params or state of a layer that has none). */
export const EMPTY: Record<string, never> = Object.freeze({}) as Record<string, never>;

/** The tensor at `tree[key]` for a layer's params/state, or an error naming the path. */
export function leaf(
  tree: unknown,
  key: string,
  path: string,
  kind: string,
  what: "params" | "state",
): Tensor {
  const t = tree !== null && typeof tree === "object" ? (tree as Record<string, unknown>)[key] : undefined;
  if (!(t instanceof Tensor)) {
    throw layerError(
      path,
      kind,
      `the ${what} tree does not match the layer: expected a Tensor at "${childPath(path, key)}", got ${
        t === undefined ? "nothing" : t === null ? "null" : typeof t
      }`,
    );
  }
  return t;
}

/** Checks a params/state tensor's shape against the layer's. */
export function checkLeafShape(
  t: Tensor,
  shape: readonly number[],
  path: string,
  kind: string,
  name: string,
): void {
  if (t.rank !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw layerError(
      path,
      kind,
      `"${childPath(path, name)}" has shape ${fmtShape(t.shape)}, expected ${fmtShape(shape)}`,
    );
  }
}
