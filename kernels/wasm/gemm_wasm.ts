/**
 * The WebAssembly SIMD GEMM engine: one linear memory (shared when the platform allows, so workers
 * can join), operands copied in, the shared operand packed once, the product computed in chunks of
 * rows (or columns) that any number of participants may claim, the result copied out.
 *
 * Memory layout (bytes): `[0, 4096)` control words (see `gemm_threads.ts`), then one workspace per
 * participant (packed A block, packed B block, a scratch tile), then the operands.
 *
 * @module
 */
import type { GemmArgs } from "./gemm_call.ts";
import { type GemmExports, gemmModuleBytes, type GemmTiling } from "./gemm_wasm_module.ts";
import { buildModule, Fn, V128 } from "./wasm_emit.ts";

/** The tiling used by default (measured on x86-64 with AVX2/FMA; see bench/matmul_bench.ts). */
export const DEFAULT_TILING: GemmTiling = { MR: 6, NR: 8, KC: 256, MC: 120, NC: 1024, unroll: 4, fma: true };

/** Control block indices (Int32 words at byte 0). */
export const CTL = {
  GEN: 0,
  NEXT: 1,
  END: 2,
  BASE: 3,
  DONE: 4,
  STOP: 5,
  /** Nine arguments of `rows`/`cols` before the range. */
  ARGS: 8,
  MODE: 17,
  TOTAL: 18,
  CHUNK: 19,
  /** Chunks computed by workers (statistics). */
  WORKED: 20,
  WORDS: 32,
} as const;

const CTL_BYTES = 4096;
const PAGE = 65536;

function probe(bytes: number[]): boolean {
  try {
    return typeof WebAssembly === "object" && WebAssembly.validate(new Uint8Array(bytes));
  } catch {
    return false;
  }
}

function featureModule(body: (f: Fn) => void): number[] {
  const f = new Fn("f", [], [V128]);
  body(f);
  return Array.from(buildModule({ initial: 1, shared: false }, [f]));
}

/** Whether the engine supports WebAssembly fixed-width SIMD. */
export const hasWasmSimd: boolean = probe(featureModule((f) => f.f32(1).op("f32x4.splat")));

/** Whether the engine supports relaxed SIMD (`f32x4.relaxed_madd`). */
export const hasRelaxedSimd: boolean = hasWasmSimd &&
  probe(featureModule((f) => f.v128Zero().v128Zero().v128Zero().op("f32x4.relaxed_madd")));

/** Whether shared WebAssembly memories can be created (SharedArrayBuffer available). */
export const hasSharedMemory: boolean = (() => {
  try {
    return new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }).buffer instanceof
      SharedArrayBuffer;
  } catch {
    return false;
  }
})();

function align64(n: number): number {
  return Math.ceil(n / 64) * 64;
}

/** Operand placement and mode of one product inside the linear memory. */
export interface GemmJob {
  /** "rows" splits M (B packed once), "cols" splits N (A packed once). */
  mode: "rows" | "cols";
  /** The nine leading arguments of `rows`/`cols`. */
  args: number[];
  /** Extent of the split dimension. */
  total: number;
  /** Rows or columns per chunk. */
  chunk: number;
  /** Number of chunks. */
  chunks: number;
}

/** A GEMM engine over one WebAssembly memory and module. */
export class WasmGemmEngine {
  /** The linear memory (shared when `shared`). */
  readonly memory: WebAssembly.Memory;
  /** The compiled module's bytes (workers instantiate their own copy). */
  readonly bytes: Uint8Array;
  /** The main thread's instance exports. */
  readonly ex: GemmExports;
  /** Bytes of one participant's workspace. */
  readonly wsStride: number;
  /** Byte offset of the operands. */
  readonly dataBase: number;
  private f32: Float32Array;

  /** Creates the memory and compiles the module (synchronously; a few milliseconds). */
  constructor(
    /** Tiling of the generated kernels. */
    readonly tiling: GemmTiling,
    /** Use a shared memory (required for workers). */
    readonly shared: boolean,
    /** Number of participants (main thread plus workers) to reserve workspaces for. */
    readonly participants: number,
  ) {
    const t = tiling;
    this.wsStride = align64(t.MC * t.KC * 4) + align64(t.KC * t.NC * 4) + align64(t.MR * t.NR * 4);
    this.dataBase = CTL_BYTES + participants * this.wsStride;
    const initial = Math.ceil((this.dataBase + 4 * PAGE) / PAGE);
    let memory: WebAssembly.Memory | undefined;
    for (const maximum of shared ? [65536, 32768, 16384] : [undefined]) {
      try {
        memory = new WebAssembly.Memory({ initial, maximum, shared } as WebAssembly.MemoryDescriptor);
        break;
      } catch (e) {
        if (maximum === 16384) throw e;
      }
    }
    this.memory = memory!;
    this.bytes = gemmModuleBytes(t, { initial, maximum: shared ? 65536 : undefined, shared });
    const mod = new WebAssembly.Module(this.bytes as Uint8Array<ArrayBuffer>);
    this.ex = new WebAssembly.Instance(mod, { env: { mem: this.memory } }).exports as unknown as GemmExports;
    this.f32 = new Float32Array(this.memory.buffer);
  }

