/**
 * float32 stride-1 convolution in WebAssembly SIMD, without an unfolded column matrix.
 *
 * Each image is staged zero-padded as `[C, Hp, Wp]` (`Hp = H + 2ph`, `Wp = W + 2pw`) in the
 * module's own linear memory. On the "wide" output grid `Ho × Wp` (the last `Wp − Wo` columns of
 * each row are computed and discarded), the column-matrix row of tap `(c, ky, kx)` is the contiguous
 * slice of the staged image at `c·Hp·Wp + ky·Wp + kx`, so the kernels read it in place:
 *
 * - `mm` (forward; grad input): register tiles of 6 rows × 8 columns,
 *   `out[m, j] = Σ_k w[m, k] · src[off[k] + j]`, weights packed as strips of 6 rows. Forward: `W · cols`
 *   on the staged input. Grad input: `Wᵀ · gy` on the widened gy (zero in the discarded columns),
 *   then `fold` gathers the kh·kw shifted column rows of each input position (col2im as a gather).
 * - `gw2`/`gw1` (grad weight): dot products along the output positions, 2 (or 1) output channels ×
 *   5 taps of 4-lane accumulators, `gw[o, r] += Σ_j gy[o, j] · src[off[r] + j]`, image by image.
 *
 * Everything is float32 with float32 accumulation, like the GEMM path. The engine is a
 * {@linkcode WasmArena} (the generated functions of `conv_wasm_module.ts` over one memory, shared
 * where workers can be used); its memory grows as needed and is kept (a few MiB for LeNet-sized
 * layers; large batches are processed in groups of images, see `setWasmConvGroupBudget`).
 *
 * Each call is a job of independent chunks (`conv_threads.ts`): forward and grad input, one per
 * image; grad weight, one per range of output channels. Calls of at least
 * {@linkcode CONV_THREAD_MIN_FLOPS} run their chunks on the calling thread and the worker threads
 * together (see {@linkcode setConvThreads}); every output element is computed by the same kernel
 * call, in the same order, on any thread, so the results are the same bits with and without workers.
 *
 * @module
 */
import { outputArray } from "./output.ts";
import { hasSharedMemory, hasWasmSimd } from "./gemm_wasm.ts";
import { type ConvExports, convFunctions, GW_TAPS, MR, NR } from "./conv_wasm_module.ts";
import { WasmArena } from "./wasm_arena.ts";
import { CONV_CTL_BYTES, CONV_JOB_WORDS, ConvJob, ConvWorkerPool, runConvChunk } from "./conv_threads.ts";
import { onThreadLimitChange, type PoolThreadStats, poolThreadStats, threadSupport } from "./workers.ts";
import { ThreadChoice } from "./thread_choice.ts";
import type { ConvDims } from "./conv.ts";

/** Geometry of a stride-1 convolution: {@linkcode ConvDims} without the strides, plus the output size. */
export interface WideConv extends Omit<ConvDims, "sh" | "sw"> {
  /** Output height. */
  Ho: number;
  /** Output width. */
  Wo: number;
}

const ceilTo = (n: number, m: number): number => Math.ceil(n / m) * m;

/**
 * How `mm` covers the wide output columns of one image: the tiles' first columns (bytes), either back
 * to back over `[0, L)` or row by row over the `Wo` valid columns of each output row, whichever
 * computes fewer columns. (A 4×12 tile, which wastes fewer rows for 16 channels, spills registers
 * and measured slower.)
 */
interface MMPlan {
  strips: number;
  tiles: Int32Array;
  /** One past the last column any tile writes. */
  end: number;
}

function planMM(M: number, g: WideConv, L: number, Wp: number): MMPlan {
  const perRow = Math.ceil(g.Wo / NR), byRow = g.Ho * perRow < Math.ceil(L / NR);
  const n = byRow ? g.Ho * perRow : Math.ceil(L / NR);
  const tiles = new Int32Array(n);
  for (let t = 0; t < n; t++) {
    tiles[t] = 4 * (byRow ? Math.floor(t / perRow) * Wp + (t % perRow) * NR : t * NR);
  }
  return { strips: Math.ceil(M / MR), tiles, end: tiles[n - 1] / 4 + NR };
}

