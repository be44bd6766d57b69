#!/usr/bin/env -S deno run --allow-read --allow-write
/**
 * Weight-perturbation robustness on MNIST (docs/algorithm.md §7): trains the same model with several
 * optimizers (default: SGD and VSGD) on clean labels, then evaluates the test accuracy of the
 * trained clean weights θ at θ + ε, ε ~ N(0, s²) independently per coordinate, for a grid of s,
 * averaged over several draws of ε. Writes per run a CSV (one row per s), a summary CSV, an SVG
 * of accuracy against s and prints a summary table (mean ± sd over seeds).
 *
 *   deno run --allow-read --allow-write examples/robustness.ts             # seeds 0,1,2: ~1–1.5 min on 2 cores
 *   deno run --allow-read --allow-write examples/robustness.ts --seeds 0 --sigmas 0,0.05,0.1
 *
 * The draws ε come from the project's counter-based `randn`, keyed by (seed, draw, parameter path):
 * for one seed every optimizer sees the same draws (common random numbers), and draw d at scale s
 * is s times the same standard-normal draw for every s.
 *
 * Run with --help for every option. Exit codes: 0 done, 1 runtime failure, 2 bad command line.
 *
 * @module
 */
import { setDefaultDevice } from "../src/webgpu/mod.ts";
import { dispose } from "../src/memory.ts";
import { add } from "../src/ops/mod.ts";
import { randn } from "../src/creation.ts";
import { mapTree, type TensorTree } from "../src/tree.ts";
import { lenet, mlp } from "../src/nn/mod.ts";
import { loadMnist, randomSubset } from "../src/data/mod.ts";
import { evaluate, fit, formatDuration, progressLogger } from "../src/train/mod.ts";
import {
  alignedTable,
  applyTrainOptions,
  checkpointOption,
  commandLine,
  type Console,
  CsvLog,
  csvNumber,
  fail,
  isInt,
  makeOptimizer,
  mean,
  oneOf,
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
  trainOptionsHelp,
  type TrainSettings,
  UsageError,
  writeAtomic,
} from "./_common.ts";
import { lineChartSvg, type LineSeries } from "./svg_plot.ts";

export { UsageError };

/** The experiment's settings after parsing. */
export interface Config extends TrainSettings {
  /** Perturbation scales s (std of ε per coordinate), increasing. */
  sigmas: number[];
  /** Draws of ε per s > 0 (s = 0 is evaluated once). */
  draws: number;
  /** Model. */
  model: "mlp" | "cnn";
}

/**
 * The defaults: the README's three-seed table (seeds 0, 1, 2), about 1–1.5 min in all on a 2-core
 * CPU (20–30 s per seed).
 */
export const DEFAULTS: Config = {
  ...TRAIN_DEFAULTS,
  seeds: [0, 1, 2],
  epochs: 10,
  out: "runs/robustness",
  sigmas: [0, 0.01, 0.02, 0.05, 0.1, 0.2],
  draws: 5,
  model: "mlp",
};

const HELP = `Weight-perturbation robustness on MNIST: SGD vs VSGD or others (docs/algorithm.md §7).
Trains on clean labels, then measures test accuracy at theta + eps, eps ~ N(0, s^2) per weight.

Usage: deno run --allow-read --allow-write examples/robustness.ts [options]

  --sigmas L            perturbation scales s, comma-separated, increasing, >= 0
                        (default ${DEFAULTS.sigmas.join(",")})
  --draws N             draws of eps per s > 0, averaged (default ${DEFAULTS.draws})
  --model M             mlp (784-256-256-10) | cnn (LeNet-like) (default ${DEFAULTS.model})
${trainOptionsHelp(DEFAULTS)}
Writes DIR/config.json, DIR/curves.csv (one row per epoch of every run, appended as it ends),
DIR/checkpoints/<optimizer>_seed<S>/ (the newest checkpoint), DIR/<optimizer>_seed<S>.csv (one row
per s), DIR/summary.csv and DIR/robustness.svg.
`;

/**
 * Parses the command line into a {@linkcode Config}; throws {@linkcode UsageError} (one line) on
 * bad input. Returns `"help"` for `--help`.
 */
