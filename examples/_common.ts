/**
 * Pieces shared by the experiment scripts of `examples/`: command-line parsing that fails with one
 * line ({@linkcode UsageError}, exit code 2), the optimizers by command-line name, the training
 * options every script takes, the output folder (its `config.json`, refusing another
 * configuration's results, `--resume`, checkpoints per run, SIGINT), CSV files appended and
 * flushed row by row, files written through a temporary name and a rename, mean ± sd, and aligned
 * text tables. Not part of the published module.
 *
 * One file (about 800 lines) so that every script imports the same pieces from one place; its
 * sections (command line, optimizers, training options, files, CSV, output folder and
 * `runScript`, statistics) depend on one another only through `UsageError` and `TrainSettings`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { adam, antiPgd, multiStepSchedule, sgd, vadam, vsgd } from "../src/optim/mod.ts";
import type { NoiseLaw } from "../src/random/noise.ts";
import type { LoopOptimizer } from "../src/train/mod.ts";
import { resolveCheckpoint } from "../src/train/checkpoint.ts";
import { writeTextFileAtomicSync } from "../src/io/files.ts";
import { lenet, mlp, resnet18, resnet20, type StatefulModel, vgg } from "../src/nn/mod.ts";
import { type BatchTransform, cifarAugment, MNIST_MEAN, MNIST_STD } from "../src/data/mod.ts";
import type { Tensor } from "../src/tensor.ts";

/** A bad command line: reported as one line, exit code 2. */
export class UsageError extends Error {}

/** Throws a {@linkcode UsageError}. */
export function fail(msg: string): never {
  throw new UsageError(msg);
}

/** `v` as a finite number that passes `ok`; a UsageError naming `--name` and `expect` otherwise. */
export function parseNumber(name: string, v: string, ok: (x: number) => boolean, expect: string): number {
  const x = v.trim() === "" ? NaN : Number(v);
  if (!Number.isFinite(x) || !ok(x)) fail(`--${name} must be ${expect}, got ${JSON.stringify(v)}`);
  return x;
}

/** `Number.isInteger`, for the `ok` predicates. */
export const isInt = (x: number): boolean => Number.isInteger(x);

/** A comma-separated list of numbers (`""` is the empty list). */
export function parseList(name: string, v: string, ok: (x: number) => boolean, expect: string): number[] {
  if (v.trim() === "") return [];
  return v.split(",").map((s) => parseNumber(name, s, ok, expect));
}

/** `v` if it is one of `allowed`; a UsageError otherwise. */
export function oneOf<T extends string>(name: string, v: string, allowed: readonly T[]): T {
  if (!allowed.includes(v as T)) {
    fail(`--${name} must be one of ${allowed.join(", ")}, got ${JSON.stringify(v)}`);
  }
  return v as T;
}

/** The `options` argument of `node:util`'s `parseArgs`. */
export type OptionSpecs = Record<string, { type: "string" | "boolean"; short?: string }>;

/** Parsed option values by long name. */
export type OptionValues = Record<string, string | boolean | undefined>;

/**
 * `node:util` `parseArgs` in strict mode without positionals; its errors (multi-line sometimes)
 * become a one-line {@linkcode UsageError}.
 */
export function parseCommandLine(args: readonly string[], options: OptionSpecs): OptionValues {
  try {
    return parseArgs({ args: args.slice(), strict: true, allowPositionals: false, options }).values;
  } catch (e) {
    return fail(String((e as Error).message).replace(/\s*\n\s*/g, " "));
  }
}

// ---------------------------------------------------------------------------------------------
// Optimizers by name.

/** The optimizers the scripts know, by command-line name. */
export const OPTIMIZERS = ["sgd", "vsgd", "adam", "vadam", "antipgd"] as const;
/** A command-line optimizer name. */
export type OptimizerName = typeof OPTIMIZERS[number];

/** One optimizer of a comparison: its name and an optional learning rate of its own. */
export interface OptimizerSpec {
  /** Base name. */
  name: OptimizerName;
  /** Learning rate for this optimizer only (`name:lr` on the command line). */
  lr?: number;
  /** Label used in file names, plots and tables. */
  label: string;
}

/** Parses `--optimizers` (`sgd,vsgd,vadam:0.001`). */
export function parseOptimizers(text: string): OptimizerSpec[] {
  const seen = new Set<string>();
  const out = text.split(",").map((item) => {
    const [rawName, lrText, extra] = item.trim().split(":");
    const name = rawName.toLowerCase();
    if (extra !== undefined) {
      fail(`--optimizers entry must be NAME or NAME:LR, got ${JSON.stringify(item)}`);
    }
    if (!OPTIMIZERS.includes(name as OptimizerName)) {
      fail(
        `--optimizers: unknown optimizer ${JSON.stringify(rawName)}, expected one of ${
          OPTIMIZERS.join(", ")
        }`,
      );
    }
    const lr = lrText === undefined
      ? undefined
      : parseNumber("optimizers", lrText, (x) => x > 0, "a learning rate > 0 after ':'");
    const label = lr === undefined ? name : `${name}_lr${lr}`;
    if (seen.has(label)) fail(`--optimizers lists ${label} twice`);
    seen.add(label);
    return { name: name as OptimizerName, lr, label };
  });
  if (out.length === 0) fail(`--optimizers must name at least one optimizer`);
  return out;
}

