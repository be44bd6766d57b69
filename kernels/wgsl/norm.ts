/**
 * Batch normalization over the channel axis of `[N, C, S]` (S = the product of the trailing dims),
 * fused per channel: two dispatches forward (per-channel statistics, then the normalization) and
 * two backward (per-channel sums, then the input gradient). The statistics kernels run one
 * workgroup per channel (a strided walk, then a tree in workgroup memory); the elementwise kernels
 * one thread per element. Same formulas as the CPU loops (`src/cpu/norm.ts`): a shifted one-pass
 * variance (d = x − K, K the channel's first value), y = (x − mean)·γ/√(var + eps) + β,
 * gγ = Σ gy·x̂, gβ = Σ gy, gx = γ·invStd/m · (m·gy − gβ − x̂·gγ).
 *
 * Uniforms (all kernels): N, C, S, eps (f32 bits), total = N·C·S.
 *
 * @module
 */
import { main1d, storage, uniformBlock } from "./common.ts";

/** Uniform words of the batch-norm kernels. */
export const NORM_WORDS = 8;

/** Threads per workgroup of the per-channel kernels. */
export const NORM_WG = 256;

const DIMS = `let N = U(0); let C = U(1); let S = U(2); let eps = UF(3u); let m = N * S;`;

/** A per-channel two-sum reduction: declares the workgroup arrays and the tree. */
const TREE = `
  A[lid.x] = a; B[lid.x] = b;
  workgroupBarrier();
  for (var s = ${NORM_WG / 2}u; s > 0u; s = s >> 1u) {
    if (lid.x < s) { A[lid.x] += A[lid.x + s]; B[lid.x] += B[lid.x + s]; }
    workgroupBarrier();
  }`;

const CHANNEL_MAIN = `var<workgroup> A: array<f32, ${NORM_WG}>;
var<workgroup> B: array<f32, ${NORM_WG}>;
@compute @workgroup_size(${NORM_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
  ${DIMS}
  let c = wid.x + wid.y * nwg.x;
  let live = c < C;`;

/** Flat index of the j-th value (j < m) of channel c. */
const AT = `fn at(j: u32, c: u32, C: u32, S: u32) -> u32 { return (j / S) * C * S + c * S + j % S; }\n`;

/**
 * Per-channel statistics, one workgroup per channel. Bindings: x (read), mean (write),
 * var (write, biased).
 */
export function batchNormStatsKernel(): string {
  return `${uniformBlock(NORM_WORDS)}${storage(1, "X", "f32")}${storage(2, "Mean", "f32", true)}${
    storage(3, "Var", "f32", true)
  }${AT}${CHANNEL_MAIN}
  var a = 0.0; var b = 0.0; var k = 0.0;
  if (live) {
    k = X[c * S];
    for (var j = lid.x; j < m; j += ${NORM_WG}u) { let d = X[at(j, c, C, S)] - k; a += d; b += d * d; }
  }${TREE}
  if (live && lid.x == 0u) {
    let md = A[0] / f32(m);
    Mean[c] = k + md;
    Var[c] = max(0.0, B[0] / f32(m) - md * md);
  }
}`;
}

/**
 * y = (x − mean_c)·γ_c/√(var_c + eps) + β_c, one thread per element. Bindings: x, mean, var,
 * gamma, beta (read), y (write).
 */
export function batchNormApplyKernel(): string {
  return `${uniformBlock(NORM_WORDS)}${storage(1, "X", "f32")}${storage(2, "Mean", "f32")}${
    storage(3, "Var", "f32")
  }${storage(4, "G", "f32")}${storage(5, "Bt", "f32")}${storage(6, "Y", "f32", true)}
${main1d()}
  if (i >= U(4)) { return; }
  ${DIMS}
  let c = (i / S) % C;
  Y[i] = (X[i] - Mean[c]) * (G[c] / sqrt(Var[c] + eps)) + Bt[c];
}`;
}

/**
 * Per-channel sums of the backward pass, one workgroup per channel: gγ_c = Σ gy·x̂ and
 * gβ_c = Σ gy. Bindings: x, gy, mean, var (read), gγ, gβ (write).
 */
export function batchNormSumsKernel(): string {
  return `${uniformBlock(NORM_WORDS)}${storage(1, "X", "f32")}${storage(2, "Gy", "f32")}${
    storage(3, "Mean", "f32")
  }${storage(4, "Var", "f32")}${storage(5, "GG", "f32", true)}${
    storage(6, "GB", "f32", true)
  }${AT}${CHANNEL_MAIN}
  var a = 0.0; var b = 0.0; var mu = 0.0;
  if (live) {
    mu = Mean[c];
    for (var j = lid.x; j < m; j += ${NORM_WG}u) {
      let o = at(j, c, C, S);
      let g = Gy[o];
      a += g; b += g * (X[o] - mu);
    }
  }${TREE}
  if (live && lid.x == 0u) {
    GB[c] = A[0];
    GG[c] = B[0] / sqrt(Var[c] + eps);
  }
}`;
}

/**
 * gx = γ_c·invStd_c/m · (m·gy − gβ_c − x̂·gγ_c), one thread per element. Bindings: x, gy, mean,
 * var, gamma, gγ, gβ (read), gx (write): eight storage buffers, the WebGPU minimum limit.
 */
export function batchNormGradKernel(): string {
  return `${uniformBlock(NORM_WORDS)}${storage(1, "X", "f32")}${storage(2, "Gy", "f32")}${
    storage(3, "Mean", "f32")
  }${storage(4, "Var", "f32")}${storage(5, "G", "f32")}${storage(6, "GG", "f32")}${storage(7, "GB", "f32")}${
    storage(8, "Gx", "f32", true)
  }
${main1d()}
  if (i >= U(4)) { return; }
  ${DIMS}
  let c = (i / S) % C;
  let inv = 1.0 / sqrt(Var[c] + eps);
  let fm = f32(m);
  let xh = (X[i] - Mean[c]) * inv;
  Gx[i] = G[c] * inv / fm * (fm * Gy[i] - GB[c] - xh * GG[c]);
}`;
}
