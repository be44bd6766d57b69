/**
 * float32 3×3 stride-1 convolution by Winograd's minimal filtering F(2×2, 3×3) in WebAssembly SIMD:
 * the forward pass, the input gradient (a forward pass of the padded output gradient with the
 * kernels flipped and their channel axes swapped) and the weight gradient (16 sums over the tiles
 * of transformed output gradients times transformed inputs, see {@linkcode winogradGradWeight}).
 *
 * Each 2×2 output tile is `Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A` for its 4×4 input tile `d` (see
 * `winograd_module.ts`): the 36 products per tile and channel pair of the direct convolution become
 * 16, computed as 16 matrix products `M[ξ] = U[ξ] · V[ξ]` (`U[ξ]` the transformed kernels,
 * `O × C`; `V[ξ]` the transformed tiles, `C × tiles`) by the direct kernels' register-tiled `mm`.
 * Output tiles are grouped four to a SIMD vector along each tile row, the tile columns padded to a
 * multiple of four, or, for outputs at most two tiles wide (4×4), as the 2×2 tiles of two tile rows
 * (see {@linkcode tilingOf}).
 *
 * `G = [[1,0,0],[½,½,½],[½,−½,½],[0,0,1]]` and the transforms of B and A add and subtract only, so
 * the rounding differs from the direct sum by a few float32 ulps of the operands' magnitudes
 * (tested against a float64 reference).
 *
 * A forward call is a job of independent chunks (`conv_threads.ts`, kind `winograd`), each a group
 * of whole images: staged into the participant's own slot, transformed, multiplied, transformed back
 * into the output; the kernels' transform is a job of its own, by strips of output channels. Every
 * output element is computed by one chunk in a fixed order, so the results are the same bits on one
 * thread and on several.
 *
 * @module
 */
import { outputArray } from "./output.ts";
import { ConvJob } from "./conv_threads.ts";
import { MR, NR } from "./conv_wasm_module.ts";
import { getEngine, groupOf, participantsFor, runJob, type WideConv } from "./conv_wasm.ts";

const ceilTo = (n: number, m: number): number => Math.ceil(n / m) * m;

/**
 * The byte stride between the 16 blocks (one per ξ) of a transformed array of `bytes` per block:
 * rounded up to 4 KiB plus 17 cache lines, so that the 16 streams a transform reads or writes at
 * once fall in 16 different cache sets. (Blocks a multiple of 4 KiB apart — a 512-channel layer's
 * kernels are 258 pages — alias in the L1 sets and measured 4× slower.)
 */
export const xiStride = (bytes: number): number => ceilTo(bytes, 4096) + 17 * 64;

/**
 * Whether the Winograd kernels take a stride-1 convolution of this geometry: 3×3 kernels, at most 2
 * of padding on each side (the input gradient pads the output gradient by `2 − p`), at least
 * {@linkcode WINOGRAD_MIN_CHANNELS} input and output channels (below that the products are too short
 * to repay the transforms).
 */
export function winogradApplies(g: WideConv): boolean {
  return g.kh === 3 && g.kw === 3 && g.ph <= 2 && g.pw <= 2 && g.C >= WINOGRAD_MIN_CHANNELS &&
    g.O >= WINOGRAD_MIN_CHANNELS && g.Ho >= 1 && g.Wo >= 1;
}

let enabled = true;

/**
 * Turns the Winograd path of `"auto"` (see `setConvPath`) on or off; returns the previous setting.
 * For same-process comparisons in benchmarks and tests.
 */
export function setWinogradEnabled(on: boolean): boolean {
  const prev = enabled;
  enabled = on;
  return prev;
}

/** Whether `"auto"` may take the Winograd path (see {@linkcode setWinogradEnabled}). */
export function winogradEnabled(): boolean {
  return enabled;
}

/** Input and output channels below which {@linkcode winogradApplies} is false. */
export const WINOGRAD_MIN_CHANNELS = 16;

/** Tiles a chunk aims for (its transformed tiles and products stay within a core's cache). */
const CHUNK_TILES = 256;

/**
 * `G g Gᵀ` of the layer's kernels `w` (`[O, C, 3, 3]`, or `[C, O, 3, 3]` turned by 180° with
 * `flipped`: the input gradient's) into a region of the engine, packed for `mm` (see `wgKernels`
 * in `winograd_module.ts`), as a job of strips of output channels; its byte pointer.
 */
