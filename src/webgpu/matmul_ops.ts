/**
 * The WebGPU matrix products: `matmul` and the convolutions as implicit GEMM (forward, grad input,
 * grad weight with a split K), all one tiled kernel family (`kernels/wgsl/matmul.ts`) with loaders
 * that gather the convolution's operands in place. Methods of {@linkcode WebGPUBackend} delegate here.
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
import {
  CONV_DW_LOAD_A,
  CONV_DW_LOAD_B,
  CONV_DX_LOAD_A,
  CONV_DX_LOAD_B,
  CONV_FWD_LOAD_B,
  CONV_GEO,
} from "../../kernels/wgsl/conv.ts";
import type { GpuStorage, WebGPUBackend } from "./backend.ts";
import { broadcastStrides, coalesce } from "./layout.ts";
import { kernelSpec } from "./pipelines.ts";
import { pooledSize } from "./pool_ops.ts";

/** Workgroups the split-K weight gradient aims for. */
const MATMUL_SPLIT_TARGET = 256;

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
  /** Extra uniform words from `CONV_GEO` on (the convolution geometry). */
  readonly extra: number[];
  /** A, B and C, then the buffers of the variant's fusion in `fusionBindings` order. */
  readonly bufs: readonly GPUBuffer[];
  /** The tile (default: `chooseTile(M, N, z)`). */
  readonly tile?: MatmulTile;
}

/** Encodes one tiled-matmul dispatch (see kernels/wgsl/matmul.ts for the uniform layout). */
export function matmulRun(be: WebGPUBackend, d: MatmulDispatch): void {
  const { name, variant: v, M, N, K, z, batch, extra, bufs } = d;
  const rows = M + (v.fusion?.onesRowA ? 1 : 0);
  const tile = d.tile ?? chooseTile(rows, N, z);
  const variant: MatmulVariant = { ...v, tile };
  const key = `${name}/${tile.m}x${tile.n}/${v.a}/${v.b}/${v.cVec ? "cv" : "cs"}/${
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
  extra.forEach((x, i) => (u[CONV_GEO + i] = x));
  const bindings = ["read", "read", "write", ...fusionBindings(v.fusion).map((b) => b.kind)] as const;
  const spec = kernelSpec(key, MATMUL_WORDS, bindings, () => matmulKernel(variant));
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

/** conv2d forward, NCHW/OIHW, as an implicit GEMM `W · cols` per image. */
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
    name: "conv2d",
    variant: {
      a: aMode,
      b: "fn-n",
      cVec: d.hw % 4 === 0,
      splitK: false,
      loaders: plainLoaders(false, false, aMode === "fn-k", false) + CONV_FWD_LOAD_B,
    },
    M: d.o,
    N: d.hw,
    K: d.ckk,
    z: d.n,
    batch: { shape: [d.n], a: [0], b: [d.c * d.h * d.w] },
    extra: d.geo,
    bufs: [wb, xb, yb],
  });
  return y;
}

/** The gradient of conv2d with respect to its input (implicit `Wᵀ · gy`, col2im as a gather). */
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
  const K = d.o * d.kh * d.kw;
  if (K === 0 || gy.size === 0) {
    be.encoder.clear(gxb, gx.size * 4);
    return gx;
  }
  matmulRun(be, {
    name: "conv2dGradInput",
    variant: {
      a: "fn-k",
      b: "fn-n",
      cVec: (d.h * d.w) % 4 === 0,
      splitK: false,
      loaders: CONV_DX_LOAD_A + CONV_DX_LOAD_B,
    },
    M: d.c,
    N: d.h * d.w,
    K,
    z: d.n,
    batch: { shape: [d.n], a: [0], b: [d.o * d.hw] },
    extra: d.geo,
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
  let splits = Math.max(1, Math.min(Math.ceil(MATMUL_SPLIT_TARGET / tiles), Math.floor(K / 256), 1024));
  const kChunk = Math.ceil(K / splits / 16) * 16;
  splits = Math.ceil(K / kChunk);
  const variant = {
    a: "fn-k" as const,
    b: "fn-k" as const,
    cVec: N % 4 === 0,
    splitK: true,
    loaders: CONV_DW_LOAD_A + CONV_DW_LOAD_B,
  };
  const run = { name: "conv2dGradWeight", variant, M, N, K, batch: { kChunk }, extra: d.geo, tile };
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

/** The sizes of a convolution and its geometry uniform words (`CONV_GEO` layout). */
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
    geo: [c, h, w, kh, kw, sh, sw, ph, pw, ho, wo, o],
  };
}
