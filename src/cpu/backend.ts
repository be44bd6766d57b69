/**
 * The CPU backend: typed-array storage and loops. float32 and float64. Large arrays are recycled
 * through the storage pool (`./storage_pool.ts`): `release` returns them, and outputs whose every
 * element a kernel writes take a pooled array without zeroing it (`allocOut`, and the convolution
 * kernels' output provider).
 *
 * @module
 */
import type { Backend, Conv2dGeometry } from "../backend.ts";
import { cpuOptimKernels } from "./optim.ts";
import { type DType, fmtShape, releaseCpuTensor, shapeSize, Tensor, type TypedArray } from "../tensor.ts";
import { allocOutputArray as allocOut, allocTensorArray as alloc, guardAllocation } from "../alloc.ts";
import { adoptStorage, takeStorage } from "./storage_pool.ts";
import { biasReluRows, binaryLoop, reluGradLoop, unaryLoop } from "./elementwise.ts";
import { concatLoop, forEachSliceIndex, reduceLoop, transposeLoop } from "./layout.ts";
import { gemm } from "../../kernels/wasm/gemm.ts";
import { conv2dForward, conv2dGradInput, conv2dGradWeight, type ConvDims } from "../../kernels/wasm/conv.ts";
import { setOutputProvider } from "../../kernels/wasm/output.ts";
import { batchNormBackwardLoop, batchNormForwardLoop, dropoutMaskLoop, type NormDims } from "./norm.ts";
import {
  biasReluChannels,
  crossEntropyGradRows,
  crossEntropyRows,
  pool2d,
  pool2dGrad,
  pooledSize,
  softmaxRows,
} from "./nn.ts";

// The convolution kernels' results come from the storage pool too (they write every element).
setOutputProvider((n, f64) => takeStorage(f64 ? "float64" : "float32", n, false));

const arr = (t: Tensor): TypedArray => t.storage as TypedArray;
const make = (data: TypedArray, shape: readonly number[], dtype: DType): Tensor =>
  new Tensor(data, shape, dtype, "cpu");

/** Offsets of each broadcast batch of a batched matmul operand. */
function batchOffsets(shape: readonly number[], outBatch: readonly number[], matSize: number): Int32Array {
  const batch = shape.slice(0, -2);
  const n = shapeSize(outBatch);
  const offs = new Int32Array(n);
  const r = outBatch.length, off = r - batch.length;
  const strides = new Array<number>(r).fill(0);
  let acc = matSize;
  for (let i = batch.length - 1; i >= 0; i--) {
    strides[i + off] = batch[i] === 1 ? 0 : acc;
    acc *= batch[i];
  }
  const idx = new Array<number>(r).fill(0);
  let o = 0;
  for (let b = 0; b < n; b++) {
    offs[b] = o;
    for (let ax = r - 1; ax >= 0; ax--) {
      idx[ax]++;
      o += strides[ax];
      if (idx[ax] < outBatch[ax]) break;
      o -= strides[ax] * outBatch[ax];
      idx[ax] = 0;
    }
  }
  return offs;
}

function convDims(xShape: readonly number[], wShape: readonly number[], geo: Conv2dGeometry): ConvDims {
  const [N, C, H, W] = xShape;
  const [O, , kh, kw] = wShape;
  return {
    N,
    C,
    H,
    W,
    O,
    kh,
    kw,
    sh: geo.stride[0],
    sw: geo.stride[1],
    ph: geo.padding[0],
    pw: geo.padding[1],
  };
}

/** `[N, C, …]` as N, C and S = the product of the trailing dims. */
function normDims(shape: readonly number[]): NormDims {
  return { N: shape[0], C: shape[1], S: shapeSize(shape.slice(2)) };
}

let fusedReluGrad = true;

/**
 * Turns the one-pass ReLU gradient of {@linkcode cpuBackend}.reluGrad on (default) or off (then it
 * runs the two primitives it fuses, step and mul, with the mask array between them; the same bits).
 * Returns the previous setting. Internal: for the benchmarks' same-process A/B.
 */
export function setFusedReluGrad(on: boolean): boolean {
  const prev = fusedReluGrad;
  fusedReluGrad = on;
  return prev;
}

