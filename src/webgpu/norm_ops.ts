/**
 * The WebGPU batch-norm primitives (`kernels/wgsl/norm.ts`: per-(channel, part) statistics then
 * normalization forward, per-(channel, part) sums, their combine when a channel has several parts,
 * then the input gradient backward) and the dropout mask (`kernels/wgsl/dropout.ts`, drawn
 * in-kernel). Methods of {@linkcode WebGPUBackend} delegate here.
 *
 * @module
 */
import type { BatchNormStats, DropoutMaskSpec } from "../backend.ts";
import { shapeSize, type Tensor } from "../tensor.ts";
import { WG1D } from "../../kernels/wgsl/common.ts";
import {
  batchNormApplyKernel,
  batchNormCombineKernel,
  batchNormGradKernel,
  batchNormPartialStatsKernel,
  batchNormSumsKernel,
  NORM_WORDS,
} from "../../kernels/wgsl/norm.ts";
import { DROPOUT_WORDS, dropoutMaskKernel } from "../../kernels/wgsl/dropout.ts";
import type { GpuStorage, WebGPUBackend } from "./backend.ts";
import { f32bits, kernelSpec } from "./pipelines.ts";

const buf = (t: Tensor): GPUBuffer => (t.storage as GpuStorage).buffer;

/** Fewest values in a part of a split channel (a channel shorter than two parts stays whole). */
export const BATCH_NORM_MIN_PART = 4096;
/** Workgroups (channels × parts) a split aims at: a few per compute unit of a large GPU. */
export const BATCH_NORM_TARGET_GROUPS = 512;
/** Most parts of one channel (the normalization's threads each combine their channel's parts). */
export const BATCH_NORM_MAX_PARTS = 32;

/**
 * How many parts (workgroups) the statistics and sums of each of `C` channels of `m` values are
 * split into: enough for C·P to reach {@linkcode BATCH_NORM_TARGET_GROUPS}, each part at least
 * {@linkcode BATCH_NORM_MIN_PART} values, at most {@linkcode BATCH_NORM_MAX_PARTS}; 1 when the
 * channels are short or already that many. E.g. ResNet-18 at batch 128 on 32×32 images: 8 parts of
 * 16,384 values for its 64 channels of 131,072, 4 for 128 × 32,768, 2 for 256 × 8,192, 1 for
 * 512 × 2,048.
 */
export function batchNormParts(C: number, m: number): number {
  if (m < 2 * BATCH_NORM_MIN_PART) return 1;
  const p = Math.min(
    BATCH_NORM_MAX_PARTS,
    Math.floor(m / BATCH_NORM_MIN_PART),
    Math.ceil(BATCH_NORM_TARGET_GROUPS / C),
  );
  return Math.max(1, p);
}

/** The uniforms of the batch-norm kernels and the part count P. */
function normUniforms(shape: readonly number[], eps: number): { u: number[]; P: number } {
  const N = shape[0], C = shape[1], S = shapeSize(shape.slice(2)), m = N * S;
  const P = batchNormParts(C, m);
  return { u: [N, C, S, f32bits(eps), N * C * S, P, Math.ceil(m / P), 0], P };
}

/**
 * Training-mode batch normalization: partial statistics per (channel, part), then y (whose threads
 * combine the parts; the first value's thread of each channel writes mean and var). Two dispatches.
 */
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
  const { u, P } = normUniforms(x.shape, eps);
  const part = be.temp(2 * C * P * 4, who);
  const stats = kernelSpec("batchNorm/stats", NORM_WORDS, ["read", "write"], batchNormPartialStatsKernel);
  be.run(stats, u, [xb, part], be.grid(C * P));
  const apply = kernelSpec(
    "batchNorm/apply",
    NORM_WORDS,
    ["read", "read", "read", "read", "write", "write", "write"],
    batchNormApplyKernel,
  );
  be.run(apply, u, [xb, part, gb, bb, buf(y), buf(mean), buf(v)], be.grid(Math.ceil(x.size / WG1D)));
  be.pool.release(part);
  return { y, mean, var: v };
}

/**
 * The batch-norm gradients: per-channel sums (gγ, gβ) — one dispatch for whole channels, a partial
 * sums dispatch and a combine for split ones — then gx.
 */
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
  const { u, P } = normUniforms(x.shape, eps);
  if (P === 1) {
    const sums = kernelSpec(
      "batchNorm/sums",
      NORM_WORDS,
      ["read", "read", "read", "read", "write", "write"],
      () => batchNormSumsKernel(false),
    );
    be.run(sums, u, [xb, gyb, mb, vb, buf(gg), buf(gbeta)], be.grid(C));
  } else {
    const part = be.temp(2 * C * P * 4, who);
    const sums = kernelSpec(
      "batchNorm/sums/parts",
      NORM_WORDS,
      ["read", "read", "read", "write"],
      () => batchNormSumsKernel(true),
    );
    be.run(sums, u, [xb, gyb, mb, part], be.grid(C * P));
    const combine = kernelSpec(
      "batchNorm/combine",
      NORM_WORDS,
      ["read", "read", "write", "write"],
      batchNormCombineKernel,
    );
    be.run(combine, u, [part, vb, buf(gg), buf(gbeta)], be.grid(Math.ceil(C / WG1D)));
    be.pool.release(part);
  }
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
