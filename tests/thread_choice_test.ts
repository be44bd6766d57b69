// The participant-count chooser of kernels/wasm/thread_choice.ts against fake timings (converges to
// the fastest count, explores only neighbours of the best, starts from the work-size prior, follows
// a change of load, shrugs off calls slowed by another process, tries a losing count ever more
// rarely, so that 16 participants on a 2-core fake cost no more than a few % over 2), and the pools
// running a job with k of their participants: the same bits for every k, and the workers at and
// past k never claim a chunk (gemm, convolution, noise).
import assert from "node:assert/strict";
import { MAX_BACKOFF, participantCandidates, ThreadChoice } from "../kernels/wasm/thread_choice.ts";
import { DEFAULT_TILING, hasRelaxedSimd, hasWasmSimd, WasmGemmEngine } from "../kernels/wasm/gemm_wasm.ts";
import { GemmWorkerPool } from "../kernels/wasm/gemm_threads.ts";
import { threadSupport } from "../kernels/wasm/workers.ts";
import { NoiseWorkerPool } from "../kernels/wasm/noise_threads.ts";
import { BLOCKS_PER_ITER, KEYS_BYTE, REGION_BYTE, WasmNoise } from "../kernels/wasm/noise_wasm.ts";
import { HALF_PI_Q25, LN2_Q25, LOG_OFFSET, LOG_RECIP } from "../src/random/fixed_point.ts";
import { convThreadParticipants, convThreadStats, setConvThreads } from "../kernels/wasm/conv_wasm.ts";
import {
  conv2dForward,
  conv2dGradInput,
  conv2dGradWeight,
  type ConvDims,
  setConvPath,
} from "../kernels/wasm/conv.ts";
import { until } from "./_until.ts";

// ---------------------------------------------------------------------------------------------
// The chooser, with fake timings.

/** Runs `calls` calls of `work` units, each timed by `ms(k)`; returns the counts chosen, in order. */
function drive(choice: ThreadChoice, work: number, calls: number, ms: (k: number) => number): number[] {
  const chosen: number[] = [];
  for (let i = 0; i < calls; i++) {
    const k = choice.choose(work);
    chosen.push(k);
    choice.record(work, k, ms(k));
  }
  return chosen;
}

/** Times per participant count of a fake machine (ms for the whole call). */
const table = (t: Record<number, number>) => (k: number) => {
  assert.ok(k in t, `chose ${k}, not a candidate`);
  return t[k];
};

Deno.test("participantCandidates: powers of two below the maximum, then the maximum", () => {
  assert.deepEqual(participantCandidates(1), [1]);
  assert.deepEqual(participantCandidates(2), [1, 2]);
  assert.deepEqual(participantCandidates(6), [1, 2, 4, 6]);
  assert.deepEqual(participantCandidates(8), [1, 2, 4, 8]);
  assert.deepEqual(participantCandidates(16), [1, 2, 4, 8, 16]);
  for (const bad of [0, -1, 2.5, NaN]) {
    assert.throws(
      () => participantCandidates(bad),
      /participantCandidates: max must be an integer >= 1, got/,
    );
  }
  assert.throws(
    () => new ThreadChoice({ maxParticipants: 4, exploreEvery: 1, workPerParticipant: 1 }),
    /ThreadChoice: exploreEvery must be an integer >= 2, got 1/,
  );
  assert.throws(
    () => new ThreadChoice({ maxParticipants: 4, exploreEvery: 8, workPerParticipant: 0 }),
    /ThreadChoice: workPerParticipant must be > 0, got 0/,
  );
});

Deno.test("ThreadChoice: a class starts from the work-size prior (a small call wakes no 15 workers)", () => {
  const c = new ThreadChoice({ maxParticipants: 16, exploreEvery: 8, workPerParticipant: 1000 });
  assert.equal(c.choose(10), 1);
  assert.equal(c.choose(1500), 1); // class [1024, 2048): one participant per 1000 units → 1
  assert.equal(c.choose(4096), 4); // class [4096, 8192) → at most 4
  assert.equal(c.choose(7000), 4); // the same class, the same prior
  assert.equal(c.choose(12_000), 8);
  assert.equal(c.choose(1e9), 16);
});

