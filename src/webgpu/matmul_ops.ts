/**
 * The WebGPU matrix products: `matmul` and the convolutions as implicit GEMM (forward, grad input,
 * grad weight with a split K), all one tiled kernel family (`kernels/wgsl/matmul.ts`) with loaders
 * that gather the convolution's operands in place. Methods of {@linkcode WebGPUBackend} delegate here.
 *
 * Each convolution shape gets its own pipelines (the geometry is compiled in, `kernels/wgsl/conv.ts`;
 * ResNet-18 has about ten shapes, so about thirty pipelines), the GEMM columns span the batch, and the
 * tiles follow one rule for every product, {@linkcode chooseTile}: forward M = O, N = batch·OH·OW;
 * input gradient M = C, N = batch × the stride grid, one product per stride phase; weight gradient
 * M = O, N = C·kh·kw, K = batch·OH·OW split when fewer than 256 workgroups would run, into about 1,024
 * workgroups.
 *
 * The fused convolution (`Backend.fusedConv2d`/`fusedConv2dGrad`) adds the bias and the ReLU in the
 * forward's epilogue, multiplies gy by the ReLU's step as the gradient products load it, and gets
 * the bias gradient from the weight gradient's product, as one more column of ones: one dispatch
 * forward, and backward one for the input gradient and two for the weight and bias gradients (the
 * product, then its parts summed into both).
 *
 * A second kernel, with 8×8 outputs per thread (`kernels/wgsl/matmul_wide.ts`), can take every one of
 * these products, the convolutions' included, with the same bits (the same sum order, the same
 * split of K): {@linkcode setMatmulKernel}.
 *
 * @module
 */
import type { Activation, Conv2dGeometry, LinearNeeds } from "../backend.ts";
import { shapeSize, type Tensor } from "../tensor.ts";
import {
  chooseTile,
  fusionBindings,
  fusionKey,
  MATMUL_WORDS,
  matmulKernel,
  type MatmulTile,
  type MatmulVariant,
  type OperandMode,
  plainLoaders,
} from "../../kernels/wgsl/matmul.ts";
import { chooseWideTile, matmulWideKernel, wideSupports } from "../../kernels/wgsl/matmul_wide.ts";
import {
  CONV_GRAD_SUM_OUTPUTS,
  CONV_GRAD_SUM_WORDS,
  convForwardLoaders,
  convForwardVecStore,
  convGradInputColumns,
  convGradInputLoaders,
  convGradInputMaxK,
  convGradInputPhases,
  convGradInputVecStore,
  convGradWeightLoaders,
  convGradWeightSumKernel,
  type ConvShape,
  convShapeKey,
} from "../../kernels/wgsl/conv.ts";
import type { GpuStorage, WebGPUBackend } from "./backend.ts";
import { broadcastStrides, coalesce } from "./layout.ts";
import { kernelSpec } from "./pipelines.ts";
import { pooledSize } from "./pool_ops.ts";

/**
 * The split K of the weight gradient: K is split when its tiles alone give fewer than
 * `SPLIT_BELOW_GROUPS` workgroups, and then into enough parts for `SPLIT_TARGET_GROUPS` (a big GPU
 * holds about four 256-thread groups on each of its ~130 cores; the sum of the parts is one dispatch
 * whatever their number), each part at least 256 long.
 */
const SPLIT_BELOW_GROUPS = 256, SPLIT_TARGET_GROUPS = 1024;

/** The first uniform word of `MatmulDispatch.extra` (after the matmul's own words). */
const EXTRA_WORDS_AT = 20;

/** One tiled-matmul dispatch (built once per op). */
export interface MatmulDispatch {
  /** Kernel name (the start of the pipeline key). */
  readonly name: string;
  /** The kernel variant, without its tile. */
  readonly variant: Omit<MatmulVariant, "tile">;
  /** Rows of C. */
  readonly M: number;
  /** Columns of C. */
  readonly N: number;
  /** The inner dimension. */
  readonly K: number;
  /** Products along z (the batch, or the K splits). */
  readonly z: number;
  /** Broadcast batch strides of A and B, or the K chunk of a split-K product. */
  readonly batch: { shape: number[]; a: number[]; b: number[] } | { kChunk: number };
  /** Extra uniform words from word 20 on (for loaders; none is used today). */
  readonly extra: number[];
  /** A, B and C, then the buffers of the variant's fusion in `fusionBindings` order. */
  readonly bufs: readonly GPUBuffer[];
  /**
   * The 4×4 kernel's tile (default: `chooseTile(M, N, z)`); the 8×8 kernel takes
   * `chooseWideTile(M, N, z)` whatever this is.
   */
  readonly tile?: MatmulTile;
}

