/**
 * Batch normalization over the channel axis (axis 1) of `[N, C]` or `[N, C, H, W]` (any rank ≥ 2),
 * with its VJP: the training form (batch statistics, one fused primitive per direction) and the
 * inference form (given running statistics, composed from elementwise ops).
 *
 * @module
 */
import { fmtShape, shapeSize, type Tensor } from "../tensor.ts";
import { record } from "../tape.ts";
import { backendFor } from "./dispatch.ts";
import { add, mul, reciprocal, relu, sqrt, sub } from "./elementwise.ts";
import { reshape } from "./shape.ts";
import { checkActivation } from "./activation.ts";

/** Options of {@linkcode batchNormTrain} and {@linkcode batchNormInference}. */
export interface BatchNormOptions {
  /** Added to the variance before the square root (default 1e-5, as PyTorch). */
  eps?: number;
  /**
   * An activation applied to the normalized output (default "none"): "relu" gives relu(y), the
   * values of {@linkcode relu} after the op. In training mode the ReLU is fused into the batch-norm
   * kernels (on WebGPU no ReLU dispatch forward or backward); in inference mode it is composed.
   */
  activation?: "none" | "relu";
}

/** What {@linkcode batchNormTrain} returns. */
export interface BatchNormTrainResult {
  /** The normalized output, the shape of `x`; differentiable w.r.t. x, γ and β. */
  y: Tensor;
  /** The batch mean of each channel `[C]` (not differentiable). */
  mean: Tensor;
  /**
   * The biased batch variance of each channel `[C]`, (1/m) Σ (x − mean)² with m = N·H·W (not
   * differentiable). The unbiased estimate that PyTorch folds into its running variance is
   * var · m/(m − 1).
   */
  var: Tensor;
}

function checkEps(op: string, options: BatchNormOptions | undefined): number {
  const eps = options?.eps ?? 1e-5;
  if (typeof eps !== "number" || !Number.isFinite(eps) || eps < 0) {
    throw new RangeError(`${op}: eps must be a finite number ≥ 0, got ${String(eps)}`);
  }
  return eps;
}

/** Checks x `[N, C, …]` and the `[C]` vectors; returns C. */
function checkShapes(op: string, x: Tensor, vectors: Record<string, Tensor>): number {
  if (x.rank < 2) {
    throw new RangeError(
      `${op}: x must be [N, C] or [N, C, H, W] (channel axis 1), got ${fmtShape(x.shape)}`,
    );
  }
  const c = x.shape[1];
  for (const [name, v] of Object.entries(vectors)) {
    if (v.rank !== 1 || v.shape[0] !== c) {
      throw new RangeError(
        `${op}: ${name} must be [${c}] (one value per channel of x ${fmtShape(x.shape)}), got ${
          fmtShape(v.shape)
        }`,
      );
    }
  }
  return c;
}

/**
 * Batch normalization with batch statistics (training mode, as PyTorch's `BatchNorm1d/2d` in
 * `train()`): per channel c of `x` `[N, C, …]`, over its m = N·H·W values,
 * mean_c = (1/m) Σ x, var_c = (1/m) Σ (x − mean_c)² (biased) and
 * y = (x − mean_c)/√(var_c + eps) · γ_c + β_c, or relu(y) with `activation: "relu"`.
 *
 * VJP (fused per channel), with x̂ = (x − mean)/√(var + eps): dβ = Σ g, dγ = Σ g·x̂,
 * dx = γ/(m·√(var + eps)) · (m·g − Σ g − x̂·Σ g·x̂), where after a ReLU g is the upstream gradient
 * times step(y), as {@linkcode relu}'s gradient, applied inside the same kernels. `mean` and `var`
 * are returned for the running statistics and carry no gradient. Needs m > 1 (as PyTorch).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { batchNormTrain, ones, tensor, zeros } from "@nvrm/core";
 * const x = tensor([[1, 10], [3, 20]]); // [N = 2, C = 2]
 * const { y, mean, var: v } = batchNormTrain(x, ones([2]), zeros([2]));
 * assert.deepEqual([...mean.dataSync()], [2, 15]);
 * assert.deepEqual([...v.dataSync()], [1, 25]);
 * assert.ok(Math.abs(y.dataSync()[0] + 1) < 1e-4); // (1 − 2)/√(1 + 1e-5)
 * // relu(y) in the same pass: the values of relu(batchNormTrain(x, …).y)
 * const r = batchNormTrain(x, ones([2]), zeros([2]), { activation: "relu" });
 * assert.deepEqual([...r.y.dataSync()].map((v) => v > 0), [false, false, true, true]);
 * ```
 */
export function batchNormTrain(
  x: Tensor,
  gamma: Tensor,
  beta: Tensor,
  options: BatchNormOptions = {},
): BatchNormTrainResult {
  const b = backendFor("batchNormTrain", { x, gamma, beta });
  const eps = checkEps("batchNormTrain", options);
  const activation = checkActivation("batchNormTrain", options?.activation);
  checkShapes("batchNormTrain", x, { gamma, beta });
  const m = x.shape[0] * shapeSize(x.shape.slice(2));
  if (m <= 1) {
    throw new RangeError(
      `batchNormTrain: expected more than 1 value per channel in training mode, got x ${fmtShape(x.shape)}`,
    );
  }
  const { y, mean, var: v } = b.batchNormForward(x, gamma, beta, eps, activation);
  const stats = { mean, var: v };
  const out = record(y, [x, gamma, beta], (g, needs) => {
    const r = b.batchNormBackward(x, gamma, stats, g, eps, activation === "relu" ? y : null);
    return [needs[0] ? r.gx : null, needs[1] ? r.gGamma : null, needs[2] ? r.gBeta : null];
  });
  return { y: out, mean, var: v };
}

/**
 * Batch normalization with given running statistics (inference mode, as PyTorch's `eval()`):
 * y = (x − μ_c)/√(σ²_c + eps) · γ_c + β_c per channel c of `x` `[N, C, …]`, with `runningMean` μ
 * and `runningVar` σ² of shape `[C]`, or relu(y) with `activation: "relu"`. Composed from
 * elementwise ops (scale = γ/√(σ² + eps), y = x·scale + (β − μ·scale)), so it is differentiable
 * w.r.t. every argument.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { batchNormInference, ones, tensor, zeros } from "@nvrm/core";
 * const x = tensor([[1, 5], [3, 7]]);
 * const y = batchNormInference(x, ones([2]), zeros([2]), tensor([2, 6]), tensor([1, 4]), { eps: 0 });
 * assert.deepEqual([...y.dataSync()], [-1, -0.5, 1, 0.5]);
 * ```
 */
export function batchNormInference(
  x: Tensor,
  gamma: Tensor,
  beta: Tensor,
  runningMean: Tensor,
  runningVar: Tensor,
  options: BatchNormOptions = {},
): Tensor {
  backendFor("batchNormInference", { x, gamma, beta, runningMean, runningVar });
  const eps = checkEps("batchNormInference", options);
  const activation = checkActivation("batchNormInference", options?.activation);
  const c = checkShapes("batchNormInference", x, { gamma, beta, runningMean, runningVar });
  const scale = mul(gamma, reciprocal(sqrt(add(runningVar, eps))));
  const shift = sub(beta, mul(runningMean, scale));
  const bshape = x.shape.map((_, i) => (i === 1 ? c : 1));
  const y = add(mul(x, reshape(scale, bshape)), reshape(shift, bshape));
  return activation === "relu" ? relu(y) : y;
}