function transformKernels(
  w: Float32Array,
  O: number,
  C: number,
  flipped: boolean,
  parts: number,
  flops: number,
): number {
  const e = getEngine(), strips = Math.ceil(O / MR), block = xiStride(4 * strips * C * MR);
  const wp = e.put(w), u = e.take(4 * block); // 16 blocks of `block` bytes
  const perChunk = Math.max(1, Math.ceil(strips / (4 * parts)));
  const job = [ConvJob.winogradKernels, wp, O, C, flipped ? 1 : 0, u, block, perChunk, strips];
  runJob(e, job, Math.ceil(strips / perChunk), parts, flops);
  return u;
}

/**
 * How the output's 2×2 tiles are grouped four to a vector: along tile rows (`two` false: the tile
 * columns padded to a multiple of 4), or, for outputs at most two tiles wide, as the 2×2 tiles of
 * two consecutive tile rows (`two` true: the tile rows padded to an even count).
 */
export interface Tiling {
  /** Whether lanes 2–3 are the next tile row's (outputs at most two tiles wide). */
  two: boolean;
  /** Tile rows per image (padded). */
  rows: number;
  /** Tile columns per image (padded). */
  TX: number;
  /** Tiles per image (`rows·TX`). */
  tpi: number;
  /** Steps of the transforms' row loop per image. */
  steps: number;
  /** Groups of four tiles per step. */
  groups: number;
  /** Staged (zero-padded) image width and plane (`(2·rows + 2)·Ws`). */
  Ws: number;
  plane: number;
  /** Width of the tiles' output rows (`2·TX`). */
  Wout: number;
}

/** The {@linkcode Tiling} of an `Ho × Wo` output. */
export function tilingOf(Ho: number, Wo: number): Tiling {
  const tilesX = Math.ceil(Wo / 2), tilesY = Math.ceil(Ho / 2), two = tilesX <= 2;
  const TX = two ? 2 : 4 * Math.ceil(tilesX / 4), rows = two ? 2 * Math.ceil(tilesY / 2) : tilesY;
  const Ws = 2 * TX + 2;
  return {
    two,
    rows,
    TX,
    tpi: rows * TX,
    steps: two ? rows / 2 : rows,
    groups: two ? 1 : TX / 4,
    Ws,
    plane: (2 * rows + 2) * Ws,
    Wout: 2 * TX,
  };
}

/** Flops of the direct convolution (the size class of the thread choice, as the direct kernels). */
const flopsOf = (g: WideConv): number => 2 * g.N * g.O * g.C * 9 * g.Ho * g.Wo;

/**
 * The words of a job's staging part (see `runConvChunk`): the group's compact images at `xs`, the
 * participants' slots at `stage`.
 */
function stagingWords(g: WideConv, t: Tiling, xs: number, stage: number, stageEach: number, sImg: number) {
  const interior = 4 * (g.ph * t.Ws + g.pw);
  return [xs, 4 * g.C * g.H * g.W, stage, stageEach, sImg, t.plane, t.Ws, interior, g.W, g.H, g.C];
}

/**
 * `y[N, O, Ho, Wo]` = the 3×3 stride-1 correlation of `x[N, C, H, W]` (zero padding `ph`, `pw`)
 * with `w[O, C, 3, 3]`, by F(2×2, 3×3). The geometry must satisfy {@linkcode winogradApplies}.
 */
export function winogradForward(x: Float32Array, w: Float32Array, g: WideConv): Float32Array {
  return forward(x, w, g, false);
}