/**
 * Which matmul kernel takes a product: `"4x4"` the tiled kernel of `kernels/wgsl/matmul.ts` (4×4
 * outputs per thread, tiles up to 64×64), `"8x8"` the register-blocked one of
 * `kernels/wgsl/matmul_wide.ts` (8×8 per thread, tiles 64 or 128 a side) wherever it supports the
 * product, `"auto"` the rule of {@linkcode wideKernelFor}.
 */
export type MatmulKernelChoice = "auto" | "4x4" | "8x8";

const MATMUL_KERNELS: readonly MatmulKernelChoice[] = ["auto", "4x4", "8x8"];
let matmulKernelChoice: MatmulKernelChoice = "auto";

/**
 * Selects the kernel of the products encoded from now on (internal: for tests and benches, not
 * exported from mod.ts; the pipelines of both stay cached); returns the previous choice. Affects
 * `matmul`, the fused linear layer and the convolutions (forward, both gradients, fused or not).
 */
export function setMatmulKernel(choice: MatmulKernelChoice): MatmulKernelChoice {
  if (!MATMUL_KERNELS.includes(choice)) {
    throw new RangeError(
      `setMatmulKernel: choice ${JSON.stringify(choice)}; expected one of ${MATMUL_KERNELS.join(", ")}`,
    );
  }
  const previous = matmulKernelChoice;
  matmulKernelChoice = choice;
  return previous;
}

/**
 * Whether the 8×8 kernel takes a dispatch: never a variant it does not support
 * ({@linkcode wideSupports}); under `"8x8"` otherwise always; under `"auto"` never yet: the 4×4
 * kernel until the device kit's A/B (`bench/webgpu_matmul_bench.ts`, the convolutions' rows of
 * `bench/webgpu_ops_bench.ts`) shows on a GPU where the 8×8 one wins (a CPU adapter's timings say
 * nothing about it).
 */
export function wideKernelFor(d: MatmulDispatch, choice: MatmulKernelChoice = matmulKernelChoice): boolean {
  if (!wideSupports(d.variant)) return false;
  return choice === "8x8";
}

/** Encodes one tiled-matmul dispatch (see kernels/wgsl/matmul.ts for the uniform layout). */
export function matmulRun(be: WebGPUBackend, d: MatmulDispatch): void {
  const { name, variant: v, M, N, K, z, batch, extra, bufs } = d;
  const rows = M + (v.fusion?.onesRowA ? 1 : 0);
  const wide = wideKernelFor(d);
  let tile: { m: number; n: number }, code: () => string;
  if (wide) {
    const t = chooseWideTile(rows, N, z);
    [tile, code] = [t, () => matmulWideKernel({ ...v, tile: t })];
  } else {
    const t = d.tile ?? chooseTile(rows, N, z);
    [tile, code] = [t, () => matmulKernel({ ...v, tile: t })];
  }
  const key = `${name}/${wide ? "w" : ""}${tile.m}x${tile.n}/${v.a}/${v.b}/${v.cVec ? "cv" : "cs"}/${
    v.splitK ? "split" : "batch"
  }${fusionKey(v.fusion)}`;
  const u = new Array<number>(MATMUL_WORDS).fill(0);
  u[0] = M;
  u[1] = N;
  u[2] = K;
  u[3] = z;
  if ("kChunk" in batch) u[5] = batch.kChunk;
  else {
    u[4] = batch.shape.length;
    for (let i = 0; i < batch.shape.length; i++) {
      u[8 + i] = batch.shape[i];
      u[12 + i] = batch.a[i];
      u[16 + i] = batch.b[i];
    }
  }
  extra.forEach((x, i) => (u[EXTRA_WORDS_AT + i] = x));
  const bindings = ["read", "read", "write", ...fusionBindings(v.fusion).map((b) => b.kind)] as const;
  const spec = kernelSpec(key, MATMUL_WORDS, bindings, code);
  be.run(spec, u, bufs, [Math.ceil(N / tile.n), Math.ceil(rows / tile.m), z]);
}