export function parseConfig(args: readonly string[]): Config | "help" {
  const values: OptionValues = parseCommandLine(args, {
    ...TRAIN_OPTIONS,
    sigmas: { type: "string" },
    draws: { type: "string" },
    model: { type: "string" },
  });
  if (values.help) return "help";
  const c: Config = structuredClone(DEFAULTS);
  applyTrainOptions(values, c);
  const s = (k: string) => values[k] as string | undefined;
  if (s("sigmas") !== undefined) {
    c.sigmas = parseList("sigmas", s("sigmas")!, (x) => x >= 0, "a list of numbers >= 0");
    if (c.sigmas.length === 0) fail(`--sigmas must list at least one scale`);
    c.sigmas.forEach((v, i) => {
      if (i > 0 && v <= c.sigmas[i - 1]) fail(`--sigmas must increase, got ${s("sigmas")}`);
    });
  }
  if (s("draws") !== undefined) {
    c.draws = parseNumber("draws", s("draws")!, (x) => isInt(x) && x >= 1, "a positive integer");
  }
  if (s("model") !== undefined) c.model = oneOf("model", s("model")!, ["mlp", "cnn"] as const);
  return c;
}

/** Which draw of {@linkcode perturbParams}. */
export interface PerturbOptions {
  /** Seed (uint32). */
  seed: number;
  /** Draw number: each gives independent noise. */
  draw: number;
}

/**
 * `params + ε` leaf by leaf, ε ~ N(0, s²) independently per coordinate, from the seeded `randn`
 * with one stream per (draw, parameter path). `s = 0` returns `params` itself. The noise of draw
 * `d` at scale `s` is `s` times the same standard-normal draw for every `s`.
 */
export function perturbParams<T extends TensorTree>(params: T, s: number, o: PerturbOptions): T {
  if (!(Number.isFinite(s) && s >= 0)) {
    throw new RangeError(`perturbParams: s must be a finite number >= 0, got ${s}`);
  }
  if (!Number.isInteger(o.draw) || o.draw < 0) {
    throw new RangeError(`perturbParams: draw must be a non-negative integer, got ${o.draw}`);
  }
  if (s === 0) return params;
  return mapTree(params, (t, path) =>
    add(
      t,
      randn(t.shape, {
        seed: o.seed,
        stream: `perturb:${o.draw}:${path}`,
        std: s,
        dtype: t.dtype,
        device: t.device,
      }),
    ), "perturbParams");
}

/** Accuracy at one perturbation scale, over the draws. */
export interface ScaleResult {
  s: number;
  /** Test accuracy of each draw. */
  accuracies: number[];
  /** Mean test cross-entropy over the draws. */
  loss: number;
}

/** Evaluates `forward` at `params + ε` for every s and draw (s = 0 once). */
export async function robustnessCurve<P extends TensorTree>(
  forward: (p: P, x: any) => any,
  params: P,
  data: Parameters<typeof evaluate>[2],
  sigmas: readonly number[],
  draws: number,
  seed: number,
  evalBatchSize = 1000,
): Promise<ScaleResult[]> {
  const out: ScaleResult[] = [];
  for (const s of sigmas) {
    const accuracies: number[] = [], losses: number[] = [];
    for (let d = 0; d < (s === 0 ? 1 : draws); d++) {
      const p = perturbParams(params, s, { seed, draw: d });
      const ev = await evaluate(forward, p, data, { batchSize: evalBatchSize });
      if (p !== params) dispose(p);
      accuracies.push(ev.accuracy);
      losses.push(ev.loss);
    }
    out.push({ s, accuracies, loss: mean(losses) });
  }
  return out;
}

const CSV_COLUMNS = [
  "optimizer",
  "seed",
  "s",
  "draws",
  "mean_acc",
  "sd_acc",
  "min_acc",
  "max_acc",
  "mean_loss",
  "train_acc",
  "train_seconds",
];

interface RunResult {
  label: string;
  seed: number;
  curve: ScaleResult[];
  trainAccuracy: number;
  trainSeconds: number;
  evalSeconds: number;
}

