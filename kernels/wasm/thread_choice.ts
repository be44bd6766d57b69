/**
 * Self-tuning choice of how many participants (the calling thread plus workers) run a call of the
 * threaded gemm, convolution and noise. The candidates are the powers of two below the pool's
 * participants, plus all of them (16 → 1, 2, 4, 8, 16; 6 → 1, 2, 4, 6). Per size class (the power
 * of two of the work), each candidate keeps its last {@linkcode RECENT} times per unit of work, and
 * its figure is the fastest of them: the noise of a shared machine only ever slows a call down, so
 * one call slowed by another process neither drives the choice away from the fastest count nor
 * keeps a count that was once unlucky from being chosen again. The count with the best figure is
 * used (a larger one only where it is better by more than {@linkcode MORE_MUST_GAIN}); every
 * `exploreEvery` calls of the class one of its neighbours (one step down or up, an unmeasured one
 * first, otherwise alternately) is tried instead, so that the choice walks to the fastest count and
 * follows the machine's load. A neighbour whose try came out slower than the best's typical call
 * (the median of its recent ones) is tried again only after twice as many turns as before (at most
 * {@linkcode MAX_BACKOFF} times as many), one that came out faster at the next turn: where workers
 * do not pay (a busy machine, more participants than free cores), the tries of a slower count cost
 * ever fewer calls, while a count as fast as the best keeps being tried.
 * A class starts from a work-size prior: at most one participant per `workPerParticipant` units
 * of work, so that a 16-core machine never starts by waking 15 workers for a small call.
 *
 * Workers only pay where cores are free and the work is large enough to repay their wake-up: on a
 * busy machine, or where a woken worker lands on the caller's core, fewer participants are faster.
 *
 * @module
 */

/** Times per unit of work kept per candidate and size class; a candidate's figure is their minimum. */
export const RECENT = 4;

/** Most exploration turns a neighbour that keeps losing waits before it is tried again. */
export const MAX_BACKOFF = 8;

/**
 * A larger count is preferred only where its figure is better by more than this fraction: where
 * more participants are no faster (no free core for them: a woken worker then finds every chunk
 * taken), the fewer are used, and the cores and wake-ups are left to others.
 */
export const MORE_MUST_GAIN = 0.05;

/** What is kept per size class. */
interface ClassSpeed {
  /** Per candidate index, its last `RECENT` times per unit of work (ms), oldest overwritten first. */
  recent: number[][];
  /** Per candidate index, where its next time goes in `recent`. */
  slot: number[];
  /** Per candidate index, the exploration turns it waits after a lost try (1, 2, 4 … MAX_BACKOFF). */
  backoff: number[];
  /** Per candidate index, the exploration turns left before it may be tried again. */
  skip: number[];
  /** Calls of the class so far. */
  calls: number;
  /** Explorations so far (alternates the neighbour when both are measured). */
  explored: number;
  /** The candidate index being tried by the exploration in flight, −1 when none. */
  trying: number;
  /** The candidate index a class starts from. */
  prior: number;
}

/** Settings of a {@linkcode ThreadChoice}. */
export interface ThreadChoiceOptions {
  /** Participants of the pool (the calling thread included); at least 1. */
  maxParticipants: number;
  /** Every this many calls of a size class, a neighbour of the best count is tried instead. */
  exploreEvery: number;
  /** Units of work per participant below which another participant is not tried first. */
  workPerParticipant: number;
}

/** The participant counts tried for a pool of `max`: powers of two below it, then `max`. */
export function participantCandidates(max: number): number[] {
  if (!Number.isInteger(max) || max < 1) {
    throw new RangeError(`participantCandidates: max must be an integer >= 1, got ${max}`);
  }
  const out: number[] = [];
  for (let k = 1; k < max; k *= 2) out.push(k);
  out.push(max);
  return out;
}

/** The per-size-class choice of a participant count; see the module documentation. */
export class ThreadChoice {
  /** The participant counts this chooser picks from, ascending. */
  readonly candidates: readonly number[];
  readonly #speed: ClassSpeed[] = [];
  readonly #exploreEvery: number;
  readonly #workPerParticipant: number;

  /** A chooser over the counts of {@linkcode participantCandidates}`(maxParticipants)`. */
  constructor(options: ThreadChoiceOptions) {
    const { maxParticipants, exploreEvery, workPerParticipant } = options;
    if (!Number.isInteger(exploreEvery) || exploreEvery < 2) {
      throw new RangeError(`ThreadChoice: exploreEvery must be an integer >= 2, got ${exploreEvery}`);
    }
    if (!(workPerParticipant > 0)) {
      throw new RangeError(`ThreadChoice: workPerParticipant must be > 0, got ${workPerParticipant}`);
    }
    this.candidates = participantCandidates(maxParticipants);
    this.#exploreEvery = exploreEvery;
    this.#workPerParticipant = workPerParticipant;
  }

