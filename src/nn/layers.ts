/**
 * The leaf layers (see `layer.ts` for the protocol): `linear`, `conv2d`, `batchNorm`, `dropout`,
 * `relu`, `flatten`, `globalAvgPool`, `maxPool`, `avgPool`, each with PyTorch's default
 * initialization. Weights are drawn as PyTorch's `kaiming_uniform_(a=√5)`, which is U(±1/√fan_in),
 * and biases U(±1/√fan_in), from the counter-based generator keyed by the seed and the layer's
 * path; BatchNorm starts at γ = 1, β = 0, running mean 0 and running variance 1.
 *
 * @module
 */
import { type CreateOptions, ones, zeros } from "../creation.ts";
import { relu as reluOp } from "../ops/elementwise.ts";
import { backendFor } from "../ops/dispatch.ts";
import { fusedLinear } from "../ops/linear.ts";
import { avgPool2d, fusedConv2d, maxPool2d, type Size2 } from "../ops/conv.ts";
import { mean } from "../ops/reduce.ts";
import { flatten as flattenOp } from "../ops/shape.ts";
import { batchNormInference, batchNormTrain } from "../ops/norm.ts";
import { dropout as dropoutOp } from "../ops/dropout.ts";
import { withTape } from "../tape.ts";
import { fmtShape, type Tensor } from "../tensor.ts";
import { initConv2d, initLinear, uniformFanIn } from "./init.ts";
import {
  atLayer,
  checkInput,
  checkLeafShape,
  checkSeed,
  EMPTY,
  type Layer,
  layerError,
  leaf,
  positiveInt,
} from "./layer.ts";

/** Parameters of {@linkcode linear}: `w` `[in, out]` (so `y = x·w + b`) and, with a bias, `b` `[out]`. */
export type LinearLayerParams = { w: Tensor; b?: Tensor };

/** Options of {@linkcode linear}. */
export interface LinearLayerOptions {
  /** Add a bias (default true). */
  bias?: boolean;
  /**
   * An activation after the bias (default "none"): "relu" gives relu(x·w + b), the values of a
   * `linear` followed by a `relu` layer in one op (on WebGPU one dispatch forward, two backward).
   */
  activation?: "none" | "relu";
}

/**
 * A fully connected layer `[N, in] → [N, out]`: y = x·w + b, or relu(x·w + b) with
 * `activation: "relu"`. Init as `torch.nn.Linear`: w and b U(±1/√in). PyTorch's `weight` is our
 * `w` transposed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nn, randn } from "@nvrm/core";
 * const fc = nn.linear(4, 3);
 * const { params, state } = fc.init(0, "fc");
 * const { y } = fc.apply(params, state, randn([2, 4]), { training: true, step: 0, seed: 0, path: "fc" });
 * assert.deepEqual(y.shape, [2, 3]);
 * // relu(x·w + b) in one op (one dispatch on WebGPU), the values of nn.relu() after nn.linear
 * const hidden = nn.linear(4, 3, { activation: "relu" });
 * const h = hidden.apply(params, state, randn([2, 4]), { training: true, step: 0, seed: 0, path: "fc" }).y;
 * assert.ok(h.dataSync().every((v) => v >= 0));
 * ```
 */
