/**
 * CPU optimizer kernels: loops over the `Float32Array`/`Float64Array` storage of CPU tensors.
 *
 * Each kernel is split into small range functions (`sgdRange`, `adamRange`, `noiseRange`,
 * `perturbRange`) that state their math and work on `[lo, hi)` of plain typed arrays. A fused
 * `vsgd`/`vadam` step runs the base range function and then the noise stage on the same chunk of a
 * few thousand elements, so each array is streamed through memory once and the update chunk stays
 * in cache between the two (plain SGD and its noise stage run as one loop, `sgdDrawRange`).
 * Arithmetic is float64 in registers; every stored value is rounded to the parameter's dtype and
 * read back before it is used again (or, in one loop, rounded with `Math.fround` exactly where the
 * store would round it), as a chain of separate steps would see it, so fused and unfused chains
 * agree bit for bit.
 *
 * The noise is `fillNoise`'s (element i of the stream, block ⌊i/4⌋, lane i mod 4), handed over by
 * `streamNoise` chunk by chunk straight from where it was generated (WebAssembly SIMD where
 * available, on several threads for long arrays: see `setNoiseThreads`); the chunks of a drawing
 * stage arrive in no particular order, which is harmless since every element is independent. The
 * draws are float32 numbers, so storing one in a float32 or float64 array and reading it back
 * gives it unchanged: the fused loops use the draw directly.
 *
 * @module
 */
import { type NoiseLaw, type StreamKey, streamNoise } from "../random/noise.ts";
import { allocArray, type DType, Tensor, type TypedArray } from "../tensor.ts";
import type {
  AdamKernelArgs,
  KernelResult,
  NoiseStage,
  OptimKernels,
  SgdKernelArgs,
} from "../optim/fused_ops.ts";

/** Elements per chunk of a fused step (a multiple of 4, the Philox block width). */
const CHUNK = 2048;

const arr = (t: Tensor): TypedArray => t.storage as TypedArray;
const arrOrNull = (t: Tensor | null | undefined): TypedArray | null => (t ? (t.storage as TypedArray) : null);
const make = (a: TypedArray, like: Tensor): Tensor => new Tensor(a, like.shape, like.dtype, "cpu");

/** The arrays and hyperparameters of one SGD kernel call (built once per call, see {@linkcode sgdRange}). */
export interface SgdRangeArgs {
  /** Gradient. */
  readonly g: TypedArray;
  /** Parameter (read when `weightDecay` ≠ 0, else may be null). */
  readonly p: TypedArray | null;
  /** Momentum buffer (null on the first momentum step). */
  readonly buf: TypedArray | null;
  /** The update (written). */
  readonly u: TypedArray;
  /** The new momentum buffer (written; null: no momentum). */
  readonly bufOut: TypedArray | null;
  /** Learning rate. */
  readonly lr: number;
  /** Momentum factor. */
  readonly momentum: number;
  /** Dampening. */
  readonly dampening: number;
  /** Coupled (L2) weight decay. */
  readonly weightDecay: number;
  /** Nesterov momentum. */
  readonly nesterov: boolean;
}

/**
 * SGD on `[lo, hi)` (torch.optim.SGD), `wd` the weight decay:
 *
 *     d = g + wd·p                                  (wd ≠ 0)
 *     buf = d            (first step, buf null)     ┐ when bufOut is given
 *     buf = mom·buf + (1 − damp)·d   (later)        │
 *     d = nesterov ? d + mom·buf : buf              ┘
 *     u = −lr·d
 */
export function sgdRange(a: SgdRangeArgs, lo: number, hi: number): void {
  const { g, p, buf, u, bufOut, lr, momentum, dampening, weightDecay: wd, nesterov } = a;
  const nlr = -lr;
  const keep = 1 - dampening;
  if (bufOut === null) {
    if (wd === 0) { for (let i = lo; i < hi; i++) u[i] = nlr * g[i]; }
    else for (let i = lo; i < hi; i++) u[i] = nlr * (g[i] + wd * p![i]);
    return;
  }
  for (let i = lo; i < hi; i++) {
    let d = g[i];
    if (wd !== 0) d = d + wd * p![i];
    bufOut[i] = buf === null ? d : momentum * buf[i] + keep * d;
    const b = bufOut[i];
    u[i] = nlr * (nesterov ? d + momentum * b : b);
  }
}