/** The summary (mean ± sd over seeds of each run's mean accuracy over draws) as text and CSV. */
function summarize(results: RunResult[], c: Config): { text: string; csv: string } {
  const labels = c.optimizers.map((o) => o.label).filter((l) => results.some((r) => r.label === l));
  const runs = (l: string) => results.filter((r) => r.label === l);
  const accAt = (r: RunResult, i: number) => mean(r.curve[i].accuracies);
  const ref = labels[0];
  const header = ["s", ...labels.map((l) => `${l} test acc`), ...labels.slice(1).map((l) => `${l} − ${ref}`)];
  const rows: string[][] = [];
  const csv = ["optimizer,s,seeds,mean_acc,sd_acc_over_seeds,mean_sd_over_draws,diff_vs_first,diff_sd"];
  c.sigmas.forEach((s, i) => {
    const row = [String(s)];
    for (const l of labels) row.push(pm(runs(l).map((r) => accAt(r, i))));
    // Paired by seed: the same data subset, init and perturbation draws.
    const diffsOf = (l: string) => pairBySeed(runs(l), runs(ref)).map(([r, b]) => accAt(r, i) - accAt(b, i));
    for (const l of labels.slice(1)) row.push(pmSigned(diffsOf(l)));
    rows.push(row);
    for (const l of labels) {
      const accs = runs(l).map((r) => accAt(r, i));
      const diffs = diffsOf(l);
      csv.push([
        l,
        s,
        runs(l).map((r) => r.seed).join(" "),
        csvNumber(mean(accs), 6),
        csvNumber(sd(accs), 6),
        csvNumber(mean(runs(l).map((r) => sd(r.curve[i].accuracies))), 6),
        l === ref ? "" : csvNumber(mean(diffs), 6),
        l === ref ? "" : csvNumber(sd(diffs), 6),
      ].join(","));
    }
  });
  const training = alignedTable(
    ["optimizer", "train acc", "test acc (s=0)", "train s/run", "perturbed-eval s/run"],
    labels.map((l) => [
      l,
      pm(runs(l).map((r) => r.trainAccuracy)),
      pm(runs(l).map((r) => accAt(r, 0))),
      mean(runs(l).map((r) => r.trainSeconds)).toFixed(1),
      mean(runs(l).map((r) => r.evalSeconds)).toFixed(1),
    ]),
  );
  return { text: alignedTable(header, rows) + "\n" + training, csv: csv.join("\n") + "\n" };
}

/** The columns of `curves.csv`: one row per epoch of every run. */
const CURVE_COLUMNS = ["optimizer", "seed", "epoch", "step", "lr", "batch_loss", "test_loss", "test_acc"];

async function run(c: Config, io: Console, args: readonly string[], ctx: RunContext): Promise<void> {
  const device = await setDefaultDevice(c.backend);
  io.out(commandLine("robustness", args) + "\n");
  const mnist = await loadMnist({ layout: c.model === "cnn" ? "image" : "flat", testLimit: c.testSubset });
  const test = mnist.test;
  const terminal = Deno.stdout.isTerminal();
  const results: RunResult[] = [];
  // Resumed: each run keeps its rows up to its checkpoint (none for a run not started).
  const done = new Map<string, number>();
  for (const seed of c.seeds) {
    for (const spec of c.optimizers) {
      done.set(`${spec.label},${seed}`, await ctx.checkpointEpoch(spec.label, seed));
    }
  }
  const curves = CsvLog.open(
    `${c.out}/curves.csv`,
    CURVE_COLUMNS,
    ctx.resuming ? (r) => Number(r[2]) <= (done.get(`${r[0]},${r[1]}`) ?? 0) : undefined,
  );
  try {
    await runAll(c, io, ctx, mnist, test, device, terminal, results, done, curves);
  } finally {
    curves.close();
  }
  if (ctx.signal.aborted) return;
  writeResults(c, io, results);
}