/** `op(a)·op(b)` with broadcast batch dims (at most 4 after coalescing). */
export function matmul(
  be: WebGPUBackend,
  a: Tensor,
  b: Tensor,
  transA: boolean,
  transB: boolean,
  outShape: readonly number[],
): Tensor {
  const ab = be.buffer(a, "matmul", "a"), bb = be.buffer(b, "matmul", "b");
  const y = be.alloc(outShape, "matmul");
  const r = outShape.length;
  const M = outShape[r - 2], N = outShape[r - 1];
  const K = transA ? a.shape[a.rank - 2] : a.shape[a.rank - 1];
  const yb = (y.storage as GpuStorage).buffer;
  if (y.size === 0) return y;
  if (K === 0) {
    be.encoder.clear(yb, y.size * 4);
    return y;
  }
  const outBatch = outShape.slice(0, -2);
  const batchStrides = (shape: readonly number[], mat: number) =>
    broadcastStrides(shape.slice(0, -2), outBatch).map((s) => s * mat);
  const c = coalesce(outBatch, [batchStrides(a.shape, M * K), batchStrides(b.shape, K * N)]);
  if (c.shape.length > 4) {
    throw new RangeError(`matmul: more than 4 broadcast batch dims are not supported on webgpu`);
  }
  const z = shapeSize(outBatch);
  const aMode: OperandMode = transA ? (M % 4 === 0 ? "vec-m" : "fn-m") : (K % 4 === 0 ? "vec-k" : "fn-k");
  const bMode: OperandMode = transB ? (K % 4 === 0 ? "vec-k" : "fn-k") : (N % 4 === 0 ? "vec-n" : "fn-n");
  const loaders = plainLoaders(transA, transB, aMode.startsWith("fn"), bMode.startsWith("fn"));
  const tag = `matmul${transA ? "T" : "N"}${transB ? "T" : "N"}`;
  matmulRun(be, {
    name: tag,
    variant: { a: aMode, b: bMode, cVec: N % 4 === 0, splitK: false, loaders },
    M,
    N,
    K,
    z,
    batch: { shape: c.shape, a: c.strides[0], b: c.strides[1] },
    extra: [],
    bufs: [ab, bb, yb],
  });
  return y;
}

/** conv2d forward, NCHW/OIHW, as an implicit GEMM `W · cols` whose columns span the batch. */
export function conv2d(be: WebGPUBackend, x: Tensor, w: Tensor, geo: Conv2dGeometry): Tensor {
  return fusedConv2d(be, x, w, null, geo, "none", "conv2d");
}

/**
 * act(conv2d(x, w) + b): conv2d's product with the bias (per output channel, a row of the product)
 * and the ReLU in its epilogue, one dispatch.
 */
export function fusedConv2d(
  be: WebGPUBackend,
  x: Tensor,
  w: Tensor,
  b: Tensor | null,
  geo: Conv2dGeometry,
  activation: Activation,
  who = "fusedConv2d",
): Tensor {
  const xb = be.buffer(x, who, "x"), wb = be.buffer(w, who, "w");
  const bb = b ? be.buffer(b, who, "b") : null;
  const d = convDims(x.shape, w.shape, geo);
  const y = be.alloc([d.n, d.o, d.ho, d.wo], who);
  if (y.size === 0) return y;
  const yb = bufOf(y);
  const relu = activation === "relu";
  if (d.ckk === 0) {
    // conv2d(x, w) = 0: y = act(b) broadcast over the batch and the pixels, as the separate ops give.
    be.encoder.clear(yb, y.size * 4);
    if (!bb) return y;
    const biased = be.alloc(y.shape, who);
    be.binaryBuffers("add", yb, y.shape, bb, [1, d.o, 1, 1], bufOf(biased), y.shape);
    be.release(y);
    if (!relu) return biased;
    const out = be.unary("relu", biased);
    be.release(biased);
    return out;
  }
  const aMode: OperandMode = d.ckk % 4 === 0 ? "vec-k" : "fn-k";
  const fusion = bb || relu ? { biasRows: bb !== null, relu } : undefined;
  matmulRun(be, {
    name: `conv2d/${convShapeKey(d.shape)}`,
    variant: {
      a: aMode,
      b: "col-n",
      cVec: convForwardVecStore(d.shape),
      splitK: false,
      loaders: plainLoaders(false, false, aMode === "fn-k", false) + convForwardLoaders(d.shape),
      gather: { setup: "" },
      fusion,
    },
    M: d.o,
    N: d.n * d.hw,
    K: d.ckk,
    z: 1,
    batch: { shape: [], a: [], b: [] },
    extra: [],
    bufs: bb ? [wb, xb, yb, bb] : [wb, xb, yb],
  });
  return y;
}