/** The arrays and hyperparameters of one Adam kernel call (built once per call; {@linkcode adamRange}). */
export interface AdamRangeArgs {
  /** Gradient. */
  readonly g: TypedArray;
  /** Parameter (read when `weightDecay` ≠ 0, else may be null). */
  readonly p: TypedArray | null;
  /** First moment (null: zeros). */
  readonly m: TypedArray | null;
  /** Second moment (null: zeros). */
  readonly v: TypedArray | null;
  /** Running maximum of the second moment (null: zeros). */
  readonly vmax: TypedArray | null;
  /** The update (written). */
  readonly u: TypedArray;
  /** The new first moment (written). */
  readonly mOut: TypedArray;
  /** The new second moment (written). */
  readonly vOut: TypedArray;
  /** The new running maximum (written; null: no AMSGrad). */
  readonly vmaxOut: TypedArray | null;
  /** Learning rate. */
  readonly lr: number;
  /** β1. */
  readonly b1: number;
  /** β2. */
  readonly b2: number;
  /** ε. */
  readonly eps: number;
  /** Weight decay. */
  readonly weightDecay: number;
  /** Decoupled (AdamW) decay instead of L2 on the gradient. */
  readonly decoupled: boolean;
  /** `lr / (1 − b1^t)`. */
  readonly sc: number;
  /** `√(1 − b2^t)`. */
  readonly sb2: number;
}

/**
 * Adam on `[lo, hi)` (torch.optim.Adam; AdamW when `decoupled`), `wd` the weight decay, with
 * `sc = lr / (1 − b1^t)` and `sb2 = √(1 − b2^t)`:
 *
 *     g ← g + wd·p                                  (coupled, wd ≠ 0)
 *     m = b1·m + (1 − b1)·g
 *     v = b2·v + (1 − b2)·g·g
 *     v̂ = amsgrad ? (vmax = max(vmax, v)) : v
 *     s = sc·m / (√v̂ / sb2 + eps)
 *     u = −s                      (decoupled: u = −(lr·wd)·p − s)
 *
 * A null `m`, `v` or `vmax` stands for zeros (the first step).
 */
export function adamRange(a: AdamRangeArgs, lo: number, hi: number): void {
  const { g, p, m, v, vmax, u, mOut, vOut, vmaxOut, lr, b1, b2, eps, weightDecay: wd, decoupled, sc, sb2 } =
    a;
  const c1 = 1 - b1, c2 = 1 - b2;
  const coupled = wd !== 0 && !decoupled;
  const dec = wd !== 0 && decoupled ? lr * wd : 0;
  for (let i = lo; i < hi; i++) {
    let gi = g[i];
    if (coupled) gi = gi + wd * p![i];
    mOut[i] = b1 * (m === null ? 0 : m[i]) + c1 * gi;
    vOut[i] = b2 * (v === null ? 0 : v[i]) + c2 * gi * gi;
    let vh = vOut[i];
    if (vmaxOut !== null) {
      vmaxOut[i] = Math.max(vmax === null ? 0 : vmax[i], vh);
      vh = vmaxOut[i];
    }
    const s = sc * mOut[i] / (Math.sqrt(vh) / sb2 + eps);
    u[i] = dec === 0 ? -s : -(dec * p![i]) - s;
  }
}

/**
 * The weight-noise step on `[lo, hi)` (see `NoiseStage`): with `nOut` given,
 * `nOut = noise(law, scale, key)` (rounded to its dtype) and `uOut = uIn + (nOut − nOld)`; with
 * `nOut` null (a reset), `uOut = uIn − nOld`. A null `nOld` stands for zeros. `uOut` may be
 * `uIn` (in place on a buffer the caller owns). Element i of the noise is element i of
 * `fillNoise(…, law, scale, key)`: Philox block ⌊i/4⌋, lane i mod 4, four draws per block.
 */
export function noiseRange(
  lo: number,
  hi: number,
  uIn: TypedArray,
  uOut: TypedArray,
  nOld: TypedArray | null,
  nOut: TypedArray | null,
  law: NoiseLaw,
  scale: number,
  key: StreamKey,
): void {
  if (nOut === null) {
    if (nOld === null) { if (uOut !== uIn) { for (let i = lo; i < hi; i++) uOut[i] = uIn[i]; } }
    else for (let i = lo; i < hi; i++) uOut[i] = uIn[i] - nOld[i];
    return;
  }
  streamNoise(hi - lo, law, scale, key, lo, (a, b, draws, off) => {
    drawRange(lo + a, lo + b, uIn, uOut, nOld, nOut, draws, off - lo);
  });
}

