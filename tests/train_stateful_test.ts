/**
 * fit and evaluate with a model that has state: the state is threaded through the steps in training
 * mode (ctx.step = the global step, ctx.seed = fit's seed), evaluation runs in eval mode at the
 * clean weights with the current state, the optimizer never sees the state, checkpoints hold it and
 * a resumed run (with step-keyed noise and augmentation) is the uninterrupted one bit for bit.
 */
import assert from "node:assert/strict";
import {
  add,
  type EpochMetrics,
  evaluate,
  fit,
  matmul,
  mean,
  mul,
  NonFiniteError,
  reshape,
  sub,
  type Tensor,
  tensor,
  zeros,
} from "../mod.ts";
import { serialize, serializeAsync, sgd, vsgd } from "../src/optim/mod.ts";
import { batchIndices, cifarAugment, gather, makeDataset } from "../src/data/mod.ts";
import { hashString, philox4x32 } from "../src/random/philox.ts";
import { loadCheckpoint } from "../src/train/checkpoint.ts";
import { treeLeaves } from "../src/tree.ts";
import { toDevice } from "../src/webgpu/mod.ts";
import { resnet20 } from "../src/nn/resnet.ts";
import * as nn from "../src/nn/nn.ts";
import { statefulModel } from "../src/nn/stateful.ts";
import { webgpuSuite } from "./_webgpu.ts";

type P = { w: Tensor; b: Tensor };
type M = { runningMean: Tensor };
interface Call {
  training: boolean;
  step?: number;
  seed?: number;
}

const C = 1, H = 6, W = 6, D = C * H * W, K = 3;

/**
 * A hand-written stateful model: y = drop((x − μ)) · w + b on flattened [1, 6, 6] images, where μ is
 * the batch mean in training (and the running mean, momentum 0.1, is updated from it) and the
 * running mean in evaluation; `drop` zeroes inputs by a mask keyed by (seed, step) in training
 * (inverted, rate ½), so a run whose steps were renumbered would differ.
 */
function tinyModel(calls: Call[] = []) {
  const params: P = {
    w: tensor(Float32Array.from({ length: D * K }, (_, i) => Math.sin(i * 1.7) * 0.1), [D, K]),
    b: zeros([K]),
  };
  const state: M = { runningMean: zeros([D]) };
  const mask = (seed: number, step: number) => {
    const m = new Float32Array(D), out = new Uint32Array(4);
    for (let i = 0; i < D; i++) {
      philox4x32(seed, hashString("tiny.drop"), step, i, 0, 0, out);
      m[i] = out[0] >>> 31 ? 2 : 0;
    }
    return tensor(m, [D], { device });
  };
  let device: "cpu" | "webgpu" = "cpu";
  const apply = (p: P, s: M, x: Tensor, o: Call) => {
    calls.push({ ...o });
    device = x.device;
    const flat = reshape(x, [x.shape[0], D]);
    if (!o.training) return { y: add(matmul(sub(flat, s.runningMean), p.w), p.b), state: s };
    const mu = mean(flat, 0);
    const h = mul(sub(flat, mu), mask(o.seed ?? 0, o.step ?? 0));
    const runningMean = add(mul(s.runningMean, 0.9), mul(mu, 0.1));
    return { y: add(matmul(h, p.w), p.b), state: { runningMean } };
  };
  return {
    params,
    state,
    apply,
    forward: (p: P, x: Tensor) => apply(p, state, x, { training: false }).y,
  };
}

/** 40 images [1, 6, 6] with a class that depends on where the bright pixels are, offset by +1. */
function data() {
  const n = 40, x = new Float32Array(n * D), y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = i % K;
    for (let q = 0; q < D; q++) x[i * D + q] = 1 + Math.sin(i * 0.37 + q * (y[i] + 1) * 0.21);
  }
  return makeDataset(x, y, [C, H, W], K);
}

const TIMING = new Set(["trainSeconds", "evalSeconds", "wallSeconds", "examplesPerSecond"]);
const noTiming = (h: readonly EpochMetrics[]) =>
  h.map((m) => Object.fromEntries(Object.entries(m).filter(([k]) => !TIMING.has(k))));
const bits = (tree: unknown) =>
  treeLeaves(tree as any).map((l) => [l.path, [...new Uint8Array(l.tensor.dataSync().buffer.slice(0))]]);

const augment = cifarAugment({ padding: 1, fill: 0 });