/**
 * The gradients of {@linkcode fusedConv2d} that `needs` asks for, gy masked by the step of `y` (the
 * forward's ReLU output) when given: the input gradient one dispatch; the weight and bias gradients
 * one product (the bias gradient as a column of ones appended to the im2col matrix) and one sum of
 * its split parts. The bias gradient alone is a sum of the masked gy over n, oh, ow (no product).
 */
export function fusedConv2dGrad(
  be: WebGPUBackend,
  x: Tensor,
  w: Tensor,
  y: Tensor | null,
  g: Tensor,
  geo: Conv2dGeometry,
  needs: LinearNeeds,
): { gx: Tensor | null; gw: Tensor | null; gb: Tensor | null } {
  const who = "fusedConv2d (backward)";
  const mask = y ? be.buffer(y, who, "y") : null;
  const gx = needs.x ? convGradInput(be, g, w, x.shape, geo, mask, who) : null;
  if (!needs.w && !needs.b) return { gx, gw: null, gb: null };
  if (!needs.w) {
    // The bias gradient alone (frozen weights): Σ over n, oh, ow of the masked gy, without the product.
    const gz = y ? be.reluGrad(y, g) : g;
    const gb = be.reduce("sum", gz, [0, 2, 3], false);
    if (gz !== g) be.release(gz);
    return { gx, gw: null, gb };
  }
  const r = convGradWeight(be, x, g, w.shape, geo, mask, needs.b, who);
  return { gx, gw: r.gw, gb: r.gb };
}

/**
 * The gradient of conv2d with respect to its input (implicit `Wᵀ · gy`, col2im as a gather): one
 * product per stride phase, each over the taps that reach it, in one dispatch.
 */
export function conv2dGradInput(
  be: WebGPUBackend,
  gy: Tensor,
  w: Tensor,
  xShape: readonly number[],
  geo: Conv2dGeometry,
): Tensor {
  return convGradInput(be, gy, w, xShape, geo, null, "conv2dGradInput");
}

/** The input gradient, gy masked by the step of the buffer `mask` (laid out as gy) when given. */
function convGradInput(
  be: WebGPUBackend,
  gy: Tensor,
  w: Tensor,
  xShape: readonly number[],
  geo: Conv2dGeometry,
  mask: GPUBuffer | null,
  who: string,
): Tensor {
  const gb = be.buffer(gy, who, "gy"), wb = be.buffer(w, who, "w");
  const d = convDims(xShape, w.shape, geo);
  const gx = be.alloc(xShape, who);
  if (gx.size === 0) return gx;
  const gxb = bufOf(gx);
  const K = convGradInputMaxK(d.shape);
  if (K === 0 || gy.size === 0) {
    be.encoder.clear(gxb, gx.size * 4);
    return gx;
  }
  const { loaders, setup } = convGradInputLoaders(d.shape, { masked: mask !== null });
  matmulRun(be, {
    name: `conv2dGradInput/${convShapeKey(d.shape)}`,
    variant: {
      a: "fn-m",
      b: "col-n",
      cVec: convGradInputVecStore(d.shape),
      splitK: false,
      loaders,
      gather: { setup, k: "phaseK" },
      fusion: mask ? { maskB: true } : undefined,
    },
    M: d.c,
    N: d.n * convGradInputColumns(d.shape),
    K,
    z: convGradInputPhases(d.shape),
    batch: { shape: [], a: [], b: [] },
    extra: [],
    bufs: mask ? [wb, gb, gxb, mask] : [wb, gb, gxb],
  });
  return gx;
}

/** The gradient of conv2d with respect to its weight (split K over batch × pixels, then summed). */
export function conv2dGradWeight(
  be: WebGPUBackend,
  x: Tensor,
  gy: Tensor,
  wShape: readonly number[],
  geo: Conv2dGeometry,
): Tensor {
  return convGradWeight(be, x, gy, wShape, geo, null, false, "conv2dGradWeight").gw;
}

/**
 * The weight gradient, gy masked by the step of `mask` when given, and with `withBias` the bias
 * gradient from the same product (a column of ones after the im2col matrix). K (the batch × output
 * pixels) is split so that enough workgroups run; the parts are summed by the reduction (weight
 * gradient alone) or by the kernel that also takes the bias gradient's column out.
 */