/**
 * The drawing half of the noise step on `[lo, hi)` with the draws at hand (element i of the noise
 * is `draws[off + i]`, a float32 number, so storing it in `nOut` of either dtype is exact):
 * `nOut = z`, `uOut = uIn + (z − nOld)` (`uIn + z` when `nOld` is null).
 */
function drawRange(
  lo: number,
  hi: number,
  uIn: TypedArray,
  uOut: TypedArray,
  nOld: TypedArray | null,
  nOut: TypedArray,
  draws: Float32Array,
  off: number,
): void {
  if (nOld === null) {
    for (let i = lo; i < hi; i++) {
      const z = draws[off + i];
      nOut[i] = z;
      uOut[i] = uIn[i] + z;
    }
  } else {
    for (let i = lo; i < hi; i++) {
      const z = draws[off + i];
      nOut[i] = z;
      uOut[i] = uIn[i] + (z - nOld[i]);
    }
  }
}

/**
 * Plain SGD (no momentum, no weight decay) fused with a drawing noise stage on `[lo, hi)`, in one
 * loop: `u = −lr·g` rounded to u's dtype (as `sgdRange` stores it), then `u = u + (z − nOld)` and
 * `nOut = z` with `z = draws[off + i]` (as `drawRange`): the same bits as the two passes.
 */
export function sgdDrawRange(
  lo: number,
  hi: number,
  g: TypedArray,
  nlr: number,
  u: TypedArray,
  nOld: TypedArray | null,
  nOut: TypedArray,
  draws: Float32Array,
  off: number,
): void {
  if (u instanceof Float32Array) {
    const f = Math.fround;
    if (nOld === null) {
      for (let i = lo; i < hi; i++) {
        const z = draws[off + i];
        nOut[i] = z;
        u[i] = f(nlr * g[i]) + z;
      }
    } else {
      for (let i = lo; i < hi; i++) {
        const z = draws[off + i];
        nOut[i] = z;
        u[i] = f(nlr * g[i]) + (z - nOld[i]);
      }
    }
  } else if (nOld === null) {
    for (let i = lo; i < hi; i++) {
      const z = draws[off + i];
      nOut[i] = z;
      u[i] = nlr * g[i] + z;
    }
  } else {
    for (let i = lo; i < hi; i++) {
      const z = draws[off + i];
      nOut[i] = z;
      u[i] = nlr * g[i] + (z - nOld[i]);
    }
  }
}

/** `out = p + n` on `[lo, hi)`, n = noise(law, scale, key) rounded to `out`'s dtype. */
export function perturbRange(
  lo: number,
  hi: number,
  p: TypedArray,
  out: TypedArray,
  law: NoiseLaw,
  scale: number,
  key: StreamKey,
): void {
  // the draws are float32 numbers: exact in out's dtype, as if stored there and read back
  streamNoise(hi - lo, law, scale, key, lo, (a, b, draws, off) => {
    const d = off - lo;
    for (let i = lo + a; i < lo + b; i++) out[i] = p[i] + draws[d + i];
  });
}

/** Allocates the noise output of a stage: null when the stage draws nothing. */
function noiseOut(stage: NoiseStage | undefined, dtype: DType, n: number): TypedArray | null {
  return stage && !stage.reset && stage.scale !== 0 ? allocArray(dtype, n) : null;
}

/**
 * A base step fused with its noise stage on `[0, n)`: `step(lo, hi)` writes the base update `u`
 * on a chunk, then the stage turns it into `u + (n_new − n_old)` (or `u − n_old` on a reset) on the
 * same chunk, while it is in cache. A drawing stage runs chunk by chunk as the noise arrives
 * (`streamNoise`, several threads for long arrays), in any order: every element is independent.
 */
function fused(
  n: number,
  u: TypedArray,
  stage: NoiseStage,
  nOut: TypedArray | null,
  step: (lo: number, hi: number) => void,
): void {
  const nOld = arrOrNull(stage.nOld);
  if (nOut === null) {
    for (let lo = 0; lo < n; lo += CHUNK) {
      const hi = Math.min(n, lo + CHUNK);
      step(lo, hi);
      noiseRange(lo, hi, u, u, nOld, null, stage.law, stage.scale, stage.key);
    }
    return;
  }
  streamNoise(n, stage.law, stage.scale, stage.key, 0, (lo, hi, draws, off) => {
    step(lo, hi);
    drawRange(lo, hi, u, u, nOld, nOut, draws, off);
  });
}

