/**
 * Data augmentation for image batches `[N, C, H, W]` held on the host, as in the original CIFAR-10
 * pipeline (`transforms.RandomCrop(32, padding=4)`, `RandomHorizontalFlip()`, `Normalize(mean, std)`):
 * a random crop of the zero-padded image, a horizontal flip with probability ½, and per-channel
 * normalization, plus {@linkcode cifarAugment}, the three composed into a batch transform for `fit`.
 *
 * Every random choice is a pure function of `(seed, epoch, example index)`: example `i` of the
 * dataset draws from Philox4x32-10 with key `(seed, hashString(stream))` and counter
 * `(i, epoch, 0, 0)` (streams `"crop"` and `"flip"`), so an example is augmented the same way
 * whatever batch it lands in, and a resumed run sees the very same images.
 *
 * @module
 */
import { hashString, philox4x32 } from "../random/philox.ts";
import { CIFAR10_MEAN, CIFAR10_STD } from "./cifar10.ts";

/** Philox key words of the two random streams. */
const CROP_STREAM = hashString("crop");
const FLIP_STREAM = hashString("flip");

/** Seeding of one augmentation call: the random choices are a function of (seed, epoch, example index). */
export interface AugmentKey {
  /** Seed (uint32). Default 0. */
  seed?: number;
  /** Epoch (uint32): each epoch draws new crops and flips. Default 0. */
  epoch?: number;
}

/** Options of {@linkcode randomCrop}. */
export interface RandomCropOptions extends AugmentKey {
  /** Pixels of padding on each side; the crop's offset is uniform in `[0, 2·padding]` per axis. Default 4. */
  padding?: number;
  /**
   * The value of the padding pixels: one number, or one per channel. Default 0. On data normalized
   * by the loaders, `−mean[c] / std[c]` is the normalized black pixel, which makes crop-then-normalize
   * and normalize-then-crop give the same numbers.
   */
  fill?: number | readonly number[];
}

/** Options of {@linkcode horizontalFlip}. */
export interface HorizontalFlipOptions extends AugmentKey {
  /** Probability of flipping each example. Default 0.5. */
  probability?: number;
}

/** What `fit` passes to a {@linkcode BatchTransform} with each training batch. */
export interface BatchContext {
  /** 0-based epoch of the batch. */
  epoch: number;
  /** `fit`'s seed (the batch order's). */
  seed: number;
  /** Shape of one example (`[C, H, W]` for images). */
  inputShape: readonly number[];
}

/**
 * A transform of the training batches (`fit`'s `batchTransform`): gets the gathered inputs of one
 * batch (example-major, `indices.length × prod(inputShape)` numbers), the dataset indices of its
 * examples and the {@linkcode BatchContext}, and returns the inputs to train on (same length; it may
 * return a new array or `x` itself, and must not keep `x`). It must be a pure function of its
 * arguments so that a resumed run is identical.
 */
export type BatchTransform = (x: Float32Array, indices: Int32Array, ctx: BatchContext) => Float32Array;

/** Checks `x` against `[C, H, W]` and `indices`; returns the dimensions. */
function imageDims(
  who: string,
  x: Float32Array,
  inputShape: readonly number[],
  indices: ArrayLike<number>,
): { n: number; c: number; h: number; w: number } {
  if (!(x instanceof Float32Array)) {
    throw new TypeError(`${who}: x must be a Float32Array, got ${typeName(x)}`);
  }
  if (
    !Array.isArray(inputShape) || inputShape.length !== 3 ||
    inputShape.some((d) => !Number.isInteger(d) || d < 1)
  ) {
    throw new RangeError(
      `${who}: inputShape must be [C, H, W] (positive integers), got ${JSON.stringify(inputShape)}`,
    );
  }
  if (indices === null || typeof indices !== "object" || typeof indices.length !== "number") {
    throw new TypeError(`${who}: indices must be an array of example indices, got ${typeName(indices)}`);
  }
  const [c, h, w] = inputShape, n = indices.length;
  if (x.length !== n * c * h * w) {
    throw new RangeError(
      `${who}: x has ${x.length} numbers, expected ${n * c * h * w} (${n} indices × [${
        inputShape.join(", ")
      }])`,
    );
  }
  for (let k = 0; k < n; k++) {
    if (!Number.isInteger(indices[k]) || indices[k] < 0 || indices[k] > 0xffffffff) {
      throw new RangeError(`${who}: indices[${k}] must be an integer in [0, 2^32), got ${indices[k]}`);
    }
  }
  return { n, c, h, w };
}

