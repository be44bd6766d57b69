import assert from "node:assert/strict";
import { add, matmul, mul, type Tensor, tensor, type TensorTree, treeLeaves, zipTrees } from "../mod.ts";
import { vsgd } from "../src/optim/mod.ts";
import { hasWebGPU } from "../src/webgpu/mod.ts";
import { mlp } from "../src/nn/mod.ts";
import { makeDataset, pairflip, permutation } from "../src/data/mod.ts";
import { evaluate, fit, type LoopOptimizer } from "../src/train/mod.ts";

/** Plain SGD with the optimizer contract, so the loop is tested on its own. */
function plainSgd(
  lr: number,
): LoopOptimizer<{ step: number }> & { perturbCalls: number; cleanCalls: number } {
  return {
    perturbCalls: 0,
    cleanCalls: 0,
    init: () => ({ step: 0 }),
    update(grads: TensorTree, state: { step: number }) {
      return { updates: zipTrees([grads], ([g]) => mul(g, -lr)), state: { step: state.step + 1 } };
    },
    perturb(params: TensorTree) {
      this.perturbCalls++;
      return params;
    },
    clean(params: TensorTree) {
      this.cleanCalls++;
      return params;
    },
  };
}

/** Two Gaussian-ish blobs in 2-D (deterministic), class = sign of x0 + x1. */
function blobs(n: number, seed: number) {
  const x = new Float32Array(n * 2), y = new Int32Array(n);
  const p = permutation(n, { seed, stream: "blobs" });
  for (let i = 0; i < n; i++) {
    const c = i % 2;
    const a = (p[i] / n - 0.5) * 2, b = ((p[(i * 7) % n] / n) - 0.5) * 2;
    x[2 * i] = (c ? 1.5 : -1.5) + a;
    x[2 * i + 1] = (c ? 1.5 : -1.5) + b;
    y[i] = c;
  }
  return makeDataset(x, y, [2], 2);
}

Deno.test("fit: a tiny MLP learns synthetic data; metrics, clean/perturb and progress wired", async () => {
  const train = blobs(256, 1), test = blobs(128, 2);
  const net = mlp([2, 8, 2], { seed: 3 });
  const opt = plainSgd(0.2);
  const progress: number[] = [];
  const epochs: number[] = [];
  const r = await fit({
    params: net.params,
    forward: net.forward,
    optimizer: opt,
    train,
    test,
    epochs: 4,
    batchSize: 32,
    seed: 5,
    evalBatchSize: 100,
    progressEvery: 4,
    logger: { progress: (p) => progress.push(p.stepInEpoch), epoch: (m) => epochs.push(m.epoch) },
  });
  assert.equal(r.history.length, 4);
  assert.deepEqual(epochs, [1, 2, 3, 4]);
  assert.deepEqual(progress.slice(0, 2), [4, 8]); // every 4 steps, 8 steps per epoch
  assert.equal(opt.perturbCalls, 32); // once per step
  assert.ok(opt.cleanCalls >= 4); // once per epoch (+ the final clean params)
  const last = r.history.at(-1)!;
  assert.equal(last.step, 32);
  assert.ok(last.testAccuracy > 0.95, `test accuracy ${last.testAccuracy}`);
  assert.ok(last.trainAccuracy > 0.95, `train accuracy ${last.trainAccuracy}`);
  assert.ok(last.trainLoss < r.history[0].trainLoss || r.history[0].trainLoss < 0.1);
  assert.ok(Number.isFinite(last.batchLoss) && last.batchLoss > 0);
  assert.ok(Number.isNaN(last.memorization)); // no noise info given
  // The reported train metrics agree with a separate evaluation of the final clean params.
  const ev = await evaluate(net.forward, r.cleanParams, train, { batchSize: 64 });
  assert.equal(ev.accuracy, last.trainAccuracy);
  assert.ok(Math.abs(ev.loss - last.trainLoss) < 1e-9);
});

