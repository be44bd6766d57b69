/**
 * A training loop for classifiers with any optimizer of `@nvrm/core/optim`: epochs over seeded
 * minibatches, each step the plain loop (perturb → valueAndGrad → update → applyUpdates), evaluation
 * at the optimizer's `clean` weights, and per-epoch label-noise metrics (train loss and accuracy
 * against the labels trained on and against the true labels, test accuracy, memorization and the
 * fraction of flipped examples predicted correctly).
 *
 * Device-agnostic and browser-safe: batches become tensors on `device`; each step runs in a memory
 * scope (`tidy`), so GPU memory stays flat without waiting for garbage collection; the loop never
 * waits on the device inside an epoch (the loss is accumulated as a tensor, progress reads are not
 * awaited) and reads metrics back once per evaluation. Output goes through a {@linkcode TrainLogger}
 * (by default a progress bar on stderr when it is a terminal, one line per epoch otherwise).
 *
 * It stays one file because it is one loop: `fit`'s options, its step and its epoch bookkeeping
 * (memory scopes, the non-finite guard's hooks, checkpoints) read and replace the same local
 * params/state; the guard itself lives in `nonfinite.ts`, the metrics in `metrics.ts`.
 *
 * @module
 */
import { getDefaultDevice } from "../backend.ts";
import { tensor } from "../creation.ts";
import { add, mul } from "../ops/elementwise.ts";
import { crossEntropy } from "../ops/softmax.ts";
import { valueAndGradWithAux } from "../autodiff.ts";
import { dispose, tidy } from "../memory.ts";
import { type Device, Tensor, type TypedArray } from "../tensor.ts";
import { mapTree, type TensorTree } from "../tree.ts";
import { applyUpdates } from "../optim/mod.ts";
import { batchIndices, type Dataset, exampleSize, gather } from "../data/dataset.ts";
import type { BatchTransform } from "../data/augment.ts";
import type { StatefulModel } from "../nn/stateful.ts";
import { argmaxRows, noiseMetrics, sumCrossEntropy } from "./metrics.ts";
import { progressLogger } from "./progress.ts";
import { NonFiniteError, type OnNonFinite, StepGuard } from "./nonfinite.ts";
import { loadForResume, type LoopRecord, writeCheckpointDir } from "./checkpoint.ts";

/** The optimizer contract the loop relies on: pure `init`/`update`, `perturb`, `clean`. */
export interface LoopOptimizer<S = unknown> {
  /** Initial state for `params`. */
  init(params: any): S;
  /** One step: the updates to add to the params, and the next state. */
  update(grads: any, state: S, params: any): { updates: any; state: S };
  /** The weights to take the gradient at (the params plus this step's noise in exact mode). */
  perturb(params: any, state: S): any;
  /** The noise-free weights, for evaluation (and `FitResult.params`). */
  clean(params: any, state: S): any;
}

/** Which training examples carry flipped labels, for the memorization metrics. */
export interface NoiseInfo {
  /** The true (pre-noise) labels of the training set. */
  trueLabels: Int32Array;
  /** 0/1 per training example: 1 where the training label differs from the true one. */
  flipped: ArrayLike<number>;
}

/** Metrics of one epoch, evaluated at the clean weights after the epoch's last step. */
export interface EpochMetrics {
  /** 1-based epoch number. */
  epoch: number;
  /** Optimizer steps taken so far. */
  step: number;
  /** Mean minibatch loss during the epoch (at the perturbed weights the gradient was taken at). */
  batchLoss: number;
  /** Mean cross-entropy on the whole training set against the labels trained on (noisy). NaN if not evaluated. */
  trainLoss: number;
  /** Accuracy on the training set against the labels trained on (noisy). NaN if not evaluated. */
  trainAccuracy: number;
  /** Accuracy on the training set against the true (pre-noise) labels (NaN without `noise`). */
  trainTrueLabelAccuracy: number;
  /** Fraction of flipped training examples predicted as their noisy label (NaN without `noise`). */
  memorization: number;
  /** Fraction of flipped training examples predicted as their true label (NaN without `noise`). */
  flippedCorrect: number;
  /** Mean cross-entropy on the test set (NaN without `test`). */
  testLoss: number;
  /** Accuracy on the test set (NaN without `test`). */
  testAccuracy: number;
  /** Seconds spent in the epoch's training steps. */
  trainSeconds: number;
  /** Seconds spent evaluating after the epoch. */
  evalSeconds: number;
  /** Seconds since the loop started. */
  wallSeconds: number;
  /** Training examples per second during the epoch's steps. */
  examplesPerSecond: number;
  /** Steps dropped because their loss or updates were not finite (`onNonFinite: "skip-step"`; else 0). */
  skippedSteps: number;
}

