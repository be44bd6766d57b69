/**
 * Pieces shared by the experiment scripts of `examples/`: command-line parsing that fails with one
 * line ({@linkcode UsageError}, exit code 2), the optimizers by command-line name, the training
 * options every script takes, files written through a temporary name and a rename, mean ± sd, and
 * aligned text tables. Not part of the published module.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { adam, antiPgd, multiStepSchedule, sgd, vadam, vsgd } from "../src/optim/mod.ts";
import type { NoiseLaw } from "../src/random/noise.ts";
import type { LoopOptimizer } from "../src/train/mod.ts";

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
  const numIters = c.numIters ?? stepsPerEpoch;
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

/** The learning rate of `spec` during 1-based `epoch`. */
export function lrAt(spec: OptimizerSpec, c: OptimizerSettings, epoch: number): number {
  const base = spec.lr ?? c.lr;
  return base * c.lrDecayFactor ** c.lrDecayEpochs.filter((e) => epoch - 1 >= e).length;
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
  help: { type: "boolean", short: "h" },
};

/** Help lines for {@linkcode TRAIN_OPTIONS}, given the defaults `d`. */
export function trainOptionsHelp(d: TrainSettings, epochsNote = ""): string {
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
                        and not redrawn (default ceil(subset / batch size): noise-free each epoch end)
  --seeds L             comma-separated seeds, one run per seed and optimizer (default ${d.seeds.join(",")})
  --subset N            training examples, a seeded random subset (default ${d.subset})
  --test-subset N       test examples, the first N (default ${d.testSubset})
  --eval-batch-size N   (default ${d.evalBatchSize})
  --out DIR             output folder (default ${d.out})
  --backend B           cpu | webgpu | auto (default ${d.backend})
  -h, --help            this text
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
}

// ---------------------------------------------------------------------------------------------
// Files.

/**
 * Writes `text` to `path` through a temporary file and a rename, so readers never see half a file.
 * Synchronous on purpose: an interrupt (SIGINT) handler cannot run between the write and the
 * rename and find a temporary file that is not finished yet.
 */
export function writeAtomic(path: string, text: string): void {
  const tmp = `${path}.${Deno.pid}.tmp`;
  try {
    Deno.writeTextFileSync(tmp, text);
    Deno.renameSync(tmp, path);
  } catch (e) {
    try {
      Deno.removeSync(tmp);
    } catch { /* not created */ }
    throw e;
  }
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

/** A number for a CSV cell: `digits` significant digits, empty when not finite. */
export function csvNumber(v: number, digits = 7): string {
  return Number.isFinite(v) ? String(+v.toPrecision(digits)) : "";
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
export const pmSigned = (xs: readonly number[]): string => pm(xs).replace(/^(?=\d)/, "+");

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

/**
 * Runs a script: parses `args` (`"help"` prints `help`, exit 0), runs `load` if given (its result
 * goes to `body`), prepares the output folder, then runs `body`. A {@linkcode UsageError} before
 * `body` starts is one line on stderr and exit code 2 with nothing written; any other failure is
 * one line and exit code 1.
 */
export async function runScript<C extends { out: string }, D = undefined>(
  name: string,
  args: readonly string[],
  parse: (args: readonly string[]) => C | "help",
  help: string,
  body: (c: C, io: Console, data: D) => Promise<void>,
  load?: (c: C) => Promise<D>,
): Promise<number> {
  const enc = new TextEncoder();
  const writeAll = (w: { writeSync(p: Uint8Array): number }, s: string) => {
    let b = enc.encode(s);
    while (b.length > 0) b = b.subarray(w.writeSync(b));
  };
  const io: Console = { out: (s) => writeAll(Deno.stdout, s), err: (s) => writeAll(Deno.stderr, s) };
  let c: C, data: D;
  try {
    const parsed = parse(args);
    if (parsed === "help") {
      io.out(help);
      return 0;
    }
    c = parsed;
    // The data first: a missing or bad data folder leaves nothing behind (no output folder).
    data = load ? await load(c) : undefined as D;
    await prepareOut(c.out);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`${name}: ${e.message} (see --help)\n`);
      return 2;
    }
    io.err(`${name}: ${firstLine(e)}\n`);
    return 1;
  }
  try {
    await body(c, io, data);
    return 0;
  } catch (e) {
    io.err(`${name}: ${firstLine(e)}\n`);
    return 1;
  }
}
