/**
 * The CPU noise engine: {@linkcode fillNoise} and {@linkcode streamNoise} draw the noise laws of
 * `fixed_point.ts` (the bit-exact reference, {@linkcode transformBlock}) on top of
 * Philox4x32-10. Element `i` of a stream with key `(k0, k1)` and counter words `(c1, c2)` comes
 * from the Philox block with counter `(floor(i / 4), c1, c2, 0)`, lane `i % 4`, so any slice of a
 * stream can be produced independently (on the CPU or on the GPU) and gives the same numbers.
 *
 * The draws are computed on one of two paths with identical output ({@linkcode setNoiseImpl}
 * picks one, for tests and benchmarks):
 *
 * - `"wasm"`: WebAssembly SIMD generated at run time (`kernels/wasm/noise_wasm.ts`), used by
 *   default wherever the engine has fixed-width SIMD;
 * - `"js"`: plain JavaScript (`noise_js.ts`), the fallback.
 *
 * Long streams are drawn by several threads where WebAssembly shared memory and blocking
 * `Atomics.wait` exist (`kernels/wasm/noise_threads.ts`: unreferenced `node:worker_threads`
 * workers running the same generated module over the same memory, each drawing whole chunks of
 * the stream; see {@linkcode setNoiseThreads}). Every element is a pure function of its counter,
 * so the thread that draws it changes no bit. {@linkcode streamNoise} hands the draws to a
 * consumer chunk by chunk, straight from where they were generated, for the optimizers' fused
 * loops.
 *
 * This module also re-exports the laws' vocabulary (`laws.ts`) and the reference arithmetic
 * (`fixed_point.ts`), so that one import serves the noise's users.
 *
 * @module
 */
import { NoiseWorkerPool, type ThreadSupport, threadSupport } from "../../kernels/wasm/noise_threads.ts";
import { onThreadLimitChange, type PoolThreadStats, poolThreadStats } from "../../kernels/wasm/workers.ts";
import {
  BLOCKS_PER_ITER,
  KEYS_BYTE,
  OUT_BYTE,
  REGION_BYTE,
  WasmNoise,
} from "../../kernels/wasm/noise_wasm.ts";
import { ThreadChoice } from "../../kernels/wasm/thread_choice.ts";
import { HALF_PI_Q25, LN2_Q25, LOG_OFFSET, LOG_RECIP } from "./fixed_point.ts";
import { lawCode, lawScale, type NoiseConsumer, type NoiseLaw, type StreamKey } from "./laws.ts";
import { drawBlocksJs, fillJs, streamJs } from "./noise_js.ts";

export {
  HALF_PI_Q25,
  LN2_Q25,
  LOG_OFFSET,
  LOG_RECIP,
  negLogQ25,
  sinCosQ25,
  transformBlock,
} from "./fixed_point.ts";
export { NOISE_LAWS, type NoiseConsumer, type NoiseLaw, type StreamKey } from "./laws.ts";

// ---------------------------------------------------------------------------------------------
// Choosing the path.

/**
 * The CPU implementation of the noise that {@linkcode fillNoise} and {@linkcode streamNoise} use:
 * `"auto"` (WebAssembly where available), `"wasm"` or `"js"`.
 */
export type CpuNoiseImpl = "auto" | "wasm" | "js";

const TABLES = { recip: LOG_RECIP, offset: LOG_OFFSET, ln2: LN2_Q25, halfPi: HALF_PI_Q25 };
let requested: CpuNoiseImpl = "auto";
/** The WebAssembly engines, created on first use; null where they cannot be. */
let engine: WasmNoise | null | undefined;
let rawEngine: WasmNoise | null | undefined;
let engineError: unknown;

function wasmEngine(): WasmNoise | null {
  if (engine === undefined) {
    try {
      // shared memory where it exists (the workers draw into it), private memory otherwise
      engine = typeof SharedArrayBuffer === "function" ? sharedEngine() : null;
      engine ??= new WasmNoise(TABLES);
    } catch (e) {
      engine = null;
      engineError = e;
    }
  }
  return engine;
}

function sharedEngine(): WasmNoise | null {
  try {
    return new WasmNoise(TABLES, false, true);
  } catch {
    return null;
  }
}

/** Whether the WebAssembly path can run here (compiles its module on the first call). */
export function noiseWasmAvailable(): boolean {
  return wasmEngine() !== null;
}

/**
 * Selects the implementation of {@linkcode fillNoise}: `"wasm"` (throws where WebAssembly SIMD is
 * unavailable), `"js"`, or `"auto"` (the default: WebAssembly where available). Both give the same
 * bits; this exists for tests and benchmarks.
 */