/** Progress inside an epoch, passed to {@linkcode TrainLogger.progress}. */
export interface StepProgress {
  /** 1-based epoch. */
  epoch: number;
  /** Total epochs. */
  epochs: number;
  /** 1-based step inside the epoch. */
  stepInEpoch: number;
  /** Steps per epoch. */
  stepsPerEpoch: number;
  /** Steps taken since the start. */
  step: number;
  /** Examples per second over the current epoch so far. */
  examplesPerSecond: number;
  /** Estimated seconds until the end of training (steps only, evaluation not counted). */
  etaSeconds: number;
  /**
   * The most recent minibatch loss that has been read back (NaN until the first read); on a device,
   * unless `progressLoss`, the previous epoch's mean minibatch loss.
   */
  lastLoss: number;
}

/** Receives the loop's progress; every method is optional. */
export interface TrainLogger {
  /** Called at most every `progressEvery` steps and at each epoch's last step. */
  progress?(p: StepProgress): void;
  /** Called with each epoch's metrics. */
  epoch?(m: EpochMetrics): void;
}

/** How often `fit` yields to the event loop during an epoch. */
const YIELD_EVERY_MS = 100;

/** Options of {@linkcode fit}. */
export interface FitOptions<P extends TensorTree, S, M extends TensorTree = TensorTree> {
  /**
   * Initial parameters (a tree of tensors on `device`). Required with `forward`; with `model`,
   * default `model.params` (give the `rawParams` of a previous run to continue it).
   */
  params?: P;
  /** The optimizer, e.g. `vsgd({ lr: 0.1, variability: 0.05, numIters })`. */
  optimizer: LoopOptimizer<S>;
  /**
   * A stateless model: logits `[batch, numClasses]` from params and an input batch
   * `[batch, ...inputShape]`. Give this (with `params`) or `model`, not both.
   */
  forward?: (params: P, x: Tensor) => Tensor;
  /**
   * A model with state (BatchNorm's running statistics, dropout), e.g. `resnet20()`: give this or
   * `forward`, not both. Each step calls `model.apply(params, modelState, x, { training: true,
   * step, seed })` with the global 0-based step and `fit`'s seed, and carries the state it returns
   * to the next step; evaluation calls it with `training: false` at the clean weights and the
   * current state. The optimizer never sees the model state: it is not optimized, not decayed and
   * not perturbed by the weight noise.
   */
  model?: StatefulModel<P, M>;
  /** The model state to start from; default `model.state` (give a previous run's `modelState` to continue it). */
  modelState?: M;
  /**
   * Transforms each training batch before it becomes a tensor (data augmentation, e.g.
   * `cifarAugment()` of `@nvrm/core/data`): gets the gathered inputs, the batch's dataset indices
   * and `{ epoch, seed, inputShape }` (0-based epoch, `fit`'s seed), returns the inputs to train
   * on (a `Float32Array` of the same length). Evaluation does not use it.
   */
  batchTransform?: BatchTransform;
  /** Training data; its labels (possibly noisy) are what the model is trained on. */
  train: Dataset;
  /** Test data with true labels; evaluated after every epoch. */
  test?: Dataset;
  /** True labels and flip mask of `train`, for the memorization metrics. */
  noise?: NoiseInfo;
  /** Number of epochs (a non-negative integer). */
  epochs: number;
  /** Minibatch size. */
  batchSize: number;
  /** Seed of the batch order (uint32). Default 0. */
  seed?: number;
  /** Drop the last incomplete batch of each epoch. Default false. */
  dropLast?: boolean;
  /** Evaluation batch size. Default 1000. */
  evalBatchSize?: number;
  /** Evaluate the whole training set after each epoch (train loss/accuracy, memorization). Default true. */
  evalTrain?: boolean;
  /** Device of the batches; default: the device of the first parameter. */
  device?: Device;
  /** Report progress every this many steps. Default 10. */
  progressEvery?: number;
  /**
   * Read the minibatch loss back at each progress report (without waiting). Default: on the CPU,
   * where it costs nothing; not on a device, where any readback inside an epoch flushes the queued
   * work, so the loop reads back only once per epoch (its loss sum and non-finite guard) and
   * `StepProgress.lastLoss` is the previous epoch's mean minibatch loss.
   */
  progressLoss?: boolean;
  /**
   * Progress and epoch output. Default: `progressLogger()`, a progress bar on stderr when it is a
   * terminal, one line per epoch otherwise (the console in a browser). `null`: silent.
   */
  logger?: TrainLogger | null;
  /**
   * Called after each epoch with its metrics, the current params and state (may be async). On the
   * GPU these are released once training moves on: copy what you keep (`toDevice(params, "cpu")`).
   */
  onEpoch?: (m: EpochMetrics, params: P, state: S, modelState: M) => void | Promise<void>;
  /** Optimizer state to resume from (default `optimizer.init(params)`). */
  state?: S;
  /** 0-based epoch to start at when resuming (the batch order depends on it). Default 0. */
  startEpoch?: number;
  /** Adds updates to params; default: `applyUpdates` of `@nvrm/core/optim`. */
  applyUpdates?: (params: P, updates: any) => P;
  /**
   * What to do when a step's loss or updates hold a NaN or an infinity (see `OnNonFinite`).
   * Default `"stop"`: throw a `NonFiniteError` naming the epoch, the step and the first non-finite
   * update's path, with the last finite params, state and history. The check costs one scan of the
   * updates per step on the CPU, and one small dispatch per parameter array on WebGPU, read back
   * with the epoch's loss (the loop never waits inside an epoch). On WebGPU, `"stop"` keeps the
   * epoch's starting params and state alive until the epoch ends (they are what the error
   * returns), and `"skip-step"` keeps each array's previous value with a masked select on the
   * device (a skipped step still advances the step counters of the state, so the noise and the
   * schedules move on).
   */
  onNonFinite?: OnNonFinite;
  /**
   * Write checkpoints (see `saveCheckpoint`): after every `every`-th epoch (counted from the run's
   * start, `startEpoch` included), after the last epoch, and when `signal` stops training, after
   * `onEpoch` has run. Each is `dir/epoch-NNNN.safetensors`, written atomically, then `dir/latest`
   * is pointed at it; with `keep`, only the `keep` newest files stay.
   */
  checkpoint?: FitCheckpointOptions;
  /**
   * Continue a run from a checkpoint: a checkpoint file, or a checkpoint folder (its `latest`).
   * Params, optimizer state, epoch, step and history come from it; `params` serves as the
   * template (paths, shapes, dtypes) and the tensors move to its device. Refused, with an error
   * naming both values, when `startEpoch` or `state` disagree with the checkpoint, when it was
   * made with another batch order (seed, batch size, training-set size, `dropLast`) or by an
   * optimizer of another configuration (seed, noise law, mode, hyperparameters). `epochs` counts
   * the epochs to train now; the result's `history` starts with the checkpoint's epochs.
   */
  resume?: string;
  /** When aborted, training stops after the current epoch (its metrics reported and, with `checkpoint`, saved). */
  signal?: AbortSignal;
}

