/**
 * End to end on WebGPU: gradients of the MLP and the LeNet-like CNN through `valueAndGrad` match
 * the CPU, and the training helper `fit` trains on the GPU with the same trajectory as on the CPU
 * (metrics read back only at epoch ends).
 */
import assert from "node:assert/strict";
import { valueAndGrad } from "../src/autodiff.ts";
import { tensor } from "../src/creation.ts";
import { lenet, mlp } from "../src/nn/mod.ts";
import { crossEntropy } from "../src/ops/mod.ts";
import { serialize, serializeAsync, vsgd } from "../src/optim/mod.ts";
import { makeDataset } from "../src/data/dataset.ts";
import { fit } from "../src/train/loop.ts";
import type { Tensor } from "../src/tensor.ts";
import { type TensorTree, treeLeaves } from "../src/tree.ts";
import { toDevice } from "../src/webgpu/mod.ts";
import { testRng } from "../src/webgpu/testing.ts";
import { webgpuSuite } from "./_webgpu.ts";

const { ignore } = await webgpuSuite("webgpu_training_test", "webgpu training");
const rng = testRng(99);

async function treesClose(who: string, g: TensorTree, c: TensorTree, atol: number, rtol: number) {
  const lg = treeLeaves(g), lc = treeLeaves(c);
  assert.equal(lg.length, lc.length);
  for (let k = 0; k < lc.length; k++) {
    assert.equal(lg[k].tensor.device, "webgpu");
    const a = await lg[k].tensor.data(), b = lc[k].tensor.dataSync();
    let scale = 0;
    for (const v of b) scale = Math.max(scale, Math.abs(v));
    for (let i = 0; i < b.length; i++) {
      if (!(Math.abs(a[i] - b[i]) <= atol * Math.max(1, scale) + rtol * Math.abs(b[i]))) {
        assert.fail(`${who} ${lc[k].path}[${i}]: gpu ${a[i]} vs cpu ${b[i]}`);
      }
    }
  }
}

async function gradParity(
  name: string,
  net: { params: TensorTree; forward: (p: any, x: Tensor) => Tensor },
  xShape: number[],
) {
  const n = xShape.reduce((a, b) => a * b, 1);
  const xd = Float32Array.from({ length: n }, () => rng());
  const y = Int32Array.from({ length: xShape[0] }, () => Math.floor(rng() * 10));
  const loss = (p: any, x: Tensor, yy: Int32Array) => crossEntropy(net.forward(p, x), yy);
  const c = valueAndGrad(loss)(net.params, tensor(xd, xShape), y);
  const gp = await toDevice(net.params, "webgpu");
  const g = valueAndGrad(loss)(gp, tensor(xd, xShape, { device: "webgpu" }), y);
  const [lv] = await g.value.data();
  assert.ok(
    Math.abs(lv - c.value.item()) < 1e-5 * Math.max(1, Math.abs(c.value.item())),
    `${name} loss ${lv} vs ${c.value.item()}`,
  );
  await treesClose(`${name} grad`, g.grads, c.grads, 2e-5, 1e-4);
}

Deno.test(
  { name: "webgpu training: MLP and LeNet gradients through valueAndGrad match the CPU", ignore },
  async () => {
    await gradParity("mlp", mlp([20, 33, 17, 10], { seed: 3 }), [13, 20]);
    await gradParity("lenet", lenet({ seed: 4, inputShape: [1, 16, 16] }), [3, 1, 16, 16]);
  },
);

Deno.test({ name: "webgpu training: fit with VSGD on the GPU follows the CPU run", ignore }, async () => {
  const n = 96, d = 12, classes = 3;
  const x = new Float32Array(n * d), y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = i % classes;
    for (let j = 0; j < d; j++) x[i * d + j] = (j % classes === y[i] ? 1 : 0) + 0.3 * (rng() - 0.5);
  }
  const train = makeDataset(x, y, [d], classes);
  const run = async (device: "cpu" | "webgpu") => {
    const net = mlp([d, 16, classes], { seed: 5, device });
    return await fit({
      params: net.params,
      forward: net.forward,
      optimizer: vsgd({ lr: 0.2, variability: 0.01, numIters: 8, momentum: 0.5, seed: 2 }),
      train,
      test: train,
      epochs: 3,
      batchSize: 16,
      seed: 1,
      logger: null,
    });
  };
  const cpuRun = await run("cpu");
  const gpuRun = await run("webgpu");
  assert.equal(gpuRun.history.length, 3);
  for (let e = 0; e < 3; e++) {
    const a = gpuRun.history[e], b = cpuRun.history[e];
    assert.ok(
      Math.abs(a.batchLoss - b.batchLoss) < 1e-4,
      `epoch ${e + 1} batch loss ${a.batchLoss} vs ${b.batchLoss}`,
    );
    assert.ok(
      Math.abs(a.trainLoss - b.trainLoss) < 1e-4,
      `epoch ${e + 1} train loss ${a.trainLoss} vs ${b.trainLoss}`,
    );
    assert.equal(a.trainAccuracy, b.trainAccuracy, `epoch ${e + 1} accuracy`);
  }
  assert.ok(gpuRun.history[2].trainAccuracy > 0.9, `learned: ${gpuRun.history[2].trainAccuracy}`);
  await treesClose("final params", gpuRun.params, cpuRun.params, 1e-5, 1e-4);
});

Deno.test(
  { name: "webgpu training: serializeAsync reads a GPU optimizer state back bit for bit", ignore },
  async () => {
    const net = mlp([4, 5, 3], { seed: 2, device: "webgpu" });
    const opt = vsgd({ lr: 0.1, variability: 0.01, numIters: 10, momentum: 0.9, seed: 3 });
    const x = tensor(Float32Array.from({ length: 8 }, () => rng()), [2, 4], { device: "webgpu" });
    const { grads } = valueAndGrad((p: any, xb: Tensor) => crossEntropy(net.forward(p, xb), [0, 2]))(
      net.params,
      x,
    );
    const state = opt.update(grads, opt.init(net.params), net.params).state;
    const bytes = await serializeAsync(state);
    const onCpu = await toDevice(state as unknown as TensorTree, "cpu");
    assert.deepEqual(bytes, serialize(onCpu));
  },
);
