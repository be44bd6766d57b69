/**
 * Workers for the WebAssembly noise generator: every worker instantiates the generated module
 * (`noise_wasm.ts`) over the same shared memory and sleeps in `Atomics.wait` on its own wake-up
 * word. A round of noise (a run of Philox blocks) is published in control words with its
 * participant count k; workers 1 … k − 1 are woken (the others stay asleep) and, with the calling
 * thread, claim its chunks with a compare-and-swap and write the draws of each chunk to its place
 * in the shared draw region. The calling thread hands each of its own chunks to the consumer right after
 * drawing it (still in cache), and the workers' finished chunks between two of its own; at the end
 * it waits for and hands over the rest. Every chunk is a pure function of the stream's counter, so
 * which thread draws it changes no bit.
 *
 * Workers spin briefly after a round they drew in before they sleep: the rounds of one optimizer
 * step come back to back, and a worker woken from sleep may be scheduled onto the caller's core
 * (measured on a 2-core VM), where it only takes turns with the caller. A worker that came too late
 * to draw (no core was free for it) goes straight back to sleep.
 *
 * Starting and stopping the workers, and whether they can be used, is in `workers.ts`.
 *
 * Internal module: `noise.ts` decides when to use it (`setNoiseThreads`).
 *
 * @module
 */
import {
  type PoolWorker,
  startWorkers,
  stopWorkers,
  type ThreadSupport,
  threadSupport,
  wakeWorkers,
  type WorkerKind,
  workerSource,
} from "./workers.ts";
import {
  BLOCKS_PER_ITER,
  CTL_BYTE,
  FLAGS_BYTE,
  KEYS_BYTE,
  MAX_CHUNKS,
  REGION_BYTE,
  type WasmNoise,
} from "./noise_wasm.ts";

export { type ThreadSupport, threadSupport, type WorkerKind };

/** Control words (int32 indices into the shared memory). */
const C = {
  STOP: CTL_BYTE / 4 + 1, // nonzero: workers exit
  EPOCH: CTL_BYTE / 4 + 2, // the pool that owns the memory (workers of older pools exit)
  NEXT: CTL_BYTE / 4 + 3, // next chunk number to claim
  END: CTL_BYTE / 4 + 4, // one past the last chunk number of the round
  BASE: CTL_BYTE / 4 + 5, // chunk number of the round's chunk 0
  JOB: CTL_BYTE / 4 + 6, // round id, written into a chunk's flag when it is done
  LAW: CTL_BYTE / 4 + 7,
  SC: CTL_BYTE / 4 + 8, // float32 bits
  B0: CTL_BYTE / 4 + 9, // Philox block counter of the round's first block (int32, wraps)
  C1: CTL_BYTE / 4 + 10,
  C2: CTL_BYTE / 4 + 11,
  CB: CTL_BYTE / 4 + 12, // blocks per chunk (a multiple of BLOCKS_PER_ITER)
  NB: CTL_BYTE / 4 + 13, // blocks in the round
  DST: CTL_BYTE / 4 + 14, // byte address of the round's first block
  KEYS: CTL_BYTE / 4 + 15, // byte address of the round keys
  WORKED: CTL_BYTE / 4 + 16, // chunks drawn by workers (statistics)
  LIMIT: CTL_BYTE / 4 + 17, // the round's participant count: only participants below it claim chunks
  WAKE: CTL_BYTE / 4 + 32, // worker id's wake-up word is WAKE + id (ids 1 … 15)
  WORKED_BY: CTL_BYTE / 4 + 48, // chunks drawn by worker id at WORKED_BY + id (statistics)
  FLAGS: FLAGS_BYTE / 4, // one int32 per chunk: the round id when done, −id when the worker failed
} as const;

/** How long the calling thread spins on a worker's chunk before it sleeps (ms). */
const SPIN_MS = 0.2;
/** How long a worker spins for the next round before it sleeps (ms). */
const WORKER_SPIN_MS = 0.2;
/** After this long without a worker's chunk (ms), the calling thread draws it and retires the pool. */
const STALL_MS = 5000;