/** Options of {@linkcode FitOptions.checkpoint}. */
export interface FitCheckpointOptions {
  /** The checkpoint folder (created if missing). */
  dir: string;
  /**
   * Write one every this many epochs: a positive integer, or `Infinity` for only the last epoch
   * (and a stop), which are always written. Default 1.
   */
  every?: number;
  /** How many of the newest checkpoint files to keep (a positive integer). Default: all. */
  keep?: number;
  /** The run's configuration to store (any JSON value; non-finite numbers allowed). */
  config?: unknown;
}

/** What {@linkcode fit} returns. */
export interface FitResult<P, S, M extends TensorTree = TensorTree> {
  /**
   * The noise-free final weights (`optimizer.clean(rawParams, state)`): what to evaluate or save.
   */
  params: P;
  /**
   * The final params in the optimizer's own representation (in official mode they still hold the
   * optimizer's noise): with `state`, what continues training (`fit({ params: rawParams, state,
   * startEpoch })`). The same tensors as `params` where the optimizer adds no noise.
   */
  rawParams: P;
  /** Final optimizer state (pairs with `rawParams`). */
  state: S;
  /**
   * The final model state (running statistics) of a `model`; `{}` for a `forward`. With `params`
   * it is what to evaluate; with `rawParams` and `state`, what continues training.
   */
  modelState: M;
  /** Metrics of each epoch. */
  history: EpochMetrics[];
}

