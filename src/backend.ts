/**
 * The backend interface: the kernel-level primitives every device implements. Ops in `src/ops/`
 * check their arguments, dispatch here, and express their backward rules in terms of other ops,
 * so a backend that implements these primitives gets autodiff for free.
 *
 * All primitives receive tensors of one device and one dtype (the ops check that) and return new
 * tensors; none mutates its inputs.
 *
 * @module
 */
import type { Tensor } from "./tensor.ts";
import type { OptimKernels } from "./optim/fused_ops.ts";
import { cpuBackend } from "./cpu/backend.ts";
import type { BinaryOp, Device, DType, ReduceOp, TypedArray, UnaryOp } from "./types.ts";

export type { BinaryOp, ReduceOp, UnaryOp } from "./types.ts";

/** Geometry of a 2-D convolution or pooling window (NCHW). */
export interface Conv2dGeometry {
  /** Stride along height and width. */
  stride: [number, number];
  /** Zero padding along height and width (both sides). */
  padding: [number, number];
}

/** Geometry of a pooling window. */
export interface Pool2dGeometry extends Conv2dGeometry {
  /** Window height and width. */
  kernel: [number, number];
}

/** The primitives a device implements. */
export interface Backend {
  /** The device this backend serves. */
  readonly device: Device;

  /** A tensor holding a copy of `data` (already of the right dtype) with `shape`. */
  fromArray(data: TypedArray, shape: readonly number[], dtype: DType): Tensor;
  /** A tensor of `shape` filled with `value`. */
  fill(shape: readonly number[], value: number, dtype: DType): Tensor;
  /** A host copy of the tensor's data. */
  read(t: Tensor): Promise<TypedArray>;
  /** Releases the tensor's storage early (GPU); a no-op where garbage collection suffices. */
  release(t: Tensor): void;

  /** Same data, new shape (sizes equal; checked by the caller). May share storage. */
  reshape(x: Tensor, shape: readonly number[]): Tensor;
  /** Converts to another dtype. */
  cast(x: Tensor, dtype: DType): Tensor;

  /** Elementwise unary op. */
  unary(op: UnaryOp, x: Tensor): Tensor;
  /** Elementwise binary op; `outShape` is the broadcast shape (computed by the caller). */
  binary(op: BinaryOp, a: Tensor, b: Tensor, outShape: readonly number[]): Tensor;
  /**
   * The gradient of ReLU at `x` given `g` (same shape): g where x > 0, else g·0 (±0, or NaN where g
   * is not finite), in one pass. The same values, bit for bit, as
   * `binary("mul", g, unary("step", x))`.
   */
  reluGrad(x: Tensor, g: Tensor): Tensor;
  /**
   * relu(a + b) elementwise for `a` and `b` of one shape and dtype, in one pass: the values of
   * `binary("add")` followed by `unary("relu")` (a residual block's output).
   */
  addRelu(a: Tensor, b: Tensor): Tensor;
  /**
   * `a·x + b·y` elementwise (`x` and `y` of one shape and dtype), each product rounded to the dtype
   * before the sum: the values of `add(mul(x, a), mul(y, b))` in one pass (batch norm's running
   * statistics).
   */
  axpby(a: number, x: Tensor, b: number, y: Tensor): Tensor;
  /** Reduction over the sorted, unique `axes`; the result keeps size-1 dims when `keepDims`. */
  reduce(op: ReduceOp, x: Tensor, axes: readonly number[], keepDims: boolean): Tensor;

  /**
   * Batched matrix product of the last two dims: op(a)·op(b) where op transposes when the flag is
   * set. Leading (batch) dims broadcast; `outShape` is computed by the caller.
   */
  matmul(a: Tensor, b: Tensor, transA: boolean, transB: boolean, outShape: readonly number[]): Tensor;