export function linear(
  inFeatures: number,
  outFeatures: number,
  options: LinearLayerOptions = {},
): Layer<LinearLayerParams, Record<string, never>> {
  const who = "nn.linear";
  positiveInt(who, "inFeatures", inFeatures);
  positiveInt(who, "outFeatures", outFeatures);
  const bias = options.bias ?? true;
  const activation = options.activation ?? "none";
  if (activation !== "none" && activation !== "relu") {
    throw new RangeError(`${who}: activation must be "none" or "relu", got ${JSON.stringify(activation)}`);
  }
  const kind = `linear ${inFeatures}→${outFeatures}${activation === "relu" ? ", relu" : ""}`;
  return {
    kind,
    hasParams: true,
    hasState: false,
    init(seed, path, opts: CreateOptions = {}) {
      checkSeed(who, seed);
      const io = { seed, dtype: opts.dtype, device: opts.device, stream: path };
      const params: LinearLayerParams = bias
        ? initLinear(inFeatures, outFeatures, io)
        : { w: uniformFanIn([inFeatures, outFeatures], inFeatures, { ...io, stream: `${path}.w` }) };
      return { params, state: EMPTY };
    },
    apply(params, state, x, ctx) {
      checkInput(ctx.path, kind, x, [2], `[N, ${inFeatures}]`);
      if (x.shape[1] !== inFeatures) {
        throw layerError(
          ctx.path,
          kind,
          `expects x [N, ${inFeatures}], got ${fmtShape(x.shape)} (${x.shape[1]} features; is the ` +
            `input's channel count or spatial size the one the network was built for?)`,
        );
      }
      const w = leaf(params, "w", ctx.path, kind, "params");
      checkLeafShape(w, [inFeatures, outFeatures], ctx.path, kind, "w");
      const b = bias ? leaf(params, "b", ctx.path, kind, "params") : undefined;
      if (b) checkLeafShape(b, [outFeatures], ctx.path, kind, "b");
      const y = atLayer(ctx.path, kind, () => fusedLinear(x, w, b, { activation }));
      return { y, state };
    },
  };
}

/** Parameters of {@linkcode conv2d}: `w` `[O, C, kh, kw]` and, with a bias, `b` `[O]`. */
export type Conv2dLayerParams = { w: Tensor; b?: Tensor };

/** Options of {@linkcode conv2d}. */
export interface Conv2dLayerOptions {
  /** Stride (default 1). */
  stride?: Size2;
  /** Zero padding on each side (default 0). */
  padding?: Size2;
  /** Add a bias (default true). */
  bias?: boolean;
  /**
   * An activation after the bias (default "none"): "relu" gives relu(conv2d(x, w) + b), the values
   * of a `conv2d` followed by a `relu` layer in one op (on WebGPU the bias and the ReLU run in the
   * convolution's kernel, and the bias gradient comes from the weight gradient's).
   */
  activation?: "none" | "relu";
}

function pairOf(v: Size2): [number, number] {
  return typeof v === "number" ? [v, v] : [v[0], v[1]];
}

/**
 * A 2-D convolution `[N, C, H, W] → [N, O, H', W']` (cross-correlation, as `torch.nn.Conv2d`), with
 * H' = ⌊(H + 2·padding − kh)/stride⌋ + 1, or its ReLU with `activation: "relu"`. Init as PyTorch:
 * w and b U(±1/√(C·kh·kw)).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nn, randn } from "@nvrm/core";
 * const conv = nn.conv2d(3, 8, 3, { padding: 1, bias: false });
 * const { params, state } = conv.init(0, "conv1");
 * const ctx = { training: true, step: 0, seed: 0, path: "conv1" };
 * assert.deepEqual(conv.apply(params, state, randn([2, 3, 8, 8]), ctx).y.shape, [2, 8, 8, 8]);
 * ```
 */