export function setNoiseImpl(impl: CpuNoiseImpl): void {
  if (impl !== "auto" && impl !== "wasm" && impl !== "js") {
    throw new RangeError(`setNoiseImpl: impl must be "auto", "wasm" or "js", got ${JSON.stringify(impl)}`);
  }
  if (impl === "wasm" && wasmEngine() === null) {
    throw new Error(`setNoiseImpl: WebAssembly SIMD is unavailable here (${engineError})`);
  }
  requested = impl;
}

/** The implementation {@linkcode fillNoise} uses now: `"wasm"` or `"js"`. */
export function getNoiseImpl(): "wasm" | "js" {
  return requested !== "js" && wasmEngine() !== null ? "wasm" : "js";
}

/**
 * Fills `out[j]` with element `start + j` of the stream `key` under `law` with scale `scale`
 * (`out.length` elements). `scale` is the std for gaussian, the Laplace scale b, or the half-width
 * of the uniform law. Every value is a float32 number, bit-identical to the GPU's and to
 * {@linkcode transformBlock} of the stream's Philox blocks, whichever path computes it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fillNoise } from "@nvrm/core/optim";
 * const n = new Float32Array(10);
 * fillNoise(n, "gaussian", 0.01, { k0: 0, k1: 1, c1: 2, c2: 0 }); // element i from block ⌊i/4⌋
 * const tail = new Float32Array(3);
 * fillNoise(tail, "gaussian", 0.01, { k0: 0, k1: 1, c1: 2, c2: 0 }, 7); // elements 7, 8, 9
 * assert.deepEqual(tail, n.subarray(7));
 * ```
 */