/** The CPU implementation of {@linkcode Backend}. */
export const cpuBackend: Backend = {
  device: "cpu",
  // a getter: `./optim.ts` imports the tensor module, which loads this one, so a program that
  // imports `./optim.ts` first reaches this object before `cpuOptimKernels` is initialised
  get optim() {
    return cpuOptimKernels;
  },

  fromArray(data, shape, dtype) {
    const a = allocOut(dtype, shapeSize(shape) === data.length ? shape : [data.length], "fromArray");
    a.set(data);
    return make(a, shape, dtype);
  },
  fill(shape, value, dtype) {
    const a = alloc(dtype, shape, "fill");
    if (value !== 0) a.fill(value);
    return make(a, shape, dtype);
  },
  read(t) {
    return Promise.resolve(arr(t).slice());
  },
  release(t) {
    releaseCpuTensor(t);
  },
  reshape(x, shape) {
    return make(arr(x), shape, x.dtype);
  },
  cast(x, dtype) {
    const a = allocOut(dtype, x.shape, "cast");
    a.set(arr(x));
    return make(a, x.shape, dtype);
  },

  unary(op, x) {
    const out = allocOut(x.dtype, x.shape, op);
    unaryLoop(op, arr(x), out);
    return make(out, x.shape, x.dtype);
  },
  binary(op, a, b, outShape) {
    const out = allocOut(a.dtype, outShape, op);
    binaryLoop(op, arr(a), a.shape, arr(b), b.shape, out, outShape);
    return make(out, outShape, a.dtype);
  },
  reluGrad(x, g) {
    if (!fusedReluGrad) return this.binary("mul", g, this.unary("step", x), g.shape);
    const out = allocOut(g.dtype, g.shape, "relu (gradient)");
    reluGradLoop(arr(x), arr(g), out);
    return make(out, g.shape, g.dtype);
  },
  addRelu(a, b) {
    const out = this.binary("add", a, b, a.shape);
    const o = arr(out);
    unaryLoop("relu", o, o); // in place: the bits of a separate relu
    return out;
  },
  axpby(a, x, b, y) {
    if (x.size !== y.size || x.dtype !== y.dtype) {
      throw new RangeError(
        `axpby: x ${fmtShape(x.shape)} ${x.dtype} and y ${
          fmtShape(y.shape)
        } ${y.dtype} must have the same size and dtype`,
      );
    }
    const out = allocOut(x.dtype, x.shape, "axpby");
    const xs = arr(x), ys = arr(y);
    if (out instanceof Float32Array) {
      const fa = Math.fround(a), fb = Math.fround(b); // the float32 scalars mul(x, a) would make
      for (let i = 0; i < out.length; i++) out[i] = Math.fround(fa * xs[i]) + Math.fround(fb * ys[i]);
    } else for (let i = 0; i < out.length; i++) out[i] = a * xs[i] + b * ys[i];
    return make(out, x.shape, x.dtype);
  },
  reduce(op, x, axes, keepDims) {
    const kept = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
    const out = alloc(x.dtype, kept, op);
    reduceLoop(op, arr(x), x.shape, axes, out);
    return make(out, keepDims ? kept : x.shape.filter((_, i) => !axes.includes(i)), x.dtype);
  },

  matmul(a, b, transA, transB, outShape) {
    const r = outShape.length;
    const M = outShape[r - 2], N = outShape[r - 1];
    const K = transA ? a.shape[a.rank - 2] : a.shape[a.rank - 1];
    // gemm overwrites its output; with K = 0 it may not touch it
    const out = (K === 0 ? alloc : allocOut)(a.dtype, outShape, "matmul");
    const outBatch = outShape.slice(0, -2);
    const ao = batchOffsets(a.shape, outBatch, M * K), bo = batchOffsets(b.shape, outBatch, K * N);
    const av = arr(a), bv = arr(b);
    for (let i = 0; i < ao.length; i++) {
      gemm({ transA, transB, M, N, K, a: av, aOff: ao[i], b: bv, bOff: bo[i], c: out, cOff: i * M * N });
    }
    return make(out, outShape, a.dtype);
  },

  linear(x, w, b, activation) {
    const n = w.shape[1];
    const z = this.matmul(x, w, false, false, [x.shape[0], n]);
    biasReluRows(arr(z), b ? arr(b) : null, n, activation === "relu");
    return z;
  },
  linearGrad(x, w, y, g, needs) {
    // The separate ops' gradients, primitive by primitive: relu's (step(y) = step(x) for y = relu(x)),
    // add's row sum, matmul's two products.
    const gz = y ? this.reluGrad(y, g) : g;
    return {
      gx: needs.x ? this.matmul(gz, w, false, true, x.shape) : null,
      gw: needs.w ? this.matmul(x, gz, true, false, w.shape) : null,
      gb: needs.b ? this.reduce("sum", gz, [0], false) : null,
    };
  },

  transpose(x, perm) {
    const out = allocOut(x.dtype, x.shape, "transpose");
    transposeLoop(arr(x), x.shape, perm, out);
    return make(out, perm.map((p) => x.shape[p]), x.dtype);
  },
  slice(x, begin, end, step) {
    const outShape = begin.map((b, i) => Math.max(0, Math.ceil((end[i] - b) / step[i])));
    const out = allocOut(x.dtype, outShape, "slice");
    const src = arr(x);
    forEachSliceIndex(x.shape, begin, step, outShape, (o, i) => (out[o] = src[i]));
    return make(out, outShape, x.dtype);
  },
  sliceGrad(x, shape, begin, step) {
    const out = alloc(x.dtype, shape, "slice (gradient)");
    const src = arr(x);
    forEachSliceIndex(shape, begin, step, x.shape, (o, i) => (out[i] = src[o]));
    return make(out, shape, x.dtype);
  },
  concat(xs, axis) {
    const shape = xs[0].shape.slice();
    shape[axis] = xs.reduce((s, t) => s + t.shape[axis], 0);
    const out = allocOut(xs[0].dtype, shape, "concat");
    concatLoop(xs.map(arr), xs.map((t) => t.shape), axis, out);
    return make(out, shape, xs[0].dtype);
  },

  softmax(x) {
    const out = allocOut(x.dtype, x.shape, "softmax");
    softmaxRows(arr(x), x.shape[x.rank - 1], out, false);
    return make(out, x.shape, x.dtype);
  },
  logSoftmax(x) {
    const out = allocOut(x.dtype, x.shape, "logSoftmax");
    softmaxRows(arr(x), x.shape[x.rank - 1], out, true);
    return make(out, x.shape, x.dtype);
  },
  crossEntropy(logits, labels) {
    const [n, c] = logits.shape;
    const probs = allocOut(logits.dtype, logits.shape, "crossEntropy");
    const loss = crossEntropyRows(arr(logits), labels, n, c, probs);
    const l = alloc(logits.dtype, [], "crossEntropy");
    l[0] = loss;
    return { loss: make(l, [], logits.dtype), probs: make(probs, logits.shape, logits.dtype) };
  },
  crossEntropyGrad(probs, labels, g) {
    const [n, c] = probs.shape;
    const out = allocOut(probs.dtype, probs.shape, "crossEntropy (gradient)");
    crossEntropyGradRows(arr(probs), labels, n, c, arr(g)[0], out);
    return make(out, probs.shape, probs.dtype);
  },

  conv2d(x, w, geo) {
    const d = convDims(x.shape, w.shape, geo);
    const [ho, wo] = [pooledSize(d.H, d.kh, d.sh, d.ph), pooledSize(d.W, d.kw, d.sw, d.pw)];
    const shape = [d.N, d.O, ho, wo];
    return make(
      adoptStorage(guardAllocation(x.dtype, shape, "conv2d", () => conv2dForward(arr(x), arr(w), d))),
      shape,
      x.dtype,
    );
  },
  conv2dGradInput(gy, w, xShape, geo) {
    const d = convDims(xShape, w.shape, geo);
    const gx = guardAllocation(
      gy.dtype,
      xShape,
      "conv2d (input gradient)",
      () => conv2dGradInput(arr(gy), arr(w), d),
    );
    return make(adoptStorage(gx), xShape, gy.dtype);
  },
  conv2dGradWeight(x, gy, wShape, geo) {
    const d = convDims(x.shape, wShape, geo);
    const gw = guardAllocation(
      x.dtype,
      wShape,
      "conv2d (weight gradient)",
      () => conv2dGradWeight(arr(x), arr(gy), d),
    );
    return make(adoptStorage(gw), wShape, x.dtype);
  },
  fusedConv2d(x, w, b, geo, activation) {
    const y = this.conv2d(x, w, geo);
    biasReluChannels(arr(y), b ? arr(b) : null, y.shape[1], y.shape[2] * y.shape[3], activation === "relu");
    return y;
  },
  fusedConv2dGrad(x, w, y, g, geo, needs) {
    // The separate ops' gradients, primitive by primitive: relu's (step(y) = step(z) for y = relu(z)),
    // add's sum over the broadcast axes, conv2d's two.
    const gz = y ? this.reluGrad(y, g) : g;
    return {
      gx: needs.x ? this.conv2dGradInput(gz, w, x.shape, geo) : null,
      gw: needs.w ? this.conv2dGradWeight(x, gz, w.shape, geo) : null,
      gb: needs.b ? this.reduce("sum", gz, [0, 2, 3], false) : null,
    };
  },

  batchNormForward(x, gamma, beta, eps, activation = "none") {
    const d = normDims(x.shape), c = [d.C];
    const y = allocOut(x.dtype, x.shape, "batchNorm"), mean = alloc(x.dtype, c, "batchNorm");
    const v = alloc(x.dtype, c, "batchNorm");
    batchNormForwardLoop(arr(x), arr(gamma), arr(beta), d, eps, y, mean, v);
    if (activation === "relu") unaryLoop("relu", y, y); // in place: the bits of a separate relu
    return { y: make(y, x.shape, x.dtype), mean: make(mean, c, x.dtype), var: make(v, c, x.dtype) };
  },
  batchNormBackward(x, gamma, stats, gy, eps, y = null) {
    const d = normDims(x.shape), c = [d.C];
    const gx = allocOut(x.dtype, x.shape, "batchNorm (gradient)");
    const gg = alloc(x.dtype, c, "batchNorm (gradient)"), gb = alloc(x.dtype, c, "batchNorm (gradient)");
    const [xs, ms, vs] = [arr(x), arr(stats.mean), arr(stats.var)];
    batchNormBackwardLoop(xs, arr(gamma), ms, vs, arr(gy), d, eps, gx, gg, gb, y ? arr(y) : null);
    return { gx: make(gx, x.shape, x.dtype), gGamma: make(gg, c, x.dtype), gBeta: make(gb, c, x.dtype) };
  },
  dropoutMask(shape, dtype, spec) {
    const out = allocOut(dtype, shape, "dropout");
    dropoutMaskLoop(out, spec);
    return make(out, shape, dtype);
  },

  maxPool2d(x, geo) {
    const [n, c, h, w] = x.shape;
    const ho = pooledSize(h, geo.kernel[0], geo.stride[0], geo.padding[0]);
    const wo = pooledSize(w, geo.kernel[1], geo.stride[1], geo.padding[1]);
    const out = alloc(x.dtype, [n, c, ho, wo], "maxPool2d"), am = alloc(x.dtype, [n, c, ho, wo], "maxPool2d");
    pool2d("max", arr(x), n * c, h, w, geo, out, am);
    return { y: make(out, [n, c, ho, wo], x.dtype), argmax: make(am, [n, c, ho, wo], x.dtype) };
  },
  maxPool2dGrad(gy, argmax, xShape, geo) {
    const [n, c, h, w] = xShape;
    const gx = alloc(gy.dtype, xShape, "maxPool2d (gradient)");
    pool2dGrad("max", arr(gy), n * c, h, w, geo, gx, arr(argmax));
    return make(gx, xShape, gy.dtype);
  },
  avgPool2d(x, geo) {
    const [n, c, h, w] = x.shape;
    const ho = pooledSize(h, geo.kernel[0], geo.stride[0], geo.padding[0]);
    const wo = pooledSize(w, geo.kernel[1], geo.stride[1], geo.padding[1]);
    const out = allocOut(x.dtype, [n, c, ho, wo], "avgPool2d");
    pool2d("avg", arr(x), n * c, h, w, geo, out, null);
    return make(out, [n, c, ho, wo], x.dtype);
  },
  avgPool2dGrad(gy, xShape, geo) {
    const [n, c, h, w] = xShape;
    const gx = alloc(gy.dtype, xShape, "avgPool2d (gradient)");
    pool2dGrad("avg", arr(gy), n * c, h, w, geo, gx, null);
    return make(gx, xShape, gy.dtype);
  },
};
