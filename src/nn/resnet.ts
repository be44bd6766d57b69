/**
 * The ResNet family of the original NVRM code (`model/resnet.py`, from kuangliu/pytorch-cifar): a
 * CIFAR-style ResNet with a 3×3 stem and no max-pool, BasicBlocks with a projection shortcut
 * (1×1 conv + BatchNorm) where the stride or the width changes, 4×4 average pooling and a linear
 * classifier; and the small CIFAR ResNet-20 of He et al. (2016) built from the same blocks.
 *
 * Params and state paths equal PyTorch's module names (`layer1.0.conv1.w` ↔ `layer1.0.conv1.weight`,
 * `layer2.0.shortcut.1.runningMean` ↔ `layer2.0.shortcut.1.running_mean`).
 *
 * @module
 */
import type { CreateOptions } from "../creation.ts";
import type { Layer } from "./layer.ts";
import { avgPool, batchNorm, conv2d, flatten, globalAvgPool, linear, relu } from "./layers.ts";
import { checkInputShape, imageInput } from "./model_input.ts";
import { type LayerTree, residual, sequential } from "./sequential.ts";
import { type StatefulModel, statefulModel } from "./stateful.ts";

/**
 * ResNet's BasicBlock: y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), with 3×3 convs
 * without bias (`conv1` of stride `stride`), and a shortcut `conv1×1(stride) + BatchNorm` (children
 * `shortcut.0`, `shortcut.1`) when `stride ≠ 1` or `inPlanes ≠ planes`, the identity otherwise.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nn, randn } from "@nvrm/core";
 * const block = nn.basicBlock(4, 8, 2);
 * const { params, state } = block.init(0, "layer2.0");
 * assert.deepEqual(Object.keys(params), ["conv1", "bn1", "conv2", "bn2", "shortcut"]);
 * const { y } = block.apply(params, state, randn([2, 4, 8, 8]), { training: true, step: 0, seed: 0, path: "layer2.0" });
 * assert.deepEqual(y.shape, [2, 8, 4, 4]);
 * ```
 */
export function basicBlock(inPlanes: number, planes: number, stride = 1): Layer<LayerTree, LayerTree> {
  const body = sequential({
    conv1: conv2d(inPlanes, planes, 3, { stride, padding: 1, bias: false }),
    bn1: batchNorm(planes),
    relu: relu(),
    conv2: conv2d(planes, planes, 3, { stride: 1, padding: 1, bias: false }),
    bn2: batchNorm(planes),
  });
  const shortcut = stride !== 1 || inPlanes !== planes
    ? sequential([conv2d(inPlanes, planes, 1, { stride, bias: false }), batchNorm(planes)])
    : undefined;
  return residual(body, shortcut, { activation: "relu" });
}

/** Options of the ResNet builders. */
export interface ResNetOptions extends CreateOptions {
  /** Seed of the initialization (default 0). */
  seed?: number;
  /** Number of classes (default 10). */
  numClasses?: number;
  /** Input channels (default 3; 1 for MNIST). */
  inChannels?: number;
  /** Input `[C, H, W]` (default `[inChannels, 32, 32]`; 28×28 MNIST works too). */
  inputShape?: readonly [number, number, number];
  /**
   * Channels of the stages (default `[64, 128, 256, 512]` for ResNet-18/34, `[16, 32, 64]` for
   * ResNet-20); smaller widths give the same architecture for quick tests, e.g. `[8, 16, 32, 64]`.
   */
  widths?: readonly number[];
}

/** Params of a ResNet: `conv1`, `bn1`, `layer1` … (blocks by index), `linear` (see the module doc for the paths). */
export type ResNetParams = LayerTree;
/** State of a ResNet: the running statistics of every BatchNorm, at the same paths as its params. */
export type ResNetState = LayerTree;

