import assert from "node:assert/strict";
import { tensor, zeros } from "../src/creation.ts";
import { treeLeaves } from "../src/tree.ts";
import { DEFAULTS, parseConfig, perturbParams, UsageError } from "../examples/robustness.ts";
import { lineChartSvg } from "../examples/svg_plot.ts";
import { assertUsageErrors, needRun, scriptRunner } from "./_examples.ts";

const runScript = scriptRunner("robustness");

function stats(xs: ArrayLike<number>): { mean: number; std: number } {
  let m = 0;
  for (let i = 0; i < xs.length; i++) m += xs[i];
  m /= xs.length;
  let v = 0;
  for (let i = 0; i < xs.length; i++) v += (xs[i] - m) ** 2;
  return { mean: m, std: Math.sqrt(v / (xs.length - 1)) };
}

Deno.test("perturbParams: s = 0 is the identity; the noise has std s, mean 0, fresh streams", async () => {
  const base = { w: zeros([200, 300]), b: zeros([300]), layers: [tensor([1, 2, 3])] };
  const before = await base.layers[0].data();
  // s = 0: the very same tree, untouched.
  assert.equal(perturbParams(base, 0, { seed: 0, draw: 0 }), base);

  const p = perturbParams(base, 0.1, { seed: 7, draw: 0 });
  const w = await p.w.data(), b = await p.b.data();
  assert.deepEqual(p.w.shape, [200, 300]);
  assert.equal(p.w.dtype, "float32");
  const sw = stats(w);
  assert.ok(Math.abs(sw.std - 0.1) < 0.002, `std ${sw.std}, expected 0.1`);
  assert.ok(Math.abs(sw.mean) < 0.002, `mean ${sw.mean}, expected 0`);
  assert.ok(Math.abs(stats(b).std - 0.1) < 0.02);
  // Inputs are not mutated.
  assert.deepEqual(await base.layers[0].data(), before);
  assert.ok((await base.w.data()).every((v) => v === 0));
  // Reproducible; another draw, another seed or another leaf gives other numbers.
  const again = await perturbParams(base, 0.1, { seed: 7, draw: 0 }).w.data();
  assert.deepEqual(again, w);
  const draw1 = await perturbParams(base, 0.1, { seed: 7, draw: 1 }).w.data();
  const seed8 = await perturbParams(base, 0.1, { seed: 8, draw: 0 }).w.data();
  assert.notDeepEqual(draw1, w);
  assert.notDeepEqual(seed8, w);
  assert.notDeepEqual(b, w.subarray(0, 300)); // distinct streams per parameter path
  // Draw d at scale 2s is 2 × draw d at scale s (common random numbers across the grid).
  const w2 = await perturbParams(base, 0.2, { seed: 7, draw: 0 }).w.data();
  for (let i = 0; i < 1000; i++) assert.ok(Math.abs(w2[i] - 2 * w[i]) <= 1e-6 * (1 + Math.abs(w2[i])));
  // Values are added to the weights.
  const l = await p.layers[0].data();
  const l0 = await perturbParams({ layers: [zeros([3])] }, 0.1, { seed: 7, draw: 0 }).layers[0].data();
  for (let i = 0; i < 3; i++) assert.ok(Math.abs(l[i] - (before[i] + l0[i])) < 1e-6);
  assert.equal(treeLeaves(p).length, 3);
  assert.throws(
    () => perturbParams(base, -1, { seed: 0, draw: 0 }),
    /s must be a finite number >= 0, got -1/,
  );
  assert.throws(
    () => perturbParams(base, 0.1, { seed: 0, draw: 1.5 }),
    /draw must be a non-negative integer/,
  );
});

Deno.test("robustness CLI: parsing", () => {
  const d = parseConfig([]);
  if (d === "help") throw new Error("unexpected");
  assert.deepEqual(d.sigmas, DEFAULTS.sigmas);
  assert.deepEqual(d.optimizers.map((o) => o.label), ["sgd", "vsgd"]);
  assert.equal(d.variability, 0.05);
  // The README's table is the default run: three seeds, 10 epochs on a 10k subset.
  assert.deepEqual(d.seeds, [0, 1, 2]);
  assert.equal(d.epochs, 10);
  assert.equal(d.subset, 10000);
  const o = parseConfig([
    "--sigmas",
    "0,0.1",
    "--draws",
    "3",
    "--seeds",
    "1,2",
    "--optimizers",
    "sgd,vadam:0.001",
  ]);
  if (o === "help") throw new Error("unexpected");
  assert.deepEqual(o.sigmas, [0, 0.1]);
  assert.equal(o.draws, 3);
  assert.deepEqual(o.seeds, [1, 2]);
  assert.equal(o.optimizers[1].label, "vadam_lr0.001");
  assert.deepEqual(DEFAULTS.seeds, [0, 1, 2], "parsing must not change the defaults");
  assert.equal(parseConfig(["--help"]), "help");
  assert.throws(() => parseConfig(["--sigmas", ""]), UsageError);
});