/** The worker's source (plain JavaScript; CommonJS under node:worker_threads, or a module). */
const WORKER_SOURCE = workerSource(`
const C = ${JSON.stringify({ ...C, BPI: BLOCKS_PER_ITER })};
const main = (d) => {
  const ex = new WebAssembly.Instance(new WebAssembly.Module(d.bytes), { env: { mem: d.mem } }).exports;
  const fns = [ex.gaussian, ex.laplace, ex.uniform];
  const ctl = new Int32Array(d.mem.buffer, 0, C.FLAGS + ${MAX_CHUNKS});
  const f32 = new Float32Array(d.mem.buffer, 0, C.FLAGS);
  const wake = C.WAKE + d.id;
  let gen = Atomics.load(ctl, wake), drew = false;
  for (;;) {
    // the rounds of one optimizer step come back to back: spin a little before sleeping (a
    // thread woken up by the caller may land on the caller's core and preempt it); not after a
    // round that was over when this worker came (no core was free for it: spinning takes one)
    const t = performance.now();
    while (drew && Atomics.load(ctl, wake) === gen && performance.now() - t < ${WORKER_SPIN_MS});
    Atomics.wait(ctl, wake, gen);
    gen = Atomics.load(ctl, wake);
    if (Atomics.load(ctl, C.STOP) !== 0 || Atomics.load(ctl, C.EPOCH) !== d.epoch) return;
    drew = false;
    for (;;) {
      const c = Atomics.load(ctl, C.NEXT), e = Atomics.load(ctl, C.END);
      if (c >= e || d.id >= Atomics.load(ctl, C.LIMIT)) break;
      if (Atomics.compareExchange(ctl, C.NEXT, c, c + 1) !== c) continue;
      drew = true;
      const k = c - Atomics.load(ctl, C.BASE), job = Atomics.load(ctl, C.JOB);
      let flag = job;
      try {
        const cb = ctl[C.CB], lo = k * cb, nb = Math.min(cb, ctl[C.NB] - lo);
        fns[ctl[C.LAW]](Math.ceil(nb / C.BPI), (ctl[C.B0] + lo) | 0, ctl[C.C1], ctl[C.C2], f32[C.SC],
          ctl[C.DST] + 16 * lo, ctl[C.KEYS]);
        Atomics.add(ctl, C.WORKED, 1);
        Atomics.add(ctl, C.WORKED_BY + d.id, 1);
      } catch {
        flag = -job;
      }
      Atomics.store(ctl, C.FLAGS + k, flag);
      Atomics.notify(ctl, C.FLAGS + k);
    }
  }
};
`);

let epochs = 0;

/**
 * Workers sharing a shared-memory {@linkcode WasmNoise}'s memory; the calling thread is
 * participant 0. Rounds draw into the region at `REGION_BYTE`.
 */
export class NoiseWorkerPool {
  private readonly workers: PoolWorker[];
  private readonly ctl: Int32Array;
  private readonly ctlF32: Float32Array;
  private readonly epoch = ++epochs;
  private readonly mine = new Uint8Array(MAX_CHUNKS);
  /** Jobs run so far, by participant count (index k). */
  private readonly jobs: number[] = new Array(17).fill(0);
  private job = 0;
  /** True once a worker stalled past `STALL_MS`: the pool and its memory must not be used again. */
  broken = false;

  /**
   * Starts `participants − 1` workers of `kind` (they join rounds as soon as they are up); check
   * {@linkcode threadSupport} first.
   */
  constructor(private readonly engine: WasmNoise, participants: number, kind: WorkerKind = "node") {
    if (!engine.shared) throw new Error("NoiseWorkerPool: the engine's memory is not shared");
    engine.reserve(REGION_BYTE);
    this.ctl = new Int32Array(engine.memory.buffer, 0, C.FLAGS + MAX_CHUNKS);
    this.ctlF32 = new Float32Array(engine.memory.buffer, 0, C.FLAGS);
    Atomics.store(this.ctl, C.STOP, 0);
    Atomics.store(this.ctl, C.EPOCH, this.epoch);
    const msg = { bytes: engine.bytes, mem: engine.memory, epoch: this.epoch };
    this.workers = startWorkers(WORKER_SOURCE, kind, participants - 1, (id) => ({ ...msg, id }));
  }

  /** Number of workers started. */
  get size(): number {
    return this.workers.length;
  }

  /** Chunks drawn by workers so far. */
  get workerChunks(): number {
    return Atomics.load(this.ctl, C.WORKED);
  }

  /** Participants a round can have: the calling thread and the workers. */
  get participants(): number {
    return this.workers.length + 1;
  }

  /** Chunks drawn so far by worker `id` (1 … size). */
  chunksOf(id: number): number {
    return id >= 1 && id <= this.workers.length ? Atomics.load(this.ctl, C.WORKED_BY + id) : 0;
  }

