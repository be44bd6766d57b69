import assert from "node:assert/strict";
import {
  baseOf,
  CELL_COLUMNS,
  cellFile,
  cellsOf,
  CO_TEACHING_SETTINGS,
  DEFAULTS,
  parseConfig,
  parseSettings,
  settingName,
  UsageError,
} from "../examples/sweep.ts";
import {
  commandLine,
  defaultNumIters,
  makeOptimizer,
  parseOptimizers,
  readCsv,
} from "../examples/_common.ts";
import { assertUsageErrors, exists, needRun, scriptRunner } from "./_examples.ts";

const runScript = scriptRunner("sweep");

Deno.test("sweep CLI: defaults are the Co-teaching settings, both datasets, both pairs, 3 seeds", () => {
  const c = parseConfig([]);
  if (c === "help") throw new Error("unexpected help");
  assert.deepEqual(c.datasets, ["mnist", "fashion"]);
  assert.deepEqual(c.settings.map(settingName), [
    "pairflip20",
    "pairflip45",
    "symmetric20",
    "symmetric50",
    "symmetric80",
  ]);
  assert.deepEqual(c.settings, CO_TEACHING_SETTINGS);
  assert.deepEqual(c.optimizers.map((o) => o.label), ["sgd", "vsgd", "adam_lr0.001", "vadam_lr0.001"]);
  assert.deepEqual(c.seeds, [0, 1, 2]);
  // The main demo's protocol.
  assert.equal(c.subset, 10000);
  assert.equal(c.epochs, 30);
  assert.deepEqual(c.lrDecayEpochs, [20, 25]);
  assert.equal(cellsOf(c).length, 2 * 5 * 4 * 3);
  assert.equal(DEFAULTS.out, "runs/sweep");

  const n = parseConfig([
    "--datasets",
    "fashion",
    "--settings",
    "symmetric:0.8",
    "--seeds",
    "4",
    "--epochs",
    "2",
  ]);
  if (n === "help") throw new Error("unexpected help");
  assert.deepEqual(cellsOf(n).map(cellFile), [
    "cells/fashion_symmetric80_sgd_seed4.csv",
    "cells/fashion_symmetric80_vsgd_seed4.csv",
    "cells/fashion_symmetric80_adam_lr0.001_seed4.csv",
    "cells/fashion_symmetric80_vadam_lr0.001_seed4.csv",
  ]);
});

Deno.test("sweep: a variable optimizer is compared with its base at the same lr", () => {
  const all = parseOptimizers("sgd,vsgd,adam:0.001,vadam:0.001,vadam:0.01,antipgd");
  const label = (i: number) => baseOf(all[i], all);
  assert.equal(label(0), undefined);
  assert.equal(label(1), "sgd");
  assert.equal(label(3), "adam_lr0.001");
  assert.equal(label(4), undefined, "no adam at lr 0.01");
  assert.equal(label(5), undefined);
  assert.deepEqual(parseSettings("pairflip:0.45, symmetric:0"), [
    { kind: "pairflip", rate: 0.45 },
    { kind: "symmetric", rate: 0 },
  ]);
  for (
    const bad of ["pairflip", "pairflip:1", "flip:0.2", "pairflip:0.2:1", "symmetric:0.5,symmetric:0.50"]
  ) {
    assert.throws(() => parseSettings(bad), UsageError, bad);
  }
});