/** Parses `--seeds` / `--seed` (aliases; give one). `undefined` when neither is given. */
export function parseSeeds(seeds: string | undefined, seed: string | undefined): number[] | undefined {
  if (seeds !== undefined && seed !== undefined) fail(`give --seeds or --seed, not both`);
  const text = seeds ?? seed;
  if (text === undefined) return undefined;
  const out = parseList(
    "seeds",
    text,
    (x) => isInt(x) && x >= 0 && x < 2 ** 32,
    "a list of integers in [0, 2^32)",
  );
  if (out.length === 0) fail(`--seeds must list at least one seed`);
  if (new Set(out).size !== out.length) fail(`--seeds lists a seed twice: ${text}`);
  return out;
}

/** What {@linkcode makeOptimizer} needs to know. */
export interface OptimizerSettings {
  lr: number;
  lrDecayEpochs: number[];
  lrDecayFactor: number;
  momentum: number;
  weightDecay: number;
  variability: number;
  noiseLaw: NoiseLaw;
  /** Where the weight noise lives: "official" (inside the params) or "exact" (params exact). */
  mode: "official" | "exact";
  /**
   * `numIters`, the noise reset period in steps (every `numIters` steps the noise is removed and not
   * redrawn); default: one epoch's steps, so the weights are noise-free at every epoch end.
   */
  numIters: number | undefined;
}

/** The optimizer `spec` with the settings `c` (lr decayed by epoch when `lrDecayEpochs` is set). */
export function makeOptimizer(
  spec: OptimizerSpec,
  c: OptimizerSettings,
  stepsPerEpoch: number,
  seed: number,
): LoopOptimizer<any> {
  const base = spec.lr ?? c.lr;
  const lr = c.lrDecayEpochs.length
    ? multiStepSchedule({ init: base, milestones: c.lrDecayEpochs, gamma: c.lrDecayFactor, stepsPerEpoch })
    : base;
  const numIters = c.numIters ?? defaultNumIters(stepsPerEpoch);
  if ((spec.name === "vsgd" || spec.name === "vadam") && numIters < 2) throw new Error(noNoise(spec.label));
  const noise = { variability: c.variability, noise: c.noiseLaw, seed, mode: c.mode };
  switch (spec.name) {
    case "sgd":
      return sgd({ lr, momentum: c.momentum, weightDecay: c.weightDecay });
    case "vsgd":
      return vsgd({ lr, momentum: c.momentum, weightDecay: c.weightDecay, numIters, ...noise });
    case "antipgd":
      return antiPgd({ lr, momentum: c.momentum, weightDecay: c.weightDecay, ...noise });
    case "adam":
      return adam({ lr, weightDecay: c.weightDecay });
    case "vadam":
      return vadam({ lr, weightDecay: c.weightDecay, numIters, ...noise });
  }
}

/**
 * The default noise reset period: one epoch's steps, so that the weights are noise-free at every
 * epoch end — but at least 2: with one step per epoch, a reset at every step would remove the noise
 * after each step and never draw it again, and a variable optimizer would silently be its base.
 */
export const defaultNumIters = (stepsPerEpoch: number): number => Math.max(2, stepsPerEpoch);

/** Why a variable optimizer with a noise reset period of 1 step is refused. */
function noNoise(label: string): string {
  return `--num-iters 1 leaves ${label} without weight noise (it is removed after every step and never ` +
    `drawn again: ${label} would equal its base optimizer); give --num-iters N >= 2`;
}

/** The learning rate of `spec` during 1-based `epoch`. */
export function lrAt(spec: OptimizerSpec, c: OptimizerSettings, epoch: number): number {
  const base = spec.lr ?? c.lr;
  return base * c.lrDecayFactor ** c.lrDecayEpochs.filter((e) => epoch - 1 >= e).length;
}

// ---------------------------------------------------------------------------------------------
// Models and augmentation by name.

/** The models the scripts know, by command-line name (`cnn` is LeNet's older name). */
export const MODELS = ["mlp", "cnn", "lenet", "resnet20", "resnet18", "vgg11", "vgg16"] as const;
/** A command-line model name. */
export type ModelName = typeof MODELS[number];

/** A model as `fit` takes it: a stateless `{ params, forward }` or a `{ model }` with state. */
export type FitModel =
  | { params: any; forward: (params: any, x: Tensor) => Tensor; model?: undefined }
  | { model: StatefulModel<any, any>; params?: undefined; forward?: undefined };

