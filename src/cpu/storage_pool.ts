/**
 * Recycling of large CPU tensor storage. Every training step makes the same large arrays again
 * (activations, their gradients, optimizer outputs); allocating them fresh costs a page fault per
 * 4 KiB touched on some hosts (tens of milliseconds for a 32 MiB array) and leaves the old ones to
 * the garbage collector. Here an array the library allocated itself returns to a free list, keyed by
 * dtype and length, when the last tensor using it is released (`dispose`, `tidy`, `valueAndGrad`),
 * and the next allocation of that dtype and length takes it back.
 *
 * Safety rests on three rules:
 * - only arrays registered here are recycled: those {@linkcode takeStorage} handed out and those a
 *   kernel allocated and the backend {@linkcode adoptStorage | adopted}; an array a user passed in
 *   is never registered;
 * - a registered array counts the tensors wrapping it (reshape views and autodiff's leaf copies
 *   share storage; the `Tensor` constructor calls {@linkcode retainStorage}) and is recycled only
 *   when every one of them was released: tensors that are garbage collected without being released
 *   keep their array out of the pool for good;
 * - a released tensor whose array is registered is marked, and reading its storage afterwards
 *   throws (see `Tensor.storage`), so a use after `dispose` fails loudly instead of reading an array
 *   that now belongs to another tensor.
 *
 * Arrays of at least {@linkcode POOL_MIN_ELEMENTS} elements are registered (smaller ones are left
 * to the garbage collector, and their tensors stay usable after release, as before); the free lists
 * keep all of them, up to {@linkcode DEFAULT_POOL_BYTES} bytes, until the first time an array of at
 * least {@linkcode DEFAULT_POOLED_MIN_ELEMENTS} elements finds no room: then the shorter ones leave
 * and only the long ones are kept from then on (see {@linkcode setCpuStoragePoolAdaptive}; the bound,
 * the long length and the rule are adjustable). When an array does not fit, free arrays
 * that are stale — large allocations were made since they were returned, none of their dtype and
 * length — are dropped, oldest first, and if that leaves no room the incoming array is dropped
 * instead. A training loop allocates the same sizes in the same order every step and releases them
 * all at its end; dropping the oldest array there (least-recently-used order) would drop exactly
 * the ones the next step asks for first, leaving next to nothing to reuse once a step's arrays
 * exceed the bound, while this rule keeps the first ones and still lets sizes no longer used
 * (another batch size, a finished phase) leave. Internal: the CPU backend and `src/alloc.ts` use
 * it; tests and benchmarks use the switches and the counters.
 *
 * @module
 */
import type { DType, TypedArray } from "../types.ts";

/** Arrays shorter than this are never registered nor recycled. */
export const POOL_MIN_ELEMENTS = 65536;

/** Default bound on the bytes held by the free lists (2 GiB). */
export const DEFAULT_POOL_BYTES = 2 * 1024 * 1024 * 1024;

/**
 * Default shortest array the free lists keep once they have narrowed (and always, with the adaptive
 * rule off): 4 Mi elements (16 MiB of float32). Larger arrays are mapped fresh from the kernel for
 * every allocation (glibc's mmap threshold stops at 32 MiB), and on the 2-core VM this was measured
 * on, every first touch of a fresh 4 KiB page costs ~11 µs; smaller ones are often recycled by the
 * C allocator, but keeping them too still made a ResNet step 1.09–1.13× faster at batch 32
 * (ResNet-20) when everything fits in the bound, and 0.77× at ResNet-18 batch 128 when it does not
 * (the kept short arrays crowd out long ones): hence the adaptive rule.
 */
export const DEFAULT_POOLED_MIN_ELEMENTS = 4 * 1024 * 1024;

/** Counters of {@linkcode cpuStoragePoolStats} (since the last {@linkcode resetCpuStoragePool}). */
export interface CpuStoragePoolStats {
  /** Allocations served from a free list. */
  reused: number;
  /** Large allocations made fresh (none of their dtype and length was free). */
  fresh: number;
  /** Arrays that went to a free list when their last tensor was released. */
  returned: number;
  /** Stale arrays dropped from the free lists to make room. */
  evicted: number;
  /** Released arrays not kept because the free lists were full (of sizes still asked for). */
  dropped: number;
  /** Arrays in the free lists now. */
  freeArrays: number;
  /** Bytes in the free lists now. */
  freeBytes: number;
  /** The bound on `freeBytes` (0: recycling is off). */
  maxBytes: number;
  /** The shortest array the free lists keep now (an adaptive pool's narrows once; see `setCpuStoragePoolAdaptive`). */
  minElements: number;
}