Deno.test("ThreadChoice: on a 16-core fake where 2 participants are fastest, a large call ends at 2", () => {
  const c = new ThreadChoice({ maxParticipants: 16, exploreEvery: 8, workPerParticipant: 1 });
  const ms = table({ 1: 10, 2: 6, 4: 7, 8: 9, 16: 14 });
  const chosen = drive(c, 1e6, 200, ms);
  assert.equal(chosen[0], 16, "the prior of a large call");
  assert.equal(c.best(1e6), 2);
  // after it has settled, only the explorations leave 2, and ever more rarely (both neighbours lose)
  const late = chosen.slice(96); // calls 97 … 200: 13 exploration turns
  const away = late.filter((k) => k !== 2).length;
  assert.ok(away >= 1 && away <= 4, `${away} calls of 104 away from 2`);
  assert.ok(late.every((k) => k === 1 || k === 2 || k === 4), `explored past a neighbour: ${late}`);
});

Deno.test("ThreadChoice: converges to the fastest count from below and above, with noisy timings", () => {
  let seed = 12345;
  const noise = () => 1 + 0.1 * (((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff) - 0.5);
  const cases: [number, Record<number, number>, number][] = [
    [8, { 1: 10, 2: 5.5, 4: 3.1, 8: 2.2 }, 8], // scales to every core
    [8, { 1: 10, 2: 5.5, 4: 4, 8: 6 }, 4],
    [16, { 1: 2, 2: 3, 4: 4, 8: 5, 16: 6 }, 1], // workers never pay
    [6, { 1: 9, 2: 5, 4: 3, 6: 2.5 }, 6], // the maximum is not a power of two
  ];
  for (const [max, t, want] of cases) {
    for (const work of [2, 1e9]) { // prior 1 and prior max
      const c = new ThreadChoice({ maxParticipants: max, exploreEvery: 4, workPerParticipant: 1 });
      drive(c, work, 400, (k) => table(t)(k) * noise());
      assert.equal(c.best(work), want, `max ${max}, work ${work}`);
    }
  }
});

Deno.test("ThreadChoice: explores only neighbours of the current best, only every exploreEvery calls", () => {
  const c = new ThreadChoice({ maxParticipants: 16, exploreEvery: 5, workPerParticipant: 1 });
  const ms = table({ 1: 20, 2: 12, 4: 8, 8: 9, 16: 11 });
  const candidates = c.candidates;
  let explored = 0;
  for (let i = 1; i <= 300; i++) {
    const best = candidates.indexOf(c.best(1e6));
    const k = c.choose(1e6), j = candidates.indexOf(k);
    if (i % 5 === 0) {
      assert.ok(Math.abs(j - best) <= 1, `call ${i}: explored ${k}, best ${candidates[best]}`);
      if (j !== best) explored++;
    } else assert.equal(j, best, `call ${i}: chose ${k}, best ${candidates[best]}`);
    c.record(1e6, k, ms(k));
  }
  assert.equal(c.best(1e6), 4);
  assert.ok(explored >= 8, `only ${explored} explorations in 60 turns`);
});

Deno.test("ThreadChoice: a losing neighbour is tried ever more rarely, a winning one at the next turn", () => {
  const c = new ThreadChoice({ maxParticipants: 4, exploreEvery: 2, workPerParticipant: 1 });
  // every 2nd call is a turn; 1 and 4 lose every try: the turns they wait double up to the cap
  const chosen = drive(c, 1e6, 400, table({ 1: 10, 2: 5, 4: 8 }));
  assert.equal(c.best(1e6), 2);
  for (const loser of [1, 4]) {
    const tries = chosen.flatMap((k, i) => k === loser ? [i] : []);
    const gaps = tries.slice(1).map((t, i) => t - tries[i]); // in calls; a turn is 2 calls
    assert.ok(gaps[0] < gaps.at(-1)!, `tries of ${loser}: gaps ${gaps} do not grow`);
    assert.ok(gaps.slice(-4).every((g) => g === 2 * MAX_BACKOFF), `tries of ${loser}: gaps ${gaps}`);
  }
  // the machine changes: 4 now wins its next try, and is then the choice
  const after = drive(c, 1e6, 4 * MAX_BACKOFF + 4, table({ 1: 10, 2: 5, 4: 3 }));
  assert.equal(c.best(1e6), 4, `chosen ${after}`);
});

/** A deterministic generator of numbers in [0, 1). */
function uniform(seed: number): () => number {
  let s = seed;
  return () => (s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x80000000;
}

Deno.test("ThreadChoice: where more participants are no faster (no free cores), the fewer are used", () => {
  for (const seed of [1, 2, 3]) {
    const c = new ThreadChoice({ maxParticipants: 16, exploreEvery: 8, workPerParticipant: 1 });
    const r = uniform(seed), t: Record<number, number> = { 1: 10, 2: 5, 4: 5, 8: 5, 16: 5 };
    const chosen: number[] = [];
    for (let i = 0; i < 600; i++) {
      const k = c.choose(1e9); // prior 16
      chosen.push(k);
      c.record(1e9, k, t[k] * (0.98 + 0.04 * r()));
    }
    assert.equal(c.best(1e9), 2, `seed ${seed}`);
    const late = chosen.slice(300), past2 = late.filter((k) => k > 2).length;
    assert.ok(past2 <= late.length / 8, `seed ${seed}: ${past2} of ${late.length} late calls past 2`);
  }
});

Deno.test("ThreadChoice: a neighbour as fast as the best keeps being tried (noisy timings)", () => {
  const c = new ThreadChoice({ maxParticipants: 4, exploreEvery: 2, workPerParticipant: 1 });
  const r = uniform(8), t: Record<number, number> = { 1: 10, 2: 5, 4: 5 };
  let tied = 0, loser = 0;
  for (let i = 0; i < 1600; i++) {
    const best = c.best(1e6), k = c.choose(1e6);
    if (k !== best) k === 1 ? loser++ : tied++;
    c.record(1e6, k, t[k] * (0.9 + 0.2 * r()));
  }
  // (against the best's fastest recent time, the tied count would lose most tries, as 1 does)
  assert.ok(tied >= 2.5 * loser, `tries of the tied count ${tied}, of the slower one ${loser}`);
});

Deno.test("ThreadChoice: one call slowed by another process does not move the choice", () => {
  const c = new ThreadChoice({ maxParticipants: 8, exploreEvery: 8, workPerParticipant: 1 });
  const ms = table({ 1: 10, 2: 6, 4: 7, 8: 9 });
  drive(c, 1e6, 100, ms);
  assert.equal(c.best(1e6), 2);
  for (let i = 0; i < 3; i++) {
    const k = c.choose(1e6);
    c.record(1e6, k, 10 * ms(k)); // three calls in a row, ten times slower
    assert.equal(c.best(1e6), 2, `after outlier ${i + 1}`);
  }
});

Deno.test("ThreadChoice: 16 participants on a noisy 2-core fake cost at most a few % more than 2", () => {
  // More participants than cores: each extra participant costs (waking, taking turns on a core); on
  // top, a call is slowed 1.5–4× by another process with probability 0.15, 1 ± 5 % jitter otherwise.
  const cost: Record<number, number> = { 1: 10, 2: 6, 4: 7.5, 8: 11, 16: 19 };
  const total = (max: number, seed: number) => {
    const c = new ThreadChoice({ maxParticipants: max, exploreEvery: 8, workPerParticipant: 1 });
    const r = uniform(seed);
    let sum = 0, past2 = 0;
    for (let i = 0; i < 3000; i++) {
      const k = c.choose(1e9), u = r(), v = r();
      const ms = cost[k] * (u < 0.15 ? 1.5 + 2.5 * v : 0.95 + 0.1 * v);
      c.record(1e9, k, ms);
      if (i >= 200) [sum, past2] = [sum + ms, past2 + (k > 2 ? 1 : 0)];
    }
    return { sum, past2 };
  };
  for (const seed of [1, 2, 3, 4, 5]) {
    const two = total(2, seed), sixteen = total(16, seed);
    const ratio = sixteen.sum / two.sum;
    assert.ok(ratio < 1.03, `seed ${seed}: 16 / 2 = ${ratio.toFixed(3)}`);
    // (the floor: 4 tried every MAX_BACKOFF-th turn of every 8th call, 1.6 %)
    assert.ok(sixteen.past2 < 0.03 * 2800, `seed ${seed}: ${sixteen.past2} of 2800 calls past 2`);
  }
});

Deno.test("ThreadChoice: follows a change of load; size classes are independent", () => {
  const c = new ThreadChoice({ maxParticipants: 8, exploreEvery: 4, workPerParticipant: 1 });
  drive(c, 1e6, 200, table({ 1: 10, 2: 6, 4: 4, 8: 3 }));
  assert.equal(c.best(1e6), 8);
  drive(c, 1e3, 200, table({ 1: 1, 2: 2, 4: 3, 8: 4 }));
  assert.equal(c.best(1e3), 1);
  assert.equal(c.best(1e6), 8, "another class's calls moved this one");
  // the other cores get busy: one participant is now fastest for the large class
  drive(c, 1e6, 400, table({ 1: 10, 2: 14, 4: 20, 8: 30 }));
  assert.equal(c.best(1e6), 1);
  // a count that is not a candidate is ignored
  c.record(1e6, 3, 0.001);
  assert.equal(c.best(1e6), 1);
});

// ---------------------------------------------------------------------------------------------
// The pools with k of their participants: the same bits, the workers at and past k asleep.

const support = threadSupport();
const POOLS_OK = hasWasmSimd && support.ok && typeof SharedArrayBuffer === "function";
/** Participants of the pools built here: more than this machine may have, to test k < all. */
const PARTS = 4;

function filled(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) a[i] = ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff) - 0.5;
  return a;
}