function runOptions(calls?: Call[]) {
  const train = data();
  return {
    model: tinyModel(calls),
    optimizer: vsgd({ lr: 0.05, momentum: 0.9, variability: 0.05, numIters: 7, seed: 11, weightDecay: 1e-3 }),
    train,
    test: train,
    batchSize: 16, // 3 steps per epoch, the last one short
    seed: 5,
    batchTransform: augment,
    logger: null,
  } as const;
}

Deno.test("fit(model): state threaded with the global step and fit's seed; eval mode at the clean weights", async () => {
  const calls: Call[] = [];
  const o = runOptions(calls);
  const r = await fit({ ...o, epochs: 3 });
  const trainCalls = calls.filter((c) => c.training);
  assert.deepEqual(trainCalls.map((c) => c.step), [0, 1, 2, 3, 4, 5, 6, 7, 8]);
  assert.ok(trainCalls.every((c) => c.seed === 5));
  assert.ok(calls.some((c) => !c.training), "evaluation runs in eval mode");
  // The state moved away from its initial zeros, and the caller's initial state is untouched.
  assert.ok(r.modelState.runningMean.dataSync().some((v) => v !== 0));
  assert.ok(o.model.state.runningMean.dataSync().every((v) => v === 0));
  // The last epoch's metrics are evaluate() at the clean weights with the final state…
  const ev = await evaluate(o.model, r.params, o.train, { modelState: r.modelState });
  assert.equal(r.history.at(-1)!.trainLoss, ev.loss);
  assert.equal(r.history.at(-1)!.testAccuracy, ev.accuracy);
  // …and the state matters: with the initial one the loss is another.
  const initial = await evaluate(o.model, r.params, o.train);
  assert.notEqual(initial.loss, ev.loss);
  // The optimizer never saw the state: its leaves are the params' only.
  const inner = (r.state as any).inner as { leaves: Record<string, unknown> }[];
  for (const member of inner) assert.deepEqual(Object.keys(member.leaves).sort(), ["b", "w"]);
});

Deno.test("fit(model): running statistics are neither perturbed by the weight noise nor optimized", async () => {
  const o = runOptions();
  const noisy = await fit({
    ...o,
    optimizer: vsgd({ lr: 0.5, variability: 0.5, weightDecay: 0.5, numIters: 5, seed: 3 }),
    epochs: 2,
  });
  const frozen = await fit({ ...o, optimizer: sgd({ lr: 0 }), epochs: 2 });
  // The running mean depends on the (augmented) inputs only: the same bits whatever the weights did.
  assert.deepEqual(bits(noisy.modelState), bits(frozen.modelState));
  assert.notDeepEqual(bits(noisy.params), bits(frozen.params));
  // And it is the EMA of the augmented batches' means, recomputed here from the data alone.
  let rm = zeros([D]);
  for (let e = 0; e < 2; e++) {
    for (const idx of batchIndices(o.train.y.length, o.batchSize, { seed: o.seed, epoch: e })) {
      const x = augment(gather(o.train, idx).x, idx, { epoch: e, seed: o.seed, inputShape: [C, H, W] });
      rm = add(mul(rm, 0.9), mul(mean(tensor(x, [idx.length, D]), 0), 0.1));
    }
  }
  assert.deepEqual(bits({ runningMean: rm }), bits(noisy.modelState));
});