/** {@linkcode winogradForward}, with the kernels of `transformKernels`' `flipped`. */
function forward(x: Float32Array, w: Float32Array, g: WideConv, flipped: boolean): Float32Array {
  const e = getEngine(), { N, C, O, Ho, Wo } = g, t = tilingOf(Ho, Wo);
  const chw = C * g.H * g.W, P = Ho * Wo, exact = t.Wout === Wo && 2 * t.rows === Ho;
  const parts = participantsFor(flopsOf(g));
  const G = groupOf(N, chw + O * P);
  // Images per chunk: enough tiles to fill the products, enough chunks to share them.
  const byTiles = Math.max(1, Math.floor(CHUNK_TILES / t.tpi));
  const ipc = Math.max(1, Math.min(byTiles, Math.ceil(Math.min(N, G) / (4 * parts))));
  const ldV = ceilTo(ipc * t.tpi, NR), strips = Math.ceil(O / MR), Opad = strips * MR;
  const sImg = ceilTo(4 * C * t.plane, 16), wideImg = 4 * O * 2 * t.rows * t.Wout;
  const y = outputArray(x, N * O * P);
  e.reset();
  try {
    const U = transformKernels(w, O, C, flipped, parts, flopsOf(g));
    const offIn = e.put(Int32Array.from({ length: C }, (_, c) => 4 * c * ldV));
    const jTab = e.put(Int32Array.from({ length: ldV / NR }, (_, k) => 4 * NR * k));
    // Per participant: staged images (plus slack), V, M, and the wide output where tiles overhang.
    const vXs = xiStride(4 * C * ldV), mXs = xiStride(4 * Opad * ldV);
    const stageEach = ipc * sImg + 64, vEach = 16 * vXs, mEach = 16 * mXs;
    const wideEach = exact ? 0 : ipc * wideImg;
    const stage = e.take(parts * stageEach / 4), V = e.zeros(parts * vEach / 4);
    const M = e.take(parts * mEach / 4), wide = e.take(parts * wideEach / 4 + 4);
    const mark = e.mark();
    for (let n0 = 0; n0 < N; n0 += G) {
      const nn = Math.min(G, N - n0);
      e.release(mark);
      const xs = e.put(x.subarray(n0 * chw, (n0 + nn) * chw)), out = e.take(nn * O * P);
      const uXs = xiStride(4 * strips * C * MR);
      const products = [V, vEach, ldV, vXs, M, mEach, mXs, offIn, U, uXs];
      const output = [out, 4 * O * P, Ho, Wo, exact ? 1 : 0, wide, wideEach, wideImg, t.Wout, t.two ? 1 : 0];
      const job = [
        ConvJob.winograd,
        ...stagingWords(g, t, xs, stage, stageEach, sImg),
        ...products,
        strips,
        jTab,
        O,
        t.steps,
        t.groups,
        ipc,
        nn,
        t.tpi,
        ...output,
        2 * t.rows,
      ];
      runJob(e, job, Math.ceil(nn / ipc), parts, flopsOf(g));
      y.set(e.f32(out, nn * O * P), n0 * O * P);
    }
    return y;
  } finally {
    e.reset();
  }
}

/**
 * `gx[N, C, H, W]` = ∂/∂x of the 3×3 stride-1 convolution against `gy[N, O, Ho, Wo]`: the forward
 * correlation of `gy` padded by `2 − ph`, `2 − pw` with the flipped, channel-swapped kernels.
 */
export function winogradGradInput(gy: Float32Array, w: Float32Array, g: WideConv): Float32Array {
  return forward(gy, w, {
    N: g.N,
    C: g.O,
    H: g.Ho,
    W: g.Wo,
    O: g.C,
    kh: 3,
    kw: 3,
    ph: 2 - g.ph,
    pw: 2 - g.pw,
    Ho: g.H,
    Wo: g.W,
  }, true);
}

/**
 * Whether the weight gradient of a convolution that {@linkcode winogradApplies} to can take Winograd
 * here: the output's tiles fill whole SIMD vectors without padding (a width that is a multiple of 8
 * and an even height, or a width of 4 and a height that is a multiple of 4), so the output
 * gradient's tiles are read in place.
 */
export function winogradGradWeightApplies(g: WideConv): boolean {
  if (!winogradApplies(g)) return false;
  const t = tilingOf(g.Ho, g.Wo);
  return t.Wout === g.Wo && 2 * t.rows === g.Ho;
}

/** Scratch of {@linkcode untransformGradient}. */
const rowsOfG = new Float64Array(12);

