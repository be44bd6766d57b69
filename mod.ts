/**
 * @nvrm/core — artificial neural variability for deep learning in Deno: a tape-based reverse-mode
 * autodiff on typed arrays, WebGPU acceleration, and the variable optimizers (VSGD, VAdam, and
 * weight noise for any optimizer) of Xie et al., Neural Computation 2021.
 *
 * @module
 */
export * from "./src/tensor.ts";
export { getDefaultDevice } from "./src/backend.ts";
export type { TensorLike } from "./src/ops/dispatch.ts";
export * from "./src/creation.ts";
export * from "./src/tree.ts";
export { hashString, philox4x32 } from "./src/random/philox.ts";
export {
  fillNoise,
  getNoiseThreads,
  NOISE_LAWS,
  type NoiseLaw,
  setNoiseThreads,
  type StreamKey,
} from "./src/random/noise.ts";
export { type GemmImpl, getGemmImpl, setGemmImpl } from "./kernels/wasm/gemm.ts";
export * from "./src/ops/mod.ts";
export * from "./src/autodiff.ts";
export type { BinaryOp, Conv2dGeometry, Pool2dGeometry, ReduceOp, UnaryOp } from "./src/backend.ts";
export * from "./src/nn/mod.ts";
export * from "./src/optim/mod.ts";
export {
  type DeviceChoice,
  dispose,
  type EncoderStats,
  type GpuLimits,
  hasWebGPU,
  initWebGPU,
  type InitWebGPUOptions,
  NoWebGPUError,
  type PoolStats,
  setDefaultDevice,
  syncWebGPU,
  tidy,
  toDevice,
  type WebGPUInfo,
  type WebGPUStats,
  webgpuStats,
} from "./src/webgpu/mod.ts";
export * from "./src/train/mod.ts";