/** Staged layout of one convolution (elements). */
interface Layout {
  Wp: number;
  plane: number;
  /** Staged image elements (`C·Hp·Wp`). */
  img: number;
  /** Wide output columns per image (`Ho·Wp`), and the row length of wide buffers (≥ L, ≥ tile ends). */
  L: number;
  Lpad: number;
  /** Elements read past the last staged plane (`kw − 1` plus a tile's overhang), rounded up. */
  tail: number;
}

function layoutOf(g: WideConv, end = 0): Layout {
  const Hp = g.H + 2 * g.ph, Wp = g.W + 2 * g.pw, plane = Hp * Wp, L = g.Ho * Wp;
  const Lpad = ceilTo(Math.max(L, end), 4);
  return { Wp, plane, img: g.C * plane, L, Lpad, tail: g.kw + Lpad - L + 16 };
}

/** The engine: the convolution functions over one memory, a bump allocator reset by every call. */
export type ConvEngine = WasmArena<ConvExports>;

/** Stages `x[N, C, H, W]` zero-padded as `[N, C, Hp, Wp]` plus a zero tail; its pointer. */
function stage(e: ConvEngine, x: Float32Array, g: WideConv, l: Layout): number {
  const n = g.N * l.img + l.tail;
  if (g.ph === 0 && g.pw === 0) {
    const p = e.zeros(n);
    e.f32(p, x.length).set(x);
    return p;
  }
  const src = e.put(x);
  const p = e.zeros(n);
  e.ex.copyPlanes(src, g.W, g.H * g.W, p + 4 * (g.ph * l.Wp + g.pw), l.Wp, l.plane, g.N * g.C, g.H, g.W);
  return p;
}

/**
 * `gy[N, O, Ho, Wo]` widened to `[N, O, Lpad]` (row stride `Wp`, zero in the discarded columns and
 * past `L`); its pointer.
 */
function widen(e: ConvEngine, gy: Float32Array, g: WideConv, l: Layout): number {
  const src = e.put(gy);
  const p = e.zeros(g.N * g.O * l.Lpad + l.tail);
  e.ex.copyPlanes(src, g.Wo, g.Ho * g.Wo, p, l.Wp, l.Lpad, g.N * g.O, g.Ho, g.Wo);
  return p;
}

/**
 * How the direct kernels use worker threads: `"auto"` (default), for calls of at least
 * {@linkcode CONV_THREAD_MIN_FLOPS} where workers are available, on as many participants (the
 * calling thread plus workers: 1, 2, 4, … up to the hardware threads) as measured fastest for
 * calls of that size (a neighbouring count retried every 8 calls, as the GEMM chooses, see
 * `thread_choice.ts`); `"single"`, always on the calling thread; `"threads"`, on every participant
 * for every size (tests); a number k, on k participants for every size (benchmarks, tests). The
 * results are the same bits in every mode (see `conv_threads.ts`).
 */
export type ConvThreads = "auto" | "single" | "threads" | number;

/**
 * Calls (one convolution, forward or either gradient, `2·N·O·C·kh·kw·Ho·Wo`) below this many flops
 * stay on the calling thread in `"auto"` mode: a job costs a worker's wake-up (tens of µs, more on
 * a busy machine), which such small calls (under about half a millisecond) do not repay.
 */
export const CONV_THREAD_MIN_FLOPS = 2e7;

/**
 * The work-size prior of `"auto"`: a size class starts with at most one participant per this many
 * flops (about 0.3 ms of one thread's work at 30 GFLOP/s), before measurements move it.
 */