/** Whether a model computes on images `[C, H, W]` (every model but the MLP). */
export const imageModel = (name: ModelName): boolean => name !== "mlp";

/**
 * The model `name` for examples of `inputShape` (`[C, H, W]`, or `[D]` for the MLP) and
 * `numClasses` classes, initialized from `seed`: `mlp` is D-256-256-classes, `cnn`/`lenet` the
 * LeNet-like CNN, `resnet20`/`resnet18` and `vgg11`/`vgg16` the models of `model/resnet.py` and
 * `model/vgg.py` (with BatchNorm: trained through `fit`'s `model`).
 */
export function buildModel(
  name: ModelName,
  seed: number,
  inputShape: readonly number[],
  numClasses: number,
): FitModel {
  const size = inputShape.reduce((a, b) => a * b, 1);
  const chw = inputShape as unknown as [number, number, number];
  switch (name) {
    case "mlp": {
      const net = mlp([size, 256, 256, numClasses], { seed });
      return { params: net.params, forward: net.forward };
    }
    case "cnn":
    case "lenet": {
      const net = lenet({ seed, inputShape: chw, numClasses });
      return { params: net.params, forward: net.forward };
    }
    case "resnet20":
      return { model: resnet20({ seed, inputShape: chw, inChannels: chw[0], numClasses }) };
    case "resnet18":
      return { model: resnet18({ seed, inputShape: chw, inChannels: chw[0], numClasses }) };
    case "vgg11":
    case "vgg16":
      return { model: vgg(name, { seed, inputShape: chw, inChannels: chw[0], numClasses }) };
  }
}

/**
 * The training augmentation of `--augment` for images `[C, H, W]` normalized by the loaders: on
 * 3-channel images (CIFAR-10) the original pipeline, a random crop with 4 pixels of (black)
 * padding and a horizontal flip; on 1-channel images (MNIST) a random crop with 2 pixels of black
 * padding and no flip (a mirrored digit is another symbol).
 */
export function augmentFor(inputShape: readonly number[]): BatchTransform {
  if (inputShape.length !== 3) {
    fail(`--augment needs images [C, H, W], got examples of shape [${inputShape.join(", ")}]`);
  }
  return inputShape[0] === 1
    ? cifarAugment({ padding: 2, flip: false, fill: -MNIST_MEAN / MNIST_STD })
    : cifarAugment();
}

// ---------------------------------------------------------------------------------------------
// The training options shared by robustness.ts and forgetting.ts.

/** Settings every experiment script has (constant learning rate). */
export interface TrainSettings extends OptimizerSettings {
  optimizers: OptimizerSpec[];
  epochs: number;
  batchSize: number;
  seeds: number[];
  subset: number;
  testSubset: number;
  evalBatchSize: number;
  out: string;
  backend: "cpu" | "webgpu" | "auto";
  /** Checkpoint every N epochs (0: only at the end of each run and on SIGINT). */
  checkpointEvery: number;
  /** `--resume DIR`: the output folder of the run to continue (undefined: a new run). */
  resume: string | undefined;
  /** `--overwrite`: replace the results of another configuration in `out`. */
  overwrite: boolean;
}

/** The `parseArgs` specs of {@linkcode TrainSettings}' options, plus `--help`. */
export const TRAIN_OPTIONS: OptionSpecs = {
  optimizers: { type: "string" },
  epochs: { type: "string" },
  "batch-size": { type: "string" },
  lr: { type: "string" },
  momentum: { type: "string" },
  "weight-decay": { type: "string" },
  variability: { type: "string" },
  "noise-law": { type: "string" },
  mode: { type: "string" },
  "num-iters": { type: "string" },
  seeds: { type: "string" },
  seed: { type: "string" },
  subset: { type: "string" },
  "test-subset": { type: "string" },
  "eval-batch-size": { type: "string" },
  out: { type: "string" },
  backend: { type: "string" },
  "checkpoint-every": { type: "string" },
  resume: { type: "string" },
  overwrite: { type: "boolean" },
  help: { type: "boolean", short: "h" },
};

/** Help lines for {@linkcode TRAIN_OPTIONS}, given the defaults `d`. */
export function trainOptionsHelp(
  d: TrainSettings,
  epochsNote = "",
  mayChange: readonly string[] = ["epochs"],
): string {
  return `  --optimizers LIST     comma-separated, from ${OPTIMIZERS.join(", ")}; name:lr gives one its own lr
                        (default ${d.optimizers.map((o) => o.label).join(",")})
  --epochs N            epochs${epochsNote} (default ${d.epochs})
  --batch-size N        minibatch size (default ${d.batchSize})
  --lr X                learning rate, constant (default ${d.lr})
  --momentum X          SGD momentum (default ${d.momentum})
  --weight-decay X      L2 weight decay (default ${d.weightDecay})
  --variability V       weight-noise scale of the variable optimizers (default ${d.variability})
  --noise-law LAW       gaussian | laplace | uniform (default ${d.noiseLaw})
  --mode MODE           official | exact (where the weight noise lives: inside the params, or
                        added only for the gradient; default ${d.mode})
  --num-iters N         numIters, the noise reset period in steps: every N steps the noise is removed
                        and not redrawn (default ceil(subset / batch size), at least 2: noise-free
                        at each epoch end)
  --seeds L             comma-separated seeds, one run per seed and optimizer (default ${d.seeds.join(",")})
  --subset N            training examples, a seeded random subset (default ${d.subset})
  --test-subset N       test examples, the first N (default ${d.testSubset})
  --eval-batch-size N   (default ${d.evalBatchSize})
  --out DIR             output folder (default ${d.out})
  --backend B           cpu | webgpu | auto (default ${d.backend})
${outputOptionsHelp(mayChange)}  -h, --help            this text
`;
}

