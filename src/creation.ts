/**
 * Creating tensors: from data, constants, ranges and seeded random draws.
 *
 * @module
 */
import { allocTensorArray } from "./alloc.ts";
import { getBackend, getDefaultDevice } from "./backend.ts";
import { fillNoise } from "./random/noise.ts";
import { hashString } from "./random/philox.ts";
import {
  allocArray,
  checkShape,
  type Device,
  type DType,
  fmtShape,
  shapeSize,
  Tensor,
  type TypedArray,
} from "./tensor.ts";

/** Options shared by the creation helpers. */
export interface CreateOptions {
  /** Element type; "float32" unless given. */
  dtype?: DType;
  /** Device; the default device (see `setDefaultDevice`) unless given. */
  device?: Device;
}

/** Nested arrays of numbers, as accepted by {@linkcode tensor}. */
export type NestedArray = number | readonly NestedArray[];

function inferShape(data: NestedArray): number[] {
  const shape: number[] = [];
  let cur: NestedArray = data;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    cur = cur[0] as NestedArray;
    if (cur === undefined) break;
  }
  return shape;
}

function flattenInto(data: NestedArray, out: number[], shape: number[], depth: number): void {
  if (depth === shape.length) {
    if (typeof data !== "number") {
      throw new TypeError(`tensor: expected a number at depth ${depth}, got ${JSON.stringify(data)}`);
    }
    out.push(data);
    return;
  }
  if (!Array.isArray(data) || data.length !== shape[depth]) {
    throw new RangeError(
      `tensor: ragged nested array: expected length ${shape[depth]} at depth ${depth}, got ${
        Array.isArray(data) ? data.length : typeof data
      }`,
    );
  }
  for (const d of data) flattenInto(d, out, shape, depth + 1);
}

/** The requested dtype ("float32" unless given); throws naming `who` when it is not a known dtype. */
function dtypeOf(options: CreateOptions, who: string): DType {
  if (options === null || typeof options !== "object") {
    throw new TypeError(
      `${who}: options must be an object, got ${options === null ? "null" : typeof options}`,
    );
  }
  const dtype = options.dtype ?? "float32";
  if (dtype !== "float32" && dtype !== "float64") {
    throw new TypeError(`${who}: dtype must be "float32" or "float64", got ${JSON.stringify(dtype)}`);
  }
  return dtype;
}

/**
 * The requested device (the default device unless given), checked before anything is allocated:
 * a known device whose backend is ready, and a dtype it supports.
 */
function deviceOf(options: CreateOptions, dtype: DType, who: string): Device {
  const dev = options.device ?? getDefaultDevice();
  if (dev !== "cpu" && dev !== "webgpu") {
    throw new TypeError(`${who}: device must be "cpu" or "webgpu", got ${JSON.stringify(dev)}`);
  }
  if (dev === "cpu") return dev;
  try {
    getBackend(dev);
  } catch (e) {
    throw new Error(`${who}: ${(e as Error).message}`, { cause: e });
  }
  if (dtype !== "float32") {
    throw new TypeError(
      `${who}: dtype ${dtype} is not supported on ${dev} (float32 only); use dtype "float32" or device "cpu"`,
    );
  }
  return dev;
}

/** Places a host array on a device checked by {@linkcode deviceOf}. */
function place(arr: TypedArray, shape: readonly number[], dtype: DType, dev: Device): Tensor {
  if (dev === "cpu") return new Tensor(arr, shape, dtype, "cpu");
  return getBackend(dev).fromArray(arr, shape, dtype);
}

/**
 * A tensor from data: a number, nested arrays, a flat array or a typed array (with `shape`).
 * The data is copied.
 *
 * @example
 * ```ts
 * import { tensor } from "@nvrm/core";
 * const a = tensor([[1, 2], [3, 4]]);            // float32, shape [2, 2]
 * const b = tensor([1, 2, 3, 4, 5, 6], [2, 3]);  // flat data with a shape
 * const c = tensor([0.5], [1], { dtype: "float64" });
 * console.log(a.shape, b.shape, c.dtype);
 * ```
 */
