/**
 * Classification metrics as pure functions of host arrays (predicted classes, labels, the mask of
 * flipped examples), for the label-noise experiments, and the forgetting metrics of tasks learned
 * in sequence.
 *
 * @module
 */

/**
 * The predicted class of each row of `logits` (`n × numClasses`, row-major): the index of the
 * largest entry, the first one on ties. A row holding any NaN or ±Infinity predicts −1: a
 * non-finite model predicts no class, and the metrics below are NaN for it (never a score). For
 * instance `argmaxRows([0.1, 2, -1, 5, 0, 5], 3)` is `Int32Array [1, 0]` and
 * `argmaxRows([0, NaN, 1], 3)` is `Int32Array [-1]`.
 */
export function argmaxRows(logits: ArrayLike<number>, numClasses: number): Int32Array {
  if (!Number.isInteger(numClasses) || numClasses < 1) {
    throw new RangeError(`argmaxRows: numClasses must be a positive integer, got ${numClasses}`);
  }
  if (logits.length % numClasses !== 0) {
    throw new RangeError(
      `argmaxRows: logits has ${logits.length} entries, expected a multiple of numClasses = ${numClasses}`,
    );
  }
  const n = logits.length / numClasses;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0, bv = logits[i * numClasses];
    for (let j = 0, o = i * numClasses; j < numClasses; j++) {
      const v = logits[o + j];
      if (v - v !== 0) { // NaN or ±Infinity
        best = -1;
        break;
      }
      if (v > bv) {
        bv = v;
        best = j;
      }
    }
    out[i] = best;
  }
  return out;
}

/**
 * Mean cross-entropy (natural log) of `logits` (`n × numClasses`) against `labels`, computed in
 * float64 with a stable log-sum-exp. `NaN` for no rows.
 */
export function crossEntropyOf(
  logits: ArrayLike<number>,
  labels: ArrayLike<number>,
  numClasses: number,
): number {
  const n = labels.length;
  if (logits.length !== n * numClasses) {
    throw new RangeError(
      `crossEntropyOf: logits has ${logits.length} entries, expected ${
        n * numClasses
      } (${n} labels × ${numClasses})`,
    );
  }
  return n === 0 ? NaN : sumCrossEntropy(logits, labels, numClasses) / n;
}

/** Sum (not mean) of the per-row cross-entropies; see {@linkcode crossEntropyOf}. */
export function sumCrossEntropy(
  logits: ArrayLike<number>,
  labels: ArrayLike<number>,
  numClasses: number,
): number {
  let total = 0;
  for (let i = 0; i < labels.length; i++) {
    const o = i * numClasses;
    let m = -Infinity;
    for (let j = 0; j < numClasses; j++) if (logits[o + j] > m) m = logits[o + j];
    let s = 0;
    for (let j = 0; j < numClasses; j++) s += Math.exp(logits[o + j] - m);
    const y = labels[i];
    if (!(y >= 0 && y < numClasses)) {
      throw new RangeError(`crossEntropyOf: labels[${i}] must be in [0, ${numClasses}), got ${y}`);
    }
    total += m + Math.log(s) - logits[o + y];
  }
  return total;
}

/**
 * Fraction of `predictions` equal to `labels`. `NaN` for empty input, and when any prediction is
 * negative or NaN (what {@linkcode argmaxRows} gives for non-finite logits): the accuracy of a
 * model that outputs NaN is undefined, not a low score.
 *
 * @example
 * ```ts
 * import { accuracy } from "@nvrm/core";
 * console.log(accuracy([1, 2, 3, 4], [1, 2, 0, 4])); // 0.75
 * ```
 */
export function accuracy(predictions: ArrayLike<number>, labels: ArrayLike<number>): number {
  sameLength(predictions, labels, "accuracy", "labels");
  if (!allPredicted(predictions)) return NaN;
  let c = 0;
  for (let i = 0; i < labels.length; i++) if (predictions[i] === labels[i]) c++;
  return labels.length === 0 ? NaN : c / labels.length;
}

/**
 * Memorization: the fraction of flipped training examples predicted as their NOISY label.
 * `flipped` is a 0/1 mask over all examples (as returned by `pairflip`/`symmetric`). `NaN` when
 * nothing was flipped or when any prediction is negative or NaN (a non-finite model). For instance `memorization([0, 2, 2, 0], [0, 2, 2, 1], [0, 1, 0, 1])` is 0.5:
 * examples 1 and 3 were flipped and example 1 is predicted as its noisy label.
 */