function assertBits(got: Float32Array, want: Float32Array, what: string): void {
  assert.equal(got.length, want.length, what);
  const g = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const w = new Uint32Array(want.buffer, want.byteOffset, want.length);
  for (let i = 0; i < g.length; i++) if (g[i] !== w[i]) assert.fail(`${what}: element ${i} differs`);
}

Deno.test({
  name: "gemm pool: k = 1, 2, 4 participants give the same bits; workers at and past k never claim",
  ignore: !POOLS_OK,
  fn: async () => {
    const engine = new WasmGemmEngine(
      { ...DEFAULT_TILING, fma: DEFAULT_TILING.fma && hasRelaxedSimd },
      true,
      PARTS,
    );
    const pool = new GemmWorkerPool(engine, { ...support, participants: PARTS });
    try {
      assert.equal(pool.participants, PARTS);
      const shapes = [
        { M: 301, N: 67, K: 129, transA: false, transB: true }, // rows
        { M: 37, N: 290, K: 200, transA: true, transB: false }, // columns
      ];
      for (const s of shapes) {
        const a = filled(s.M * s.K, s.M), b = filled(s.K * s.N, s.N);
        const one = new Float32Array(s.M * s.N);
        engine.gemm({ ...s, a, aOff: 0, b, bOff: 0, c: one, cOff: 0 });
        const run = (k: number) => {
          const c = new Float32Array(s.M * s.N);
          pool.gemm({ ...s, a, aOff: 0, b, bOff: 0, c, cOff: 0 }, k);
          assertBits(c, one, `${JSON.stringify(s)} k ${k}`);
        };
        const before = [1, 2, 3].map((id) => pool.chunksOf(id));
        for (let i = 0; i < 5; i++) run(1);
        assert.deepEqual([1, 2, 3].map((id) => pool.chunksOf(id)), before, "k = 1 woke a worker");
        await until(() => run(2), () => pool.chunksOf(1) > before[0], "worker 1 computes a chunk with k = 2");
        for (let i = 0; i < 20; i++) run(2);
        assert.equal(pool.chunksOf(2), before[1], "worker 2 claimed a chunk of a 2-participant job");
        assert.equal(pool.chunksOf(3), before[2], "worker 3 claimed a chunk of a 2-participant job");
        await until(() => run(4), () => pool.chunksOf(3) > before[2], "worker 3 computes a chunk with k = 4");
        for (let i = 0; i < 5; i++) run(1);
        run(2);
      }
    } finally {
      pool.shutdown();
    }
  },
});

