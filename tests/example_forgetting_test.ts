import assert from "node:assert/strict";
import { makeDataset } from "../src/data/mod.ts";
import { forgettingMetrics } from "../src/train/metrics.ts";
import {
  classSubset,
  DEFAULTS,
  parseConfig,
  permutePixels,
  SPLIT_DEFAULTS,
  splitAccuracy,
  splitClasses,
  taskPermutation,
  UsageError,
} from "../examples/forgetting.ts";
import { assertUsageErrors, needRun, scriptRunner } from "./_examples.ts";

const runScript = scriptRunner("forgetting");

const close = (a: number, b: number, what: string) =>
  assert.ok(Math.abs(a - b) < 1e-12, `${what}: ${a} vs ${b}`);

Deno.test("forgettingMetrics: a hand-built accuracy matrix", () => {
  // R[t][j]: accuracy on task j after training tasks 0…t (entries above the diagonal unused).
  const m = forgettingMetrics([
    [0.90, 0.10, 0.12],
    [0.70, 0.95, 0.11],
    [0.50, 0.80, 0.97],
  ]);
  assert.equal(m.tasks, 3);
  close(m.averageAccuracy, (0.5 + 0.8 + 0.97) / 3, "average accuracy");
  close(m.learningAccuracy, (0.9 + 0.95 + 0.97) / 3, "learning accuracy");
  assert.equal(m.forgetting.length, 2);
  close(m.forgetting[0], 0.4, "forgetting of task 0"); // max(0.9, 0.7) − 0.5
  close(m.forgetting[1], 0.15, "forgetting of task 1"); // 0.95 − 0.8
  close(m.averageForgetting, 0.275, "average forgetting");
  close(m.backwardTransfer, -0.275, "BWT");

  // The best accuracy need not be the one right after learning: forgetting ≠ −BWT then; a task
  // that ends better than ever forgets a negative amount.
  const n = forgettingMetrics([
    [0.6, NaN, NaN, NaN],
    [0.8, 0.7, NaN, NaN],
    [0.7, 0.9, 0.8, NaN],
    [0.5, 0.95, 0.7, 0.9],
  ]);
  close(n.forgetting[0], 0.3, "task 0"); // max(0.6, 0.8, 0.7) − 0.5
  close(n.forgetting[1], -0.05, "task 1"); // max(0.7, 0.9) − 0.95
  close(n.forgetting[2], 0.1, "task 2");
  close(n.averageForgetting, 0.35 / 3, "average forgetting");
  close(n.backwardTransfer, (-0.1 + 0.25 - 0.1) / 3, "BWT");
  close(n.averageAccuracy, (0.5 + 0.95 + 0.7 + 0.9) / 4, "average accuracy");

  const one = forgettingMetrics([[0.8]]);
  assert.equal(one.averageAccuracy, 0.8);
  assert.deepEqual(one.forgetting, []);
  assert.ok(Number.isNaN(one.averageForgetting) && Number.isNaN(one.backwardTransfer));
  assert.throws(() => forgettingMetrics([]), /non-empty/);
  assert.throws(() => forgettingMetrics([[0.9, 0.1], [0.5]]), /row 1 has 1 entries, expected 2/);
  assert.throws(() => forgettingMetrics([[0.9, 0], [NaN, 0.5]]), /R\[1\]\[0\] must be a finite number/);
});

Deno.test("taskPermutation and permutePixels", () => {
  assert.deepEqual(Array.from(taskPermutation(0, 5, 3)), [0, 1, 2, 3, 4]);
  const p1 = taskPermutation(1, 784, 3);
  assert.deepEqual(Array.from(p1).sort((a, b) => a - b), Array.from({ length: 784 }, (_, i) => i));
  assert.deepEqual(taskPermutation(1, 784, 3), p1, "a pure function of (task, size, seed)");
  assert.notDeepEqual(taskPermutation(2, 784, 3), p1);
  assert.notDeepEqual(taskPermutation(1, 784, 4), p1);

  const x = new Float32Array([10, 11, 12, 13, 20, 21, 22, 23]);
  const ds = makeDataset(x, new Int32Array([3, 7]), [4], 10);
  const perm = [2, 0, 3, 1];
  const q = permutePixels(ds, perm);
  assert.deepEqual(Array.from(q.x), [12, 10, 13, 11, 22, 20, 23, 21]); // x'[k] = x[perm[k]]
  assert.equal(q.y, ds.y);
  assert.deepEqual(q.inputShape, [4]);
  assert.deepEqual(Array.from(ds.x), [10, 11, 12, 13, 20, 21, 22, 23], "input not mutated");
  assert.deepEqual(Array.from(permutePixels(ds, [0, 1, 2, 3]).x), Array.from(x));
  // Undo with the inverse permutation.
  const inv = new Array(4);
  perm.forEach((p, k) => (inv[p] = k));
  assert.deepEqual(Array.from(permutePixels(q, inv).x), Array.from(x));
  assert.throws(() => permutePixels(ds, [0, 1, 2]), /perm has 3 entries, expected 4/);
  assert.throws(() => permutePixels(ds, [0, 1, 1, 3]), /not a permutation of 0…3 \(entry 2 is 1\)/);
});