async function runAll(
  c: Config,
  io: Console,
  ctx: RunContext,
  mnist: Awaited<ReturnType<typeof loadMnist>>,
  test: Awaited<ReturnType<typeof loadMnist>>["test"],
  device: string,
  terminal: boolean,
  results: RunResult[],
  done: Map<string, number>,
  curves: CsvLog,
): Promise<void> {
  for (const seed of c.seeds) {
    const train = randomSubset(mnist.train, c.subset, seed);
    const stepsPerEpoch = Math.ceil(train.y.length / c.batchSize);
    io.out(
      `seed ${seed}: ${train.y.length} training examples (clean labels), ${test.y.length} test examples, ` +
        `${c.model}, device ${device}, ${stepsPerEpoch} steps/epoch\n`,
    );
    for (const spec of c.optimizers) {
      const net = c.model === "cnn" ? lenet({ seed }) : mlp([784, 256, 256, 10], { seed });
      const t0 = performance.now();
      const resumeAt = done.get(`${spec.label},${seed}`) ?? 0;
      const lr = spec.lr ?? c.lr;
      const r = await fit({
        params: net.params as any,
        resume: resumeAt > 0 ? ctx.checkpointDir(spec.label, seed) : undefined,
        checkpoint: checkpointOption(ctx, c, spec.label, seed),
        signal: ctx.signal,
        onEpoch: (m) =>
          curves.append([
            spec.label,
            seed,
            m.epoch,
            m.step,
            csvNumber(lr),
            csvNumber(m.batchLoss),
            csvNumber(m.testLoss),
            csvNumber(m.testAccuracy),
          ]),
        forward: net.forward as any,
        optimizer: makeOptimizer(spec, c, stepsPerEpoch, seed),
        train,
        test,
        epochs: Math.max(0, c.epochs - resumeAt),
        batchSize: c.batchSize,
        seed,
        evalTrain: false,
        evalBatchSize: c.evalBatchSize,
        logger: progressLogger({ write: io.out, terminal, label: `${spec.label} s${seed}` }),
      });
      if (ctx.signal.aborted) return;
      const theta = r.params; // the noise-free weights
      const trainAccuracy = (await evaluate(net.forward as any, theta, train, { batchSize: c.evalBatchSize }))
        .accuracy;
      const t1 = performance.now();
      const curve = await robustnessCurve(
        net.forward as any,
        theta,
        test,
        c.sigmas,
        c.draws,
        seed,
        c.evalBatchSize,
      );
      const t2 = performance.now();
      const res: RunResult = {
        label: spec.label,
        seed,
        curve,
        trainAccuracy,
        trainSeconds: (t1 - t0) / 1000,
        evalSeconds: (t2 - t1) / 1000,
      };
      results.push(res);
      const file = `${c.out}/${spec.label}_seed${seed}.csv`;
      const rows = [CSV_COLUMNS.join(",")];
      for (const p of curve) {
        rows.push([
          spec.label,
          seed,
          p.s,
          p.accuracies.length,
          csvNumber(mean(p.accuracies)),
          csvNumber(p.accuracies.length > 1 ? sd(p.accuracies) : 0),
          csvNumber(Math.min(...p.accuracies)),
          csvNumber(Math.max(...p.accuracies)),
          csvNumber(p.loss),
          csvNumber(trainAccuracy),
          res.trainSeconds.toFixed(3),
        ].join(","));
      }
      writeAtomic(file, rows.join("\n") + "\n");
      io.out(
        `${spec.label} seed ${seed}: train ${formatDuration(res.trainSeconds)}, perturbed evaluation ` +
          `${formatDuration(res.evalSeconds)}; acc at s = ${
            curve.map((p) => `${p.s}: ${mean(p.accuracies).toFixed(4)}`).join(", ")
          } → ${file}\n`,
      );
    }
  }
}

function writeResults(c: Config, io: Console, results: RunResult[]): void {
  const title = `MNIST weight-perturbation robustness, ${c.model}`;
  const subtitle = `${c.subset} train examples, ${c.epochs} epochs, batch ${c.batchSize}, lr ${c.lr}, ` +
    `variability ${c.variability} ${c.noiseLaw}, ${c.draws} draws per s, seeds ${c.seeds.join(",")}`;
  const series: LineSeries[] = c.optimizers.flatMap((spec) => {
    const rs = results.filter((r) => r.label === spec.label);
    if (rs.length === 0) return [];
    const per = c.sigmas.map((_, i) => rs.map((r) => mean(r.curve[i].accuracies)));
    return [{
      name: rs.length > 1 ? `${spec.label} (mean ± sd of ${rs.length} seeds)` : spec.label,
      x: c.sigmas,
      y: per.map(mean),
      yErr: per.map(sd),
    }];
  });
  writeAtomic(
    `${c.out}/robustness.svg`,
    lineChartSvg(series, {
      title,
      subtitle,
      xLabel: "perturbation scale s (ε ~ N(0, s²) per weight)",
      yLabel: "test accuracy at θ + ε",
      xTicks: c.sigmas,
    }),
  );
  const table = summarize(results, c);
  writeAtomic(`${c.out}/summary.csv`, table.csv);
  io.out(`\n${title}; ${subtitle}\n${table.text}\nwrote ${c.out}/robustness.svg, ${c.out}/summary.csv\n`);
}

/** Runs the experiment; returns the process exit code. */
export function main(args: readonly string[]): Promise<number> {
  return runScript("robustness", args, parseConfig, HELP, (c, io, _data, ctx) => run(c, io, args, ctx));
}

if (import.meta.main) Deno.exit(await main(Deno.args));