export const CONV_FLOPS_PER_PARTICIPANT = 1e7;

let threadMode: ConvThreads = "auto";

/**
 * Sets how the direct kernels use worker threads (see {@linkcode ConvThreads}); returns the
 * previous mode. Throws for `"threads"` where workers or shared memory are unavailable.
 */
export function setConvThreads(mode: ConvThreads): ConvThreads {
  const parts = convThreadParticipants();
  if (typeof mode === "number") {
    if (!(Number.isInteger(mode) && mode >= 1 && mode <= parts)) {
      throw new RangeError(
        `setConvThreads: a participant count must be an integer in [1, ${parts}] (the participants ` +
          `available here), got ${mode}`,
      );
    }
  } else if (mode !== "auto" && mode !== "single" && mode !== "threads") {
    throw new RangeError(
      `setConvThreads: mode must be "auto", "single" or "threads", got ${String(mode)} ` +
        `(or a participant count: an integer in [1, ${parts}])`,
    );
  }
  if (mode === "threads" && convThreadParticipants() < 2) {
    throw new Error(`setConvThreads: "threads" is unavailable: ${support.reason ?? "no shared memory"}`);
  }
  const prev = threadMode;
  threadMode = mode;
  return prev;
}

/** The current mode of {@linkcode setConvThreads}. */
export function getConvThreads(): ConvThreads {
  return threadMode;
}

let support = threadSupport();

// A new thread limit: new workers, choices measured again; a new engine only where workers now
// need shared memory (a call's buffers are sized for its own participants; nothing outlives a call).
onThreadLimitChange(() => {
  shutdownConvWorkers();
  support = threadSupport(support.kind);
  choice = undefined;
  if (engine && !engine.shared && convThreadParticipants() > 1) engine = undefined;
  if (typeof threadMode === "number" && threadMode > convThreadParticipants()) threadMode = "auto";
});

/** Participants (calling thread plus workers) the direct kernels can use here; 1 without workers. */
export function convThreadParticipants(): number {
  return hasWasmConv && hasSharedMemory && support.ok ? support.participants : 1;
}

let engine: ConvEngine | undefined;
let pool: ConvWorkerPool | undefined;

/** The engine every convolution kernel runs on (made on first use). Internal to the kernels. */
export function getEngine(): ConvEngine {
  return engine ??= new WasmArena<ConvExports>(convFunctions(), {
    shared: convThreadParticipants() > 1,
    reserved: CONV_CTL_BYTES,
  });
}

/**
 * Worker statistics: workers started, chunks they computed, and those per worker (`byWorker[id − 1]`
 * for worker `id`), and the pool's jobs by participant count (`jobsByParticipants[k]`; the calling
 * thread alone runs others outside the pool); all 0 or empty before any start.
 */
export function convThreadStats(): PoolThreadStats {
  return poolThreadStats(pool ?? undefined);
}

/** Stops the convolution workers (they restart on the next threaded call). */
export function shutdownConvWorkers(): void {
  pool?.shutdown();
  pool = undefined;
}

/**
 * The participant count in `"auto"` mode, per size class of the flop count, by the measured time
 * of each (as the GEMM does): the workers only pay where cores are free, and on a busy machine a
 * worker that is preempted while it holds a chunk makes the caller wait. Made on first use.
 */
let choice: ThreadChoice | undefined;

/** Participants the job of a call of `flops` will have. Internal to the kernels. */
export function participantsFor(flops: number): number {
  const parts = convThreadParticipants();
  if (parts < 2 || threadMode === "single") return 1;
  if (threadMode === "threads") return parts;
  if (typeof threadMode === "number") return Math.min(parts, threadMode);
  if (flops < CONV_THREAD_MIN_FLOPS) return 1;
  choice ??= new ThreadChoice({
    maxParticipants: parts,
    exploreEvery: 8,
    workPerParticipant: CONV_FLOPS_PER_PARTICIPANT,
  });
  return choice.choose(flops);
}

