import assert from "node:assert/strict";
import { add, crossEntropy, matmul, mul, Tensor, tensor, valueAndGrad } from "../mod.ts";
import { type TensorTree, treeLeaves, zipTrees } from "../src/tree.ts";
import { applyUpdates, vadam, vsgd } from "../src/optim/mod.ts";
import { hasWebGPU } from "../src/webgpu/mod.ts";
import { mlp } from "../src/nn/mod.ts";
import { batchIndices, type Dataset, gather, makeDataset, pairflip, permutation } from "../src/data/mod.ts";
import { evaluate, fit, type LoopOptimizer, progressLogger } from "../src/train/mod.ts";
import { denoEval } from "./_examples.ts";

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
  // The reported train metrics agree with a separate evaluation of the final (noise-free) params.
  const ev = await evaluate(net.forward, r.params, train, { batchSize: 64, device: "cpu" });
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
      logger: null,
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
  assert.ok(m.trainTrueLabelAccuracy > 0.9, `true-label accuracy ${m.trainTrueLabelAccuracy}`);
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
    logger: null,
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
  await assert.rejects(
    fit({ ...base, logger: "quiet" as never }),
    /fit: logger must be a TrainLogger object or null, got string/,
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
    logger: null,
  });
  assert.equal(perturbedSeen, 24);
  assert.ok(r.history.at(-1)!.trainAccuracy > 0.95, `accuracy ${r.history.at(-1)!.trainAccuracy}`);
  // numIters = steps per epoch: every epoch ends on a reset step, so the stored weights are clean.
  const a = treeLeaves(r.rawParams), b = treeLeaves(r.params);
  a.forEach((l, i) => assert.deepEqual(l.tensor.dataSync(), b[i].tensor.dataSync()));
});

/**
 * The README's plain loop over `epochs` epochs of `fit`'s batches (same seed, same order), with
 * `applyUpdates`: what `fit` must reproduce bit for bit.
 */
function plainLoop<P extends TensorTree, S>(
  opt: LoopOptimizer<S>,
  params: P,
  forward: (p: P, x: Tensor) => Tensor,
  train: Dataset,
  o: { epochs: number; batchSize: number; seed: number },
): { params: P; state: S; batchLosses: number[] } {
  const loss = (p: P, x: Tensor, y: Int32Array) => crossEntropy(forward(p, x), y);
  let state = opt.init(params);
  const batchLosses: number[] = [];
  for (let e = 0; e < o.epochs; e++) {
    let sum = 0, seen = 0;
    for (const idx of batchIndices(train.y.length, o.batchSize, { seed: o.seed, epoch: e })) {
      const b = gather(train, idx);
      const { value, grads } = valueAndGrad(loss)(
        opt.perturb(params, state),
        tensor(b.x, [idx.length, ...train.inputShape]),
        b.y,
      );
      const step = opt.update(grads, state, params);
      params = applyUpdates(params, step.updates);
      state = step.state;
      sum += value.item() * idx.length;
      seen += idx.length;
    }
    batchLosses.push(sum / seen);
  }
  return { params, state, batchLosses };
}

const leafData = (t: TensorTree) => treeLeaves(t).map((l) => [l.path, Array.from(l.tensor.dataSync())]);

/** A tree with numbers and other values too (optimizer states) with its tensors as plain arrays. */
function plain(x: unknown): unknown {
  if (x instanceof Tensor) return Array.from(x.dataSync());
  if (Array.isArray(x)) return x.map(plain);
  if (x !== null && typeof x === "object") {
    return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, plain(v)]));
  }
  return x;
}

for (const mode of ["official", "exact"] as const) {
  Deno.test(`fit: the same trajectory as the plain loop (vsgd and vadam, ${mode} mode)`, async () => {
    const train = blobs(100, 6); // 100 = 3 batches of 32 and one of 4
    const makers = [
      () => vsgd({ lr: 0.2, variability: 0.05, numIters: 7, momentum: 0.9, seed: 3, mode }),
      () => vadam({ lr: 0.01, variability: 0.05, numIters: 7, seed: 3, mode }),
    ];
    for (const make of makers) {
      const net = mlp([2, 8, 2], { seed: 4 });
      const opt = make();
      const r = await fit({
        params: net.params,
        forward: net.forward,
        optimizer: opt,
        train,
        epochs: 3,
        batchSize: 32,
        seed: 11,
        evalTrain: false,
        logger: null,
      });
      const ref = plainLoop(make(), net.params, net.forward, train, { epochs: 3, batchSize: 32, seed: 11 });
      assert.deepEqual(leafData(r.rawParams), leafData(ref.params), "rawParams: the optimizer's params");
      assert.deepEqual(plain(r.state), plain(ref.state), "state");
      assert.deepEqual(leafData(r.params), leafData(opt.clean(ref.params, ref.state)), "params: clean");
      r.history.forEach((m, e) =>
        assert.ok(
          Math.abs(m.batchLoss - ref.batchLosses[e]) < 1e-6,
          `epoch ${e + 1} batch loss ${m.batchLoss} vs ${ref.batchLosses[e]}`,
        )
      );
      // 12 steps, numIters 7: the last step is not a reset step, so in official mode the stored
      // params hold noise and differ from the clean weights.
      const same = JSON.stringify(leafData(r.params)) === JSON.stringify(leafData(r.rawParams));
      assert.equal(same, mode === "exact", `params ${same ? "equal" : "differ from"} rawParams`);
    }
  });
}

