/**
 * A WebAssembly instance with its own growable memory and a bump allocator over it: the working
 * memory of the single-threaded generated kernels (convolution, 2×2 pooling). A kernel call takes
 * regions with {@linkcode WasmArena.take} and frees them all with {@linkcode WasmArena.reset}; the
 * memory grows as needed and is kept.
 *
 * @module
 */
import { buildModule, Fn, I32 } from "./wasm_emit.ts";

const PAGE = 65536;

const ceilTo = (n: number, m: number): number => Math.ceil(n / m) * m;
/** Bytes of `n` float32/int32, rounded up to 64 (keeps every region 16-byte aligned). */
const bytesOf = (n: number): number => ceilTo(4 * n, 64);

/** zero(ptr, bytes): zeroes `bytes` (a multiple of 16) from `ptr`. */
function zeroFn(): Fn {
  const f = new Fn("zero", [I32, I32]);
  const [ptr, n] = [0, 1];
  const p = f.local(I32), end = f.local(I32);
  f.get(ptr).get(n).op("i32.add").set(end);
  f.for(p, { l: ptr }, { l: end }, 16, () => f.get(p).v128Zero().mem("v128.store"));
  return f;
}

/** The export every arena module has (emitted by the arena itself). */
export interface ArenaExports {
  /** Zeroes `bytes` (a multiple of 16) from byte `ptr`. */
  zero(ptr: number, bytes: number): void;
}

/** Options of a {@linkcode WasmArena}. */
export interface ArenaOptions {
  /** Pages of the fresh memory (default 16). */
  initialPages?: number;
  /**
   * A shared memory (growable up to 4 GiB, or the largest maximum the engine allows), so that
   * workers can instantiate {@linkcode WasmArena.bytes} over it (default false).
   */
  shared?: boolean;
  /** Bytes at the start of the memory the allocator never hands out (control words; default 0). */
  reserved?: number;
}

function arenaMemory(initial: number, shared: boolean): { memory: WebAssembly.Memory; maximum?: number } {
  if (!shared) return { memory: new WebAssembly.Memory({ initial }) };
  for (const maximum of [65536, 32768, 16384]) {
    try {
      return { memory: new WebAssembly.Memory({ initial, maximum, shared: true }), maximum };
    } catch (e) {
      if (maximum === 16384) throw e;
    }
  }
  throw new Error("unreachable");
}

/**
 * One instance of a generated module over its own memory, with a bump allocator. `E` types the
 * exports of the functions passed to the constructor (`zero` is added in front of them).
 */
export class WasmArena<E extends object> {
  /** The instance's memory (imported as `env.mem`). */
  readonly memory: WebAssembly.Memory;
  /** The instance's exports. */
  readonly ex: E & ArenaExports;
  /** The module's bytes (workers instantiate their own copy over a shared {@linkcode WasmArena.memory}). */
  readonly bytes: Uint8Array;
  /** Whether the memory is shared. */
  readonly shared: boolean;
  private readonly base: number;
  private top: number;

  /**
   * Compiles `fns` (plus `zero`) into a module over a fresh memory; `options.initialPages` (or a
   * number, for compatibility) sets its pages.
   */
  constructor(fns: Fn[], options: ArenaOptions | number = {}) {
    const o = typeof options === "number" ? { initialPages: options } : options;
    const initial = o.initialPages ?? 16;
    this.shared = o.shared ?? false;
    const { memory, maximum } = arenaMemory(initial, this.shared);
    this.memory = memory;
    this.bytes = buildModule({ initial, maximum, shared: this.shared }, [zeroFn(), ...fns]);
    const mod = new WebAssembly.Module(this.bytes as Uint8Array<ArrayBuffer>);
    this.ex = new WebAssembly.Instance(mod, { env: { mem: this.memory } }).exports as unknown as
      & E
      & ArenaExports;
    this.base = this.top = ceilTo(o.reserved ?? 0, 64);
  }

  /** Frees every region. */
  reset(): void {
    this.top = this.base;
  }

  /** The current top, to free back to with {@linkcode WasmArena.release}. */
  mark(): number {
    return this.top;
  }

  /** Frees the regions taken since `mark`. */
  release(mark: number): void {
    this.top = mark;
  }

  /** A region of `n` elements (not zeroed); its byte pointer. */
  take(n: number): number {
    const p = this.top;
    this.top += bytesOf(n);
    const have = this.memory.buffer.byteLength;
    if (this.top > have) this.memory.grow(Math.ceil((this.top - have) / PAGE));
    return p;
  }

  /** A float32 view of `n` elements at byte `ptr` (valid until the memory grows). */
  f32(ptr: number, n: number): Float32Array {
    return new Float32Array(this.memory.buffer, ptr, n);
  }

  /** An int32 view of `n` elements at byte `ptr` (valid until the memory grows). */
  i32(ptr: number, n: number): Int32Array {
    return new Int32Array(this.memory.buffer, ptr, n);
  }

  /** A zeroed region of `n` elements. */
  zeros(n: number): number {
    const p = this.take(n);
    this.ex.zero(p, bytesOf(n));
    return p;
  }

  /** A region holding a copy of `a`. */
  put(a: Float32Array | Int32Array): number {
    const p = this.take(a.length);
    (a instanceof Float32Array ? this.f32(p, a.length) : this.i32(p, a.length)).set(a);
    return p;
  }
}
