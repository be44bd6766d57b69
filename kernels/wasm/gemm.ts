/**
 * General matrix multiply for the CPU backend: `C = op(A)·op(B)` on row-major typed arrays.
 *
 * - float64: plain JavaScript (gradient checks; correctness only).
 * - float32: WebAssembly SIMD generated at run time (packed panels, register-tiled micro-kernel,
 *   cache blocking), spread over workers sharing the WebAssembly memory for large products;
 *   plain JavaScript where WebAssembly SIMD is missing.
 *
 * @example
 * ```ts
 * import { gemm } from "./gemm.ts";
 * const a = new Float32Array([1, 2, 3, 4]); // 2×2
 * const b = new Float32Array([5, 6, 7, 8]); // 2×2
 * const c = new Float32Array(4);
 * gemm({ M: 2, N: 2, K: 2, a, b, c }); // c = [19, 22, 43, 50]
 * ```
 *
 * @module
 */
import { type GemmArgs, type GemmArray, type GemmCall, resolveGemm } from "./gemm_call.ts";
import { gemmJs } from "./gemm_js.ts";
import { DEFAULT_TILING, hasRelaxedSimd, hasSharedMemory, hasWasmSimd, WasmGemmEngine } from "./gemm_wasm.ts";
import { GemmWorkerPool } from "./gemm_threads.ts";
import {
  onThreadLimitChange,
  type PoolThreadStats,
  poolThreadStats,
  threadSupport,
  type WorkerKind,
} from "./workers.ts";
import { ThreadChoice } from "./thread_choice.ts";

export type { GemmArgs, GemmArray, GemmCall } from "./gemm_call.ts";
export type { WorkerKind } from "./workers.ts";

/**
 * Which float32 implementation {@linkcode gemm} uses. `"auto"` (default): WebAssembly SIMD; for
 * products of at least {@linkcode GEMM_THREAD_MIN_FLOPS} flops, on as many participants (the
 * calling thread plus workers) as measure fastest for products of that size (1, 2, 4, … up to the
 * hardware threads; self-tuning per size class, see {@linkcode setGemmThreads}); `"js"`: plain
 * JavaScript; `"wasm"`: WebAssembly SIMD on the calling thread; `"wasm-threads"`: WebAssembly SIMD
 * on workers for every size (testing). Every implementation but `"js"` gives the same bits.
 */
export type GemmImpl = "auto" | "js" | "wasm" | "wasm-threads";

/** Products below this many flops (2·M·N·K) stay on the calling thread in `"auto"` mode. */
export const GEMM_THREAD_MIN_FLOPS = 2 * 96 * 96 * 96;

/**
 * The work-size prior of `"auto"`: a size class starts with at most one participant per this many
 * flops (0.22–0.33 ms of one thread's work at the 30–45 GFLOP/s of products from 256³ up on a
 * 2-core x86-64 VM), before measurements move it.
 */
export const GEMM_FLOPS_PER_PARTICIPANT = 1e7;

/** What this platform supports. */
export interface GemmCapabilities {
  /** WebAssembly fixed-width SIMD. */
  wasmSimd: boolean;
  /** Relaxed SIMD (fused multiply-add in the micro-kernel). */
  relaxedSimd: boolean;
  /** Participants (calling thread + workers) the threaded path can use; 1 when unavailable. */
  threads: number;
  /** Why workers are unavailable, when they are. */
  threadsUnavailable?: string;
}

let support = threadSupport();
let caps = computeCapabilities();

// A new thread limit: new workers, workspaces for the new count, choices measured again (settings
// the new count cannot honour fall back to "auto").
onThreadLimitChange(() => {
  shutdownGemmWorkers();
  support = threadSupport(support.kind);
  caps = computeCapabilities();
  engine = undefined;
  choice = undefined;
  if (fixedThreads !== "auto" && fixedThreads > caps.threads) fixedThreads = "auto";
  if (impl === "wasm-threads" && caps.threads <= 1) impl = "auto";
});