function build(
  name: string,
  blocks: readonly number[],
  defaultWidths: readonly number[],
  pool: "avg4" | "global",
  options: ResNetOptions,
): StatefulModel<ResNetParams, ResNetState> {
  const classes = options.numClasses ?? 10;
  if (!Number.isInteger(classes) || classes < 1) {
    throw new RangeError(`${name}: numClasses must be a positive integer, got ${classes}`);
  }
  const inCh = options.inChannels ?? options.inputShape?.[0] ?? 3;
  if (!Number.isInteger(inCh) || inCh < 1) {
    throw new RangeError(`${name}: inChannels must be a positive integer, got ${inCh}`);
  }
  const chw = checkInputShape(name, options.inputShape ?? [inCh, 32, 32]);
  if (chw[0] !== inCh) {
    throw new RangeError(`${name}: inChannels ${inCh} disagrees with inputShape ${JSON.stringify(chw)}`);
  }
  const widths = options.widths ?? defaultWidths;
  if (
    !Array.isArray(widths) || widths.length !== blocks.length ||
    widths.some((w) => !Number.isInteger(w) || w < 1)
  ) {
    throw new RangeError(
      `${name}: widths must be ${blocks.length} positive integers (one per stage), got ${
        JSON.stringify(widths)
      }`,
    );
  }
  // Spatial size after the stages: each stage after the first halves it (3×3 conv, stride 2, padding 1).
  const after = (s: number) => blocks.slice(1).reduce((v) => Math.ceil(v / 2), s);
  if (pool === "avg4") {
    for (const s of [chw[1], chw[2]]) {
      const last = after(s);
      if (last < 4 || Math.floor(last / 4) !== 1) {
        throw new RangeError(
          `${name}: input ${chw[1]}×${chw[2]} leaves a ${after(chw[1])}×${
            after(chw[2])
          } map before the 4×4 ` +
            `average pool, which must give 1×1 (inputs from 25×25 to 56×56, e.g. CIFAR's 32×32 or MNIST's 28×28)`,
        );
      }
    }
  }
  const layers: Record<string, Layer> = {
    conv1: conv2d(inCh, widths[0], 3, { stride: 1, padding: 1, bias: false }),
    bn1: batchNorm(widths[0]),
    relu: relu(),
  };
  let inPlanes = widths[0];
  blocks.forEach((n, i) => {
    const stage: Layer[] = [];
    for (let j = 0; j < n; j++) {
      stage.push(basicBlock(inPlanes, widths[i], j === 0 && i > 0 ? 2 : 1));
      inPlanes = widths[i];
    }
    layers[`layer${i + 1}`] = sequential(stage);
  });
  layers.pool = pool === "avg4" ? avgPool(4) : globalAvgPool();
  layers.flatten = flatten();
  layers.linear = linear(inPlanes, classes);
  const first = `"conv1" (conv2d ${inCh}→${widths[0]}, 3×3)`;
  return statefulModel(sequential(layers), {
    seed: options.seed,
    dtype: options.dtype,
    device: options.device,
    name,
    input: (x) => imageInput(name, first, chw, x),
  });
}

/**
 * ResNet-18 exactly as the original code's `ResNet18` (`model/resnet.py`): stem conv3×3(64) + BN +
 * ReLU, four stages of 2 BasicBlocks (64, 128, 256, 512 channels; stride 2 from the second stage),
 * 4×4 average pool, linear 512 → classes. 11,173,962 parameters with 10 classes (as PyTorch).
 * Input `[N, 3, 32, 32]` (or flat `[N, 3072]`); PyTorch's default initialization.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { randn, resnet18 } from "@nvrm/core";
 * const net = resnet18({ widths: [4, 8, 16, 32], seed: 0 }); // reduced width for a quick check
 * const { y, state } = net.apply(net.params, net.state, randn([2, 3, 32, 32]), { training: true });
 * assert.deepEqual(y.shape, [2, 10]);
 * assert.ok("runningMean" in (state.bn1 as Record<string, unknown>));
 * ```
 */
export function resnet18(options: ResNetOptions = {}): StatefulModel<ResNetParams, ResNetState> {
  return build("resnet18", [2, 2, 2, 2], [64, 128, 256, 512], "avg4", options);
}

/** ResNet-34 as the original code's `ResNet34`: {@linkcode resnet18} with stages of 3, 4, 6, 3 BasicBlocks. */
export function resnet34(options: ResNetOptions = {}): StatefulModel<ResNetParams, ResNetState> {
  return build("resnet34", [3, 4, 6, 3], [64, 128, 256, 512], "avg4", options);
}

/**
 * The small CIFAR ResNet-20 for CPU-size runs (He, Zhang, Ren and Sun 2016, §4.2): stem conv3×3(16) +
 * BN + ReLU, three stages of 3 BasicBlocks (16, 32, 64 channels; stride 2 from the second stage)
 * with the projection shortcut of `model/resnet.py` (1×1 conv + BN) where the shape changes, global
 * average pooling, linear 64 → classes (272,474 parameters with 10 classes). Any input size works;
 * `inputShape` (default `[inChannels, 32, 32]`) is what it checks.
 */
export function resnet20(options: ResNetOptions = {}): StatefulModel<ResNetParams, ResNetState> {
  return build("resnet20", [3, 3, 3], [16, 32, 64], "global", options);
}
