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
 * @module
 */
import { getDefaultDevice } from "../backend.ts";
import { tensor } from "../creation.ts";
import { add, mul } from "../ops/elementwise.ts";
import { crossEntropy } from "../ops/softmax.ts";
import { valueAndGrad } from "../autodiff.ts";
import { dispose, tidy } from "../memory.ts";
import { type Device, Tensor, type TypedArray } from "../tensor.ts";
import { mapTree, type TensorTree } from "../tree.ts";
import { applyUpdates } from "../optim/mod.ts";
import { batchIndices, type Dataset, exampleSize, gather } from "../data/dataset.ts";
import { argmaxRows, noiseMetrics, sumCrossEntropy } from "./metrics.ts";
import { progressLogger } from "./progress.ts";

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
  /** The most recent minibatch loss that has been read back (NaN until the first read). */
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
export interface FitOptions<P extends TensorTree, S> {
  /** Initial parameters (a tree of tensors on `device`). */
  params: P;
  /** The optimizer, e.g. `vsgd({ lr: 0.1, variability: 0.05, numIters })`. */
  optimizer: LoopOptimizer<S>;
  /** Model: logits `[batch, numClasses]` from params and an input batch `[batch, ...inputShape]`. */
  forward: (params: P, x: Tensor) => Tensor;
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
  /** Report progress every this many steps (the loss is read back, without waiting, then). Default 10. */
  progressEvery?: number;
  /**
   * Progress and epoch output. Default: `progressLogger()`, a progress bar on stderr when it is a
   * terminal, one line per epoch otherwise (the console in a browser). `null`: silent.
   */
  logger?: TrainLogger | null;
  /**
   * Called after each epoch with its metrics, the current params and state (may be async). On the
   * GPU these are released once training moves on: copy what you keep (`toDevice(params, "cpu")`).
   */
  onEpoch?: (m: EpochMetrics, params: P, state: S) => void | Promise<void>;
  /** Optimizer state to resume from (default `optimizer.init(params)`). */
  state?: S;
  /** 0-based epoch to start at when resuming (the batch order depends on it). Default 0. */
  startEpoch?: number;
  /** Adds updates to params; default: `applyUpdates` of `@nvrm/core/optim`. */
  applyUpdates?: (params: P, updates: any) => P;
}

/** What {@linkcode fit} returns. */
export interface FitResult<P, S> {
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
export async function fit<P extends TensorTree, S>(options: FitOptions<P, S>): Promise<FitResult<P, S>> {
  const o = options;
  const { optimizer, forward, train, test, noise } = o;
  if (typeof forward !== "function") {
    throw new TypeError(`fit: forward must be a function, got ${typeof forward}`);
  }
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
  const startEpoch = nonNegInt(o.startEpoch ?? 0, "startEpoch");
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
  const device: Device = o.device ?? firstDevice(o.params) ?? getDefaultDevice();
  const apply: (p: P, u: any) => P = o.applyUpdates ?? applyUpdates;
  const logger: TrainLogger = o.logger === undefined ? progressLogger() : o.logger ?? {};
  const vg = valueAndGrad((p: P, x: Tensor, y: Int32Array) => crossEntropy(forward(p, x), y));
  const inShape = train.inputShape;
  // The caller owns the initial params and state: they are never released.
  const callers = [o.params, o.state];

  let params = o.params;
  let state = o.state ?? optimizer.init(params);
  const history: EpochMetrics[] = [];
  const t0 = performance.now();
  const stepsPerEpoch = o.dropLast ? Math.floor(n / batchSize) : Math.ceil(n / batchSize);
  let step = startEpoch * stepsPerEpoch;
  let lastLoss = NaN;
  const totalSteps = (startEpoch + epochs) * stepsPerEpoch;

  let lastYield = performance.now();
  for (let e = startEpoch; e < startEpoch + epochs; e++) {
    const tEpoch = performance.now();
    const batches = batchIndices(n, batchSize, { seed, epoch: e, dropLast: o.dropLast });
    let lossSum: Tensor | null = null; // the sum of the batch losses, weighted by batch size
    let seen = 0;
    for (let b = 0; b < batches.length; b++) {
      const { x, y } = gather(train, batches[b]);
      const report = (b + 1) % progressEvery === 0 || b === batches.length - 1;
      // One step of the plain loop, in a memory scope: everything it creates but the next params,
      // state and loss sum (the batch, the perturbed weights, the grads, the updates) is released.
      const next = tidy(() => {
        const xb = tensor(x, [y.length, ...inShape], { device });
        const { value, grads } = vg(optimizer.perturb(params, state) as P, xb, y);
        const r = optimizer.update(grads, state, params);
        if (report) readLoss(value, (v) => (lastLoss = v));
        // Weighted by the batch size so a short last batch counts for what it is.
        const weighted = y.length === batchSize ? value : mul(value, y.length / batchSize);
        return {
          params: apply(params, r.updates),
          state: r.state,
          lossSum: lossSum === null ? weighted : add(lossSum, weighted),
        };
      });
      // The previous step's params, state and loss sum are replaced (GPU memory stays flat
      // without waiting for garbage collection).
      dispose([params, state, lossSum], [next, callers]);
      ({ params, state, lossSum } = next);
      seen += y.length;
      step++;
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
    const batchLoss = lossSum === null ? NaN : (await lossSum.data())[0] * batchSize / Math.max(1, seen);
    dispose(lossSum);
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
    };
    const clean = tidy(() => optimizer.clean(params, state) as P);
    try {
      if (o.evalTrain ?? true) {
        const ev = await evaluate(forward, clean, train, { batchSize: evalBatch, device });
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
        const ev = await evaluate(forward, clean, test, { batchSize: evalBatch, device });
        metrics.testLoss = ev.loss;
        metrics.testAccuracy = ev.accuracy;
      }
    } finally {
      dispose(clean, [params, state, callers]);
    }
    const tEnd = performance.now();
    metrics.evalSeconds = (tEnd - tTrainEnd) / 1000;
    metrics.wallSeconds = (tEnd - t0) / 1000;
    history.push(metrics);
    logger.epoch?.(metrics);
    await o.onEpoch?.(metrics, params, state);
  }
  const weights = tidy(() => optimizer.clean(params, state) as P);
  return { params: weights, rawParams: params, state, history };
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
  /** Device of the input batches; default: the device of the first parameter. */
  device?: Device;
}

/** What {@linkcode evaluate} returns. */
export interface Evaluation {
  /** Predicted class per example. */
  predictions: Int32Array;
  /** Mean cross-entropy against the dataset's labels. */
  loss: number;
  /** Accuracy against the dataset's labels. */
  accuracy: number;
}

/**
 * Runs `forward` over `data` in batches without autodiff and returns predictions, mean
 * cross-entropy and accuracy against `data.y`. Each batch runs in a memory scope (`tidy`): only its
 * logits outlive it, and they are read back once, at the end, then released.
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
  forward: (params: P, x: Tensor) => Tensor,
  params: P,
  data: Dataset,
  options: EvaluateOptions = {},
): Promise<Evaluation> {
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
  let lossSum = 0, correct = 0;
  for (let k = 0, s = 0; k < host.length; k++) {
    const rows = host[k].length / C;
    const pred = argmaxRows(host[k], C);
    const labels = data.y.subarray(s, s + rows);
    lossSum += sumCrossEntropy(host[k], labels, C);
    for (let i = 0; i < rows; i++) {
      predictions[s + i] = pred[i];
      if (pred[i] === labels[i]) correct++;
    }
    s += rows;
  }
  return { predictions, loss: n ? lossSum / n : NaN, accuracy: n ? correct / n : NaN };
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
