#!/usr/bin/env -S deno run --allow-read --allow-write
/**
 * Catastrophic forgetting (docs/algorithm.md §7), two protocols. Permuted MNIST (the default): T
 * tasks, task t showing the images through a fixed seeded pixel permutation (task 0: the
 * identity). Split MNIST (`--protocol split`): T ≤ 5 tasks, task t the classes {2t, 2t+1}. One
 * shared 10-way head, the tasks trained in sequence with the same optimizer (its state carried
 * over), and after each task the test accuracy on every task: the accuracy matrix R[t][j]. Reports
 * the average final accuracy and the average forgetting (per old task: its best accuracy since it
 * was learned minus its final accuracy) for each optimizer (default: SGD and VSGD), mean ± sd over
 * seeds. Split MNIST scores the shared head two ways: class-incremental (argmax over the 10
 * outputs: R) and task-aware (argmax over the task's two classes: its own matrix).
 *
 *   deno run --allow-read --allow-write examples/forgetting.ts             # seeds 0,1,2: ~1–1.5 min on 2 cores
 *   deno run --allow-read --allow-write examples/forgetting.ts --protocol split   # seeds 0,1,2: ~2–4 min
 *   deno run --allow-read --allow-write examples/forgetting.ts --tasks 5 --epochs 2 --seeds 0
 *
 * Run with --help for every option. Exit codes: 0 done, 1 runtime failure, 2 bad command line,
 * 130 interrupted (continue with --resume).
 *
 * @module
 */