export function memorization(
  predictions: ArrayLike<number>,
  noisyLabels: ArrayLike<number>,
  flipped: ArrayLike<number>,
): number {
  return maskedAgreement(predictions, noisyLabels, flipped, "memorization", "noisyLabels");
}

/**
 * The fraction of flipped training examples predicted as their TRUE (pre-noise) label. `NaN` when
 * nothing was flipped or when any prediction is negative or NaN (a non-finite model). For instance `flippedCorrect([0, 1, 2, 0], [0, 1, 2, 3], [0, 1, 0, 1])` is 0.5.
 */
export function flippedCorrect(
  predictions: ArrayLike<number>,
  trueLabels: ArrayLike<number>,
  flipped: ArrayLike<number>,
): number {
  return maskedAgreement(predictions, trueLabels, flipped, "flippedCorrect", "trueLabels");
}

/** All label-noise metrics of one set of predictions on the (noisy) training set. */
export interface NoiseMetrics {
  /** Accuracy against the noisy labels (what the model was trained on). */
  noisyAccuracy: number;
  /** Accuracy against the true (pre-noise) labels. */
  trueLabelAccuracy: number;
  /** Flipped examples predicted as their noisy label. */
  memorization: number;
  /** Flipped examples predicted as their true label. */
  flippedCorrect: number;
  /** Number of flipped examples. */
  numFlipped: number;
}

/**
 * All label-noise metrics in one pass: {@linkcode accuracy} against the noisy and the true labels,
 * {@linkcode memorization} and {@linkcode flippedCorrect}. When any prediction is negative or NaN
 * (non-finite logits, see {@linkcode argmaxRows}) the four rates are NaN.
 *
 * @example
 * ```ts
 * import { noiseMetrics } from "@nvrm/core";
 * // true labels 0 1 2 3; examples 1 and 3 flipped to 2 and 1; predictions 0 2 2 3
 * const m = noiseMetrics([0, 2, 2, 3], [0, 2, 2, 1], [0, 1, 2, 3], [0, 1, 0, 1]);
 * console.log(m.noisyAccuracy, m.trueLabelAccuracy); // 0.75 0.75
 * console.log(m.memorization, m.flippedCorrect, m.numFlipped); // 0.5 0.5 2
 * ```
 */
export function noiseMetrics(
  predictions: ArrayLike<number>,
  noisyLabels: ArrayLike<number>,
  trueLabels: ArrayLike<number>,
  flipped: ArrayLike<number>,
): NoiseMetrics {
  sameLength(predictions, noisyLabels, "noiseMetrics", "noisyLabels");
  sameLength(predictions, trueLabels, "noiseMetrics", "trueLabels");
  sameLength(predictions, flipped, "noiseMetrics", "flipped");
  let noisy = 0, right = 0, mem = 0, fc = 0, nf = 0;
  for (let i = 0; i < predictions.length; i++) {
    const p = predictions[i];
    if (p === noisyLabels[i]) noisy++;
    if (p === trueLabels[i]) right++;
    if (flipped[i]) {
      nf++;
      if (p === noisyLabels[i]) mem++;
      if (p === trueLabels[i]) fc++;
    }
  }
  const n = predictions.length;
  if (!allPredicted(predictions)) {
    return {
      noisyAccuracy: NaN,
      trueLabelAccuracy: NaN,
      memorization: NaN,
      flippedCorrect: NaN,
      numFlipped: nf,
    };
  }
  return {
    noisyAccuracy: n ? noisy / n : NaN,
    trueLabelAccuracy: n ? right / n : NaN,
    memorization: nf ? mem / nf : NaN,
    flippedCorrect: nf ? fc / nf : NaN,
    numFlipped: nf,
  };
}

function maskedAgreement(
  predictions: ArrayLike<number>,
  labels: ArrayLike<number>,
  mask: ArrayLike<number>,
  who: string,
  labelsName: string,
): number {
  sameLength(predictions, labels, who, labelsName);
  sameLength(predictions, mask, who, "flipped");
  if (!allPredicted(predictions)) return NaN;
  let n = 0, c = 0;
  for (let i = 0; i < mask.length; i++) {
    if (mask[i]) {
      n++;
      if (predictions[i] === labels[i]) c++;
    }
  }
  return n === 0 ? NaN : c / n;
}