/**
 * Trains a classifier with cross-entropy for `epochs` epochs over seeded minibatches and evaluates
 * it at the optimizer's clean weights after every epoch. Each step is the plain loop
 *
 * ```ts ignore
 * const { value, grads } = valueAndGrad(loss)(optimizer.perturb(params, state), x, y);
 * const r = optimizer.update(grads, state, params);
 * params = applyUpdates(params, r.updates); state = r.state;
 * ```
 *
 * in a memory scope that releases everything the step created but the new params, state and
 * running loss; the replaced params and state are released too, except the caller's (`params` and
 * `state` of the options are never released). Reports progress through `logger` (default: to
 * stderr; `logger: null` for none).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fit, matmul, zeros } from "@nvrm/core";
 * import { sgd } from "@nvrm/core/optim";
 * import { makeDataset } from "@nvrm/core/data";
 * const x = new Float32Array([1, 0, 0, 1, 1, 0.1, 0.1, 1]);
 * const data = makeDataset(x, new Int32Array([0, 1, 0, 1]), [2], 2);
 * const { params, history } = await fit({
 *   params: { w: zeros([2, 2]) },
 *   optimizer: sgd({ lr: 0.5 }),
 *   forward: (p, xb) => matmul(xb, p.w),
 *   train: data,
 *   epochs: 5,
 *   batchSize: 2,
 *   logger: null, // silent; the default prints one line per epoch (a progress bar on a terminal)
 * });
 * assert.equal(history.at(-1)!.trainAccuracy, 1);
 * assert.deepEqual(params.w.shape, [2, 2]); // the noise-free weights
 * ```
 */