/**
 * Runs chunks `0 .. chunks` of `job` (see `runConvChunk`) with `parts` participants; in `"auto"`
 * mode, records its time for the choice of the call's size class.
 */
export function runJob(e: ConvEngine, job: number[], chunks: number, parts: number, flops: number): void {
  if (job.length > CONV_JOB_WORDS) throw new Error(`conv: a job of ${job.length} words`);
  const starting = parts > 1 && !pool, t0 = performance.now();
  if (parts > 1) {
    (pool ??= new ConvWorkerPool(e, support, convThreadParticipants())).run(job, chunks, parts);
  } else {
    const a = Int32Array.from(job);
    for (let k = 0; k < chunks; k++) runConvChunk(e.ex, a, k, 0);
  }
  // The call that started the workers is not representative.
  if (threadMode === "auto" && flops >= CONV_THREAD_MIN_FLOPS && !starting) {
    choice?.record(flops, parts, performance.now() - t0);
  }
}

/** Whether the WebAssembly convolution kernels can run here. */
export const hasWasmConv: boolean = hasWasmSimd;

/** Byte offsets of the taps `(c, ky, kx)` in a staged image, padded with zeros to `n` entries. */
function tapOffsets(g: WideConv, l: Layout, n: number): Int32Array {
  const off = new Int32Array(n);
  let r = 0;
  for (let c = 0; c < g.C; c++) {
    for (let ky = 0; ky < g.kh; ky++) {
      for (let kx = 0; kx < g.kw; kx++) off[r++] = 4 * (c * l.plane + ky * l.Wp + kx);
    }
  }
  return off;
}

/** `a[M, K]` (or `a[K, M]` when `transposed`) as strips of 6 rows, `[strip][k][MR]`, zero-padded. */
function packStrips(a: Float32Array, M: number, K: number, transposed: boolean): Float32Array {
  const dst = new Float32Array(Math.ceil(M / MR) * K * MR);
  for (let m = 0; m < M; m++) {
    const s = Math.floor(m / MR), base = s * K * MR + m - s * MR;
    for (let k = 0; k < K; k++) dst[base + k * MR] = transposed ? a[k * M + m] : a[m * K + k];
  }
  return dst;
}

/**
 * Float32 elements of per-image buffers one group of images may use (64 MiB): a batch whose buffers
 * would need more is processed in groups, which bounds the engine's memory (it never shrinks).
 */
let groupBudget = 1 << 24;

/** Sets the per-group buffer budget (elements; tests use a small one); returns the previous one. */
export function setWasmConvGroupBudget(elements: number): number {
  const prev = groupBudget;
  groupBudget = elements;
  return prev;
}

/** Images per group when each needs `perImage` elements of buffers. Internal to the kernels. */
export function groupOf(N: number, perImage: number): number {
  return Math.max(1, Math.min(N, Math.floor(groupBudget / perImage)));
}

/** Flops of a convolution call (`2·N·O·C·kh·kw·Ho·Wo`), for the thread rule. */
const flopsOf = (g: WideConv): number => 2 * g.N * g.O * g.C * g.kh * g.kw * g.Ho * g.Wo;