  /** The candidate index of the largest count within the work-size prior for `work` units. */
  #priorIndex(work: number): number {
    const allowed = Math.max(1, Math.floor(work / this.#workPerParticipant));
    let i = 0;
    while (i + 1 < this.candidates.length && this.candidates[i + 1] <= allowed) i++;
    return i;
  }

  #class(work: number): ClassSpeed {
    const key = Math.max(0, Math.floor(Math.log2(Math.max(1, work))));
    const n = this.candidates.length;
    return this.#speed[key] ??= {
      recent: Array.from({ length: n }, () => []),
      slot: new Array(n).fill(0),
      backoff: new Array(n).fill(1),
      skip: new Array(n).fill(0),
      calls: 0,
      explored: 0,
      trying: -1,
      // the prior of the class's smallest work, so that every call of the class gets the same one
      prior: this.#priorIndex(2 ** key),
    };
  }

  /** Candidate `i`'s figure in `s`: its fastest recent time per unit, Infinity when never measured. */
  #figure(s: ClassSpeed, i: number): number {
    const r = s.recent[i];
    return r.length === 0 ? Infinity : Math.min(...r);
  }

  /** Candidate `i`'s typical recent time per unit in `s`: the median of its recent times. */
  #typical(s: ClassSpeed, i: number): number {
    const r = [...s.recent[i]].sort((a, b) => a - b), m = r.length >> 1;
    return r.length === 0 ? Infinity : r.length % 2 ? r[m] : (r[m - 1] + r[m]) / 2;
  }

  /**
   * Index of the measured candidate of `s` with the best figure (a larger count only where it is
   * faster by more than {@linkcode MORE_MUST_GAIN}), or its prior when none is measured.
   */
  #bestIndex(s: ClassSpeed): number {
    let best = -1, bestFigure = Infinity;
    for (let i = 0; i < this.candidates.length; i++) {
      const f = this.#figure(s, i);
      if (f < (best < 0 ? Infinity : bestFigure * (1 - MORE_MUST_GAIN))) [best, bestFigure] = [i, f];
    }
    return best < 0 ? s.prior : best;
  }

  /**
   * The neighbour of candidate `i` to try at this exploration turn: an unmeasured one first,
   * otherwise alternately among those whose backoff has run out; none while both wait.
   */
  #neighbour(s: ClassSpeed, i: number): number | undefined {
    const options = [i - 1, i + 1].filter((j) => j >= 0 && j < this.candidates.length);
    const unmeasured = options.find((j) => s.recent[j].length === 0);
    if (unmeasured !== undefined) return unmeasured;
    const ready = options.filter((j) => s.skip[j] === 0);
    for (const j of options) if (s.skip[j] > 0) s.skip[j]--;
    if (ready.length === 0) return undefined;
    return ready[s.explored++ % ready.length];
  }

  /** The participant count for a call of `work` units (counts the call). */
  choose(work: number): number {
    const s = this.#class(work);
    s.calls++;
    s.trying = -1;
    const best = this.#bestIndex(s);
    if (s.calls % this.#exploreEvery === 0) {
      const j = this.#neighbour(s, best);
      if (j !== undefined) {
        s.trying = j;
        return this.candidates[j];
      }
    }
    return this.candidates[best];
  }

  /** The count the next non-exploring call of `work` units would get (counts nothing). */
  best(work: number): number {
    return this.candidates[this.#bestIndex(this.#class(work))];
  }

  /** Records that a call of `work` units took `ms` milliseconds with `participants` participants. */
  record(work: number, participants: number, ms: number): void {
    const i = this.candidates.indexOf(participants);
    if (i < 0 || !(ms >= 0) || !(work > 0)) return; // a count this chooser does not pick: not its business
    const s = this.#class(work), x = Math.max(ms, 1e-6) / work;
    if (i === s.trying) {
      // An exploration: a loss doubles the turns this count waits, a win lets it be tried at the
      // next. One call against the typical of the best's recent calls (their median), like with
      // like: against their fastest, an equally fast count would lose most tries.
      const lost = x > this.#typical(s, this.#bestIndex(s));
      s.backoff[i] = lost ? Math.min(MAX_BACKOFF, 2 * s.backoff[i]) : 1;
      s.skip[i] = s.backoff[i] - 1;
      s.trying = -1;
    }
    const r = s.recent[i];
    r[s.slot[i]] = x;
    s.slot[i] = (s.slot[i] + 1) % RECENT;
  }
}