/**
 * Help lines of the output-folder options of the scripts that keep checkpoints; `mayChange`: the
 * configuration keys that may change on `--resume` (see {@linkcode ScriptOptions.mayChange}).
 */
export function outputOptionsHelp(mayChange: readonly string[] = ["epochs"]): string {
  return `  --checkpoint-every N  write a checkpoint of each run every N epochs into DIR/checkpoints/ (default 0:
                        only when a run ends, and on Ctrl-C, which finishes the epoch first)
  --resume DIR          continue the interrupted run in DIR (its config.json gives the options; only
                        ${resumeMayChange({ mayChange, checkpoints: true })} may change)
  --overwrite           replace the results of another configuration in --out
`;
}

/**
 * The shared defaults of {@linkcode TrainSettings} (constant lr); each script adds `epochs` and `out`.
 */
export const TRAIN_DEFAULTS: Omit<TrainSettings, "epochs" | "out"> = {
  optimizers: [{ name: "sgd", label: "sgd" }, { name: "vsgd", label: "vsgd" }],
  batchSize: 128,
  lr: 0.1,
  lrDecayEpochs: [],
  lrDecayFactor: 0.1,
  momentum: 0,
  weightDecay: 0,
  variability: 0.05,
  noiseLaw: "gaussian",
  mode: "official",
  numIters: undefined,
  seeds: [0],
  subset: 10000,
  testSubset: 10000,
  evalBatchSize: 1000,
  backend: "cpu",
  checkpointEvery: 0,
  resume: undefined,
  overwrite: false,
};

/** Options of {@linkcode applyTrainOptions}. */
export interface ApplyTrainOptions {
  /** Upper bound of `--subset` (default 60000, MNIST's training examples). */
  maxSubset?: number;
  /**
   * A script's own options, applied right after the shared option named by the key, so that the
   * first bad option on the command line (in this order) is the one reported.
   */
  after?: { optimizers?: () => void; lr?: () => void; "num-iters"?: () => void };
}

/** Applies the {@linkcode TRAIN_OPTIONS} found in `values` to `c` (in place). */
export function applyTrainOptions(values: OptionValues, c: TrainSettings, o: ApplyTrainOptions = {}): void {
  const s = (k: string) => values[k] as string | undefined;
  const posInt = (k: string) =>
    s(k) === undefined ? undefined : parseNumber(k, s(k)!, (x) => isInt(x) && x >= 1, "a positive integer");
  const upTo = (k: string, max: number) =>
    s(k) === undefined
      ? undefined
      : parseNumber(k, s(k)!, (x) => isInt(x) && x >= 1 && x <= max, `an integer in [1, ${max}]`);
  if (s("optimizers") !== undefined) c.optimizers = parseOptimizers(s("optimizers")!);
  o.after?.optimizers?.();
  c.epochs = posInt("epochs") ?? c.epochs;
  c.batchSize = posInt("batch-size") ?? c.batchSize;
  if (s("lr") !== undefined) c.lr = parseNumber("lr", s("lr")!, (x) => x > 0, "a number > 0");
  o.after?.lr?.();
  if (s("momentum") !== undefined) {
    c.momentum = parseNumber("momentum", s("momentum")!, (x) => x >= 0 && x < 1, "a number in [0, 1)");
  }
  if (s("weight-decay") !== undefined) {
    c.weightDecay = parseNumber("weight-decay", s("weight-decay")!, (x) => x >= 0, "a number >= 0");
  }
  if (s("variability") !== undefined) {
    c.variability = parseNumber("variability", s("variability")!, (x) => x >= 0, "a number >= 0");
  }
  if (s("noise-law") !== undefined) {
    c.noiseLaw = oneOf("noise-law", s("noise-law")!, ["gaussian", "laplace", "uniform"] as const);
  }
  if (s("mode") !== undefined) c.mode = oneOf("mode", s("mode")!, ["official", "exact"] as const);
  c.numIters = posInt("num-iters") ?? c.numIters;
  o.after?.["num-iters"]?.();
  c.seeds = parseSeeds(s("seeds"), s("seed")) ?? c.seeds;
  c.subset = upTo("subset", o.maxSubset ?? 60000) ?? c.subset;
  c.testSubset = upTo("test-subset", 10000) ?? c.testSubset;
  c.evalBatchSize = posInt("eval-batch-size") ?? c.evalBatchSize;
  if (s("out") !== undefined) {
    if (s("out")!.trim() === "") fail(`--out must be a folder path, got ""`);
    c.out = s("out")!;
  }
  if (s("backend") !== undefined) {
    c.backend = oneOf("backend", s("backend")!, ["cpu", "webgpu", "auto"] as const);
  }
  if (s("checkpoint-every") !== undefined) {
    c.checkpointEvery = parseNumber(
      "checkpoint-every",
      s("checkpoint-every")!,
      (x) => isInt(x) && x >= 0,
      "an integer >= 0",
    );
  }
  if (s("resume") !== undefined) {
    if (s("resume")!.trim() === "") fail(`--resume must be a folder path, got ""`);
    c.resume = s("resume")!;
  }
  c.overwrite = values.overwrite === true;
  const variable = c.optimizers.find((o) => o.name === "vsgd" || o.name === "vadam");
  if (variable && c.numIters === 1) fail(noNoise(variable.label));
}