  /**
   * A fully connected layer in one primitive: y = act(x·w + b) for x `[N, in]`, w `[in, out]` and b
   * `[out]` or none (shapes checked by the caller), act the identity or ReLU. The values are those
   * of `matmul`, then `binary("add")` with the bias broadcast over the rows, then `unary("relu")`.
   */
  linear(x: Tensor, w: Tensor, b: Tensor | null, activation: Activation): Tensor;
  /**
   * The gradients of {@linkcode Backend.linear} given `g` = dL/dy, each only when `needs` asks for it
   * (else null). With gz = g · step(y) after a ReLU (`y` is linear's output; step(y) = 1 where
   * y > 0, else 0) and gz = g otherwise (`y` null): gx = gz·wᵀ, gw = xᵀ·gz, gb = Σ over the rows of gz.
   * The values are those of the separate relu, add and matmul gradients.
   */
  linearGrad(
    x: Tensor,
    w: Tensor,
    y: Tensor | null,
    g: Tensor,
    needs: LinearNeeds,
  ): { gx: Tensor | null; gw: Tensor | null; gb: Tensor | null };

  /** Permutes the axes (`perm[i]` is the input axis that becomes output axis i). */
  transpose(x: Tensor, perm: readonly number[]): Tensor;
  /** Strided slice: `begin`, `end` (exclusive) per axis, positive steps. */
  slice(x: Tensor, begin: readonly number[], end: readonly number[], step: readonly number[]): Tensor;
  /**
   * The adjoint of `slice`: a zero tensor of `shape` with `x` scattered into the sliced positions.
   */
  sliceGrad(
    x: Tensor,
    shape: readonly number[],
    begin: readonly number[],
    step: readonly number[],
  ): Tensor;
  /** Concatenation along `axis` (shapes checked by the caller). */
  concat(xs: readonly Tensor[], axis: number): Tensor;

  /** Softmax over the last axis (numerically stable). */
  softmax(x: Tensor): Tensor;
  /** Log-softmax over the last axis (numerically stable). */
  logSoftmax(x: Tensor): Tensor;
  /**
   * Mean cross-entropy of logits `[N, C]` against integer labels (validated by the caller), and the
   * softmax probabilities the backward pass needs.
   */
  crossEntropy(logits: Tensor, labels: Int32Array): { loss: Tensor; probs: Tensor };
  /** Gradient of the mean cross-entropy w.r.t. the logits: (probs − onehot(labels)) · g / N. */
  crossEntropyGrad(probs: Tensor, labels: Int32Array, g: Tensor): Tensor;

  /** conv2d, NCHW input `[N, C, H, W]`, OIHW weight `[O, C, kh, kw]`, no bias. */
  conv2d(x: Tensor, w: Tensor, geo: Conv2dGeometry): Tensor;
  /** Gradient of conv2d w.r.t. its input. */
  conv2dGradInput(gy: Tensor, w: Tensor, xShape: readonly number[], geo: Conv2dGeometry): Tensor;
  /** Gradient of conv2d w.r.t. its weight. */
  conv2dGradWeight(x: Tensor, gy: Tensor, wShape: readonly number[], geo: Conv2dGeometry): Tensor;
  /**
   * A convolution with its bias and activation in one primitive: y = act(conv2d(x, w) + b) with b
   * `[O]` or none added per output channel, act the identity or ReLU (shapes checked by the caller).
   * The values are those of `conv2d`, then `binary("add")` with b as `[1, O, 1, 1]`, then
   * `unary("relu")`.
   */
  fusedConv2d(
    x: Tensor,
    w: Tensor,
    b: Tensor | null,
    geo: Conv2dGeometry,
    activation: Activation,
  ): Tensor;
  /**
   * The gradients of {@linkcode Backend.fusedConv2d} given `g` = dL/dy, each only when `needs` asks
   * for it (else null). With gz = g · step(y) after a ReLU (`y` is fusedConv2d's output) and gz = g
   * otherwise (`y` null): gx and gw are conv2d's gradients at gz, gb = Σ over n, oh, ow of gz. The
   * values are those of the separate relu, add and conv2d gradients.
   */
  fusedConv2dGrad(
    x: Tensor,
    w: Tensor,
    y: Tensor | null,
    g: Tensor,
    geo: Conv2dGeometry,
    needs: LinearNeeds,
  ): { gx: Tensor | null; gw: Tensor | null; gb: Tensor | null };

