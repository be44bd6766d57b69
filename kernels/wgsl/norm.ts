/**
 * Batch normalization over the channel axis of `[N, C, S]` (S = the product of the trailing dims).
 * Same formulas as the CPU loops (`src/cpu/norm.ts`): a shifted one-pass variance (d = x − K, K the
 * channel's first value), y = (x − mean)·γ/√(var + eps) + β, gγ = Σ gy·x̂, gβ = Σ gy,
 * gx = γ·invStd/m · (m·gy − gβ − x̂·gγ), with m = N·S values per channel.
 *
 * Each channel's m values are cut into P parts of L consecutive values (the last part shorter; P = 1
 * for short channels), one workgroup of {@linkcode NORM_WG} threads per (channel, part): a strided
 * walk of the part, then a tree in workgroup memory. The walk steps through (n, s) without a
 * division per element. The parts of a channel are then combined in a fixed order (p = 0, 1, …), so
 * the results are the same bits run to run:
 *
 * - forward, two dispatches: the partial sums Σd, Σd² of every (channel, part), then the
 *   normalization, whose threads combine their channel's parts themselves (the threads of each
 *   channel's first value also write mean and var);
 * - backward, two dispatches for one part (the sums kernel writes gγ, gβ), three for several (the
 *   partial sums Σgy, Σgy·(x − mean), a combine of one thread per channel, then the input gradient:
 *   folding the combine into it would need nine storage buffers, one over the WebGPU minimum).
 *
 * Uniforms (all kernels): N, C, S, eps (f32 bits), total = N·C·S, P, L.
 *
 * With a fused ReLU (`relu` true), the normalization writes y = relu(·) (`relu1`, as the unary
 * kernel), and the backward kernels read gy·step(y) (`reluGrad1`, as the reluGrad kernel) wherever
 * they read gy, y being the fused output: no ReLU dispatch either way and no masked-gradient buffer,
 * in as many dispatches as without it. The input gradient, which would then need nine storage
 * buffers, reads gβ and gγ from a packed copy (gβ_c, gγ_c at 2c, 2c + 1) that the kernel writing them
 * also writes.
 *
 * @module
 */
import { main1d, NAN_RELU_WGSL, RELU_GRAD_WGSL, storage, uniformBlock } from "./common.ts";

/** Uniform words of the batch-norm kernels. */
export const NORM_WORDS = 8;

/** Threads per workgroup of the per-(channel, part) kernels. */
export const NORM_WG = 256;

const DIMS = `let N = U(0); let C = U(1); let S = U(2); let eps = UF(3u); let m = N * S; let P = U(5);`;

/** A two-sum tree over the workgroup: leaves `a`, `b` of every thread; the sums land in A[0], B[0]. */
const TREE = `
  A[lid.x] = a; B[lid.x] = b;
  workgroupBarrier();
  for (var t = ${NORM_WG / 2}u; t > 0u; t = t >> 1u) {
    if (lid.x < t) { A[lid.x] += A[lid.x + t]; B[lid.x] += B[lid.x + t]; }
    workgroupBarrier();
  }`;

/**
 * The body of the per-(channel, part) kernels up to the tree: workgroup g = c·P + p walks values
 * j ∈ [p·L, min(m, (p + 1)·L)) of channel c (j = n·S + s, x at n·C·S + c·S + s), in runs contiguous
 * within each (n, c) plane. Thread lid starts at p·L + lid (one division) and steps by
 * NORM_WG = q·S + r values: s += r, n += q, and one carry when s passes S (no division per element).
 * `setup` runs once per thread of a live workgroup, `step` once per value, with `o` its flat index.
 */
