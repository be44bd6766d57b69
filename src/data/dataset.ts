/**
 * In-memory classification datasets and seeded shuffling/batching. A {@linkcode Dataset} is plain
 * host data (a `Float32Array` of inputs and an `Int32Array` of labels); batches are gathered on the
 * host and turned into tensors by the training loop, so the same data feeds CPU and GPU tensors.
 *
 * Randomness comes from the project's counter-based generator (Philox4x32-10): the permutation of
 * epoch `e` under seed `s` is a pure function of `(s, e, n)`, so a resumed run sees the same order.
 *
 * @module
 */
import { hashString, philox4x32 } from "../random/philox.ts";

/** A labelled dataset held in host memory. */
export interface Dataset {
  /** Inputs, `n × prod(inputShape)` numbers, example-major. */
  readonly x: Float32Array;
  /** Labels in `[0, numClasses)`, one per example. */
  readonly y: Int32Array;
  /** Shape of one example (`[784]` for a flat MNIST image, `[1, 28, 28]` for a CNN). */
  readonly inputShape: readonly number[];
  /** Number of classes. */
  readonly numClasses: number;
}

/** Number of numbers in one example. */
export function exampleSize(ds: Dataset): number {
  return ds.inputShape.reduce((a, b) => a * b, 1);
}

/**
 * Builds a dataset after checking that `x` holds `y.length` examples of `inputShape` and that every
 * label lies in `[0, numClasses)`. The arrays are used as they are (not copied).
 */
export function makeDataset(
  x: Float32Array,
  y: Int32Array,
  inputShape: readonly number[],
  numClasses: number,
): Dataset {
  if (!(x instanceof Float32Array)) {
    throw new TypeError(`makeDataset: x must be a Float32Array, got ${typeName(x)}`);
  }
  if (!(y instanceof Int32Array)) {
    throw new TypeError(`makeDataset: y must be an Int32Array, got ${typeName(y)}`);
  }
  if (!Array.isArray(inputShape) || inputShape.some((d) => !Number.isInteger(d) || d < 1)) {
    throw new RangeError(
      `makeDataset: inputShape must hold positive integers, got ${JSON.stringify(inputShape)}`,
    );
  }
  if (!Number.isInteger(numClasses) || numClasses < 1) {
    throw new RangeError(`makeDataset: numClasses must be a positive integer, got ${numClasses}`);
  }
  const per = inputShape.reduce((a, b) => a * b, 1);
  if (x.length !== y.length * per) {
    throw new RangeError(
      `makeDataset: x has ${x.length} numbers, expected ${y.length * per} (${y.length} labels × ${per} for ` +
        `inputShape [${inputShape.join(", ")}])`,
    );
  }
  checkLabels(y, numClasses, "makeDataset: y");
  return { x, y, inputShape: Object.freeze(inputShape.slice()), numClasses };
}

/**
 * The same data seen with another per-example shape of the same size, e.g. `[1, 28, 28]` for a
 * CNN instead of `[784]`. Shares the arrays.
 *
 * @example
 * ```ts
 * import { makeDataset, reshapeInputs } from "@nvrm/core/data";
 * const flat = makeDataset(new Float32Array(2 * 784), new Int32Array([3, 7]), [784], 10);
 * console.log(reshapeInputs(flat, [1, 28, 28]).inputShape); // [1, 28, 28]
 * ```
 */
export function reshapeInputs(ds: Dataset, inputShape: readonly number[]): Dataset {
  if (!Array.isArray(inputShape)) {
    throw new TypeError(
      `reshapeInputs: inputShape must be an array of positive integers, got ${typeName(inputShape)}`,
    );
  }
  const per = inputShape.reduce((a, b) => a * b, 1);
  if (per !== exampleSize(ds) || inputShape.some((d) => !Number.isInteger(d) || d < 1)) {
    throw new RangeError(
      `reshapeInputs: inputShape [${inputShape.join(", ")}] must hold ${exampleSize(ds)} numbers ` +
        `(the size of [${ds.inputShape.join(", ")}])`,
    );
  }
  return { ...ds, inputShape: Object.freeze(inputShape.slice()) };
}

/** The same inputs with other labels (e.g. noisy ones); checks length and range. */
export function withLabels(ds: Dataset, y: Int32Array): Dataset {
  if (!(y instanceof Int32Array) || y.length !== ds.y.length) {
    throw new RangeError(
      `withLabels: y must be an Int32Array of ${ds.y.length} labels, got ${typeName(y)} of length ${
        (y as { length?: number })?.length
      }`,
    );
  }
  checkLabels(y, ds.numClasses, "withLabels: y");
  return { ...ds, y };
}

/** The examples at `indices` (copied), in that order. */
export function subset(ds: Dataset, indices: ArrayLike<number>): Dataset {
  const { x, y } = gather(ds, indices);
  return { x, y, inputShape: ds.inputShape, numClasses: ds.numClasses };
}

/**
 * `n` examples drawn without replacement by a seeded shuffle (the first `n` of the permutation
 * for `seed`), sorted back into their original order. `n` ≥ the dataset size returns all of it.
 */
export function randomSubset(ds: Dataset, n: number, seed = 0): Dataset {
  if (!Number.isInteger(n) || n < 1) {
    throw new RangeError(`randomSubset: n must be a positive integer, got ${n}`);
  }
  checkUint32(seed, "randomSubset: seed");
  if (n >= ds.y.length) return ds;
  const perm = permutation(ds.y.length, { seed, epoch: 0, stream: "subset" });
  const idx = perm.slice(0, n).sort();
  return subset(ds, idx);
}

