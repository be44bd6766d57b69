/**
 * 2-D convolution on the CPU as GEMM: im2col/col2im helpers (NCHW input, OIHW weights, stride,
 * zero padding) and whole-tensor forward / grad-input / grad-weight built on {@linkcode gemm}.
 *
 * It stays one file: forward, grad-input and grad-weight share the unfolding helpers, the wide
 * geometry, the grouping of images and the choice between the GEMM and the direct WebAssembly path.
 *
 * `cols` has `C·kh·kw` rows (row `(c·kh + ky)·kw + kx`) and one column per output position
 * (`oy·Wo + ox`); a batch of images is laid side by side (column `n·Ho·Wo + oy·Wo + ox`) by passing
 * `colsOff` and the row stride `ldCols`.
 *
 * @module
 */
import { outputArray } from "./output.ts";
import { gemm, type GemmArray, getGemmImpl } from "./gemm.ts";
import { hasWasmConv, wasmConvForward, wasmConvGradInput, wasmConvGradWeight } from "./conv_wasm.ts";
import {
  tilingOf,
  winogradApplies,
  winogradEnabled,
  winogradForward,
  winogradGradInput,
  winogradGradWeight,
  winogradGradWeightApplies,
} from "./winograd.ts";

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

/**
 * The geometry {@linkcode im2col} and {@linkcode col2im} need: one image `[C, H, W]`, the kernel,
 * strides and padding, and the output size (see {@linkcode convOutSize}).
 */
export interface UnfoldGeometry extends Omit<ConvDims, "N" | "O"> {
  /** Output height. */
  Ho: number;
  /** Output width. */
  Wo: number;
}

/**
 * First output position `o` (of `Wo`) whose input position `o·sw − pw + kx` is `>= 0`: along a row
 * (columns) or, with the vertical stride, padding and tap, along a column (rows).
 */
function firstValid(Wo: number, sw: number, pw: number, kx: number): number {
  return Math.min(Wo, Math.max(0, Math.ceil((pw - kx) / sw)));
}

/** One past the last output position `o` whose input position `o·sw − pw + kx` is `< W`. */
function endValid(W: number, Wo: number, sw: number, pw: number, kx: number, lo: number): number {
  return Math.max(lo, Math.min(Wo, Math.floor((W - 1 + pw - kx) / sw) + 1));
}

/**
 * Unfolds one image `x[C, H, W]` (at `xOff`) into `cols[C·kh·kw, Ho·Wo]` (at `colsOff`, rows
 * `ldCols` apart), zero where the window falls into the padding; `geo` is built once per
 * convolution.
 */
