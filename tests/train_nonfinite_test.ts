/**
 * The non-finite guard of `fit` (`onNonFinite`): "stop" throws a NonFiniteError naming the epoch,
 * the step and the first non-finite update's path, with the last finite weights; "skip-step" drops
 * exactly the divergent steps; "ignore" keeps the old behaviour. On the CPU and, when an adapter is
 * present, on WebGPU (where the check is read back once per epoch). Also the label-noise demo with
 * `--lr 1e6`: one line naming the step, exit code 1, within the first epoch.
 */
import assert from "node:assert/strict";
import { dispose, fit, mul, NonFiniteError, type Tensor, toDevice, zerosLike } from "../mod.ts";
import { setDefaultDeviceSync } from "../src/backend.ts";
import { type TensorTree, treeLeaves, zipTrees } from "../src/tree.ts";
import { mlp } from "../src/nn/mod.ts";
import { type Dataset, makeDataset, permutation } from "../src/data/mod.ts";
import type { LoopOptimizer } from "../src/train/mod.ts";
import { exists, needRun, scriptRunner } from "./_examples.ts";
import { webgpuSuite } from "./_webgpu.ts";

type State = { step: number };

/**
 * Plain SGD whose update of leaf `poisonPath` is NaN (mode "nan") or whose whole step is a no-op
 * (mode "zero": zero updates, state not advanced) at the 1-based update calls in `poisonSteps`. Records a
 * host copy of the params each update sees when `record` (CPU only).
 */
function poisonedSgd(
  lr: number,
  poisonSteps: number[],
  poisonPath: string,
  mode: "nan" | "zero",
  record = false,
): LoopOptimizer<State> & { seen: Float32Array[][] } {
  const seen: Float32Array[][] = [];
  let calls = 0; // counts update calls: a skipped step does not advance the state
  return {
    seen,
    init: () => ({ step: 0 }),
    update(grads: TensorTree, state: State, params: TensorTree) {
      if (record) seen.push(treeLeaves(params).map((l) => Float32Array.from(l.tensor.dataSync())));
      const poisoned = poisonSteps.includes(++calls);
      if (poisoned && mode === "zero") {
        return { updates: zipTrees([grads], ([g]) => zerosLike(g)), state };
      }
      if (poisoned) assert.ok(treeLeaves(grads).some((l) => l.path === poisonPath), `no leaf ${poisonPath}`);
      const updates = zipTrees([grads], ([g], path) => mul(g, poisoned && path === poisonPath ? NaN : -lr));
      return { updates, state: { step: state.step + 1 } };
    },
    perturb: (p: TensorTree) => p,
    clean: (p: TensorTree) => p,
  };
}

/** 16 separable points in 2-D: 4 steps per epoch with batch 4. */
function points(): Dataset {
  const n = 16, x = new Float32Array(n * 2), y = new Int32Array(n);
  const p = permutation(n, { seed: 5, stream: "points" });
  for (let i = 0; i < n; i++) {
    y[i] = i % 2;
    x[2 * i] = (y[i] ? 1 : -1) + (p[i] / n - 0.5);
    x[2 * i + 1] = (y[i] ? 1 : -1) - (p[(3 * i) % n] / n - 0.5);
  }
  return makeDataset(x, y, [2], 2);
}

async function host(tree: TensorTree): Promise<Float32Array[]> {
  return await Promise.all(treeLeaves(tree).map(async (l) => Float32Array.from(await l.tensor.data())));
}

const allFinite = (arrays: Float32Array[]) => arrays.every((a) => a.every(Number.isFinite));

/** The fit options of the tests (an MLP 2-4-2 on `points`, 3 epochs of 4 steps). */
function options(optimizer: LoopOptimizer<State>, extra: Record<string, unknown> = {}) {
  const net = mlp([2, 4, 2], { seed: 1 });
  return {
    params: net.params,
    forward: net.forward,
    optimizer,
    train: points(),
    test: points(),
    epochs: 3,
    batchSize: 4,
    logger: null,
    ...extra,
  };
}

// The leaf poisoned: the second layer's bias (so the path is not simply the first leaf).
const POISON = "layers.1.b";
const MESSAGE =
  /^fit: non-finite update of "layers\.1\.b" at step 6 \(epoch 2, step 2 of 4\); stopped, the weights after step (\d+) are kept in the error's params \(lower the learning rate, clip the gradients or pass onNonFinite: "skip-step"\)$/;