function partWalk(setup: string, step: string): string {
  return `${RELU_GRAD_WGSL}var<workgroup> A: array<f32, ${NORM_WG}>;
var<workgroup> B: array<f32, ${NORM_WG}>;
@compute @workgroup_size(${NORM_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
  ${DIMS}
  let L = U(6);
  let g = wid.x + wid.y * nwg.x;
  let c = g / P;
  let p = g - c * P;
  let live = c < C;
  var a = 0.0; var b = 0.0;
  if (live) {
    ${setup}
    let j1 = min(m, (p + 1u) * L);
    var j = p * L + lid.x;
    var s = j % S;
    var o = (j / S) * C * S + c * S + s;
    let r = ${NORM_WG}u % S;
    let jump = (${NORM_WG}u / S) * C * S + r;
    let wrap = C * S - S;
    for (; j < j1; j += ${NORM_WG}u) {
      ${step}
      s += r; o += jump;
      if (s >= S) { s -= S; o += wrap; }
    }
  }${TREE}`;
}

/**
 * Forward partial sums, one workgroup per (channel, part): Part[2(c·P + p)] = Σd and
 * Part[2(c·P + p) + 1] = Σd² over the part, d = x − X[c·S]. Bindings: x (read), part (write).
 */
export function batchNormPartialStatsKernel(): string {
  return `${uniformBlock(NORM_WORDS)}${storage(1, "X", "f32")}${storage(2, "Part", "f32", true)}${
    partWalk("let k = X[c * S];", "let d = X[o] - k; a += d; b += d * d;")
  }
  if (live && lid.x == 0u) { Part[2u * g] = A[0]; Part[2u * g + 1u] = B[0]; }
}`;
}

/**
 * y = (x − mean_c)·γ_c/√(var_c + eps) + β_c, or its ReLU with `relu`, one thread per element; each
 * thread combines the P partial sums of its channel in order p = 0, 1, … (mean = K + Σd/m,
 * var = max(0, Σd²/m − (Σd/m)²), NaN propagating), and the thread of the channel's first value writes mean and var.
 * Bindings: x, part, gamma, beta (read), y, mean, var (write).
 */
export function batchNormApplyKernel(relu: boolean): string {
  const y = "(X[i] - mu) * (G[c] / sqrt(v + eps)) + Bt[c]";
  return `${uniformBlock(NORM_WORDS)}${storage(1, "X", "f32")}${storage(2, "Part", "f32")}${
    storage(3, "G", "f32")
  }${storage(4, "Bt", "f32")}${storage(5, "Y", "f32", true)}${storage(6, "Mean", "f32", true)}${
    storage(7, "Var", "f32", true)
  }${NAN_RELU_WGSL}
${main1d()}
  if (i >= U(4)) { return; }
  ${DIMS}
  let c = (i / S) % C;
  var sd = 0.0; var sd2 = 0.0;
  for (var p = 0u; p < P; p++) { let q = 2u * (c * P + p); sd += Part[q]; sd2 += Part[q + 1u]; }
  let md = sd / f32(m);
  let mu = X[c * S] + md;
  let t = sd2 / f32(m) - md * md;
  let v = select(max(0.0, t), t, isnan_(t)); // NaN propagates, as the CPU's Math.max(0, t)
  if (i == c * S) { Mean[c] = mu; Var[c] = v; }
  Y[i] = ${relu ? `relu1(${y})` : y};
}`;
}

/**
 * Backward per-channel sums, one workgroup per (channel, part): Σgy and Σgy·(x − mean_c) over the
 * part. With `parts` false (P = 1) the kernel writes gβ_c = Σgy and gγ_c = Σgy·(x − mean_c)/√(var_c +
 * eps) itself (bindings: x, gy, mean, var (read), gγ, gβ (write)); with `parts` true it writes the two
 * sums to Part[2(c·P + p)], Part[2(c·P + p) + 1] for {@linkcode batchNormCombineKernel} (bindings:
 * x, gy, mean (read), part (write)). With `relu`, gy·step(y) replaces gy, y (read) is bound right
 * after gy and the others move up by one; at P = 1 the packed sums (write) come last.
 */