/** The CPU implementation of {@linkcode OptimKernels}. */
export const cpuOptimKernels: OptimKernels = {
  sgd(a: SgdKernelArgs): KernelResult {
    const g = arr(a.g), n = g.length, dtype = a.g.dtype;
    const p = arrOrNull(a.p), buf = arrOrNull(a.buf);
    const u = allocArray(dtype, n);
    const bufOut = a.useMomentum ? allocArray(dtype, n) : null;
    const stage = a.noise;
    const nOut = noiseOut(stage, dtype, n);
    const needStage = stage !== undefined && (nOut !== null || stage.nOld !== null);
    const args: SgdRangeArgs = {
      g,
      p,
      buf,
      u,
      bufOut,
      lr: a.lr,
      momentum: a.momentum,
      dampening: a.dampening,
      weightDecay: a.weightDecay,
      nesterov: a.nesterov,
    };
    const step = (lo: number, hi: number) => sgdRange(args, lo, hi);
    if (!needStage) step(0, n);
    else if (bufOut === null && a.weightDecay === 0 && nOut !== null) {
      // plain SGD + a drawing stage (vsgd's default): one loop per chunk
      const nOld = arrOrNull(stage!.nOld), nlr = -a.lr;
      streamNoise(n, stage!.law, stage!.scale, stage!.key, 0, (lo, hi, draws, off) => {
        sgdDrawRange(lo, hi, g, nlr, u, nOld, nOut, draws, off);
      });
    } else fused(n, u, stage!, nOut, step);
    return {
      u: make(u, a.g),
      buffers: bufOut ? { momentum: make(bufOut, a.g) } : {},
      noise: stage ? (nOut ? make(nOut, a.g) : null) : undefined,
    };
  },

  adam(a: AdamKernelArgs): KernelResult {
    const g = arr(a.g), n = g.length, dtype = a.g.dtype;
    const p = arrOrNull(a.p), m = arrOrNull(a.m), v = arrOrNull(a.v), vmax = arrOrNull(a.vmax);
    const u = allocArray(dtype, n), mOut = allocArray(dtype, n), vOut = allocArray(dtype, n);
    const vmaxOut = a.amsgrad ? allocArray(dtype, n) : null;
    const sc = a.lr / (1 - a.b1 ** a.t), sb2 = Math.sqrt(1 - a.b2 ** a.t);
    const stage = a.noise;
    const nOut = noiseOut(stage, dtype, n);
    const needStage = stage !== undefined && (nOut !== null || stage.nOld !== null);
    const args: AdamRangeArgs = {
      g,
      p,
      m,
      v,
      vmax,
      u,
      mOut,
      vOut,
      vmaxOut,
      lr: a.lr,
      b1: a.b1,
      b2: a.b2,
      eps: a.eps,
      weightDecay: a.weightDecay,
      decoupled: a.decoupled,
      sc,
      sb2,
    };
    const step = (lo: number, hi: number) => adamRange(args, lo, hi);
    if (!needStage) step(0, n);
    else fused(n, u, stage!, nOut, step);
    const buffers: Record<string, Tensor | null> = { m: make(mOut, a.g), v: make(vOut, a.g) };
    if (vmaxOut) buffers.vmax = make(vmaxOut, a.g);
    return { u: make(u, a.g), buffers, noise: stage ? (nOut ? make(nOut, a.g) : null) : undefined };
  },

  noise(ut: Tensor, stage: NoiseStage) {
    const uIn = arr(ut), n = uIn.length;
    const nOut = noiseOut(stage, ut.dtype, n);
    if (nOut === null && stage.nOld === null) return { u: ut, noise: null };
    const uOut = allocArray(ut.dtype, n);
    noiseRange(0, n, uIn, uOut, arrOrNull(stage.nOld), nOut, stage.law, stage.scale, stage.key);
    return { u: make(uOut, ut), noise: nOut ? make(nOut, ut) : null };
  },

  perturb(pt: Tensor, law: NoiseLaw, scale: number, key: StreamKey): Tensor {
    const p = arr(pt), out = allocArray(pt.dtype, p.length);
    perturbRange(0, p.length, p, out, law, scale, key);
    return make(out, pt);
  },

  addScaled(at: Tensor, bt: Tensor, alpha: number): Tensor {
    const a = arr(at), b = arr(bt), n = a.length, out = allocArray(at.dtype, n);
    if (alpha === 1) { for (let i = 0; i < n; i++) out[i] = a[i] + b[i]; }
    else if (alpha === -1) { for (let i = 0; i < n; i++) out[i] = a[i] - b[i]; }
    else for (let i = 0; i < n; i++) out[i] = a[i] + alpha * b[i];
    return make(out, at);
  },
};