  /** Max pooling; also returns each maximum's offset inside its window, ky·kw + kx (for the backward pass). */
  maxPool2d(x: Tensor, geo: Pool2dGeometry): { y: Tensor; argmax: Tensor };
  /**
   * Scatters `gy` to the argmax positions of an input of `xShape`. `argmax` holds each winner's
   * offset inside its window (ky·kw + kx), as float.
   */
  maxPool2dGrad(gy: Tensor, argmax: Tensor, xShape: readonly number[], geo: Pool2dGeometry): Tensor;
  /** Average pooling (zero padding counts in the divisor, as PyTorch's default). */
  avgPool2d(x: Tensor, geo: Pool2dGeometry): Tensor;
  /** Gradient of average pooling. */
  avgPool2dGrad(gy: Tensor, xShape: readonly number[], geo: Pool2dGeometry): Tensor;

  /**
   * Batch normalization in training mode, fused per channel: `x` is `[N, C, …]` (channel axis 1,
   * the trailing dims flattened to S, m = N·S values per channel), `gamma` and `beta` are `[C]`.
   * Returns the per-channel mean, the biased variance var = (1/m) Σ (x − mean)² and
   * y = (x − mean) / √(var + eps) · γ + β; with `activation` "relu", y = relu(that) written by the
   * same pass (the values of `unary("relu")` applied to the plain y).
   */
  batchNormForward(
    x: Tensor,
    gamma: Tensor,
    beta: Tensor,
    eps: number,
    activation?: Activation,
  ): BatchNormStats & { y: Tensor };
  /**
   * The gradients of {@linkcode Backend.batchNormForward} at `x` with its `mean` and `var`, given
   * `gy`: with x̂ = (x − mean)/√(var + eps), gγ = Σ gy·x̂, gβ = Σ gy (per channel) and
   * gx = γ/(m·√(var + eps)) · (m·gy − gβ − x̂·gγ). With `y`, the output of a forward pass with a
   * ReLU, gy is first masked by ReLU's gradient rule inline, with no buffer between: the values of
   * this call without `y` given `reluGrad(y, gy)` (step(y) = step(x̂·γ + β) for y = relu(x̂·γ + β)).
   */
  batchNormBackward(
    x: Tensor,
    gamma: Tensor,
    stats: BatchNormStats,
    gy: Tensor,
    eps: number,
    y?: Tensor | null,
  ): { gx: Tensor; gGamma: Tensor; gBeta: Tensor };
  /**
   * An inverted-dropout mask of `shape`: element i is `spec.scale` when it is kept, else 0. Element
   * i reads word i mod 4 of the Philox4x32-10 block with key (k0, k1) and counter (⌊i/4⌋, c1, c2, 0),
   * and is kept when that word's top 24 bits, w >>> 8, are ≥ `spec.threshold`.
   */
  dropoutMask(shape: readonly number[], dtype: DType, spec: DropoutMaskSpec): Tensor;

  /**
   * The fused optimizer kernels of this device (see `src/optim/fused_ops.ts`), when it has them.
   * Optimizers look them up by the device of each parameter.
   */
  readonly optim?: OptimKernels;

  /**
   * Device-side checks for non-finite values (the guard of `fit`), on devices where reading a value
   * back each step would stall the queue. Absent on the CPU, where `fit` scans the arrays directly.
   */
  readonly finite?: FiniteKernels;
}

/**
 * The activation fused into a primitive after its product or normalization ({@linkcode
 * Backend.linear}, {@linkcode Backend.fusedConv2d}, {@linkcode Backend.batchNormForward}): none or
 * ReLU.
 */
export type Activation = "none" | "relu";

