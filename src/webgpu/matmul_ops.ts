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
 * A second kernel, with 8×8 outputs per thread (`kernels/wgsl/matmul_wide.ts`), can take the products
 * it supports (all but the convolutions'): {@linkcode setMatmulKernel}.
 *
 * @module
 */
import type { Conv2dGeometry } from "../backend.ts";
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
  convForwardLoaders,
  convForwardVecStore,
  convGradInputColumns,
  convGradInputLoaders,
  convGradInputMaxK,
  convGradInputPhases,
  convGradInputVecStore,
  convGradWeightLoaders,
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
  /** The tile (default: `chooseTile(M, N, z)`). */
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
 * `matmul` and the fused linear layer; the convolutions always use the 4×4 kernel.
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
 * Whether the 8×8 kernel takes a dispatch: never with an explicit tile (the split-K weight gradient)
 * or a variant it does not support ({@linkcode wideSupports}); under `"8x8"` otherwise always; under
 * `"auto"` never yet: the 4×4 kernel until the device kit's A/B (`bench/webgpu_matmul_bench.ts`)
 * shows on a GPU where the 8×8 one wins (a CPU adapter's timings say nothing about it).
 */
export function wideKernelFor(d: MatmulDispatch, choice: MatmulKernelChoice = matmulKernelChoice): boolean {
  if (d.tile || !wideSupports(d.variant)) return false;
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
  const xb = be.buffer(x, "conv2d", "x"), wb = be.buffer(w, "conv2d", "w");
  const d = convDims(x.shape, w.shape, geo);
  const y = be.alloc([d.n, d.o, d.ho, d.wo], "conv2d");
  if (y.size === 0) return y;
  const yb = (y.storage as GpuStorage).buffer;
  if (d.ckk === 0) {
    be.encoder.clear(yb, y.size * 4);
    return y;
  }
  const aMode: OperandMode = d.ckk % 4 === 0 ? "vec-k" : "fn-k";
  matmulRun(be, {
    name: `conv2d/${convShapeKey(d.shape)}`,
    variant: {
      a: aMode,
      b: "col-n",
      cVec: convForwardVecStore(d.shape),
      splitK: false,
      loaders: plainLoaders(false, false, aMode === "fn-k", false) + convForwardLoaders(d.shape),
      gather: { setup: "" },
    },
    M: d.o,
    N: d.n * d.hw,
    K: d.ckk,
    z: 1,
    batch: { shape: [], a: [], b: [] },
    extra: [],
    bufs: [wb, xb, yb],
  });
  return y;
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
  const gb = be.buffer(gy, "conv2dGradInput", "gy"), wb = be.buffer(w, "conv2dGradInput", "w");
  const d = convDims(xShape, w.shape, geo);
  const gx = be.alloc(xShape, "conv2dGradInput");
  if (gx.size === 0) return gx;
  const gxb = (gx.storage as GpuStorage).buffer;
  const K = convGradInputMaxK(d.shape);
  if (K === 0 || gy.size === 0) {
    be.encoder.clear(gxb, gx.size * 4);
    return gx;
  }
  const { loaders, setup } = convGradInputLoaders(d.shape);
  matmulRun(be, {
    name: `conv2dGradInput/${convShapeKey(d.shape)}`,
    variant: {
      a: "fn-m",
      b: "col-n",
      cVec: convGradInputVecStore(d.shape),
      splitK: false,
      loaders,
      gather: { setup, k: "phaseK" },
    },
    M: d.c,
    N: d.n * convGradInputColumns(d.shape),
    K,
    z: convGradInputPhases(d.shape),
    batch: { shape: [], a: [], b: [] },
    extra: [],
    bufs: [wb, gb, gxb],
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
  const xb = be.buffer(x, "conv2dGradWeight", "x"), gb = be.buffer(gy, "conv2dGradWeight", "gy");
  const d = convDims(x.shape, wShape, geo);
  const gw = be.alloc(wShape, "conv2dGradWeight");
  if (gw.size === 0) return gw;
  const gwb = (gw.storage as GpuStorage).buffer;
  const K = d.n * d.hw;
  if (K === 0) {
    be.encoder.clear(gwb, gw.size * 4);
    return gw;
  }
  const M = d.o, N = d.ckk;
  // Split K (the batch × output pixels) so that enough workgroups run, then sum the parts.
  // The tile as for a large batch (the splits supply the workgroups), and the splits from it.
  const tile = chooseTile(M, N, Infinity);
  const tiles = Math.ceil(M / tile.m) * Math.ceil(N / tile.n);
  const split = tiles < SPLIT_BELOW_GROUPS && K >= 512;
  let splits = split ? Math.min(Math.ceil(SPLIT_TARGET_GROUPS / tiles), Math.floor(K / 256), 1024) : 1;
  const kChunk = Math.ceil(K / splits / 16) * 16;
  splits = Math.ceil(K / kChunk);
  const variant = {
    a: "fn-k" as const,
    b: "fn-k" as const,
    cVec: N % 4 === 0,
    splitK: true,
    loaders: convGradWeightLoaders(d.shape),
  };
  const name = `conv2dGradWeight/${convShapeKey(d.shape)}`;
  const run = { name, variant, M, N, K, batch: { kChunk }, extra: [], tile };
  if (splits === 1) {
    matmulRun(be, { ...run, z: 1, bufs: [gb, xb, gwb] });
    return gw;
  }
  const part = be.temp(splits * M * N * 4, "conv2dGradWeight");
  matmulRun(be, { ...run, z: splits, bufs: [gb, xb, part] });
  be.reduceBuffers("sum", part, [splits, M * N], [0], 1, gwb);
  be.pool.release(part);
  return gw;
}

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
