/**
 * The small set of plain types shared by the library (`src/`) and the device kernels (`kernels/`):
 * the only module under `src/` that code in `kernels/` imports.
 *
 * @module
 */

/** Element type of a tensor. float64 exists on the CPU only (gradient checks, oracles). */
export type DType = "float32" | "float64";
/** Where a tensor's data lives. */
export type Device = "cpu" | "webgpu";
/** The typed array behind a CPU tensor of each dtype. */
export type TypedArray = Float32Array | Float64Array;

/**
 * Elementwise unary kernels. `step` is 1 where x > 0 else 0 (the ReLU derivative);
 * `zeroNonFinite` is x where x is finite, else +0 (`zeroNans` on a device).
 */
export type UnaryOp =
  | "neg"
  | "exp"
  | "log"
  | "sqrt"
  | "relu"
  | "tanh"
  | "sigmoid"
  | "abs"
  | "sign"
  | "step"
  | "square"
  | "reciprocal"
  | "zeroNonFinite";

/**
 * Elementwise binary kernels with NumPy broadcasting. Comparisons (`gt`, `ge`, `eq`) return 1 or 0
 * in the input dtype.
 */
export type BinaryOp = "add" | "sub" | "mul" | "div" | "pow" | "maximum" | "minimum" | "gt" | "ge" | "eq";

/** Reductions over a set of axes. */
export type ReduceOp = "sum" | "max";

/** The law of the weight noise: Gaussian (default), Laplace or uniform. */
export type NoiseLaw = "gaussian" | "laplace" | "uniform";

/** The noise laws, in a stable order (the index is what the Wasm and GPU kernels receive). */
export const NOISE_LAWS: readonly NoiseLaw[] = ["gaussian", "laplace", "uniform"];