function keyOf(who: string, o: AugmentKey): { seed: number; epoch: number } {
  if (o === null || typeof o !== "object") {
    throw new TypeError(`${who}: options must be an object, got ${typeName(o)}`);
  }
  const seed = o.seed ?? 0, epoch = o.epoch ?? 0;
  for (const [name, v] of [["seed", seed], ["epoch", epoch]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
      throw new RangeError(`${who}: ${name} must be an integer in [0, 2^32), got ${v}`);
    }
  }
  return { seed, epoch };
}

/** Per-channel values from one number or a list of `c` (named `name` in errors). */
function perChannel(who: string, name: string, v: number | readonly number[], c: number): Float64Array {
  const out = new Float64Array(c);
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw new RangeError(`${who}: ${name} must be finite, got ${v}`);
    return out.fill(v);
  }
  if (!Array.isArray(v) || v.length !== c) {
    throw new RangeError(
      `${who}: ${name} must be a number or a list of ${c} (one per channel), got ${JSON.stringify(v)}`,
    );
  }
  v.forEach((x, i) => {
    if (typeof x !== "number" || !Number.isFinite(x)) {
      throw new RangeError(`${who}: ${name}[${i}] must be a finite number, got ${x}`);
    }
    out[i] = x;
  });
  return out;
}

/**
 * The crop offsets of example `index` under `(seed, epoch)`: `dy`, `dx` uniform in
 * `[0, 2·padding]`, the top-left corner of the crop in the padded image (`padding` is no crop
 * shift). Exposed for tests and for replaying a run.
 */
export function cropOffsets(
  index: number,
  padding: number,
  key: AugmentKey = {},
): { dy: number; dx: number } {
  const { seed, epoch } = keyOf("cropOffsets", key);
  checkIndex("cropOffsets", index);
  if (!Number.isInteger(padding) || padding < 0 || padding > 4096) {
    throw new RangeError(`cropOffsets: padding must be an integer in [0, 4096], got ${padding}`);
  }
  const out = new Uint32Array(4);
  philox4x32(seed, CROP_STREAM, index, epoch, 0, 0, out);
  // floor(u · (2p+1)) with u = word / 2^32: exact in doubles.
  const m = 2 * padding + 1;
  return { dy: Math.floor(out[0] * m / 4294967296), dx: Math.floor(out[1] * m / 4294967296) };
}

/** Whether example `index` is flipped under `(seed, epoch)` with probability `p`. */
export function flipDrawn(index: number, p: number, key: AugmentKey = {}): boolean {
  const { seed, epoch } = keyOf("flipDrawn", key);
  checkIndex("flipDrawn", index);
  const out = new Uint32Array(4);
  philox4x32(seed, FLIP_STREAM, index, epoch, 0, 0, out);
  return ((out[0] >>> 8) + 0.5) / 16777216 < p;
}

function checkIndex(who: string, i: number): void {
  if (!Number.isInteger(i) || i < 0 || i > 0xffffffff) {
    throw new RangeError(`${who}: index must be an integer in [0, 2^32), got ${i}`);
  }
}

/**
 * Random crop of zero-padded images (`RandomCrop(H, padding)` of torchvision): each example of the
 * batch `x` (`[N, C, H, W]` with `inputShape = [C, H, W]`, `N = indices.length`) is padded by
 * `padding` pixels of `fill` on every side and cut back to `H × W` at the offset
 * {@linkcode cropOffsets}`(indices[k], padding, { seed, epoch })`:
 * `y[k, c, i, j] = x[k, c, i + dy − padding, j + dx − padding]`, or `fill[c]` outside the image.
 * Returns a new array.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { randomCrop } from "@nvrm/core/data";
 * const x = new Float32Array(2 * 3 * 8 * 8).fill(1);
 * const y = randomCrop(x, [3, 8, 8], new Int32Array([5, 9]), { padding: 2, seed: 1, epoch: 0 });
 * assert.equal(y.length, x.length);
 * assert.ok(y.every((v) => v === 0 || v === 1)); // the image, or the zero padding
 * ```
 */