Deno.test("fit, cpu, onNonFinite stop (default): NonFiniteError at the step, with the last finite weights", async () => {
  const opt = poisonedSgd(0.1, [6], POISON, "nan", true);
  const err = await fit(options(opt)).then(() => null, (e) => e);
  assert.ok(err instanceof NonFiniteError, `expected a NonFiniteError, got ${err}`);
  assert.equal(err.name, "NonFiniteError");
  assert.match(err.message, MESSAGE);
  assert.equal(err.message.match(MESSAGE)![1], "5");
  assert.equal(err.epoch, 2);
  assert.equal(err.step, 6);
  assert.equal(err.stepInEpoch, 2);
  assert.equal(err.path, POISON);
  assert.equal(err.lastFiniteStep, 5);
  assert.equal(err.history.length, 1); // epoch 1 completed
  assert.equal(err.history[0].skippedSteps, 0);
  assert.deepEqual(err.state, { step: 5 });
  // The kept weights are those the divergent step started from (what its update saw), bit for bit.
  assert.equal(opt.seen.length, 6);
  assert.deepEqual(await host(err.rawParams), opt.seen[5]);
  assert.deepEqual(await host(err.params), opt.seen[5]);
  assert.ok(allFinite(await host(err.params)));
});

Deno.test("fit, cpu, onNonFinite skip-step: the divergent steps are dropped, exactly", async () => {
  const skipped = await fit({
    ...options(poisonedSgd(0.1, [2, 6, 7], POISON, "nan")),
    onNonFinite: "skip-step",
  });
  // The same run where those steps are no-ops (zero update, state not advanced).
  const noop = await fit(options(poisonedSgd(0.1, [2, 6, 7], POISON, "zero")));
  assert.deepEqual(skipped.history.map((m) => m.skippedSteps), [1, 2, 0]);
  assert.deepEqual(noop.history.map((m) => m.skippedSteps), [0, 0, 0]);
  assert.deepEqual(skipped.state, { step: 9 }); // 12 steps, 3 skipped
  assert.deepEqual(await host(skipped.params), await host(noop.params));
  assert.ok(allFinite(await host(skipped.params)));
  for (const m of skipped.history) assert.ok(Number.isFinite(m.batchLoss) && Number.isFinite(m.testAccuracy));
});

Deno.test("fit, cpu, onNonFinite ignore: trains on NaN as before, metrics NaN (not a score)", async () => {
  const r = await fit({ ...options(poisonedSgd(0.1, [6], POISON, "nan")), onNonFinite: "ignore" });
  assert.equal(r.history.length, 3);
  assert.ok(!allFinite(await host(r.params)));
  const last = r.history[2];
  assert.ok(Number.isNaN(last.trainAccuracy), `trainAccuracy ${last.trainAccuracy}`);
  assert.ok(Number.isNaN(last.testAccuracy), `testAccuracy ${last.testAccuracy}`);
  assert.ok(Number.isNaN(last.batchLoss));
});

Deno.test("fit: onNonFinite must be stop, skip-step or ignore", async () => {
  await assert.rejects(
    fit({ ...options(poisonedSgd(0.1, [], POISON, "nan")), onNonFinite: "warn" as any }),
    { name: "RangeError", message: 'fit: onNonFinite must be "stop", "skip-step" or "ignore", got "warn"' },
  );
});

const { gpu, ignore } = await webgpuSuite("train_nonfinite_test", "fit non-finite guard on webgpu");

/** Runs `fn` with the default device set to webgpu. */
async function onGpu<T>(fn: () => Promise<T>): Promise<T> {
  setDefaultDeviceSync("webgpu");
  try {
    return await fn();
  } finally {
    setDefaultDeviceSync("cpu");
  }
}

Deno.test({
  name: "fit, webgpu, stop: NonFiniteError read back at the epoch's end, the epoch's start kept",
  ignore,
  fn: () =>
    onGpu(async () => {
      const err = await fit(options(poisonedSgd(0.1, [6], POISON, "nan"))).then(() => null, (e) => e);
      assert.ok(err instanceof NonFiniteError, `expected a NonFiniteError, got ${err}`);
      assert.match(err.message, MESSAGE);
      assert.equal(err.message.match(MESSAGE)![1], "4"); // the start of epoch 2
      assert.equal(err.lastFiniteStep, 4);
      assert.equal(err.path, POISON);
      assert.deepEqual(err.state, { step: 4 });
      // Equal to one clean epoch of the same run.
      const one = await fit({ ...options(poisonedSgd(0.1, [], POISON, "nan")), epochs: 1 });
      assert.deepEqual(await host(err.rawParams), await host(one.rawParams));
      // Nothing leaks: once the returned trees and the initial params are released, another failing
      // run leaves the live buffers where they were (the label cache is full after the first run).
      const live = async () => {
        const o = options(poisonedSgd(0.1, [6], POISON, "nan"));
        const e = await fit(o).then(() => null, (x) => x as NonFiniteError);
        dispose([e!.params, e!.rawParams, o.params]);
        // Collect the garbage (earlier tests' too) first, so that a late finalizer cannot lower one count.
        for (let i = 0; i < 3; i++) {
          await new Promise((r) => setTimeout(r, 10));
          (globalThis as { gc?: () => void }).gc?.();
        }
        return gpu!.stats().liveBuffers;
      };
      dispose([err.params, err.rawParams, one.params, one.rawParams]);
      const first = await live();
      assert.equal(await live(), first);
    }),
});

