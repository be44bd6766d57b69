/**
 * Synthetic label noise: a row-stochastic transition matrix P over C classes, applied
 * once with a fixed seed to the training labels — example i with clean label y gets noisy label j
 * with probability P[y][j].
 *
 * - pairflip rate r ("asymmetric"): P[i][i] = 1 − r, P[i][(i+1) mod C] = r.
 * - symmetric rate r: P[i][i] = 1 − r, P[i][j] = r/(C − 1) for j ≠ i.
 *
 * Example i's draw is a pure function of (seed, i) through Philox4x32-10, so the noisy labels of
 * one example do not depend on how many examples there are.
 *
 * @module
 */
import { hashString, philox4x32 } from "../random/philox.ts";
import { checkLabels } from "./dataset.ts";

/** The two label-noise laws: pair-flip ("asymmetric") and symmetric. */
export type LabelNoiseKind = "pairflip" | "symmetric";

/** The label-noise laws, in a stable order. */
export const LABEL_NOISE_KINDS: readonly LabelNoiseKind[] = ["pairflip", "symmetric"];

/** Options of {@linkcode pairflip}, {@linkcode symmetric} and {@linkcode applyTransition}. */
export interface LabelNoiseOptions {
  /** Number of classes C (≥ 2). */
  numClasses: number;
  /** Seed (uint32). Default 0. */
  seed?: number;
}

/** Noisy labels and which examples changed. */
export interface NoisyLabels {
  /** The noisy labels (a new array). */
  labels: Int32Array;
  /** `flipped[i]` is 1 where `labels[i]` differs from the clean label, else 0. */
  flipped: Uint8Array;
  /** Indices of the flipped examples, ascending. */
  flippedIndices: Int32Array;
  /** The realized noise rate: flipped examples / all examples (0 for no examples). */
  actualRate: number;
  /** The transition matrix that was applied (rows: clean label, columns: noisy label). */
  matrix: number[][];
}

/**
 * The transition matrix of a noise law at rate `rate` over `numClasses` classes, exactly the
 * matrices of the module documentation. `rate` must lie in [0, 1) and `numClasses` be an integer ≥ 2.
 *
 * @example
 * ```ts
 * import { transitionMatrix } from "@nvrm/core/data";
 * console.log(transitionMatrix("pairflip", 0.4, 3));
 * // [[0.6, 0.4, 0], [0, 0.6, 0.4], [0.4, 0, 0.6]]
 * console.log(transitionMatrix("symmetric", 0.4, 3));
 * // [[0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.2, 0.2, 0.6]]
 * ```
 */
export function transitionMatrix(kind: LabelNoiseKind, rate: number, numClasses: number): number[][] {
  if (!LABEL_NOISE_KINDS.includes(kind)) {
    throw new RangeError(
      `transitionMatrix: kind must be one of ${LABEL_NOISE_KINDS.join(", ")}, got ${JSON.stringify(kind)}`,
    );
  }
  checkRate(rate, `transitionMatrix`);
  checkClasses(numClasses, `transitionMatrix`);
  const C = numClasses;
  const P: number[][] = [];
  for (let i = 0; i < C; i++) {
    const row = new Array<number>(C).fill(kind === "symmetric" ? rate / (C - 1) : 0);
    row[i] = 1 - rate;
    if (kind === "pairflip") row[(i + 1) % C] = rate;
    P.push(row);
  }
  return P;
}

/**
 * Pair-flip ("asymmetric") noise: each label `i` becomes `(i + 1) mod C` with probability `rate`.
 *
 * @example
 * ```ts
 * import { pairflip } from "@nvrm/core/data";
 * const clean = new Int32Array(1000).map((_, i) => i % 10);
 * const noisy = pairflip(clean, 0.4, { numClasses: 10, seed: 1 });
 * console.log(noisy.actualRate.toFixed(2), noisy.flippedIndices.length);
 * ```
 */
export function pairflip(labels: ArrayLike<number>, rate: number, options: LabelNoiseOptions): NoisyLabels {
  return lawNoise("pairflip", labels, rate, options);
}

/**
 * Symmetric noise: each label keeps its class with probability `1 − rate` and otherwise becomes
 * one of the other `C − 1` classes uniformly.
 *
 * @example
 * ```ts
 * import { symmetric } from "@nvrm/core/data";
 * const clean = new Int32Array(1000).map((_, i) => i % 10);
 * const noisy = symmetric(clean, 0.2, { numClasses: 10, seed: 1 });
 * console.log(noisy.actualRate.toFixed(2));
 * ```
 */
export function symmetric(labels: ArrayLike<number>, rate: number, options: LabelNoiseOptions): NoisyLabels {
  return lawNoise("symmetric", labels, rate, options);
}