Deno.test("fit(model): a run with step-keyed noise and augmentation resumed mid-way is the whole run, bit for bit", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "nvrm_stateful_" });
  try {
    const whole = await fit({ ...runOptions(), epochs: 4 });
    const first = await fit({ ...runOptions(), epochs: 2, checkpoint: { dir: `${tmp}/ck` } });
    // The checkpoint holds the model state under model_state.
    const ck = await loadCheckpoint(`${tmp}/ck`, { params: runOptions().model.params });
    assert.deepEqual(bits(ck.modelState), bits(first.modelState));
    const rest = await fit({ ...runOptions(), epochs: 2, resume: `${tmp}/ck` });
    assert.deepEqual(bits(rest.rawParams), bits(whole.rawParams));
    assert.deepEqual(bits(rest.params), bits(whole.params));
    assert.deepEqual(bits(rest.modelState), bits(whole.modelState));
    assert.deepEqual(serialize(rest.state), serialize(whole.state));
    assert.deepEqual(noTiming(rest.history), noTiming(whole.history));
    // Continuing by hand (rawParams, state, modelState, startEpoch) is the same run too.
    const byHand = await fit({
      ...runOptions(),
      params: first.rawParams,
      state: first.state,
      modelState: first.modelState,
      startEpoch: 2,
      epochs: 2,
    });
    assert.deepEqual(bits(byHand.rawParams), bits(whole.rawParams));
    assert.deepEqual(bits(byHand.modelState), bits(whole.modelState));
    // Without the augmentation the run is another one (the transform was really applied).
    const plain = await fit({ ...runOptions(), batchTransform: undefined, epochs: 4 });
    assert.notDeepEqual(bits(plain.rawParams), bits(whole.rawParams));
    // A checkpoint whose model state does not match the model's is refused, naming the tensor.
    const other = runOptions();
    const bigger = { ...other.model, state: { runningMean: zeros([D + 1]) } };
    await assert.rejects(
      fit({ ...other, model: bigger, epochs: 1, resume: `${tmp}/ck` }),
      /model_state\.runningMean is float32 \[36\], expected float32 \[37\]/,
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("fit(model): the library's BatchNorm + dropout network with augmentation resumed mid-way, bit for bit", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "nvrm_stateful_nn_" });
  try {
    const options = () => ({
      model: statefulModel(
        nn.sequential([
          nn.conv2d(1, 4, 3, { padding: 1 }),
          nn.batchNorm(4),
          nn.relu(),
          nn.flatten(),
          nn.dropout(0.3),
          nn.linear(4 * H * W, K),
        ]),
        { seed: 2 },
      ),
      optimizer: vsgd({ lr: 0.05, momentum: 0.9, variability: 0.05, numIters: 5, seed: 1 }),
      train: data(),
      batchSize: 16,
      seed: 9,
      batchTransform: augment,
      logger: null,
    });
    const whole = await fit({ ...options(), epochs: 4 });
    await fit({ ...options(), epochs: 2, checkpoint: { dir: `${tmp}/ck` } });
    const rest = await fit({ ...options(), epochs: 2, resume: `${tmp}/ck` });
    assert.deepEqual(bits(rest.rawParams), bits(whole.rawParams));
    assert.deepEqual(bits(rest.modelState), bits(whole.modelState));
    assert.deepEqual(serialize(rest.state), serialize(whole.state));
    assert.deepEqual(noTiming(rest.history), noTiming(whole.history));
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("fit(model): bad options name what is wrong", async () => {
  const o = runOptions();
  await assert.rejects(
    fit({ ...o, forward: o.model.forward, epochs: 1 } as any),
    /fit: give forward \(with params\) or model, not both/,
  );
  await assert.rejects(
    fit({ ...o, model: { params: {} } as any, epochs: 1 }),
    /fit: model must be a StatefulModel/,
  );
  await assert.rejects(
    fit({ ...o, model: undefined, forward: o.model.forward, epochs: 1 } as any),
    /fit: params is required with forward/,
  );
  await assert.rejects(
    fit({ ...o, batchTransform: (x: Float32Array) => x.subarray(1), epochs: 1 }),
    /fit: batchTransform must return a Float32Array of 576 numbers \(16 examples × \[1, 6, 6\]\), got 575 numbers/,
  );
  await assert.rejects(
    evaluate({ params: {} } as any, o.model.params, o.train),
    /evaluate: the first argument must be a forward function or a StatefulModel/,
  );
});

Deno.test("fit(resnet20): a reduced-width ResNet-20 memorizes 32 random-label CIFAR-shaped images", async () => {
  // Uniform noise images with arbitrary labels: only memorization fits them.
  const n = 32, x = new Float32Array(n * 3 * 32 * 32), y = new Int32Array(n);
  let s = 1;
  for (let i = 0; i < x.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    x[i] = (s >>> 8) / 16777216 * 2 - 1;
  }
  for (let i = 0; i < n; i++) y[i] = (i * 7) % 10;
  const train = makeDataset(x, y, [3, 32, 32], 10);
  const model = resnet20({ seed: 0, widths: [4, 8, 16] });
  const before = await evaluate(model, model.params, train);
  assert.ok(before.loss > 1.5, `initial loss ${before.loss}`);
  const r = await fit({
    model,
    optimizer: sgd({ lr: 0.05, momentum: 0.9 }),
    train,
    epochs: 60,
    batchSize: 32,
    evalTrain: false,
    logger: null,
  });
  assert.ok(r.history.at(-1)!.batchLoss < 0.01, `last batch loss ${r.history.at(-1)!.batchLoss}`);
  // In eval mode, with the running statistics fit carried along.
  const after = await evaluate(model, r.params, train, { modelState: r.modelState });
  assert.ok(after.loss < 0.01, `final eval-mode loss ${after.loss}`);
  assert.equal(after.accuracy, 1);
});

const gpuSuite = await webgpuSuite("train_stateful_test", "fit(model) on webgpu");

Deno.test({
  name: "fit(model) on webgpu: the state survives the step scopes, follows the CPU, and resumes bit for bit",
  ignore: gpuSuite.ignore,
}, async () => {
  const tmp = await Deno.makeTempDir({ prefix: "nvrm_stateful_gpu_" });
  try {
    const onGpu = async () => {
      const o = runOptions();
      const model = {
        ...o.model,
        ...(await toDevice({ params: o.model.params, state: o.model.state }, "webgpu")),
      };
      return { ...o, model };
    };
    const cpu = await fit({ ...runOptions(), epochs: 4 });
    const whole = await fit({ ...(await onGpu()), epochs: 4 });
    assert.equal(whole.modelState.runningMean.device, "webgpu");
    const host = async (t: unknown) =>
      treeLeaves(await toDevice(t as any, "cpu")).map((l) => l.tensor.dataSync());
    const [a, b] = [await host(whole.modelState), await host(cpu.modelState)];
    for (let i = 0; i < D; i++) {
      assert.ok(Math.abs(a[0][i] - b[0][i]) < 1e-5, `runningMean[${i}]: ${a[0][i]} vs ${b[0][i]}`);
    }
    const [pa, pb] = [await host(whole.params), await host(cpu.params)];
    pa.forEach((x, k) =>
      x.forEach((v, i) => assert.ok(Math.abs(v - pb[k][i]) < 1e-4, `param ${k}[${i}]: ${v} vs ${pb[k][i]}`))
    );
    await fit({ ...(await onGpu()), epochs: 2, checkpoint: { dir: `${tmp}/ck` } });
    const rest = await fit({ ...(await onGpu()), epochs: 2, resume: `${tmp}/ck` });
    const gbits = async (t: unknown) => bits(await toDevice(t as any, "cpu"));
    assert.deepEqual(await gbits(rest.rawParams), await gbits(whole.rawParams));
    assert.deepEqual(await gbits(rest.modelState), await gbits(whole.modelState));
    assert.deepEqual(await serializeAsync(rest.state), await serializeAsync(whole.state));
    assert.deepEqual(noTiming(rest.history), noTiming(whole.history));
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("fit(model): a NonFiniteError keeps the model state of the last finite step", async () => {
  // 3 steps per epoch; the optimizer's 4th update (epoch 2, step 1) is NaN.
  const poisoned = () => {
    const base = sgd({ lr: 0.05 });
    let calls = 0;
    return {
      ...base,
      update(grads: any, state: any, params: any) {
        const r = base.update(grads, state, params);
        if (++calls !== 4) return r;
        return { ...r, updates: { ...r.updates, b: mul(r.updates.b, NaN) } };
      },
    };
  };
  const o = { ...runOptions(), batchTransform: undefined };
  const err = await fit({ ...o, optimizer: poisoned(), epochs: 3 }).then(() => null, (e) => e);
  assert.ok(err instanceof NonFiniteError, `expected a NonFiniteError, got ${err}`);
  assert.equal(err.step, 4);
  assert.equal(err.lastFiniteStep, 3);
  // The running mean after 3 steps: that of a clean one-epoch run (the divergent step's forward,
  // which moved the running mean again, is not kept).
  const oneEpoch = await fit({ ...o, optimizer: sgd({ lr: 0.05 }), epochs: 1 });
  assert.deepEqual(bits(err.modelState), bits(oneEpoch.modelState));
  assert.deepEqual(bits(err.rawParams), bits(oneEpoch.rawParams));
  // A plain forward has no model state.
  const net = {
    params: o.model.params,
    forward: (p: P, x: Tensor) => add(matmul(reshape(x, [-1, D]), p.w), p.b),
  };
  const plain = await fit({ ...o, model: undefined, ...net, optimizer: poisoned(), epochs: 2 } as any)
    .then(() => null, (e) => e);
  assert.ok(plain instanceof NonFiniteError);
  assert.equal(plain.modelState, undefined);
});
