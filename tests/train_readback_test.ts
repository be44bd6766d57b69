/**
 * `fit` on a device reads metrics back once per epoch, however many steps the epoch has and however
 * often progress is reported: the loss sum and the non-finite guard at the epoch's end, and the
 * evaluation's outputs. Counted by wrapping `Tensor.prototype.data` (every device readback goes
 * through it) on the WebGPU backend (lavapipe in CI).
 */
import assert from "node:assert/strict";
import { mlp } from "../src/nn/mod.ts";
import { sgd, vsgd } from "../src/optim/mod.ts";
import { makeDataset } from "../src/data/dataset.ts";
import { fit, type StepProgress } from "../src/train/loop.ts";
import { Tensor } from "../src/tensor.ts";
import { webgpuSuite } from "./_webgpu.ts";

const { ignore } = await webgpuSuite("train_readback_test", "fit readbacks");

function toyData(n: number) {
  const d = 6, x = new Float32Array(n * d), y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = i % 3;
    for (let j = 0; j < d; j++) x[i * d + j] = (j % 3 === y[i] ? 1 : 0) + 0.1 * Math.sin(i * 7 + j);
  }
  return makeDataset(x, y, [d], 3);
}

/** Runs `fit` on WebGPU with a spy on `data()`: the readbacks of each epoch, and the progress seen. */
async function countReadbacks(stepsPerEpoch: number, progressLoss?: boolean, variable = false) {
  const batchSize = 8, epochs = 2;
  const train = toyData(stepsPerEpoch * batchSize), test = toyData(24);
  const net = mlp([6, 10, 3], { seed: 1, device: "webgpu" });
  const original = Tensor.prototype.data;
  let reads = 0;
  const perEpoch: number[] = [];
  const progress: StepProgress[] = [];
  Tensor.prototype.data = function (this: Tensor) {
    reads++;
    return original.call(this);
  };
  try {
    const r = await fit({
      params: net.params,
      forward: net.forward,
      // deno-lint-ignore no-explicit-any -- either optimizer's state type
      optimizer: (variable
        ? vsgd({ lr: 0.1, variability: 0.01, numIters: stepsPerEpoch, seed: 3 })
        : sgd({ lr: 0.1 })) as any,
      train,
      test,
      epochs,
      batchSize,
      seed: 0,
      evalTrain: true,
      evalBatchSize: 1000,
      progressEvery: 1,
      progressLoss,
      logger: {
        progress: (p) =>
          progress.push(p),
      },
      onEpoch: () => {
        perEpoch.push(reads);
        reads = 0;
      },
    });
    return { perEpoch, progress, history: r.history };
  } finally {
    Tensor.prototype.data = original;
  }
}

Deno.test({ name: "fit on WebGPU: readbacks per epoch do not grow with the steps", ignore }, async () => {
  for (const variable of [false, true]) {
    const few = await countReadbacks(3, undefined, variable);
    const many = await countReadbacks(12, undefined, variable);
    // The loss sum, the guard, and one per evaluation (train and test, one batch each).
    assert.deepEqual(
      few.perEpoch,
      many.perEpoch,
      `variable ${variable}: ${few.perEpoch} vs ${many.perEpoch}`,
    );
    for (const k of many.perEpoch) assert.ok(k <= 4, `variable ${variable}: ${k} readbacks in an epoch`);
    // Progress is still reported every step; its loss is the previous epoch's mean.
    assert.equal(many.progress.length, 2 * 12);
    assert.ok(many.progress.slice(0, 12).every((p) => Number.isNaN(p.lastLoss)), "no loss read in epoch 1");
    assert.ok(many.progress.slice(12).every((p) => p.lastLoss === many.history[0].batchLoss));
  }
});

Deno.test({ name: "fit on WebGPU: progressLoss: true reads the loss at each report", ignore }, async () => {
  const few = await countReadbacks(3, true);
  const many = await countReadbacks(12, true);
  // One more readback per progress report (here: per step).
  assert.deepEqual(many.perEpoch.map((k, e) => k - few.perEpoch[e]), [9, 9]);
});