  /** Workspace pointers of participant `p`: packed A block, packed B block, scratch tile. */
  workspace(p: number): { wsA: number; wsB: number; scratch: number } {
    const t = this.tiling;
    const wsA = CTL_BYTES + p * this.wsStride;
    const wsB = wsA + align64(t.MC * t.KC * 4);
    return { wsA, wsB, scratch: wsB + align64(t.KC * t.NC * 4) };
  }

  /** The control words (Int32 view of the first bytes). */
  control(): Int32Array {
    return new Int32Array(this.memory.buffer, 0, CTL.WORDS);
  }

  /** Grows the memory to at least `bytes`. */
  private ensure(bytes: number): void {
    const have = this.memory.buffer.byteLength;
    if (bytes > have) this.memory.grow(Math.ceil((bytes - have) / PAGE));
    if (this.f32.buffer !== this.memory.buffer || this.f32.length * 4 !== this.memory.buffer.byteLength) {
      this.f32 = new Float32Array(this.memory.buffer);
    }
  }

  /**
   * Copies the operands in, packs the shared operand, and returns the job whose chunks compute C
   * (`runChunk`), plus where C lands. `parts` is the number of participants expected.
   */
  prepare(g: GemmArgs<Float32Array>, parts: number): { job: GemmJob; cPtr: number } {
    const { transA, transB, M, N, K, a, aOff, b, bOff } = g;
    const { MR, NR, MC, NC } = this.tiling;
    const Mpad = Math.ceil(M / MR) * MR, Npad = Math.ceil(N / NR) * NR;
    const mode = M >= N ? "rows" : "cols";
    const aPtr = this.dataBase;
    const bPtr = aPtr + align64(M * K * 4);
    const pPtr = bPtr + align64(K * N * 4);
    const cPtr = pPtr + align64(K * (mode === "rows" ? Npad : Mpad) * 4);
    const end = cPtr + align64(M * N * 4);
    if (end > 0xffff0000) {
      throw new RangeError(`gemm: operands need ${end} bytes of WebAssembly memory, more than 4 GiB`);
    }
    this.ensure(end);
    const f32 = this.f32;
    f32.set(a.subarray(aOff, aOff + M * K), aPtr >> 2);
    f32.set(b.subarray(bOff, bOff + K * N), bPtr >> 2);
    const rsA = transA ? 1 : K, csA = transA ? M : 1;
    const rsB = transB ? 1 : N, csB = transB ? K : 1;
    let job: GemmJob;
    if (mode === "rows") {
      this.ex.packBFull(bPtr, rsB, csB, K, N, Npad, pPtr);
      const chunk = parts > 1 ? Math.min(MC, Math.max(MR, Math.ceil(M / (4 * parts) / MR) * MR)) : M;
      job = { mode, args: [aPtr, rsA, csA, pPtr, Npad, cPtr, N, N, K], total: M, chunk, chunks: 0 };
    } else {
      this.ex.packAFull(aPtr, rsA, csA, M, Mpad, K, pPtr);
      const chunk = parts > 1 ? Math.min(NC, Math.max(NR, Math.ceil(N / (4 * parts) / NR) * NR)) : N;
      job = { mode, args: [pPtr, Mpad, bPtr, rsB, csB, cPtr, N, M, K], total: N, chunk, chunks: 0 };
    }
    job.chunks = Math.ceil(job.total / job.chunk);
    return { job, cPtr };
  }

  /** Computes chunk `i` of `job` with participant `p`'s workspace. */
  runChunk(job: GemmJob, i: number, p: number): void {
    const s = i * job.chunk, e = Math.min(job.total, s + job.chunk);
    const ws = this.workspace(p);
    const g = job.args;
    if (job.mode === "rows") {
      this.ex.rows(g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], s, e, ws.wsA, ws.scratch);
    } else {
      this.ex.cols(g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], s, e, ws.wsB, ws.scratch);
    }
  }

  /** Copies the M×N results of `g` from `cPtr` into `g.c` at `g.cOff`. */
  copyOut(cPtr: number, g: GemmArgs<Float32Array>): void {
    this.ensure(0);
    g.c.set(this.f32.subarray(cPtr >> 2, (cPtr >> 2) + g.M * g.N), g.cOff);
  }

  /** C = op(A)·op(B) on the calling thread alone. */
  gemm(g: GemmArgs<Float32Array>): void {
    const { job, cPtr } = this.prepare(g, 1);
    for (let i = 0; i < job.chunks; i++) this.runChunk(job, i, 0);
    this.copyOut(cPtr, g);
  }
}
