/**
 * Self-tuning choice of how many participants (the calling thread plus workers) run a call of the
 * threaded gemm, convolution and noise. The candidates are the powers of two below the pool's
 * participants, plus all of them (16 → 1, 2, 4, 8, 16; 6 → 1, 2, 4, 6). Per size class (the power
 * of two of the work), an exponential average of the time per unit of work of each candidate; the
 * fastest measured one is used, and every `exploreEvery` calls of the class one of its neighbours
 * (one step down or up, an unmeasured one first, otherwise alternately) is tried instead, so the
 * choice walks to the fastest count and follows the machine's load. A class starts from a
 * work-size prior: at most one participant per `workPerParticipant` units of work, so that a
 * 16-core machine never starts by waking 15 workers for a small call.
 *
 * Workers only pay where cores are free and the work is large enough to repay their wake-up: on a
 * busy machine, or where a woken worker lands on the caller's core, fewer participants are faster.
 *
 * @module
 */

/** Averages kept per size class. */
interface ClassSpeed {
  /** Exponential average of ms per unit of work, per candidate index; 0 = never measured. */
  perUnit: number[];
  /** Calls of the class so far. */
  calls: number;
  /** Explorations so far (alternates the neighbour when both are measured). */
  explored: number;
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

/** Weight of a new measurement in a candidate's exponential average. */
const NEW_WEIGHT = 0.3;

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
    return this.#speed[key] ??= {
      perUnit: this.candidates.map(() => 0),
      calls: 0,
      explored: 0,
      // the prior of the class's smallest work, so that every call of the class gets the same one
      prior: this.#priorIndex(2 ** key),
    };
  }

  /** Index of the fastest measured candidate of `s`, or its prior when none is measured. */
  #bestIndex(s: ClassSpeed): number {
    let best = -1;
    for (let i = 0; i < s.perUnit.length; i++) {
      if (s.perUnit[i] > 0 && (best < 0 || s.perUnit[i] < s.perUnit[best])) best = i;
    }
    return best < 0 ? s.prior : best;
  }

  /** The neighbour of candidate `i` to try: an unmeasured one first, otherwise alternately. */
  #neighbour(s: ClassSpeed, i: number): number | undefined {
    const options = [i - 1, i + 1].filter((j) => j >= 0 && j < this.candidates.length);
    if (options.length === 0) return undefined;
    const unmeasured = options.find((j) => s.perUnit[j] === 0);
    if (unmeasured !== undefined) return unmeasured;
    return options[s.explored++ % options.length];
  }

  /** The participant count for a call of `work` units (counts the call). */
  choose(work: number): number {
    const s = this.#class(work);
    s.calls++;
    const best = this.#bestIndex(s);
    if (s.calls % this.#exploreEvery === 0) {
      const j = this.#neighbour(s, best);
      if (j !== undefined) return this.candidates[j];
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
    const s = this.#class(work), x = Math.max(ms, 1e-6) / work, old = s.perUnit[i];
    s.perUnit[i] = old === 0 ? x : (1 - NEW_WEIGHT) * old + NEW_WEIGHT * x;
  }
}
