import assert from "node:assert/strict";
import {
  accuracy,
  argmaxRows,
  crossEntropyOf,
  evaluate,
  flippedCorrect,
  formatDuration,
  formatEpoch,
  memorization,
  noiseMetrics,
  progressLogger,
} from "../src/train/mod.ts";
import { matmul, tensor } from "../mod.ts";
import { makeDataset } from "../src/data/mod.ts";

Deno.test("accuracy: hand-checked cases", () => {
  assert.equal(accuracy([1, 2, 3, 4], [1, 2, 0, 4]), 0.75);
  assert.equal(accuracy(new Int32Array([0, 0]), new Int32Array([1, 1])), 0);
  assert.ok(Number.isNaN(accuracy([], [])));
  assert.throws(
    () => accuracy([1, 2], [1]),
    /accuracy: labels has length 1, expected 2 \(the length of predictions\)/,
  );
});

Deno.test("memorization and flippedCorrect: only flipped examples count", () => {
  // 6 examples; 1, 2, 4 and 5 flipped. Clean: 0 1 2 3 4 5 → noisy: 0 2 3 3 5 6.
  const clean = [0, 1, 2, 3, 4, 5];
  const noisy = [0, 2, 3, 3, 5, 6];
  const flipped = [0, 1, 1, 0, 1, 1];
  // Predictions: ex1 → noisy (2), ex2 → clean (2), ex4 → other (9), ex5 → noisy (6); ex0/ex3 irrelevant.
  const pred = [7, 2, 2, 7, 9, 6];
  assert.equal(memorization(pred, noisy, flipped), 2 / 4);
  assert.equal(flippedCorrect(pred, clean, flipped), 1 / 4);
  const m = noiseMetrics(pred, noisy, clean, flipped);
  assert.deepEqual(m, {
    noisyAccuracy: 2 / 6, // ex1, ex5
    trueLabelAccuracy: 1 / 6, // ex2
    memorization: 0.5,
    flippedCorrect: 0.25,
    numFlipped: 4,
  });
  assert.ok(Number.isNaN(memorization([1], [1], [0])));
  assert.ok(Number.isNaN(flippedCorrect([1], [1], new Uint8Array(1))));
  assert.throws(() => memorization([1, 2], [1, 2], [1]), /memorization: flipped has length 1, expected 2/);
});

Deno.test("metrics of a non-finite model are NaN, never a score", async () => {
  const labels = [0, 1, 0, 1];
  const pred = argmaxRows([NaN, NaN, 2, 1, 0, 3, NaN, 0], 2); // rows 0 and 3 non-finite
  assert.deepEqual(pred, new Int32Array([-1, 0, 1, -1]));
  assert.ok(Number.isNaN(accuracy(pred, labels)));
  assert.ok(Number.isNaN(accuracy([NaN, 1], [0, 1])));
  assert.ok(Number.isNaN(memorization(pred, labels, [1, 1, 1, 1])));
  assert.ok(Number.isNaN(flippedCorrect(pred, labels, [0, 1, 0, 1])));
  const m = noiseMetrics(pred, labels, [1, 1, 0, 1], [1, 0, 0, 0]);
  assert.deepEqual(m, {
    noisyAccuracy: NaN,
    trueLabelAccuracy: NaN,
    memorization: NaN,
    flippedCorrect: NaN,
    numFlipped: 1,
  });
  // evaluate: predictions -1 where the logits are NaN, accuracy and loss NaN; finite rows unchanged.
  const data = makeDataset(new Float32Array([1, 0, 0, 1, NaN, 0]), new Int32Array([0, 1, 1]), [2], 2);
  const w = tensor([[1, 0], [0, 1]]);
  const ev = await evaluate((p: typeof w, x) => matmul(x, p), w, data);
  assert.deepEqual([...ev.predictions], [0, 1, -1]);
  assert.ok(Number.isNaN(ev.accuracy), `accuracy ${ev.accuracy}`);
  assert.ok(Number.isNaN(ev.loss));
  const ok = await evaluate(
    (p: typeof w, x) => matmul(x, p),
    w,
    makeDataset(new Float32Array([1, 0, 0, 1]), new Int32Array([0, 0]), [2], 2),
  );
  assert.equal(ok.accuracy, 0.5);
});

