/**
 * 2-D convolution on the CPU as GEMM: im2col/col2im helpers (NCHW input, OIHW weights, stride,
 * zero padding) and whole-tensor forward / grad-input / grad-weight built on {@linkcode gemm}.
 *
 * `cols` has `C·kh·kw` rows (row `(c·kh + ky)·kw + kx`) and one column per output position
 * (`oy·Wo + ox`); a batch of images is laid side by side (column `n·Ho·Wo + oy·Wo + ox`) by passing
 * `colsOff` and the row stride `ldCols`.
 *
 * @module
 */
import { gemm, type GemmArray } from "./gemm.ts";

/** Shape and geometry of a convolution: input `[N, C, H, W]`, weight `[O, C, kh, kw]`. */
export interface ConvDims {
  /** Batch size. */
  N: number;
  /** Input channels. */
  C: number;
  /** Input height. */
  H: number;
  /** Input width. */
  W: number;
  /** Output channels. */
  O: number;
  /** Kernel height. */
  kh: number;
  /** Kernel width. */
  kw: number;
  /** Stride along height. */
  sh: number;
  /** Stride along width. */
  sw: number;
  /** Zero padding along height (both sides). */
  ph: number;
  /** Zero padding along width (both sides). */
  pw: number;
}

/** Output height and width of a convolution: `floor((H + 2ph − kh) / sh) + 1`, likewise for W. */
export function convOutSize(d: ConvDims): { Ho: number; Wo: number } {
  const Ho = Math.floor((d.H + 2 * d.ph - d.kh) / d.sh) + 1;
  const Wo = Math.floor((d.W + 2 * d.pw - d.kw) / d.sw) + 1;
  return { Ho, Wo };
}

function checkDims(fn: string, d: ConvDims): { Ho: number; Wo: number } {
  for (const k of ["N", "C", "H", "W", "O", "kh", "kw", "sh", "sw", "ph", "pw"] as const) {
    const v = d[k];
    const min = k === "ph" || k === "pw" ? 0 : 1;
    if (!Number.isInteger(v) || v < min) {
      throw new RangeError(`${fn}: ${k} must be an integer >= ${min}, got ${v}`);
    }
  }
  const o = convOutSize(d);
  if (o.Ho < 1 || o.Wo < 1) {
    throw new RangeError(
      `${fn}: kernel ${d.kh}×${d.kw} does not fit the padded input ${d.H + 2 * d.ph}×${d.W + 2 * d.pw}`,
    );
  }
  return o;
}

function checkLen(fn: string, name: string, x: GemmArray, want: number): void {
  if (x.length !== want) throw new RangeError(`${fn}: ${name} must have ${want} elements, got ${x.length}`);
}

/** Output columns `[ox0, ox1)` whose input column `ox·sw − pw + kx` lies inside `[0, W)`. */
function validRange(W: number, Wo: number, sw: number, pw: number, kx: number): [number, number] {
  const lo = Math.max(0, Math.ceil((pw - kx) / sw));
  const hi = Math.min(Wo, Math.floor((W - 1 + pw - kx) / sw) + 1);
  return [lo, Math.max(lo, hi)];
}

/**
 * Unfolds one image `x[C, H, W]` (at `xOff`) into `cols[C·kh·kw, Ho·Wo]` (at `colsOff`, rows
 * `ldCols` apart), zero where the window falls into the padding.
 */
export function im2col(
  x: GemmArray,
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
  cols: GemmArray,
  colsOff = 0,
  ldCols: number = Ho * Wo,
): void {
  for (let c = 0; c < C; c++) {
    for (let ky = 0; ky < kh; ky++) {
      for (let kx = 0; kx < kw; kx++) {
        const row = colsOff + ((c * kh + ky) * kw + kx) * ldCols;
        const [ox0, ox1] = validRange(W, Wo, sw, pw, kx);
        for (let oy = 0; oy < Ho; oy++) {
          const iy = oy * sh - ph + ky;
          const dst = row + oy * Wo;
          if (iy < 0 || iy >= H) {
            cols.fill(0, dst, dst + Wo);
            continue;
          }
          const src = xOff + (c * H + iy) * W - pw + kx;
          cols.fill(0, dst, dst + ox0);
          for (let ox = ox0; ox < ox1; ox++) cols[dst + ox] = x[src + ox * sw];
          cols.fill(0, dst + ox1, dst + Wo);
        }
      }
    }
  }
}

/**
 * The adjoint of {@linkcode im2col}: adds every entry of `cols[C·kh·kw, Ho·Wo]` (at `colsOff`, rows
 * `ldCols` apart) into its input position of `x[C, H, W]` (at `xOff`); padding entries are dropped.
 * Accumulates: zero `x` first for a plain fold.
 */
export function col2im(
  cols: GemmArray,
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
  x: GemmArray,
  xOff: number,
  colsOff = 0,
  ldCols: number = Ho * Wo,
): void {
  for (let c = 0; c < C; c++) {
    for (let ky = 0; ky < kh; ky++) {
      for (let kx = 0; kx < kw; kx++) {
        const row = colsOff + ((c * kh + ky) * kw + kx) * ldCols;
        const [ox0, ox1] = validRange(W, Wo, sw, pw, kx);
        for (let oy = 0; oy < Ho; oy++) {
          const iy = oy * sh - ph + ky;
          if (iy < 0 || iy >= H) continue;
          const src = row + oy * Wo;
          const dst = xOff + (c * H + iy) * W - pw + kx;
          for (let ox = ox0; ox < ox1; ox++) x[dst + ox * sw] += cols[src + ox];
        }
      }
    }
  }
}