function computeCapabilities(): GemmCapabilities {
  const threads = hasWasmSimd && hasSharedMemory && support.ok ? support.participants : 1;
  const c: GemmCapabilities = { wasmSimd: hasWasmSimd, relaxedSimd: hasRelaxedSimd, threads };
  if (threads <= 1) {
    c.threadsUnavailable = !hasWasmSimd
      ? "no WebAssembly SIMD"
      : !hasSharedMemory
      ? "no SharedArrayBuffer (shared WebAssembly memory)"
      : support.reason ?? "a single hardware thread";
  }
  return c;
}

/** What this platform supports for {@linkcode gemm}. */
export function gemmCapabilities(): GemmCapabilities {
  return { ...caps };
}

let impl: GemmImpl = "auto";
let fixedThreads: number | "auto" = "auto";
let engine: WasmGemmEngine | undefined;
let pool: GemmWorkerPool | undefined;

function getEngine(): WasmGemmEngine {
  if (!engine) {
    const parts = caps.threads;
    engine = new WasmGemmEngine(
      { ...DEFAULT_TILING, fma: DEFAULT_TILING.fma && hasRelaxedSimd },
      parts > 1,
      parts,
    );
  }
  return engine;
}

function getPool(): GemmWorkerPool {
  if (!pool) pool = new GemmWorkerPool(getEngine(), support);
  return pool;
}

/**
 * Forces the float32 implementation of {@linkcode gemm} (float64 always uses plain JavaScript).
 * Throws when the platform lacks what `which` needs (see {@linkcode gemmCapabilities}).
 */
export function setGemmImpl(which: GemmImpl): void {
  if (which !== "auto" && which !== "js" && which !== "wasm" && which !== "wasm-threads") {
    throw new Error(
      `setGemmImpl: which must be "auto", "js", "wasm" or "wasm-threads", got ${String(which)}`,
    );
  }
  if ((which === "wasm" || which === "wasm-threads") && !caps.wasmSimd) {
    throw new Error(`setGemmImpl: "${which}" is unavailable: this engine has no WebAssembly SIMD`);
  }
  if (which === "wasm-threads" && caps.threads <= 1) {
    throw new Error(`setGemmImpl: "wasm-threads" is unavailable: ${caps.threadsUnavailable}`);
  }
  impl = which;
}

/** The float32 implementation {@linkcode gemm} currently uses (as set by {@linkcode setGemmImpl}). */
export function getGemmImpl(): GemmImpl {
  return impl;
}

/**
 * Chooses the worker API: `"node"` (`node:worker_threads`, unreferenced; the default where it
 * exists) or `"web"` (Web Workers; in Deno they keep the process alive until
 * {@linkcode shutdownGemmWorkers}). Stops the current workers. Throws when `kind` is unavailable.
 */
export function setGemmWorkerKind(kind: WorkerKind): void {
  const s = threadSupport(kind);
  if (!s.ok || s.kind !== kind) {
    throw new Error(`setGemmWorkerKind: "${kind}" workers are unavailable: ${s.reason ?? `got "${s.kind}"`}`);
  }
  shutdownGemmWorkers();
  support = s;
  caps = computeCapabilities();
  choice = undefined; // its candidates follow the participants
}

/**
 * Stops the GEMM workers (they restart on the next threaded product). Only needed where workers
 * would keep a process alive (Web Workers); Deno and Node use unreferenced `node:worker_threads`.
 */
export function shutdownGemmWorkers(): void {
  pool?.shutdown();
  pool = undefined;
}

/**
 * How many participants (the calling thread plus workers) a threaded product uses: `"auto"`
 * (default: chosen per size class by measured time, see `thread_choice.ts`) or a fixed count in
 * `[1, gemmCapabilities().threads]` (benchmarks, tests), used by `"auto"` products of at least
 * {@linkcode GEMM_THREAD_MIN_FLOPS} flops and by every `"wasm-threads"` product. Every count gives
 * the same bits. Returns the previous setting.
 */
