/**
 * CPU loops of batch normalization (fused per channel) and of the dropout mask. Arrays are
 * `[N, C, S]` in row-major order (S = the product of the dims after the channel axis); sums run in
 * float64 whatever the storage dtype.
 *
 * @module
 */
import type { TypedArray } from "../types.ts";
import { philox4x32 } from "../random/philox.ts";
import type { DropoutMaskSpec } from "../backend.ts";

/** Sizes of a batch-norm call: N batches, C channels, S values per channel and batch. */
export interface NormDims {
  /** Batch size. */
  N: number;
  /** Channels. */
  C: number;
  /** Values per (batch, channel) (H·W for images, 1 for `[N, C]`). */
  S: number;
}

/**
 * Training-mode batch normalization. Per channel, one pass accumulates Σd and Σd² with d = x − K,
 * K the channel's first value (a shift that keeps the one-pass variance accurate), giving
 * mean = K + Σd/m and the biased var = Σd²/m − (Σd/m)²; a second pass writes
 * y = (x − mean)·γ/√(var + eps) + β.
 */
export function batchNormForwardLoop(
  x: TypedArray,
  gamma: TypedArray,
  beta: TypedArray,
  { N, C, S }: NormDims,
  eps: number,
  y: TypedArray,
  mean: TypedArray,
  variance: TypedArray,
): void {
  const m = N * S, cs = C * S;
  for (let c = 0; c < C; c++) {
    const k = x[c * S];
    let s1 = 0, s2 = 0;
    for (let n = 0; n < N; n++) {
      const o = n * cs + c * S;
      for (let s = 0; s < S; s++) {
        const d = x[o + s] - k;
        s1 += d;
        s2 += d * d;
      }
    }
    const md = s1 / m;
    const mu = k + md, v = Math.max(0, s2 / m - md * md);
    mean[c] = mu;
    variance[c] = v;
    const a = gamma[c] / Math.sqrt(v + eps), b = beta[c];
    for (let n = 0; n < N; n++) {
      const o = n * cs + c * S;
      for (let s = 0; s < S; s++) y[o + s] = (x[o + s] - mu) * a + b;
    }
  }
}

/**
 * The backward pass of {@linkcode batchNormForwardLoop}: per channel, one pass for gβ = Σ gy and
 * gγ = Σ gy·x̂ (x̂ = (x − mean)·invStd, invStd = 1/√(var + eps)), then
 * gx = γ·invStd/m · (m·gy − gβ − x̂·gγ). With `reluY` (the output of a forward pass followed by a
 * ReLU), gy is read as gy·step(reluY), ReLU's gradient exactly as `reluGradLoop` stores it (g·1 and
 * g·0 are exact), so the same values as masking into a buffer first.
 */
export function batchNormBackwardLoop(
  x: TypedArray,
  gamma: TypedArray,
  mean: TypedArray,
  variance: TypedArray,
  gy: TypedArray,
  { N, C, S }: NormDims,
  eps: number,
  gx: TypedArray,
  gGamma: TypedArray,
  gBeta: TypedArray,
  reluY: TypedArray | null = null,
): void {
  const m = N * S, cs = C * S;
  for (let c = 0; c < C; c++) {
    const mu = mean[c], inv = 1 / Math.sqrt(variance[c] + eps);
    let sg = 0, sgx = 0;
    for (let n = 0; n < N; n++) {
      const o = n * cs + c * S;
      for (let s = 0; s < S; s++) {
        // `+(y > 0)` compiles without a branch (see unaryLoop's step)
        const g = reluY ? gy[o + s] * +(reluY[o + s] > 0) : gy[o + s];
        sg += g;
        sgx += g * (x[o + s] - mu);
      }
    }
    sgx *= inv;
    gGamma[c] = sgx;
    gBeta[c] = sg;
    const a = gamma[c] * inv / m;
    for (let n = 0; n < N; n++) {
      const o = n * cs + c * S;
      for (let s = 0; s < S; s++) {
        const xh = (x[o + s] - mu) * inv;
        const g = reluY ? gy[o + s] * +(reluY[o + s] > 0) : gy[o + s];
        gx[o + s] = a * (m * g - sg - xh * sgx);
      }
    }
  }
}

/**
 * Fills `out` with the dropout mask of {@linkcode DropoutMaskSpec}: `spec.scale` where the top 24
 * bits of Philox word i (key (k0, k1), counter (⌊i/4⌋, c1, c2, 0), lane i mod 4) are ≥
 * `spec.threshold`, else 0.
 */
export function dropoutMaskLoop(out: TypedArray, spec: DropoutMaskSpec): void {
  const w = new Uint32Array(4);
  const n = out.length;
  for (let b = 0; 4 * b < n; b++) {
    philox4x32(spec.k0, spec.k1, b, spec.c1, spec.c2, 0, w);
    const end = Math.min(4, n - 4 * b);
    for (let l = 0; l < end; l++) out[4 * b + l] = (w[l] >>> 8) >= spec.threshold ? spec.scale : 0;
  }
}
