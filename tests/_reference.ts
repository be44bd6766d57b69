/**
 * Reference implementations shared by the CPU kernel tests.
 */
import assert from "node:assert/strict";
import { type ConvDims, convOutSize, type ConvPathMode, setConvPath } from "../kernels/wasm/conv.ts";
import { type ConvThreads, setConvThreads } from "../kernels/wasm/conv_wasm.ts";

/** Direct 7-loop references in float64: forward y, grad input gx, grad weight gw. */
export function refConv(x: ArrayLike<number>, w: ArrayLike<number>, gy: ArrayLike<number>, d: ConvDims) {
  const { N, C, H, W, O, kh, kw, sh, sw, ph, pw } = d;
  const { Ho, Wo } = convOutSize(d);
  const y = new Float64Array(N * O * Ho * Wo), gx = new Float64Array(N * C * H * W);
  const gw = new Float64Array(O * C * kh * kw);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      for (let oy = 0; oy < Ho; oy++) {
        for (let ox = 0; ox < Wo; ox++) {
          const yi = ((n * O + o) * Ho + oy) * Wo + ox;
          for (let c = 0; c < C; c++) {
            for (let ky = 0; ky < kh; ky++) {
              for (let kx = 0; kx < kw; kx++) {
                const iy = oy * sh - ph + ky, ix = ox * sw - pw + kx;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                const xi = ((n * C + c) * H + iy) * W + ix, wi = ((o * C + c) * kh + ky) * kw + kx;
                y[yi] += x[xi] * w[wi];
                gx[xi] += gy[yi] * w[wi];
                gw[wi] += gy[yi] * x[xi];
              }
            }
          }
        }
      }
    }
  }
  return { y, gx, gw };
}

/** Deterministic uniform numbers in [-1, 1) (a small LCG; test data only). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  };
}

/** A float array constructor. */
export type FloatCtor = typeof Float32Array | typeof Float64Array;

/** `n` draws of `r` in a new array of `Ctor`. */
export function randArray(Ctor: FloatCtor, n: number, r: () => number): Float32Array | Float64Array {
  const x = new Ctor(n);
  for (let i = 0; i < n; i++) x[i] = r();
  return x;
}

/**
 * Fails unless every |got − want| is at most `tol` times the largest |want| (at least 1): float32 sums
 * lose digits on the large values.
 */
export function assertCloseToLargest(
  name: string,
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tol: number,
): void {
  assert.equal(got.length, want.length, `${name}: length`);
  let scale = 1;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  for (let i = 0; i < want.length; i++) {
    if (!(Math.abs(got[i] - want[i]) <= tol * scale)) {
      assert.fail(`${name}[${i}] = ${got[i]}, want ${want[i]}`);
    }
  }
}

/**
 * Runs `f` with a global setting changed through `set` (a setter that returns the previous value,
 * as `setConvPath`, `setMatmulKernel`, `setFusedActivations`), then restores it.
 */
export function withSetting<V, T>(set: (value: V) => V, value: V, f: () => T): T {
  const prev = set(value);
  try {
    return f();
  } finally {
    set(prev);
  }
}

/** Runs `f` with float32 stride-1 convolutions on `mode`'s path (`setConvPath`), then restores it. */
export function withConvPath<T>(mode: ConvPathMode, f: () => T): T {
  return withSetting(setConvPath, mode, f);
}

/** Runs `f` with the convolution kernels' threads set to `mode` (`setConvThreads`), then restores it. */
export function withConvThreads<T>(mode: ConvThreads, f: () => T): T {
  return withSetting(setConvThreads, mode, f);
}
