/**
 * The generalization sweep (examples/generalization.ts): its command line, the schedule of a cell
 * (a fixed number of steps whatever the training-set size), and tiny end-to-end runs as a
 * subprocess: the files and CSV columns it writes, `--resume` skipping the finished cells and
 * rerunning the missing or unreadable ones, Ctrl-C dropping the cell under way, and bad flags
 * exiting 2 with nothing written.
 */
import assert from "node:assert/strict";
import {
  accuracyRange,
  CELL_COLUMNS,
  cellFileName,
  cellSchedule,
  DEFAULTS,
  gridCells,
  parseConfig,
  parseGridOptimizers,
  parseSizes,
  SUMMARY_COLUMNS,
  UsageError,
} from "../examples/generalization.ts";
import { assertUsageErrors, exists, needRun, scriptRunner } from "./_examples.ts";

const runScript = scriptRunner("generalization");

const parsed = (args: string[]) => {
  const c = parseConfig(args);
  if (c === "help") throw new Error("unexpected help");
  return c;
};

/** The rows of a CSV file as records by column name, and its header. */
function readCsv(path: string): { header: string[]; rows: Record<string, string>[] } {
  const [head, ...lines] = Deno.readTextFileSync(path).trimEnd().split("\n");
  const header = head.split(",");
  const rows = lines.map((l) => {
    const cells = l.split(",");
    assert.equal(cells.length, header.length, `a complete row: ${l}`);
    return Object.fromEntries(cells.map((v, i) => [header[i], v]));
  });
  return { header, rows };
}

const cellFiles = (out: string) => [...Deno.readDirSync(`${out}/cells`)].map((e) => e.name).sort();

Deno.test("generalization CLI: the default grid is the issue's 144 cells; the flags narrow it", () => {
  const d = parsed([]);
  assert.deepEqual(d.datasets, ["mnist", "fashion"]);
  assert.deepEqual(d.models, ["mlp", "lenet"]);
  assert.deepEqual(d.sizes, [1000, 5000, 60000]);
  assert.deepEqual(d.optimizers.map((o) => o.label), ["sgd", "vsgd:0.01", "vsgd:0.02", "vsgd:0.05"]);
  assert.deepEqual(d.optimizers.map((o) => o.variability), [0, 0.01, 0.02, 0.05]);
  assert.deepEqual(d.seeds, [0, 1, 2]);
  assert.deepEqual([d.lr, d.batchSize, d.lrDecayFactor], [0.1, 128, 0.1]);
  assert.deepEqual(d.steps, DEFAULTS.steps);
  assert.ok(d.steps.lenet < d.steps.mlp, "LeNet (~5x slower a step) gets fewer steps");
  const cells = gridCells(d);
  assert.equal(cells.length, 144);
  assert.equal(new Set(cells.map(cellFileName)).size, 144, "one file name per cell");

  const c = parsed([
    "--datasets",
    "fashion",
    "--models",
    "lenet",
    "--sizes",
    "all,500",
    "--variabilities",
    "0.03",
    "--seed",
    "4",
    "--lenet-steps",
    "50",
  ]);
  assert.deepEqual([c.datasets, c.models, c.sizes, c.seeds], [["fashion"], ["lenet"], [500, 60000], [4]]);
  assert.deepEqual(c.optimizers.map((o) => o.label), ["sgd", "vsgd:0.03"]);
  assert.equal(c.steps.lenet, 50);
  assert.deepEqual(
    gridCells(c).map(cellFileName),
    ["fashion_lenet_500_sgd_seed4.json", "fashion_lenet_500_vsgd0.03_seed4.json", ...[
      "fashion_lenet_60000_sgd_seed4.json",
      "fashion_lenet_60000_vsgd0.03_seed4.json",
    ]],
  );
  assert.deepEqual(parsed(["--variabilities", ""]).optimizers.map((o) => o.label), ["sgd"]);
  assert.deepEqual(parseSizes("5000, 1000,all"), [1000, 5000, 60000]);
  assert.deepEqual(parseGridOptimizers("vsgd:0.5,sgd").map((o) => [o.name, o.variability, o.key]), [
    ["vsgd", 0.5, "vsgd0.5"],
    ["sgd", 0, "sgd"],
  ]);
  assert.equal(parseConfig(["--help"]), "help");
  assert.throws(() => parseGridOptimizers("vsgd"), UsageError);
  assert.throws(() => parseSizes("0"), UsageError);
});

