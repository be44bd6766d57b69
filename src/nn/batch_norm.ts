/**
 * The batch-norm layer (`nn.batchNorm`), and how a ReLU after it is fused into its kernels: with
 * `activation: "relu"`, or by `sequential` when a `batchNorm` is directly followed by a `relu` layer
 * (the registry below: each batch-norm layer's forward with the ReLU folded in, and the set of relu
 * layers), with the same params, state, errors and values as the two layers in turn.
 *
 * @module
 */
import { type CreateOptions, ones, zeros } from "../creation.ts";
import { backendFor } from "../ops/dispatch.ts";
import { batchNormInference, batchNormTrain } from "../ops/norm.ts";
import { withTape } from "../tape.ts";
import { fmtShape, type Tensor } from "../tensor.ts";
import {
  atLayer,
  checkInput,
  checkLeafShape,
  checkSeed,
  type Layer,
  layerError,
  leaf,
  positiveInt,
} from "./layer.ts";
import { checkActivation } from "../ops/activation.ts";

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

/**
 * Per batchNorm layer without an activation: its own forward (to tell that it was not replaced) and
 * its forward with a ReLU after it (see {@linkcode withFusedRelu}).
 */
const fusedReluApply = new WeakMap<Layer, { own: Layer["apply"]; fused: Layer["apply"] }>();
/** The layers made by `nn.relu`, with their own forward ({@linkcode markReluLayer}). */
const reluLayers = new WeakMap<Layer, Layer["apply"]>();

/** Internal, for `nn.relu`: records `layer` as a ReLU layer that a batch norm before it may fuse. */
export function markReluLayer(layer: Layer): void {
  reluLayers.set(layer, layer.apply);
}

/**
 * Internal, for `sequential`: when `layer` is a {@linkcode batchNorm} without an activation and
 * `next` a relu layer ({@linkcode markReluLayer}), both with the forward they were made with (a
 * replaced `apply`, e.g. a wrapper that logs, is run as given, not fused), the batch norm's forward
 * with the ReLU fused in (same params, state, errors and values as the two layers in turn);
 * otherwise undefined.
 */
export function withFusedRelu(layer: Layer, next: Layer): Layer["apply"] | undefined {
  const bn = fusedReluApply.get(layer);
  if (bn === undefined || bn.own !== layer.apply || reluLayers.get(next) !== next.apply) return undefined;
  return bn.fused;
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
  const activation = checkActivation(who, options.activation);
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
  if (activation === "none") {
    fusedReluApply.set(layer as Layer, {
      own: layer.apply as Layer["apply"],
      fused: applyWith("relu") as Layer["apply"],
    });
  }
  return layer;
}