Deno.test("forgetting CLI: parsing", () => {
  const d = parseConfig([]);
  if (d === "help") throw new Error("unexpected");
  assert.equal(d.tasks, DEFAULTS.tasks);
  assert.equal(d.epochs, DEFAULTS.epochs);
  assert.deepEqual(d.optimizers.map((o) => o.label), ["sgd", "vsgd"]);
  // The README's table is the default run: three seeds, 4 tasks × 3 epochs.
  assert.deepEqual(d.seeds, [0, 1, 2]);
  assert.deepEqual([d.tasks, d.epochs], [4, 3]);
  const o = parseConfig(["--tasks", "5", "--epochs", "2", "--variability", "0.02", "--seed", "4"]);
  if (o === "help") throw new Error("unexpected");
  assert.equal(o.tasks, 5);
  assert.equal(o.epochs, 2);
  assert.equal(o.variability, 0.02);
  assert.deepEqual(o.seeds, [4]);
  assert.equal(parseConfig(["-h"]), "help");
  assert.throws(() => parseConfig(["--tasks", "1"]), UsageError);
  assert.equal(d.protocol, "permuted");
  assert.equal(d.out, "runs/forgetting");

  // --protocol split: its own defaults (5 tasks, its own folder), the shared options on top.
  const s = parseConfig(["--protocol", "split"]);
  if (s === "help") throw new Error("unexpected");
  assert.deepEqual(s, SPLIT_DEFAULTS);
  assert.deepEqual([s.protocol, s.tasks, s.out], ["split", 5, "runs/forgetting_split"]);
  assert.deepEqual([s.seeds, s.subset, s.testSubset], [[0, 1, 2], 10000, 10000]);
  const s3 = parseConfig(["--tasks", "3", "--protocol=split", "--epochs", "2", "--out", "x"]);
  if (s3 === "help") throw new Error("unexpected");
  assert.deepEqual([s3.protocol, s3.tasks, s3.epochs, s3.out], ["split", 3, 2, "x"]);
  assert.equal((parseConfig(["--protocol", "permuted"]) as typeof d).tasks, 4);
  assert.throws(() => parseConfig(["--protocol", "split", "--tasks", "6"]), UsageError);
  assert.ok((parseConfig(["--tasks", "6"]) as typeof d).tasks === 6, "6 permuted tasks are fine");
  assert.throws(() => parseConfig(["--protocol", "rotated"]), UsageError);
});

Deno.test("split MNIST: the classes of a task and the class filter", () => {
  assert.deepEqual(splitClasses(0), [0, 1]);
  assert.deepEqual(splitClasses(4), [8, 9]);
  assert.throws(() => splitClasses(5), /task must be an integer in \[0, 4\], got 5/);
  assert.throws(() => splitClasses(-1), /got -1/);

  // Six examples of two numbers each; labels 3 1 0 2 1 9.
  const x = new Float32Array([30, 31, 10, 11, 0, 1, 20, 21, 12, 13, 90, 91]);
  const ds = makeDataset(x, new Int32Array([3, 1, 0, 2, 1, 9]), [2], 10);
  const t0 = classSubset(ds, splitClasses(0));
  assert.deepEqual(Array.from(t0.y), [1, 0, 1], "the labels kept as they are, in their order");
  assert.deepEqual(Array.from(t0.x), [10, 11, 0, 1, 12, 13], "the inputs follow their labels");
  assert.equal(t0.numClasses, 10, "one shared head over all classes");
  assert.deepEqual(t0.inputShape, [2]);
  const t1 = classSubset(ds, splitClasses(1));
  assert.deepEqual([Array.from(t1.y), Array.from(t1.x)], [[3, 2], [30, 31, 20, 21]]);
  assert.deepEqual(Array.from(classSubset(ds, splitClasses(2)).y), [], "no example of 4 or 5");
  assert.deepEqual(Array.from(classSubset(ds, [9, 3]).y), [3, 9]);
  assert.deepEqual(Array.from(ds.y), [3, 1, 0, 2, 1, 9], "input not mutated");
  assert.throws(() => classSubset(ds, [10]), /classes must be integers in \[0, 9\], got \[10\]/);
});

