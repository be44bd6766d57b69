/**
 * CPU loops for the neural-network kernels: softmax, cross-entropy and pooling.
 *
 * @module
 */
import type { Pool2dGeometry } from "../backend.ts";
import type { TypedArray } from "../tensor.ts";

/** Row-wise softmax (`log` = false) or log-softmax (`log` = true) over rows of length `c`. */
export function softmaxRows(x: TypedArray, c: number, out: TypedArray, log: boolean): void {
  const rows = c === 0 ? 0 : x.length / c;
  for (let r = 0; r < rows; r++) {
    const b = r * c;
    let m = -Infinity;
    for (let j = 0; j < c; j++) if (x[b + j] > m) m = x[b + j];
    let s = 0;
    for (let j = 0; j < c; j++) s += Math.exp(x[b + j] - m);
    if (log) {
      const lse = m + Math.log(s);
      for (let j = 0; j < c; j++) out[b + j] = x[b + j] - lse;
    } else {
      const inv = 1 / s;
      for (let j = 0; j < c; j++) out[b + j] = Math.exp(x[b + j] - m) * inv;
    }
  }
}

/**
 * Mean cross-entropy of `[n, c]` logits against `labels`; writes the softmax into `probs`.
 * Accumulates in float64.
 */
export function crossEntropyRows(
  logits: TypedArray,
  labels: Int32Array,
  n: number,
  c: number,
  probs: TypedArray,
): number {
  let total = 0;
  for (let r = 0; r < n; r++) {
    const b = r * c;
    let m = -Infinity;
    for (let j = 0; j < c; j++) if (logits[b + j] > m) m = logits[b + j];
    let s = 0;
    for (let j = 0; j < c; j++) {
      const e = Math.exp(logits[b + j] - m);
      probs[b + j] = e;
      s += e;
    }
    const inv = 1 / s;
    for (let j = 0; j < c; j++) probs[b + j] *= inv;
    total += m + Math.log(s) - logits[b + labels[r]];
  }
  return n === 0 ? 0 : total / n;
}

/** out = (probs − onehot(labels)) · g / n. */
export function crossEntropyGradRows(
  probs: TypedArray,
  labels: Int32Array,
  n: number,
  c: number,
  g: number,
  out: TypedArray,
): void {
  const scale = n === 0 ? 0 : g / n;
  for (let i = 0; i < probs.length; i++) out[i] = probs[i] * scale;
  for (let r = 0; r < n; r++) out[r * c + labels[r]] -= scale;
}

/** Output size of a window along one axis. */
export function pooledSize(size: number, k: number, s: number, p: number): number {
  return Math.floor((size + 2 * p - k) / s) + 1;
}

/**
 * Max or average pooling over NCHW `x` (`planes` = N·C planes of h×w). For max pooling, `argmax`
 * receives the winner's offset inside its window (ky·kw + kx), so the backward pass needs no
 * large indices. Average pooling divides by kh·kw (padding counts, as PyTorch's default).
 */
export function pool2d(
  kind: "max" | "avg",
  x: TypedArray,
  planes: number,
  h: number,
  w: number,
  geo: Pool2dGeometry,
  out: TypedArray,
  argmax: TypedArray | null,
): void {
  const [kh, kw] = geo.kernel, [sh, sw] = geo.stride, [ph, pw] = geo.padding;
  const ho = pooledSize(h, kh, sh, ph), wo = pooledSize(w, kw, sw, pw);
  const inv = 1 / (kh * kw);
  for (let p = 0; p < planes; p++) {
    const xb = p * h * w, ob = p * ho * wo;
    for (let oy = 0; oy < ho; oy++) {
      for (let ox = 0; ox < wo; ox++) {
        let best = -Infinity, bestK = 0, acc = 0;
        for (let ky = 0; ky < kh; ky++) {
          const iy = oy * sh - ph + ky;
          if (iy < 0 || iy >= h) continue;
          for (let kx = 0; kx < kw; kx++) {
            const ix = ox * sw - pw + kx;
            if (ix < 0 || ix >= w) continue;
            const v = x[xb + iy * w + ix];
            if (v > best) {
              best = v;
              bestK = ky * kw + kx;
            }
            acc += v;
          }
        }
        if (kind === "max") {
          out[ob + oy * wo + ox] = best;
          argmax![ob + oy * wo + ox] = bestK;
        } else out[ob + oy * wo + ox] = acc * inv;
      }
    }
  }
}

/** Backward of {@linkcode pool2d}: accumulates `gy` into `gx` (zeroed by the caller). */
export function pool2dGrad(
  kind: "max" | "avg",
  gy: TypedArray,
  planes: number,
  h: number,
  w: number,
  geo: Pool2dGeometry,
  gx: TypedArray,
  argmax: TypedArray | null,
): void {
  const [kh, kw] = geo.kernel, [sh, sw] = geo.stride, [ph, pw] = geo.padding;
  const ho = pooledSize(h, kh, sh, ph), wo = pooledSize(w, kw, sw, pw);
  const inv = 1 / (kh * kw);
  for (let p = 0; p < planes; p++) {
    const xb = p * h * w, ob = p * ho * wo;
    for (let oy = 0; oy < ho; oy++) {
      for (let ox = 0; ox < wo; ox++) {
        const g = gy[ob + oy * wo + ox];
        if (kind === "max") {
          const k = argmax![ob + oy * wo + ox];
          const ky = Math.floor(k / kw), kx = k - ky * kw;
          gx[xb + (oy * sh - ph + ky) * w + (ox * sw - pw + kx)] += g;
        } else {
          for (let ky = 0; ky < kh; ky++) {
            const iy = oy * sh - ph + ky;
            if (iy < 0 || iy >= h) continue;
            for (let kx = 0; kx < kw; kx++) {
              const ix = ox * sw - pw + kx;
              if (ix < 0 || ix >= w) continue;
              gx[xb + iy * w + ix] += g * inv;
            }
          }
        }
      }
    }
  }
}
