/**
 * CPU loops for the neural-network kernels: softmax, cross-entropy and pooling.
 *
 * @module
 */
import type { Pool2dGeometry } from "../backend.ts";
import type { TypedArray } from "../tensor.ts";
import { hasWasmPool2x2, wasmMaxPool2x2, wasmMaxPool2x2Grad } from "../../kernels/wasm/pool2x2_wasm.ts";

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

/** A 2×2 window with stride 2 and no padding (the common max pooling). */
function is2x2(geo: Pool2dGeometry): boolean {
  return geo.kernel[0] === 2 && geo.kernel[1] === 2 && geo.stride[0] === 2 && geo.stride[1] === 2 &&
    geo.padding[0] === 0 && geo.padding[1] === 0;
}

/**
 * 2×2 stride-2 max pooling without data-dependent branches (on random data the generic loop's
 * `v > best` mispredicts about once per window). A tournament with strict comparisons, left pair
 * before right pair, picks the first maximum exactly as the generic scan does; windows holding a
 * NaN (never a maximum there) take the generic scan.
 */
function maxPool2x2(
  x: TypedArray,
  planes: number,
  h: number,
  w: number,
  ho: number,
  wo: number,
  out: TypedArray,
  argmax: TypedArray,
): void {
  for (let p = 0; p < planes; p++) {
    const xb = p * h * w, ob = p * ho * wo;
    for (let oy = 0; oy < ho; oy++) {
      const r0 = xb + 2 * oy * w, o0 = ob + oy * wo;
      for (let ox = 0; ox < wo; ox++) {
        const i = r0 + 2 * ox;
        const a = x[i], b = x[i + 1], c = x[i + w], d = x[i + w + 1];
        if (a !== a || b !== b || c !== c || d !== d) {
          let best = -Infinity, bestK = 0;
          const v = [a, b, c, d];
          for (let k = 0; k < 4; k++) {
            if (v[k] > best) {
              best = v[k];
              bestK = k;
            }
          }
          out[o0 + ox] = best;
          argmax[o0 + ox] = bestK;
          continue;
        }
        const top = +(b > a), bot = +(d > c); // winner of each pair: 0 = left, 1 = right
        const tv = x[i + top], bv = x[i + w + bot];
        const lower = +(bv > tv);
        const k = top + lower * (2 + bot - top);
        out[o0 + ox] = x[i + (k >> 1) * w + (k & 1)];
        argmax[o0 + ox] = k;
      }
    }
  }
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
  if (kind === "max" && is2x2(geo)) {
    if (
      hasWasmPool2x2 && x instanceof Float32Array && out instanceof Float32Array &&
      argmax instanceof Float32Array
    ) {
      wasmMaxPool2x2(x, planes, h, w, out, argmax);
    } else maxPool2x2(x, planes, h, w, ho, wo, out, argmax!);
    return;
  }
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
  if (kind === "max" && is2x2(geo)) {
    if (
      hasWasmPool2x2 && gy instanceof Float32Array && gx instanceof Float32Array &&
      argmax instanceof Float32Array
    ) {
      wasmMaxPool2x2Grad(gy, argmax, planes, h, w, gx);
      return;
    }
    for (let p = 0; p < planes; p++) {
      const xb = p * h * w, ob = p * ho * wo;
      for (let oy = 0; oy < ho; oy++) {
        const rb = xb + 2 * oy * w, o0 = ob + oy * wo;
        for (let ox = 0; ox < wo; ox++) {
          // Window offset k = ky·2 + kx → input offset ky·w + kx, without a branch.
          const k = argmax![o0 + ox] | 0;
          gx[rb + 2 * ox + (k >> 1) * w + (k & 1)] += gy[o0 + ox];
        }
      }
    }
    return;
  }
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

/**
 * In place on a convolution's output `[N, O, HW]`: adds `bias[o]` to channel o (when given), then
 * the ReLU (when `relu`). Each element is rounded as the separate ops round it (`add` with the bias
 * as `[1, O, 1, 1]`, then `relu`: NaN propagates, −0 becomes +0), so the values are theirs bit for
 * bit.
 */
export function biasReluChannels(
  z: TypedArray,
  bias: TypedArray | null,
  channels: number,
  hw: number,
  relu: boolean,
): void {
  const len = z.length;
  if (bias && hw > 0) {
    for (let base = 0, c = 0; base < len; base += hw, c = (c + 1) % channels) {
      const b = bias[c];
      for (let i = base; i < base + hw; i++) z[i] += b;
    }
  }
  if (relu) {
    for (let i = 0; i < len; i++) {
      const v = z[i];
      z[i] = v > 0 || v !== v ? v : 0; // as unaryLoop's relu
    }
  }
}