export async function fit<P extends TensorTree, S, M extends TensorTree = TensorTree>(
  options: FitOptions<P, S, M>,
): Promise<FitResult<P, S, M>> {
  const o = options;
  const { optimizer, model, train, test, noise } = o;
  if (model !== undefined && o.forward !== undefined) {
    throw new TypeError(`fit: give forward (with params) or model, not both`);
  }
  if (model !== undefined) {
    if (model === null || typeof model !== "object" || typeof model.apply !== "function") {
      throw new TypeError(
        `fit: model must be a StatefulModel ({ params, state, apply }), got ${
          model === null
            ? "null"
            : typeof model.apply === "function"
            ? typeof model
            : "an object without apply"
        }`,
      );
    }
  } else {
    if (typeof o.forward !== "function") {
      throw new TypeError(`fit: forward must be a function (or give model), got ${typeof o.forward}`);
    }
    if (o.params === undefined) throw new TypeError(`fit: params is required with forward`);
    if (o.modelState !== undefined) {
      throw new TypeError(`fit: modelState needs model (a forward has no state)`);
    }
  }
  if (o.batchTransform !== undefined && typeof o.batchTransform !== "function") {
    throw new TypeError(`fit: batchTransform must be a function, got ${typeof o.batchTransform}`);
  }
  const initParams: P = o.params ?? model!.params;
  const initModelState = (o.modelState ?? model?.state ?? {}) as M;
  for (const m of ["init", "update", "perturb", "clean"] as const) {
    if (typeof (optimizer as any)?.[m] !== "function") {
      throw new TypeError(
        `fit: optimizer must have init, update, perturb and clean methods; ${m} is missing`,
      );
    }
  }
  checkDataset(train, "train");
  if (test !== undefined) checkDataset(test, "test");
  if (test !== undefined && test.numClasses !== train.numClasses) {
    throw new RangeError(
      `fit: test.numClasses is ${test.numClasses}, expected ${train.numClasses} (train's)`,
    );
  }
  const epochs = nonNegInt(o.epochs, "epochs");
  const batchSize = posInt(o.batchSize, "batchSize");
  const evalBatch = posInt(o.evalBatchSize ?? 1000, "evalBatchSize");
  const progressEvery = posInt(o.progressEvery ?? 10, "progressEvery");
  let startEpoch = nonNegInt(o.startEpoch ?? 0, "startEpoch");
  const ckEvery = o.checkpoint === undefined || o.checkpoint.every === Infinity
    ? Infinity
    : posInt(o.checkpoint.every ?? 1, "checkpoint.every");
  const ckKeep = o.checkpoint?.keep === undefined ? Infinity : posInt(o.checkpoint.keep, "checkpoint.keep");
  if (o.checkpoint !== undefined && (typeof o.checkpoint.dir !== "string" || o.checkpoint.dir === "")) {
    throw new TypeError(`fit: checkpoint.dir must be a folder path, got ${JSON.stringify(o.checkpoint.dir)}`);
  }
  const seed = o.seed ?? 0;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new RangeError(`fit: seed must be an integer in [0, 2^32), got ${seed}`);
  }
  const n = train.y.length;
  if (noise !== undefined) {
    if (!(noise.trueLabels?.length === n) || !(noise.flipped?.length === n)) {
      throw new RangeError(
        `fit: noise.trueLabels and noise.flipped must have ${n} entries (one per training example), got ` +
          `${noise.trueLabels?.length} and ${noise.flipped?.length}`,
      );
    }
  }
  if (o.logger !== undefined && o.logger !== null && typeof o.logger !== "object") {
    throw new TypeError(`fit: logger must be a TrainLogger object or null, got ${typeof o.logger}`);
  }
  const device: Device = o.device ?? firstDevice(initParams) ?? getDefaultDevice();
  const progressLoss = o.progressLoss ?? device === "cpu";
  const apply: (p: P, u: any) => P = o.applyUpdates ?? applyUpdates;
  const logger: TrainLogger = o.logger === undefined ? progressLogger() : o.logger ?? {};
  const guard = new StepGuard(o.onNonFinite ?? "stop", device);
  // One loss for both kinds of model; its aux is the next model state (kept by the autodiff scope).
  const vg = valueAndGradWithAux((p: P, ms: M, x: Tensor, y: Int32Array, step: number) => {
    if (!model) return { value: crossEntropy(o.forward!(p, x), y), aux: ms };
    const r = model.apply(p, ms, x, { training: true, step, seed });
    return { value: crossEntropy(r.y, y), aux: r.state };
  });
  // Evaluation: a model in eval mode with the given state.
  const evalForward = (ms: M) =>
    model ? (p: P, x: Tensor) => model.apply(p, ms, x, { training: false, step: 0, seed }).y : o.forward!;
  const inShape = train.inputShape;
  const transform = o.batchTransform;
  // The caller owns the initial params and states: they are never released.
  const callers = [o.params, o.state, initParams, initModelState];

  const loop: LoopRecord = {
    seed,
    batchSize,
    dropLast: o.dropLast === true,
    trainSize: n,
    stepsPerEpoch: o.dropLast ? Math.floor(n / batchSize) : Math.ceil(n / batchSize),
  };
  const resumed = o.resume === undefined
    ? undefined
    : await loadForResume(o.resume, { ...o, params: initParams, modelState: initModelState }, loop);
  if (resumed) startEpoch = resumed.epoch;
  let params = resumed?.params ?? initParams;
  let state = resumed ? resumed.optimizerState : o.state ?? optimizer.init(params);
  let modelState = (resumed?.modelState ?? initModelState) as M;
  const history: EpochMetrics[] = [...(resumed?.history ?? [])];
  const t0 = performance.now();
  const stepsPerEpoch = o.dropLast ? Math.floor(n / batchSize) : Math.ceil(n / batchSize);
  let step = startEpoch * stepsPerEpoch;
  let lastLoss = NaN;
  const totalSteps = (startEpoch + epochs) * stepsPerEpoch;

  let lastYield = performance.now();
  // Throws the divergence error with the last finite params/state (kept; the current ones released).
  const diverged = (
    e: number,
    b: number,
    path: string,
    last: { params: P; state: S; modelState: M; step: number },
  ) => {
    if (last.params !== params || last.state !== state) {
      dispose([params, state, modelState], [last, callers]);
    }
    const weights = tidy(() => optimizer.clean(last.params, last.state) as P);
    return new NonFiniteError<P, S>({
      epoch: e + 1,
      step: e * stepsPerEpoch + b + 1,
      stepInEpoch: b + 1,
      stepsPerEpoch,
      path,
      lastFiniteStep: last.step,
      params: weights,
      rawParams: last.params,
      state: last.state,
      modelState: model === undefined ? undefined : last.modelState,
      history,
    });
  };
  for (let e = startEpoch; e < startEpoch + epochs; e++) {
    const tEpoch = performance.now();
    const batches = batchIndices(n, batchSize, { seed, epoch: e, dropLast: o.dropLast });
    let lossSum: Tensor | null = null; // the sum of the batch losses, weighted by batch size
    let seen = 0, skipped = 0;
    // On a device in "stop" mode the check is read back at the epoch's end: keep its start.
    const epochStart = guard.kernels && guard.mode === "stop" ? { params, state, modelState, step } : null;
    guard.beginEpoch();
    for (let b = 0; b < batches.length; b++) {
      const { x: gathered, y } = gather(train, batches[b]);
      const x = transform ? transformBatch(transform, gathered, batches[b], e, seed, inShape) : gathered;
      const report = (b + 1) % progressEvery === 0 || b === batches.length - 1;
      // One step of the plain loop, in a memory scope: everything it creates but the next params,
      // state and loss sum (the batch, the perturbed weights, the grads, the updates) is released.
      let bad: string | null = null;
      const next = tidy(() => {
        const xb = tensor(x, [y.length, ...inShape], { device });
        const { value, grads, aux } = vg(optimizer.perturb(params, state) as P, modelState, xb, y, step);
        const r = optimizer.update(grads, state, params);
        if (report && progressLoss) readLoss(value, (v) => (lastLoss = v));
        // The non-finite guard: on the host at once, on a device marked without waiting.
        if (guard.immediate) bad = guard.checkNow(value, r.updates);
        const flag = guard.kernels ? guard.mark(value, r.updates, b) : null;
        // Weighted by the batch size so a short last batch counts for what it is.
        const weighted = y.length === batchSize ? value : mul(value, y.length / batchSize);
        const out = {
          params: apply(params, r.updates),
          state: r.state,
          modelState: aux,
          lossSum: lossSum === null ? weighted : add(lossSum, weighted),
        };
        // "skip-step" on a device: each array keeps its previous value where the step was marked.
        return flag ? guard.select(flag, { params, state, modelState, lossSum }, out) : out;
      });
      if (bad !== null && guard.mode === "stop") {
        dispose(next, [params, state, modelState, lossSum, callers]);
        dispose(lossSum);
        throw diverged(e, b, bad, { params, state, modelState, step });
      }
      step++;
      if (bad !== null) { // "skip-step" on the host: the step never happened
        dispose(next, [params, state, modelState, lossSum, callers]);
        skipped++;
      } else {
        // The previous step's params, state and loss sum are replaced (GPU memory stays flat
        // without waiting for garbage collection).
        dispose([params, state, modelState, lossSum], [next, callers, epochStart]);
        ({ params, state, modelState, lossSum } = next);
        seen += y.length;
      }
      if (report && logger.progress) {
        const secs = (performance.now() - tEpoch) / 1000;
        const rate = secs > 0 ? (b + 1) / secs : 0;
        logger.progress({
          epoch: e + 1,
          epochs: startEpoch + epochs,
          stepInEpoch: b + 1,
          stepsPerEpoch: batches.length,
          step,
          examplesPerSecond: secs > 0 ? seen / secs : 0,
          etaSeconds: rate > 0 ? (totalSteps - step) / rate : NaN,
          lastLoss,
        });
      }
      // Let timers, signal handlers and a browser page run now and then (every ~100 ms).
      if (performance.now() - lastYield > YIELD_EVERY_MS) {
        await new Promise((resolve) => setTimeout(resolve, 0));
        lastYield = performance.now();
      }
    }
    // The epoch's one wait: its loss and, on a device, its guard.
    const [sum, words] = await Promise.all([lossSum?.data(), guard.epochGuard?.data()]);
    dispose(lossSum);
    const checked = guard.endEpoch((words as Float32Array | undefined) ?? null);
    if (checked.first && guard.mode === "stop") {
      throw diverged(e, checked.first.stepInEpoch, checked.first.path, epochStart!);
    }
    if (epochStart) dispose(epochStart, [params, state, modelState, callers]);
    skipped += guard.kernels ? checked.count : 0;
    // On a device the skipped steps' examples are not known: all steps but the last are full.
    if (guard.kernels) seen -= checked.count * batchSize;
    const batchLoss = sum === undefined ? NaN : sum[0] * batchSize / Math.max(1, seen);
    if (!progressLoss) lastLoss = batchLoss;
    if (guard.mode === "stop" && !Number.isFinite(batchLoss) && seen > 0) {
      // Only when no step-level check ran (a device without guard kernels).
      throw diverged(e, batches.length - 1, "loss", { params, state, modelState, step });
    }
    const tTrainEnd = performance.now();

    const metrics: EpochMetrics = {
      epoch: e + 1,
      step,
      batchLoss,
      trainLoss: NaN,
      trainAccuracy: NaN,
      trainTrueLabelAccuracy: NaN,
      memorization: NaN,
      flippedCorrect: NaN,
      testLoss: NaN,
      testAccuracy: NaN,
      trainSeconds: (tTrainEnd - tEpoch) / 1000,
      evalSeconds: 0,
      wallSeconds: 0,
      examplesPerSecond: seen / Math.max(1e-9, (tTrainEnd - tEpoch) / 1000),
      skippedSteps: skipped,
    };
    const clean = tidy(() => optimizer.clean(params, state) as P);
    try {
      if (o.evalTrain ?? true) {
        const ev = await evaluate(evalForward(modelState), clean, train, { batchSize: evalBatch, device });
        metrics.trainLoss = ev.loss;
        metrics.trainAccuracy = ev.accuracy;
        if (noise) {
          const nm = noiseMetrics(ev.predictions, train.y, noise.trueLabels, noise.flipped);
          metrics.trainTrueLabelAccuracy = nm.trueLabelAccuracy;
          metrics.memorization = nm.memorization;
          metrics.flippedCorrect = nm.flippedCorrect;
        }
      }
      if (test) {
        const ev = await evaluate(evalForward(modelState), clean, test, { batchSize: evalBatch, device });
        metrics.testLoss = ev.loss;
        metrics.testAccuracy = ev.accuracy;
      }
    } finally {
      dispose(clean, [params, state, modelState, callers]);
    }
    const tEnd = performance.now();
    metrics.evalSeconds = (tEnd - tTrainEnd) / 1000;
    metrics.wallSeconds = (tEnd - t0) / 1000;
    history.push(metrics);
    logger.epoch?.(metrics);
    await o.onEpoch?.(metrics, params, state, modelState);
    const stop = o.signal?.aborted === true;
    if (o.checkpoint && ((e + 1) % ckEvery === 0 || e === startEpoch + epochs - 1 || stop)) {
      await writeCheckpointDir(o.checkpoint.dir, {
        params,
        optimizerState: state,
        modelState,
        epoch: e + 1,
        step,
        config: o.checkpoint.config,
        loop,
        history,
      }, ckKeep);
    }
    if (stop) break;
  }
  const weights = tidy(() => optimizer.clean(params, state) as P);
  return { params: weights, rawParams: params, state, modelState, history };
}

