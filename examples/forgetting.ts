#!/usr/bin/env -S deno run --allow-read --allow-write
/**
 * Catastrophic forgetting on permuted MNIST (docs/algorithm.md §7): T tasks, task t showing the images
 * through a fixed seeded pixel permutation (task 0: the identity), one shared 10-way head, the
 * tasks trained in sequence with the same optimizer (its state carried over), and after each task
 * the test accuracy on every task: the accuracy matrix R[t][j]. Reports the average final
 * accuracy and the average forgetting (per old task: its best accuracy since it was learned minus
 * its final accuracy) for each optimizer (default: SGD and VSGD), mean ± sd over seeds.
 *
 *   deno run --allow-read --allow-write examples/forgetting.ts             # seeds 0,1,2: ~1–1.5 min on 2 cores
 *   deno run --allow-read --allow-write examples/forgetting.ts --tasks 5 --epochs 2 --seeds 0
 *
 * Run with --help for every option. Exit codes: 0 done, 1 runtime failure, 2 bad command line.
 *
 * @module
 */
import { setDefaultDevice } from "../src/webgpu/mod.ts";
import { mlp } from "../src/nn/mod.ts";
import { type Dataset, exampleSize, loadMnist, permutation, randomSubset } from "../src/data/mod.ts";
import { evaluate, fit, formatDuration, progressLogger } from "../src/train/mod.ts";
import { type ForgettingMetrics, forgettingMetrics } from "../src/train/metrics.ts";
import {
  alignedTable,
  applyTrainOptions,
  checkpointOption,
  type Console,
  CsvLog,
  csvNumber,
  csvValue,
  isInt,
  makeOptimizer,
  mean,
  type OptionValues,
  pairBySeed,
  parseCommandLine,
  parseNumber,
  pm,
  pmSigned,
  readCsv,
  type RunContext,
  runScript,
  sd,
  TRAIN_DEFAULTS,
  TRAIN_OPTIONS,
  trainOptionsHelp,
  type TrainSettings,
  UsageError,
  writeAtomic,
} from "./_common.ts";
import { lineChartSvg, type LineSeries } from "./svg_plot.ts";

export { UsageError };

/** The experiment's settings after parsing (`epochs` is per task). */
export interface Config extends TrainSettings {
  /** Number of tasks T (≥ 2). */
  tasks: number;
}

/**
 * The defaults: the README's three-seed table (seeds 0, 1, 2), about 1–1.5 min in all on a 2-core
 * CPU (20–30 s per seed).
 */
export const DEFAULTS: Config = {
  ...TRAIN_DEFAULTS,
  seeds: [0, 1, 2],
  tasks: 4,
  epochs: 3,
  out: "runs/forgetting",
};

const HELP = `Catastrophic forgetting on permuted MNIST: SGD vs VSGD or others (docs/algorithm.md §7).
Tasks in sequence, one shared head; the accuracy matrix R[t][j] (on task j after training task t).

Usage: deno run --allow-read --allow-write examples/forgetting.ts [options]

  --tasks T             number of tasks, >= 2; task 0 is plain MNIST, task t a fixed seeded pixel
                        permutation of it (default ${DEFAULTS.tasks})
${trainOptionsHelp(DEFAULTS, " per task")}
The model is the MLP 784-256-256-10. The training subset is the same images for every task.
Writes DIR/config.json, DIR/<optimizer>_seed<S>.csv (R, one row per task trained), DIR/curves.csv
(task-0 test accuracy after every epoch), both appended as they happen, DIR/checkpoints/ (the newest
checkpoint of each run, at least one per task), DIR/summary.csv and DIR/task0.svg.
`;

/**
 * Parses the command line into a {@linkcode Config}; throws {@linkcode UsageError} (one line) on
 * bad input. Returns `"help"` for `--help`.
 */
export function parseConfig(args: readonly string[]): Config | "help" {
  const values: OptionValues = parseCommandLine(args, { ...TRAIN_OPTIONS, tasks: { type: "string" } });
  if (values.help) return "help";
  const c: Config = structuredClone(DEFAULTS);
  applyTrainOptions(values, c);
  const t = values.tasks as string | undefined;
  if (t !== undefined) {
    c.tasks = parseNumber("tasks", t, (x) => isInt(x) && x >= 2 && x <= 1000, "an integer in [2, 1000]");
  }
  return c;
}

/**
 * The pixel permutation of task `task` for `seed`: the identity for task 0, otherwise a seeded
 * uniformly random permutation of `0 … size−1` (a pure function of `(task, size, seed)`).
 */
