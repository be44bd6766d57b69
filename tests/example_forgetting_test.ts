import assert from "node:assert/strict";
import { makeDataset } from "../src/data/mod.ts";
import { forgettingMetrics } from "../src/train/metrics.ts";
import { DEFAULTS, parseConfig, permutePixels, taskPermutation, UsageError } from "../examples/forgetting.ts";
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