Deno.test("sweep CLI: bad flags exit 2 with one line and nothing written", async () => {
  await needRun();
  const tmp = await Deno.makeTempDir({ prefix: "nvrm_sweep_bad_" });
  try {
    const out = `${tmp}/out`;
    const cases: [string[], RegExp][] = [
      [["--datasets", "cifar10"], /--datasets must be one of mnist, fashion, got "cifar10"/],
      [["--datasets", "mnist,mnist"], /--datasets lists a dataset twice/],
      [["--settings", "symmetric:1.5"], /--settings must be a rate in \[0, 1\) after ':', got "1.5"/],
      [["--settings", "uniform:0.2"], /--settings must be one of pairflip, symmetric, got "uniform"/],
      [["--settings", "pairflip"], /--settings entry must be KIND:RATE/],
      [["--model", "resnet18"], /--model must be one of mlp, lenet, cnn, got "resnet18"/],
      [["--optimizers", "sgd,nadam"], /unknown optimizer "nadam"/],
      [["--seeds", "0,0"], /--seeds lists a seed twice/],
      [["--checkpoint-every", "2"], /the sweep keeps no checkpoints/],
      [["--epochs", "0"], /--epochs must be a positive integer, got "0"/],
      [["--lr-decay-epochs", "5,3"], /--lr-decay-epochs must increase/],
      [["--num-iters", "1"], /--num-iters 1 leaves vsgd without weight noise .*give --num-iters N >= 2/],
      [["--bogus"], /Unknown option '--bogus'/],
    ];
    const runs = [];
    for (const [args] of cases) runs.push(await runScript([...args, "--out", out]));
    assertUsageErrors(runs, cases, /^sweep: /);
    assert.equal(await exists(out), false, "no output folder on bad input");
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("sweep: a tiny sweep end to end; --resume runs only the missing cells, the others stay byte for byte", async () => {
  await needRun();
  const tmp = await Deno.makeTempDir({ prefix: "nvrm_sweep_" });
  try {
    const out = `${tmp}/sweep`;
    const args = [
      "--settings",
      "pairflip:0.45,symmetric:0.5",
      "--optimizers",
      "sgd,vsgd",
      "--seeds",
      "0,1",
      "--subset",
      "300",
      "--test-subset",
      "200",
      "--epochs",
      "2",
      "--lr-decay-epochs",
      "1",
      "--out",
      out,
    ];
    const first = await runScript(args);
    assert.equal(first.code, 0, first.stderr);
    assert.match(
      first.stdout,
      /16 cells \(2 datasets × 2 noise settings × 2 optimizers × 2 seeds\): 0 done, 16 to run/,
    );
    const c = parseConfig(args);
    if (c === "help") throw new Error("unexpected help");
    const files = cellsOf(c).map(cellFile);
    for (const f of files) {
      const rows = readCsv(`${out}/${f}`);
      assert.equal(rows.length, 2, `${f}: one row per epoch`);
      assert.deepEqual(Object.keys(rows[0]), [...CELL_COLUMNS], f);
      for (const r of rows) {
        assert.equal(r.status, "ok");
        for (const k of ["test_acc", "train_acc", "memorization", "flipped_correct"]) {
          const v = Number(r[k]);
          assert.ok(v >= 0 && v <= 1, `${f} ${k} = ${r[k]}`);
        }
      }
      assert.deepEqual(rows.map((r) => r.lr), ["0.1", "0.01"], `${f}: the lr decays after epoch 1`);
    }
    // The summary: one row per (dataset, setting, optimizer); vsgd rows carry the paired Δ.
    const summary = readCsv(`${out}/summary.csv`);
    assert.equal(summary.length, 2 * 2 * 2);
    for (const r of summary) {
      assert.equal(r.seeds, "0 1");
      assert.equal(r.delta_final_test_acc_vs_base === "", r.optimizer === "sgd", JSON.stringify(r));
      // Every figure of the summary is the mean of its cells' final epochs.
      const finals = [0, 1].map((seed) =>
        Number(
          readCsv(
            `${out}/cells/${r.dataset}_${r.noise}${Number(r.rate) * 100}_${r.optimizer}_seed${seed}.csv`,
          )[1].test_acc,
        )
      );
      assert.ok(Math.abs(Number(r.final_test_acc) - (finals[0] + finals[1]) / 2) < 1e-6, JSON.stringify(r));
    }
    const md = await Deno.readTextFile(`${out}/summary.md`);
    assert.match(md, /### Final test accuracy/);
    assert.match(md, /\| MNIST \| pairflip45 \| /);
    assert.match(md, /\| Fashion-MNIST \| symmetric50 \| /);
    const svg = await Deno.readTextFile(`${out}/sweep.svg`);
    assert.match(svg, /^<svg /);
    assert.equal(
      svg.match(/<polyline /g)?.length,
      4 * 2 * 2,
      "test accuracy and memorization per optimizer in each of the 4 panels",
    );

    // Resume: delete two cells; only they run again, every other cell file is untouched.
    const before = new Map(files.map((f) => [f, Deno.readTextFileSync(`${out}/${f}`)]));
    const mtimes = new Map(files.map((f) => [f, Deno.statSync(`${out}/${f}`).mtime!.getTime()]));
    await Deno.remove(`${out}/${files[3]}`);
    await Deno.writeTextFile(`${out}/${files[5]}`, CELL_COLUMNS.join(",") + "\n"); // a cell cut short
    const again = await runScript(["--resume", out]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /16 cells .*: 14 done, 2 to run/);
    assert.equal(again.stdout.match(/^\[\d+\/2\] /gm)?.length, 2, again.stdout);
    for (const f of files) {
      if (f === files[3] || f === files[5]) {
        // The same seed gives the same run: the rerun cell equals the first one (timings aside).
        const strip = (t: string) => t.split("\n").map((l) => l.split(",").slice(0, -3).join(",")).join("\n");
        assert.equal(strip(Deno.readTextFileSync(`${out}/${f}`)), strip(before.get(f)!), f);
      } else {
        assert.equal(Deno.statSync(`${out}/${f}`).mtime!.getTime(), mtimes.get(f), `${f} was rewritten`);
      }
    }
    assert.deepEqual(
      readCsv(`${out}/summary.csv`).map((r) => r.final_test_acc),
      summary.map((r) => r.final_test_acc),
    );

    // The same command again (no --resume) continues too: nothing to run, nothing rewritten.
    const same = await runScript(args);
    assert.equal(same.code, 0, same.stderr);
    assert.match(same.stdout, /holds a run of this configuration: continuing it \(--overwrite starts over\)/);
    assert.match(same.stdout, /16 cells .*: 16 done, 0 to run/);
    assert.equal(Deno.statSync(`${out}/${files[0]}`).mtime!.getTime(), mtimes.get(files[0]));

    // Another configuration in the same folder: refused unless --overwrite, which starts over.
    const other = await runScript([...args.slice(0, -2), "--epochs", "1", "--out", out]);
    assert.equal(other.code, 2);
    assert.match(other.stderr, /holds the results of another configuration \(epochs is 2 there, 1 now\)/);
    const over = await runScript([
      ...args.slice(0, -2),
      "--epochs",
      "1",
      "--datasets",
      "mnist",
      "--out",
      out,
      "--overwrite",
    ]);
    assert.equal(over.code, 0, over.stderr);
    assert.equal([...Deno.readDirSync(`${out}/cells`)].length, 8, "the old cells are gone");
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("scripts: the echoed command line is a shell command; a variable optimizer always gets noise", () => {
  assert.equal(
    commandLine("sweep", ["--lr-decay-epochs", "", "--out", "my runs/it's", "--seeds", "0,1"]),
    `deno run --allow-read --allow-write examples/sweep.ts --lr-decay-epochs '' --out 'my runs/it'\\''s' --seeds 0,1`,
  );
  // One step per epoch: the default reset period is 2 steps, not 1 (which would mean no noise at all).
  assert.equal(defaultNumIters(1), 2);
  assert.equal(defaultNumIters(79), 79);
  const c = parseConfig(["--num-iters", "3"]);
  if (c === "help") throw new Error("unexpected help");
  assert.throws(
    () => makeOptimizer(c.optimizers[1], { ...c, numIters: 1 }, 1, 0),
    /--num-iters 1 leaves vsgd without weight noise/,
  );
});