/** False when some prediction is negative or NaN: a row of non-finite logits (no class). */
function allPredicted(predictions: ArrayLike<number>): boolean {
  for (let i = 0; i < predictions.length; i++) if (!(predictions[i] >= 0)) return false;
  return true;
}

function sameLength(a: ArrayLike<number>, b: ArrayLike<number>, who: string, bName: string): void {
  if (a?.length === undefined || b?.length === undefined) {
    throw new TypeError(`${who}: predictions and ${bName} must be arrays`);
  }
  if (a.length !== b.length) {
    throw new RangeError(
      `${who}: ${bName} has length ${b.length}, expected ${a.length} (the length of predictions)`,
    );
  }
}

/** Continual-learning metrics of an accuracy matrix; see {@linkcode forgettingMetrics}. */
export interface ForgettingMetrics {
  /** Number of tasks T. */
  tasks: number;
  /** Mean accuracy over all tasks after the last one was learned: mean_j R[T−1][j]. */
  averageAccuracy: number;
  /** Mean accuracy on each task right after learning it: mean_j R[j][j]. */
  learningAccuracy: number;
  /**
   * Per old task j < T−1: the best accuracy it had after being learned minus its final accuracy,
   * max_{j ≤ t ≤ T−2} R[t][j] − R[T−1][j] (negative when the task ended better than ever before).
   */
  forgetting: number[];
  /** Mean of `forgetting` (NaN for one task). */
  averageForgetting: number;
  /** Backward transfer (Lopez-Paz & Ranzato 2017): mean_{j<T−1} (R[T−1][j] − R[j][j]); NaN for one task. */
  backwardTransfer: number;
}

/**
 * Forgetting metrics of tasks learned in sequence, from the accuracy matrix `R` (T × T):
 * `R[t][j]` is the accuracy on task j measured after training on tasks 0…t. Entries above the
 * diagonal (tasks not learned yet) are not used. Forgetting follows Chaudhry et al. (2018),
 * with the maximum taken over the times after task j was learned.
 *
 * @example
 * ```ts
 * import { forgettingMetrics } from "@nvrm/core";
 * const m = forgettingMetrics([
 *   [0.9, 0.1],
 *   [0.6, 0.95],
 * ]);
 * console.log(m.averageAccuracy, m.averageForgetting); // ≈ 0.775, ≈ 0.3
 * ```
 */
export function forgettingMetrics(R: readonly (readonly number[])[]): ForgettingMetrics {
  if (!Array.isArray(R) || R.length === 0) {
    throw new RangeError(`forgettingMetrics: R must be a non-empty T × T array, got ${R?.length} rows`);
  }
  const T = R.length;
  R.forEach((row, t) => {
    if (!Array.isArray(row) || row.length !== T) {
      throw new RangeError(
        `forgettingMetrics: R must be square; row ${t} has ${row?.length} entries, expected ${T}`,
      );
    }
    for (let j = 0; j <= t; j++) {
      if (typeof row[j] !== "number" || !Number.isFinite(row[j])) {
        throw new RangeError(`forgettingMetrics: R[${t}][${j}] must be a finite number, got ${row[j]}`);
      }
    }
  });
  const last = R[T - 1];
  let acc = 0, learned = 0;
  for (let j = 0; j < T; j++) {
    acc += last[j];
    learned += R[j][j];
  }
  const forgetting: number[] = [];
  let bwt = 0;
  for (let j = 0; j < T - 1; j++) {
    let best = -Infinity;
    for (let t = j; t < T - 1; t++) best = Math.max(best, R[t][j]);
    forgetting.push(best - last[j]);
    bwt += last[j] - R[j][j];
  }
  return {
    tasks: T,
    averageAccuracy: acc / T,
    learningAccuracy: learned / T,
    forgetting,
    averageForgetting: T > 1 ? forgetting.reduce((a, b) => a + b, 0) / (T - 1) : NaN,
    backwardTransfer: T > 1 ? bwt / (T - 1) : NaN,
  };
}