/** Images per GEMM so that the unfolded columns stay under ~4M elements. */
function groupSize(d: ConvDims, P: number): number {
  return Math.max(1, Math.min(d.N, Math.floor((1 << 22) / (d.C * d.kh * d.kw * P))));
}

function alloc(like: GemmArray, n: number): GemmArray {
  return like instanceof Float64Array ? new Float64Array(n) : new Float32Array(n);
}

/**
 * conv2d forward: `y[N, O, Ho, Wo]` from `x[N, C, H, W]` and `w[O, C, kh, kw]` (no bias), as
 * `W[O, C·kh·kw] · cols` over groups of images. Returns a new array of x's type.
 */
export function conv2dForward(x: GemmArray, w: GemmArray, d: ConvDims): GemmArray {
  const fn = "conv2dForward";
  const { Ho, Wo } = checkDims(fn, d);
  const { N, C, H, W, O, kh, kw, sh, sw, ph, pw } = d;
  checkLen(fn, "x", x, N * C * H * W);
  checkLen(fn, "w", w, O * C * kh * kw);
  const P = Ho * Wo, R = C * kh * kw, G = groupSize(d, P);
  const y = alloc(x, N * O * P);
  const cols = alloc(x, R * G * P), out = alloc(x, O * G * P);
  for (let n0 = 0; n0 < N; n0 += G) {
    const g = Math.min(G, N - n0), ld = g * P;
    for (let i = 0; i < g; i++) {
      im2col(x, (n0 + i) * C * H * W, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo, cols, i * P, ld);
    }
    gemm(false, false, O, ld, R, w, 0, cols, 0, out, 0);
    for (let o = 0; o < O; o++) {
      for (let i = 0; i < g; i++) {
        y.set(out.subarray(o * ld + i * P, o * ld + (i + 1) * P), ((n0 + i) * O + o) * P);
      }
    }
  }
  return y;
}

/** Gathers `gy[n0 .. n0+g, O, P]` into `[O, g·P]`. */
function gatherGy(gy: GemmArray, n0: number, g: number, O: number, P: number, dst: GemmArray): void {
  const ld = g * P;
  for (let i = 0; i < g; i++) {
    for (let o = 0; o < O; o++) {
      dst.set(gy.subarray(((n0 + i) * O + o) * P, ((n0 + i) * O + o + 1) * P), o * ld + i * P);
    }
  }
}

/**
 * Gradient of conv2d w.r.t. its input: `gx[N, C, H, W] = col2im(Wᵀ · gy)`. Returns a new array.
 */
export function conv2dGradInput(gy: GemmArray, w: GemmArray, d: ConvDims): GemmArray {
  const fn = "conv2dGradInput";
  const { Ho, Wo } = checkDims(fn, d);
  const { N, C, H, W, O, kh, kw, sh, sw, ph, pw } = d;
  checkLen(fn, "gy", gy, N * O * Ho * Wo);
  checkLen(fn, "w", w, O * C * kh * kw);
  const P = Ho * Wo, R = C * kh * kw, G = groupSize(d, P);
  const gx = alloc(gy, N * C * H * W);
  const g2 = alloc(gy, O * G * P), cols = alloc(gy, R * G * P);
  for (let n0 = 0; n0 < N; n0 += G) {
    const g = Math.min(G, N - n0), ld = g * P;
    gatherGy(gy, n0, g, O, P, g2);
    gemm(true, false, R, ld, O, w, 0, g2, 0, cols, 0);
    for (let i = 0; i < g; i++) {
      col2im(cols, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo, gx, (n0 + i) * C * H * W, i * P, ld);
    }
  }
  return gx;
}

/**
 * Gradient of conv2d w.r.t. its weight: `gw[O, C, kh, kw] = Σ gy · colsᵀ`. Returns a new array.
 */
export function conv2dGradWeight(x: GemmArray, gy: GemmArray, d: ConvDims): GemmArray {
  const fn = "conv2dGradWeight";
  const { Ho, Wo } = checkDims(fn, d);
  const { N, C, H, W, O, kh, kw, sh, sw, ph, pw } = d;
  checkLen(fn, "x", x, N * C * H * W);
  checkLen(fn, "gy", gy, N * O * Ho * Wo);
  const P = Ho * Wo, R = C * kh * kw, G = groupSize(d, P);
  const gw = alloc(x, O * R), part = alloc(x, O * R);
  const g2 = alloc(x, O * G * P), cols = alloc(x, R * G * P);
  for (let n0 = 0; n0 < N; n0 += G) {
    const g = Math.min(G, N - n0), ld = g * P;
    for (let i = 0; i < g; i++) {
      im2col(x, (n0 + i) * C * H * W, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo, cols, i * P, ld);
    }
    gatherGy(gy, n0, g, O, P, g2);
    gemm(false, true, O, R, ld, g2, 0, cols, 0, n0 === 0 ? gw : part, 0);
    if (n0 > 0) { for (let i = 0; i < O * R; i++) gw[i] += part[i]; }
  }
  return gw;
}