/** Applies `fit`'s batch transform to one gathered batch and checks what it returns. */
function transformBatch(
  transform: BatchTransform,
  x: Float32Array,
  indices: Int32Array,
  epoch: number,
  seed: number,
  inputShape: readonly number[],
): Float32Array {
  const out = transform(x, indices, { epoch, seed, inputShape });
  if (!(out instanceof Float32Array) || out.length !== x.length) {
    throw new TypeError(
      `fit: batchTransform must return a Float32Array of ${x.length} numbers (${indices.length} examples × ` +
        `[${inputShape.join(", ")}]), got ${
          out instanceof Float32Array ? `${out.length} numbers` : out === null ? "null" : typeof out
        }`,
    );
  }
  return out;
}

/** Reads a loss back without waiting (`data()` encodes the copy at once, so `t` may be released). */
function readLoss(t: Tensor, set: (v: number) => void): void {
  if (t.device === "cpu") set(t.item());
  else t.data().then((d) => set(d[0]), () => {});
}

/** Options of {@linkcode evaluate}. */
export interface EvaluateOptions {
  /** Examples per forward pass. Default 1000. */
  batchSize?: number;
  /** The state to evaluate a `StatefulModel` with (its running statistics); default `model.state`. */
  modelState?: TensorTree;
  /** Device of the input batches; default: the device of the first parameter. */
  device?: Device;
  /** Also return the logits (`Evaluation.logits`), from the same single read-back. Default false. */
  logits?: boolean;
}