export function setGemmThreads(threads: number | "auto"): number | "auto" {
  if (threads !== "auto" && !(Number.isInteger(threads) && threads >= 1 && threads <= caps.threads)) {
    throw new RangeError(
      `setGemmThreads: threads must be "auto" or an integer in [1, ${caps.threads}] (the participants ` +
        `available here), got ${String(threads)}`,
    );
  }
  const prev = fixedThreads;
  fixedThreads = threads;
  return prev;
}

/** The setting of {@linkcode setGemmThreads}. */
export function getGemmThreads(): number | "auto" {
  return fixedThreads;
}

/**
 * Worker statistics: workers started, chunks of products they computed, and those per worker
 * (`byWorker[id − 1]` for worker `id`), and the pool's products by participant count
 * (`jobsByParticipants[k]`; the calling thread alone runs others outside the pool); all 0 or empty
 * before any start.
 */
export function gemmThreadStats(): PoolThreadStats {
  return poolThreadStats(pool ?? undefined);
}

function check(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0) throw new RangeError(`gemm: ${name} must be an integer >= 0, got ${v}`);
}

function checkArray(name: string, x: GemmArray, off: number, len: number): void {
  check(`${name}Off`, off);
  if (off + len > x.length) {
    throw new RangeError(
      `gemm: ${name} needs ${len} elements from offset ${off}, but has length ${x.length}`,
    );
  }
}

/**
 * C[M×N] = op(A)·op(B), overwriting C (see {@linkcode GemmCall}). Row-major: A is M×K (stored K×M
 * when `transA`), B is K×N (stored N×K when `transB`); the operands start at `aOff`, `bOff`, `cOff`
 * of their arrays. All three arrays must be of one type; C must not overlap A or B.
 */
export function gemm(call: GemmCall): void {
  const g = resolveGemm(call);
  const { M, N, K, a, aOff, b, bOff, c, cOff } = g;
  check("M", M);
  check("N", N);
  check("K", K);
  if (a.constructor !== b.constructor || a.constructor !== c.constructor) {
    throw new TypeError(
      `gemm: a, b and c must have one type, got ${a.constructor.name}, ${b.constructor.name}, ${c.constructor.name}`,
    );
  }
  if (!(a instanceof Float32Array) && !(a instanceof Float64Array)) {
    throw new TypeError(
      `gemm: arrays must be Float32Array or Float64Array, got ${(a as object).constructor.name}`,
    );
  }
  checkArray("a", a, aOff, M * K);
  checkArray("b", b, bOff, K * N);
  checkArray("c", c, cOff, M * N);
  if (M === 0 || N === 0) return;
  if (K === 0) {
    c.fill(0, cOff, cOff + M * N);
    return;
  }
  if (a instanceof Float64Array || impl === "js" || !hasWasmSimd) {
    gemmJs(g);
    return;
  }
  const g32 = g as GemmArgs<Float32Array>;
  const flops = 2 * M * N * K;
  if (impl === "wasm-threads") getPool().gemm(g32, fixedThreads === "auto" ? caps.threads : fixedThreads);
  else if (impl === "wasm" || flops < GEMM_THREAD_MIN_FLOPS || caps.threads <= 1) getEngine().gemm(g32);
  else if (fixedThreads !== "auto") gemmWith(fixedThreads, g32);
  else autoGemm(flops, g32);
}

function gemmWith(participants: number, g: GemmArgs<Float32Array>): void {
  if (participants > 1) getPool().gemm(g, participants);
  else getEngine().gemm(g);
}

/** The participant count per size class of the flop count (`ThreadChoice`); made on first use. */
let choice: ThreadChoice | undefined;

function autoGemm(flops: number, g: GemmArgs<Float32Array>): void {
  choice ??= new ThreadChoice({
    maxParticipants: caps.threads,
    exploreEvery: 8,
    workPerParticipant: GEMM_FLOPS_PER_PARTICIPANT,
  });
  const k = choice.choose(flops);
  const starting = k > 1 && !pool;
  const t0 = performance.now();
  gemmWith(k, g);
  if (starting) return; // this call paid for starting the workers: not representative
  choice.record(flops, k, performance.now() - t0);
}
