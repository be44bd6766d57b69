/**
 * The `Tensor` type: an immutable n-dimensional array of float32 (default) or float64 numbers that
 * lives on a device ("cpu" or "webgpu"). Ops never modify a tensor; they return new ones.
 *
 * @module
 */
import { getBackend } from "./backend.ts";
import { releaseStorage, retainStorage, takeStorage } from "./cpu/storage_pool.ts";

import type { Device, DType, TypedArray } from "./types.ts";

export type { Device, DType, TypedArray } from "./types.ts";

let nextId = 1;

/** Set by `Tensor`'s static block: it reads and marks the private fields. */
let releaseCpuTensorImpl: (t: Tensor) => void;

/**
 * Releases a CPU tensor: its array goes back to the storage pool once no other tensor wraps it
 * (only arrays the library allocated, of 65,536 elements or more), and the tensor is marked so that
 * reading its storage afterwards throws. Idempotent; a no-op for small and user-owned arrays.
 * Internal: the CPU backend's `release`.
 */
export function releaseCpuTensor(t: Tensor): void {
  releaseCpuTensorImpl(t);
}

/** Called with every tensor created while it is installed (see {@linkcode observeTensorCreation}). */
export type TensorCreationObserver = (t: Tensor) => void;
const observers = new Set<TensorCreationObserver>();

/**
 * Calls `fn` with every tensor created from now until the returned function is called. Internal:
 * the memory scopes of `src/memory.ts` are built on it, and tests use it to see what a call created;
 * not part of the public API.
 */
export function observeTensorCreation(fn: TensorCreationObserver): () => void {
  // A wrapper, so that observing twice with the same function is two observers.
  const entry: TensorCreationObserver = (t) => fn(t);
  observers.add(entry);
  return () => void observers.delete(entry);
}

/**
 * An immutable n-dimensional array. Create one with {@linkcode tensor}, {@linkcode zeros},
 * {@linkcode randn} and friends; read it back with {@linkcode Tensor.data}.
 */
export class Tensor {
  /** Dimensions, outermost first. `[]` is a scalar. */
  readonly shape: readonly number[];
  /** Element type. */
  readonly dtype: DType;
  /** Device holding the data. */
  readonly device: Device;
  /** Number of elements (product of the shape). */
  readonly size: number;
  /** Unique id, handy for debugging and as a map key. */
  readonly id: number;
  #storage: unknown;
  /** Set when a released CPU tensor's array may be recycled (see `src/cpu/storage_pool.ts`). */
  #released = false;

  static {
    releaseCpuTensorImpl = (t) => {
      if (!t.#released && releaseStorage(t.#storage as TypedArray)) t.#released = true;
    };
  }

  /** Wraps existing storage. Internal: use the creation helpers instead. */
  constructor(storage: unknown, shape: readonly number[], dtype: DType, device: Device) {
    this.#storage = storage;
    this.shape = Object.freeze(shape.slice());
    this.dtype = dtype;
    this.device = device;
    this.size = shapeSize(shape);
    this.id = nextId++;
    if (device === "cpu") retainStorage(storage as TypedArray);
    if (observers.size > 0) { for (const o of observers) o(this); }
  }

  /**
   * Backend storage: a `Float32Array`/`Float64Array` on the CPU (never mutated while the tensor
   * is in use), a GPU buffer handle on WebGPU. Internal: use {@linkcode Tensor.data} to read.
   * Throws for a released CPU tensor whose array went back to the storage pool (65,536 elements or
   * more): another tensor may own that array now.
   */
  get storage(): unknown {
    if (this.#released) {
      throw new Error(
        `${this.toString()} was released (by dispose, tidy, valueAndGrad or \`using\`) and its storage ` +
          `may now belong to another tensor; keep the tensor out of the release (return it from tidy, ` +
          `pass it in dispose's keep) or copy it with dataSync() before`,
      );
    }
    return this.#storage;
  }

  /** Number of dimensions. */
  get rank(): number {
    return this.shape.length;
  }

  /**
   * A host copy of the data, in row-major order. The device copy is encoded when `data()` is
   * called, so the tensor may be released right after, before the promise settles.
   */
  async data(): Promise<TypedArray> {
    if (this.device === "cpu") return (this.storage as TypedArray).slice();
    return await getBackend(this.device).read(this);
  }

  /** A host copy of the data, synchronously; CPU tensors only. */
  dataSync(): TypedArray {
    if (this.device !== "cpu") {
      throw new Error(
        `Tensor.dataSync: tensor is on ${this.device}; use await t.data() (GPU reads are asynchronous)`,
      );
    }
    return (this.storage as TypedArray).slice();
  }

  /** The single value of a one-element CPU tensor. */
  item(): number {
    if (this.size !== 1) {
      throw new Error(`Tensor.item: tensor has shape [${this.shape}] (${this.size} elements), expected 1`);
    }
    return this.dataSync()[0];
  }

  /**
   * Releases the tensor's device storage now instead of when it is garbage collected, so that
   * `using t = …` frees a GPU buffer at the end of the block. On the CPU, a large array (65,536
   * elements or more) goes back to a pool that later ops reuse; small ones are left to the garbage
   * collector. A no-op when called again. The tensor must not be used afterwards (reading a
   * released GPU tensor, or a released CPU tensor whose array was pooled, throws).
   * Inside a function passed to `valueAndGrad`, leave releasing to `valueAndGrad` (the backward
   * pass may still need the tensor).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { mul, sum, tensor } from "@nvrm/core";
   * const x = tensor([1, 2, 3]);
   * let total: number;
   * {
   *   using sq = mul(x, x); // released at the end of this block
   *   total = sum(sq).item();
   * }
   * assert.equal(total, 14);
   * ```
   */
  [Symbol.dispose](): void {
    getBackend(this.device).release(this);
  }

  /** A short description: shape, dtype and device. */
  toString(): string {
    return `Tensor([${this.shape.join(", ")}], ${this.dtype}, ${this.device})`;
  }
}

/** Product of the dimensions (1 for a scalar). */
export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Throws unless every dim is a non-negative integer. `who` names the op and argument. */
export function checkShape(shape: readonly number[], who: string): void {
  if (!Array.isArray(shape)) throw new TypeError(`${who}: shape must be an array of integers, got ${shape}`);
  shape.forEach((d, i) => {
    if (!Number.isInteger(d) || d < 0) {
      throw new RangeError(
        `${who}: shape[${i}] must be a non-negative integer, got ${d} (shape ${fmtShape(shape)})`,
      );
    }
  });
}

/** Row-major strides of a shape. */
export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/**
 * Allocates a zeroed typed array of `dtype` for tensor storage (recycled from the CPU storage pool
 * when one of that dtype and length is free).
 */
export function allocArray(dtype: DType, n: number): TypedArray {
  return takeStorage(dtype, n, true);
}

/** True when two shapes are equal. */
export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Formats a shape for error messages: `[2, 3]`. */
export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}