Deno.test("split MNIST: class-incremental and task-aware accuracy of a shared head", () => {
  // 4 classes, the task {2, 3}; rows: the logits of one example each.
  const logits = [
    [0, 0, 5, 1], // label 2: right both ways
    [9, 0, 1, 2], // label 3: class 0 wins over all, class 3 within the task → task-aware only
    [9, 0, 2, 1], // label 3: wrong both ways
    [0, 0, 4, 4], // label 2: a tie goes to the lower class, as argmaxRows → right both ways
    [0, 0, 4, 4], // label 3: the same tie → wrong both ways
  ].flat();
  const a = splitAccuracy(logits, [2, 3, 3, 2, 3], 4, [2, 3]);
  assert.equal(a.classIncremental, 2 / 5);
  assert.equal(a.taskAware, 3 / 5);
  assert.deepEqual(splitAccuracy(logits, [2, 3, 3, 2, 3], 4, [3, 2]), a, "the order of the classes is moot");
  const bad = splitAccuracy([0, 0, NaN, 1, 0, 0, 1, 0], [2, 2], 4, [2, 3]);
  assert.ok(Number.isNaN(bad.classIncremental) && Number.isNaN(bad.taskAware), "no score with NaN logits");
  const none = splitAccuracy([], [], 4, [2, 3]);
  assert.ok(Number.isNaN(none.classIncremental) && Number.isNaN(none.taskAware));
  assert.throws(
    () => splitAccuracy([0, 1, 2], [0], 4, [0, 1]),
    /logits has 3 entries, expected 1 labels × 4/,
  );

  // Masking can only help: on random logits, per example, task-aware right wherever the
  // class-incremental prediction is.
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let trial = 0; trial < 200; trial++) {
    const row = Array.from({ length: 10 }, () => Math.floor(rand() * 4)); // ties are common
    const task = Math.floor(rand() * 5), label = splitClasses(task)[Math.floor(rand() * 2)];
    const r = splitAccuracy(row, [label], 10, splitClasses(task));
    assert.ok(r.taskAware >= r.classIncremental, `${row} label ${label}`);
  }
});

