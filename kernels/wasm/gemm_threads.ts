/**
 * Workers for the WebAssembly GEMM. Every worker instantiates the same module over the same shared
 * memory and sleeps in `Atomics.wait` on its own wake-up word. A product is published in the
 * control words with its participant count k; workers 1 … k − 1 are woken (the others stay asleep)
 * and, with the calling thread, claim its chunks (rows or columns of C) with a compare-and-swap, so
 * a slow or still-starting worker never holds the others up; the caller blocks in `Atomics.wait`
 * until every chunk is done. Each element of C is computed by one chunk, in the same order on any
 * thread and for any k, so the result is the same bits whatever k.
 *
 * Starting and stopping the workers, and whether they can be used, is in `../workers.ts`.
 *
 * @module
 */
import type { GemmArgs } from "./gemm_call.ts";
import { CTL, type GemmJob, type WasmGemmEngine } from "./gemm_wasm.ts";
import {
  type PoolWorker,
  startWorkers,
  stopWorkers,
  type ThreadSupport,
  wakeWorkers,
  workerSource,
} from "./workers.ts";

/**
 * Extra control words (besides those of `CTL`): the pool's epoch, a worker's failure, the job's
 * participant count, one wake-up word per worker id (`WAKE + id`) and chunks per worker id.
 */
const EPOCH = 6, ERR = 7, LIMIT = 21, WAKE = 32, WORKED_BY = 48, WORDS = 64;

/** The worker's source (plain JavaScript; runs as CommonJS under node:worker_threads or as a module). */
const WORKER_SOURCE = workerSource(`
const C = ${JSON.stringify({ ...CTL, EPOCH, ERR, LIMIT, WAKE, WORKED_BY, WORDS })};
const main = (d) => {
  const ex = new WebAssembly.Instance(new WebAssembly.Module(d.bytes), { env: { mem: d.mem } }).exports;
  const ctl = new Int32Array(d.mem.buffer, 0, C.WORDS);
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
        const total = ctl[C.TOTAL], size = ctl[C.CHUNK], s = (c - ctl[C.BASE]) * size;
        const t = Math.min(total, s + size), g = C.ARGS;
        if (ctl[C.MODE] === 0) {
          ex.rows(ctl[g], ctl[g + 1], ctl[g + 2], ctl[g + 3], ctl[g + 4], ctl[g + 5], ctl[g + 6], ctl[g + 7],
            ctl[g + 8], s, t, d.wsA, d.scratch);
        } else {
          ex.cols(ctl[g], ctl[g + 1], ctl[g + 2], ctl[g + 3], ctl[g + 4], ctl[g + 5], ctl[g + 6], ctl[g + 7],
            ctl[g + 8], s, t, d.wsB, d.scratch);
        }
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

/** Workers sharing a {@linkcode WasmGemmEngine}'s memory; the calling thread is participant 0. */
export class GemmWorkerPool {
  private readonly workers: PoolWorker[];
  private readonly ctl: Int32Array;
  private readonly epoch = ++epochs;
  /** Jobs run so far, by participant count (index k). */
  private readonly jobs: number[] = new Array(17).fill(0);

  /** Starts `support.participants - 1` workers (they join products as soon as they are up). */
  constructor(private readonly engine: WasmGemmEngine, support: ThreadSupport) {
    if (!support.ok || !engine.shared) {
      throw new Error(`GemmWorkerPool: workers are unavailable: ${support.reason ?? "memory not shared"}`);
    }
    this.ctl = new Int32Array(engine.memory.buffer, 0, WORDS);
    Atomics.store(this.ctl, CTL.STOP, 0);
    Atomics.store(this.ctl, EPOCH, this.epoch);
    const n = Math.min(support.participants, engine.participants) - 1;
    this.workers = startWorkers(WORKER_SOURCE, support.kind!, n, (id) => ({
      bytes: engine.bytes,
      mem: engine.memory,
      epoch: this.epoch,
      id,
      ...engine.workspace(id),
    }));
  }

  /** Number of workers started. */
  get size(): number {
    return this.workers.length;
  }

  /** Participants a job can have: the calling thread and the workers. */
  get participants(): number {
    return this.workers.length + 1;
  }

  /** Chunks computed so far by worker `id` (1 … size). */
  chunksOf(id: number): number {
    return id >= 1 && id <= this.workers.length ? Atomics.load(this.ctl, WORKED_BY + id) : 0;
  }

  /** Chunks computed by workers so far (all pools over this memory). */
  get workerChunks(): number {
    return Atomics.load(this.ctl, CTL.WORKED);
  }

  /**
   * Runs all chunks of `job` with `participants` participants (clamped to the pool's): the calling
   * thread alone for 1, otherwise with workers 1 … participants − 1 (those that are up).
   */
  run(job: GemmJob, participants: number = this.participants): void {
    const k = Math.max(1, Math.min(this.participants, Math.floor(participants)));
    this.jobs[k]++;
    if (k === 1) {
      for (let i = 0; i < job.chunks; i++) this.engine.runChunk(job, i, 0);
      return;
    }
    const ctl = this.ctl;
    let base = Atomics.load(ctl, CTL.NEXT);
    if (base > 1 << 30) {
      // Counters only grow; rewind them between products (END first, see the worker's claim loop).
      Atomics.store(ctl, CTL.END, 0);
      Atomics.store(ctl, CTL.NEXT, 0);
      Atomics.store(ctl, CTL.DONE, 0);
      base = 0;
    }
    for (let i = 0; i < 9; i++) ctl[CTL.ARGS + i] = job.args[i];
    ctl[CTL.MODE] = job.mode === "rows" ? 0 : 1;
    ctl[CTL.TOTAL] = job.total;
    ctl[CTL.CHUNK] = job.chunk;
    Atomics.store(ctl, ERR, 0);
    Atomics.store(ctl, CTL.BASE, base);
    Atomics.store(ctl, LIMIT, k); // before END: a worker that sees END sees this job's limit
    const end = base + job.chunks;
    Atomics.store(ctl, CTL.END, end);
    wakeWorkers(ctl, WAKE, k);
    let error: unknown;
    for (;;) {
      const c = Atomics.load(ctl, CTL.NEXT);
      if (c >= end) break;
      if (Atomics.compareExchange(ctl, CTL.NEXT, c, c + 1) !== c) continue;
      try {
        this.engine.runChunk(job, c - base, 0);
      } catch (e) {
        error ??= e; // keep claiming so that the counters stay consistent, then rethrow
      }
      Atomics.add(ctl, CTL.DONE, 1);
    }
    for (let d = Atomics.load(ctl, CTL.DONE); d < end; d = Atomics.load(ctl, CTL.DONE)) {
      Atomics.wait(ctl, CTL.DONE, d);
    }
    if (error !== undefined) throw error;
    if (Atomics.load(ctl, ERR) !== 0) throw new Error("gemm: a worker failed while computing its chunk");
  }

  /** C = op(A)·op(B) with `participants` participants (all of the pool's by default). */
  gemm(g: GemmArgs<Float32Array>, participants: number = this.participants): void {
    const e = this.engine, k = Math.max(1, Math.min(this.participants, Math.floor(participants)));
    const { job, cPtr } = e.prepare(g, k);
    this.run(job, k);
    e.copyOut(cPtr, g);
  }

  /** Jobs run so far by participant count: `[k]` is the number of jobs run with k participants. */
  jobsByParticipants(): number[] {
    return this.jobs.slice(0, this.participants + 1);
  }

  /** Stops the workers. */
  shutdown(): void {
    stopWorkers(this.ctl, CTL.STOP, WAKE, this.workers);
  }
}