/** What {@linkcode evaluate} returns. */
export interface Evaluation {
  /** Predicted class per example (−1 where the logits are not finite). */
  predictions: Int32Array;
  /** Mean cross-entropy against the dataset's labels. */
  loss: number;
  /** Accuracy against the dataset's labels (NaN when some logits are not finite). */
  accuracy: number;
  /** With `options.logits`: the logits, `[examples, classes]` row-major, in the dataset's order. */
  logits?: Float32Array;
}

/**
 * Runs `forward` over `data` in batches without autodiff and returns predictions, mean
 * cross-entropy and accuracy against `data.y`. Each batch runs in a memory scope (`tidy`): only its
 * logits outlive it, and they are read back once, at the end, then released. In place of
 * `forward`, a `StatefulModel` runs in evaluation mode (`training: false`: running statistics, no
 * dropout) with `options.modelState` (default `model.state`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { evaluate, matmul, tensor } from "@nvrm/core";
 * import { makeDataset } from "@nvrm/core/data";
 * const data = makeDataset(new Float32Array([1, 0, 0, 1, 2, 1]), new Int32Array([0, 1, 1]), [2], 2);
 * const w = tensor([[1, 0], [0, 1]]); // predicts the larger coordinate
 * const ev = await evaluate((p: typeof w, x) => matmul(x, p), w, data);
 * assert.deepEqual([...ev.predictions], [0, 1, 0]);
 * assert.equal(ev.accuracy, 2 / 3);
 * ```
 */