Deno.test({
  name:
    "noise pool: rounds with k = 1, 2, 4 participants draw the same bits; workers at and past k never claim",
  ignore: !POOLS_OK,
  fn: async () => {
    const tables = { recip: LOG_RECIP, offset: LOG_OFFSET, ln2: LN2_Q25, halfPi: HALF_PI_Q25 };
    const w = new WasmNoise(tables, false, true);
    const pool = new NoiseWorkerPool(w, PARTS, support.kind);
    try {
      w.setKeys(0x1234567, 0x7654321);
      const nb = 20_000, cb = 32 * BLOCKS_PER_ITER;
      w.reserve(REGION_BYTE + 16 * (nb + BLOCKS_PER_ITER));
      const draw = (k: number) => {
        let handed = 0;
        pool.round(0, 1, 77, nb, 5, 9, cb, (lo, hi) => void (handed += hi - lo), k);
        assert.equal(handed, nb);
        return w.f32().slice(REGION_BYTE / 4, REGION_BYTE / 4 + 4 * nb);
      };
      const one = draw(1);
      assert.ok(one.some((x) => x !== 0) && KEYS_BYTE < REGION_BYTE);
      const before = [1, 2, 3].map((id) => pool.chunksOf(id));
      await until(
        () => assertBits(draw(2), one, "k 2"),
        () => pool.chunksOf(1) > before[0],
        "worker 1 draws",
      );
      for (let i = 0; i < 10; i++) assertBits(draw(2), one, "k 2");
      assert.equal(pool.chunksOf(2), before[1], "worker 2 drew a chunk of a 2-participant round");
      assert.equal(pool.chunksOf(3), before[2], "worker 3 drew a chunk of a 2-participant round");
      await until(
        () => assertBits(draw(4), one, "k 4"),
        () => pool.chunksOf(3) > before[2],
        "worker 3 draws",
      );
      assertBits(draw(1), one, "k 1 after 4");
    } finally {
      pool.shutdown();
    }
  },
});