/** Inputs and labels of the examples at `indices`, copied into fresh arrays. */
export function gather(ds: Dataset, indices: ArrayLike<number>): { x: Float32Array; y: Int32Array } {
  if (indices === null || typeof indices !== "object" || typeof indices.length !== "number") {
    throw new TypeError(`gather: indices must be an array of example indices, got ${typeName(indices)}`);
  }
  const per = exampleSize(ds), n = ds.y.length, b = indices.length;
  const x = new Float32Array(b * per), y = new Int32Array(b);
  for (let k = 0; k < b; k++) {
    const i = indices[k];
    if (!Number.isInteger(i) || i < 0 || i >= n) {
      throw new RangeError(`gather: indices[${k}] must be an integer in [0, ${n}), got ${i}`);
    }
    x.set(ds.x.subarray(i * per, (i + 1) * per), k * per);
    y[k] = ds.y[i];
  }
  return { x, y };
}

/** Options of {@linkcode permutation} and {@linkcode batchIndices}. */
export interface ShuffleOptions {
  /** Seed (uint32). Default 0. */
  seed?: number;
  /** Epoch: each epoch gets an independent permutation. Default 0. */
  epoch?: number;
  /** Name of the random stream, so unrelated uses of one seed do not share numbers. Default "shuffle". */
  stream?: string;
}

/**
 * A uniformly random permutation of `0 … n−1` (Fisher–Yates on 53-bit Philox uniforms), a pure
 * function of `(n, seed, epoch, stream)`.
 *
 * @example
 * ```ts
 * import { permutation } from "@nvrm/core/data";
 * const p = permutation(10, { seed: 1, epoch: 0 });
 * console.log(Array.from(p).sort((a, b) => a - b)); // 0 … 9
 * ```
 */
export function permutation(n: number, options: ShuffleOptions = {}): Int32Array {
  checkCount(n, "permutation: n");
  if (options === null || typeof options !== "object") {
    throw new TypeError(`permutation: options must be an object, got ${typeName(options)}`);
  }
  const seed = options.seed ?? 0, epoch = options.epoch ?? 0;
  checkUint32(seed, "permutation: seed");
  checkUint32(epoch, "permutation: epoch");
  const k1 = hashString(options.stream ?? "shuffle");
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  const block = new Uint32Array(4);
  // Draw d (for position i = n-1-d) uses lanes 2(d%2), 2(d%2)+1 of block floor(d/2).
  for (let i = n - 1, d = 0; i > 0; i--, d++) {
    if ((d & 1) === 0) philox4x32(seed, k1, d >>> 1, epoch, n, 0, block);
    const lane = (d & 1) * 2;
    const u = ((block[lane] >>> 5) * 67108864 + (block[lane + 1] >>> 6)) / 9007199254740992; // [0, 1), 53 bits
    const j = Math.floor(u * (i + 1));
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}

/** Options of {@linkcode batchIndices}. */
export interface BatchOptions extends ShuffleOptions {
  /** Shuffle (seeded) before cutting into batches. Default true. */
  shuffle?: boolean;
  /** Drop the last batch when it is smaller than `batchSize`. Default false. */
  dropLast?: boolean;
}

/**
 * The example indices of each minibatch of one epoch: `ceil(n / batchSize)` batches (or
 * `floor` with `dropLast`), shuffled by the seeded {@linkcode permutation} unless `shuffle` is false.
 *
 * @example
 * ```ts
 * import { batchIndices } from "@nvrm/core/data";
 * const batches = batchIndices(10, 4, { seed: 0, epoch: 3 });
 * console.log(batches.map((b) => b.length)); // [4, 4, 2]
 * ```
 */
export function batchIndices(n: number, batchSize: number, options: BatchOptions = {}): Int32Array[] {
  checkCount(n, "batchIndices: n");
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RangeError(`batchIndices: batchSize must be a positive integer, got ${batchSize}`);
  }
  if (options === null || typeof options !== "object") {
    throw new TypeError(`batchIndices: options must be an object, got ${typeName(options)}`);
  }
  let order: Int32Array;
  if (options.shuffle ?? true) order = permutation(n, options);
  else {
    order = new Int32Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
  }
  const out: Int32Array[] = [];
  for (let s = 0; s < n; s += batchSize) {
    const e = Math.min(n, s + batchSize);
    if (e - s < batchSize && options.dropLast) break;
    out.push(order.slice(s, e));
  }
  return out;
}

/** Throws unless every label is an integer in `[0, numClasses)`. */
export function checkLabels(y: ArrayLike<number>, numClasses: number, who: string): void {
  if (y === null || typeof y !== "object" || typeof y.length !== "number") {
    throw new TypeError(`${who} must be an array of labels, got ${typeName(y)}`);
  }
  if (!Number.isInteger(numClasses) || numClasses < 1) {
    throw new RangeError(`${who}: numClasses must be a positive integer, got ${numClasses}`);
  }
  for (let i = 0; i < y.length; i++) {
    const c = y[i];
    if (!(c >= 0 && c < numClasses) || !Number.isInteger(c)) {
      throw new RangeError(`${who}[${i}] must be an integer in [0, ${numClasses}), got ${c}`);
    }
  }
}

/** Example counts index an `Int32Array`: integers in [0, 2^31 − 1]. */
function checkCount(n: number, who: string): void {
  if (!Number.isInteger(n) || n < 0 || n > 0x7fffffff) {
    throw new RangeError(
      `${who} must be a non-negative integer, got ${n} (at most 2^31 − 1: indices are int32)`,
    );
  }
}

function checkUint32(v: number, who: string): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
    throw new RangeError(`${who} must be an integer in [0, 2^32), got ${v}`);
  }
}

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (typeof v === "object") return (v as object).constructor?.name ?? "object";
  return typeof v;
}
