/**
 * The chunks of the direct convolution kernels (`conv_wasm.ts`) and of the Winograd path
 * (`winograd.ts`), and the workers that share them.
 *
 * A convolution call is published as a job of independent chunks: forward and grad input, one
 * chunk per image (its `mm`, then its unstaging or its `fold`); grad weight, one chunk per range of
 * output channels (its `gw2`/`gw1` over every image, in image order); Winograd, chunks of images or
 * of transformed positions and output channels. Every chunk writes its own
 * disjoint part of the output, and each output element is summed by the same kernel call in the
 * same order whichever thread runs its chunk, so the results are bit-identical to the one-thread
 * ones, run to run. {@linkcode runConvChunk} is the one place a chunk is computed: the calling
 * thread runs it directly, the workers run a copy of its source.
 *
 * The workers instantiate the convolution module over the engine's shared memory and sleep in
 * `Atomics.wait`, each on its own wake-up word; a job of k participants wakes workers 1 … k − 1
 * (the others stay asleep), and the calling thread and those workers claim chunks with a
 * compare-and-swap (a slow or still-starting worker never holds the others up); the caller blocks
 * until all are done. Only participants below k claim chunks (grad input's column buffers exist
 * for k participants), and which participant computes a chunk changes no bit.
 * Starting and stopping workers is in `workers.ts`.
 *
 * @module
 */
import type { ConvExports } from "./conv_wasm_module.ts";
import {
  type PoolWorker,
  startWorkers,
  stopWorkers,
  type ThreadSupport,
  wakeWorkers,
  workerSource,
} from "./workers.ts";
import type { ArenaExports, WasmArena } from "./wasm_arena.ts";

/** Bytes at the start of the engine's memory holding the control words. */
export const CONV_CTL_BYTES = 512;

/** Control words (int32 indices). */
const C = {
  STOP: 1,
  EPOCH: 2,
  NEXT: 3,
  END: 4,
  BASE: 5,
  DONE: 6,
  ERR: 7,
  WORKED: 8,
  /** The job's participant count: only participants below it claim chunks. */
  LIMIT: 9,
  /** Worker `id`'s wake-up word is `WAKE + id` (ids 1 … 15). */
  WAKE: 16,
  /** Chunks computed by worker `id` are counted at `WORKED_BY + id`. */
  WORKED_BY: 32,
  /** The job: `ARGS + 0` is its kind, then its arguments (see {@linkcode runConvChunk}). */
  ARGS: 48,
  WORDS: CONV_CTL_BYTES / 4,
} as const;

/** Job kinds (the first job word). */
export const ConvJob = {
  forward: 0,
  gradInput: 1,
  gradWeight: 2,
  winograd: 3,
  winogradTransforms: 4,
  winogradProducts: 5,
  winogradKernels: 6,
} as const;

/** Most job words (kind included). */
export const CONV_JOB_WORDS = C.WORDS - C.ARGS;

/**
 * Computes chunk `k` of the job `a` (its words: kind, then arguments; byte pointers and strides)
 * as participant `p` (0: the calling thread; grad input gives each participant its own column
 * buffer). Self-contained: the workers run a copy of its source.
 *
 * - forward, chunk = image `k`: stages the image (zeroes its slot, copies it inside the padding),
 *   `mm` into its wide output (own `MR`-padded rows), then `copyPlanes` of its `O` planes into the
 *   compact output.
 * - grad input, chunk = image `k`: widens its gy (zeroed slot, rows `Wp` apart), `mm` into
 *   participant `p`'s column buffer, then `fold` into its own slot of the compact gradient.
 *
 * A tile may read up to a row past its image's staged slot; that only feeds discarded columns, so
 * another thread writing the next slot meanwhile changes no result.
 * - grad weight, chunk = output channels `[k·step, …)` (pairs, the odd last one in the last
 *   chunk): `gw2`/`gw1` of every image in order into the shared accumulator rows of those channels.
 */