// ---------------------------------------------------------------------------------------------
// Files.

/**
 * Writes `text` to `path` through a temporary file and a rename, so readers never see half a file.
 * Synchronous on purpose: an interrupt (SIGINT) handler cannot run between the write and the
 * rename and find a temporary file that is not finished yet.
 */
export function writeAtomic(path: string, text: string): void {
  writeTextFileAtomicSync(path, text, "write");
}

/** Creates the output folder and checks it is writable; a UsageError otherwise. */
export async function prepareOut(dir: string): Promise<void> {
  try {
    await Deno.mkdir(dir, { recursive: true });
    const probe = `${dir}/.write_probe.${Deno.pid}.tmp`;
    await Deno.writeTextFile(probe, "");
    await Deno.remove(probe);
  } catch (e) {
    const msg = e instanceof Deno.errors.NotCapable
      ? "no write permission (run with --allow-write)"
      : String((e as Error).message ?? e).split("\n")[0];
    fail(`--out ${JSON.stringify(dir)} is not a writable folder: ${msg}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Statistics and tables.

/** Arithmetic mean (NaN for no values). */
export const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Sample standard deviation (n − 1); NaN for fewer than 2 values. */
export const sd = (xs: readonly number[]): number => {
  if (xs.length < 2) return NaN;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1));
};

/** `"mean ± sd"` of the finite values (just the mean for one value, "-" for none). */
export function pm(xs: readonly number[], digits = 3): string {
  const ok = xs.filter(Number.isFinite);
  if (ok.length === 0) return "-";
  const s = sd(ok);
  return Number.isFinite(s) ? `${mean(ok).toFixed(digits)} ± ${s.toFixed(digits)}` : mean(ok).toFixed(digits);
}

/** A number for a CSV cell: `digits` significant digits; `nan`, `inf` or `-inf` when not finite (never blank). */
export function csvNumber(v: number, digits = 7): string {
  if (Number.isNaN(v)) return "nan";
  if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
  return String(+v.toPrecision(digits));
}

/** Rows as aligned text: the first column left-aligned, the others right-aligned. */
export function alignedTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: readonly string[]) =>
    r.map((v, i) => (i === 0 ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join("  ").trimEnd();
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n") + "\n";
}

/** The runs of `runs` that have a run of `ref` with the same seed, each with that run. */
export function pairBySeed<R extends { seed: number }>(runs: readonly R[], ref: readonly R[]): [R, R][] {
  return runs.flatMap((r) => {
    const b = ref.find((x) => x.seed === r.seed);
    return b ? [[r, b] as [R, R]] : [];
  });
}

/** {@linkcode pm} of differences, with a "+" before a positive mean. */
export const pmSigned = (xs: readonly number[], digits = 3): string => pm(xs, digits).replace(/^(?=\d)/, "+");

// ---------------------------------------------------------------------------------------------
// The main function of a script.

/** Output helpers handed to a script's body. */
export interface Console {
  /** Writes to stdout (synchronously). */
  out(s: string): void;
  /** Writes to stderr (synchronously). */
  err(s: string): void;
}

/** The first line of an error's message. */
export const firstLine = (e: unknown): string => String((e as Error)?.message ?? e).split("\n")[0];

// ---------------------------------------------------------------------------------------------
// CSV files that lose nothing.

/**
 * A CSV file written row by row: each {@linkcode CsvLog.append} writes one line and flushes it to
 * the disk, so a run killed at any moment keeps every row written before.
 */
export class CsvLog {
  #file: Deno.FsFile;
  #enc = new TextEncoder();
  #columns: number;

  private constructor(file: Deno.FsFile, columns: number) {
    this.#file = file;
    this.#columns = columns;
  }

  /**
   * Opens `path` for appending below `header`. Without `keep` the file starts anew (header only);
   * with `keep` (a resumed run), the rows of the existing file for which `keep(cells)` is true
   * stay and the others go (rows of epochs after the checkpoint, which will be trained again).
   * An existing file with another header is an error.
   */
  static open(path: string, header: readonly string[], keep?: (cells: string[]) => boolean): CsvLog {
    const lines = [header.join(",")];
    if (keep) {
      let old: string | undefined;
      try {
        old = Deno.readTextFileSync(path);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
      if (old !== undefined) {
        const rows = old.split("\n").filter((l) => l !== "");
        if (rows.length > 0 && rows[0] !== lines[0]) {
          throw new Error(`${path}: another header (${rows[0]}), expected ${lines[0]}`);
        }
        // A last line cut short by a kill has fewer cells: dropped.
        lines.push(
          ...rows.slice(1).filter((l) => l.split(",").length === header.length && keep(l.split(","))),
        );
      }
    }
    writeAtomic(path, lines.join("\n") + "\n");
    return new CsvLog(Deno.openSync(path, { append: true }), header.length);
  }

  /** Appends one row (cells joined with commas) and flushes it to the disk. */
  append(cells: readonly (string | number)[]): void {
    if (cells.length !== this.#columns) {
      throw new Error(`CsvLog.append: ${cells.length} cells, the header has ${this.#columns}`);
    }
    let b = this.#enc.encode(cells.join(",") + "\n");
    while (b.length > 0) b = b.subarray(this.#file.writeSync(b));
    this.#file.syncDataSync();
  }

  /** Closes the file. */
  close(): void {
    this.#file.close();
  }
}

/** The rows of a CSV file as records by column name (`[]` when the file does not exist). */
export function readCsv(path: string): Record<string, string>[] {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  const [head, ...rows] = text.split("\n").filter((l) => l !== "");
  const cols = head?.split(",") ?? [];
  return rows.map((r) => Object.fromEntries(r.split(",").map((v, i) => [cols[i], v])));
}

/** A CSV cell back as a number (`nan`, `inf`, `-inf` included). */
export function csvValue(v: string | undefined): number {
  if (v === "nan" || v === undefined || v === "") return NaN;
  if (v === "inf") return Infinity;
  if (v === "-inf") return -Infinity;
  return Number(v);
}

// ---------------------------------------------------------------------------------------------
// The output folder: config.json, reuse, --resume, checkpoints, SIGINT.

/** The file that records a run's configuration in its output folder. */
export const CONFIG_FILE = "config.json";

/** What `config.json` holds. */
export interface SavedConfig {
  /** The script's name. */
  script: string;
  /** The command line that reproduces the run (without `--out`, `--resume`, `--overwrite`). */
  args: string[];
  /** The run's full configuration after parsing. */
  config: Record<string, unknown>;
}

/** Configuration keys that may differ between runs sharing an output folder (they do not change results). */
const FREE_KEYS = ["out", "resume", "overwrite", "checkpointEvery", "backend"];

/** `args` without `--out`, `--resume` and `--overwrite` (and their values). */
function stripOutputArgs(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--overwrite") continue;
    if (a === "--out" || a === "--resume") {
      i++;
      continue;
    }
    if (a.startsWith("--out=") || a.startsWith("--resume=")) continue;
    out.push(a);
  }
  return out;
}

/** The last value of `--name` in `args` (`--name X` or `--name=X`). */
function optionValue(args: readonly string[], name: string): string | undefined {
  let v: string | undefined;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === `--${name}` && i + 1 < args.length) v = args[++i];
    else if (args[i].startsWith(`--${name}=`)) v = args[i].slice(name.length + 3);
  }
  return v;
}