export function taskPermutation(task: number, size: number, seed: number): Int32Array {
  if (!Number.isInteger(task) || task < 0) {
    throw new RangeError(`taskPermutation: task must be a non-negative integer, got ${task}`);
  }
  if (task === 0) return Int32Array.from({ length: size }, (_, i) => i);
  return permutation(size, { seed, epoch: task, stream: "permuted-mnist" });
}

/**
 * The dataset whose example i has input `x'[k] = x[perm[k]]` (pixel k shows the old pixel
 * `perm[k]`), labels shared. `perm` must be a permutation of `0 … exampleSize − 1`.
 */
export function permutePixels(ds: Dataset, perm: ArrayLike<number>): Dataset {
  const D = exampleSize(ds);
  if (perm.length !== D) {
    throw new RangeError(
      `permutePixels: perm has ${perm.length} entries, expected ${D} (one per input number)`,
    );
  }
  const seen = new Uint8Array(D);
  for (let k = 0; k < D; k++) {
    const p = perm[k];
    if (!Number.isInteger(p) || p < 0 || p >= D || seen[p]) {
      throw new RangeError(`permutePixels: perm is not a permutation of 0…${D - 1} (entry ${k} is ${p})`);
    }
    seen[p] = 1;
  }
  const n = ds.y.length, x = new Float32Array(n * D);
  for (let i = 0, o = 0; i < n; i++, o += D) {
    for (let k = 0; k < D; k++) x[o + k] = ds.x[o + perm[k]];
  }
  return { x, y: ds.y, inputShape: ds.inputShape, numClasses: ds.numClasses };
}

interface RunResult {
  label: string;
  seed: number;
  /** R[t][j]: test accuracy on task j after training tasks 0…t. */
  R: number[][];
  metrics: ForgettingMetrics;
  /** Task-0 test accuracy after every epoch (all tasks in sequence). */
  task0: number[];
  seconds: number;
}

function summarize(results: RunResult[], c: Config): { text: string; csv: string } {
  const labels = c.optimizers.map((o) => o.label).filter((l) => results.some((r) => r.label === l));
  const runs = (l: string) => results.filter((r) => r.label === l);
  const cols: [string, (r: RunResult) => number][] = [
    ["avg final acc", (r) => r.metrics.averageAccuracy],
    ["avg forgetting", (r) => r.metrics.averageForgetting],
    ["BWT", (r) => r.metrics.backwardTransfer],
    ["acc just learned", (r) => r.metrics.learningAccuracy],
    ["task 0 final", (r) => r.R[c.tasks - 1][0]],
  ];
  const rows = labels.map((l) => [
    l,
    ...cols.map(([, f]) => pm(runs(l).map(f))),
    mean(runs(l).map((r) => r.seconds)).toFixed(1),
  ]);
  const ref = labels[0];
  for (const l of labels.slice(1)) {
    const pairs = pairBySeed(runs(l), runs(ref));
    rows.push([
      `${l} − ${ref}`,
      ...cols.map(([, f]) => pmSigned(pairs.map(([a, b]) => f(a) - f(b)))),
      "",
    ]);
  }
  const text = alignedTable(["optimizer", ...cols.map(([h]) => h), "s/run"], rows);
  // The mean R matrix per optimizer.
  const mats = labels.map((l) => {
    const rs = runs(l);
    const header = ["after task", ...Array.from({ length: c.tasks }, (_, j) => `task ${j}`)];
    const body = Array.from({ length: c.tasks }, (_, t) => [
      String(t),
      ...Array.from({ length: c.tasks }, (_, j) => pm(rs.map((r) => r.R[t][j]))),
    ]);
    return `R (${l}, mean ± sd over ${rs.length} seed${rs.length > 1 ? "s" : ""}):\n` +
      alignedTable(header, body);
  });
  const csv = [
    "optimizer,seeds,avg_final_acc,avg_final_acc_sd,avg_forgetting,avg_forgetting_sd,bwt,bwt_sd,learning_acc,learning_acc_sd,task0_final,task0_final_sd,seconds_per_run",
  ];
  for (const l of labels) {
    const rs = runs(l);
    csv.push([
      l,
      rs.map((r) => r.seed).join(" "),
      ...cols.flatMap(([, f]) => [csvNumber(mean(rs.map(f)), 6), csvNumber(sd(rs.map(f)), 6)]),
      csvNumber(mean(rs.map((r) => r.seconds)), 6),
    ].join(","));
  }
  return { text: text + "\n" + mats.join("\n"), csv: csv.join("\n") + "\n" };
}