export function conv2d(
  inChannels: number,
  outChannels: number,
  kernel: Size2,
  options: Conv2dLayerOptions = {},
): Layer<Conv2dLayerParams, Record<string, never>> {
  const who = "nn.conv2d";
  positiveInt(who, "inChannels", inChannels);
  positiveInt(who, "outChannels", outChannels);
  const [kh, kw] = pairOf(kernel);
  positiveInt(who, "kernel", kh);
  positiveInt(who, "kernel", kw);
  const stride = pairOf(options.stride ?? 1), padding = pairOf(options.padding ?? 0);
  stride.forEach((s) => positiveInt(who, "stride", s));
  padding.forEach((p) => {
    if (!Number.isInteger(p) || p < 0) {
      throw new RangeError(`${who}: padding must be an integer ≥ 0, got ${p}`);
    }
  });
  const bias = options.bias ?? true;
  const activation = options.activation ?? "none";
  if (activation !== "none" && activation !== "relu") {
    throw new RangeError(`${who}: activation must be "none" or "relu", got ${JSON.stringify(activation)}`);
  }
  const kind = `conv2d ${inChannels}→${outChannels}, ${kh}×${kw}` +
    (stride[0] !== 1 || stride[1] !== 1
      ? `, stride ${stride[0] === stride[1] ? stride[0] : fmtShape(stride)}`
      : "") +
    (activation === "relu" ? ", relu" : "");
  const wShape = [outChannels, inChannels, kh, kw];
  return {
    kind,
    hasParams: true,
    hasState: false,
    init(seed, path, opts: CreateOptions = {}) {
      checkSeed(who, seed);
      const io = { seed, dtype: opts.dtype, device: opts.device, stream: path };
      const params: Conv2dLayerParams = bias
        ? initConv2d(inChannels, outChannels, [kh, kw], io)
        : { w: uniformFanIn(wShape, inChannels * kh * kw, { ...io, stream: `${path}.w` }) };
      return { params, state: EMPTY };
    },
    apply(params, state, x, ctx) {
      checkInput(ctx.path, kind, x, [4], `[N, ${inChannels}, H, W]`);
      if (x.shape[1] !== inChannels) {
        throw layerError(
          ctx.path,
          kind,
          `expects ${inChannels} input channels, got x ${fmtShape(x.shape)} with ${x.shape[1]}`,
        );
      }
      for (let i = 0; i < 2; i++) {
        if (x.shape[2 + i] + 2 * padding[i] < [kh, kw][i]) {
          throw layerError(
            ctx.path,
            kind,
            `the input's spatial size ${x.shape[2]}×${x.shape[3]} (x ${fmtShape(x.shape)}) is smaller than ` +
              `the ${kh}×${kw} kernel after padding ${padding[i]}; the network needs larger inputs`,
          );
        }
      }
      const w = leaf(params, "w", ctx.path, kind, "params");
      checkLeafShape(w, wShape, ctx.path, kind, "w");
      const b = bias ? leaf(params, "b", ctx.path, kind, "params") : undefined;
      if (b) checkLeafShape(b, [outChannels], ctx.path, kind, "b");
      const y = atLayer(ctx.path, kind, () => fusedConv2d(x, w, b, { stride, padding, activation }));
      return { y, state };
    },
  };
}

/** Parameters of {@linkcode batchNorm}: `w` = γ and `b` = β, each `[C]` (PyTorch's `weight` and `bias`). */
export type BatchNormParams = { w: Tensor; b: Tensor };

/** State of {@linkcode batchNorm}: the running statistics, each `[C]` (PyTorch's `running_mean`, `running_var`). */
export type BatchNormState = { runningMean: Tensor; runningVar: Tensor };

/** Options of {@linkcode batchNorm}. */
export interface BatchNormOptions {
  /** Added to the variance (default 1e-5). */
  eps?: number;
  /** Weight of the new batch statistic in the running estimate (default 0.1). */
  momentum?: number;
  /**
   * An activation after the normalization (default "none"): "relu" gives relu(y), the values of a
   * `batchNorm` followed by a `relu` layer, with the ReLU fused into the batch-norm kernels in
   * training (on WebGPU no ReLU dispatch forward or backward). `sequential` fuses a `batchNorm`
   * directly followed by a `relu` layer so by itself.
   */
  activation?: "none" | "relu";
}

type BatchNormApply = Layer<BatchNormParams, BatchNormState>["apply"];

/** The batchNorm layers' forward with a ReLU after it, by layer (see {@linkcode withFusedRelu}). */
const fusedReluApply = new WeakMap<Layer, Layer["apply"]>();
/** The layers made by {@linkcode relu}. */
const reluLayers = new WeakSet<Layer>();

/**
 * Internal, for `sequential`: when `layer` is a {@linkcode batchNorm} without an activation and
 * `next` a {@linkcode relu} layer, the batch norm's forward with the ReLU fused in (same params,
 * state, errors and values as the two layers in turn); otherwise undefined.
 */