Deno.test("generalization: a fixed number of steps per cell, whatever the training-set size", () => {
  const c = parsed(["--mlp-steps", "3000", "--lenet-steps", "469"]);
  // 1000 examples: 8 steps an epoch (the last batch short).
  assert.deepEqual(cellSchedule(c, "mlp", 1000), {
    stepsPerEpoch: 8,
    epochs: 375,
    steps: 3000,
    decaySteps: [1500, 2250],
  });
  // All 60000: 469 steps an epoch, ceil(3000 / 469) = 7 epochs.
  assert.deepEqual(cellSchedule(c, "mlp", 60000), {
    stepsPerEpoch: 469,
    epochs: 7,
    steps: 3283,
    decaySteps: [1642, 2462],
  });
  // One epoch: the decay falls inside it, in steps.
  assert.deepEqual(cellSchedule(c, "lenet", 60000), {
    stepsPerEpoch: 469,
    epochs: 1,
    steps: 469,
    decaySteps: [235, 352],
  });
  for (const size of [1000, 5000, 60000]) {
    const s = cellSchedule(c, "mlp", size);
    assert.ok(s.steps >= 3000 && s.steps - 3000 < s.stepsPerEpoch, `${size}: ${s.steps} steps`);
  }
  // Too few steps for a decay: none.
  assert.deepEqual(cellSchedule(parsed(["--mlp-steps", "1"]), "mlp", 100).decaySteps, []);
});

Deno.test("generalization: the plot's accuracy range has 5 round intervals and holds the data", () => {
  assert.deepEqual(accuracyRange(0.97, 0.99), [0.95, 1]);
  assert.deepEqual(accuracyRange(0.88, 0.93), [0.86, 0.96]);
  assert.deepEqual(accuracyRange(0.3, 0.95), [0, 1]);
  assert.deepEqual(accuracyRange(0.996, 1.01), [0.95, 1]);
  assert.deepEqual(accuracyRange(NaN, 0.9), [0, 1]);
  for (const [lo, hi] of [[0.5, 0.52], [0.81, 0.97], [0.05, 0.15], [0.6, 0.61]]) {
    const [a, b] = accuracyRange(lo, hi);
    assert.ok(a <= lo && b >= hi && a >= 0 && b <= 1, `${lo}..${hi} in [${a}, ${b}]`);
    const interval = (b - a) / 5;
    assert.ok([0.01, 0.02, 0.05, 0.1, 0.2].some((s) => Math.abs(interval - s) < 1e-9), `${a}..${b}`);
  }
});

