/**
 * VGG as in the original NVRM code (`model/vgg.py`, from kuangliu/pytorch-cifar): `features`, a
 * sequence of (conv3×3 with bias, padding 1) + BatchNorm + ReLU blocks and 2×2 max-pools ("M")
 * ending with a 1×1 average pool, then `classifier`, one linear layer. Paths equal PyTorch's
 * (`features.0.w` ↔ `features.0.weight`, `features.1.runningMean` ↔ `features.1.running_mean`,
 * `classifier.w` ↔ `classifier.weight` transposed).
 *
 * @module
 */
import type { CreateOptions } from "../creation.ts";
import type { Layer } from "./layer.ts";
import { avgPool, batchNorm, conv2d, flatten, linear, maxPool, relu } from "./layers.ts";
import { checkInputShape, imageInput } from "./model_input.ts";
import { type LayerTree, sequential } from "./sequential.ts";
import { type StatefulModel, statefulModel } from "./stateful.ts";

/** One entry of a VGG configuration: a conv block's output channels, or "M" for a 2×2 max-pool. */
export type VggEntry = number | "M";

/** The configurations of `model/vgg.py`. */
export const VGG_CONFIGS: Readonly<Record<"vgg11" | "vgg13" | "vgg16" | "vgg19", readonly VggEntry[]>> = {
  vgg11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
  vgg13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
  vgg16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
  vgg19: [
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    512,
    "M",
  ],
};

/** Params of a VGG: `features` (the conv and BatchNorm layers by index, as `nn.Sequential`) and `classifier`. */
export type VggParams = LayerTree;
/** State of a VGG: the running statistics of its BatchNorm layers, at `features.<index>`. */
export type VggState = LayerTree;

/** Options of {@linkcode vgg}. */
export interface VggOptions extends CreateOptions {
  /** Seed of the initialization (default 0). */
  seed?: number;
  /** Number of classes (default 10). */
  numClasses?: number;
  /** Input channels (default 3; 1 for MNIST). */
  inChannels?: number;
  /** Input `[C, H, W]` (default `[inChannels, 32, 32]`): every max-pool needs a map of at least 2×2. */
  inputShape?: readonly [number, number, number];
}

/**
 * VGG-11/13/16/19 (`"vgg11"` … or `model/vgg.py`'s `"VGG16"`), or a custom configuration, with
 * BatchNorm after every conv: for 32×32 inputs the features end at 512×1×1 and the classifier is
 * linear 512 → classes (the classifier takes the flattened features for other sizes).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { randn, vgg } from "@nvrm/core";
 * const net = vgg([8, "M", 16, "M"], { inputShape: [3, 8, 8], numClasses: 4 }); // a tiny VGG
 * assert.deepEqual(net.forward(net.params, randn([2, 3, 8, 8])).shape, [2, 4]);
 * ```
 */
export function vgg(
  config: string | readonly VggEntry[],
  options: VggOptions = {},
): StatefulModel<VggParams, VggState> {
  const key = typeof config === "string" ? config.toLowerCase() : "";
  const name = typeof config === "string" ? key : "vgg";
  const cfg = typeof config === "string" ? VGG_CONFIGS[key as keyof typeof VGG_CONFIGS] : config;
  if (!Array.isArray(cfg) || cfg.length === 0) {
    throw new RangeError(
      `vgg: config must be one of ${
        Object.keys(VGG_CONFIGS).join(", ")
      } or an array of channels and "M", got ${JSON.stringify(config)}`,
    );
  }
  const classes = options.numClasses ?? 10;
  if (!Number.isInteger(classes) || classes < 1) {
    throw new RangeError(`${name}: numClasses must be a positive integer, got ${classes}`);
  }
  const inCh = options.inChannels ?? options.inputShape?.[0] ?? 3;
  const chw = checkInputShape(name, options.inputShape ?? [inCh, 32, 32]);
  if (chw[0] !== inCh) {
    throw new RangeError(`${name}: inChannels ${inCh} disagrees with inputShape ${JSON.stringify(chw)}`);
  }
  const features: Layer[] = [];
  let c = inCh, h = chw[1], w = chw[2];
  cfg.forEach((e, i) => {
    if (e === "M") {
      if (h < 2 || w < 2) {
        throw new RangeError(
          `${name}: the max-pool at features.${features.length} (config[${i}]) gets a ${h}×${w} map; ` +
            `the input ${chw[1]}×${chw[2]} is too small for this configuration`,
        );
      }
      features.push(maxPool(2, { stride: 2 }));
      h = Math.floor(h / 2);
      w = Math.floor(w / 2);
    } else {
      if (!Number.isInteger(e) || e < 1) {
        throw new RangeError(
          `${name}: config[${i}] must be a positive integer or "M", got ${JSON.stringify(e)}`,
        );
      }
      features.push(conv2d(c, e, 3, { padding: 1 }), batchNorm(e), relu());
      c = e;
    }
  });
  features.push(avgPool(1, { stride: 1 }));
  const net = sequential({
    features: sequential(features),
    flatten: flatten(),
    classifier: linear(c * h * w, classes),
  });
  return statefulModel(net, {
    seed: options.seed,
    dtype: options.dtype,
    device: options.device,
    name,
    input: (x) =>
      imageInput(name, `"features.0" (conv2d ${inCh}→${cfg.find((e) => e !== "M")}, 3×3)`, chw, x),
  });
}
