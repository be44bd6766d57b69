/**
 * @nvrm/core — artificial neural variability for deep learning in Deno: a tape-based reverse-mode
 * autodiff on typed arrays, WebGPU acceleration, and the variable optimizers (VSGD, VAdam, and
 * weight noise for any optimizer) of Xie et al., Neural Computation 2021.
 *
 * The package has three entry points, one home per concept:
 *
 * - `@nvrm/core` (this module): tensors and their creation, ops, autodiff, memory scopes, devices
 *   (CPU, WebGPU), layers and models, and the training loop with its metrics;
 * - `@nvrm/core/optim`: optimizers and transformations (VSGD, VAdam, SGD, Adam, `chain`,
 *   `weightNoise`, schedules), the weight-noise stream and optimizer-state serialization;
 * - `@nvrm/core/data`: data sets (MNIST, CIFAR-10), batching and synthetic label noise.
 *
 * @example Train a small MLP with VSGD and read the test accuracy
 * ```ts
 * import { crossEntropy, evaluate, mlp, type MlpParams, type Tensor, tensor, valueAndGrad } from "@nvrm/core";
 * import { applyUpdates, vsgd } from "@nvrm/core/optim";
 * import { makeDataset } from "@nvrm/core/data";
 *
 * // A toy two-class problem: the label says whether x0 > x1.
 * const n = 256, x = new Float32Array(n * 2), y = new Int32Array(n);
 * for (let i = 0; i < n; i++) {
 *   x[2 * i] = Math.sin(i);
 *   x[2 * i + 1] = Math.cos(3 * i);
 *   y[i] = x[2 * i] > x[2 * i + 1] ? 1 : 0;
 * }
 * const data = makeDataset(x, y, [2], 2);
 * const net = mlp([2, 16, 2], { seed: 0 });
 * const opt = vsgd({ lr: 0.5, variability: 0.01, numIters: 100, seed: 0 });
 * const loss = (p: MlpParams, xb: Tensor) => crossEntropy(net.forward(p, xb), data.y);
 * let params = net.params, state = opt.init(params);
 * for (let step = 0; step < 200; step++) {
 *   const { grads } = valueAndGrad(loss)(opt.perturb(params, state), tensor(data.x, [n, 2]));
 *   const r = opt.update(grads, state, params);
 *   params = applyUpdates(params, r.updates);
 *   state = r.state;
 * }
 * const { accuracy } = await evaluate(net.forward, opt.clean(params, state), data);
 * if (!(accuracy > 0.9)) throw new Error(`training failed: accuracy ${accuracy}`);
 * ```
 *
 * @module
 */

// Tensors and their creation.
export { type Device, type DType, Tensor, type TypedArray } from "./src/tensor.ts";
export {
  arange,
  type CreateOptions,
  full,
  type NestedArray,
  ones,
  onesLike,
  rand,
  randn,
  type RandomOptions,
  tensor,
  zeros,
  zerosLike,
} from "./src/creation.ts";
export type { TensorLike } from "./src/ops/dispatch.ts";
export { mapTree, type TensorTree, type TreeLeaf, treeLeaves, zipTrees } from "./src/tree.ts";

// Ops (each differentiable).
export {
  abs,
  add,
  div,
  eq,
  exp,
  ge,
  gt,
  log,
  maximum,
  minimum,
  mul,
  neg,
  pow,
  reciprocal,
  relu,
  sigmoid,
  sign,
  sqrt,
  square,
  sub,
  tanh,
} from "./src/ops/elementwise.ts";
export { broadcastTo } from "./src/ops/broadcast.ts";
export { max, mean, sum } from "./src/ops/reduce.ts";
export { matmul, matmulTransposed } from "./src/ops/matmul.ts";
export { concat, flatten, reshape, slice, transpose } from "./src/ops/shape.ts";
export { crossEntropy, type Labels, logSoftmax, softmax } from "./src/ops/softmax.ts";
export {
  avgPool2d,
  conv2d,
  type Conv2dOptions,
  maxPool2d,
  type Pool2dOptions,
  type Size2,
} from "./src/ops/conv.ts";
export {
  batchNormInference,
  type BatchNormOptions,
  batchNormTrain,
  type BatchNormTrainResult,
} from "./src/ops/norm.ts";
export { dropout, type DropoutKey } from "./src/ops/dropout.ts";

// Autodiff and memory.
export { grad, type ValueAndGrad, valueAndGrad } from "./src/autodiff.ts";
export { dispose, tidy } from "./src/memory.ts";

// Devices.
export { getDefaultDevice } from "./src/backend.ts";
export {
  type DeviceChoice,
  type EncoderStats,
  type GpuLimits,
  hasWebGPU,
  initWebGPU,
  type InitWebGPUOptions,
  NoWebGPUError,
  type PoolStats,
  setDefaultDevice,
  syncWebGPU,
  toDevice,
  type WebGPUInfo,
  type WebGPUStats,
  webgpuStats,
} from "./src/webgpu/mod.ts";

// CPU threads.
export { getThreadLimit, setThreadLimit } from "./kernels/wasm/workers.ts";

// Layers and models.
export {
  type ConvParams,
  initConv2d,
  initLinear,
  type InitOptions,
  type LinearParams,
  uniformFanIn,
} from "./src/nn/init.ts";
export {
  lenet,
  type LeNetOptions,
  type LeNetParams,
  linear,
  mlp,
  type MlpOptions,
  type MlpParams,
  type Model,
} from "./src/nn/models.ts";
export * as nn from "./src/nn/nn.ts";
export type { ApplyContext, Layer, LayerOutput } from "./src/nn/layer.ts";
export {
  type ApplyOptions,
  type StatefulModel,
  statefulModel,
  type StatefulModelOptions,
} from "./src/nn/stateful.ts";
export {
  resnet18,
  resnet20,
  resnet34,
  type ResNetOptions,
  type ResNetParams,
  type ResNetState,
} from "./src/nn/resnet.ts";
export {
  vgg,
  VGG_CONFIGS,
  type VggEntry,
  type VggOptions,
  type VggParams,
  type VggState,
} from "./src/nn/vgg.ts";

// Training.
export {
  type EpochMetrics,
  evaluate,
  type EvaluateOptions,
  type Evaluation,
  fit,
  type FitCheckpointOptions,
  type FitOptions,
  type FitResult,
  type LoopOptimizer,
  type NoiseInfo,
  type StepProgress,
  type TrainLogger,
} from "./src/train/loop.ts";
export {
  type Checkpoint,
  type CheckpointTemplate,
  loadCheckpoint,
  saveCheckpoint,
} from "./src/train/checkpoint.ts";
export {
  accuracy,
  type ForgettingMetrics,
  forgettingMetrics,
  type NoiseMetrics,
  noiseMetrics,
} from "./src/train/metrics.ts";
export { progressLogger, type ProgressLoggerOptions } from "./src/train/progress.ts";
export { NonFiniteError, type NonFiniteErrorInit, type OnNonFinite } from "./src/train/nonfinite.ts";

// Files: safetensors (weights, checkpoints) and the PyTorch name/layout map.
export {
  type DecodedSafetensors,
  decodeSafetensors,
  type DecodeSafetensorsOptions,
  encodeSafetensors,
  SAFETENSORS_MAX_HEADER,
} from "./src/io/safetensors.ts";
export { loadSafetensors, saveSafetensors } from "./src/io/files.ts";
export {
  type FromTorchOptions,
  fromTorchStateDict,
  type TorchLayout,
  type TorchName,
  toTorchStateDict,
} from "./src/nn/torch.ts";
