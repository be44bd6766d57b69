/**
 * The WebGPU batch-norm primitives (`kernels/wgsl/norm.ts`: statistics then normalization forward,
 * per-channel sums then the input gradient backward) and the dropout mask
 * (`kernels/wgsl/dropout.ts`, drawn in-kernel). Methods of {@linkcode WebGPUBackend} delegate here.
 *
 * @module
 */
import type { BatchNormStats, DropoutMaskSpec } from "../backend.ts";
import { shapeSize, type Tensor } from "../tensor.ts";
import { WG1D } from "../../kernels/wgsl/common.ts";
import {
  batchNormApplyKernel,
  batchNormGradKernel,
  batchNormStatsKernel,
  batchNormSumsKernel,
  NORM_WORDS,
} from "../../kernels/wgsl/norm.ts";
import { DROPOUT_WORDS, dropoutMaskKernel } from "../../kernels/wgsl/dropout.ts";
import type { GpuStorage, WebGPUBackend } from "./backend.ts";
import { f32bits, kernelSpec } from "./pipelines.ts";

const buf = (t: Tensor): GPUBuffer => (t.storage as GpuStorage).buffer;

function normUniforms(shape: readonly number[], eps: number): number[] {
  const N = shape[0], C = shape[1], S = shapeSize(shape.slice(2));
  return [N, C, S, f32bits(eps), N * C * S, 0, 0, 0];
}

/** Training-mode batch normalization: per-channel statistics, then y. */
export function batchNormForward(
  be: WebGPUBackend,
  x: Tensor,
  gamma: Tensor,
  beta: Tensor,
  eps: number,
): BatchNormStats & { y: Tensor } {
  const who = "batchNormTrain";
  const xb = be.buffer(x, who, "x"), gb = be.buffer(gamma, who, "gamma"), bb = be.buffer(beta, who, "beta");
  const C = x.shape[1];
  const y = be.alloc(x.shape, who), mean = be.alloc([C], who), v = be.alloc([C], who);
  if (x.size === 0) return { y, mean, var: v };
  const u = normUniforms(x.shape, eps);
  const stats = kernelSpec("batchNorm/stats", NORM_WORDS, ["read", "write", "write"], batchNormStatsKernel);
  be.run(stats, u, [xb, buf(mean), buf(v)], be.grid(C));
  const apply = kernelSpec(
    "batchNorm/apply",
    NORM_WORDS,
    ["read", "read", "read", "read", "read", "write"],
    batchNormApplyKernel,
  );
  be.run(apply, u, [xb, buf(mean), buf(v), gb, bb, buf(y)], be.grid(Math.ceil(x.size / WG1D)));
  return { y, mean, var: v };
}

/** The batch-norm gradients: per-channel sums (gγ, gβ), then gx. */
export function batchNormBackward(
  be: WebGPUBackend,
  x: Tensor,
  gamma: Tensor,
  stats: BatchNormStats,
  gy: Tensor,
  eps: number,
): { gx: Tensor; gGamma: Tensor; gBeta: Tensor } {
  const who = "batchNormTrain (gradient)";
  const xb = be.buffer(x, who, "x"), gb = be.buffer(gamma, who, "gamma"), gyb = be.buffer(gy, who, "gy");
  const mb = be.buffer(stats.mean, who, "mean"), vb = be.buffer(stats.var, who, "var");
  const C = x.shape[1];
  const gx = be.alloc(x.shape, who), gg = be.alloc([C], who), gbeta = be.alloc([C], who);
  if (x.size === 0) return { gx, gGamma: gg, gBeta: gbeta };
  const u = normUniforms(x.shape, eps);
  const sums = kernelSpec(
    "batchNorm/sums",
    NORM_WORDS,
    ["read", "read", "read", "read", "write", "write"],
    batchNormSumsKernel,
  );
  be.run(sums, u, [xb, gyb, mb, vb, buf(gg), buf(gbeta)], be.grid(C));
  const grad = kernelSpec(
    "batchNorm/grad",
    NORM_WORDS,
    ["read", "read", "read", "read", "read", "read", "read", "write"],
    batchNormGradKernel,
  );
  be.run(
    grad,
    u,
    [xb, gyb, mb, vb, gb, buf(gg), buf(gbeta), buf(gx)],
    be.grid(Math.ceil(x.size / WG1D)),
  );
  return { gx, gGamma: gg, gBeta: gbeta };
}

/** The dropout mask, drawn in-kernel (bit-identical to the CPU's). */
export function dropoutMask(
  be: WebGPUBackend,
  shape: readonly number[],
  spec: DropoutMaskSpec,
): Tensor {
  const mask = be.alloc(shape, "dropout");
  const n = mask.size;
  if (n === 0) return mask;
  const k = kernelSpec("dropout/mask", DROPOUT_WORDS, ["write"], dropoutMaskKernel);
  be.run(
    k,
    [n, spec.k0, spec.k1, spec.c1, spec.c2, spec.threshold, f32bits(spec.scale), 0],
    [buf(mask)],
    be.grid(Math.ceil(Math.ceil(n / 4) / WG1D)),
  );
  return mask;
}