export function runConvChunk(ex: ConvExports & ArenaExports, a: Int32Array, k: number, p: number): void {
  // The Winograd transforms' lanes 2–3 offset and row step for rows `row` bytes apart (see
  // `winograd_module.ts`): the next four tiles of the row, or (`two`) the next tile row's two.
  const lane2 = (two: boolean, row: number) => (two ? 2 * row : 16);
  const rowStep = (two: boolean, row: number) => (two ? 4 * row : 2 * row);
  /**
   * Winograd jobs: stages images `n0 … n0+cnt` of the job's staging words (`a[1 … 11]`: x, xImg,
   * stage, stageEach, sImg, plane, Ws, interior, W, H, C) into participant `p`'s zeroed slots, then
   * `wgIn` of them into `V` (rows `ldV` bytes apart, ξ blocks `vXs` apart).
   */
  const stageTiles = (
    n0: number,
    cnt: number,
    V: number,
    ldV: number,
    vXs: number,
    steps: number,
    groups: number,
    two: boolean,
  ) => {
    const st = a[3] + p * a[4], sRow = 4 * a[7];
    for (let i = 0; i < cnt; i++) {
      ex.zero(st + i * a[5], a[5]);
      ex.copyPlanes(
        a[1] + (n0 + i) * a[2],
        a[9],
        a[9] * a[10],
        st + i * a[5] + a[8],
        a[7],
        a[6],
        a[11],
        a[10],
        a[9],
      );
    }
    ex.wgIn(
      st,
      a[5],
      4 * a[6],
      sRow,
      a[11],
      cnt,
      steps,
      groups,
      V,
      ldV,
      vXs,
      lane2(two, sRow),
      rowStep(two, sRow),
    );
  };
  if (a[0] === 0) {
    // [0, xp, xpImg, offIn, R, wp, strips, jTab, tiles, out, outImg, ldo, yc, ycImg, Wp, Wo, P, O, Ho,
    //  x, xImg, xpInterior, W, H, C, plane]
    const xp = a[1] + k * a[2], out = a[9] + k * a[10];
    ex.zero(xp, a[2]);
    ex.copyPlanes(a[19] + k * a[20], a[22], a[22] * a[23], xp + a[21], a[14], a[25], a[24], a[23], a[22]);
    ex.mm(xp, a[3], a[4], a[5], a[6], a[7], a[8], out, a[11]);
    ex.copyPlanes(out, a[14], a[11], a[12] + k * a[13], a[15], a[16], a[17], a[18], a[15]);
  } else if (a[0] === 1) {
    // [1, gyw, gywImg, offIn, O, wp, strips, jTab, tiles, cols, colsEach, front, Lc, taps, tapOff, C,
    //  H, vecs, Wp, W, gx, gxImg, gy, gyImg, Wo, Ho, Lpad]
    const src = a[1] + k * a[2], cols = a[9] + p * a[10];
    ex.zero(src, a[2]);
    ex.copyPlanes(a[22] + k * a[23], a[24], a[24] * a[25], src, a[18], a[26], a[4], a[25], a[24]);
    ex.mm(src, a[3], a[4], a[5], a[6], a[7], a[8], cols + a[11], a[12]);
    ex.fold(
      cols,
      a[13],
      a[14],
      a[15],
      a[13] * a[12],
      a[16],
      a[17],
      a[18],
      a[19],
      a[20] + k * a[21],
      a[16] * a[19],
    );
  } else if (a[0] === 3) {
    // [3, staging words (1–11), V, vEach, ldV, vXs, M, mEach, mXs, offIn, U, uXs, strips, jTab, O, steps,
    //  groups, ipc, images, tpi, out, outImg, Ho, Wo, exact, wide, wideEach, wideImg, Wout, two, rows]
    const n0 = k * a[27], cnt = Math.min(a[27], a[28] - n0), two = a[39] === 1;
    const V = a[12] + p * a[13], M = a[16] + p * a[17];
    stageTiles(n0, cnt, V, 4 * a[14], a[15], a[25], a[26], two);
    const tiles = Math.ceil((cnt * a[29]) / 8);
    for (let xi = 0; xi < 16; xi++) {
      ex.mm(V + xi * a[15], a[19], a[11], a[20] + xi * a[21], a[22], a[23], tiles, M + xi * a[18], a[14]);
    }
    const exact = a[34] === 1, out = a[30] + n0 * a[31], wide = a[35] + p * a[36];
    // Straight into the output, or into the participant's wide buffer (tiles overhanging the output).
    const dRow = 4 * (exact ? a[33] : a[38]);
    const [dst, dImg, dPlane] = exact ? [out, a[31], 4 * a[32] * a[33]] : [wide, a[37], 4 * a[40] * a[38]];
    ex.wgOut(
      M,
      4 * a[14],
      a[18],
      a[24],
      cnt,
      a[25],
      a[26],
      dst,
      dImg,
      dPlane,
      dRow,
      lane2(two, dRow),
      rowStep(two, dRow),
    );
    for (let i = 0; !exact && i < cnt; i++) {
      ex.copyPlanes(
        wide + i * a[37],
        a[38],
        a[40] * a[38],
        out + i * a[31],
        a[33],
        a[32] * a[33],
        a[24],
        a[32],
        a[33],
      );
    }
  } else if (a[0] === 4) {
    // [4, staging words (1–11), V, ldT, vXs, gy, gyImg, gyPlane, gyRow, GY, gXs, O, steps, groups, ipc,
    //  images, tpi, two]
    const n0 = k * a[24], cnt = Math.min(a[24], a[25] - n0), two = a[27] === 1, col = 4 * n0 * a[26];
    stageTiles(n0, cnt, a[12] + col, 4 * a[13], a[14], a[22], a[23], two);
    const gRow = a[18];
    ex.wgGy(
      a[15] + n0 * a[16],
      a[16],
      a[17],
      gRow,
      a[21],
      cnt,
      a[22],
      a[23],
      a[19] + col,
      4 * a[13],
      a[20],
      lane2(two, gRow),
      rowStep(two, gRow),
    );
  } else if (a[0] === 6) {
    // [6, w, O, C, flip, u, block, stripsPerChunk, strips]
    const s0 = k * a[7];
    ex.wgKernels(a[1], a[2], a[3], a[4], a[5], a[6], s0, Math.min(a[8], s0 + a[7]));
  } else if (a[0] === 5) {
    // [5, GY, gXs, ldT, V, vXs, offTab, blocks, qEnd, acc, accXs, Rpad, o2, O, step, oChunks]
    const xi = k % 16, oc = (k - xi) / 16;
    const gp = a[1] + xi * a[2], vp = a[4] + xi * a[5], acc = a[9] + xi * a[10];
    const o0 = oc * a[14], o1 = Math.min(a[12], o0 + a[14]);
    if (o1 > o0) ex.gw2(gp, a[3], vp, a[6], o0, o1, a[7], a[8], acc, a[11]);
    if (oc === a[15] - 1 && a[12] < a[13]) ex.gw1(gp, a[3], vp, a[6], a[12], a[13], a[7], a[8], acc, a[11]);
  } else {
    // [2, gy, gyImg, S, xp, xImg, offTab, blocks, qEnd, acc, ldAcc, n, o2, O, step, chunks]
    const o0 = k * a[14], o1 = Math.min(a[12], o0 + a[14]), last = k === a[15] - 1;
    for (let n = 0; n < a[11]; n++) {
      const gp = a[1] + n * a[2], xq = a[4] + n * a[5];
      if (o1 > o0) ex.gw2(gp, a[3], xq, a[6], o0, o1, a[7], a[8], a[9], a[10]);
      if (last && a[12] < a[13]) ex.gw1(gp, a[3], xq, a[6], a[12], a[13], a[7], a[8], a[9], a[10]);
    }
  }
}