Deno.test("argmaxRows and crossEntropyOf", () => {
  assert.deepEqual(
    argmaxRows(new Float32Array([0.1, 2, -1, 5, 0, 5, -Infinity, -Infinity, -Infinity]), 3),
    new Int32Array([1, 0, -1]),
  );
  assert.deepEqual(argmaxRows([NaN, NaN], 2), new Int32Array([-1]));
  // Any non-finite entry: no class (not the largest finite one, not the infinite one).
  assert.deepEqual(
    argmaxRows([0, NaN, 1, 5, Infinity, 0, -Infinity, 2, 1, 3, 2, 1], 3),
    new Int32Array([-1, -1, -1, 0]),
  );
  assert.throws(
    () => argmaxRows([1, 2, 3], 2),
    /argmaxRows: logits has 3 entries, expected a multiple of numClasses = 2/,
  );
  // Uniform logits over C classes: loss = ln C.
  assert.ok(Math.abs(crossEntropyOf([0, 0, 0, 5, 5, 5], [0, 2], 3) - Math.log(3)) < 1e-12);
  // Hand-computed: logits [2, 0], label 0 → ln(1 + e^-2).
  assert.ok(Math.abs(crossEntropyOf([2, 0], [0], 2) - Math.log(1 + Math.exp(-2))) < 1e-12);
  // Stable for huge logits.
  assert.ok(Math.abs(crossEntropyOf([1000, 0], [1], 2) - 1000) < 1e-9);
});

Deno.test("progressLogger: plain lines off a terminal, a redrawn bar on one", () => {
  const m = {
    epoch: 2,
    step: 20,
    batchLoss: 0.5,
    trainLoss: 0.4,
    trainAccuracy: 0.9,
    trainTrueLabelAccuracy: 0.6,
    memorization: 0.25,
    flippedCorrect: 0.7,
    testLoss: 0.45,
    testAccuracy: 0.88,
    trainSeconds: 1.5,
    evalSeconds: 0.25,
    wallSeconds: 3,
    examplesPerSecond: 1280,
    skippedSteps: 0,
  };
  const plain: string[] = [];
  const lp = progressLogger({ write: (s) => plain.push(s), terminal: false, label: "sgd" });
  lp.progress!({
    epoch: 1,
    epochs: 2,
    stepInEpoch: 5,
    stepsPerEpoch: 10,
    step: 5,
    examplesPerSecond: 100,
    etaSeconds: 10,
    lastLoss: 1,
  });
  lp.epoch!(m);
  assert.equal(plain.length, 1);
  assert.equal(
    plain[0],
    "sgd epoch 2  batch_loss 0.5000  train_loss 0.4000  train_acc 0.9000  test_acc 0.8800  memorized 0.2500  " +
      "flipped_correct 0.7000  1280 ex/s  1.5+0.3 s\n",
  );
  const term: string[] = [];
  let t = 0;
  const lt = progressLogger({ write: (s) => term.push(s), terminal: true, now: () => t, barWidth: 10 });
  lt.progress!({
    epoch: 1,
    epochs: 2,
    stepInEpoch: 5,
    stepsPerEpoch: 10,
    step: 5,
    examplesPerSecond: 100,
    etaSeconds: 75,
    lastLoss: 1.23456,
  });
  t = 50; // throttled
  lt.progress!({
    epoch: 1,
    epochs: 2,
    stepInEpoch: 6,
    stepsPerEpoch: 10,
    step: 6,
    examplesPerSecond: 100,
    etaSeconds: 70,
    lastLoss: NaN,
  });
  assert.equal(term.length, 1);
  assert.equal(term[0], "\r\x1b[2Kepoch 1/2 [#####-----] 5/10 100 ex/s ETA 1m15s loss 1.2346");
  lt.epoch!(m);
  assert.ok(term[1].startsWith("\r\x1b[2Kepoch 2  batch_loss"));
  assert.equal(
    formatEpoch({ ...m, skippedSteps: 3 }),
    "epoch 2  batch_loss 0.5000  train_loss 0.4000  train_acc 0.9000  test_acc 0.8800  memorized 0.2500  " +
      "flipped_correct 0.7000  skipped 3 non-finite steps  1280 ex/s  1.5+0.3 s",
  );
  assert.equal(
    formatEpoch({ ...m, trainLoss: NaN, memorization: NaN, flippedCorrect: NaN }),
    "epoch 2  batch_loss 0.5000  train_acc 0.9000  test_acc 0.8800  1280 ex/s  1.5+0.3 s",
  );
  assert.equal(formatDuration(3700), "1h01m");
  assert.equal(formatDuration(NaN), "?");
});
