// Temporary reference kernels until src/cpu/kernels lands.
import type { TypedArray } from "../tensor.ts";
export function gemm(
  transA: boolean,
  transB: boolean,
  M: number,
  N: number,
  K: number,
  a: TypedArray,
  aOff: number,
  b: TypedArray,
  bOff: number,
  c: TypedArray,
  cOff: number,
): void {
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) c[cOff + i * N + j] = 0;
    for (let k = 0; k < K; k++) {
      const av = transA ? a[aOff + k * M + i] : a[aOff + i * K + k];
      for (let j = 0; j < N; j++) {
        c[cOff + i * N + j] += av * (transB ? b[bOff + j * K + k] : b[bOff + k * N + j]);
      }
    }
  }
}
export function im2col(
  x: TypedArray,
  xOff: number,
  C: number,
  H: number,
  W: number,
  kh: number,
  kw: number,
  sh: number,
  sw: number,
  ph: number,
  pw: number,
  Ho: number,
  Wo: number,
  cols: TypedArray,
): void {
  let r = 0;
  for (let c = 0; c < C; c++) {
    for (let ky = 0; ky < kh; ky++) {
      for (let kx = 0; kx < kw; kx++, r++) {
        for (let oy = 0; oy < Ho; oy++) {
          const iy = oy * sh - ph + ky;
          for (let ox = 0; ox < Wo; ox++) {
            const ix = ox * sw - pw + kx;
            cols[r * Ho * Wo + oy * Wo + ox] = iy >= 0 && iy < H && ix >= 0 && ix < W
              ? x[xOff + (c * H + iy) * W + ix]
              : 0;
          }
        }
      }
    }
  }
}
export function col2im(
  cols: TypedArray,
  C: number,
  H: number,
  W: number,
  kh: number,
  kw: number,
  sh: number,
  sw: number,
  ph: number,
  pw: number,
  Ho: number,
  Wo: number,
  x: TypedArray,
  xOff: number,
): void {
  let r = 0;
  for (let c = 0; c < C; c++) {
    for (let ky = 0; ky < kh; ky++) {
      for (let kx = 0; kx < kw; kx++, r++) {
        for (let oy = 0; oy < Ho; oy++) {
          const iy = oy * sh - ph + ky;
          if (iy < 0 || iy >= H) continue;
          for (let ox = 0; ox < Wo; ox++) {
            const ix = ox * sw - pw + kx;
            if (ix >= 0 && ix < W) x[xOff + (c * H + iy) * W + ix] += cols[r * Ho * Wo + oy * Wo + ox];
          }
        }
      }
    }
  }
}