Deno.test("fit: resuming from rawParams and state continues the same trajectory", async () => {
  const train = blobs(96, 8);
  const net = mlp([2, 6, 2], { seed: 5 });
  const make = () => vsgd({ lr: 0.1, variability: 0.05, numIters: 5, seed: 2 });
  const common = { forward: net.forward, train, batchSize: 32, seed: 4, evalTrain: false, logger: null };
  const whole = await fit({ ...common, params: net.params, optimizer: make(), epochs: 4 });
  const opt = make();
  const half = await fit({ ...common, params: net.params, optimizer: opt, epochs: 2 });
  const rest = await fit({
    ...common,
    params: half.rawParams,
    state: half.state,
    optimizer: opt,
    epochs: 2,
    startEpoch: 2,
  });
  assert.deepEqual(leafData(rest.rawParams), leafData(whole.rawParams));
  assert.deepEqual(leafData(rest.params), leafData(whole.params));
  assert.deepEqual(rest.history.map((m) => m.step), [9, 12]);
});

Deno.test("fit: the default logger prints one line per epoch to stderr off a terminal; null is silent", async () => {
  const mod = new URL("../mod.ts", import.meta.url).href;
  const data = new URL("../src/data/mod.ts", import.meta.url).href;
  const optim = new URL("../src/optim/mod.ts", import.meta.url).href;
  const script = (logger: string) => `
    import { fit, matmul, zeros } from "${mod}";
    import { makeDataset } from "${data}";
    import { sgd } from "${optim}";
    const data = makeDataset(new Float32Array([1, 0, 0, 1, 1, 0.1, 0.1, 1]), new Int32Array([0, 1, 0, 1]), [2], 2);
    await fit({
      params: { w: zeros([2, 2]) }, optimizer: sgd({ lr: 0.5 }), forward: (p, x) => matmul(x, p.w),
      train: data, epochs: 3, batchSize: 2, progressEvery: 1, ${logger}
    });
    console.log("done");`;
  const byDefault = await denoEval(script(""));
  assert.equal(byDefault.code, 0, byDefault.stderr);
  assert.equal(byDefault.stdout, "done\n", "nothing but the script's own output on stdout");
  const lines = byDefault.stderr.split("\n").filter((l) => l !== "");
  assert.deepEqual(lines.map((l) => l.split("  ")[0]), ["epoch 1", "epoch 2", "epoch 3"]);
  assert.ok(lines.every((l) => /batch_loss \d\.\d{4} {2}train_loss .* ex\/s/.test(l)), lines.join("\n"));
  assert.ok(!byDefault.stderr.includes("\r") && !byDefault.stderr.includes("\x1b"), "no bar off a terminal");
  const quiet = await denoEval(script("logger: null"));
  assert.equal(quiet.code, 0, quiet.stderr);
  assert.deepEqual([quiet.stdout, quiet.stderr], ["done\n", ""]);
});

Deno.test("progressLogger: every option is optional; without Deno it logs epochs to the console", async () => {
  const progress = {
    epoch: 1,
    epochs: 2,
    stepInEpoch: 5,
    stepsPerEpoch: 10,
    step: 5,
    examplesPerSecond: 100,
    etaSeconds: 3,
    lastLoss: 0.5,
  };
  // An injected writer is not a terminal unless said so: no bar, just the epoch lines.
  const out: string[] = [];
  const logger = progressLogger({ write: (s) => out.push(s) });
  logger.progress!(progress);
  assert.deepEqual(out, []);
  assert.throws(
    () => progressLogger({ write: 3 as never }),
    /progressLogger: write must be a function, got number/,
  );
  assert.equal(typeof progressLogger().epoch, "function");
  // Outside Deno (as in a browser) the default writer is the console.
  const progressUrl = new URL("../src/train/progress.ts", import.meta.url).href;
  const run = await denoEval(`
    delete globalThis.Deno;
    const { progressLogger } = await import("${progressUrl}");
    const logger = progressLogger({ label: "web" });
    logger.progress(${JSON.stringify(progress)});
    logger.epoch({ epoch: 1, step: 10, batchLoss: 0.5, trainLoss: NaN, trainAccuracy: NaN,
      trainTrueLabelAccuracy: NaN, memorization: NaN, flippedCorrect: NaN, testLoss: NaN, testAccuracy: 0.75,
      trainSeconds: 1, evalSeconds: 0, wallSeconds: 1, examplesPerSecond: 10, skippedSteps: 0 });`);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stderr, "");
  assert.equal(run.stdout, "web epoch 1  batch_loss 0.5000  test_acc 0.7500  10 ex/s  1.0+0.0 s\n");
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
        logger: null,
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

Deno.test("evaluate: logits: true returns the logits of every batch, in order, from the same read-back", async () => {
  const x = Float32Array.from({ length: 7 * 3 }, (_, i) => Math.sin(i));
  const data = makeDataset(x, new Int32Array([0, 1, 1, 0, 1, 0, 0]), [3], 2);
  const w = tensor([[1, -1], [0.5, 2], [-1, 0.25]]);
  const forward = (p: Tensor, xb: Tensor) => matmul(xb, p);
  const ev = await evaluate(forward, w, data, { batchSize: 3, logits: true }); // batches of 3, 3, 1
  const expected = matmul(tensor(x, [7, 3]), w).dataSync();
  assert.deepEqual(Array.from(ev.logits!), Array.from(expected));
  for (let i = 0; i < 7; i++) {
    assert.equal(ev.predictions[i], expected[2 * i + 1] > expected[2 * i] ? 1 : 0, `example ${i}`);
  }
  assert.equal((await evaluate(forward, w, data)).logits, undefined, "not asked: not returned");
});
