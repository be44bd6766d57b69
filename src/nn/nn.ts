/**
 * The layer builders, exported together as the namespace `nn` (`nn.conv2d(3, 64, 3)`,
 * `nn.sequential([...])`), apart from the ops of the same names. Each builder returns a `Layer`:
 * `init(seed, path)` gives its params and state (separate trees, PyTorch-default initialization)
 * and `apply(params, state, x, ctx)` its output and next state. `statefulModel` turns a network
 * into a model.
 *
 * @module
 */
export {
  avgPool,
  batchNorm,
  type BatchNormOptions,
  type BatchNormParams,
  type BatchNormState,
  conv2d,
  type Conv2dLayerOptions,
  type Conv2dLayerParams,
  dropout,
  flatten,
  globalAvgPool,
  linear,
  type LinearLayerOptions,
  type LinearLayerParams,
  maxPool,
  type PoolLayerOptions,
  relu,
} from "./layers.ts";
export { type LayerTree, residual, type ResidualOptions, sequential } from "./sequential.ts";
export { basicBlock } from "./resnet.ts";