/** A config as JSON data (non-finite numbers as strings). */
function configJson(c: object): Record<string, unknown> {
  return JSON.parse(
    JSON.stringify(c, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v)),
  );
}

/** The first key (outside `free`) whose value differs, as `key: a there, b now`; undefined if none. */
function configDiff(saved: Record<string, unknown>, now: Record<string, unknown>, free: readonly string[]) {
  for (const k of new Set([...Object.keys(saved), ...Object.keys(now)])) {
    if (free.includes(k)) continue;
    const a = JSON.stringify(saved[k]), b = JSON.stringify(now[k]);
    if (a !== b) return `${k} is ${a ?? "unset"} there, ${b ?? "unset"} now`;
  }
  return undefined;
}

function readSaved(dir: string): SavedConfig | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(`${dir}/${CONFIG_FILE}`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  try {
    const s = JSON.parse(text);
    if (typeof s?.script === "string" && Array.isArray(s.args) && s.config && typeof s.config === "object") {
      return s;
    }
  } catch { /* reported below */ }
  return fail(`${dir}/${CONFIG_FILE} is not a config file of these scripts (delete it or give --overwrite)`);
}

/**
 * The files of ours in an output folder: CSVs, SVGs, Markdown summaries, config.json, and the
 * checkpoints and cells (the sweep's finished runs) folders.
 */
