/**
 * Reverse-mode autodiff over trees of tensors: {@linkcode valueAndGrad} and {@linkcode grad}.
 *
 * @module
 */
import { getBackend } from "./backend.ts";
import { dispose, withScope } from "./memory.ts";
import { add } from "./ops/elementwise.ts";
import { Tape, withTape } from "./tape.ts";
import { fmtShape, Tensor } from "./tensor.ts";
import { mapTree, type TensorTree } from "./tree.ts";

/** What {@linkcode valueAndGrad} returns: the scalar value and the gradient tree. */
export interface ValueAndGrad<P extends TensorTree> {
  /** The function's value (a scalar tensor). */
  value: Tensor;
  /** d value / d params, a tree shaped like the params. */
  grads: P;
}

/**
 * Runs `fn` once on a fresh tape and returns its value and the gradient w.r.t. the tracked leaves,
 * in a memory scope (`src/memory.ts`): every tensor the call created, except the value and the
 * gradients, is released when it returns, and everything it created when it throws.
 */
function differentiate<P extends TensorTree, A>(
  fn: (params: P) => { value: Tensor; aux: A },
  params: P,
  who: string,
): ValueAndGrad<P> & { aux: A } {
  const tape = new Tape();
  // Distinct leaf objects so that a param also passed in `rest` is not confused with the variable.
  // They are made outside the scope below, so they are never released (they share the params'
  // storage).
  const vars = new Map<string, Tensor>();
  const wrapped = mapTree(params, (t, path) => {
    const v = new Tensor(t.storage, t.shape, t.dtype, t.device);
    tape.watch(v);
    vars.set(path, v);
    return v;
  }, who);
  let result: (ValueAndGrad<P> & { aux: A }) | null = null;
  try {
    return result = differentiateIn(tape, fn, wrapped, params, vars, who);
  } finally {
    // The leaf copies count as users of the params' storage: release those the result does not
    // hold, so that the params' arrays can be recycled once the params are released.
    dispose([...vars.values()], result);
  }
}

function differentiateIn<P extends TensorTree, A>(
  tape: Tape,
  fn: (params: P) => { value: Tensor; aux: A },
  wrapped: P,
  params: P,
  vars: Map<string, Tensor>,
  who: string,
): ValueAndGrad<P> & { aux: A } {
  return withScope(() => {
    const { value, aux } = withTape(tape, () => fn(wrapped));
    if (!(value instanceof Tensor)) {
      throw new TypeError(`${who}: the function must return a scalar Tensor, got ${typeof value}`);
    }
    if (value.size !== 1) {
      throw new RangeError(
        `${who}: the function must return a scalar (one element), got shape ${fmtShape(value.shape)}`,
      );
    }
    const grads = new Map<number, Tensor>();
    grads.set(value.id, getBackend(value.device).fill(value.shape, 1, value.dtype));
    withTape(null, () => {
      for (let i = tape.entries.length - 1; i >= 0; i--) {
        const e = tape.entries[i];
        const g = grads.get(e.output.id);
        if (g === undefined) continue;
        grads.delete(e.output.id);
        const needs = e.inputs.map((t) => tape.tracked.has(t.id));
        const gs = e.vjp(g, needs);
        for (let k = 0; k < e.inputs.length; k++) {
          const inp = e.inputs[k], gi = gs[k];
          if (gi === null || gi === undefined || !needs[k]) continue;
          const prev = grads.get(inp.id);
          grads.set(inp.id, prev === undefined ? gi : add(prev, gi));
        }
      }
    });
    const out = mapTree(params, (t, path) => {
      const g = grads.get(vars.get(path)!.id);
      if (g !== undefined) return g;
      return getBackend(t.device).fill(t.shape, 0, t.dtype);
    }, who);
    return { value, grads: out, aux };
  }, who);
}

/**
 * Transforms `f(params, ...rest)` (returning a scalar tensor) into a function that returns both
 * the value and the gradient with respect to `params`, a tree of tensors. The call runs in a
 * memory scope (see `tidy`): every intermediate it creates is released when it returns, or when
 * it throws, so no `dispose` is needed; the value and the gradients are the caller's.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { crossEntropy, matmul, type Tensor, tensor, valueAndGrad } from "@nvrm/core";
 * const loss = (p: { w: Tensor }, x: Tensor, y: number[]) => crossEntropy(matmul(x, p.w), y);
 * const params = { w: tensor([[0.1, -0.2], [0.3, 0.4]]) };
 * const { value, grads } = valueAndGrad(loss)(params, tensor([[1, 2]]), [1]);
 * assert.ok(value.item() > 0);
 * assert.deepEqual(grads.w.shape, [2, 2]);
 * ```
 */
export function valueAndGrad<P extends TensorTree, R extends unknown[]>(
  f: (params: P, ...rest: R) => Tensor,
): (params: P, ...rest: R) => ValueAndGrad<P> {
  if (typeof f !== "function") throw new TypeError(`valueAndGrad: f must be a function, got ${typeof f}`);
  return (params: P, ...rest: R) => {
    const { value, grads } = differentiate(
      (p: P) => ({ value: f(p, ...rest), aux: null }),
      params,
      "valueAndGrad",
    );
    return { value, grads };
  };
}

/**
 * Internal (not exported from the entry points): {@linkcode valueAndGrad} for an `f` that returns
 * `{ value, aux }`, a scalar and any other result (e.g. a model's next state); the call returns
 * `{ value, grads, aux }` and keeps the tensors of `aux` too (they are not released with the
 * intermediates). `aux` is not differentiated.
 */
export function valueAndGradWithAux<P extends TensorTree, A, R extends unknown[]>(
  f: (params: P, ...rest: R) => { value: Tensor; aux: A },
): (params: P, ...rest: R) => ValueAndGrad<P> & { aux: A } {
  if (typeof f !== "function") throw new TypeError(`valueAndGrad: f must be a function, got ${typeof f}`);
  return (params: P, ...rest: R) => differentiate((p: P) => f(p, ...rest), params, "valueAndGrad");
}

/**
 * Like {@linkcode valueAndGrad} but returns only the gradient tree (the value is released too).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { grad, mul, sum, type Tensor, tensor } from "@nvrm/core";
 * const g = grad((x: Tensor) => sum(mul(x, x)))(tensor([1, 2, 3]));
 * assert.deepEqual([...g.dataSync()], [2, 4, 6]);
 * ```
 */
export function grad<P extends TensorTree, R extends unknown[]>(
  f: (params: P, ...rest: R) => Tensor,
): (params: P, ...rest: R) => P {
  if (typeof f !== "function") throw new TypeError(`grad: f must be a function, got ${typeof f}`);
  return (params: P, ...rest: R) => {
    const { value, grads } = differentiate((p: P) => ({ value: f(p, ...rest), aux: null }), params, "grad");
    dispose(value, grads); // only the gradients are returned
    return grads;
  };
}