export function im2col(
  x: GemmArray,
  xOff: number,
  geo: UnfoldGeometry,
  cols: GemmArray,
  colsOff = 0,
  ldCols: number = geo.Ho * geo.Wo,
): void {
  const { C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo } = geo;
  for (let c = 0; c < C; c++) {
    for (let ky = 0; ky < kh; ky++) {
      // Output rows whose input row lies inside [0, H).
      const oy0 = firstValid(Ho, sh, ph, ky), oy1 = endValid(H, Ho, sh, ph, ky, oy0);
      for (let kx = 0; kx < kw; kx++) {
        const row = colsOff + ((c * kh + ky) * kw + kx) * ldCols;
        const ox0 = firstValid(Wo, sw, pw, kx), ox1 = endValid(W, Wo, sw, pw, kx, ox0);
        if (oy0 > 0) cols.fill(0, row, row + oy0 * Wo);
        if (oy1 < Ho) cols.fill(0, row + oy1 * Wo, row + Ho * Wo);
        for (let oy = oy0; oy < oy1; oy++) {
          const dst = row + oy * Wo;
          const src = xOff + (c * H + oy * sh - ph + ky) * W - pw + kx;
          for (let ox = 0; ox < ox0; ox++) cols[dst + ox] = 0;
          if (sw === 1) {
            for (let ox = ox0; ox < ox1; ox++) cols[dst + ox] = x[src + ox];
          } else {
            for (let ox = ox0; ox < ox1; ox++) cols[dst + ox] = x[src + ox * sw];
          }
          for (let ox = ox1; ox < Wo; ox++) cols[dst + ox] = 0;
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
  geo: UnfoldGeometry,
  x: GemmArray,
  xOff: number,
  colsOff = 0,
  ldCols: number = geo.Ho * geo.Wo,
): void {
  const { C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo } = geo;
  for (let c = 0; c < C; c++) {
    for (let ky = 0; ky < kh; ky++) {
      const oy0 = firstValid(Ho, sh, ph, ky), oy1 = endValid(H, Ho, sh, ph, ky, oy0);
      for (let kx = 0; kx < kw; kx++) {
        const row = colsOff + ((c * kh + ky) * kw + kx) * ldCols;
        const ox0 = firstValid(Wo, sw, pw, kx), ox1 = endValid(W, Wo, sw, pw, kx, ox0);
        for (let oy = oy0; oy < oy1; oy++) {
          const src = row + oy * Wo;
          const dst = xOff + (c * H + oy * sh - ph + ky) * W - pw + kx;
          if (sw === 1) {
            for (let ox = ox0; ox < ox1; ox++) x[dst + ox] += cols[src + ox];
          } else {
            for (let ox = ox0; ox < ox1; ox++) x[dst + ox * sw] += cols[src + ox];
          }
        }
      }
    }
  }
}

/**
 * Elements of unfolded columns per GEMM: the batch is processed in groups of images whose columns
 * fit in about 1 MiB of float32 (in cache, and several GEMMs of moderate size measure faster here
 * than one GEMM over the whole batch).
 */
export const CONV_CHUNK_ELEMS = 1 << 18;

/**
 * Fewest columns (output positions of the group) a GEMM should have: small images (4×4…8×8 in the
 * deep layers of a ResNet) are grouped past {@linkcode CONV_CHUNK_ELEMS} up to this many columns
 * (and at most 16 Mi column elements), since a product only a few dozen columns wide runs far
 * below the GEMM's speed and leaves the worker threads nothing to split.
 */
export const CONV_MIN_GEMM_COLS = 512;

/**
 * Images per GEMM: `perImage` column elements and `colsPerImage` columns per image; under the
 * chunk budget, or enough images for {@linkcode CONV_MIN_GEMM_COLS} columns.
 */
function groupSize(N: number, perImage: number, colsPerImage: number): number {
  const byBudget = Math.floor(CONV_CHUNK_ELEMS / perImage);
  const byCols = Math.min(Math.ceil(CONV_MIN_GEMM_COLS / colsPerImage), Math.floor((1 << 24) / perImage));
  return Math.max(1, Math.min(N, Math.max(byBudget, byCols)));
}

/**
 * Which float32 stride-1 path convolutions take: `"direct"`, the WebAssembly kernels of
 * `conv_wasm.ts` (no column matrix; large calls split by image or output channel between the
 * calling thread and workers, see `setConvThreads`); `"gemm"`, unfolding + the GEMM (which may split
 * the product between worker threads); `"winograd"`, the forward pass and the input gradient of 3×3
 * kernels by F(2×2, 3×3) (`winograd.ts`; the weight gradient too where the output is a multiple
 * of 8 wide and of 2 high; other shapes as `"auto"`);
 * `"auto"`, chosen by shape (see {@linkcode setConvPath}).
 */
export type ConvPathMode = "auto" | "direct" | "gemm" | "winograd";
let pathMode: ConvPathMode = "auto";

/**
 * Sets how float32 stride-1 convolutions choose their path. `"auto"` (default) is a fixed rule of
 * the shape, so results do not depend on timing: the GEMM path where the direct kernels' wide grid
 * would waste more than a quarter of its columns (small images, e.g. 4×4 with padding 1, where
 * the direct kernels measured 2–3× slower); the direct kernels otherwise. `"direct"` or `"gemm"` forces one (tests,
 * benchmarks). Returns the previous mode.
 */
export function setConvPath(mode: ConvPathMode): ConvPathMode {
  if (mode !== "auto" && mode !== "direct" && mode !== "gemm" && mode !== "winograd") {
    throw new RangeError(
      `setConvPath: mode must be "auto", "direct", "gemm" or "winograd", got ${String(mode)}`,
    );
  }
  const prev = pathMode;
  pathMode = mode;
  return prev;
}

/** Whether a float32 stride-1 convolution the direct kernels can take goes to the GEMM path instead. */
function preferGemm(d: ConvDims, Wo: number): boolean {
  if (pathMode === "direct" || pathMode === "gemm") return pathMode === "gemm";
  return !useWide(d, Wo);
}

/**
 * Whether a float32 stride-1 convolution the WebAssembly kernels can take goes to Winograd: forced
 * by `"winograd"` where it applies; in `"auto"`, where it applies and at least 3 of every 4 SIMD
 * lanes of the transforms hold real tiles (see `tilingOf`), unless `setWinogradEnabled(false)`.
 */
function preferWinograd(d: ConvDims, Ho: number, Wo: number): boolean {
  if (pathMode === "direct" || pathMode === "gemm") return false;
  const g = { ...d, Ho, Wo };
  if (!winogradApplies(g)) return false;
  if (pathMode === "winograd") return true;
  if (!winogradEnabled()) return false;
  return 4 * Math.ceil(Ho / 2) * Math.ceil(Wo / 2) >= 3 * tilingOf(Ho, Wo).tpi;
}

function alloc(like: GemmArray, n: number): GemmArray {
  return like instanceof Float64Array ? new Float64Array(n) : new Float32Array(n);
}

/**
 * Whether the weight gradient goes to Winograd: as {@linkcode preferWinograd}, where its kernels
 * apply (`winogradGradWeightApplies`).
 */
function preferWinogradWeight(d: ConvDims, Ho: number, Wo: number): boolean {
  return preferWinograd(d, Ho, Wo) && winogradGradWeightApplies({ ...d, Ho, Wo });
}

/**
 * Geometry of the "wide" formulation of a stride-1 convolution. Each image is staged zero-padded as
 * `[C, Hp, Wp]` (`Hp = H + 2ph`, `Wp = W + 2pw`) and the output is computed on a grid `Ho × Wp`
 * whose last `Wp − Wo` columns of every row are discarded. Then row `(c, ky, kx)` of the column
 * matrix is one contiguous slice of the staged image, `L = Ho·Wp` long from `c·Hp·Wp + ky·Wp + kx`,
 * so unfolding and folding are plain copies and adds of long runs instead of short strided ones.
 * The extra GEMM work is `Wp / Wo − 1`; {@linkcode useWide} bounds it.
 */
interface Wide {
  /** Padded height and width. */
  Hp: number;
  Wp: number;
  /** Columns per image (`Ho·Wp`). */
  L: number;
  /** Elements of one staged channel plane (`Hp·Wp`) and of one staged image (`C·Hp·Wp`). */
  plane: number;
  img: number;
}

/**
 * Whether the WebAssembly kernels (`conv_wasm.ts`) take the convolution: float32, stride 1, and
 * GEMM not forced to plain JavaScript (`setGemmImpl("js")` keeps the whole CPU backend in JS).
 */
function useWasm(x: GemmArray, d: ConvDims): boolean {
  return hasWasmConv && x instanceof Float32Array && d.sh === 1 && d.sw === 1 && getGemmImpl() !== "js";
}

/**
 * Whether the wide formulation applies (stride 1) and is worth its wasted columns: at most a
 * quarter extra (`Wp ≤ 1.25·Wo`). Smaller images (4×4 with padding 1: half extra) measured faster
 * unfolded exactly, as one GEMM over enough images (see {@linkcode CONV_MIN_GEMM_COLS}).
 */
function useWide(d: ConvDims, Wo: number): boolean {
  return d.sh === 1 && d.sw === 1 && 4 * (d.W + 2 * d.pw) <= 5 * Wo;
}

function wideOf(d: ConvDims, Ho: number): Wide {
  const Hp = d.H + 2 * d.ph, Wp = d.W + 2 * d.pw;
  return { Hp, Wp, L: Ho * Wp, plane: Hp * Wp, img: d.C * Hp * Wp };
}

/**
 * Copies images `n0 .. n0+g` of `x[N, C, H, W]` into the interior of the zero-bordered staging
 * buffer `xp[g, C, Hp, Wp]`, and zeroes the `kw` elements after the last staged image (the last
 * rows of the column matrix read up to `kw − 1` elements past their plane).
 */
function stage(x: GemmArray, n0: number, g: number, d: ConvDims, wd: Wide, xp: GemmArray): void {
  const { C, H, W, ph, pw } = d;
  const chw = C * H * W;
  if (ph === 0 && pw === 0) {
    xp.set(x.subarray(n0 * chw, (n0 + g) * chw), 0);
  } else {
    const { Wp, plane } = wd;
    for (let i = 0; i < g; i++) {
      for (let c = 0; c < C; c++) {
        const src0 = (n0 + i) * chw + c * H * W, dst0 = (i * C + c) * plane + ph * Wp + pw;
        for (let yy = 0; yy < H; yy++) {
          const s = src0 + yy * W, t = dst0 + yy * Wp;
          for (let xx = 0; xx < W; xx++) xp[t + xx] = x[s + xx];
        }
      }
    }
  }
  xp.fill(0, g * wd.img, g * wd.img + d.kw);
}

/** Rows `(c, ky, kx)` of the wide column matrix `cols[R, g·L]` from the staged images. */
function unfoldWide(xp: GemmArray, g: number, d: ConvDims, wd: Wide, cols: GemmArray): void {
  const { C, kh, kw } = d, { Wp, L, plane, img } = wd;
  const ld = g * L;
  for (let c = 0; c < C; c++) {
    for (let ky = 0; ky < kh; ky++) {
      for (let kx = 0; kx < kw; kx++) {
        const row = ((c * kh + ky) * kw + kx) * ld, off = c * plane + ky * Wp + kx;
        for (let i = 0; i < g; i++) {
          const s = i * img + off;
          cols.set(xp.subarray(s, s + L), row + i * L);
        }
      }
    }
  }
}

/**
 * `gy[n0 .. n0+g, O, Ho, Wo]` into the wide layout `[O, g·L]`, zero in the discarded columns (so
 * they contribute nothing to the weight gradient and fold to zeros for the input gradient).
 */
function gatherGyWide(
  gy: GemmArray,
  n0: number,
  g: number,
  O: number,
  Ho: number,
  Wo: number,
  wd: Wide,
  dst: GemmArray,
): void {
  const { Wp, L } = wd, P = Ho * Wo, ld = g * L;
  for (let o = 0; o < O; o++) {
    for (let i = 0; i < g; i++) {
      const s0 = ((n0 + i) * O + o) * P, t0 = o * ld + i * L;
      for (let oy = 0; oy < Ho; oy++) {
        const s = s0 + oy * Wo, t = t0 + oy * Wp;
        for (let ox = 0; ox < Wo; ox++) dst[t + ox] = gy[s + ox];
        for (let ox = Wo; ox < Wp; ox++) dst[t + ox] = 0;
      }
    }
  }
}

function forwardWide(x: GemmArray, w: GemmArray, d: ConvDims, Ho: number, Wo: number): GemmArray {
  const { N, C, O, kh, kw } = d;
  const wd = wideOf(d, Ho), { Wp, L, img } = wd;
  const P = Ho * Wo, R = C * kh * kw, G = groupSize(N, R * L, L);
  const y = outputArray(x, N * O * P);
  const xp = alloc(x, G * img + kw), cols = alloc(x, R * G * L), out = alloc(x, O * G * L);
  for (let n0 = 0; n0 < N; n0 += G) {
    const g = Math.min(G, N - n0), ld = g * L;
    stage(x, n0, g, d, wd, xp);
    unfoldWide(xp, g, d, wd, cols);
    gemm({ M: O, N: ld, K: R, a: w, b: cols, c: out });
    for (let i = 0; i < g; i++) {
      for (let o = 0; o < O; o++) {
        const s0 = o * ld + i * L, t0 = ((n0 + i) * O + o) * P;
        for (let oy = 0; oy < Ho; oy++) {
          const s = s0 + oy * Wp, t = t0 + oy * Wo;
          for (let ox = 0; ox < Wo; ox++) y[t + ox] = out[s + ox];
        }
      }
    }
  }
  return y;
}

function gradInputWide(gy: GemmArray, w: GemmArray, d: ConvDims, Ho: number, Wo: number): GemmArray {
  const { N, C, H, W, O, kh, kw, ph, pw } = d;
  const wd = wideOf(d, Ho), { Wp, L, plane, img } = wd;
  const R = C * kh * kw, G = groupSize(N, R * L, L), chw = C * H * W;
  const gx = outputArray(gy, N * chw);
  const g2 = alloc(gy, O * G * L), cols = alloc(gy, R * G * L), xp = alloc(gy, G * img + kw);
  for (let n0 = 0; n0 < N; n0 += G) {
    const g = Math.min(G, N - n0), ld = g * L;
    gatherGyWide(gy, n0, g, O, Ho, Wo, wd, g2);
    gemm({ transA: true, M: R, N: ld, K: O, a: w, b: g2, c: cols });
    if (n0 > 0) xp.fill(0);
    // Fold: row (c, ky, kx) adds back onto its slice of the staged plane.
    for (let i = 0; i < g; i++) {
      for (let c = 0; c < C; c++) {
        for (let ky = 0; ky < kh; ky++) {
          for (let kx = 0; kx < kw; kx++) {
            const s = ((c * kh + ky) * kw + kx) * ld + i * L, t = i * img + c * plane + ky * Wp + kx;
            for (let j = 0; j < L; j++) xp[t + j] += cols[s + j];
          }
        }
      }
    }
    if (ph === 0 && pw === 0) {
      gx.set(xp.subarray(0, g * chw), n0 * chw);
    } else {
      for (let i = 0; i < g; i++) {
        for (let c = 0; c < C; c++) {
          const s0 = (i * C + c) * plane + ph * Wp + pw, t0 = (n0 + i) * chw + c * H * W;
          for (let yy = 0; yy < H; yy++) {
            const s = s0 + yy * Wp, t = t0 + yy * W;
            for (let xx = 0; xx < W; xx++) gx[t + xx] = xp[s + xx];
          }
        }
      }
    }
  }
  return gx;
}

function gradWeightWide(x: GemmArray, gy: GemmArray, d: ConvDims, Ho: number, Wo: number): GemmArray {
  const { N, C, O, kh, kw } = d;
  const wd = wideOf(d, Ho), { L, img } = wd;
  const R = C * kh * kw, G = groupSize(N, R * L, L);
  const gw = outputArray(x, O * R), part = alloc(x, O * R);
  const xp = alloc(x, G * img + kw), cols = alloc(x, R * G * L), g2 = alloc(x, O * G * L);
  for (let n0 = 0; n0 < N; n0 += G) {
    const g = Math.min(G, N - n0), ld = g * L;
    stage(x, n0, g, d, wd, xp);
    unfoldWide(xp, g, d, wd, cols);
    gatherGyWide(gy, n0, g, O, Ho, Wo, wd, g2);
    gemm({ transB: true, M: O, N: R, K: ld, a: g2, b: cols, c: n0 === 0 ? gw : part });
    if (n0 > 0) { for (let i = 0; i < O * R; i++) gw[i] += part[i]; }
  }
  return gw;
}

/**
 * conv2d forward: `y[N, O, Ho, Wo]` from `x[N, C, H, W]` and `w[O, C, kh, kw]` (no bias), as
 * `W[O, C·kh·kw] · cols` over groups of images. Returns a new array of x's type.
 */
export function conv2dForward(x: GemmArray, w: GemmArray, d: ConvDims): GemmArray {
  const fn = "conv2dForward";
  const { Ho, Wo } = checkDims(fn, d);
  const { N, C, H, W, O, kh, kw } = d;
  checkLen(fn, "x", x, N * C * H * W);
  checkLen(fn, "w", w, O * C * kh * kw);
  if (useWasm(x, d) && preferWinograd(d, Ho, Wo)) {
    return winogradForward(x as Float32Array, w as Float32Array, { ...d, Ho, Wo });
  }
  if (useWasm(x, d) && !preferGemm(d, Wo)) {
    return wasmConvForward(x as Float32Array, w as Float32Array, { ...d, Ho, Wo });
  }
  return forwardGemm(x, w, d, Ho, Wo);
}

function forwardGemm(x: GemmArray, w: GemmArray, d: ConvDims, Ho: number, Wo: number): GemmArray {
  const { N, C, H, W, O, kh, kw } = d;
  if (useWide(d, Wo)) return forwardWide(x, w, d, Ho, Wo);
  const P = Ho * Wo, R = C * kh * kw, G = groupSize(N, R * P, P);
  const y = outputArray(x, N * O * P);
  const geo: UnfoldGeometry = { ...d, Ho, Wo };
  const cols = alloc(x, R * G * P), out = alloc(x, O * G * P);
  for (let n0 = 0; n0 < N; n0 += G) {
    const g = Math.min(G, N - n0), ld = g * P;
    for (let i = 0; i < g; i++) {
      im2col(x, (n0 + i) * C * H * W, geo, cols, i * P, ld);
    }
    gemm({ M: O, N: ld, K: R, a: w, b: cols, c: out });
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
  const { N, C, O, kh, kw } = d;
  checkLen(fn, "gy", gy, N * O * Ho * Wo);
  checkLen(fn, "w", w, O * C * kh * kw);
  if (useWasm(gy, d) && preferWinograd(d, Ho, Wo)) {
    return winogradGradInput(gy as Float32Array, w as Float32Array, { ...d, Ho, Wo });
  }
  if (useWasm(gy, d) && !preferGemm(d, Wo)) {
    return wasmConvGradInput(gy as Float32Array, w as Float32Array, { ...d, Ho, Wo });
  }
  return gradInputGemm(gy, w, d, Ho, Wo);
}

function gradInputGemm(gy: GemmArray, w: GemmArray, d: ConvDims, Ho: number, Wo: number): GemmArray {
  const { N, C, H, W, O, kh, kw } = d;
  if (useWide(d, Wo)) return gradInputWide(gy, w, d, Ho, Wo);
  const P = Ho * Wo, R = C * kh * kw, G = groupSize(N, R * P, P);
  const gx = alloc(gy, N * C * H * W);
  const geo: UnfoldGeometry = { ...d, Ho, Wo };
  const g2 = alloc(gy, O * G * P), cols = alloc(gy, R * G * P);
  for (let n0 = 0; n0 < N; n0 += G) {
    const g = Math.min(G, N - n0), ld = g * P;
    gatherGy(gy, n0, g, O, P, g2);
    gemm({ transA: true, M: R, N: ld, K: O, a: w, b: g2, c: cols });
    for (let i = 0; i < g; i++) {
      col2im(cols, geo, gx, (n0 + i) * C * H * W, i * P, ld);
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
  const { N, C, H, W, O } = d;
  checkLen(fn, "x", x, N * C * H * W);
  checkLen(fn, "gy", gy, N * O * Ho * Wo);
  if (useWasm(x, d) && preferWinogradWeight(d, Ho, Wo)) {
    return winogradGradWeight(x as Float32Array, gy as Float32Array, { ...d, Ho, Wo });
  }
  if (useWasm(x, d) && !preferGemm(d, Wo)) {
    return wasmConvGradWeight(x as Float32Array, gy as Float32Array, { ...d, Ho, Wo });
  }
  // No products at all (an empty batch or output): the loops below would leave gw unwritten.
  if (d.N * Ho * Wo === 0) return alloc(x, d.O * d.C * d.kh * d.kw);
  return gradWeightGemm(x, gy, d, Ho, Wo);
}

function gradWeightGemm(x: GemmArray, gy: GemmArray, d: ConvDims, Ho: number, Wo: number): GemmArray {
  const { N, C, H, W, O, kh, kw } = d;
  if (useWide(d, Wo)) return gradWeightWide(x, gy, d, Ho, Wo);
  const P = Ho * Wo, R = C * kh * kw, G = groupSize(N, R * P, P);
  const gw = outputArray(x, O * R), part = alloc(x, O * R);
  const geo: UnfoldGeometry = { ...d, Ho, Wo };
  const g2 = alloc(x, O * G * P), cols = alloc(x, R * G * P);
  for (let n0 = 0; n0 < N; n0 += G) {
    const g = Math.min(G, N - n0), ld = g * P;
    for (let i = 0; i < g; i++) {
      im2col(x, (n0 + i) * C * H * W, geo, cols, i * P, ld);
    }
    gatherGy(gy, n0, g, O, P, g2);
    gemm({ transB: true, M: O, N: R, K: ld, a: g2, b: cols, c: n0 === 0 ? gw : part });
    if (n0 > 0) { for (let i = 0; i < O * R; i++) gw[i] += part[i]; }
  }
  return gw;
}
