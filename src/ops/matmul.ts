/**
 * Matrix products: 2-D and batched (leading dims broadcast), with the VJP using the backend's
 * transposed variants so the backward pass needs no explicit transposes.
 *
 * @module
 */
import { fmtShape, type Tensor } from "../tensor.ts";
import { record } from "../tape.ts";
import { sumTo } from "./broadcast.ts";
import { backendFor, broadcastShapes } from "./dispatch.ts";

/** op(a)·op(b) where op transposes the last two dims when the flag is set. */
function matmulT(a: Tensor, b: Tensor, transA: boolean, transB: boolean, op = "matmul"): Tensor {
  const be = backendFor(op, { a, b });
  if (a.rank < 2 || b.rank < 2) {
    throw new RangeError(
      `${op}: both arguments need rank ≥ 2, got a ${fmtShape(a.shape)} and b ${fmtShape(b.shape)}`,
    );
  }
  const [m, ka] = transA
    ? [a.shape[a.rank - 1], a.shape[a.rank - 2]]
    : [a.shape[a.rank - 2], a.shape[a.rank - 1]];
  const [kb, n] = transB
    ? [b.shape[b.rank - 1], b.shape[b.rank - 2]]
    : [b.shape[b.rank - 2], b.shape[b.rank - 1]];
  if (ka !== kb) {
    throw new RangeError(
      `${op}: inner dimensions differ: a ${fmtShape(a.shape)} has ${ka} columns, b ${
        fmtShape(b.shape)
      } has ${kb} rows`,
    );
  }
  const batch = broadcastShapes(`${op} (batch dims)`, a.shape.slice(0, -2), b.shape.slice(0, -2));
  const y = be.matmul(a, b, transA, transB, [...batch, m, n]);
  return record(y, [a, b], (g, needs) => {
    // y = A·B with A = op(a), B = op(b): dA = g·Bᵀ, dB = Aᵀ·g, then undo op. A product whose
    // gradient nobody wants (the input batch of a first layer) is skipped.
    const ga = !needs[0] ? null : transA ? matmulT(b, g, transB, true) : matmulT(g, b, false, !transB);
    const gb = !needs[1] ? null : transB ? matmulT(g, a, true, transA) : matmulT(a, g, !transA, false);
    return [ga && sumTo(ga, a.shape), gb && sumTo(gb, b.shape)];
  });
}

/**
 * Matrix product of the last two dims; leading dims broadcast (batched matmul).
 *
 * @example
 * ```ts
 * import { matmul, tensor } from "@nvrm/core";
 * const y = matmul(tensor([[1, 2], [3, 4]]), tensor([[5, 6], [7, 8]]));
 * console.log(y.dataSync()); // [19, 22, 43, 50]
 * ```
 */
export function matmul(a: Tensor, b: Tensor): Tensor {
  return matmulT(a, b, false, false);
}

/**
 * op(a)·op(b) with optional transposes of the last two dims, without materializing them.
 */
export function matmulTransposed(
  a: Tensor,
  b: Tensor,
  options: { transposeA?: boolean; transposeB?: boolean } = {},
): Tensor {
  return matmulT(a, b, options.transposeA ?? false, options.transposeB ?? false, "matmulTransposed");
}