  /**
   * Draws the blocks `b .. b + nb` (counter words c1, c2; round keys already at `KEYS_BYTE`) of
   * law code `law` with factor `sc` into the region (block `b + j` at `REGION_BYTE + 16·j`), in
   * chunks of `cb` blocks (a multiple of `BLOCKS_PER_ITER`; the last chunk may write up to
   * `BLOCKS_PER_ITER − 1` blocks past `nb`). `onChunk(lo, hi)` is called once per chunk, on the
   * calling thread, in no particular order, when blocks `[lo, hi)` (relative to `b`) are ready.
   * `participants` (clamped to the pool's; all by default): the calling thread and workers
   * 1 … participants − 1 draw; the others stay asleep.
   */
  round(
    law: number,
    sc: number,
    b: number,
    nb: number,
    c1: number,
    c2: number,
    cb: number,
    onChunk: (lo: number, hi: number) => void,
    participants: number = this.participants,
  ): void {
    const ctl = this.ctl, chunks = Math.ceil(nb / cb);
    const k = Math.max(1, Math.min(this.participants, Math.floor(participants)));
    this.jobs[k]++;
    if (chunks > MAX_CHUNKS || cb % BLOCKS_PER_ITER !== 0) {
      throw new RangeError(`NoiseWorkerPool.round: ${chunks} chunks of ${cb} blocks`);
    }
    let base = Atomics.load(ctl, C.NEXT);
    if (base > 1 << 30) {
      // Counters only grow; rewind them between rounds (END first, see the worker's claim loop).
      Atomics.store(ctl, C.END, 0);
      Atomics.store(ctl, C.NEXT, 0);
      base = 0;
    }
    const job = this.job = (this.job % 0x3fffffff) + 1;
    ctl.fill(0, C.FLAGS, C.FLAGS + chunks);
    ctl[C.JOB] = job;
    ctl[C.LAW] = law;
    this.ctlF32[C.SC] = sc;
    ctl[C.B0] = b | 0;
    ctl[C.C1] = c1 | 0;
    ctl[C.C2] = c2 | 0;
    ctl[C.CB] = cb;
    ctl[C.NB] = nb;
    ctl[C.DST] = REGION_BYTE;
    ctl[C.KEYS] = KEYS_BYTE;
    Atomics.store(ctl, C.BASE, base);
    Atomics.store(ctl, C.LIMIT, k); // before END: a worker that sees END sees this round's limit
    const end = base + chunks;
    Atomics.store(ctl, C.END, end);
    wakeWorkers(ctl, C.WAKE, k);
    const mine = this.mine, fn = this.engine.fns[law];
    mine.fill(0, 0, chunks);
    const draw = (k: number) => {
      const lo = k * cb, cnt = Math.min(cb, nb - lo);
      fn(
        Math.ceil(cnt / BLOCKS_PER_ITER),
        (b + lo) | 0,
        c1 | 0,
        c2 | 0,
        sc,
        REGION_BYTE + 16 * lo,
        KEYS_BYTE,
      );
    };
    let claimedUpTo = end; // chunks at and after this number were withdrawn, never drawn by a worker
    const flags = C.FLAGS;
    try {
      // Claim and draw chunks; between two, hand over the workers' finished ones (so that the
      // workers keep drawing while this thread consumes, and little is left to hand over at the end).
      let cursor = 0; // every chunk below it is handed over
      for (;;) {
        for (; cursor < chunks; cursor++) {
          if (mine[cursor] === 1) continue;
          if (Atomics.load(ctl, flags + cursor) !== job) break;
          mine[cursor] = 1;
          onChunk(cursor * cb, Math.min(nb, (cursor + 1) * cb));
        }
        const c = Atomics.load(ctl, C.NEXT);
        if (c >= end) break;
        if (Atomics.compareExchange(ctl, C.NEXT, c, c + 1) !== c) continue;
        const k = c - base;
        draw(k);
        mine[k] = 1; // handed over (set first: an exception in onChunk must not make us wait for it)
        onChunk(k * cb, Math.min(nb, (k + 1) * cb));
      }
      for (let k = cursor; k < chunks; k++) {
        if (mine[k] === 1) continue;
        if (this.broken || !this.await(k, job)) draw(k); // the worker failed or stalled: draw it here
        mine[k] = 1;
        onChunk(k * cb, Math.min(nb, (k + 1) * cb));
      }
    } finally {
      // On an exception (from onChunk), withdraw the unclaimed chunks and let the workers finish
      // theirs before the region can be reused.
      for (;;) {
        const c = Atomics.load(ctl, C.NEXT);
        if (c >= end) break;
        if (Atomics.compareExchange(ctl, C.NEXT, c, end) === c) {
          claimedUpTo = c;
          break;
        }
      }
      for (let k = 0; k < claimedUpTo - base && !this.broken; k++) if (mine[k] !== 1) this.await(k, job);
    }
  }

  /** Waits for a worker's chunk `k` of round `job`; false when it failed or stalled (pool retired). */
  private await(k: number, job: number): boolean {
    const ctl = this.ctl, at = C.FLAGS + k;
    let v = Atomics.load(ctl, at);
    if (v === 0) {
      const t0 = performance.now();
      while ((v = Atomics.load(ctl, at)) === 0 && performance.now() - t0 < SPIN_MS);
      while (v === 0) {
        if (Atomics.wait(ctl, at, 0, STALL_MS) === "timed-out" && Atomics.load(ctl, at) === 0) {
          this.retire();
          return false;
        }
        v = Atomics.load(ctl, at);
      }
    }
    return v === job;
  }

  /** A worker stalled: stop the workers and mark the pool (and its memory) unusable. */
  private retire(): void {
    this.broken = true;
    this.shutdown();
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