function ourFiles(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) =>
    n.endsWith(".csv") || n.endsWith(".svg") || n.endsWith(".md") || n === CONFIG_FILE ||
    n === "checkpoints" || n === "cells"
  ).sort();
}

/**
 * Checks the output folder `c.out` against the run and records the run in it. A new run: refused
 * (UsageError) when the folder holds results of another configuration (or results without a
 * config.json) unless `--overwrite`; then the old results are removed. A resumed run: the folder's
 * config.json must be this script's and agree with `c` except on `FREE_KEYS` and `mayChange`.
 * Writes `config.json` last.
 */
function prepareOutput(
  name: string,
  c: TrainSettings,
  args: readonly string[],
  o: Required<Pick<ScriptOptions<unknown, unknown>, "mayChange" | "checkpoints">>,
): void {
  const mayChange = o.mayChange;
  const now = configJson(c);
  const saved = readSaved(c.out);
  if (c.resume !== undefined) {
    if (!saved) {
      fail(`--resume ${JSON.stringify(c.resume)}: no ${CONFIG_FILE} there (not an output folder of ${name})`);
    }
    const diff = configDiff(saved.config, now, [...FREE_KEYS, ...mayChange]);
    if (diff) {
      fail(
        `--resume: the options differ from the run's (${diff}); only ${resumeMayChange(o)} may change`,
      );
    }
  } else {
    const diff = saved
      ? (saved.script !== name ? `written by ${saved.script}` : configDiff(saved.config, now, FREE_KEYS))
      : undefined;
    const files = ourFiles(c.out);
    if (!c.overwrite && (diff || (!saved && files.length > 0))) {
      fail(
        `--out ${JSON.stringify(c.out)} holds the results of another configuration (${
          diff ?? `${files.slice(0, 3).join(", ")}${files.length > 3 ? ", …" : ""} without a ${CONFIG_FILE}`
        }); give --overwrite to replace them, or choose another --out`,
      );
    }
    for (const f of files) Deno.removeSync(`${c.out}/${f}`, { recursive: true });
  }
  writeAtomic(
    `${c.out}/${CONFIG_FILE}`,
    JSON.stringify(
      { script: name, args: stripOutputArgs(args), config: now } satisfies SavedConfig,
      null,
      2,
    ) + "\n",
  );
}

/** What a script's body gets besides its config: interruption, resumption and checkpoints. */
export interface RunContext {
  /** Aborted on the first Ctrl-C (SIGINT): finish the epoch, checkpoint, stop. */
  signal: AbortSignal;
  /** Whether this is a `--resume`d run. */
  resuming: boolean;
  /** The checkpoint folder of one run (`out/checkpoints/<label>_seed<S>`). */
  checkpointDir(label: string, seed: number): string;
  /** The epoch of a run's last checkpoint (0 when a new run, or none). */
  checkpointEpoch(label: string, seed: number): Promise<number>;
}

/** `fit`'s checkpoint option for one run: every `--checkpoint-every` epochs (0: at its end), the newest kept. */
export function checkpointOption(
  ctx: RunContext,
  c: TrainSettings,
  label: string,
  seed: number,
): { dir: string; every: number; keep: number; config: unknown } {
  return {
    dir: ctx.checkpointDir(label, seed),
    every: c.checkpointEvery > 0 ? c.checkpointEvery : Infinity,
    keep: 1,
    config: { ...c, run: { label, seed } },
  };
}

/** How {@linkcode runScript} treats a script's data and output folder. */
export interface ScriptOptions<C, D> {
  /** Loads the data before anything is written (its failures are the script's, not the folder's). */
  load?: (c: C) => Promise<D>;
  /** Configuration keys that may change on `--resume` besides the backend (default `["epochs"]`). */
  mayChange?: readonly string[];
  /** Whether the script writes checkpoints (`--checkpoint-every`; default true): the messages say so. */
  checkpoints?: boolean;
  /**
   * What a new run (no `--resume`, no `--overwrite`) does in a folder that holds results of the same
   * configuration: `"replace"` them (default; quick scripts), or `"continue"` them as `--resume`
   * would (scripts of many independent cells, whose finished cells are worth keeping).
   */
  rerun?: "replace" | "continue";
}

/** The options that may change on `--resume`, as the messages list them. */
function resumeMayChange(o: { mayChange: readonly string[]; checkpoints: boolean }): string {
  const keys = [
    ...(o.mayChange.includes("epochs") ? ["--epochs"] : []),
    "--backend",
    ...(o.checkpoints ? ["--checkpoint-every"] : []),
  ];
  return keys.length === 1 ? keys[0] : `${keys.slice(0, -1).join(", ")} and ${keys.at(-1)}`;
}