import { setDefaultDevice } from "../src/webgpu/mod.ts";
import { mlp } from "../src/nn/mod.ts";
import { dispose } from "../src/memory.ts";
import type { Tensor } from "../src/tensor.ts";
import { type Dataset, exampleSize, loadMnist, permutation, randomSubset, subset } from "../src/data/mod.ts";
import { evaluate, fit, formatDuration, progressLogger } from "../src/train/mod.ts";
import { argmaxRows, type ForgettingMetrics, forgettingMetrics } from "../src/train/metrics.ts";
import {
  alignedTable,
  applyTrainOptions,
  checkpointOption,
  commandLine,
  type Console,
  CsvLog,
  csvNumber,
  csvValue,
  fail,
  isInt,
  makeOptimizer,
  mean,
  oneOf,
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

/** The forgetting protocols: permuted MNIST (pixel permutations) or split MNIST (pairs of classes). */
export const PROTOCOLS = ["permuted", "split"] as const;
/** A forgetting protocol (`--protocol`). */
export type Protocol = typeof PROTOCOLS[number];

/** The number of split-MNIST tasks there are: the classes {0, 1}, {2, 3}, …, {8, 9}. */
export const SPLIT_TASKS = 5;

/** The experiment's settings after parsing (`epochs` is per task). */
export interface Config extends TrainSettings {
  /** `permuted`: task t permutes the pixels; `split`: task t is the classes {2t, 2t+1}. */
  protocol: Protocol;
  /** Number of tasks T (≥ 2; ≤ 5 for `split`). */
  tasks: number;
}

/**
 * The defaults (permuted MNIST): the README's three-seed table (seeds 0, 1, 2), about 1–1.5 min in
 * all on a 2-core CPU (20–30 s per seed).
 */
export const DEFAULTS: Config = {
  ...TRAIN_DEFAULTS,
  seeds: [0, 1, 2],
  protocol: "permuted",
  tasks: 4,
  epochs: 3,
  out: "runs/forgetting",
};

/**
 * The defaults of `--protocol split`: the 5 tasks of 2 classes, the same training subset as
 * permuted MNIST (about 2000 examples per task), 20 epochs per task, three seeds; about 2–4 min
 * in all on a 2-core CPU (3 min 43 s measured on a busy one, 89 s of CPU time; 30–40 s per run).
 */
export const SPLIT_DEFAULTS: Config = {
  ...DEFAULTS,
  protocol: "split",
  tasks: SPLIT_TASKS,
  epochs: 20,
  out: "runs/forgetting_split",
};

const HELP = `Catastrophic forgetting: SGD vs VSGD or others (docs/algorithm.md §7), on permuted MNIST
or split MNIST. Tasks in sequence, one shared 10-way head; the accuracy matrix R[t][j] (on task j
after training task t).

Usage: deno run --allow-read --allow-write examples/forgetting.ts [options]

  --protocol P          permuted | split (default ${DEFAULTS.protocol}). permuted: task 0 is plain
                        MNIST, task t a fixed seeded pixel permutation of it. split: task t is the
                        classes {2t, 2t+1}; R is class-incremental (argmax over all 10 outputs),
                        and a task-aware matrix (argmax over the task's two classes) is reported too
  --tasks T             number of tasks: permuted >= 2 (default ${DEFAULTS.tasks}), split 2 to ${SPLIT_TASKS} (default ${SPLIT_DEFAULTS.tasks})
${trainOptionsHelp(DEFAULTS, " per task", [])}
Split defaults differ: --epochs ${SPLIT_DEFAULTS.epochs}, --out ${SPLIT_DEFAULTS.out}; --num-iters defaults to
the mean steps per epoch of the tasks (their sizes differ).
The model is the MLP 784-256-256-10. The training subset is the same images for every task (permuted)
or is split by class (split).
Writes DIR/config.json, DIR/<optimizer>_seed<S>.csv (R, one row per task trained; split: also the
task-aware accuracies), DIR/curves.csv (task-0 test accuracy after every epoch), both appended as
they happen, DIR/checkpoints/ (the newest checkpoint of each run, at least one per task),
DIR/summary.csv and DIR/task0.svg.
`;

/**
 * Parses the command line into a {@linkcode Config}; throws {@linkcode UsageError} (one line) on
 * bad input. Returns `"help"` for `--help`. `--protocol split` starts from
 * {@linkcode SPLIT_DEFAULTS}.
 */
export function parseConfig(args: readonly string[]): Config | "help" {
  const values: OptionValues = parseCommandLine(args, {
    ...TRAIN_OPTIONS,
    protocol: { type: "string" },
    tasks: { type: "string" },
  });
  if (values.help) return "help";
  const p = values.protocol as string | undefined;
  const protocol = p === undefined ? DEFAULTS.protocol : oneOf("protocol", p, PROTOCOLS);
  const c: Config = structuredClone(protocol === "split" ? SPLIT_DEFAULTS : DEFAULTS);
  applyTrainOptions(values, c);
  const t = values.tasks as string | undefined;
  if (t !== undefined) {
    c.tasks = protocol === "split"
      ? parseNumber(
        "tasks",
        t,
        (x) => isInt(x) && x >= 2 && x <= SPLIT_TASKS,
        `an integer in [2, ${SPLIT_TASKS}] with --protocol split`,
      )
      : parseNumber("tasks", t, (x) => isInt(x) && x >= 2 && x <= 1000, "an integer in [2, 1000]");
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

/** The classes of split-MNIST task `task` (0 … 4): `[2·task, 2·task + 1]`. */
export function splitClasses(task: number): [number, number] {
  if (!Number.isInteger(task) || task < 0 || task >= SPLIT_TASKS) {
    throw new RangeError(`splitClasses: task must be an integer in [0, ${SPLIT_TASKS - 1}], got ${task}`);
  }
  return [2 * task, 2 * task + 1];
}

/**
 * The examples of `ds` whose label is one of `classes` (copied, in their order in `ds`); the labels
 * and `numClasses` stay as they are (one shared head over all classes).
 */
export function classSubset(ds: Dataset, classes: readonly number[]): Dataset {
  for (const k of classes) {
    if (!Number.isInteger(k) || k < 0 || k >= ds.numClasses) {
      throw new RangeError(
        `classSubset: classes must be integers in [0, ${ds.numClasses - 1}], got ${JSON.stringify(classes)}`,
      );
    }
  }
  return subset(ds, classIndices(ds.y, classes));
}

/** The indices of the labels that are one of `classes`, in order. */
function classIndices(y: Int32Array, classes: readonly number[]): number[] {
  const wanted = new Set(classes), idx: number[] = [];
  y.forEach((label, i) => wanted.has(label) && idx.push(i));
  return idx;
}

/** The two accuracies of a shared head on one split-MNIST task's examples. */
export interface SplitAccuracy {
  /** Class-incremental: the argmax over all outputs is the label. */
  classIncremental: number;
  /** Task-aware: the argmax over the task's classes only (the other logits masked) is the label. */
  taskAware: number;
}

/**
 * Class-incremental and task-aware accuracy of `logits` (`labels.length × numClasses`, row-major)
 * on examples of the task whose classes are `classes`. Ties go to the lower class, as in
 * `argmaxRows`, so the task-aware accuracy is never below the class-incremental one. A row with a
 * non-finite logit makes both NaN (no score, as in `evaluate`), and so do no examples.
 */
export function splitAccuracy(
  logits: ArrayLike<number>,
  labels: ArrayLike<number>,
  numClasses: number,
  classes: readonly number[],
): SplitAccuracy {
  const n = labels.length;
  if (logits.length !== n * numClasses) {
    throw new RangeError(
      `splitAccuracy: logits has ${logits.length} entries, expected ${n} labels × ${numClasses} classes`,
    );
  }
  const ordered = [...classes].sort((a, b) => a - b);
  const pred = argmaxRows(logits, numClasses);
  let ci = 0, ta = 0;
  for (let i = 0; i < n; i++) {
    if (pred[i] < 0) return { classIncremental: NaN, taskAware: NaN };
    if (pred[i] === labels[i]) ci++;
    let best = ordered[0];
    for (const k of ordered) if (logits[i * numClasses + k] > logits[i * numClasses + best]) best = k;
    if (best === labels[i]) ta++;
  }
  return n ? { classIncremental: ci / n, taskAware: ta / n } : { classIncremental: NaN, taskAware: NaN };
}

/** A protocol's tasks for one seed: training and test data per task, and how to score them. */
interface Tasks {
  trains: Dataset[];
  tests: Dataset[];
  /** Steps per epoch for the optimizer's defaults (`numIters`): one task's, or their mean. */
  stepsPerEpoch: number;
  /** The line printed before the runs of the seed. */
  describe: string;
  /** One row of R at `params` (and, for split MNIST, the task-aware row). */
  score(forward: (p: any, x: Tensor) => Tensor, params: any): Promise<{ acc: number[]; aware?: number[] }>;
}

/** Permuted MNIST: every task the training subset and the test split, through its pixel permutation. */
function permutedTasks(base: Dataset, test: Dataset, c: Config, seed: number, device: string): Tasks {
  const perms = Array.from({ length: c.tasks }, (_, t) => taskPermutation(t, exampleSize(base), seed));
  const tests = perms.map((p) => permutePixels(test, p));
  const stepsPerEpoch = Math.ceil(base.y.length / c.batchSize);
  return {
    trains: perms.map((p) => permutePixels(base, p)),
    tests,
    stepsPerEpoch,
    describe:
      `seed ${seed}: ${c.tasks} tasks × ${c.epochs} epochs, ${base.y.length} training and ${test.y.length} ` +
      `test examples per task, mlp, device ${device}, ${stepsPerEpoch} steps/epoch\n`,
    async score(forward, params) {
      const acc: number[] = [];
      for (const t of tests) {
        acc.push((await evaluate(forward, params, t, { batchSize: c.evalBatchSize })).accuracy);
      }
      return { acc };
    },
  };
}

/**
 * Split MNIST: task t the examples of the classes {2t, 2t+1} of the training subset and of the test
 * split; scored class-incremental and task-aware from one forward pass over every task's test
 * examples. Throws when a task has no training or no test example (too small a subset).
 */
function splitTasks(base: Dataset, test: Dataset, c: Config, seed: number, device: string): Tasks {
  const classes = Array.from({ length: c.tasks }, (_, t) => splitClasses(t));
  const trains = classes.map((k) => classSubset(base, k));
  const tests = classes.map((k) => classSubset(test, k));
  trains.forEach((d, t) => {
    if (d.y.length === 0) {
      throw new Error(
        `split task ${t} (classes ${classes[t]}) has no training examples: give a larger --subset`,
      );
    }
    if (tests[t].y.length === 0) {
      throw new Error(
        `split task ${t} (classes ${classes[t]}) has no test examples: give a larger --test-subset`,
      );
    }
  });
  // Every task's test examples in one dataset, task after task: one read-back per evaluation.
  const allByTask = subset(test, classes.flatMap((k) => classIndices(test.y, k)));
  const order = tests.map((d) => d.y.length);
  const steps = trains.map((d) => Math.ceil(d.y.length / c.batchSize));
  const stepsPerEpoch = Math.ceil(mean(trains.map((d) => d.y.length)) / c.batchSize);
  return {
    trains,
    tests,
    stepsPerEpoch,
    describe: `seed ${seed}: split MNIST, ${c.tasks} tasks of 2 classes × ${c.epochs} epochs, ${
      trains.map((d) => d.y.length).join("/")
    } training and ${order.join("/")} test examples (tasks 0…${c.tasks - 1}), mlp, device ${device}, ${
      steps.join("/")
    } steps/epoch\n`,
    async score(forward, params) {
      const { logits } = await evaluate(forward, params, allByTask, {
        batchSize: c.evalBatchSize,
        logits: true,
      });
      const C = allByTask.numClasses, acc: number[] = [], aware: number[] = [];
      for (let t = 0, s = 0; t < c.tasks; s += order[t], t++) {
        const a = splitAccuracy(
          logits!.subarray(s * C, (s + order[t]) * C),
          allByTask.y.subarray(s, s + order[t]),
          C,
          classes[t],
        );
        acc.push(a.classIncremental);
        aware.push(a.taskAware);
      }
      return { acc, aware };
    },
  };
}

interface RunResult {
  label: string;
  seed: number;
  /** R[t][j]: test accuracy on task j after training tasks 0…t (split: class-incremental). */
  R: number[][];
  metrics: ForgettingMetrics;
  /** Split MNIST: the task-aware accuracy matrix (the same head, logits masked to the task's classes). */
  aware?: number[][];
  awareMetrics?: ForgettingMetrics;
  /** Task-0 test accuracy after every epoch (all tasks in sequence). */
  task0: number[];
  seconds: number;
}

/** A summary column: its heading in the text table, its name in summary.csv, its value per run. */
type SummaryColumn = [heading: string, csvName: string, value: (r: RunResult) => number];

function summaryColumns(c: Config): SummaryColumn[] {
  const cols: SummaryColumn[] = [
    ["avg final acc", "avg_final_acc", (r) => r.metrics.averageAccuracy],
    ["avg forgetting", "avg_forgetting", (r) => r.metrics.averageForgetting],
    ["BWT", "bwt", (r) => r.metrics.backwardTransfer],
    ["acc just learned", "learning_acc", (r) => r.metrics.learningAccuracy],
    ["task 0 final", "task0_final", (r) => r.R[c.tasks - 1][0]],
  ];
  if (c.protocol === "split") {
    cols.push(
      ["task-aware acc", "task_aware_acc", (r) => r.awareMetrics!.averageAccuracy],
      ["task-aware forgetting", "task_aware_forgetting", (r) => r.awareMetrics!.averageForgetting],
    );
  }
  return cols;
}

/** The mean ± sd of a T × T accuracy matrix over the runs of optimizer `label`, as a titled table. */
function matrixTable(name: string, label: string, mats: number[][][], tasks: number): string {
  const header = ["after task", ...Array.from({ length: tasks }, (_, j) => `task ${j}`)];
  const body = Array.from({ length: tasks }, (_, t) => [
    String(t),
    ...Array.from({ length: tasks }, (_, j) => pm(mats.map((m) => m[t][j]))),
  ]);
  return `${name} (${label}, mean ± sd over ${mats.length} seed${mats.length > 1 ? "s" : ""}):\n` +
    alignedTable(header, body);
}

function summarize(results: RunResult[], c: Config): { text: string; csv: string } {
  const labels = c.optimizers.map((o) => o.label).filter((l) => results.some((r) => r.label === l));
  const runs = (l: string) => results.filter((r) => r.label === l);
  const cols = summaryColumns(c);
  const rows = labels.map((l) => [
    l,
    ...cols.map(([, , f]) => pm(runs(l).map(f))),
    mean(runs(l).map((r) => r.seconds)).toFixed(1),
  ]);
  const ref = labels[0];
  for (const l of labels.slice(1)) {
    const pairs = pairBySeed(runs(l), runs(ref));
    rows.push([
      `${l} − ${ref}`,
      ...cols.map(([, , f]) => pmSigned(pairs.map(([a, b]) => f(a) - f(b)))),
      "",
    ]);
  }
  const text = alignedTable(["optimizer", ...cols.map(([h]) => h), "s/run"], rows);
  // The mean R matrix per optimizer (split MNIST: and the task-aware one).
  const mats = labels.flatMap((l) => {
    const rs = runs(l);
    if (c.protocol !== "split") return [matrixTable("R", l, rs.map((r) => r.R), c.tasks)];
    return [
      matrixTable("R, class-incremental", l, rs.map((r) => r.R), c.tasks),
      matrixTable("Task-aware accuracy", l, rs.map((r) => r.aware!), c.tasks),
    ];
  });
  const csv = [
    ["optimizer", "seeds", ...cols.flatMap(([, name]) => [name, `${name}_sd`]), "seconds_per_run"].join(","),
  ];
  for (const l of labels) {
    const rs = runs(l);
    csv.push([
      l,
      rs.map((r) => r.seed).join(" "),
      ...cols.flatMap(([, , f]) => [csvNumber(mean(rs.map(f)), 6), csvNumber(sd(rs.map(f)), 6)]),
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

/** MNIST's splits as the runs need them. */
type Mnist = Awaited<ReturnType<typeof loadMnist>>;

/**
 * Loads MNIST and, for split MNIST, checks before anything is written that every task of every seed
 * has training and test examples (a usage error naming the flag to raise otherwise).
 */
async function loadData(c: Config): Promise<Mnist> {
  const mnist = await loadMnist({ layout: "flat", testLimit: c.testSubset });
  if (c.protocol !== "split") return mnist;
  for (let t = 0; t < c.tasks; t++) {
    const k = splitClasses(t);
    if (classSubset(mnist.test, k).y.length === 0) {
      fail(`--test-subset ${c.testSubset} leaves split task ${t} (classes ${k}) without test examples`);
    }
    for (const seed of c.seeds) {
      if (classSubset(randomSubset(mnist.train, c.subset, seed), k).y.length === 0) {
        fail(
          `--subset ${c.subset} leaves split task ${t} (classes ${k}) without training examples for seed ${seed}`,
        );
      }
    }
  }
  return mnist;
}

async function run(
  c: Config,
  io: Console,
  args: readonly string[],
  mnist: Mnist,
  ctx: RunContext,
): Promise<void> {
  const device = await setDefaultDevice(c.backend);
  io.out(commandLine("forgetting", args) + "\n");
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
      const makeTasks = c.protocol === "split" ? splitTasks : permutedTasks;
      const { trains, tests, stepsPerEpoch, describe, score } = makeTasks(base, mnist.test, c, seed, device);
      io.out(describe);
      const split = c.protocol === "split";
      const accColumns = tests.map((_, j) => `acc_task${j}`);
      const awareColumns = split ? tests.map((_, j) => `task_aware_acc_task${j}`) : [];
      for (const spec of c.optimizers) {
        const net = mlp([784, 256, 256, 10], { seed });
        const optimizer = makeOptimizer(spec, c, stepsPerEpoch, seed);
        const file = `${c.out}/${spec.label}_seed${seed}.csv`;
        const header = ["optimizer", "seed", "after_task", "epoch", ...accColumns, ...awareColumns];
        const oldR = readCsv(file);
        const rLog = CsvLog.open(file, header, ctx.resuming ? (r) => keepUpTo(r[0], r[1], r[3]) : undefined);
        let resumeAt = done.get(`${spec.label},${seed}`) ?? 0;
        // What the rows kept say: R's rows of the tasks done, task 0's accuracy per epoch.
        const kept = oldR.filter((r) => keepUpTo(r.optimizer, r.seed, r.epoch));
        const R: number[][] = kept.map((r) => accColumns.map((k) => csvValue(r[k])));
        const aware: number[][] = kept.map((r) => awareColumns.map((k) => csvValue(r[k])));
        const task0: number[] = oldCurves.filter((r) =>
          r.optimizer === spec.label && r.seed === String(seed) && keepUpTo(r.optimizer, r.seed, r.epoch)
        ).map((r) => csvValue(r.task0_test_acc));
        let params: any = net.params;
        let state: any = undefined;
        const t0 = performance.now();
        try {
          for (let t = R.length; t < c.tasks; t++) {
            const end = (t + 1) * c.epochs;
            if (resumeAt > 0 && resumeAt === t * c.epochs) {
              // The checkpoint ends the previous task (its R row written) and records that task's
              // training-set size, which split MNIST's next task need not share: it is restored with
              // that task's data (no epoch trained), and this task starts afresh from it.
              const restored = await fit({
                params,
                resume: ctx.checkpointDir(spec.label, seed),
                forward: net.forward as any,
                optimizer,
                train: trains[t - 1],
                epochs: 0,
                batchSize: c.batchSize,
                seed,
                evalTrain: false,
                logger: null,
              });
              ({ rawParams: params, state } = restored);
              dispose(restored.params, [params, state]);
              resumeAt = 0;
            }
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
              // No metric read back from the device more than once per epoch.
              progressEvery: Math.ceil(trains[t].y.length / c.batchSize),
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
            const { acc: row, aware: awareRow = [] } = await score(net.forward as any, r.params);
            R.push(row);
            aware.push(awareRow);
            rLog.append([spec.label, seed, t, end, ...[...row, ...awareRow].map((a) => csvNumber(a))]);
            io.out(
              `${spec.label} seed ${seed}: after task ${t}: ${
                row.map((a, j) => `task ${j} ${a.toFixed(4)}`).join(", ")
              }${split ? ` (task-aware ${awareRow.map((a) => a.toFixed(4)).join(", ")})` : ""}\n`,
            );
            if (ctx.signal.aborted) return;
          }
        } finally {
          rLog.close();
        }
        const seconds = (performance.now() - t0) / 1000;
        const metrics = forgettingMetrics(R);
        const awareMetrics = split ? forgettingMetrics(aware) : undefined;
        results.push({
          label: spec.label,
          seed,
          R,
          metrics,
          ...(split ? { aware, awareMetrics } : {}),
          task0,
          seconds,
        });
        io.out(
          `${spec.label} seed ${seed}: ${formatDuration(seconds)}; average final accuracy ` +
            `${metrics.averageAccuracy.toFixed(4)}, average forgetting ${
              metrics.averageForgetting.toFixed(4)
            }${
              awareMetrics
                ? ` (task-aware ${awareMetrics.averageAccuracy.toFixed(4)}, ${
                  awareMetrics.averageForgetting.toFixed(4)
                })`
                : ""
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
  const split = c.protocol === "split";
  const title = split
    ? `Split MNIST, ${c.tasks} tasks of 2 classes in sequence, MLP 784-256-256-10`
    : `Permuted MNIST, ${c.tasks} tasks in sequence, MLP 784-256-256-10`;
  const subtitle = `${c.subset} train examples${split ? " split by class" : ""}, ${c.epochs} epochs/task, ` +
    `batch ${c.batchSize}, lr ${c.lr}, variability ${c.variability} ${c.noiseLaw}, seeds ${
      c.seeds.join(",")
    }`;
  const E = c.tasks * c.epochs;
  const series: LineSeries[] = [];
  const taskEnds = Array.from({ length: c.tasks }, (_, t) => (t + 1) * c.epochs);
  // The mean over runs of the mean accuracy on the tasks learned so far, after each task.
  const meanSoFar = (mats: number[][][]) =>
    taskEnds.map((_, t) => mean(mats.map((m) => mean(m[t].slice(0, t + 1)))));
  c.optimizers.forEach((spec, k) => {
    const rs = results.filter((r) => r.label === spec.label);
    if (rs.length === 0) return;
    const per = Array.from({ length: E }, (_, e) => rs.map((r) => r.task0[e]));
    // Split MNIST's legend has a third line per optimizer: shorter names (the seeds are in the subtitle).
    const suffix = rs.length > 1 && !split ? ` (mean ± sd of ${rs.length} seeds)` : "";
    series.push({
      name: `${spec.label}: task 0${suffix}`,
      x: per.map((_, e) => e + 1),
      y: per.map(mean),
      yErr: per.map(sd),
      color: k,
    });
    series.push({
      name: `${spec.label}: mean ${split ? "of tasks so far" : "over tasks learned so far"}`,
      x: taskEnds,
      y: meanSoFar(rs.map((r) => r.R)),
      dashed: true,
      color: k,
    });
    if (split) {
      // The same head scored task-aware: what class-incremental scoring hides.
      series.push({
        name: `${spec.label}: the same, task-aware`,
        x: taskEnds,
        y: meanSoFar(rs.map((r) => r.aware!)),
        dashed: true,
        color: c.optimizers.length + k,
      });
    }
  });
  writeAtomic(
    `${c.out}/task0.svg`,
    lineChartSvg(series, {
      title,
      subtitle,
      xLabel: "epoch (dotted lines: the next task starts)",
      yLabel: split ? "test accuracy (class-incremental unless task-aware)" : "test accuracy",
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
    (c, io, mnist, ctx) => run(c, io, args, mnist, ctx),
    { load: loadData, mayChange: [] },
  );
}

if (import.meta.main) Deno.exit(await main(Deno.args));