export async function evaluate<P extends TensorTree>(
  forward: ((params: P, x: Tensor) => Tensor) | StatefulModel<P, any>,
  params: P,
  data: Dataset,
  options: EvaluateOptions = {},
): Promise<Evaluation> {
  if (typeof forward !== "function") {
    const m = forward;
    if (m === null || typeof m !== "object" || typeof m.apply !== "function") {
      throw new TypeError(
        `evaluate: the first argument must be a forward function or a StatefulModel, got ${
          m === null ? "null" : typeof m
        }`,
      );
    }
    const ms = options.modelState ?? m.state;
    return evaluate((p: P, x: Tensor) => m.apply(p, ms, x, { training: false }).y, params, data, options);
  }
  checkDataset(data, "data");
  const bs = posInt(options.batchSize ?? 1000, "evaluate: batchSize");
  const device = options.device ?? firstDevice(params) ?? getDefaultDevice();
  const n = data.y.length, C = data.numClasses, per = exampleSize(data);
  const logits: Tensor[] = [];
  let host: TypedArray[];
  try {
    for (let s = 0; s < n; s += bs) {
      const e = Math.min(n, s + bs);
      // Only the logits outlive the scope: the batch and the hidden activations are released.
      const out = tidy(() =>
        forward(params, tensor(data.x.subarray(s * per, e * per), [e - s, ...data.inputShape], { device }))
      );
      if (!(out instanceof Tensor) || out.size !== (e - s) * C) {
        dispose(out);
        throw new RangeError(
          `evaluate: forward must return logits of shape [${e - s}, ${C}], got ${
            out instanceof Tensor ? `[${out.shape.join(", ")}]` : typeof out
          }`,
        );
      }
      logits.push(out);
    }
    host = await Promise.all(logits.map((t) => t.data()));
  } finally {
    dispose(logits);
  }
  const predictions = new Int32Array(n);
  let lossSum = 0, correct = 0, unpredicted = 0;
  for (let k = 0, s = 0; k < host.length; k++) {
    const rows = host[k].length / C;
    const pred = argmaxRows(host[k], C);
    const labels = data.y.subarray(s, s + rows);
    lossSum += sumCrossEntropy(host[k], labels, C);
    for (let i = 0; i < rows; i++) {
      predictions[s + i] = pred[i];
      if (pred[i] === labels[i]) correct++;
      else if (pred[i] < 0) unpredicted++;
    }
    s += rows;
  }
  // Non-finite logits (a prediction of −1) make the accuracy NaN, not a low score.
  const ev: Evaluation = {
    predictions,
    loss: n ? lossSum / n : NaN,
    accuracy: n && !unpredicted ? correct / n : NaN,
  };
  if (options.logits) {
    ev.logits = new Float32Array(n * C);
    host.reduce((o, h) => (ev.logits!.set(h, o), o + h.length), 0);
  }
  return ev;
}

function firstDevice(tree: TensorTree): Device | undefined {
  let d: Device | undefined;
  mapTree(tree, (t) => {
    d ??= t.device;
    return t;
  }, "fit");
  return d;
}

function checkDataset(ds: Dataset, name: string): void {
  if (
    !ds || !(ds.x instanceof Float32Array) || !(ds.y instanceof Int32Array) || !Array.isArray(ds.inputShape)
  ) {
    throw new TypeError(
      `fit: ${name} must be a Dataset ({ x: Float32Array, y: Int32Array, inputShape, numClasses })`,
    );
  }
}

function posInt(v: number, name: string): number {
  if (!Number.isInteger(v) || v < 1) {
    throw new RangeError(`fit: ${name} must be a positive integer, got ${v}`);
  }
  return v;
}

function nonNegInt(v: number, name: string): number {
  if (!Number.isInteger(v) || v < 0) {
    throw new RangeError(`fit: ${name} must be a non-negative integer, got ${v}`);
  }
  return v;
}