const CURVE_COLUMNS = [
  "optimizer",
  "seed",
  "epoch",
  "task",
  "lr",
  "batch_loss",
  "task0_test_acc",
  "task0_test_loss",
];

async function run(c: Config, io: Console, args: readonly string[], ctx: RunContext): Promise<void> {
  const device = await setDefaultDevice(c.backend);
  io.out(`deno run --allow-read --allow-write examples/forgetting.ts ${args.join(" ")}`.trim() + "\n");
  const mnist = await loadMnist({ layout: "flat", testLimit: c.testSubset });
  const terminal = Deno.stdout.isTerminal();
  const results: RunResult[] = [];
  // Resumed: each run keeps its rows up to its checkpoint (none for a run not started).
  const done = new Map<string, number>();
  for (const seed of c.seeds) {
    for (const spec of c.optimizers) {
      done.set(`${spec.label},${seed}`, await ctx.checkpointEpoch(spec.label, seed));
    }
  }
  const keepUpTo = (label: string, seed: string | number, epoch: string | number) =>
    ctx.resuming && Number(epoch) <= (done.get(`${label},${seed}`) ?? 0);
  const oldCurves = readCsv(`${c.out}/curves.csv`);
  const curves = CsvLog.open(
    `${c.out}/curves.csv`,
    CURVE_COLUMNS,
    ctx.resuming ? (r) => keepUpTo(r[0], r[1], r[2]) : undefined,
  );
  try {
    for (const seed of c.seeds) {
      const base = randomSubset(mnist.train, c.subset, seed);
      const perms = Array.from({ length: c.tasks }, (_, t) => taskPermutation(t, exampleSize(base), seed));
      const trains = perms.map((p) => permutePixels(base, p));
      const tests = perms.map((p) => permutePixels(mnist.test, p));
      const stepsPerEpoch = Math.ceil(base.y.length / c.batchSize);
      io.out(
        `seed ${seed}: ${c.tasks} tasks × ${c.epochs} epochs, ${base.y.length} training and ${mnist.test.y.length} ` +
          `test examples per task, mlp, device ${device}, ${stepsPerEpoch} steps/epoch\n`,
      );
      for (const spec of c.optimizers) {
        const net = mlp([784, 256, 256, 10], { seed });
        const optimizer = makeOptimizer(spec, c, stepsPerEpoch, seed);
        const file = `${c.out}/${spec.label}_seed${seed}.csv`;
        const header = ["optimizer", "seed", "after_task", "epoch", ...tests.map((_, j) => `acc_task${j}`)];
        const oldR = readCsv(file);
        const rLog = CsvLog.open(file, header, ctx.resuming ? (r) => keepUpTo(r[0], r[1], r[3]) : undefined);
        let resumeAt = done.get(`${spec.label},${seed}`) ?? 0;
        // What the rows kept say: R's rows of the tasks done, task 0's accuracy per epoch.
        const R: number[][] = oldR.filter((r) => keepUpTo(r.optimizer, r.seed, r.epoch)).map((r) =>
          tests.map((_, j) => csvValue(r[`acc_task${j}`]))
        );
        const task0: number[] = oldCurves.filter((r) =>
          r.optimizer === spec.label && r.seed === String(seed) && keepUpTo(r.optimizer, r.seed, r.epoch)
        ).map((r) => csvValue(r.task0_test_acc));
        let params: any = net.params;
        let state: any = undefined;
        const t0 = performance.now();
        try {
          for (let t = R.length; t < c.tasks; t++) {
            const end = (t + 1) * c.epochs;
            const r = await fit({
              params,
              state,
              // After a resume: from the run's checkpoint, which may end this task (its R row not written yet).
              resume: resumeAt > 0 ? ctx.checkpointDir(spec.label, seed) : undefined,
              startEpoch: resumeAt > 0 ? undefined : t * c.epochs, // the epoch count runs on over the tasks
              checkpoint: checkpointOption(ctx, c, spec.label, seed),
              signal: ctx.signal,
              forward: net.forward as any,
              optimizer,
              train: trains[t],
              test: tests[0],
              epochs: end - Math.max(resumeAt, t * c.epochs),
              batchSize: c.batchSize,
              seed,
              evalTrain: false,
              evalBatchSize: c.evalBatchSize,
              logger: progressLogger({ write: io.out, terminal, label: `${spec.label} s${seed} task ${t}` }),
              onEpoch: (m) => {
                task0.push(m.testAccuracy);
                curves.append([
                  spec.label,
                  seed,
                  m.epoch,
                  t,
                  csvNumber(spec.lr ?? c.lr),
                  csvNumber(m.batchLoss),
                  csvNumber(m.testAccuracy),
                  csvNumber(m.testLoss),
                ]);
              },
            });
            resumeAt = 0;
            params = r.rawParams; // with the state, what continues training
            state = r.state;
            if (ctx.signal.aborted && r.history.at(-1)?.epoch !== end) return;
            const row: number[] = [];
            for (const test of tests) {
              row.push(
                (await evaluate(net.forward as any, r.params, test, { batchSize: c.evalBatchSize })).accuracy,
              );
            }
            R.push(row);
            rLog.append([spec.label, seed, t, end, ...row.map((a) => csvNumber(a))]);
            io.out(
              `${spec.label} seed ${seed}: after task ${t}: ${
                row.map((a, j) => `task ${j} ${a.toFixed(4)}`).join(", ")
              }\n`,
            );
            if (ctx.signal.aborted) return;
          }
        } finally {
          rLog.close();
        }
        const seconds = (performance.now() - t0) / 1000;
        const metrics = forgettingMetrics(R);
        results.push({ label: spec.label, seed, R, metrics, task0, seconds });
        io.out(
          `${spec.label} seed ${seed}: ${formatDuration(seconds)}; average final accuracy ` +
            `${metrics.averageAccuracy.toFixed(4)}, average forgetting ${
              metrics.averageForgetting.toFixed(4)
            } → ${file}\n`,
        );
      }
    }
  } finally {
    curves.close();
  }
  if (ctx.signal.aborted) return;
  writeResults(c, io, results);
}