/** The worker's source (plain JavaScript; CommonJS under node:worker_threads, or a module). */
const WORKER_SOURCE = workerSource(`
const C = ${JSON.stringify(C)};
const runConvChunk = ${runConvChunk.toString()};
const main = (d) => {
  const ex = new WebAssembly.Instance(new WebAssembly.Module(d.bytes), { env: { mem: d.mem } }).exports;
  const ctl = new Int32Array(d.mem.buffer, 0, C.WORDS);
  const job = new Int32Array(d.mem.buffer, 4 * C.ARGS, C.WORDS - C.ARGS);
  const wake = C.WAKE + d.id;
  let gen = Atomics.load(ctl, wake);
  for (;;) {
    Atomics.wait(ctl, wake, gen);
    gen = Atomics.load(ctl, wake);
    if (Atomics.load(ctl, C.STOP) !== 0 || Atomics.load(ctl, C.EPOCH) !== d.epoch) return;
    for (;;) {
      const c = Atomics.load(ctl, C.NEXT), e = Atomics.load(ctl, C.END);
      if (c >= e || d.id >= Atomics.load(ctl, C.LIMIT)) break;
      if (Atomics.compareExchange(ctl, C.NEXT, c, c + 1) !== c) continue;
      try {
        runConvChunk(ex, job, c - Atomics.load(ctl, C.BASE), d.id);
        Atomics.add(ctl, C.WORKED, 1);
        Atomics.add(ctl, C.WORKED_BY + d.id, 1);
      } catch (err) {
        Atomics.store(ctl, C.ERR, 1);
      }
      if (Atomics.add(ctl, C.DONE, 1) + 1 === e) Atomics.notify(ctl, C.DONE);
    }
  }
};
`);

let epochs = 0;

