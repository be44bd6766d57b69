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

/**
 * The free buffers of one bucket as a binary min-heap on their creation order: `pop` gives the
 * oldest, and both operations take O(log n) whatever the order of releases (a sorted list cost
 * O(n) per release when buffers came back in creation order, as `tidy` returns them).
 */
class OldestFirst {
  readonly #bufs: GPUBuffer[] = [];
  readonly #keys: number[] = [];

  get size(): number {
    return this.#bufs.length;
  }

  push(buf: GPUBuffer, key: number): void {
    const b = this.#bufs, k = this.#keys;
    let i = b.length;
    b.push(buf);
    k.push(key);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (k[parent] <= key) break;
      b[i] = b[parent];
      k[i] = k[parent];
      i = parent;
    }
    b[i] = buf;
    k[i] = key;
  }

  pop(): GPUBuffer | undefined {
    const b = this.#bufs, k = this.#keys;
    if (b.length === 0) return undefined;
    const top = b[0];
    const lastBuf = b.pop()!, lastKey = k.pop()!;
    const n = b.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i, mk = lastKey;
        if (l < n && k[l] < mk) [m, mk] = [l, k[l]];
        if (r < n && k[r] < mk) [m, mk] = [r, k[r]];
        if (m === i) break;
        b[i] = b[m];
        k[i] = k[m];
        i = m;
      }
      b[i] = lastBuf;
      k[i] = lastKey;
    }
    return top;
  }

  /** Every buffer held, in no particular order. */
  values(): readonly GPUBuffer[] {
    return this.#bufs;
  }
}

/** Buffer usage of every pooled storage buffer. */
const STORAGE_USAGE = 0x80 /* STORAGE */ | 0x04 /* COPY_SRC */ | 0x08; /* COPY_DST */

/** Pools GPU storage buffers by bucket size. */
export class BufferPool {
  readonly #ctx: GpuContext;
  /** Free buffers by bucket, the oldest handed out first (see {@linkcode BufferPool.acquire}). */
  readonly #free = new Map<number, OldestFirst>();
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
    if (!list) this.#free.set(size, list = new OldestFirst());
    list.push(buf, this.#order.get(buf) ?? Infinity);
    this.#freeBuffers++;
    this.#freeBytes += size;
  }

  /** Destroys every free buffer (live ones are untouched). */
  trim(): void {
    for (const list of this.#free.values()) for (const b of list.values()) b.destroy();
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