/** Tensors wrapping each registered array (0: none, the array is idle or in a free list). */
const refs = new WeakMap<TypedArray, number>();
/** Free arrays by {@linkcode keyOf}, most recently returned last. */
const free = new Map<number, TypedArray[]>();
/** Every free array, oldest first, with the {@linkcode asks} count when it was returned. */
const order = new Map<TypedArray, number>();
/** The {@linkcode asks} count at the last allocation that asked for each key. */
const lastAsked = new Map<number, number>();
/** Large allocations so far: orders "returned" against "asked for". */
let asks = 0;
let freeBytes = 0;
let maxBytes = DEFAULT_POOL_BYTES;
/** Registered arrays shorter than this are not kept in the free lists ({@linkcode setCpuStoragePoolMinElements}). */
let minPooled = DEFAULT_POOLED_MIN_ELEMENTS;
/** Whether the free lists start out keeping every registered array ({@linkcode setCpuStoragePoolAdaptive}). */
let adaptive = true;
/** Whether an adaptive pool has given up its smaller arrays (it dropped a large one for lack of room). */
let narrowed = false;
const counts = { reused: 0, fresh: 0, returned: 0, evicted: 0, dropped: 0 };

/** One number per (dtype, length): lengths are below 2^53 / 8, so the doubling is exact. */
function keyOf(f64: boolean, n: number): number {
  return 2 * n + (f64 ? 1 : 0);
}

function unlinkFree(a: TypedArray): void {
  const list = free.get(keyOf(a instanceof Float64Array, a.length))!;
  const i = list.lastIndexOf(a);
  list[i] = list[list.length - 1];
  list.pop();
  order.delete(a);
  freeBytes -= a.byteLength;
}

/**
 * A `dtype` array of `n` elements for tensor storage: a recycled one when the free list has one of
 * that dtype and length (zero-filled when `zeroed`; otherwise holding old values, for callers that
 * write every element), else a fresh zeroed one. Arrays of at least {@linkcode POOL_MIN_ELEMENTS}
 * elements are registered, so that they return to the pool once their tensors are released. May
 * throw the engine's `RangeError` when the host refuses the memory.
 */
export function takeStorage(dtype: DType, n: number, zeroed: boolean): TypedArray {
  const f64 = dtype === "float64";
  if (n < POOL_MIN_ELEMENTS) return f64 ? new Float64Array(n) : new Float32Array(n);
  const key = keyOf(f64, n);
  lastAsked.set(key, ++asks);
  const list = free.get(key);
  if (list !== undefined && list.length > 0) {
    const a = list[list.length - 1];
    unlinkFree(a);
    counts.reused++;
    if (zeroed) a.fill(0);
    return a;
  }
  let a: TypedArray;
  try {
    a = f64 ? new Float64Array(n) : new Float32Array(n);
  } catch (e) {
    // the host is short of memory: give back what the free lists hold and try once more (and keep
    // long arrays only from now on)
    if (freeBytes === 0) throw e;
    clearFree();
    narrowed = true;
    a = f64 ? new Float64Array(n) : new Float32Array(n);
  }
  counts.fresh++;
  refs.set(a, 0);
  return a;
}

/**
 * Registers an array a kernel allocated for a new tensor's storage (it must hold no other
 * reference to it), so that it is recycled like those of {@linkcode takeStorage}. Returns `a`.
 */
export function adoptStorage<A extends TypedArray>(a: A): A {
  if (a.length >= POOL_MIN_ELEMENTS && !refs.has(a)) refs.set(a, 0);
  return a;
}

/** Counts one more tensor wrapping `a` (the `Tensor` constructor calls it for CPU storage). */
export function retainStorage(a: TypedArray): void {
  if (a.length < POOL_MIN_ELEMENTS) return;
  const r = refs.get(a);
  if (r === undefined) return;
  // An array wrapped again after its tensors were released (a reference kept from before):
  // it leaves the free list, so that nothing else is handed it.
  if (r === 0 && order.has(a)) unlinkFree(a);
  refs.set(a, r + 1);
}

/**
 * Counts one tensor wrapping `a` fewer; the array goes to its free list when none is left and the
 * pool has room. Returns whether `a` is registered (then the tensor must be marked released: its
 * storage may be handed to another tensor). Call it once per tensor.
 */