Deno.test({
  name: "fit, webgpu, skip-step: masked on the device, equal to no-op steps",
  ignore,
  fn: () =>
    onGpu(async () => {
      const skipped = await fit({
        ...options(poisonedSgd(0.1, [2, 6, 7], POISON, "nan")),
        onNonFinite: "skip-step",
      });
      const noop = await fit(options(poisonedSgd(0.1, [2, 6, 7], POISON, "zero")));
      assert.deepEqual(skipped.history.map((m) => m.skippedSteps), [1, 2, 0]);
      const [a, b] = [await host(skipped.params), await host(noop.params)];
      assert.ok(allFinite(a));
      a.forEach((x, i) =>
        x.forEach((v, j) => assert.ok(Math.abs(v - b[i][j]) <= 1e-6, `leaf ${i}[${j}]: ${v} vs ${b[i][j]}`))
      );
      for (const m of skipped.history) assert.ok(Number.isFinite(m.batchLoss), `batchLoss ${m.batchLoss}`);
      // And the guard sees a non-finite loss of a finite model on the device too: the CPU's answer.
      const cpuTree = await toDevice(skipped.params as Record<string, Tensor | TensorTree>, "cpu");
      assert.ok(allFinite(await host(cpuTree)));
    }),
});

Deno.test("label_noise CLI --lr 1e6: one line naming the step, exit code 1, within the first epoch", async () => {
  await needRun();
  const tmp = await Deno.makeTempDir({ prefix: "nvrm_nonfinite_" });
  try {
    const out = `${tmp}/out`;
    const run = await scriptRunner("label_noise")([
      "--lr",
      "1e6",
      "--subset",
      "512",
      "--test-subset",
      "100",
      "--batch-size",
      "32",
      "--epochs",
      "2",
      "--optimizers",
      "sgd",
      "--out",
      out,
    ]);
    assert.equal(run.code, 1, run.stderr);
    const lines = run.stderr.trim().split("\n");
    assert.equal(lines.length, 1, run.stderr);
    assert.match(
      lines[0],
      /^label_noise: fit: non-finite update of "[\w.]+" at step (\d+) \(epoch 1, step \1 of 16\); stopped, the weights after step \d+ are kept/,
    );
    // Stopped inside epoch 1: the CSV holds its header and no row.
    const csv = `${out}/sgd_seed0.csv`;
    assert.ok(await exists(csv), "the run's CSV is written as it goes");
    assert.equal((await Deno.readTextFile(csv)).trim().split("\n").length, 1);
    // With 2 steps per epoch, epoch 1 completes on a model whose logits are not finite: its row is
    // kept, its metrics are `nan` (not blank, not a score), and the error names epoch 2's step.
    const out2 = `${tmp}/out2`;
    const run2 = await scriptRunner("label_noise")([
      "--lr",
      "1e6",
      "--subset",
      "256",
      "--test-subset",
      "100",
      "--batch-size",
      "128",
      "--epochs",
      "3",
      "--optimizers",
      "sgd",
      "--out",
      out2,
    ]);
    assert.equal(run2.code, 1, run2.stderr);
    assert.match(
      run2.stderr,
      /^label_noise: fit: non-finite update of "[\w.]+" at step 3 \(epoch 2, step 1 of 2\)[^\n]*\n$/,
    );
    const [header, ...rows] = (await Deno.readTextFile(`${out2}/sgd_seed0.csv`)).trim().split("\n");
    assert.equal(rows.length, 1, rows.join("\n"));
    const cell = (name: string) => rows[0].split(",")[header.split(",").indexOf(name)];
    for (const name of ["train_acc", "test_acc", "memorization", "flipped_correct"]) {
      assert.equal(cell(name), "nan", `${name} in ${rows[0]}`);
    }
    assert.ok(!/(^|,)(,|$)/.test(rows[0]), `blank cell in ${JSON.stringify(rows[0])}`);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
