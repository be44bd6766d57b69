/**
 * Model builders: each returns a params tree and a pure forward function `(params, x) → logits`
 * (built from the layers of `layers.ts`, with the same parameters and logits as before them),
 * so the same model runs under `valueAndGrad`, with perturbed weights, or at noise-free weights.
 * Each model says which input layout it computes in and accepts the other one where the numbers
 * per example match (see {@linkcode mlp} and {@linkcode lenet}).
 *
 * @module
 */
import { add, tanh } from "../ops/elementwise.ts";
import { matmul } from "../ops/matmul.ts";
import { maxPool2d } from "../ops/conv.ts";
import { flatten } from "../ops/shape.ts";
import { flatBatch, imageBatch } from "./layout.ts";
import type { Tensor } from "../tensor.ts";
import type { ConvParams, InitOptions, LinearParams } from "./init.ts";
import { type ApplyContext, EMPTY, type Layer } from "./layer.ts";
import * as nn from "./layers.ts";

/** Evaluation-mode context of the stateless layers these models are built from. */
function ctxAt(path: string): ApplyContext {
  return { training: false, step: 0, seed: 0, path };
}

/** A stateless layer's output for `params` at `path`. */
function run(
  layer: Layer<{ w: Tensor; b?: Tensor }>,
  p: { w: Tensor; b?: Tensor },
  x: Tensor,
  path: string,
): Tensor {
  return layer.apply(p, EMPTY, x, ctxAt(path)).y;
}

/** A model: initial parameters and a pure forward pass. */
export interface Model<P> {
  /** Freshly initialized parameters. */
  params: P;
  /** Logits for a batch; pure in `params` and `x`. */
  forward: (params: P, x: Tensor) => Tensor;
}

/** Parameters of an MLP: one linear layer per entry. */
export type MlpParams = {
  /** The layers, input first. */
  layers: LinearParams[];
};

/** Options of {@linkcode mlp}. */
export interface MlpOptions extends InitOptions {
  /** Hidden activation (default "relu"). */
  activation?: "relu" | "tanh";
}

/** y = x·w + b. */
export function linear(p: LinearParams, x: Tensor): Tensor {
  return add(matmul(x, p.w), p.b);
}

/**
 * A multilayer perceptron `sizes[0] → … → sizes[k]` with ReLU (or tanh) between layers and
 * PyTorch-default init.
 *
 * Input layouts: flat `[N, sizes[0]]` (e.g. `[N, 784]` from `loadMnist()`), or any `[N, …]` with
 * `sizes[0]` numbers per example, such as the image layout `[N, 1, 28, 28]` from
 * `loadMnist({ layout: "image" })`, which is flattened (differentiably). Any other shape is a
 * RangeError naming the layouts, the shape given and the fix.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mlp, randn } from "@nvrm/core";
 * const net = mlp([784, 256, 256, 10], { seed: 0 });
 * const logits = net.forward(net.params, randn([4, 784]));
 * assert.deepEqual(logits.shape, [4, 10]);
 * ```
 */
export function mlp(sizes: readonly number[], options: MlpOptions = {}): Model<MlpParams> {
  if (!Array.isArray(sizes) || sizes.length < 2) {
    throw new RangeError(
      `mlp: sizes needs at least 2 entries (input and output), got ${JSON.stringify(sizes)}`,
    );
  }
  sizes.forEach((s, i) => {
    if (!Number.isInteger(s) || s < 1) {
      throw new RangeError(`mlp: sizes[${i}] must be a positive integer, got ${s}`);
    }
  });
  const act = options.activation ?? "relu";
  if (act !== "relu" && act !== "tanh") {
    throw new RangeError(`mlp: activation must be "relu" or "tanh", got ${act}`);
  }
  const io = { dtype: options.dtype, device: options.device };
  // A hidden layer's ReLU is fused into its linear layer (one op; one dispatch on WebGPU).
  const last = sizes.length - 2;
  const fcs = sizes.slice(1).map((out, i) =>
    nn.linear(sizes[i], out, { activation: i < last && act === "relu" ? "relu" : "none" })
  );
  const layers = fcs.map((l, i) => l.init(options.seed ?? 0, `layers.${i}`, io).params as LinearParams);
  const who = `mlp([${sizes.join(", ")}])`;
  const forward = (p: MlpParams, x: Tensor): Tensor => {
    let h = flatBatch(who, x, sizes[0]);
    p.layers.forEach((l, i) => {
      h = run(fcs[i], l, h, `layers.${i}`);
      if (i < p.layers.length - 1 && act === "tanh") h = tanh(h);
    });
    return h;
  };
  return { params: { layers }, forward };
}