export function tensor(
  data: NestedArray | ArrayLike<number>,
  shape?: readonly number[],
  options: CreateOptions = {},
): Tensor {
  const dtype = dtypeOf(options, "tensor");
  let flat: ArrayLike<number>;
  let inferred: number[];
  if (typeof data === "number") {
    flat = [data];
    inferred = [];
  } else if (ArrayBuffer.isView(data) || (Array.isArray(data) && data.every((d) => typeof d === "number"))) {
    if (data instanceof BigInt64Array || data instanceof BigUint64Array || data instanceof DataView) {
      throw new TypeError(
        `tensor: data must hold numbers, got a ${data.constructor.name}; convert it to a Float32Array or Float64Array`,
      );
    }
    flat = data as ArrayLike<number>;
    inferred = [flat.length];
  } else if (Array.isArray(data)) {
    inferred = inferShape(data as NestedArray);
    const out: number[] = [];
    flattenInto(data as NestedArray, out, inferred, 0);
    flat = out;
  } else {
    throw new TypeError(
      `tensor: data must be a number, an array or a typed array, got ${data === null ? "null" : typeof data}`,
    );
  }
  const sh = shape ?? inferred;
  checkShape(sh, "tensor");
  if (shapeSize(sh) !== flat.length) {
    throw new RangeError(
      `tensor: data has ${flat.length} elements but shape ${fmtShape(sh)} needs ${shapeSize(sh)}`,
    );
  }
  const dev = deviceOf(options, dtype, "tensor");
  const arr = allocTensorArray(dtype, sh, "tensor");
  arr.set(flat);
  return place(arr, sh, dtype, dev);
}

/** A tensor of `shape` filled with `value`. */
export function full(shape: readonly number[], value: number, options: CreateOptions = {}): Tensor {
  checkShape(shape, "full");
  if (typeof value !== "number") {
    throw new TypeError(`full: value must be a number, got ${typeof value} ${String(value)}`);
  }
  const dtype = dtypeOf(options, "full");
  const dev = deviceOf(options, dtype, "full");
  const arr = allocTensorArray(dtype, shape, "full");
  if (value !== 0) arr.fill(value);
  return place(arr, shape, dtype, dev);
}

/** A tensor of zeros. */
export function zeros(shape: readonly number[], options: CreateOptions = {}): Tensor {
  return full(shape, 0, options);
}

/** A tensor of ones. */
export function ones(shape: readonly number[], options: CreateOptions = {}): Tensor {
  return full(shape, 1, options);
}

/** Zeros with the shape, dtype and device of `t`. */
export function zerosLike(t: Tensor): Tensor {
  return full(t.shape, 0, { dtype: t.dtype, device: t.device });
}

/** Ones with the shape, dtype and device of `t`. */
export function onesLike(t: Tensor): Tensor {
  return full(t.shape, 1, { dtype: t.dtype, device: t.device });
}

/**
 * `[start, start + step, …)` up to `stop` (exclusive), like NumPy's `arange`. With one argument,
 * `arange(n)` is `0 … n−1`.
 */
export function arange(start: number, stop?: number, step = 1, options: CreateOptions = {}): Tensor {
  if (stop === undefined) [start, stop] = [0, start];
  if (!Number.isFinite(start) || !Number.isFinite(stop) || !Number.isFinite(step) || step === 0) {
    throw new RangeError(
      `arange: start, stop must be finite and step non-zero, got ${start}, ${stop}, ${step}`,
    );
  }
  const n = Math.max(0, Math.ceil((stop - start) / step));
  const dtype = dtypeOf(options, "arange");
  const dev = deviceOf(options, dtype, "arange");
  const arr = allocTensorArray(dtype, [n], "arange");
  for (let i = 0; i < n; i++) arr[i] = start + i * step;
  return place(arr, [n], dtype, dev);
}