/** Which gradients {@linkcode Backend.linearGrad} computes. */
export interface LinearNeeds {
  /** The input's, gx. */
  x: boolean;
  /** The weight's, gw. */
  w: boolean;
  /** The bias's, gb. */
  b: boolean;
}

/** The per-channel statistics of a training-mode batch normalization, both `[C]`. */
export interface BatchNormStats {
  /** The batch mean of each channel. */
  mean: Tensor;
  /** The biased batch variance of each channel, (1/m) Σ (x − mean)². */
  var: Tensor;
}

/** What {@linkcode Backend.dropoutMask} draws: the Philox key and counter words, the keep rule, the scale. */
export interface DropoutMaskSpec {
  /** Key word 0 (the seed). */
  k0: number;
  /** Key word 1 (the hash of the layer path). */
  k1: number;
  /** Counter word 1 (the step). */
  c1: number;
  /** Counter word 2 (the stream tag). */
  c2: number;
  /** An element is kept when the top 24 bits of its word are ≥ this integer in [0, 2^24]. */
  threshold: number;
  /** The value of a kept element, 1/(1 − rate) rounded to the dtype. */
  scale: number;
}

/**
 * The non-finite guard's kernels of a device. A guard is a float32 tensor of 1 (a step's) or 2 (an
 * epoch's) elements whose words are read as u32: word 0 is 0 while everything is finite, else
 * 2^32 − 1 − c for the smallest code c marked; word 1 of an epoch guard counts the marked steps.
 * `mark` and `fold` write into their guard argument (the only primitives that do): the guard
 * belongs to the caller, who creates it zeroed and reads it back.
 */
export interface FiniteKernels {
  /** When `x` holds a NaN or ±Infinity: guard word 0 ← max(word 0, 2^32 − 1 − code). */
  mark(x: Tensor, guard: Tensor, code: number): void;
  /** Elementwise `guard word 0 ≠ 0 ? prev : next` (same shapes): a new tensor. */
  select(guard: Tensor, prev: Tensor, next: Tensor): Tensor;
  /**
   * Folds a step guard into an epoch guard: when the step's word 0 is 2^32 − 1 − leaf, marks the
   * epoch guard with code `base + leaf` and adds 1 to its word 1.
   */
  fold(step: Tensor, epoch: Tensor, base: number): void;
}

const OPTIM_KERNELS = ["sgd", "adam", "noise", "perturb", "addScaled"] as const;

// The CPU backend is always present (imported above, looked up lazily so that the import cycle
// tensor → backend → cpu backend → tensor needs nothing at module evaluation); WebGPU registers
// itself when initialised.
const backends = new Map<Device, Backend>();

/**
 * Registers the backend of a device, replacing any previous one (WebGPU's initialisation calls
 * this). Its optimizer kernels, if any, must define every kernel of `OptimKernels`.
 */
export function registerBackend(b: Backend): void {
  if (b.optim !== undefined) {
    for (const k of OPTIM_KERNELS) {
      if (typeof b.optim?.[k] !== "function") {
        throw new TypeError(`registerBackend: optim.${k} must be a function (device "${b.device}")`);
      }
    }
  }
  backends.set(b.device, b);
}

/** The backend of `device`; throws when it is not initialised. */
export function getBackend(device: Device): Backend {
  const b = device === "cpu" ? backends.get("cpu") ?? cpuBackend : backends.get(device);
  if (!b) {
    throw new Error(
      `no backend for device "${device}"` +
        (device === "webgpu" ? `: call await initWebGPU() (or setDefaultDevice("webgpu")) first` : ""),
    );
  }
  return b;
}

let defaultDevice: Device = "cpu";

/** The device new tensors are created on when none is given. */
export function getDefaultDevice(): Device {
  return defaultDevice;
}

/** Sets the device new tensors are created on when none is given (its backend must be ready). */
export function setDefaultDeviceSync(device: Device): void {
  getBackend(device);
  defaultDevice = device;
}
