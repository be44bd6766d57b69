import assert from "node:assert/strict";
import { DEMO_DEFAULTS, parseConfig, UsageError } from "../examples/label_noise.ts";
import { learningCurvesSvg } from "../examples/svg_plot.ts";

const SCRIPT = new URL("../examples/label_noise.ts", import.meta.url).pathname;

async function runScript(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-check", "--allow-read", "--allow-write", SCRIPT, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("label_noise CLI: bad input → one-line error, exit code 2, nothing written", async () => {
  if ((await Deno.permissions.query({ name: "run" })).state !== "granted") {
    throw new Error("this test runs the script as a subprocess: run the tests with --allow-run");
  }
  const tmp = await Deno.makeTempDir({ prefix: "nvrm_cli_" });
  try {
    const out = `${tmp}/out`;
    const file = `${tmp}/a_file`;
    await Deno.writeTextFile(file, "not a folder");
    const cases: [string[], RegExp][] = [
      [
        ["--optimizers", "sgd,rmsprop"],
        /unknown optimizer "rmsprop", expected one of sgd, vsgd, adam, vadam, antipgd/,
      ],
      [["--rate", "1"], /--rate must be a number in \[0, 1\), got "1"/],
      [["--rate", "1.5"], /--rate must be a number in \[0, 1\), got "1.5"/],
      [["--epochs=-3"], /--epochs must be a positive integer, got "-3"/],
      [["--epochs", "-3"], /epochs/],
      [["--epochs", "2.5"], /--epochs must be a positive integer, got "2.5"/],
      [["--model", "resnet"], /--model must be one of mlp, cnn, got "resnet"/],
      [["--bogus"], /bogus/],
      [["--backend", "tpu"], /--backend must be one of cpu, webgpu, auto, got "tpu"/],
    ];
    const results = await Promise.all(cases.map(([args]) => runScript([...args, "--out", out])));
    results.push(await runScript(["--out", `${file}/sub`, "--epochs", "1"]));
    cases.push([[], /--out ".*a_file\/sub" is not a writable folder/]);
    results.forEach((r, i) => {
      const what = JSON.stringify(cases[i][0]);
      assert.equal(r.code, 2, `${what}: exit code ${r.code}, stderr ${r.stderr}`);
      const lines = r.stderr.trimEnd().split("\n");
      assert.equal(lines.length, 1, `${what}: expected one line, got ${JSON.stringify(r.stderr)}`);
      assert.match(lines[0], /^label_noise: /, what);
      assert.match(lines[0], cases[i][1], what);
      assert.equal(r.stdout, "", what);
    });
    assert.equal(await exists(out), false, "the output folder must not be created on bad input");
    assert.deepEqual([...Deno.readDirSync(tmp)].map((e) => e.name), ["a_file"]);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("label_noise CLI: parsing, --full preset and overrides", () => {
  const d = parseConfig([]);
  assert.notEqual(d, "help");
  if (d === "help") return;
  assert.deepEqual(d.optimizers.map((o) => o.name), ["sgd", "vsgd"]);
  assert.equal(d.epochs, DEMO_DEFAULTS.epochs);
  const f = parseConfig(["--full"]);
  if (f === "help") throw new Error("unexpected");
  assert.equal(f.epochs, 40);
  assert.equal(f.subset, 60000);
  assert.equal(f.batchSize, 128);
  assert.equal(f.lr, 0.1);
  assert.deepEqual(f.lrDecayEpochs, [20, 30]);
  assert.equal(f.lrDecayFactor, 0.1);
  assert.equal(f.variability, 0.05);
  assert.equal(f.labelNoise, "pairflip");
  assert.equal(f.rate, 0.4);
  assert.equal(f.model, "mlp");
  assert.equal(f.numIters, undefined); // ceil(N / batch) at run time
  const o = parseConfig([
    "--full",
    "--epochs",
    "3",
    "--optimizers",
    "sgd,vadam:0.001",
    "--seeds",
    "1,2,3",
    "--noise",
    "symmetric",
  ]);
  if (o === "help") throw new Error("unexpected");
  assert.equal(o.epochs, 3);
  assert.deepEqual(o.optimizers, [{ name: "sgd", lr: undefined, label: "sgd" }, {
    name: "vadam",
    lr: 0.001,
    label: "vadam_lr0.001",
  }]);
  assert.deepEqual(o.seeds, [1, 2, 3]);
  assert.equal(o.labelNoise, "symmetric");
  assert.equal(parseConfig(["-h"]), "help");
  assert.throws(() => parseConfig(["--optimizers", "sgd,sgd"]), UsageError);
  assert.throws(() => parseConfig(["--lr-decay-epochs", "30,20"]), /--lr-decay-epochs must increase/);
  assert.throws(
    () => parseConfig(["--subset", "70000"]),
    /--subset must be an integer in \[1, 60000\], got "70000"/,
  );
  assert.throws(() => parseConfig(["positional"]), UsageError);
});

Deno.test("learningCurvesSvg: a well-formed document with one polyline per curve", () => {
  const svg = learningCurvesSvg(
    [
      {
        name: "sgd",
        epochs: [1, 2, 3],
        testAccuracy: [0.5, 0.6, 0.55],
        trainAccuracy: [0.4, 0.5, 0.7],
        memorization: [0.1, 0.3, 0.6],
        flippedCorrect: [0.5, 0.4, 0.2],
      },
      {
        name: "v<sgd>",
        epochs: [1, 2, 3],
        testAccuracy: [0.5, 0.7, 0.8],
        trainAccuracy: [0.4, 0.5, 0.55],
        memorization: [0.1, NaN, 0.1],
        flippedCorrect: [0.5, 0.6, 0.7],
      },
    ],
    "title & more",
  );
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.match(svg, /<\/svg>\n$/);
  assert.equal((svg.match(/<polyline /g) ?? []).length, 8);
  assert.ok(svg.includes("title &amp; more"));
  assert.ok(svg.includes("v&lt;sgd&gt;"));
  assert.ok(!svg.includes("NaN"));
});