export function withFusedRelu(layer: Layer, next: Layer): Layer["apply"] | undefined {
  return reluLayers.has(next) ? fusedReluApply.get(layer) : undefined;
}

let fuseActivations = true;

/**
 * Internal: whether the containers fuse a ReLU into the layer before it (`sequential`: a batchNorm
 * then a relu; `residual`: the sum and its ReLU). Off, they run the layers and ops one by one (the
 * same values). For the benchmarks' same-process A/B and the tests' unfused reference.
 */
export function fusedActivations(): boolean {
  return fuseActivations;
}

/** Internal: sets {@linkcode fusedActivations} (default on); returns the previous setting. */
export function setFusedActivations(on: boolean): boolean {
  const prev = fuseActivations;
  fuseActivations = on;
  return prev;
}

/**
 * Batch normalization over the channel axis 1 of `[N, C]` (BatchNorm1d) or `[N, C, H, W]`
 * (BatchNorm2d), with PyTorch's semantics. Training: y = (x − μ)/√(σ² + eps)·γ + β with μ and the
 * BIASED variance σ² of the batch per channel (over the m = N·H·W values of the channel), and the
 * running statistics move as r ← (1 − momentum)·r + momentum·s, with s = μ for the mean and the
 * UNBIASED variance σ²·m/(m − 1) for the variance. Evaluation: the running statistics replace μ
 * and σ², and the state is returned unchanged. Init: γ = 1, β = 0, running mean 0, running variance 1.
 * With `activation: "relu"`, relu(y) (fused into the kernels in training).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nn, randn } from "@nvrm/core";
 * const bn = nn.batchNorm(3);
 * const { params, state } = bn.init(0, "bn");
 * const r = bn.apply(params, state, randn([4, 3, 2, 2]), { training: true, step: 0, seed: 0, path: "bn" });
 * assert.deepEqual(r.state.runningMean.shape, [3]); // moved 10 % toward the batch mean
 * // BatchNorm + ReLU in one layer (the values of nn.batchNorm(3) then nn.relu())
 * const bnRelu = nn.batchNorm(3, { activation: "relu" });
 * const h = bnRelu.apply(params, state, randn([4, 3, 2, 2]), { training: true, step: 0, seed: 0, path: "bn" });
 * assert.ok(h.y.dataSync().every((v) => v >= 0));
 * ```
 */
