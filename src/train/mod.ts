/**
 * Training helpers: the {@linkcode fit} loop (seeded batches, gradient at the optimizer's perturbed
 * weights, evaluation at its clean weights), batched {@linkcode evaluate}, the label-noise metrics
 * (memorization, flipped → true label, true-label accuracy), and a console
 * {@linkcode progressLogger}. Browser-safe, except the checkpoint files (`saveCheckpoint`,
 * `loadCheckpoint`, `fit`'s `checkpoint` and `resume`), which use `Deno.*` when called.
 *
 * @module
 */
// An internal barrel for the examples and tests (it also exposes helpers such as argmaxRows and
// formatDuration); the public training API is what mod.ts names.
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
} from "./loop.ts";
export { type Checkpoint, type CheckpointTemplate, loadCheckpoint, saveCheckpoint } from "./checkpoint.ts";
export {
  accuracy,
  argmaxRows,
  crossEntropyOf,
  flippedCorrect,
  type ForgettingMetrics,
  forgettingMetrics,
  memorization,
  type NoiseMetrics,
  noiseMetrics,
  sumCrossEntropy,
} from "./metrics.ts";
export { formatDuration, formatEpoch, progressLogger, type ProgressLoggerOptions } from "./progress.ts";
export { NonFiniteError, type NonFiniteErrorInit, type OnNonFinite } from "./nonfinite.ts";
