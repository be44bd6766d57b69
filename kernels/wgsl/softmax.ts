/**
 * Row-wise softmax, log-softmax and cross-entropy over the last axis (numerically stable: the row
 * maximum is subtracted first). Short rows get one thread each; long rows one workgroup each.
 *
 * @module
 */
import { main1d, NEG_INF, storage, uniformBlock } from "./common.ts";

/** Threads per workgroup (and per row in the workgroup-per-row variant). */
export const SOFTMAX_WG = 64;

/** Uniform words of the softmax kernels: rows, C, invN (f32), pad. */
export const SOFTMAX_WORDS = 4;

/**
 * `kind`: "softmax" | "logSoftmax" write Y = f(X); "crossEntropy" writes the probabilities to Y and
 * each row's loss (logsumexp − x[label]) to L, with labels Lab (i32).
 * Bindings: X (read), [Lab (read) for crossEntropy], Y (write), [L (write) for crossEntropy].
 */
export function softmaxKernel(kind: "softmax" | "logSoftmax" | "crossEntropy", perGroup: boolean): string {
  const ce = kind === "crossEntropy";
  const binds = ce
    ? `${storage(1, "X", "f32")}${storage(2, "Lab", "i32")}${storage(3, "Y", "f32", true)}${
      storage(4, "L", "f32", true)
    }`
    : `${storage(1, "X", "f32")}${storage(2, "Y", "f32", true)}`;
  const write = kind === "logSoftmax" ? "Y[b + j] = X[b + j] - lse;" : "Y[b + j] = exp(X[b + j] - m) / s;";
  const loss = ce ? "L[row] = lse - X[b + u32(Lab[row])];" : "";
  if (!perGroup) {
    return `${uniformBlock(SOFTMAX_WORDS)}${binds}
@compute @workgroup_size(${SOFTMAX_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
  let row = (wid.x + wid.y * nwg.x) * ${SOFTMAX_WG}u + lid.x;
  if (row >= U(0)) { return; }
  let C = U(1);
  let b = row * C;
  var m = ${NEG_INF};
  for (var j = 0u; j < C; j++) { m = max(m, X[b + j]); }
  var s = 0.0;
  for (var j = 0u; j < C; j++) { s += exp(X[b + j] - m); }
  let lse = m + log(s);
  for (var j = 0u; j < C; j++) { ${write} }
  ${loss}
}`;
  }
  return `${uniformBlock(SOFTMAX_WORDS)}${binds}
var<workgroup> sh: array<f32, ${SOFTMAX_WG}>;
@compute @workgroup_size(${SOFTMAX_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= U(0)) { return; }
  let C = U(1);
  let b = row * C;
  var m = ${NEG_INF};
  for (var j = lid.x; j < C; j += ${SOFTMAX_WG}u) { m = max(m, X[b + j]); }
  sh[lid.x] = m;
  workgroupBarrier();
  for (var k = ${SOFTMAX_WG / 2}u; k > 0u; k = k >> 1u) {
    if (lid.x < k) { sh[lid.x] = max(sh[lid.x], sh[lid.x + k]); }
    workgroupBarrier();
  }
  m = sh[0];
  workgroupBarrier();
  var s = 0.0;
  for (var j = lid.x; j < C; j += ${SOFTMAX_WG}u) { s += exp(X[b + j] - m); }
  sh[lid.x] = s;
  workgroupBarrier();
  for (var k = ${SOFTMAX_WG / 2}u; k > 0u; k = k >> 1u) {
    if (lid.x < k) { sh[lid.x] = sh[lid.x] + sh[lid.x + k]; }
    workgroupBarrier();
  }
  s = sh[0];
  let lse = m + log(s);
  for (var j = lid.x; j < C; j += ${SOFTMAX_WG}u) { ${write} }
  if (lid.x == 0u) { ${loss} }
}`;
}

/** Threads of the one workgroup of {@linkcode crossEntropyMeanKernel}. */
export const CE_MEAN_WG = 256;

/** Rows × classes up to which the mean cross-entropy runs as one workgroup ({@linkcode crossEntropyMeanKernel}). */
export const CE_MEAN_MAX_ELEMENTS = 1 << 18;

/**
 * The mean cross-entropy and the probabilities in one dispatch of one workgroup (the per-row
 * kernel plus a sum over rows would take two): thread t takes rows t, t + 256, …, writes
 * their probabilities to Y and adds their losses (logsumexp − x[label]), then the workgroup sums the
 * threads' partial losses in a fixed tree and thread 0 writes the sum times invN to L[0]. Meant for
 * training batches (rows × classes ≤ {@linkcode CE_MEAN_MAX_ELEMENTS}). Uniforms as
 * {@linkcode SOFTMAX_WORDS}: rows, C, invN (f32 bits), pad. Bindings: X (read), Lab (i32, read),
 * Y (write), L (write, one element).
 */
export function crossEntropyMeanKernel(): string {
  return `${uniformBlock(SOFTMAX_WORDS)}${storage(1, "X", "f32")}${storage(2, "Lab", "i32")}${
    storage(3, "Y", "f32", true)
  }${storage(4, "L", "f32", true)}
var<workgroup> sh: array<f32, ${CE_MEAN_WG}>;
@compute @workgroup_size(${CE_MEAN_WG})
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  let rows = U(0);
  let C = U(1);
  var part = 0.0;
  for (var row = lid.x; row < rows; row += ${CE_MEAN_WG}u) {
    let b = row * C;
    var m = ${NEG_INF};
    for (var j = 0u; j < C; j++) { m = max(m, X[b + j]); }
    var s = 0.0;
    for (var j = 0u; j < C; j++) { s += exp(X[b + j] - m); }
    let lse = m + log(s);
    for (var j = 0u; j < C; j++) { Y[b + j] = exp(X[b + j] - m) / s; }
    part += lse - X[b + u32(Lab[row])];
  }
  sh[lid.x] = part;
  workgroupBarrier();
  for (var k = ${CE_MEAN_WG / 2}u; k > 0u; k = k >> 1u) {
    if (lid.x < k) { sh[lid.x] = sh[lid.x] + sh[lid.x + k]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) { L[0] = sh[0] * UF(2u); }
}`;
}

/** Uniform words of the cross-entropy gradient: n (elements), C, invN (f32), pad. */
export const CE_GRAD_WORDS = 4;

/**
 * dlogits = (probs − onehot(labels)) · g / N. Bindings: probs (read), labels (i32, read),
 * g (read, one element), out (write).
 */
export function crossEntropyGradKernel(): string {
  return `${uniformBlock(CE_GRAD_WORDS)}${storage(1, "Pr", "f32")}${storage(2, "Lab", "i32")}${
    storage(3, "G", "f32")
  }${storage(4, "Y", "f32", true)}
${main1d()}
  if (i >= U(0)) { return; }
  let C = U(1);
  let s = G[0] * UF(2u);
  let row = i / C;
  let hot = select(0.0, s, i - row * C == u32(Lab[row]));
  Y[i] = Pr[i] * s - hot;
}`;
}
