/**
 * A size-bucketed pool of GPU storage buffers. Sizes round up to a bucket (multiples of 256 bytes
 * up to 4 KiB, then four buckets per power of two: at most 25 % slack), released buffers wait in
 * their bucket's free list, and the counts and bytes of live and free buffers are tracked so that
 * tests can check that memory stays flat.
 *
 * Reusing a released buffer is safe without waiting for the GPU: WebGPU executes queue operations
 * in submission order, so a later write to a recycled buffer happens after every earlier read.
 *
 * @module
 */
import type { GpuContext } from "./device.ts";

/** Memory statistics of a {@linkcode BufferPool}. */
export interface PoolStats {
  /** Buffers handed out and not yet released. */
  liveBuffers: number;
  /** Bytes of those buffers (bucket sizes). */
  liveBytes: number;
  /** Released buffers kept for reuse. */
  freeBuffers: number;
  /** Bytes of those buffers. */
  freeBytes: number;
  /** Buffers created since the pool started. */
  created: number;
  /** Requests served from the free lists. */
  reused: number;
}

/** The bucket size (bytes) that a request of `bytes` bytes gets. */
export function bucketSize(bytes: number): number {
  if (bytes <= 4096) return Math.max(256, Math.ceil(bytes / 256) * 256);
  const p = 2 ** Math.floor(Math.log2(bytes));
  const q = p / 4;
  return Math.ceil(bytes / q) * q;
}

/** Buffer usage of every pooled storage buffer. */
const STORAGE_USAGE = 0x80 /* STORAGE */ | 0x04 /* COPY_SRC */ | 0x08; /* COPY_DST */

/** Pools GPU storage buffers by bucket size. */
export class BufferPool {
  readonly #ctx: GpuContext;
  /** Free buffers by bucket, each list ordered from the newest buffer to the oldest (popped first). */
  readonly #free = new Map<number, GPUBuffer[]>();
  /** Creation order of every buffer the pool made. */
  readonly #order = new WeakMap<GPUBuffer, number>();
  #liveBuffers = 0;
  #liveBytes = 0;
  #freeBuffers = 0;
  #freeBytes = 0;
  #created = 0;
  #reused = 0;

  /** A pool for the device of `ctx`. */
  constructor(ctx: GpuContext) {
    this.#ctx = ctx;
  }

  /** The largest tensor size in bytes that a buffer can hold (and a kernel can bind). */
  get maxBytes(): number {
    const l = this.#ctx.limits;
    return Math.min(l.maxBufferSize, l.maxStorageBufferBindingSize);
  }

  /**
   * A buffer of at least `bytes` bytes. `what` describes the tensor for the error raised when the
   * size exceeds the device limit.
   */
  acquire(bytes: number, what: string): GPUBuffer {
    const limit = this.maxBytes;
    if (bytes > limit) {
      const which = this.#ctx.limits.maxStorageBufferBindingSize <= this.#ctx.limits.maxBufferSize
        ? "maxStorageBufferBindingSize"
        : "maxBufferSize";
      throw new RangeError(
        `webgpu: ${what} needs a buffer of ${bytes} bytes, which exceeds the device limit ${which} = ${limit} bytes`,
      );
    }
    let size = bucketSize(bytes);
    if (size > limit) size = Math.ceil(bytes / 16) * 16;
    const list = this.#free.get(size);
    let buf = list?.pop();
    if (buf) {
      this.#freeBuffers--;
      this.#freeBytes -= size;
      this.#reused++;
    } else {
      buf = this.#ctx.device.createBuffer({ size, usage: STORAGE_USAGE });
      this.#order.set(buf, this.#created++);
    }
    this.#liveBuffers++;
    this.#liveBytes += size;
    return buf;
  }

  /** Returns a buffer obtained from {@linkcode acquire} to its free list. */
  release(buf: GPUBuffer): void {
    const size = buf.size;
    this.#liveBuffers--;
    this.#liveBytes -= size;
    let list = this.#free.get(size);
    if (!list) this.#free.set(size, list = []);
    // Kept ordered so that the oldest free buffer goes out first (see acquire).
    const order = this.#order.get(buf) ?? Infinity;
    let at = list.length;
    while (at > 0 && (this.#order.get(list[at - 1]) ?? Infinity) < order) at--;
    list.splice(at, 0, buf);
    this.#freeBuffers++;
    this.#freeBytes += size;
  }

  /** Destroys every free buffer (live ones are untouched). */
  trim(): void {
    for (const list of this.#free.values()) for (const b of list) b.destroy();
    this.#free.clear();
    this.#freeBuffers = 0;
    this.#freeBytes = 0;
  }

  /** Current statistics. */
  stats(): PoolStats {
    return {
      liveBuffers: this.#liveBuffers,
      liveBytes: this.#liveBytes,
      freeBuffers: this.#freeBuffers,
      freeBytes: this.#freeBytes,
      created: this.#created,
      reused: this.#reused,
    };
  }
}
