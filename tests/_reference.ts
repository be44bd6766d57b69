/**
 * Reference implementations shared by the CPU kernel tests.
 */
import { type ConvDims, convOutSize } from "../kernels/wasm/conv.ts";

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
