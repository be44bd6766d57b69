/**
 * The cost of neural variability inside a real training step: MLP 784-256-256-10, batch 128,
 * valueAndGrad at `perturb(params)` + `update` + `applyUpdates`, for sgd and vsgd (official and
 * exact mode) and adam and vadam, interleaved round by round so that machine noise hits all alike.
 * Prints the median step time, examples/s and the vsgd/sgd and vadam/adam ratios. The noise is
 * drawn with the default thread setting ("auto": the calling thread plus noise workers where
 * they pay, see `setNoiseThreads`); the rows marked "1 noise thread" draw it on the calling thread
 * alone, for comparison (`--noise-threads 1` or `2` forces one setting on every row).
 *
 *   deno run -A bench/train_step_bench.ts [--rounds 7] [--steps 20] [--noise-threads auto|1|2…]
 *     [--max-threads 2,16,1] [--warmup 40] [--settle 300]
 *
 * `--max-threads L1,L2,…` is a same-process A/B of the thread limit (`setThreadLimit`: the most
 * participants every CPU worker pool — GEMM, convolution, noise — may use, even past the hardware
 * threads): rounds rotate through the limits; at each switch the pools restart (their self-tuning
 * starts again), `--warmup` untimed steps (with a `--settle` ms pause after the first two, for the
 * new workers to start; `--settle 0 --warmup 3` times the steps right after the workers' start)
 * let it settle, then `--steps` steps are timed, for sgd and vsgd (official).
 * Prints each limit's median examples/s, its speed ratio to the first limit (the median of the
 * rounds' ratios, with their range: each round's limits run moments apart, which a machine's
 * drift hits alike), and how many of the jobs the GEMM and noise worker pools ran in the timed
 * steps had more than 2 participants, of those with 2 or more (few when the choice settled on at
 * most 2). `--max-threads 2,16` on a 2-core machine is the harsh test of the self-tuning: 16 must
 * not be more than a few % slower than 2; on a 16-core machine, 16 should be the faster.
 */
import { parseArgs } from "node:util";
import { crossEntropy, mlp, type MlpParams, randn, type Tensor, valueAndGrad } from "../mod.ts";
import { adam, applyUpdates, sgd, vadam, vsgd } from "../src/optim/mod.ts";
import type { Optimizer } from "../src/optim/mod.ts";
import { getNoiseThreads, noiseThreadStats, setNoiseThreads } from "../src/random/noise.ts";
import { gemmThreadStats } from "../kernels/wasm/gemm.ts";
import { setThreadLimit } from "../kernels/wasm/workers.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "7" },
    steps: { type: "string", default: "20" },
    "noise-threads": { type: "string" },
    "max-threads": { type: "string" },
    warmup: { type: "string", default: "40" },
    settle: { type: "string", default: "300" },
  },
});
const ROUNDS = Number(args.values.rounds), STEPS = Number(args.values.steps), BATCH = 128;
const forced = args.values["noise-threads"];
const THREADS: number | "auto" | undefined = forced === undefined
  ? undefined
  : forced === "auto"
  ? "auto"
  : Number(forced);

const net = mlp([784, 256, 256, 10], { seed: 0 });
const x = randn([BATCH, 784], { seed: 1 });
const y = Int32Array.from({ length: BATCH }, (_, i) => i % 10);
const lossGrad = valueAndGrad((p: MlpParams, xb: Tensor) => crossEntropy(net.forward(p, xb), y));

const optimizers: Record<string, () => Optimizer<unknown>> = {
  sgd: () => sgd({ lr: 0.01 }),
  "vsgd official": () => vsgd({ lr: 0.01, variability: 0.05, numIters: 469 }),
  "vsgd exact": () => vsgd({ lr: 0.01, variability: 0.05, numIters: 469, mode: "exact" }),
  adam: () => adam({ lr: 1e-3 }),
  "vadam official": () => vadam({ lr: 1e-3, variability: 0.05, numIters: 469 }),
  "vadam exact": () => vadam({ lr: 1e-3, variability: 0.05, numIters: 469, mode: "exact" }),
};
/** The noise-thread setting of each row (the default rows: "auto"). */
const threadsOf: Record<string, number | "auto"> = {};
const PARTICIPANTS = getNoiseThreads();
if (THREADS === undefined && PARTICIPANTS > 1) {
  for (const name of ["vsgd official", "vsgd exact"]) {
    optimizers[`${name} 1t`] = optimizers[name];
    threadsOf[`${name} 1t`] = 1;
  }
}

/**
 * Jobs of the GEMM and noise worker pools (those that exist now) so far: `[more than 2
 * participants, 2 or more]`.
 */
function poolJobs(): [number, number] {
  let past = 0, all = 0;
  for (const jobs of [gemmThreadStats().jobsByParticipants, noiseThreadStats().jobsByParticipants]) {
    jobs.forEach((n, k) => [past, all] = [past + (k > 2 ? n : 0), all + (k > 1 ? n : 0)]);
  }
  return [past, all];
}