export function releaseStorage(a: TypedArray): boolean {
  if (a.length < POOL_MIN_ELEMENTS) return false;
  const r = refs.get(a);
  if (r === undefined) return false;
  if (r > 1) {
    refs.set(a, r - 1);
    return true;
  }
  refs.set(a, 0);
  if (r === 1 && maxBytes > 0 && a.length >= (adaptive && !narrowed ? POOL_MIN_ELEMENTS : minPooled)) {
    if (freeBytes + a.byteLength > maxBytes && a.byteLength <= maxBytes) {
      evictStale(freeBytes + a.byteLength - maxBytes);
      if (adaptive && !narrowed && freeBytes + a.byteLength > maxBytes && a.length >= minPooled) narrow();
    }
    if (freeBytes + a.byteLength > maxBytes) {
      counts.dropped++;
      return true;
    }
    const key = keyOf(a instanceof Float64Array, a.length);
    let list = free.get(key);
    if (list === undefined) free.set(key, list = []);
    list.push(a);
    order.set(a, asks);
    freeBytes += a.byteLength;
    counts.returned++;
  }
  return true;
}

/** Drops stale free arrays (see the module doc), oldest first, until `bytes` are freed or none is left. */
function evictStale(bytes: number): void {
  let freed = 0;
  for (const [a, returnedAt] of order) {
    if (freed >= bytes) return;
    const stale = asks > returnedAt &&
      (lastAsked.get(keyOf(a instanceof Float64Array, a.length)) ?? 0) <= returnedAt;
    if (!stale) continue;
    freed += a.byteLength;
    unlinkFree(a); // deleting the entry being visited is safe in a Map iteration
    counts.evicted++;
  }
}

/** An adaptive pool's switch to keeping large arrays only: its free arrays shorter than `minPooled` leave. */
function narrow(): void {
  narrowed = true;
  for (const a of order.keys()) {
    if (a.length >= minPooled) continue;
    unlinkFree(a);
    counts.evicted++;
  }
}

function clearFree(): void {
  free.clear();
  order.clear();
  lastAsked.clear();
  freeBytes = 0;
}

/**
 * Sets the bound on the bytes the free lists hold (default {@linkcode DEFAULT_POOL_BYTES}); 0 turns
 * recycling off (released tensors are still marked). Drops free arrays, oldest first, to fit the new
 * bound.
 * Returns the previous bound. Internal: for tests and benchmarks.
 */
export function setCpuStoragePoolBytes(bytes: number): number {
  if (!(Number.isSafeInteger(bytes) && bytes >= 0)) {
    throw new RangeError(`setCpuStoragePoolBytes: bytes must be a non-negative integer, got ${bytes}`);
  }
  const prev = maxBytes;
  maxBytes = bytes;
  while (freeBytes > maxBytes) unlinkFree(order.keys().next().value!);
  return prev;
}

/**
 * Sets the shortest array the free lists keep (default {@linkcode DEFAULT_POOLED_MIN_ELEMENTS},
 * at least {@linkcode POOL_MIN_ELEMENTS}) when the adaptive rule is off or has narrowed (it starts
 * over); shorter registered arrays are still counted and their released tensors still marked.
 * Returns the previous value. Internal: for benchmarks (which sizes pay off depends on the host's allocator).
 */
export function setCpuStoragePoolMinElements(n: number): number {
  if (!(Number.isSafeInteger(n) && n >= POOL_MIN_ELEMENTS)) {
    throw new RangeError(
      `setCpuStoragePoolMinElements: n must be an integer >= ${POOL_MIN_ELEMENTS}, got ${n}`,
    );
  }
  const prev = minPooled;
  minPooled = n;
  narrowed = false;
  return prev;
}

/**
 * Turns the adaptive rule on (default) or off. When on, the free lists keep every registered
 * array ({@linkcode POOL_MIN_ELEMENTS} elements and more), which spares the smaller arrays' fresh
 * allocations too while a training step's arrays fit in the bound; the first time an array of at
 * least the {@linkcode setCpuStoragePoolMinElements | shortest kept length} is dropped for lack of
 * room, the free arrays shorter than that leave and the pool keeps only the long ones from then on
 * (a long array made fresh costs more per byte: the C allocator maps it anew, a page fault per
 * 4 KiB, where it reuses its heap for short ones), until {@linkcode resetCpuStoragePool}. Returns
 * the previous setting. Internal: for tests and benchmarks.
 */
export function setCpuStoragePoolAdaptive(on: boolean): boolean {
  const prev = adaptive;
  adaptive = on;
  narrowed = false;
  return prev;
}

/**
 * Empties the free lists, zeroes the counters and lets an adaptive pool keep short arrays again.
 * Internal: for tests and benchmarks.
 */
export function resetCpuStoragePool(): void {
  clearFree();
  narrowed = false;
  counts.reused =
    counts.fresh =
    counts.returned =
    counts.evicted =
    counts.dropped =
      0;
}

/** The pool's counters and size. Internal: for tests and benchmarks. */
export function cpuStoragePoolStats(): CpuStoragePoolStats {
  const minElements = adaptive && !narrowed ? POOL_MIN_ELEMENTS : minPooled;
  return { ...counts, freeArrays: order.size, freeBytes, maxBytes, minElements };
}
