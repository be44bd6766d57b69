/**
 * Fast CPU kernels: {@linkcode gemm} (WebAssembly SIMD generated at run time, workers over shared
 * memory, plain-JS fallback), the im2col/col2im convolution helpers built on it, and the switch
 * of the direct convolution kernels' worker threads.
 *
 * @module
 */
export {
  gemm,
  GEMM_FLOPS_PER_PARTICIPANT,
  GEMM_THREAD_MIN_FLOPS,
  type GemmArray,
  type GemmCall,
  type GemmCapabilities,
  gemmCapabilities,
  type GemmImpl,
  gemmThreadStats,
  getGemmImpl,
  getGemmThreads,
  setGemmImpl,
  setGemmThreads,
  setGemmWorkerKind,
  shutdownGemmWorkers,
  type WorkerKind,
} from "./gemm.ts";
export {
  col2im,
  conv2dForward,
  conv2dGradInput,
  conv2dGradWeight,
  type ConvDims,
  convOutSize,
  im2col,
  type UnfoldGeometry,
} from "./conv.ts";
export {
  CONV_FLOPS_PER_PARTICIPANT,
  CONV_THREAD_MIN_FLOPS,
  type ConvThreads,
  convThreadStats,
  getConvThreads,
  setConvThreads,
  shutdownConvWorkers,
} from "./conv_wasm.ts";