/** `name args…` as a POSIX shell command (arguments quoted where the shell would split or expand them). */
export function commandLine(script: string, args: readonly string[]): string {
  const quote = (a: string) => /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`;
  return [`deno run --allow-read --allow-write examples/${script}.ts`, ...args.map(quote)].join(" ");
}

/**
 * Runs a script: parses `args` (`"help"` prints `help`, exit 0; `--resume DIR` first reads the
 * command line of the run in DIR from its config.json, the new options after it), runs
 * `o.load` if given (its result goes to `body`), prepares the output folder (see `prepareOutput`:
 * another configuration's results are refused unless `--overwrite`; the same configuration's are
 * replaced or continued, see {@linkcode ScriptOptions.rerun}; config.json is written), then runs
 * `body`. A {@linkcode UsageError} before `body` starts is one line on stderr and exit code 2 with
 * nothing written; any other failure is one line and exit code 1. The first Ctrl-C (SIGINT) aborts
 * `RunContext.signal` (the body finishes its epoch, writes a checkpoint if it keeps them, and
 * returns) and the exit code is 130; a second one exits at once with 130.
 */
export async function runScript<C extends TrainSettings, D = undefined>(
  name: string,
  args: readonly string[],
  parse: (args: readonly string[]) => C | "help",
  help: string,
  body: (c: C, io: Console, data: D, ctx: RunContext) => Promise<void>,
  o: ScriptOptions<C, D> = {},
): Promise<number> {
  const { load, mayChange = ["epochs"], checkpoints = true, rerun = "replace" } = o;
  const enc = new TextEncoder();
  const writeAll = (w: { writeSync(p: Uint8Array): number }, s: string) => {
    let b = enc.encode(s);
    while (b.length > 0) b = b.subarray(w.writeSync(b));
  };
  const io: Console = { out: (s) => writeAll(Deno.stdout, s), err: (s) => writeAll(Deno.stderr, s) };
  let c: C, data: D;
  let fullArgs = args;
  try {
    const resume = optionValue(args, "resume");
    if (resume !== undefined && resume.trim() !== "" && !args.includes("--help") && !args.includes("-h")) {
      if (optionValue(args, "out") !== undefined) {
        fail(`--resume continues the run in its own folder: omit --out`);
      }
      const saved = readSaved(resume);
      if (!saved) {
        fail(`--resume ${JSON.stringify(resume)}: no ${CONFIG_FILE} there (not an output folder of ${name})`);
      }
      if (saved.script !== name) {
        fail(`--resume ${JSON.stringify(resume)}: a run of ${saved.script}, not of ${name}`);
      }
      fullArgs = [...saved.args, "--out", resume, ...args];
    }
    const parsed = parse(fullArgs);
    if (parsed === "help") {
      io.out(help);
      return 0;
    }
    c = parsed;
    // The data first: a missing or bad data folder leaves nothing behind (no output folder).
    data = load ? await load(c) : undefined as D;
    await prepareOut(c.out);
    if (rerun === "continue" && c.resume === undefined && !c.overwrite) {
      const saved = readSaved(c.out);
      if (saved?.script === name && !configDiff(saved.config, configJson(c), FREE_KEYS)) {
        io.out(`--out ${c.out} holds a run of this configuration: continuing it (--overwrite starts over)\n`);
        c.resume = c.out;
      }
    }
    prepareOutput(name, c, fullArgs, { mayChange, checkpoints });
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`${name}: ${e.message} (see --help)\n`);
      return 2;
    }
    io.err(`${name}: ${firstLine(e)}\n`);
    return 1;
  }
  const abort = new AbortController();
  const onSigint = () => {
    if (abort.signal.aborted) Deno.exit(130);
    abort.abort();
    io.err(
      `\n${name}: interrupted: finishing the epoch ${
        checkpoints ? "and writing a checkpoint" : "(the run under way is not kept)"
      } (Ctrl-C again to stop now)\n`,
    );
  };
  Deno.addSignalListener("SIGINT", onSigint);
  const ckDir = (label: string, seed: number) => `${c.out}/checkpoints/${label}_seed${seed}`;
  const ctx: RunContext = {
    signal: abort.signal,
    resuming: c.resume !== undefined,
    checkpointDir: ckDir,
    async checkpointEpoch(label, seed) {
      if (c.resume === undefined) return 0;
      try {
        const file = await resolveCheckpoint(ckDir(label, seed));
        return Number(/epoch-(\d+)\.safetensors$/.exec(file)?.[1] ?? 0);
      } catch {
        return 0; // no checkpoint of this run yet
      }
    },
  };
  try {
    await body(c, io, data, ctx);
    if (abort.signal.aborted) {
      io.err(`${name}: stopped; continue with --resume ${c.out}\n`);
      return 130;
    }
    return 0;
  } catch (e) {
    io.err(`${name}: ${firstLine(e)}\n`);
    return 1;
  } finally {
    Deno.removeSignalListener("SIGINT", onSigint);
  }
}
