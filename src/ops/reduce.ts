/**
 * Reductions over axes (`sum`, `mean`, `max`) with `keepDims`, each with its VJP.
 *
 * @module
 */
import { fmtShape, type Tensor } from "../tensor.ts";
import { record } from "../tape.ts";
import { broadcastTo } from "./broadcast.ts";
import { backendFor, normalizeAxes } from "./dispatch.ts";
import { div, eq, mul } from "./elementwise.ts";

/** The shape `x` has after reducing `axes` with keepDims. */
function keptShape(x: Tensor, axes: readonly number[]): number[] {
  return x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
}

/** Reshapes an upstream gradient to the keepDims shape and broadcasts it back to `x`. */
function expandGrad(g: Tensor, x: Tensor, axes: readonly number[]): Tensor {
  const b = backendFor("reduce", { g });
  return broadcastTo(b.reshape(g, keptShape(x, axes)), x.shape);
}

/**
 * Sum over `axes` (all when omitted). Negative axes count from the end.
 *
 * @example
 * ```ts
 * import { sum, tensor } from "@nvrm/core";
 * const s = sum(tensor([[1, 2], [3, 4]]), 0); // [4, 6]
 * console.log(s.dataSync());
 * ```
 */
export function sum(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  const b = backendFor("sum", { x });
  const ax = normalizeAxes("sum", axes, x.rank);
  const y = b.reduce("sum", x, ax, keepDims);
  return record(y, [x], (g) => [expandGrad(g, x, ax)]);
}

/** Mean over `axes` (all when omitted). */
export function mean(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  backendFor("mean", { x });
  const ax = normalizeAxes("mean", axes, x.rank);
  let count = 1;
  for (const a of ax) count *= x.shape[a];
  return div(sum(x, ax, keepDims), count);
}

/** Maximum over `axes` (all when omitted). Ties share the gradient equally. */
export function max(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  const b = backendFor("max", { x });
  const ax = normalizeAxes("max", axes, x.rank);
  const empty = ax.find((a) => x.shape[a] === 0);
  if (empty !== undefined) {
    throw new RangeError(`max: cannot reduce axis ${empty} of size 0 (shape ${fmtShape(x.shape)})`);
  }
  const y = b.reduce("max", x, ax, keepDims);
  return record(y, [x], (g) => {
    const mask = eq(x, expandGrad(y, x, ax));
    const count = expandGrad(b.reduce("sum", mask, ax, keepDims), x, ax);
    return [div(mul(expandGrad(g, x, ax), mask), count)];
  });
}
