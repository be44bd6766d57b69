/**
 * Broadcasting helpers shared by the VJPs: `sumTo` (the adjoint of broadcasting) and `broadcastTo`.
 *
 * @module
 */
import { fmtShape, sameShape, type Tensor } from "../tensor.ts";
import { record } from "../tape.ts";
import { backendFor, broadcastShapes, scalarLike } from "./dispatch.ts";

/**
 * Sums `g` over the axes along which `shape` was broadcast to `g.shape`, giving a tensor of
 * `shape` (the adjoint of broadcasting).
 */
export function sumTo(g: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(g.shape, shape)) return g;
  const b = backendFor("sumTo", { g });
  const lead = g.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  }
  const s = axes.length ? b.reduce("sum", g, axes, true) : g;
  const out = b.reshape(s, shape);
  return record(out, [g], (gg) => [broadcastTo(gg, g.shape)]);
}

/**
 * Broadcasts `x` to `shape` (NumPy rules).
 *
 * @example
 * ```ts
 * import { broadcastTo, tensor } from "@nvrm/core";
 * const y = broadcastTo(tensor([1, 2, 3]), [2, 3]);
 * console.log(y.shape); // [2, 3]
 * ```
 */
export function broadcastTo(x: Tensor, shape: readonly number[]): Tensor {
  const b = backendFor("broadcastTo", { x });
  if (sameShape(x.shape, shape)) return x;
  const out = broadcastShapes("broadcastTo", x.shape, shape);
  if (!sameShape(out, shape)) {
    throw new RangeError(`broadcastTo: cannot broadcast ${fmtShape(x.shape)} to ${fmtShape(shape)}`);
  }
  const y = b.binary("add", x, scalarLike(0, x), shape);
  return record(y, [x], (g) => [sumTo(g, x.shape)]);
}
