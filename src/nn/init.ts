/**
 * PyTorch-default initializers: U(±1/√fan_in) for the weights and biases of linear and
 * convolution layers (what `nn.Linear.reset_parameters` and `nn.Conv2d` produce in distribution).
 *
 * @module
 */
import { type CreateOptions, rand } from "../creation.ts";
import type { Tensor } from "../tensor.ts";

/** Options of the initializers: the seed and a stream name make every layer's draw distinct. */
export interface InitOptions extends CreateOptions {
  /** Seed of the counter-based generator (default 0). */
  seed?: number;
  /** Stream name (e.g. the layer's path); different names give independent draws. */
  stream?: string;
}

/** U(−1/√fanIn, 1/√fanIn) of `shape`. */
export function uniformFanIn(shape: readonly number[], fanIn: number, options: InitOptions = {}): Tensor {
  if (!Number.isInteger(fanIn) || fanIn < 1) {
    throw new RangeError(`uniformFanIn: fanIn must be a positive integer, got ${fanIn}`);
  }
  const bound = 1 / Math.sqrt(fanIn);
  return rand(shape, { ...options, low: -bound, high: bound });
}

/** Parameters of a linear layer: `w` `[in, out]` (so `y = x·w + b`) and `b` `[out]`. */
export type LinearParams = {
  /** Weight `[in, out]`. */
  w: Tensor;
  /** Bias `[out]`. */
  b: Tensor;
};

/**
 * A linear layer's parameters with PyTorch's default init (weight and bias U(±1/√in)).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initLinear } from "@nvrm/core";
 * const fc = initLinear(784, 256, { seed: 1, stream: "fc1" });
 * assert.deepEqual([fc.w.shape, fc.b.shape], [[784, 256], [256]]);
 * ```
 */
export function initLinear(inFeatures: number, outFeatures: number, options: InitOptions = {}): LinearParams {
  const s = options.stream ?? `linear${inFeatures}x${outFeatures}`;
  return {
    w: uniformFanIn([inFeatures, outFeatures], inFeatures, { ...options, stream: `${s}.w` }),
    b: uniformFanIn([outFeatures], inFeatures, { ...options, stream: `${s}.b` }),
  };
}

/** Parameters of a conv layer: `w` `[O, C, kh, kw]` and `b` `[O]`. */
export type ConvParams = {
  /** Weight `[O, C, kh, kw]`. */
  w: Tensor;
  /** Bias `[O]`. */
  b: Tensor;
};

/** A conv layer's parameters with PyTorch's default init (U(±1/√(C·kh·kw)) for weight and bias). */
export function initConv2d(
  inChannels: number,
  outChannels: number,
  kernel: number | [number, number],
  options: InitOptions = {},
): ConvParams {
  const [kh, kw] = typeof kernel === "number" ? [kernel, kernel] : kernel;
  const fanIn = inChannels * kh * kw;
  const s = options.stream ?? `conv${inChannels}x${outChannels}`;
  return {
    w: uniformFanIn([outChannels, inChannels, kh, kw], fanIn, { ...options, stream: `${s}.w` }),
    b: uniformFanIn([outChannels], fanIn, { ...options, stream: `${s}.b` }),
  };
}