/** y[N, O, Ho, Wo] = conv(x, w), stride 1; one chunk per image. */
export function wasmConvForward(x: Float32Array, w: Float32Array, g: WideConv): Float32Array {
  const e = getEngine(), R = g.C * g.kh * g.kw, P = g.Ho * g.Wo, chw = g.C * g.H * g.W;
  const l0 = layoutOf(g), plan = planMM(g.O, g, l0.L, l0.Wp), l = layoutOf(g, plan.end);
  // Each image's wide output has all the rows of its strips: the zero rows of the last strip never
  // reach another image (which another thread may be writing).
  const wideImg = plan.strips * MR * l.Lpad;
  // Staged slots of 4·k elements: a chunk zeroes its whole slot with 16-byte stores.
  const slot = ceilTo(l.img, 4);
  const G = groupOf(g.N, 2 * chw + slot + wideImg + g.O * P);
  const parts = participantsFor(flopsOf(g));
  const y = outputArray(x, g.N * g.O * P);
  e.reset();
  try {
    const wp = e.put(packStrips(w, g.O, R, false));
    const offIn = e.put(tapOffsets(g, l, R)), jTab = e.put(plan.tiles);
    const mark = e.mark();
    for (let n0 = 0; n0 < g.N; n0 += G) {
      const n1 = Math.min(g.N, n0 + G), nn = n1 - n0;
      e.release(mark);
      const xs = e.put(x.subarray(n0 * chw, n1 * chw));
      const xp = e.take(nn * slot + l.tail);
      e.ex.zero(xp + 4 * nn * slot, ceilTo(4 * l.tail, 16)); // read past the last slot
      const yw = e.take(nn * wideImg), yc = e.take(nn * g.O * P);
      const job = [ConvJob.forward, xp, 4 * slot, offIn, R, wp, plan.strips, jTab, plan.tiles.length];
      job.push(yw, 4 * wideImg, l.Lpad, yc, 4 * g.O * P, l.Wp, g.Wo, P, g.O, g.Ho);
      job.push(xs, 4 * chw, 4 * (g.ph * l.Wp + g.pw), g.W, g.H, g.C, l.plane);
      runJob(e, job, nn, parts, flopsOf(g));
      y.set(e.f32(yc, nn * g.O * P), n0 * g.O * P);
    }
    return y;
  } finally {
    e.reset();
  }
}

/**
 * gx[N, C, H, W] = ∂/∂x of conv(x, w) against gy, stride 1: per image (one chunk each), the columns
 * `Wᵀ · gy` (`mm` on the widened gy) into a buffer of the participant whose rows have zero margins,
 * then `fold` sums the kh·kw shifted rows at each input position.
 */
export function wasmConvGradInput(gy: Float32Array, w: Float32Array, g: WideConv): Float32Array {
  const e = getEngine(), R = g.C * g.kh * g.kw, taps = g.kh * g.kw, P = g.Ho * g.Wo;
  const l0 = layoutOf(g), plan = planMM(R, g, l0.L, l0.Wp), l = layoutOf(g, plan.end);
  // Column rows: `front` zeros, Lpad columns, `back` zeros: input (y, x) reads tap (ky, kx) at column
  // (y + ph − ky)·Wp + (x + pw − kx), from (kh−1)·Wp + kw − 1 before a row to (kh−1)·Wp + 7 after L.
  const front = ceilTo((g.kh - 1) * l.Wp + g.kw - 1, 4), back = (g.kh - 1) * l.Wp + 16;
  const Lc = front + l.Lpad + back, rows = plan.strips * MR;
  const chw = g.C * g.H * g.W;
  // `fold` writes groups of 8 and may run up to 7 elements past an image: each image gets a slot.
  const gxImg = ceilTo(chw + 8, 16), colsEach = ceilTo(rows * Lc + Lc, 16);
  const G = groupOf(g.N, g.O * (P + l.Lpad) + gxImg);
  const gywImg = g.O * l.Lpad; // a multiple of 4: a chunk zeroes its slot with 16-byte stores
  const parts = participantsFor(flopsOf(g));
  const gx = outputArray(gy, g.N * chw);
  e.reset();
  try {
    const wp = e.put(packStrips(w, R, g.O, true));
    const offIn = e.put(Int32Array.from({ length: g.O }, (_, o) => 4 * o * l.Lpad));
    const jTab = e.put(plan.tiles);
    const to = new Int32Array(taps);
    for (let ky = 0; ky < g.kh; ky++) {
      for (let kx = 0; kx < g.kw; kx++) {
        to[ky * g.kw + kx] = 4 * ((ky * g.kw + kx) * Lc + front + (g.ph - ky) * l.Wp + g.pw - kx);
      }
    }
    const tapOff = e.put(to);
    // One column buffer per participant, zeroed once: the tiles rewrite the same columns of every
    // image, the rest stays zero.
    const cols = e.zeros(parts * colsEach);
    const mark = e.mark(), vecs = Math.ceil(g.W / 8);
    for (let n0 = 0; n0 < g.N; n0 += G) {
      const n1 = Math.min(g.N, n0 + G), gg = { ...g, N: n1 - n0 };
      e.release(mark);
      const gys = e.put(gy.subarray(n0 * g.O * P, n1 * g.O * P));
      const gyw = e.take(gg.N * gywImg + l.tail);
      e.ex.zero(gyw + 4 * gg.N * gywImg, ceilTo(4 * l.tail, 16));
      const gxc = e.take(gg.N * gxImg);
      const job = [ConvJob.gradInput, gyw, 4 * gywImg, offIn, g.O, wp, plan.strips, jTab];
      job.push(plan.tiles.length, cols, 4 * colsEach, 4 * front, Lc, taps, tapOff, g.C, g.H, vecs, l.Wp, g.W);
      job.push(gxc, 4 * gxImg, gys, 4 * g.O * P, g.Wo, g.Ho, l.Lpad);
      runJob(e, job, gg.N, parts, flopsOf(g));
      for (let n = 0; n < gg.N; n++) gx.set(e.f32(gxc + 4 * n * gxImg, chw), (n0 + n) * chw);
    }
    return gx;
  } finally {
    e.reset();
  }
}

