/**
 * A fully connected layer as one op, `act(x·w + b)`, forward and backward side by side. On WebGPU
 * the forward is one matmul dispatch with the bias and the ReLU in its epilogue, and the backward
 * two (the input gradient, and the weight and bias gradients together), the ReLU's mask applied as
 * the gradient is loaded; on the CPU the values are those of `relu(add(matmul(x, w), b))`.
 *
 * @module
 */
import type { Activation } from "../backend.ts";
import { fmtShape, type Tensor } from "../tensor.ts";
import { record } from "../tape.ts";
import { backendFor } from "./dispatch.ts";
import { checkActivation } from "./activation.ts";

/** Options of {@linkcode fusedLinear}. */
export interface FusedLinearOptions {
  /** The activation applied after the bias: "none" (default) or "relu". */
  activation?: Activation;
}

/**
 * y = act(x·w + b) for x `[N, in]`, w `[in, out]` and an optional bias b `[out]`, with act the
 * identity or ReLU: the values of `relu(add(matmul(x, w), b))` in one op. With gz = g·step(y) under
 * ReLU (step(y) = 1 where y > 0, else 0) and gz = g otherwise: d/dx = gz·wᵀ, d/dw = xᵀ·gz,
 * d/db = Σ over the rows of gz.
 *
 * The layer `nn.linear(in, out, { activation: "relu" })` is built on it; its example shows the
 * fused ReLU.
 */
export function fusedLinear(
  x: Tensor,
  w: Tensor,
  b?: Tensor | null,
  options: FusedLinearOptions = {},
): Tensor {
  const op = "fusedLinear";
  const activation = checkActivation(op, options.activation);
  const be = backendFor(op, b ? { x, w, b } : { x, w });
  if (x.rank !== 2 || w.rank !== 2) {
    throw new RangeError(
      `${op}: x must be [N, in] and w [in, out], got x ${fmtShape(x.shape)} and w ${fmtShape(w.shape)}`,
    );
  }
  if (x.shape[1] !== w.shape[0]) {
    throw new RangeError(
      `${op}: x ${fmtShape(x.shape)} has ${x.shape[1]} features, w ${fmtShape(w.shape)} expects ${
        w.shape[0]
      }`,
    );
  }
  if (b && (b.rank !== 1 || b.shape[0] !== w.shape[1])) {
    throw new RangeError(`${op}: b must be [${w.shape[1]}] (w's columns), got ${fmtShape(b.shape)}`);
  }
  const y = be.linear(x, w, b ?? null, activation);
  const inputs = b ? [x, w, b] : [x, w];
  return record(y, inputs, (g, needs) => {
    const r = be.linearGrad(x, w, activation === "relu" ? y : null, g, {
      x: needs[0],
      w: needs[1],
      b: b ? needs[2] : false,
    });
    return b ? [r.gx, r.gw, r.gb] : [r.gx, r.gw];
  });
}