Deno.test({
  name: 'conv: setConvThreads(1) and (2) give the same bits as "single" in all three kernels',
  ignore: !POOLS_OK || convThreadParticipants() < 2,
  fn: async () => {
    const d: ConvDims = { N: 6, C: 5, H: 13, W: 11, O: 7, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1 };
    const x = filled(d.N * d.C * d.H * d.W, 1), w = filled(d.O * d.C * d.kh * d.kw, 2);
    const gy = filled(d.N * d.O * d.H * d.W, 3);
    const all = (mode: "single" | number) => {
      const prev = setConvThreads(mode), prevPath = setConvPath("direct");
      try {
        return [
          conv2dForward(x, w, d),
          conv2dGradInput(gy, w, d),
          conv2dGradWeight(x, gy, d),
        ] as Float32Array[];
      } finally {
        setConvThreads(prev);
        setConvPath(prevPath);
      }
    };
    const one = all("single");
    const check = (k: number) => all(k).forEach((r, i) => assertBits(r, one[i], `kernel ${i} k ${k}`));
    check(1);
    const before = convThreadStats().workerChunks;
    check(1);
    assert.equal(convThreadStats().workerChunks, before, "k = 1 used a worker");
    await until(() => check(2), () => convThreadStats().workerChunks > before, "a worker computes a chunk");
    assert.throws(
      () => setConvThreads(convThreadParticipants() + 1),
      /setConvThreads: a participant count must be/,
    );
    assert.throws(() => setConvThreads(0), /setConvThreads: a participant count must be/);
  },
});
