/**
 * Self-tuning choice between the calling thread alone and the calling thread plus worker threads,
 * shared by the threaded gemm and the threaded noise. Per size class (the power of two of the
 * work), an exponential average of the time per unit of work of each way; the faster one is used
 * and the other retried every `exploreEvery` calls. Workers only pay where a core is free: on a
 * busy machine (or where the scheduler puts a woken worker on the caller's core) the calling thread
 * alone is faster, and this keeps "auto" close to the better of the two.
 *
 * @module
 */

/** Averages kept per size class. */
interface ClassSpeed {
  single: number;
  threaded: number;
  calls: number;
}

/** The per-size-class choice between one thread and the workers; see the module documentation. */
export class ThreadChoice {
  readonly #speed: ClassSpeed[] = [];
  readonly #exploreEvery: number;

  /** A chooser that retries the slower way every `exploreEvery` calls of a size class. */
  constructor(exploreEvery: number) {
    this.#exploreEvery = exploreEvery;
  }

  #class(work: number): ClassSpeed {
    return this.#speed[Math.floor(Math.log2(work))] ??= { single: 0, threaded: 0, calls: 0 };
  }

  /** Whether a call of `work` units should use the workers (counts the call). */
  useThreads(work: number): boolean {
    const s = this.#class(work);
    s.calls++;
    const better = s.threaded === 0 || (s.single !== 0 && s.threaded < s.single);
    return s.calls % this.#exploreEvery === 0 ? !better : better;
  }

  /** Records that a call of `work` units took `ms` milliseconds, with the workers or without. */
  record(work: number, threaded: boolean, ms: number): void {
    const s = this.#class(work), x = ms / work;
    if (threaded) s.threaded = s.threaded === 0 ? x : 0.7 * s.threaded + 0.3 * x;
    else s.single = s.single === 0 ? x : 0.7 * s.single + 0.3 * x;
  }
}