Deno.test("robustness CLI: bad input → one-line error, exit code 2, nothing written", async () => {
  await needRun();
  const tmp = await Deno.makeTempDir({ prefix: "nvrm_rob_" });
  try {
    const out = `${tmp}/out`;
    const file = `${tmp}/a_file`;
    await Deno.writeTextFile(file, "x");
    const cases: [string[], RegExp][] = [
      [["--sigmas", "0.1,0.05"], /--sigmas must increase, got 0\.1,0\.05/],
      [["--sigmas", "0,-1"], /--sigmas must be a list of numbers >= 0, got "-1"/],
      [["--draws", "0"], /--draws must be a positive integer, got "0"/],
      [["--optimizers", "sgd,rmsprop"], /unknown optimizer "rmsprop"/],
      [["--epochs", "2.5"], /--epochs must be a positive integer, got "2.5"/],
      [["--model", "resnet"], /--model must be one of mlp, cnn, got "resnet"/],
      [["--seeds", "1,1"], /--seeds lists a seed twice/],
      [["--bogus"], /bogus/],
      [["positional"], /positional/],
      [["--out", `${file}/sub`], /--out ".*a_file\/sub" is not a writable folder/],
    ];
    const results = await Promise.all(
      cases.map(([args]) => runScript(args.includes("--out") ? args : [...args, "--out", out])),
    );
    assertUsageErrors(results, cases, /^robustness: .* \(see --help\)$/);
    assert.deepEqual([...Deno.readDirSync(tmp)].map((e) => e.name), ["a_file"]);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("robustness CLI: a tiny run writes its CSVs, summary and plot", async () => {
  await needRun();
  const tmp = await Deno.makeTempDir({ prefix: "nvrm_rob_" });
  try {
    const out = `${tmp}/out`;
    const args = ["--subset", "256", "--epochs", "1", "--test-subset", "200", "--sigmas", "0,0.05"];
    const r = await runScript([...args, "--draws", "2", "--seeds", "0,1", "--out", out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    const names = [...Deno.readDirSync(out)].map((e) => e.name).sort();
    assert.deepEqual(names, [
      "checkpoints",
      "config.json",
      "curves.csv",
      "robustness.svg",
      "sgd_seed0.csv",
      "sgd_seed1.csv",
      "summary.csv",
      "vsgd_seed0.csv",
      "vsgd_seed1.csv",
    ]);
    const csv = (await Deno.readTextFile(`${out}/vsgd_seed1.csv`)).trimEnd().split("\n");
    assert.equal(csv.length, 3);
    assert.match(csv[0], /^optimizer,seed,s,draws,mean_acc,sd_acc,/);
    assert.match(csv[1], /^vsgd,1,0,1,/);
    assert.match(csv[2], /^vsgd,1,0\.05,2,/);
    const acc = Number(csv[2].split(",")[4]);
    assert.ok(acc >= 0 && acc <= 1);
    const curves = (await Deno.readTextFile(`${out}/curves.csv`)).trimEnd().split("\n");
    assert.equal(curves[0], "optimizer,seed,epoch,step,lr,batch_loss,test_loss,test_acc");
    assert.deepEqual(curves.slice(1).map((l) => l.split(",").slice(0, 3).join(",")), [
      "sgd,0,1",
      "vsgd,0,1",
      "sgd,1,1",
      "vsgd,1,1",
    ]);
    const summary = (await Deno.readTextFile(`${out}/summary.csv`)).trimEnd().split("\n");
    assert.equal(summary.length, 1 + 2 * 2);
    assert.match(summary[2], /^vsgd,0,0 1,/);
    const svg = await Deno.readTextFile(`${out}/robustness.svg`);
    assert.match(svg, /^<svg /);
    assert.equal((svg.match(/<polyline /g) ?? []).length, 2);
    assert.match(r.stdout, /vsgd − sgd/);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("lineChartSvg: well-formed, escaped, NaN points left out", () => {
  const svg = lineChartSvg(
    [
      { name: "a<b", x: [0, 0.1, 0.2], y: [0.9, NaN, 0.5], yErr: [0, 0.1, 0.05] },
      { name: "c", x: [0, 0.1, 0.2], y: [0.8, 0.7, 0.6], dashed: true },
    ],
    { title: "t & u", xLabel: "s", yLabel: "acc", xTicks: [0, 0.1, 0.2], vLines: [0.15] },
  );
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.match(svg, /<\/svg>\n$/);
  assert.equal((svg.match(/<polyline /g) ?? []).length, 2);
  assert.ok(svg.includes("a&lt;b") && svg.includes("t &amp; u"));
  assert.ok(!svg.includes("NaN"));
});