/**
 * gw[O, C, kh, kw] = ∂/∂w of conv(x, w) against gy, stride 1; on threads, one chunk per range of
 * output channels (no sum across threads: each weight's sum over the images keeps its order).
 */
export function wasmConvGradWeight(x: Float32Array, gy: Float32Array, g: WideConv): Float32Array {
  const e = getEngine(), l = layoutOf(g), chw = g.C * g.H * g.W, P = g.Ho * g.Wo;
  const R = g.C * g.kh * g.kw, blocks = Math.ceil(R / GW_TAPS), Rpad = blocks * GW_TAPS;
  const G = groupOf(g.N, chw + l.img + g.O * (P + l.Lpad));
  const parts = participantsFor(flopsOf(g));
  const o2 = g.O & ~1, pairs = o2 / 2;
  // Channel pairs per chunk: all of them on one thread; about 4 chunks per participant otherwise.
  const step = 2 * Math.max(1, Math.ceil(pairs / (parts > 1 ? 4 * parts : 1)));
  const chunks = Math.max(1, Math.ceil(o2 / step));
  e.reset();
  try {
    const offTab = e.put(tapOffsets(g, l, Rpad)), acc = e.zeros(g.O * Rpad);
    const qEnd = ceilTo(l.L, 4), mark = e.mark();
    for (let n0 = 0; n0 < g.N; n0 += G) {
      const n1 = Math.min(g.N, n0 + G), gg = { ...g, N: n1 - n0 };
      e.release(mark);
      const xp = stage(e, x.subarray(n0 * chw, n1 * chw), gg, l);
      const gyw = widen(e, gy.subarray(n0 * g.O * P, n1 * g.O * P), gg, l);
      const job = [ConvJob.gradWeight, gyw, 4 * g.O * l.Lpad, l.Lpad, xp, 4 * l.img, offTab, blocks, qEnd];
      job.push(acc, Rpad, gg.N, o2, g.O, step, chunks);
      runJob(e, job, chunks, parts, flopsOf(g));
    }
    const a = e.f32(acc, g.O * Rpad), gw = outputArray(x, g.O * R);
    for (let o = 0; o < g.O; o++) gw.set(a.subarray(o * Rpad, o * Rpad + R), o * R);
    return gw;
  } finally {
    e.reset();
  }
}