Deno.test("fit: memorization metrics under label noise, deterministic across runs", async () => {
  const clean = blobs(200, 4);
  const noise = pairflip(clean.y, 0.3, { numClasses: 2, seed: 1 });
  const train = { ...clean, y: noise.labels };
  const run = () =>
    fit({
      params: { w: tensor(new Float32Array(4), [2, 2]), b: tensor([0, 0]) },
      forward: (p: { w: Tensor; b: Tensor }, x: Tensor) => add(matmul(x, p.w), p.b),
      optimizer: plainSgd(0.1),
      train,
      noise: { trueLabels: clean.y, flipped: noise.flipped },
      epochs: 2,
      batchSize: 50,
      seed: 9,
    });
  const a = await run(), b = await run();
  assert.deepEqual(
    a.history.map((m) => [m.trainLoss, m.memorization]),
    b.history.map((m) => [m.trainLoss, m.memorization]),
  );
  const m = a.history.at(-1)!;
  // A linear model on separable blobs predicts the clean class: flipped examples are predicted
  // correctly and not memorized.
  assert.ok(m.flippedCorrect > 0.9, `flippedCorrect ${m.flippedCorrect}`);
  assert.ok(m.memorization < 0.1, `memorization ${m.memorization}`);
  assert.ok(Math.abs(m.memorization + m.flippedCorrect - 1) < 1e-12); // 2 classes: one or the other
  assert.ok(m.trainCleanAccuracy > 0.9, `clean accuracy ${m.trainCleanAccuracy}`);
  // …so its accuracy against the noisy labels is about 1 − the realized noise rate.
  assert.ok(Math.abs(m.trainAccuracy - (1 - noise.actualRate)) < 0.1, `noisy accuracy ${m.trainAccuracy}`);
  assert.ok(Number.isNaN(m.testAccuracy));
});

Deno.test("fit: bad options are clear errors", async () => {
  const ds = blobs(8, 1);
  const base = {
    params: { w: tensor(new Float32Array(4), [2, 2]) },
    forward: (p: { w: Tensor }, x: Tensor) => matmul(x, p.w),
    optimizer: plainSgd(0.1),
    train: ds,
    epochs: 1,
    batchSize: 4,
  };
  await assert.rejects(fit({ ...base, epochs: -1 }), /fit: epochs must be a non-negative integer, got -1/);
  await assert.rejects(fit({ ...base, batchSize: 0 }), /fit: batchSize must be a positive integer, got 0/);
  await assert.rejects(
    fit({ ...base, optimizer: { init: () => 0 } as never }),
    /fit: optimizer must have init, update, perturb and clean methods; update is missing/,
  );
  await assert.rejects(
    fit({ ...base, noise: { trueLabels: new Int32Array(3), flipped: new Uint8Array(8) } }),
    /fit: noise.trueLabels and noise.flipped must have 8 entries/,
  );
  const r = await fit({ ...base, epochs: 0 });
  assert.equal(r.history.length, 0);
});

Deno.test("fit with vsgd: gradient at the perturbed weights, metrics at the clean ones", async () => {
  const train = blobs(256, 1);
  const net = mlp([2, 8, 2], { seed: 3 });
  const stepsPerEpoch = 8;
  let perturbedSeen = 0;
  const opt = vsgd({ lr: 0.2, variability: 0.05, numIters: stepsPerEpoch, seed: 1 });
  const wrapped = {
    init: (p: TensorTree) => opt.init(p),
    update: (g: TensorTree, s: any, p: TensorTree) => opt.update(g, s, p),
    perturb: (p: TensorTree, s: any) => {
      perturbedSeen++;
      return opt.perturb(p, s);
    },
    clean: (p: TensorTree, s: any) => opt.clean(p, s),
  };
  const r = await fit({
    params: net.params,
    forward: net.forward,
    optimizer: wrapped,
    train,
    epochs: 3,
    batchSize: 32,
  });
  assert.equal(perturbedSeen, 24);
  assert.ok(r.history.at(-1)!.trainAccuracy > 0.95, `accuracy ${r.history.at(-1)!.trainAccuracy}`);
  // numIters = steps per epoch: every epoch ends on a reset step, so the stored weights are clean.
  const a = treeLeaves(r.params), b = treeLeaves(r.cleanParams);
  a.forEach((l, i) => assert.deepEqual(l.tensor.dataSync(), b[i].tensor.dataSync()));
});

const gpu = await hasWebGPU().catch(() => false);

Deno.test({
  name: "fit on WebGPU tensors gives the CPU's metrics",
  ignore: !gpu,
  fn: async () => {
    const train = blobs(300, 1), test = blobs(100, 2);
    const run = async (device: "cpu" | "webgpu") => {
      const net = mlp([2, 16, 2], { seed: 3, device });
      const r = await fit({
        params: net.params,
        forward: net.forward,
        optimizer: vsgd({ lr: 0.2, variability: 0.05, numIters: 10, seed: 1 }),
        train,
        test,
        epochs: 2,
        batchSize: 32,
        evalBatchSize: 64,
      });
      return r.history;
    };
    const c = await run("cpu"), g = await run("webgpu");
    for (let e = 0; e < 2; e++) {
      for (const k of ["batchLoss", "trainLoss", "testLoss"] as const) {
        assert.ok(
          Math.abs(c[e][k] - g[e][k]) < 1e-4,
          `epoch ${e + 1} ${k}: cpu ${c[e][k]} webgpu ${g[e][k]}`,
        );
      }
      assert.ok(Math.abs(c[e].testAccuracy - g[e].testAccuracy) <= 0.02);
    }
  },
});
