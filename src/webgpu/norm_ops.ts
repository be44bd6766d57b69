/**
 * The WebGPU batch-norm primitives (`kernels/wgsl/norm.ts`: per-(channel, part) statistics then
 * normalization forward, per-(channel, part) sums, their combine when a channel has several parts,
 * then the input gradient backward) and the dropout mask (`kernels/wgsl/dropout.ts`, drawn
 * in-kernel). Methods of {@linkcode WebGPUBackend} delegate here.
 *
 * @module
 */
import type { Activation, BatchNormStats, DropoutMaskSpec } from "../backend.ts";
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
import { type BindingKind, f32bits, kernelSpec } from "./pipelines.ts";

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
 * combine the parts; the first value's thread of each channel writes mean and var), with the ReLU
 * applied there when `activation` is "relu". Two dispatches.
 */
export function batchNormForward(
  be: WebGPUBackend,
  x: Tensor,
  gamma: Tensor,
  beta: Tensor,
  eps: number,
  activation: Activation = "none",
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
  const relu = activation === "relu";
  const apply = kernelSpec(
    relu ? "batchNorm/apply/relu" : "batchNorm/apply",
    NORM_WORDS,
    ["read", "read", "read", "read", "write", "write", "write"],
    () => batchNormApplyKernel(relu),
  );
  be.run(apply, u, [xb, part, gb, bb, buf(y), buf(mean), buf(v)], be.grid(Math.ceil(x.size / WG1D)));
  be.pool.release(part);
  return { y, mean, var: v };
}

/**
 * The batch-norm gradients: per-channel sums (gγ, gβ) — one dispatch for whole channels, a partial
 * sums dispatch and a combine for split ones — then gx. Given `y`, the output of a forward pass with
 * a ReLU, every kernel reads gy·step(y) for gy (ReLU's gradient inline: no dispatch, no buffer), and
 * the sums also go to a packed temporary [gβ_c, gγ_c] from which gx reads them (the eight storage
 * buffers of the plain gx kernel are the WebGPU minimum, and y is a ninth).
 */
export function batchNormBackward(
  be: WebGPUBackend,
  x: Tensor,
  gamma: Tensor,
  stats: BatchNormStats,
  gy: Tensor,
  eps: number,
  y: Tensor | null = null,
): { gx: Tensor; gGamma: Tensor; gBeta: Tensor } {
  const who = "batchNormTrain (gradient)";
  const xb = be.buffer(x, who, "x"), gb = be.buffer(gamma, who, "gamma"), gyb = be.buffer(gy, who, "gy");
  const mb = be.buffer(stats.mean, who, "mean"), vb = be.buffer(stats.var, who, "var");
  const yb = y ? be.buffer(y, who, "y") : null;
  const C = x.shape[1];
  const gx = be.alloc(x.shape, who), gg = be.alloc([C], who), gbeta = be.alloc([C], who);
  if (x.size === 0) return { gx, gGamma: gg, gBeta: gbeta };
  const { u, P } = normUniforms(x.shape, eps);
  const relu = yb !== null;
  const tag = relu ? "/relu" : "";
  const inputs = yb ? [xb, gyb, yb] : [xb, gyb]; // x, gy and, with a ReLU, y
  const reads = (n: number): BindingKind[] => Array(n).fill("read");
  const packed = relu ? be.temp(2 * C * 4, who) : null;
  const sumsOut = packed ? [buf(gg), buf(gbeta), packed] : [buf(gg), buf(gbeta)];
  if (P === 1) {
    const sums = kernelSpec(
      `batchNorm/sums${tag}`,
      NORM_WORDS,
      [...reads(inputs.length + 2), ...sumsOut.map(() => "write" as const)],
      () => batchNormSumsKernel(false, relu),
    );
    be.run(sums, u, [...inputs, mb, vb, ...sumsOut], be.grid(C));
  } else {
    const part = be.temp(2 * C * P * 4, who);
    const sums = kernelSpec(
      `batchNorm/sums/parts${tag}`,
      NORM_WORDS,
      [...reads(inputs.length + 1), "write"],
      () => batchNormSumsKernel(true, relu),
    );
    be.run(sums, u, [...inputs, mb, part], be.grid(C * P));
    const combine = kernelSpec(
      `batchNorm/combine${tag}`,
      NORM_WORDS,
      ["read", "read", ...sumsOut.map(() => "write" as const)],
      () => batchNormCombineKernel(relu),
    );
    be.run(combine, u, [part, vb, ...sumsOut], be.grid(Math.ceil(C / WG1D)));
    be.pool.release(part);
  }
  const grad = kernelSpec(
    `batchNorm/grad${tag}`,
    NORM_WORDS,
    [...reads(7), "write"],
    () => batchNormGradKernel(relu),
  );
  const sums = packed ? [packed] : [buf(gg), buf(gbeta)];
  be.run(grad, u, [...inputs, mb, vb, gb, ...sums, buf(gx)], be.grid(Math.ceil(x.size / WG1D)));
  if (packed) be.pool.release(packed);
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