/** Applies the noise law `kind` (`"pairflip"` or `"symmetric"`) — a dispatcher for command lines. */
export function addLabelNoise(
  kind: LabelNoiseKind,
  labels: ArrayLike<number>,
  rate: number,
  options: LabelNoiseOptions,
): NoisyLabels {
  if (!LABEL_NOISE_KINDS.includes(kind)) {
    throw new RangeError(
      `addLabelNoise: kind must be one of ${LABEL_NOISE_KINDS.join(", ")}, got ${JSON.stringify(kind)}`,
    );
  }
  return lawNoise(kind, labels, rate, options);
}

/** `pairflip`/`symmetric`: the law's matrix at `rate`, sampled with errors named after the law. */
function lawNoise(
  kind: LabelNoiseKind,
  labels: ArrayLike<number>,
  rate: number,
  options: LabelNoiseOptions,
): NoisyLabels {
  checkRate(rate, kind);
  checkClasses(options?.numClasses, kind);
  return sample(labels, transitionMatrix(kind, rate, options.numClasses), options.seed ?? 0, kind);
}

/**
 * Applies any row-stochastic transition matrix (C × C, non-negative, rows summing to 1 within
 * 1e-9) to `labels`. `options.numClasses` must equal C.
 */
export function applyTransition(
  labels: ArrayLike<number>,
  matrix: readonly (readonly number[])[],
  options: LabelNoiseOptions,
): NoisyLabels {
  checkClasses(options?.numClasses, "applyTransition");
  const C = options.numClasses;
  if (!Array.isArray(matrix) || matrix.length !== C) {
    throw new RangeError(`applyTransition: matrix must have ${C} rows (numClasses), got ${matrix?.length}`);
  }
  matrix.forEach((row, i) => {
    if (!Array.isArray(row) || row.length !== C) {
      throw new RangeError(`applyTransition: matrix[${i}] must have ${C} entries, got ${row?.length}`);
    }
    let s = 0;
    row.forEach((p, j) => {
      if (!(p >= 0 && p <= 1)) {
        throw new RangeError(`applyTransition: matrix[${i}][${j}] must be in [0, 1], got ${p}`);
      }
      s += p;
    });
    if (Math.abs(s - 1) > 1e-9) throw new RangeError(`applyTransition: matrix[${i}] must sum to 1, got ${s}`);
  });
  return sample(labels, matrix.map((r) => r.slice()), options.seed ?? 0, "transition");
}

function sample(labels: ArrayLike<number>, P: number[][], seed: number, stream: string): NoisyLabels {
  const C = P.length;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new RangeError(`${stream}: seed must be an integer in [0, 2^32), got ${seed}`);
  }
  if (labels === null || typeof labels !== "object" || typeof labels.length !== "number") {
    throw new TypeError(
      `${stream}: labels must be an array of integers, got ${labels === null ? "null" : typeof labels}`,
    );
  }
  checkLabels(labels, C, `${stream}: labels`);
  // Cumulative rows, forced to 1 from the last non-zero entry on so rounding cannot fall off the end;
  // a zero-probability class is never chosen (its interval [c[j-1], c[j]) is empty).
  const cdf = P.map((row) => {
    const c = new Float64Array(C);
    let s = 0;
    for (let j = 0; j < C; j++) c[j] = s += row[j];
    let last = C - 1;
    while (last > 0 && row[last] === 0) last--;
    for (let j = last; j < C; j++) c[j] = 1;
    return c;
  });
  const n = labels.length;
  const out = new Int32Array(n), flipped = new Uint8Array(n);
  const k1 = hashString(`label-noise/${stream}`);
  const block = new Uint32Array(4);
  let count = 0;
  for (let i = 0; i < n; i++) {
    const y = labels[i];
    philox4x32(seed, k1, i, 0, 0, 0, block);
    const u = ((block[0] >>> 5) * 67108864 + (block[1] >>> 6)) / 9007199254740992; // [0, 1), 53 bits
    const c = cdf[y];
    let j = 0;
    while (u >= c[j]) j++;
    out[i] = j;
    if (j !== y) {
      flipped[i] = 1;
      count++;
    }
  }
  const flippedIndices = new Int32Array(count);
  for (let i = 0, k = 0; i < n; i++) if (flipped[i]) flippedIndices[k++] = i;
  return { labels: out, flipped, flippedIndices, actualRate: n === 0 ? 0 : count / n, matrix: P };
}

function checkRate(rate: number, who: string): void {
  if (typeof rate !== "number" || !(rate >= 0 && rate < 1)) {
    throw new RangeError(`${who}: rate must be in [0, 1), got ${rate}`);
  }
}

function checkClasses(numClasses: number | undefined, who: string): void {
  if (!Number.isInteger(numClasses) || (numClasses as number) < 2) {
    throw new RangeError(`${who}: numClasses must be an integer ≥ 2, got ${numClasses}`);
  }
}