export function fillNoise(
  out: Float32Array | Float64Array,
  law: NoiseLaw,
  scale: number,
  key: StreamKey,
  start = 0,
): void {
  const code = lawCode("fillNoise", law);
  const sc = lawScale(code, scale);
  const w = requested === "js" || streaming ? null : wasmEngine();
  if (w === null) fillJs(out, code, sc, key, start);
  else if (poolFor(w, out.length) === null) w.fill(out, code, sc, key.k0, key.k1, key.c1, key.c2, start);
  else {
    streamWasm(w, out.length, code, sc, key, start, (lo, hi, draws, off) => {
      out.set(draws.subarray(off + lo, off + hi), lo);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Streams: the draws handed to a consumer chunk by chunk, on one thread or several.

/** Blocks the calling thread draws per chunk when it works alone (2048 elements, in L1). */
const SOLO_BLOCKS = 512;
/** Blocks per threaded round (the draw region holds one round: 512 Ki elements, 2 MiB). */
const ROUND_BLOCKS = 1 << 17;
/** Blocks per chunk of a threaded round, at most (8192 elements). */
const MAX_CHUNK_BLOCKS = 2048;
/** Streams of at least this many elements use the workers (when {@linkcode setNoiseThreads} is "auto"). */
export const NOISE_THREAD_MIN = 32768;
/** Most participants (the calling thread and workers) "auto" uses. */
const AUTO_MAX_THREADS = 8;
/**
 * The work-size prior of "auto": a size class of streams starts with at most one participant per
 * this many elements (about 0.3 ms of one thread's drawing at 4.3 ns per Gaussian), before
 * measurements move it.
 */
const NOISE_ELEMENTS_PER_PARTICIPANT = 1 << 16;

let threadSetting: number | "auto" = "auto";
/** True while the WebAssembly draw buffers are being handed to a consumer. */
let streaming = false;
let support: ThreadSupport | undefined;
/** The worker pool of the current engine; null when workers are unavailable here. */
let pool: NoiseWorkerPool | null | undefined;

// A new thread limit (`setThreadLimit`): new workers, choices measured again.
onThreadLimitChange(() => {
  shutdownNoiseWorkers();
  support = undefined;
  choice = undefined;
});

function autoThreads(): number {
  support ??= threadSupport();
  return support.ok ? Math.min(AUTO_MAX_THREADS, support.participants) : 1;
}

/** The pool to draw `n` elements with, or null for the calling thread alone. */
function poolFor(w: WasmNoise, n: number): NoiseWorkerPool | null {
  if (threadSetting === 1 || !w.shared) return null;
  if (threadSetting === "auto" && n < NOISE_THREAD_MIN) return null;
  if (pool === undefined) {
    support ??= threadSupport();
    const parts = threadSetting === "auto" ? autoThreads() : threadSetting;
    try {
      pool = support.ok && parts > 1 ? new NoiseWorkerPool(w, parts, support.kind) : null;
    } catch {
      pool = null; // workers cannot be started here: the calling thread draws alone
    }
  }
  return pool;
}

/**
 * How many threads draw long noise streams: `"auto"` (the default: for streams of at least
 * {@linkcode NOISE_THREAD_MIN} elements, the calling thread plus as many workers as measure
 * fastest for streams of that size, 1, 2, 4, … participants up to one per hardware thread and at
 * most 8 in all; see `thread_choice.ts`), `1` (the calling thread only), or a count ≥ 2 (that
 * many, for streams of any length: for tests and benchmarks). Every setting gives the same bits.
 * Workers exist where shared WebAssembly memory and blocking `Atomics.wait` do (Deno, Node, Bun:
 * unreferenced `node:worker_threads`, which never keep a process alive); elsewhere the calling
 * thread draws alone. Changing the number of participants restarts the workers.
 */
export function setNoiseThreads(threads: number | "auto"): void {
  if (threads !== "auto" && !(Number.isInteger(threads) && threads >= 1 && threads <= 64)) {
    throw new RangeError(
      `setNoiseThreads: threads must be "auto" or an integer in [1, 64], got ${String(threads)}`,
    );
  }
  const want = threads === "auto" ? autoThreads() : threads;
  if (pool && want > 1 && pool.size + 1 !== want) shutdownNoiseWorkers(); // a pool of another size
  threadSetting = threads;
}

/** The participants a long noise stream gets now (1: the calling thread alone). */
export function getNoiseThreads(): number {
  support ??= threadSupport();
  if (requested === "js" || !support.ok || wasmEngine()?.shared !== true) return 1;
  return threadSetting === "auto" ? autoThreads() : threadSetting;
}

/**
 * Workers started, chunks they drew (since the pool started), and those per worker
 * (`byWorker[id − 1]` for worker `id`), and the pool's rounds by participant count
 * (`jobsByParticipants[k]`); empty before any start.
 */
export function noiseThreadStats(): PoolThreadStats {
  return poolThreadStats(pool ?? undefined);
}

/** Stops the noise workers (they restart on the next long stream). */
export function shutdownNoiseWorkers(): void {
  pool?.shutdown();
  pool = undefined;
}

/**
 * "auto": the participant count (1, 2, 4, … up to the pool's) per size class of n
 * (`ThreadChoice`); made for the pool's participants on first use.
 */
let choice: ThreadChoice | undefined;

function streamWasm(
  w: WasmNoise,
  n: number,
  law: number,
  sc: number,
  key: StreamKey,
  start: number,
  consume: NoiseConsumer,
): void {
  streaming = true;
  try {
    w.setKeys(key.k0, key.k1);
    streamWasmWith(w, poolFor(w, n), n, law, sc, key, start, consume);
  } finally {
    streaming = false;
  }
}

function streamWasmWith(
  w: WasmNoise,
  p: NoiseWorkerPool | null,
  n: number,
  law: number,
  sc: number,
  key: StreamKey,
  start: number,
  consume: NoiseConsumer,
): void {
  if (p === null) return streamSolo(w, n, law, sc, key, start, consume);
  if (threadSetting !== "auto") return streamThreaded(w, p, p.participants, n, law, sc, key, start, consume);
  if (choice?.candidates.at(-1) !== p.participants) {
    choice = new ThreadChoice({
      maxParticipants: p.participants,
      exploreEvery: 16,
      workPerParticipant: NOISE_ELEMENTS_PER_PARTICIPANT,
    });
  }
  const k = choice.choose(n);
  const worked = p.workerChunks, t0 = performance.now();
  if (k > 1) streamThreaded(w, p, k, n, law, sc, key, start, consume);
  else streamSolo(w, n, law, sc, key, start, consume);
  // (threaded calls count only if the workers took part: while they start, this thread does it all)
  if (k === 1 || p.workerChunks !== worked) choice.record(n, k, performance.now() - t0);
}

/** The calling thread alone: chunks of `SOLO_BLOCKS` drawn at `OUT_BYTE` and consumed in order. */
function streamSolo(
  w: WasmNoise,
  n: number,
  law: number,
  sc: number,
  key: StreamKey,
  start: number,
  consume: NoiseConsumer,
): void {
  const c1 = key.c1 | 0, c2 = key.c2 | 0;
  const B = Math.floor(start / 4), lane0 = start - 4 * B, nb = Math.ceil((lane0 + n) / 4);
  const fn = w.fns[law], view = w.f32(), base = OUT_BYTE / 4 + lane0;
  for (let kb = 0; kb < nb; kb += SOLO_BLOCKS) {
    const cnt = Math.min(SOLO_BLOCKS, nb - kb);
    fn(Math.ceil(cnt / BLOCKS_PER_ITER), (B + kb) | 0, c1, c2, sc, OUT_BYTE, KEYS_BYTE);
    consume(Math.max(0, 4 * kb - lane0), Math.min(n, 4 * (kb + cnt) - lane0), view, base - 4 * kb);
  }
}

/**
 * The calling thread and workers 1 … parts − 1 of `p`: rounds of at most `ROUND_BLOCKS` in the draw
 * region.
 */
function streamThreaded(
  w: WasmNoise,
  p: NoiseWorkerPool,
  parts: number,
  n: number,
  law: number,
  sc: number,
  key: StreamKey,
  start: number,
  consume: NoiseConsumer,
): void {
  const c1 = key.c1 | 0, c2 = key.c2 | 0;
  const B = Math.floor(start / 4), lane0 = start - 4 * B, nb = Math.ceil((lane0 + n) / 4);
  for (let rb = 0; rb < nb; rb += ROUND_BLOCKS) {
    const cnt = Math.min(ROUND_BLOCKS, nb - rb);
    // about four chunks per participant, a multiple of the function's step, at most 8192 elements
    const cb = Math.min(MAX_CHUNK_BLOCKS, BLOCKS_PER_ITER * Math.ceil(cnt / (4 * parts * BLOCKS_PER_ITER)));
    w.reserve(REGION_BYTE + 16 * (cnt + BLOCKS_PER_ITER));
    const view = w.f32(), off = REGION_BYTE / 4 + lane0 - 4 * rb;
    p.round(law, sc, B + rb, cnt, c1, c2, cb, (lo, hi) => {
      consume(Math.max(0, 4 * (rb + lo) - lane0), Math.min(n, 4 * (rb + hi) - lane0), view, off);
    }, parts);
    if (p.broken) {
      // A worker stalled (this thread finished its round): retire the engine, whose memory a late
      // write may still reach, and draw the rest on the JavaScript path.
      engine = undefined;
      pool = undefined;
      const done = 4 * (rb + cnt) - lane0;
      if (done < n) {
        streamJs(
          n - done,
          law,
          sc,
          key,
          start + done,
          (a, b, d, o) => consume(a + done, b + done, d, o - done),
        );
      }
      return;
    }
  }
}

/**
 * Hands the elements `start .. start + n` of the stream `key` under `law` with scale `scale` (the
 * numbers {@linkcode fillNoise} writes) to `consume`, chunk by chunk, without an output array: a
 * fused loop reads each draw once, straight from where it was generated. Long streams are drawn
 * by several threads (see {@linkcode setNoiseThreads}); the chunks then arrive in no particular
 * order, all on the calling thread.
 */
export function streamNoise(
  n: number,
  law: NoiseLaw,
  scale: number,
  key: StreamKey,
  start: number,
  consume: NoiseConsumer,
): void {
  const code = lawCode("streamNoise", law);
  const sc = lawScale(code, scale);
  if (n <= 0) return;
  // a stream started inside a consumer must not reuse the draw buffers still being read: it runs
  // on the JavaScript path (same bits)
  const w = requested === "js" || streaming ? null : wasmEngine();
  if (w === null) streamJs(n, code, sc, key, start, consume);
  else streamWasm(w, n, code, sc, key, start, consume);
}

/**
 * The draws of `law` with scale `scale` of given Philox blocks: `out[4b + lane]` is lane `lane`
 * of `transformBlock(words[4b .. 4b + 4), law, scale)` (`words.length` a multiple of 4, `out` at
 * least as long), computed by the path `impl` (default: the one {@linkcode fillNoise} uses). For
 * checking the fast paths against `transformBlock` on chosen lane values.
 */
export function transformBlocks(
  words: Uint32Array,
  law: NoiseLaw,
  scale: number,
  out: Float32Array | Float64Array,
  impl: CpuNoiseImpl = "auto",
): void {
  const code = lawCode("transformBlocks", law);
  if (words.length % 4 !== 0 || out.length < words.length) {
    throw new RangeError(
      `transformBlocks: words.length must be a multiple of 4 and out at least as long, got ${words.length} and ${out.length}`,
    );
  }
  const sc = lawScale(code, scale);
  const useWasm = impl === "wasm" || (impl === "auto" && requested !== "js" && wasmEngine() !== null);
  if (useWasm) {
    if (rawEngine === undefined) {
      try {
        rawEngine = new WasmNoise(TABLES, true);
      } catch (e) {
        rawEngine = null;
        engineError = e;
      }
    }
    if (rawEngine === null) {
      throw new Error(`transformBlocks: WebAssembly SIMD is unavailable here (${engineError})`);
    }
    if (out instanceof Float32Array) rawEngine.transform(words, code, sc, out);
    else {
      const tmp = new Float32Array(words.length);
      rawEngine.transform(words, code, sc, tmp);
      out.set(tmp);
    }
    return;
  }
  drawBlocksJs(words, code, sc, out);
}