/** Options of the seeded random creation helpers. */
export interface RandomOptions extends CreateOptions {
  /** Seed (uint32). Same seed, same numbers, on every device. Default 0. */
  seed?: number;
  /** Independent stream for the same seed (uint32 or a name). Default 0. */
  stream?: number | string;
}

function streamKey(opts: RandomOptions, purpose: string) {
  const s = opts.stream ?? 0;
  const seed = opts.seed ?? 0;
  if (!isUint32(seed)) throw new RangeError(`${purpose}: seed must be an integer in [0, 2^32), got ${seed}`);
  if (typeof s !== "string" && !isUint32(s)) {
    throw new RangeError(`${purpose}: stream must be a name or an integer in [0, 2^32), got ${String(s)}`);
  }
  return {
    k0: (opts.seed ?? 0) >>> 0,
    k1: hashString(purpose),
    c1: typeof s === "string" ? hashString(s) : s >>> 0,
    c2: 0,
  };
}

/**
 * Standard-normal draws (times `std`, plus `mean`) from the counter-based generator.
 *
 * @example
 * ```ts
 * import { randn } from "@nvrm/core";
 * const w = randn([256, 10], { seed: 42 });
 * console.log(w.shape);
 * ```
 */
export function randn(
  shape: readonly number[],
  options: RandomOptions & { mean?: number; std?: number } = {},
): Tensor {
  checkShape(shape, "randn");
  const dtype = dtypeOf(options, "randn");
  const dev = deviceOf(options, dtype, "randn");
  const std = options.std ?? 1, mean = options.mean ?? 0;
  if (!(Number.isFinite(std) && std >= 0) || !Number.isFinite(mean)) {
    throw new RangeError(
      `randn: std must be a finite number >= 0 and mean finite, got std ${std}, mean ${mean}`,
    );
  }
  const key = streamKey(options, "randn");
  const arr = allocTensorArray(dtype, shape, "randn");
  fillNoise(arr, "gaussian", std, key);
  if (mean !== 0) { for (let i = 0; i < arr.length; i++) arr[i] += mean; }
  return place(arr, shape, dtype, dev);
}

/**
 * Uniform draws on `[low, high)` (default `[0, 1)`) from the counter-based generator.
 */
export function rand(
  shape: readonly number[],
  options: RandomOptions & { low?: number; high?: number } = {},
): Tensor {
  checkShape(shape, "rand");
  const dtype = dtypeOf(options, "rand");
  const low = options.low ?? 0, high = options.high ?? 1;
  if (!Number.isFinite(low) || !Number.isFinite(high)) {
    throw new RangeError(`rand: low and high must be finite numbers, got low=${low}, high=${high}`);
  }
  if (!(high > low)) throw new RangeError(`rand: high must be > low, got low=${low}, high=${high}`);
  const dev = deviceOf(options, dtype, "rand");
  const key = streamKey(options, "rand");
  const arr = allocTensorArray(dtype, shape, "rand");
  fillNoise(arr, "uniform", 1, key); // in (-1, 1)
  const half = (high - low) / 2, mid = (high + low) / 2;
  // Draws within half an ulp of `high` round up to it in the dtype: keep the range half-open.
  const top = largestBelow(high, dtype);
  for (let i = 0; i < arr.length; i++) {
    arr[i] = mid + half * arr[i];
    if (arr[i] >= high) arr[i] = top;
  }
  return place(arr, shape, dtype, dev);
}

function isUint32(v: unknown): boolean {
  return Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xffffffff;
}

/** The largest number of `dtype` strictly below `x` (finite). */
function largestBelow(x: number, dtype: DType): number {
  const a = allocArray(dtype, 1);
  a[0] = x;
  if (a[0] < x) return a[0];
  if (a[0] === 0) return dtype === "float64" ? -Number.MIN_VALUE : -1.401298464324817e-45;
  if (dtype === "float64") new BigInt64Array(a.buffer)[0] += a[0] > 0 ? -1n : 1n;
  else new Int32Array(a.buffer)[0] += a[0] > 0 ? -1 : 1;
  return a[0];
}