export function batchNorm(
  channels: number,
  options: BatchNormOptions = {},
): Layer<BatchNormParams, BatchNormState> {
  const who = "nn.batchNorm";
  positiveInt(who, "channels", channels);
  const eps = options.eps ?? 1e-5, momentum = options.momentum ?? 0.1;
  if (!(Number.isFinite(eps) && eps > 0)) {
    throw new RangeError(`${who}: eps must be a finite number > 0, got ${eps}`);
  }
  if (!(Number.isFinite(momentum) && momentum >= 0 && momentum <= 1)) {
    throw new RangeError(`${who}: momentum must be a number in [0, 1], got ${momentum}`);
  }
  const activation = options.activation ?? "none";
  if (activation !== "none" && activation !== "relu") {
    throw new RangeError(`${who}: activation must be "none" or "relu", got ${JSON.stringify(activation)}`);
  }
  const kind = `batchNorm ${channels}${activation === "relu" ? ", relu" : ""}`;
  // The forward with activation `act` (the layer's own, or "relu" when fused by `sequential`).
  const applyWith = (act: "none" | "relu"): BatchNormApply => (params, state, x, ctx) => {
    const { path } = ctx;
    checkInput(path, kind, x, [2, 4], `[N, ${channels}] or [N, ${channels}, H, W]`);
    if (x.shape[1] !== channels) {
      throw layerError(
        path,
        kind,
        `expects ${channels} channels, got x ${fmtShape(x.shape)} with ${x.shape[1]}`,
      );
    }
    const w = leaf(params, "w", path, kind, "params"), b = leaf(params, "b", path, kind, "params");
    checkLeafShape(w, [channels], path, kind, "w");
    checkLeafShape(b, [channels], path, kind, "b");
    const hasStats = state !== null && typeof state === "object" &&
      state.runningMean !== undefined && state.runningVar !== undefined;
    if (!hasStats) {
      throw layerError(
        path,
        kind,
        `${ctx.training ? "training" : "evaluation"} needs the running statistics (state ` +
          `{ runningMean, runningVar } at "${path}"), got ${
            state === undefined ? "no state" : `${JSON.stringify(Object.keys(state ?? {}))}`
          }; pass the state from the model's init or from training`,
      );
    }
    const rm = leaf(state, "runningMean", path, kind, "state");
    const rv = leaf(state, "runningVar", path, kind, "state");
    checkLeafShape(rm, [channels], path, kind, "runningMean");
    checkLeafShape(rv, [channels], path, kind, "runningVar");
    if (!ctx.training) {
      return {
        y: atLayer(path, kind, () => batchNormInference(x, w, b, rm, rv, { eps, activation: act })),
        state,
      };
    }
    const m = x.size / channels;
    if (m <= 1) {
      throw layerError(
        path,
        kind,
        `training needs more than 1 value per channel (x ${fmtShape(x.shape)} has ${m}); use a larger batch`,
      );
    }
    const r = atLayer(path, kind, () => batchNormTrain(x, w, b, { eps, activation: act }));
    // The running statistics are not differentiated: update them off the tape.
    // (1 − momentum)·r + momentum·s in one pass each: the values of add(mul(r, 1 − momentum), …)
    const ema = (run: Tensor, s: Tensor, w: number) =>
      backendFor(`${kind} at "${path}": running statistics`, { run, s }).axpby(1 - momentum, run, w, s);
    const next = withTape(null, () => ({
      runningMean: ema(rm, r.mean, momentum),
      runningVar: ema(rv, r.var, (momentum * m) / (m - 1)),
    }));
    return { y: r.y, state: next };
  };
  const layer: Layer<BatchNormParams, BatchNormState> = {
    kind,
    hasParams: true,
    hasState: true,
    init(seed, _path, opts: CreateOptions = {}) {
      checkSeed(who, seed);
      const io = { dtype: opts.dtype, device: opts.device };
      return {
        params: { w: ones([channels], io), b: zeros([channels], io) },
        state: { runningMean: zeros([channels], io), runningVar: ones([channels], io) },
      };
    },
    apply: applyWith(activation),
  };
  if (activation === "none") fusedReluApply.set(layer as Layer, applyWith("relu") as Layer["apply"]);
  return layer;
}

/**
 * Inverted dropout: in training each element is kept with probability 1 − rate and scaled by
 * 1/(1 − rate), else zeroed; the identity in evaluation and for rate 0. The mask comes from the
 * counter-based generator keyed by the context's `(seed, step, path)`, so a run is reproducible and
 * a resumed run draws the same masks.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nn, ones } from "@nvrm/core";
 * const drop = nn.dropout(0.5);
 * const { y } = drop.apply({}, {}, ones([1, 1000]), { training: true, step: 3, seed: 1, path: "drop" });
 * assert.ok(y.dataSync().every((v) => v === 0 || v === 2));
 * ```
 */
export function dropout(rate: number): Layer<Record<string, never>, Record<string, never>> {
  if (!(Number.isFinite(rate) && rate >= 0 && rate < 1)) {
    throw new RangeError(`nn.dropout: rate must be a number in [0, 1), got ${rate}`);
  }
  const kind = `dropout ${rate}`;
  return {
    kind,
    hasParams: false,
    hasState: false,
    init: () => ({ params: EMPTY, state: EMPTY }),
    apply(_params, state, x, ctx) {
      checkInput(ctx.path, kind, x, [1, 2, 3, 4, 5, 6], "a tensor");
      if (!ctx.training || rate === 0) return { y: x, state };
      const y = atLayer(
        ctx.path,
        kind,
        () => dropoutOp(x, rate, { seed: ctx.seed, step: ctx.step, path: ctx.path }),
      );
      return { y, state };
    },
  };
}