/** `Gᵀ d G` of the 4×4 block `d` (16 values from `src[at + ξ·stride]`) into `gw[w .. w+9]`. */
function untransformGradient(
  src: Float32Array,
  at: number,
  stride: number,
  gw: Float32Array,
  w: number,
): void {
  const t = rowsOfG;
  for (let i = 0; i < 4; i++) {
    const d0 = src[at + 4 * i * stride], d1 = src[at + (4 * i + 1) * stride];
    const d2 = src[at + (4 * i + 2) * stride], d3 = src[at + (4 * i + 3) * stride];
    t[3 * i] = d0 + (d1 + d2) / 2;
    t[3 * i + 1] = (d1 - d2) / 2;
    t[3 * i + 2] = (d1 + d2) / 2 + d3;
  }
  for (let b = 0; b < 3; b++) {
    gw[w + b] = t[b] + (t[3 + b] + t[6 + b]) / 2;
    gw[w + 3 + b] = (t[3 + b] - t[6 + b]) / 2;
    gw[w + 6 + b] = (t[3 + b] + t[6 + b]) / 2 + t[9 + b];
  }
}

/**
 * `gw[O, C, 3, 3]` = ∂/∂w of the 3×3 stride-1 convolution of `x` against `gy`, by F(2×2, 3×3):
 * `Gᵀ [Σ_t (A gy_t Aᵀ) ⊙ (Bᵀ d_t B)] G` over all tiles `t`. Two jobs per group of images: the
 * transforms (chunks of images: `wgIn` of x, `wgGy` of gy), then the 16 sums over the tiles
 * (chunks of position ξ and output channels: `gw2`, each sum in tile order whatever the thread).
 * The geometry must satisfy {@linkcode winogradGradWeightApplies}.
 */
export function winogradGradWeight(x: Float32Array, gy: Float32Array, g: WideConv): Float32Array {
  const e = getEngine(), { N, C, O, Ho, Wo } = g, t = tilingOf(Ho, Wo);
  const chw = C * g.H * g.W, P = Ho * Wo;
  const parts = participantsFor(flopsOf(g));
  const G = groupOf(N, chw + O * P + 16 * (C + O) * t.tpi);
  const ipc = Math.max(1, Math.min(Math.floor(CHUNK_TILES / t.tpi), Math.ceil(G / (4 * parts))));
  const ldT = G * t.tpi, sImg = ceilTo(4 * C * t.plane, 16), stageEach = ipc * sImg + 64;
  const Rpad = ceilTo(C, 5), o2 = O & ~1;
  const oChunks = Math.max(1, Math.ceil((4 * parts) / 16));
  const step = 2 * Math.max(1, Math.ceil(o2 / 2 / oChunks));
  e.reset();
  try {
    const offTab = e.put(Int32Array.from({ length: Rpad }, (_, c) => (c < C ? 4 * c * ldT : 0)));
    const acc = e.zeros(16 * O * Rpad), stage = e.take(parts * stageEach / 4);
    const mark = e.mark();
    for (let n0 = 0; n0 < N; n0 += G) {
      const nn = Math.min(G, N - n0);
      e.release(mark);
      const xs = e.put(x.subarray(n0 * chw, (n0 + nn) * chw));
      const gys = e.put(gy.subarray(n0 * O * P, (n0 + nn) * O * P));
      const vXs = xiStride(4 * C * ldT), gXs = xiStride(4 * O * ldT);
      const V = e.take(4 * vXs), GY = e.take(4 * gXs);
      const gyWords = [gys, 4 * O * P, 4 * P, 4 * Wo, GY, gXs, O];
      const transforms = [
        ConvJob.winogradTransforms,
        ...stagingWords(g, t, xs, stage, stageEach, sImg),
        V,
        ldT,
        vXs,
        ...gyWords,
        t.steps,
        t.groups,
        ipc,
        nn,
        t.tpi,
        t.two ? 1 : 0,
      ];
      runJob(e, transforms, Math.ceil(nn / ipc), parts, flopsOf(g));
      const sums = [GY, gXs, ldT, V, vXs, offTab, Rpad / 5, nn * t.tpi, acc, 4 * O * Rpad];
      const products = [ConvJob.winogradProducts, ...sums, Rpad, o2, O, step, oChunks];
      runJob(e, products, 16 * oChunks, parts, flopsOf(g));
    }
    const dU = e.f32(acc, 16 * O * Rpad), gw = outputArray(x, O * C * 9);
    for (let o = 0; o < O; o++) {
      for (let c = 0; c < C; c++) untransformGradient(dU, o * Rpad + c, O * Rpad, gw, (o * C + c) * 9);
    }
    return gw;
  } finally {
    e.reset();
  }
}