Deno.test("forgetting CLI: bad input → one-line error, exit code 2, nothing written", async () => {
  await needRun();
  const tmp = await Deno.makeTempDir({ prefix: "nvrm_fgt_" });
  try {
    const out = `${tmp}/out`;
    const cases: [string[], RegExp][] = [
      [["--tasks", "1"], /--tasks must be an integer in \[2, 1000\], got "1"/],
      [["--tasks", "x"], /--tasks must be an integer in \[2, 1000\], got "x"/],
      [["--epochs", "0"], /--epochs must be a positive integer, got "0"/],
      [["--lr=-1"], /--lr must be a number > 0, got "-1"/],
      [["--lr", "-1"], /lr/],
      [["--noise-law", "cauchy"], /--noise-law must be one of gaussian, laplace, uniform, got "cauchy"/],
      [["--seed", "1", "--seeds", "2"], /give --seeds or --seed, not both/],
      [["--subset", "70000"], /--subset must be an integer in \[1, 60000\], got "70000"/],
      [["--model", "mlp"], /model/], // no --model here: an unknown option
      [["--protocol", "rotated"], /--protocol must be one of permuted, split, got "rotated"/],
      [
        ["--protocol", "split", "--tasks", "6"],
        /--tasks must be an integer in \[2, 5\] with --protocol split, got "6"/,
      ],
      [
        ["--tasks", "1", "--protocol", "split"],
        /--tasks must be an integer in \[2, 5\] with --protocol split, got "1"/,
      ],
      // Checked against the data before anything is written.
      [
        ["--protocol", "split", "--subset", "5"],
        /--subset 5 leaves split task \d \(classes \d,\d\) without training examples for seed 0/,
      ],
      [
        ["--protocol", "split", "--test-subset", "3"],
        /--test-subset 3 leaves split task \d \(classes \d,\d\) without test examples/,
      ],
    ];
    const results = await Promise.all(cases.map(([args]) => runScript([...args, "--out", out])));
    assertUsageErrors(results, cases, /^forgetting: .* \(see --help\)$/);
    assert.deepEqual([...Deno.readDirSync(tmp)], []);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("forgetting CLI: a tiny run (2 tasks) writes R per run, curves, summary and plot", async () => {
  await needRun();
  const tmp = await Deno.makeTempDir({ prefix: "nvrm_fgt_" });
  try {
    const out = `${tmp}/out`;
    const r = await runScript([
      "--subset",
      "256",
      "--epochs",
      "1",
      "--tasks",
      "2",
      "--test-subset",
      "200",
      "--seeds",
      "0",
      "--out",
      out,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    const names = [...Deno.readDirSync(out)].map((e) => e.name).sort();
    assert.deepEqual(names, [
      "checkpoints",
      "config.json",
      "curves.csv",
      "sgd_seed0.csv",
      "summary.csv",
      "task0.svg",
      "vsgd_seed0.csv",
    ]);
    // One checkpoint per run: the newest (the end of the last task).
    for (const run of ["sgd_seed0", "vsgd_seed0"]) {
      assert.equal(Deno.readTextFileSync(`${out}/checkpoints/${run}/latest`), "epoch-0002.safetensors\n");
    }
    const R = (await Deno.readTextFile(`${out}/sgd_seed0.csv`)).trimEnd().split("\n");
    assert.deepEqual(R[0].split(","), ["optimizer", "seed", "after_task", "epoch", "acc_task0", "acc_task1"]);
    assert.equal(R.length, 3);
    assert.match(R[2], /^sgd,0,1,2,/);
    const curves = (await Deno.readTextFile(`${out}/curves.csv`)).trimEnd().split("\n");
    assert.equal(curves.length, 1 + 2 * 2); // 2 optimizers × 2 epochs
    const summary = (await Deno.readTextFile(`${out}/summary.csv`)).trimEnd().split("\n");
    assert.equal(summary.length, 3);
    assert.match(summary[0], /^optimizer,seeds,avg_final_acc,/);
    const svg = await Deno.readTextFile(`${out}/task0.svg`);
    assert.match(svg, /^<svg /);
    assert.match(r.stdout, /avg forgetting/);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

/** A tiny split-MNIST run: 3 tasks of about 120 training examples. */
const SPLIT_RUN = [
  "--protocol",
  "split",
  "--subset",
  "600",
  "--test-subset",
  "500",
  "--tasks",
  "3",
  "--seeds",
  "0",
];

/** The rows of a CSV file as cells, without the columns named in `drop`. */
function csvRows(path: string, drop: readonly string[] = []): string[][] {
  const [head, ...rows] = Deno.readTextFileSync(path).trimEnd().split("\n").map((l) => l.split(","));
  const keep = head.map((c, i) => (drop.includes(c) ? -1 : i)).filter((i) => i >= 0);
  return [head, ...rows].map((r) => keep.map((i) => r[i]));
}

Deno.test("forgetting CLI: a tiny split-MNIST run writes class-incremental and task-aware R, curves, summary, plot", async () => {
  await needRun();
  const tmp = await Deno.makeTempDir({ prefix: "nvrm_fgt_split_" });
  try {
    const out = `${tmp}/out`;
    const r = await runScript([...SPLIT_RUN, "--epochs", "1", "--out", out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    assert.deepEqual([...Deno.readDirSync(out)].map((e) => e.name).sort(), [
      "checkpoints",
      "config.json",
      "curves.csv",
      "sgd_seed0.csv",
      "summary.csv",
      "task0.svg",
      "vsgd_seed0.csv",
    ]);
    assert.equal(JSON.parse(Deno.readTextFileSync(`${out}/config.json`)).config.protocol, "split");
    for (const run of ["sgd", "vsgd"]) {
      const [head, ...rows] = csvRows(`${out}/${run}_seed0.csv`);
      assert.deepEqual(head, [
        "optimizer",
        "seed",
        "after_task",
        "epoch",
        "acc_task0",
        "acc_task1",
        "acc_task2",
        "task_aware_acc_task0",
        "task_aware_acc_task1",
        "task_aware_acc_task2",
      ]);
      assert.deepEqual(rows.map((c) => c.slice(0, 4)), [[run, "0", "0", "1"], [run, "0", "1", "2"], [
        run,
        "0",
        "2",
        "3",
      ]]);
      for (const row of rows) {
        const ci = row.slice(4, 7).map(Number), ta = row.slice(7).map(Number);
        for (const a of [...ci, ...ta]) assert.ok(a >= 0 && a <= 1, `${run}: accuracy ${a} in [0, 1]`);
        ci.forEach((a, j) => assert.ok(ta[j] >= a, `${run} task ${j}: task-aware ${ta[j]} ≥ ${a}`));
      }
    }
    const curves = csvRows(`${out}/curves.csv`);
    assert.deepEqual(curves[0], [
      "optimizer",
      "seed",
      "epoch",
      "task",
      "lr",
      "batch_loss",
      "task0_test_acc",
      "task0_test_loss",
    ]);
    assert.equal(curves.length, 1 + 2 * 3); // 2 optimizers × 3 tasks × 1 epoch
    const summary = csvRows(`${out}/summary.csv`);
    assert.deepEqual(summary[0], [
      "optimizer",
      "seeds",
      "avg_final_acc",
      "avg_final_acc_sd",
      "avg_forgetting",
      "avg_forgetting_sd",
      "bwt",
      "bwt_sd",
      "learning_acc",
      "learning_acc_sd",
      "task0_final",
      "task0_final_sd",
      "task_aware_acc",
      "task_aware_acc_sd",
      "task_aware_forgetting",
      "task_aware_forgetting_sd",
      "seconds_per_run",
    ]);
    assert.deepEqual(summary.map((row) => row[0]), ["optimizer", "sgd", "vsgd"]);
    for (const row of summary.slice(1)) {
      assert.ok(Number(row[12]) >= Number(row[2]), `task-aware ≥ class-incremental average accuracy: ${row}`);
    }
    assert.match(await Deno.readTextFile(`${out}/task0.svg`), /Split MNIST, 3 tasks of 2 classes/);
    assert.match(r.stdout, /^Split MNIST, 3 tasks of 2 classes in sequence/m);
    assert.match(r.stdout, /^Task-aware accuracy \(vsgd, mean ± sd over 1 seed\):/m);
    assert.match(r.stdout, /task-aware forgetting/);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

/**
 * Starts the script with `args` into `out`, sends Ctrl-C (SIGINT) once curves.csv has `rows`
 * epochs, and resolves with its exit code and stderr.
 */
async function interruptAfter(args: readonly string[], out: string, rows: number) {
  const script = new URL("../examples/forgetting.ts", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-check", "--allow-read", "--allow-write", script, ...args, "--out", out],
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const deadline = Date.now() + 60_000;
  let seen = 0;
  while (seen < rows && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10));
    try {
      seen = Deno.readTextFileSync(`${out}/curves.csv`).split("\n").length - 2;
    } catch { /* not created yet */ }
  }
  child.kill("SIGINT");
  const r = await child.output();
  return { code: r.code, stderr: new TextDecoder().decode(r.stderr) };
}

Deno.test("forgetting CLI: a split-MNIST run stopped by Ctrl-C and --resume'd equals the run in one piece", async () => {
  await needRun();
  const tmp = await Deno.makeTempDir({ prefix: "nvrm_fgt_resume_" });
  // 2 optimizers × 3 tasks × 3 epochs: 18 epochs of about 240 examples. The first stop usually
  // falls inside task 0 (epoch 2), the second on its end (epoch 3: the next task has another
  // training-set size); either way the resumed run must be the run in one piece.
  const args = SPLIT_RUN.map((a) => (a === "600" ? "1200" : a)).concat("--epochs", "3");
  try {
    const [whole, ...stops] = await Promise.all([
      runScript([...args, "--out", `${tmp}/whole`]),
      interruptAfter(args, `${tmp}/stop1`, 1),
      interruptAfter(args, `${tmp}/stop2`, 3),
    ]);
    assert.equal(whole.code, 0, whole.stderr);
    for (const [k, stop] of stops.entries()) {
      const dir = `${tmp}/stop${k + 1}`;
      assert.equal(stop.code, 130, stop.stderr);
      const partial = csvRows(`${dir}/curves.csv`).length - 1;
      assert.ok(partial >= 1 && partial < 18, `stopped after ${partial} of 18 epochs`);
      const resumed = await runScript(["--resume", dir]);
      assert.equal(resumed.code, 0, resumed.stderr);
      for (const file of ["sgd_seed0.csv", "vsgd_seed0.csv", "curves.csv"]) {
        assert.deepEqual(csvRows(`${dir}/${file}`), csvRows(`${tmp}/whole/${file}`), `${dir}/${file}`);
      }
      assert.deepEqual(
        csvRows(`${dir}/summary.csv`, ["seconds_per_run"]),
        csvRows(`${tmp}/whole/summary.csv`, ["seconds_per_run"]),
      );
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