function stateless(
  kind: string,
  fn: (x: Tensor, path: string) => Tensor,
): Layer<Record<string, never>, Record<string, never>> {
  return {
    kind,
    hasParams: false,
    hasState: false,
    init: () => ({ params: EMPTY, state: EMPTY }),
    apply: (_params, state, x, ctx) => ({ y: fn(x, ctx.path), state }),
  };
}

/**
 * max(x, 0) elementwise. Directly after a {@linkcode batchNorm} in a `sequential`, it runs inside the
 * batch norm's kernels (see {@linkcode BatchNormOptions.activation}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nn, tensor } from "@nvrm/core";
 * const { y } = nn.relu().apply({}, {}, tensor([-1, 2]), { training: false, step: 0, seed: 0, path: "" });
 * assert.deepEqual([...y.dataSync()], [0, 2]);
 * ```
 */
export function relu(): Layer<Record<string, never>, Record<string, never>> {
  const layer = stateless("relu", (x, path) => atLayer(path, "relu", () => reluOp(x)));
  reluLayers.add(layer);
  return layer;
}

/** `[N, …] → [N, ∏…]`, like `torch.flatten(x, 1)`. */
export function flatten(): Layer<Record<string, never>, Record<string, never>> {
  return stateless("flatten", (x, path) => {
    checkInput(path, "flatten", x, [2, 3, 4, 5, 6], "[N, …] (rank ≥ 2)");
    return flattenOp(x, 1);
  });
}

/** `[N, C, H, W] → [N, C]`: the mean over each channel's H×W map (`nn.AdaptiveAvgPool2d(1)` + flatten). */
export function globalAvgPool(): Layer<Record<string, never>, Record<string, never>> {
  return stateless("globalAvgPool", (x, path) => {
    checkInput(path, "globalAvgPool", x, [4], "[N, C, H, W]");
    return mean(x, [2, 3]);
  });
}

/** Options of {@linkcode maxPool} and {@linkcode avgPool}. */
export interface PoolLayerOptions {
  /** Stride (default: the window size). */
  stride?: Size2;
  /** Zero padding on each side (default 0). */
  padding?: Size2;
}

function checkPool(who: string, kernel: Size2, options: PoolLayerOptions): void {
  const k = pairOf(kernel);
  k.forEach((v) => positiveInt(who, "kernel", v));
  pairOf(options.stride ?? kernel).forEach((v) => positiveInt(who, "stride", v));
  pairOf(options.padding ?? 0).forEach((p, i) => {
    if (!Number.isInteger(p) || p < 0 || 2 * p > k[i]) {
      throw new RangeError(`${who}: padding must be an integer in [0, kernel/2], got ${p}`);
    }
  });
}

/** A pooling layer over `kernel` windows of `[N, C, H, W]`, validated when it is built. */
function poolLayer(
  name: "maxPool" | "avgPool",
  op: typeof maxPool2d | typeof avgPool2d,
  kernel: Size2,
  options: PoolLayerOptions,
): Layer<Record<string, never>, Record<string, never>> {
  checkPool(`nn.${name}`, kernel, options);
  const kind = `${name} ${pairOf(kernel).join("×")}`;
  return stateless(kind, (x, path) => {
    checkInput(path, kind, x, [4], "[N, C, H, W]");
    return atLayer(path, kind, () => op(x, { kernel, ...options }));
  });
}

/** Max pooling over `kernel` windows of `[N, C, H, W]` (`nn.MaxPool2d`). */
export function maxPool(
  kernel: Size2,
  options: PoolLayerOptions = {},
): Layer<Record<string, never>, Record<string, never>> {
  return poolLayer("maxPool", maxPool2d, kernel, options);
}

/** Average pooling over `kernel` windows of `[N, C, H, W]` (`nn.AvgPool2d`, padding counted in the divisor). */
export function avgPool(
  kernel: Size2,
  options: PoolLayerOptions = {},
): Layer<Record<string, never>, Record<string, never>> {
  return poolLayer("avgPool", avgPool2d, kernel, options);
}

export type { ApplyOptions, StatefulModel } from "./stateful.ts";