Deno.test("generalization CLI: bad flags → one-line error, exit code 2, nothing written", async () => {
  await needRun();
  const tmp = await Deno.makeTempDir({ prefix: "nvrm_gen_" });
  try {
    const out = `${tmp}/out`;
    const cases: [string[], RegExp][] = [
      [["--sizes", "0"], /--sizes must be an integer in \[1, 60000\] or all, got "0"/],
      [["--sizes", "70000"], /--sizes must be an integer in \[1, 60000\] or all, got "70000"/],
      [["--sizes", "1000,1000"], /--sizes lists a size twice/],
      [["--datasets", "cifar10"], /--datasets must be one of mnist, fashion, got "cifar10"/],
      [["--models", "mlp,resnet18"], /--models must be one of mlp, lenet, got "resnet18"/],
      [["--optimizers", "sgd,vsgd:0.05"], /Unknown option '--optimizers'/],
      [["--variabilities", "0"], /--variabilities must be a list of numbers > 0, got "0"/],
      [["--variabilities", "0.01,x"], /--variabilities must be a list of numbers > 0/],
      [["--variabilities", "0.01,0.01"], /--variabilities lists vsgd:0.01 twice/],
      [["--variabilities", "0.01,x"], /--variabilities must be a list of numbers > 0, got "x"/],
      [["--mlp-steps", "0"], /--mlp-steps must be a positive integer, got "0"/],
      [["--train-eval-limit", "1.5"], /--train-eval-limit must be a positive integer, got "1.5"/],
      [["--lr", "-1"], /lr/],
      [["--seeds", "1,1"], /--seeds lists a seed twice/],
      [["--epochs", "3"], /epochs/], // the steps fix the epochs: no --epochs here
      [["--subset", "100"], /subset/], // --sizes instead
    ];
    const results = await Promise.all(cases.map(([args]) => runScript([...args, "--out", out])));
    assertUsageErrors(results, cases, /^generalization: .* \(see --help\)$/);
    assert.deepEqual([...Deno.readDirSync(tmp)], []);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

/** Tiny: 2 datasets × 2 models × 2 sizes × 2 optimizers × 1 seed = 16 cells of a few steps. */
const TINY = [
  "--datasets",
  "mnist,fashion",
  "--sizes",
  "100,200",
  "--variabilities",
  "0.05",
  "--batch-size",
  "32",
  "--seeds",
  "0",
  "--mlp-steps",
  "8",
  "--lenet-steps",
  "4",
  "--test-subset",
  "200",
  "--train-eval-limit",
  "150",
];

Deno.test("generalization: a tiny sweep writes cells, CSVs, Markdown and plot; --resume skips finished cells", async () => {
  await needRun();
  const tmp = await Deno.makeTempDir({ prefix: "nvrm_gen_" });
  try {
    const out = `${tmp}/out`;
    const r = await runScript([...TINY, "--out", out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    assert.match(r.stdout, /16 cells .* mlp 8 steps, lenet 4 steps per cell/);
    assert.deepEqual(
      [...Deno.readDirSync(out)].map((e) => e.name).sort(),
      ["cells", "cells.csv", "config.json", "generalization.svg", "summary.csv", "summary.md"],
    );
    const files = cellFiles(out);
    assert.equal(files.length, 16);
    assert.ok(files.includes("fashion_lenet_200_vsgd0.05_seed0.json"), files.join(" "));

    // cells.csv: one row per cell; a fixed number of steps whatever the size; gap = train − test.
    const cells = readCsv(`${out}/cells.csv`);
    assert.deepEqual(cells.header, CELL_COLUMNS);
    assert.equal(cells.rows.length, 16);
    for (const row of cells.rows) {
      const what = JSON.stringify(row);
      // The requested steps (mlp 8, lenet 4) rounded up to whole epochs of --batch-size 32.
      const perEpoch = Math.ceil(Number(row.train_size) / 32);
      const epochs = Math.ceil((row.model === "mlp" ? 8 : 4) / perEpoch);
      assert.equal(Number(row.epochs), epochs, what);
      assert.equal(Number(row.steps), epochs * perEpoch, what);
      assert.equal(row.train_eval_examples, String(Math.min(150, Number(row.train_size))), what);
      for (const k of ["test_acc", "train_acc"]) {
        assert.ok(Number(row[k]) >= 0 && Number(row[k]) <= 1, `${k}: ${what}`);
      }
      assert.ok(Math.abs(Number(row.gap) - (Number(row.train_acc) - Number(row.test_acc))) < 1e-6, what);
    }
    assert.ok(cells.rows.some((row) => Number(row.test_acc) > 0.3), "something was learned");

    // summary.csv: one row per dataset × model × size × optimizer; deltas vs SGD, paired by seed.
    const summary = readCsv(`${out}/summary.csv`);
    assert.deepEqual(summary.header, SUMMARY_COLUMNS);
    assert.equal(summary.rows.length, 16);
    for (const row of summary.rows) {
      const what = JSON.stringify(row);
      const cell = cells.rows.filter((c) =>
        c.dataset === row.dataset && c.model === row.model && c.train_size === row.train_size
      );
      const own = cell.find((c) => c.optimizer === row.optimizer)!;
      const sgd = cell.find((c) => c.optimizer === "sgd")!;
      assert.equal(row.test_acc, own.test_acc, what); // one seed: the mean is the value
      if (row.optimizer === "sgd") {
        assert.deepEqual([row.test_acc_vs_sgd, row.gap_vs_sgd], ["nan", "nan"], what);
      } else {
        const d = Number(own.test_acc) - Number(sgd.test_acc);
        assert.ok(Math.abs(Number(row.test_acc_vs_sgd) - d) < 1e-5, what);
      }
    }
    const md = Deno.readTextFileSync(`${out}/summary.md`);
    assert.equal(md.match(/^## /gm)?.length, 4, md);
    assert.match(md, /## Fashion-MNIST, LeNet/);
    assert.match(md, /\| size \| optimizer \| test acc \| train acc \| gap \|/);
    const svg = Deno.readTextFileSync(`${out}/generalization.svg`);
    assert.match(svg, /^<svg xmlns=/);
    assert.equal(
      svg.match(/font-weight="bold">(MNIST|Fashion-MNIST), (MLP|LeNet)<\/text>/g)?.length,
      4,
      "one panel per dataset × model",
    );
    assert.match(svg, />100<\/text>/); // the x ticks are the sizes
    assert.match(r.stdout, /wrote .*summary\.md/);

    // --resume: the finished cells are skipped (their files untouched), a deleted cell and an
    // unreadable one (as a killed writer could never leave: written atomically) run again.
    const keep = `${out}/cells/mnist_mlp_100_vsgd0.05_seed0.json`;
    const kept = Deno.readTextFileSync(keep);
    const gone = `${out}/cells/mnist_mlp_200_sgd_seed0.json`; // MNIST only: no Fashion-MNIST load
    const goneBefore = JSON.parse(Deno.readTextFileSync(gone));
    Deno.removeSync(gone);
    Deno.writeTextFileSync(`${out}/cells/mnist_lenet_100_sgd_seed0.json`, "{");
    const again = await runScript(["--resume", out]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /resume: 14 of 16 cells finished \(skipped\), 2 to run/);
    assert.equal(again.stdout.match(/^\[\d\/2\]/gm)?.length, 2, again.stdout);
    assert.equal(Deno.readTextFileSync(keep), kept, "a finished cell is not rerun");
    const goneAfter = JSON.parse(Deno.readTextFileSync(gone));
    assert.equal(goneAfter.testAccuracy, goneBefore.testAccuracy, "a cell is reproducible");
    assert.equal(cellFiles(out).length, 16);
    assert.equal(readCsv(`${out}/cells.csv`).rows.length, 16);

    // --resume with other options: refused, nothing changed.
    const other = await runScript(["--resume", out, "--mlp-steps", "9"]);
    assert.equal(other.code, 2, other.stderr);
    assert.match(other.stderr, /--resume: the options differ from the run's \(steps is/);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("generalization: Ctrl-C drops the cell under way (exit 130); --resume runs it and the rest", async () => {
  await needRun();
  const tmp = await Deno.makeTempDir({ prefix: "nvrm_gen_" });
  try {
    const out = `${tmp}/out`;
    const args = [
      "--datasets",
      "mnist",
      "--models",
      "mlp",
      "--sizes",
      "1000",
      "--variabilities",
      "0.05",
    ];
    args.push("--seeds", "0", "--mlp-steps", "400", "--test-subset", "100", "--out", out);
    const script = new URL("../examples/generalization.ts", import.meta.url).pathname;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-check", "--allow-read", "--allow-write", script, ...args],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      if ((await exists(`${out}/cells`)) && cellFiles(out).length >= 1) break;
    }
    child.kill("SIGINT");
    const r = await child.output();
    const stdout = new TextDecoder().decode(r.stdout), stderr = new TextDecoder().decode(r.stderr);
    assert.equal(r.code, 130, stderr);
    assert.match(stderr, /stopped; continue with --resume/);
    assert.match(stdout, /interrupted, not written \(--resume reruns it\)/);
    assert.deepEqual(cellFiles(out), ["mnist_mlp_1000_sgd_seed0.json"], "the first cell only");
    assert.equal(await exists(`${out}/summary.csv`), false, "no summary of a stopped sweep");

    const resumed = await runScript(["--resume", out]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, /resume: 1 of 2 cells finished \(skipped\), 1 to run/);
    assert.equal(cellFiles(out).length, 2);
    assert.equal(readCsv(`${out}/summary.csv`).rows.length, 2);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