function writeResults(c: Config, io: Console, results: RunResult[]): void {
  const title = `Permuted MNIST, ${c.tasks} tasks in sequence, MLP 784-256-256-10`;
  const subtitle = `${c.subset} train examples, ${c.epochs} epochs/task, batch ${c.batchSize}, lr ${c.lr}, ` +
    `variability ${c.variability} ${c.noiseLaw}, seeds ${c.seeds.join(",")}`;
  const E = c.tasks * c.epochs;
  const series: LineSeries[] = [];
  c.optimizers.forEach((spec, k) => {
    const rs = results.filter((r) => r.label === spec.label);
    if (rs.length === 0) return;
    const per = Array.from({ length: E }, (_, e) => rs.map((r) => r.task0[e]));
    const suffix = rs.length > 1 ? ` (mean ± sd of ${rs.length} seeds)` : "";
    series.push({
      name: `${spec.label}: task 0${suffix}`,
      x: per.map((_, e) => e + 1),
      y: per.map(mean),
      yErr: per.map(sd),
      color: k,
    });
    series.push({
      name: `${spec.label}: mean over tasks learned so far`,
      x: Array.from({ length: c.tasks }, (_, t) => (t + 1) * c.epochs),
      y: Array.from({ length: c.tasks }, (_, t) => mean(rs.map((r) => mean(r.R[t].slice(0, t + 1))))),
      dashed: true,
      color: k,
    });
  });
  writeAtomic(
    `${c.out}/task0.svg`,
    lineChartSvg(series, {
      title,
      subtitle,
      xLabel: "epoch (dotted lines: the next task starts)",
      yLabel: "test accuracy",
      // From a round tenth below the lowest point, so that the drops are visible.
      yRange: [
        Math.max(
          0,
          Math.floor(
                10 * Math.min(
                  1,
                  ...series.flatMap((s) => s.y.filter(Number.isFinite)),
                ),
              ) / 10 - 0.1,
        ),
        1,
      ],
      vLines: Array.from({ length: c.tasks - 1 }, (_, t) => (t + 1) * c.epochs + 0.5),
    }),
  );
  const table = summarize(results, c);
  writeAtomic(`${c.out}/summary.csv`, table.csv);
  io.out(`\n${title}; ${subtitle}\n${table.text}\nwrote ${c.out}/task0.svg, ${c.out}/summary.csv\n`);
}

/** Runs the experiment; returns the process exit code. */
export function main(args: readonly string[]): Promise<number> {
  // --epochs is per task: changing it on --resume would change the tasks, so it may not.
  return runScript(
    "forgetting",
    args,
    parseConfig,
    HELP,
    (c, io, _d, ctx) => run(c, io, args, ctx),
    undefined,
    [],
  );
}

if (import.meta.main) Deno.exit(await main(Deno.args));
