/**
 * The leaf layers (see `layer.ts` for the protocol): `linear`, `conv2d`, `batchNorm` (in
 * `batch_norm.ts`, with its fused ReLU), `dropout`, `relu`, `flatten`, `globalAvgPool`, `maxPool`,
 * `avgPool`, each with PyTorch's default
 * initialization. Weights are drawn as PyTorch's `kaiming_uniform_(a=√5)`, which is U(±1/√fan_in),
 * and biases U(±1/√fan_in), from the counter-based generator keyed by the seed and the layer's
 * path; BatchNorm starts at γ = 1, β = 0, running mean 0 and running variance 1.
 *
 * @module
 */
import type { CreateOptions } from "../creation.ts";
import { relu as reluOp } from "../ops/elementwise.ts";
import { fusedLinear } from "../ops/linear.ts";
import { avgPool2d, fusedConv2d, maxPool2d, type Size2 } from "../ops/conv.ts";
import { mean } from "../ops/reduce.ts";
import { flatten as flattenOp } from "../ops/shape.ts";
import { dropout as dropoutOp } from "../ops/dropout.ts";
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
import { markReluLayer } from "./batch_norm.ts";
import { checkActivation } from "../ops/activation.ts";

export { batchNorm, type BatchNormOptions, type BatchNormParams, type BatchNormState } from "./batch_norm.ts";

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
  const activation = checkActivation(who, options.activation);
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
  const activation = checkActivation(who, options.activation);
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
 * max(x, 0) elementwise. Directly after a `batchNorm` in a `sequential`, it runs inside the batch
 * norm's kernels (see `BatchNormOptions.activation`).
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
  markReluLayer(layer);
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