export function batchNormSumsKernel(parts: boolean, relu = false): string {
  const k = relu ? 1 : 0; // bindings after gy move up by one
  const out = parts
    ? `${storage(4 + k, "Part", "f32", true)}`
    : `${storage(4 + k, "Var", "f32")}${storage(5 + k, "GG", "f32", true)}${
      storage(6 + k, "GB", "f32", true)
    }${relu ? storage(8, "GS", "f32", true) : ""}`;
  const write = parts
    ? `Part[2u * g] = A[0]; Part[2u * g + 1u] = B[0];`
    : `let gb = A[0]; let gg = B[0] / sqrt(Var[c] + eps); GB[c] = gb; GG[c] = gg;${
      relu ? " GS[2u * c] = gb; GS[2u * c + 1u] = gg;" : ""
    }`;
  const gv = relu ? "reluGrad1(Y[o], Gy[o])" : "Gy[o]";
  return `${uniformBlock(NORM_WORDS)}${storage(1, "X", "f32")}${storage(2, "Gy", "f32")}${
    relu ? storage(3, "Y", "f32") : ""
  }${storage(3 + k, "Mean", "f32")}${out}${
    partWalk("let mu = Mean[c];", `let gv = ${gv}; a += gv; b += gv * (X[o] - mu);`)
  }
  if (live && lid.x == 0u) { ${write} }
}`;
}

/**
 * The backward combine, one thread per channel: the P partial sums of
 * {@linkcode batchNormSumsKernel} in order p = 0, 1, …, giving gβ_c = Σgy and
 * gγ_c = Σgy·(x − mean_c)/√(var_c + eps). Bindings: part, var (read), gγ, gβ (write), and with
 * `packed` the packed sums (write).
 */
export function batchNormCombineKernel(packed = false): string {
  return `${uniformBlock(NORM_WORDS)}${storage(1, "Part", "f32")}${storage(2, "Var", "f32")}${
    storage(3, "GG", "f32", true)
  }${storage(4, "GB", "f32", true)}${packed ? storage(5, "GS", "f32", true) : ""}
${main1d()}
  ${DIMS}
  if (i >= C) { return; }
  var a = 0.0; var b = 0.0;
  for (var p = 0u; p < P; p++) { let q = 2u * (i * P + p); a += Part[q]; b += Part[q + 1u]; }
  let gg = b / sqrt(Var[i] + eps);
  GB[i] = a;
  GG[i] = gg;${packed ? " GS[2u * i] = a; GS[2u * i + 1u] = gg;" : ""}
}`;
}

/**
 * gx = γ_c·invStd_c/m · (m·gy − gβ_c − x̂·gγ_c), one thread per element. Bindings: x, gy, mean,
 * var, gamma, gγ, gβ (read), gx (write): eight storage buffers, the WebGPU minimum limit. With
 * `relu`: gy·step(y) replaces gy, and gβ, gγ come packed in one buffer to make room for y (bindings:
 * x, gy, y, mean, var, gamma, packed sums (read), gx (write)).
 */
export function batchNormGradKernel(relu = false): string {
  const sums = relu
    ? `${storage(3, "Y", "f32")}${storage(4, "Mean", "f32")}${storage(5, "Var", "f32")}${
      storage(6, "G", "f32")
    }${storage(7, "GS", "f32")}`
    : `${storage(3, "Mean", "f32")}${storage(4, "Var", "f32")}${storage(5, "G", "f32")}${
      storage(6, "GG", "f32")
    }${storage(7, "GB", "f32")}`;
  const gy = relu ? "reluGrad1(Y[i], Gy[i])" : "Gy[i]";
  const gb = relu ? "GS[2u * c]" : "GB[c]", gg = relu ? "GS[2u * c + 1u]" : "GG[c]";
  return `${uniformBlock(NORM_WORDS)}${storage(1, "X", "f32")}${storage(2, "Gy", "f32")}${sums}${
    storage(8, "Gx", "f32", true)
  }${RELU_GRAD_WGSL}
${main1d()}
  if (i >= U(4)) { return; }
  ${DIMS}
  let c = (i / S) % C;
  let inv = 1.0 / sqrt(Var[c] + eps);
  let fm = f32(m);
  let xh = (X[i] - Mean[c]) * inv;
  Gx[i] = G[c] * inv / fm * (fm * ${gy} - ${gb} - xh * ${gg});
}`;
}