/** Parameters of the LeNet-like CNN. */
export type LeNetParams = {
  /** conv C→6, 5×5, padding 2. */
  conv1: ConvParams;
  /** conv 6→16, 5×5. */
  conv2: ConvParams;
  /** Fully connected layers 16·h·w → 120 → 84 → classes. */
  fc: LinearParams[];
};

/** Options of {@linkcode lenet}. */
export interface LeNetOptions extends InitOptions {
  /** Input `[C, H, W]` (default MNIST `[1, 28, 28]`). */
  inputShape?: readonly [number, number, number];
  /** Number of classes (default 10). */
  numClasses?: number;
}

/**
 * A LeNet-5-like CNN: conv5×5(6, pad 2) → ReLU → maxpool 2 → conv5×5(16) → ReLU → maxpool 2 →
 * 120 → 84 → classes.
 *
 * Input layouts: images `[N, C, H, W]` with `[C, H, W]` = `inputShape` (e.g. `[N, 1, 28, 28]` from
 * `loadMnist({ layout: "image" })`), or flat `[N, C·H·W]` (e.g. `[N, 784]` from `loadMnist()`),
 * reshaped (differentiably) to images in channel, row, column order as the loaders' flat layout.
 * Any other shape is a RangeError naming the layouts, the shape given and the fix.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lenet, randn } from "@nvrm/core";
 * const net = lenet({ seed: 0 }); // MNIST: inputShape [1, 28, 28]
 * assert.deepEqual(net.forward(net.params, randn([2, 1, 28, 28])).shape, [2, 10]);
 * assert.deepEqual(net.forward(net.params, randn([2, 784])).shape, [2, 10]); // the flat layout
 * ```
 */
export function lenet(options: LeNetOptions = {}): Model<LeNetParams> {
  const [c, h, w] = options.inputShape ?? [1, 28, 28];
  const classes = options.numClasses ?? 10;
  const h2 = Math.floor((Math.floor(h / 2) - 4) / 2), w2 = Math.floor((Math.floor(w / 2) - 4) / 2);
  if (h2 < 1 || w2 < 1) throw new RangeError(`lenet: input [${c}, ${h}, ${w}] is too small (needs ≥ 12×12)`);
  const seed = options.seed ?? 0, io = { dtype: options.dtype, device: options.device };
  // Each convolution's ReLU is fused into it (one op; on WebGPU bias and ReLU in its kernel).
  const conv1 = nn.conv2d(c, 6, 5, { padding: 2, activation: "relu" });
  const conv2 = nn.conv2d(6, 16, 5, { activation: "relu" });
  const fcs = [
    nn.linear(16 * h2 * w2, 120, { activation: "relu" }),
    nn.linear(120, 84, { activation: "relu" }),
    nn.linear(84, classes),
  ];
  const params: LeNetParams = {
    conv1: conv1.init(seed, "conv1", io).params as ConvParams,
    conv2: conv2.init(seed, "conv2", io).params as ConvParams,
    fc: fcs.map((l, i) => l.init(seed, `fc.${i}`, io).params as LinearParams),
  };
  const chw: [number, number, number] = [c, h, w];
  const forward = (p: LeNetParams, x: Tensor): Tensor => {
    let y = maxPool2d(run(conv1, p.conv1, imageBatch("lenet", x, chw), "conv1"), { kernel: 2 });
    y = maxPool2d(run(conv2, p.conv2, y, "conv2"), { kernel: 2 });
    let z = flatten(y, 1);
    p.fc.forEach((l, i) => (z = run(fcs[i], l, z, `fc.${i}`))); // the ReLUs are fused into fc.0 and fc.1
    return z;
  };
  return { params, forward };
}
