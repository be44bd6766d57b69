/**
 * Host allocation of tensor storage with errors that say what was asked for. Large arrays come from
 * the CPU storage pool when it has one of the right dtype and length (`src/cpu/storage_pool.ts`).
 *
 * A typed array holds at most `Number.MAX_SAFE_INTEGER` bytes (2^53 − 1, V8's limit) and a host may
 * refuse far less. {@linkcode allocTensorArray} rejects shapes beyond the limit before trying, and turns
 * the engine's bare `Array buffer allocation failed` into a `RangeError` naming the op, the shape, the
 * dtype and the bytes asked for.
 *
 * @module
 */
import { takeStorage } from "./cpu/storage_pool.ts";
import { type DType, fmtShape, shapeSize, type TypedArray } from "./tensor.ts";

/** The most bytes one typed array may hold (V8: 2^53 − 1). */
export const MAX_ARRAY_BYTES: number = Number.MAX_SAFE_INTEGER;

const BYTES_PER: Record<DType, number> = { float32: 4, float64: 8 };

/** `n` as an exact integer when it is one, otherwise in exponent notation. */
function fmtCount(n: number): string {
  return Number.isSafeInteger(n) ? String(n) : n.toExponential(3);
}

/** Bytes in binary units: `3.64 TiB`. */
function fmtBytes(bytes: number): string {
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
  let v = bytes, u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} bytes` : `${v.toFixed(2)} ${units[u]}`;
}

/**
 * Throws a `RangeError` naming `who` when a `dtype` array of `shape` cannot exist as one typed array
 * (more than {@linkcode MAX_ARRAY_BYTES} bytes, or an element count beyond exact integers).
 */
export function checkAllocation(dtype: DType, shape: readonly number[], who: string): void {
  const n = shapeSize(shape), bytes = n * BYTES_PER[dtype];
  if (!(bytes <= MAX_ARRAY_BYTES)) {
    throw new RangeError(
      `${who}: a ${dtype} tensor of shape ${fmtShape(shape)} has ${fmtCount(n)} elements ` +
        `(${fmtCount(bytes)} bytes), more than one typed array can hold (${MAX_ARRAY_BYTES} bytes); ` +
        `use a smaller shape`,
    );
  }
}

/**
 * A zeroed `Float32Array`/`Float64Array` for a `dtype` tensor of `shape`, recycled from the CPU
 * storage pool (`src/cpu/storage_pool.ts`) when one of that dtype and length is free. Shapes beyond
 * the typed-array limit are refused before allocating; an allocation the host refuses is re-thrown
 * as a `RangeError` naming `who` (the op), the shape, the dtype and the bytes, with the engine's
 * error as `cause`.
 */
export function allocTensorArray(dtype: DType, shape: readonly number[], who: string): TypedArray {
  return allocStorage(dtype, shape, who, true);
}

/**
 * Like {@linkcode allocTensorArray} but a recycled array is not zeroed: it may hold another tensor's
 * old values. For kernel outputs whose every element the caller writes (saves a pass over memory).
 */
export function allocOutputArray(dtype: DType, shape: readonly number[], who: string): TypedArray {
  return allocStorage(dtype, shape, who, false);
}

function allocStorage(dtype: DType, shape: readonly number[], who: string, zeroed: boolean): TypedArray {
  checkAllocation(dtype, shape, who);
  try {
    return takeStorage(dtype, shapeSize(shape), zeroed);
  } catch (e) {
    throw allocationError(e, dtype, shape, who);
  }
}

/**
 * Runs `fn`, which allocates the storage of a `dtype` tensor of `shape` (e.g. a kernel that returns its
 * own output array); a `RangeError` from the engine's allocator becomes the error of
 * {@linkcode allocTensorArray}.
 */
export function guardAllocation<T>(dtype: DType, shape: readonly number[], who: string, fn: () => T): T {
  checkAllocation(dtype, shape, who);
  try {
    return fn();
  } catch (e) {
    throw allocationError(e, dtype, shape, who);
  }
}

function allocationError(e: unknown, dtype: DType, shape: readonly number[], who: string): unknown {
  if (
    !(e instanceof RangeError) ||
    !/allocation failed|Invalid typed array length|Invalid array buffer length/i.test(e.message)
  ) {
    return e;
  }
  const n = shapeSize(shape), bytes = n * BYTES_PER[dtype];
  return new RangeError(
    `${who}: cannot allocate a ${dtype} tensor of shape ${fmtShape(shape)}: ${fmtCount(n)} elements, ` +
      `${fmtCount(bytes)} bytes (${fmtBytes(bytes)}), refused by the host (${e.message}); use a smaller ` +
      `shape or batch size, or release tensors you no longer need`,
    { cause: e },
  );
}