/**
 * The time of one step (ms) of `make`'s optimizer after `warmup` untimed steps, and the pool
 * jobs of the timed steps ({@linkcode poolJobs}). With `settle`, the warm-up pauses that
 * long (ms) after its first steps, so that workers just started are up before the timed steps.
 */
async function timeSteps(
  name: string,
  make: () => Optimizer<unknown>,
  warmup = 3,
  settle = 0,
): Promise<{ ms: number; jobs: [number, number] }> {
  setNoiseThreads(THREADS ?? threadsOf[name] ?? "auto");
  const opt = make();
  let params = net.params, state = opt.init(params);
  const step = () => {
    const { grads } = lossGrad(opt.perturb(params, state), x);
    const r = opt.update(grads, state, params);
    params = applyUpdates(params, r.updates);
    state = r.state;
  };
  for (let i = 0; i < warmup; i++) {
    if (i === 2 && settle > 0) await new Promise((r) => setTimeout(r, settle));
    step();
  }
  const jobs0 = poolJobs(), t0 = performance.now();
  for (let i = 0; i < STEPS; i++) step();
  const jobs = poolJobs();
  return { ms: (performance.now() - t0) / STEPS, jobs: [jobs[0] - jobs0[0], jobs[1] - jobs0[1]] };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

if (args.values["max-threads"] !== undefined) {
  const limits = args.values["max-threads"].split(",").map(Number);
  try {
    for (const l of limits) setThreadLimit(l);
  } catch (e) {
    console.error(`--max-threads: ${(e as Error).message}`);
    Deno.exit(2);
  }
  const WARMUP = Number(args.values.warmup), rows = ["sgd", "vsgd official"];
  const ms: Record<string, number[]> = {}, jobs: Record<string, [number, number]> = {};
  for (let r = 0; r < ROUNDS; r++) {
    for (let i = 0; i < limits.length; i++) {
      const limit = limits[(i + r) % limits.length];
      setThreadLimit(limit);
      for (const name of rows) {
        const key = `${name} @${limit}`;
        const t = await timeSteps(name, optimizers[name], WARMUP, Number(args.values.settle));
        (ms[key] ??= []).push(t.ms);
        const j = jobs[key] ??= [0, 0];
        [j[0], j[1]] = [j[0] + t.jobs[0], j[1] + t.jobs[1]];
      }
    }
  }
  setThreadLimit("auto");
  console.log(
    `MLP 784-256-256-10, batch ${BATCH}, thread limits ${limits.join(", ")} ` +
      `(${navigator.hardwareConcurrency} hardware threads), ${ROUNDS} rounds × ${WARMUP} untimed + ` +
      `${STEPS} timed steps (medians; the speed ratio to @${limits[0]}: the median of the rounds' ratios, ` +
      `with their range)`,
  );
  for (const name of rows) {
    const first = ms[`${name} @${limits[0]}`];
    const parts = limits.map((l) => {
      const m = ms[`${name} @${l}`], ratios = m.map((t, r) => first[r] / t);
      return `@${l} ${(BATCH / median(m) * 1000).toFixed(0)} ex/s (${median(ratios).toFixed(3)}× ` +
        `[${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}], ` +
        `${jobs[`${name} @${l}`].join(" of ")} pool jobs past 2 participants)`;
    });
    console.log(`${name.padEnd(14)} ${parts.join(", ")}`);
  }
  Deno.exit(0);
}

const times: Record<string, number[]> = {};
for (let r = 0; r < ROUNDS; r++) {
  for (const [name, make] of Object.entries(optimizers)) {
    (times[name] ??= []).push((await timeSteps(name, make)).ms);
  }
}
const med: Record<string, number> = {};
console.log(
  `MLP 784-256-256-10, batch ${BATCH}, ${ROUNDS} rounds × ${STEPS} steps (medians); noise threads: ${
    THREADS ?? "auto"
  } (${PARTICIPANTS} participants here; "1t" rows: the calling thread alone)`,
);
for (const name of Object.keys(optimizers)) {
  med[name] = median(times[name]);
  console.log(
    `${name.padEnd(16)} ${med[name].toFixed(2).padStart(7)} ms/step  ${
      (BATCH / med[name] * 1000).toFixed(0).padStart(6)
    } ex/s`,
  );
}
for (const mode of ["official", "exact"]) {
  const single = med[`vsgd ${mode} 1t`];
  console.log(
    `vsgd/sgd (${mode}): ${(med[`vsgd ${mode}`] / med.sgd).toFixed(3)}${
      single ? `  (1 noise thread: ${(single / med.sgd).toFixed(3)})` : ""
    }`,
  );
  console.log(`vadam/adam (${mode}): ${(med[`vadam ${mode}`] / med.adam).toFixed(3)}`);
}