export function randomCrop(
  x: Float32Array,
  inputShape: readonly number[],
  indices: ArrayLike<number>,
  options: RandomCropOptions = {},
): Float32Array {
  const who = "randomCrop";
  const { n, c, h, w } = imageDims(who, x, inputShape, indices);
  const key = keyOf(who, options);
  const p = options.padding ?? 4;
  if (!Number.isInteger(p) || p < 0 || p > 4096) {
    throw new RangeError(`${who}: padding must be an integer in [0, 4096], got ${p}`);
  }
  const fill = perChannel(who, "fill", options.fill ?? 0, c);
  const y = new Float32Array(x.length);
  const plane = h * w;
  for (let k = 0; k < n; k++) {
    const { dy, dx } = cropOffsets(indices[k], p, key);
    const sy = dy - p, sx = dx - p; // source row/column of the output's (0, 0)
    // Output columns [j0, j1) read the image; the others are padding.
    const j0 = Math.max(0, -sx), j1 = Math.min(w, w - sx);
    for (let ch = 0; ch < c; ch++) {
      const base = (k * c + ch) * plane, f = fill[ch];
      for (let i = 0; i < h; i++) {
        const o = base + i * w, r = i + sy;
        if (r < 0 || r >= h || j0 >= j1) {
          y.fill(f, o, o + w);
          continue;
        }
        if (j0 > 0) y.fill(f, o, o + j0);
        y.set(x.subarray(base + r * w + j0 + sx, base + r * w + j1 + sx), o + j0);
        if (j1 < w) y.fill(f, o + j1, o + w);
      }
    }
  }
  return y;
}

/**
 * Horizontal flip (`RandomHorizontalFlip(p)` of torchvision): each example `k` of the batch `x`
 * (`[N, C, H, W]`) is mirrored left–right (`y[k, c, i, j] = x[k, c, i, W − 1 − j]`) when
 * {@linkcode flipDrawn}`(indices[k], probability, { seed, epoch })`, copied otherwise. Returns a
 * new array. Flipping twice with the same key gives back `x`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { horizontalFlip } from "@nvrm/core/data";
 * const x = new Float32Array([1, 2, 3, 4]); // one 1×2×2 image
 * const y = horizontalFlip(x, [1, 2, 2], new Int32Array([0]), { probability: 1 });
 * assert.deepEqual([...y], [2, 1, 4, 3]);
 * ```
 */
export function horizontalFlip(
  x: Float32Array,
  inputShape: readonly number[],
  indices: ArrayLike<number>,
  options: HorizontalFlipOptions = {},
): Float32Array {
  const who = "horizontalFlip";
  const { n, c, h, w } = imageDims(who, x, inputShape, indices);
  const key = keyOf(who, options);
  const prob = options.probability ?? 0.5;
  if (typeof prob !== "number" || !(prob >= 0 && prob <= 1)) {
    throw new RangeError(`${who}: probability must be a number in [0, 1], got ${prob}`);
  }
  const y = new Float32Array(x.length);
  const per = c * h * w;
  for (let k = 0; k < n; k++) {
    const s = k * per;
    if (!flipDrawn(indices[k], prob, key)) {
      y.set(x.subarray(s, s + per), s);
      continue;
    }
    for (let row = s; row < s + per; row += w) {
      for (let j = 0; j < w; j++) y[row + j] = x[row + w - 1 - j];
    }
  }
  return y;
}

/**
 * Per-channel normalization (`Normalize(mean, std)` of torchvision): `y[k, c, …] = (x[k, c, …] −
 * mean[c]) / std[c]` for a batch `x` of examples shaped `inputShape` (`[C, …]`, channel first; a
 * flat `[C·H·W]` example is not split into channels: give `[C, H, W]`). Computed in float64,
 * rounded once to float32, as the loaders do. Returns a new array.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { normalizeChannels } from "@nvrm/core/data";
 * const y = normalizeChannels(new Float32Array([1, 3, 10, 20]), [2, 2], [2, 10], [1, 5]);
 * assert.deepEqual([...y], [-1, 1, 0, 2]);
 * ```
 */
export function normalizeChannels(
  x: Float32Array,
  inputShape: readonly number[],
  mean: readonly number[],
  std: readonly number[],
): Float32Array {
  const who = "normalizeChannels";
  if (!(x instanceof Float32Array)) {
    throw new TypeError(`${who}: x must be a Float32Array, got ${typeName(x)}`);
  }
  if (
    !Array.isArray(inputShape) || inputShape.length < 1 ||
    inputShape.some((d) => !Number.isInteger(d) || d < 1)
  ) {
    throw new RangeError(
      `${who}: inputShape must be [C, …] (positive integers), got ${JSON.stringify(inputShape)}`,
    );
  }
  const c = inputShape[0], per = inputShape.reduce((a, b) => a * b, 1), plane = per / c;
  if (x.length % per !== 0) {
    throw new RangeError(
      `${who}: x has ${x.length} numbers, not a multiple of ${per} (one example of [${
        inputShape.join(", ")
      }])`,
    );
  }
  const m = perChannel(who, "mean", mean, c), s = perChannel(who, "std", std, c);
  s.forEach((v, i) => {
    if (!(v > 0)) throw new RangeError(`${who}: std[${i}] must be > 0, got ${v}`);
  });
  const y = new Float32Array(x.length);
  for (let o = 0; o < x.length; o += per) {
    for (let ch = 0; ch < c; ch++) {
      const mc = m[ch], sc = s[ch];
      for (let q = o + ch * plane, e = q + plane; q < e; q++) y[q] = (x[q] - mc) / sc;
    }
  }
  return y;
}