/** Workers sharing a shared-memory convolution engine; the calling thread is participant 0. */
export class ConvWorkerPool {
  private readonly workers: PoolWorker[];
  private readonly ctl: Int32Array;
  private readonly job: Int32Array;
  private readonly epoch = ++epochs;
  /** Jobs run so far, by participant count (index k). */
  private readonly jobs: number[] = new Array(17).fill(0);

  /**
   * Starts `participants − 1` workers (they join jobs as soon as they are up); the engine's memory
   * must be shared, with its first {@linkcode CONV_CTL_BYTES} bytes reserved.
   */
  constructor(private readonly engine: WasmArena<ConvExports>, support: ThreadSupport, participants: number) {
    if (!support.ok || !engine.shared) {
      throw new Error(`ConvWorkerPool: workers are unavailable: ${support.reason ?? "memory not shared"}`);
    }
    this.ctl = new Int32Array(engine.memory.buffer, 0, C.WORDS);
    this.job = new Int32Array(engine.memory.buffer, 4 * C.ARGS, CONV_JOB_WORDS);
    Atomics.store(this.ctl, C.STOP, 0);
    Atomics.store(this.ctl, C.EPOCH, this.epoch);
    this.workers = startWorkers(WORKER_SOURCE, support.kind!, participants - 1, (id) => ({
      bytes: engine.bytes,
      mem: engine.memory,
      epoch: this.epoch,
      id,
    }));
  }

  /** Number of workers started. */
  get size(): number {
    return this.workers.length;
  }

  /** Chunks computed by workers so far. */
  get workerChunks(): number {
    return Atomics.load(this.ctl, C.WORKED);
  }

  /** Participants a job can have: the calling thread and the workers. */
  get participants(): number {
    return this.workers.length + 1;
  }

  /** Chunks computed so far by worker `id` (1 … size). */
  chunksOf(id: number): number {
    return id >= 1 && id <= this.workers.length ? Atomics.load(this.ctl, C.WORKED_BY + id) : 0;
  }

  /**
   * Runs chunks `0 .. chunks` of the job `words` with `participants` participants (clamped to the
   * pool's): the calling thread alone for 1, otherwise with workers 1 … participants − 1 (those
   * that are up). Job buffers per participant (grad input's columns) must exist for that many.
   */
  run(words: ArrayLike<number>, chunks: number, participants: number = this.participants): void {
    const k = Math.max(1, Math.min(this.participants, Math.floor(participants)));
    this.jobs[k]++;
    this.job.set(words);
    if (k === 1) {
      for (let c = 0; c < chunks; c++) runConvChunk(this.engine.ex, this.job, c, 0);
      return;
    }
    const ctl = this.ctl;
    let base = Atomics.load(ctl, C.NEXT);
    if (base > 1 << 30) {
      // Counters only grow; rewind them between jobs (END first, see the worker's claim loop).
      Atomics.store(ctl, C.END, 0);
      Atomics.store(ctl, C.NEXT, 0);
      Atomics.store(ctl, C.DONE, 0);
      base = 0;
    }
    Atomics.store(ctl, C.ERR, 0);
    Atomics.store(ctl, C.BASE, base);
    Atomics.store(ctl, C.LIMIT, k); // before END: a worker that sees END sees this job's limit
    const end = base + chunks;
    Atomics.store(ctl, C.END, end);
    wakeWorkers(ctl, C.WAKE, k);
    let error: unknown;
    for (;;) {
      const c = Atomics.load(ctl, C.NEXT);
      if (c >= end) break;
      if (Atomics.compareExchange(ctl, C.NEXT, c, c + 1) !== c) continue;
      try {
        runConvChunk(this.engine.ex, this.job, c - base, 0);
      } catch (e) {
        error ??= e; // keep claiming so that the counters stay consistent, then rethrow
      }
      Atomics.add(ctl, C.DONE, 1);
    }
    for (let d = Atomics.load(ctl, C.DONE); d < end; d = Atomics.load(ctl, C.DONE)) {
      Atomics.wait(ctl, C.DONE, d);
    }
    if (error !== undefined) throw error;
    if (Atomics.load(ctl, C.ERR) !== 0) throw new Error("conv: a worker failed while computing its chunk");
  }

  /** Jobs run so far by participant count: `[k]` is the number of jobs run with k participants. */
  jobsByParticipants(): number[] {
    return this.jobs.slice(0, this.participants + 1);
  }

  /** Stops the workers. */
  shutdown(): void {
    stopWorkers(this.ctl, C.STOP, C.WAKE, this.workers);
  }
}