function convGradWeight(
  be: WebGPUBackend,
  x: Tensor,
  gy: Tensor,
  wShape: readonly number[],
  geo: Conv2dGeometry,
  mask: GPUBuffer | null,
  withBias: boolean,
  who: string,
): { gw: Tensor; gb: Tensor | null } {
  const xb = be.buffer(x, who, "x"), gb = be.buffer(gy, who, "gy");
  const d = convDims(x.shape, wShape, geo);
  const gw = be.alloc(wShape, who), gbias = withBias ? be.alloc([d.o], who) : null;
  const M = d.o, N = d.ckk, K = d.n * d.hw;
  // The product's columns: the weight gradient's, and the bias gradient's column of ones.
  const cols = N + (withBias ? 1 : 0);
  if (M === 0 || cols === 0) return { gw, gb: gbias };
  const gwb = bufOf(gw);
  if (K === 0) {
    if (gw.size > 0) be.encoder.clear(gwb, gw.size * 4);
    if (gbias) be.encoder.clear(bufOf(gbias), M * 4);
    return { gw, gb: gbias };
  }
  // The tile as for a large batch (the splits supply the workgroups), and the splits from it. The
  // split is part of the sum order: the 8×8 kernel (its own tile) takes the same one, for the same bits.
  const tile = chooseTile(M, cols, Infinity);
  const tiles = Math.ceil(M / tile.m) * Math.ceil(cols / tile.n);
  const split = tiles < SPLIT_BELOW_GROUPS && K >= 512;
  let splits = split ? Math.min(Math.ceil(SPLIT_TARGET_GROUPS / tiles), Math.floor(K / 256), 1024) : 1;
  const kChunk = Math.ceil(K / splits / 16) * 16;
  splits = Math.ceil(K / kChunk);
  const variant = {
    a: "fn-k" as const,
    b: "fn-k" as const,
    cVec: cols % 4 === 0,
    splitK: true,
    loaders: convGradWeightLoaders(d.shape, { masked: mask !== null, onesColumn: withBias }),
    fusion: mask ? { maskA: true } : undefined,
  };
  const name = `conv2dGradWeight/${convShapeKey(d.shape)}${withBias ? "+1col" : ""}`;
  const run = { name, variant, M, N: cols, K, batch: { kChunk }, extra: [], tile };
  const withMask = (bufs: GPUBuffer[]) => (mask ? [...bufs, mask] : bufs);
  if (!withBias && splits === 1) {
    matmulRun(be, { ...run, z: 1, bufs: withMask([gb, xb, gwb]) });
    return { gw, gb: null };
  }
  const part = be.temp(splits * M * cols * 4, who);
  matmulRun(be, { ...run, z: splits, bufs: withMask([gb, xb, part]) });
  if (!gbias) be.reduceBuffers("sum", part, [splits, M * N], [0], 1, gwb);
  else {
    // gw has no element when c = 0: a 16-byte stand-in takes the kernel's writes (there are none).
    const gwOut = gw.size > 0 ? gwb : be.temp(16, who);
    const spec = kernelSpec(
      "conv2dGradWeightSum",
      CONV_GRAD_SUM_WORDS,
      ["read", "write", "write"],
      () => convGradWeightSumKernel(),
    );
    be.run(
      spec,
      [splits, M, N, 0],
      [part, gwOut, bufOf(gbias)],
      be.grid(Math.ceil((M * cols) / CONV_GRAD_SUM_OUTPUTS)),
    );
    if (gwOut !== gwb) be.pool.release(gwOut);
  }
  be.pool.release(part);
  return { gw, gb: gbias };
}

const bufOf = (t: Tensor) => (t.storage as GpuStorage).buffer;

/** The sizes of a convolution and its shape as the kernels compile it in. */
function convDims(xShape: readonly number[], wShape: readonly number[], geo: Conv2dGeometry) {
  const [n, c, h, w] = xShape;
  const [o, , kh, kw] = wShape;
  const [sh, sw] = geo.stride, [ph, pw] = geo.padding;
  const ho = pooledSize(h, kh, sh, ph), wo = pooledSize(w, kw, sw, pw);
  return {
    n,
    c,
    h,
    w,
    o,
    kh,
    kw,
    ho,
    wo,
    ckk: c * kh * kw,
    hw: ho * wo,
    shape: { c, h, w, o, kh, kw, sh, sw, ph, pw, oh: ho, ow: wo } satisfies ConvShape,
  };
}