/** Options of {@linkcode cifarAugment}. */
export interface CifarAugmentOptions {
  /** Seed of the crops and flips (uint32). Default: `fit`'s seed (`BatchContext.seed`). */
  seed?: number;
  /** Padding of the random crop. Default 4. */
  padding?: number;
  /** Flip horizontally with probability ½. Default true. */
  flip?: boolean;
  /**
   * The padding pixels' value, one number or one per channel. Default: without `normalize`, the
   * black pixel of `loadCifar10()`'s normalized data, `−CIFAR10_MEAN[c] / CIFAR10_STD[c]` (so that
   * the default loader plus this transform computes the original pipeline: zero padding, then
   * normalization); with `normalize`, 0.
   */
  fill?: number | readonly number[];
  /**
   * Normalize per channel after crop and flip (for data loaded with `normalize: false`). Default:
   * none (the loaders normalize already).
   */
  normalize?: { mean: readonly number[]; std: readonly number[] };
}

/**
 * The original CIFAR-10 training augmentation as a `fit` batch transform: {@linkcode randomCrop}
 * with 4-pixel padding, then {@linkcode horizontalFlip} with probability ½, then (with
 * `normalize`) {@linkcode normalizeChannels}, each example seeded by `(seed, epoch, dataset
 * index)`. With the defaults it expects the normalized data of `loadCifar10()` and pads with its
 * black pixel, which gives the same numbers as the original `RandomCrop(32, padding=4)`,
 * `RandomHorizontalFlip()`, `Normalize(CIFAR10_MEAN, CIFAR10_STD)` up to the random draws.
 * For other images give `fill` (MNIST: `-MNIST_MEAN / MNIST_STD`) and, where a flip changes the
 * class (digits), `flip: false`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { cifarAugment } from "@nvrm/core/data";
 * const augment = cifarAugment({ seed: 7 });
 * const x = new Float32Array(2 * 3 * 32 * 32).fill(0.5);
 * const ctx = { epoch: 0, seed: 0, inputShape: [3, 32, 32] };
 * const a = augment(x, new Int32Array([0, 1]), ctx), b = augment(x, new Int32Array([0, 1]), ctx);
 * assert.deepEqual(a, b); // a pure function of (seed, epoch, example index)
 * ```
 */
export function cifarAugment(options: CifarAugmentOptions = {}): BatchTransform {
  const who = "cifarAugment";
  if (options === null || typeof options !== "object") {
    throw new TypeError(`${who}: options must be an object, got ${typeName(options)}`);
  }
  if (options.seed !== undefined) keyOf(who, { seed: options.seed });
  const padding = options.padding ?? 4;
  if (!Number.isInteger(padding) || padding < 0 || padding > 4096) {
    throw new RangeError(`${who}: padding must be an integer in [0, 4096], got ${padding}`);
  }
  const flip = options.flip ?? true;
  if (typeof flip !== "boolean") throw new TypeError(`${who}: flip must be true or false, got ${flip}`);
  const norm = options.normalize;
  if (norm !== undefined && (norm === null || typeof norm !== "object")) {
    throw new TypeError(`${who}: normalize must be { mean, std }, got ${typeName(norm)}`);
  }
  const fill = options.fill ?? (norm ? 0 : CIFAR10_MEAN.map((m, c) => -m / CIFAR10_STD[c]));
  return (x, indices, ctx) => {
    const key = { seed: options.seed ?? ctx.seed, epoch: ctx.epoch };
    let y = randomCrop(x, ctx.inputShape, indices, { ...key, padding, fill });
    if (flip) y = horizontalFlip(y, ctx.inputShape, indices, key);
    return norm ? normalizeChannels(y, ctx.inputShape, norm.mean, norm.std) : y;
  };
}

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (typeof v === "object") return (v as object).constructor?.name ?? "object";
  return typeof v;
}
