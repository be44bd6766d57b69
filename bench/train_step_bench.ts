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
 */
import { parseArgs } from "node:util";
import { crossEntropy, mlp, type MlpParams, randn, type Tensor, valueAndGrad } from "../mod.ts";
import { adam, applyUpdates, sgd, vadam, vsgd } from "../src/optim/mod.ts";
import type { Optimizer } from "../src/optim/mod.ts";
import { getNoiseThreads, setNoiseThreads } from "../src/random/noise.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "7" },
    steps: { type: "string", default: "20" },
    "noise-threads": { type: "string" },
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

function timeSteps(name: string, make: () => Optimizer<unknown>): number {
  setNoiseThreads(THREADS ?? threadsOf[name] ?? "auto");
  const opt = make();
  let params = net.params, state = opt.init(params);
  const step = () => {
    const { grads } = lossGrad(opt.perturb(params, state), x);
    const r = opt.update(grads, state, params);
    params = applyUpdates(params, r.updates);
    state = r.state;
  };
  for (let i = 0; i < 3; i++) step();
  const t0 = performance.now();
  for (let i = 0; i < STEPS; i++) step();
  return (performance.now() - t0) / STEPS;
}

const times: Record<string, number[]> = {};
for (let r = 0; r < ROUNDS; r++) {
  for (const [name, make] of Object.entries(optimizers)) (times[name] ??= []).push(timeSteps(name, make));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
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
