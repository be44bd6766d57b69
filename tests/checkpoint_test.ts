/**
 * Checkpoints and resume: a run cut in two and resumed from its checkpoint is the run in one piece,
 * bit for bit; every disagreement between a checkpoint and the call that resumes it is refused
 * with an error naming both values; `deserialize` checks every buffer against its parameter.
 */
import assert from "node:assert/strict";
import { type EpochMetrics, fit, type FitOptions, mlp, type MlpParams, type Tensor, tensor } from "../mod.ts";
import {
  deserialize,
  multiStepSchedule,
  serialize,
  serializeAsync,
  sgd,
  vadam,
  vsgd,
} from "../src/optim/mod.ts";
import { makeDataset } from "../src/data/mod.ts";
import { loadCheckpoint, saveCheckpoint } from "../src/train/checkpoint.ts";
import { treeLeaves } from "../src/tree.ts";
import { toDevice } from "../src/webgpu/mod.ts";
import { webgpuSuite } from "./_webgpu.ts";

/** A small 3-class problem: 60 examples of 4 features. */
function data() {
  const n = 60, x = new Float32Array(n * 4), y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < 4; k++) x[4 * i + k] = Math.sin(1.3 * i + 0.7 * k * k);
    y[i] = (x[4 * i] + x[4 * i + 1] > 0 ? 1 : 0) + (x[4 * i + 2] > 0.5 ? 1 : 0);
  }
  return makeDataset(x, y, [4], 3);
}

const TIMING = new Set(["trainSeconds", "evalSeconds", "wallSeconds", "examplesPerSecond"]);
const noTiming = (h: readonly EpochMetrics[]) =>
  h.map((m) => Object.fromEntries(Object.entries(m).filter(([k]) => !TIMING.has(k))));

const bits = (tree: unknown) =>
  treeLeaves(tree as any).map((l) => [l.path, [...new Uint8Array(l.tensor.dataSync().buffer.slice(0))]]);

/** The options of one run (the same every call: a fresh optimizer and init from the seed). */
function runOptions(mode: "official" | "exact" = "official") {
  const net = mlp([4, 8, 3], { seed: 3 });
  const train = data();
  return {
    params: net.params,
    forward: net.forward,
    // A schedule (lr ×0.5 after epoch 1), momentum, and a noise reset period that is not an epoch.
    optimizer: vsgd({
      lr: multiStepSchedule({ init: 0.2, milestones: [1], gamma: 0.5, stepsPerEpoch: 4 }),
      momentum: 0.9,
      variability: 0.05,
      numIters: 7,
      seed: 11,
      mode,
    }),
    train,
    test: train,
    batchSize: 16,
    seed: 5,
    logger: null,
  } satisfies Partial<FitOptions<MlpParams, unknown>>;
}

Deno.test("fit: 4 epochs = 2 epochs + resume from the checkpoint file, bit for bit (params, state, history)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "nvrm_ckpt_" });
  try {
    for (const mode of ["official", "exact"] as const) {
      const whole = await fit({ ...runOptions(mode), epochs: 4 });
      const first = await fit({ ...runOptions(mode), epochs: 2, checkpoint: { dir: `${dir}/${mode}` } });
      assert.deepEqual(
        [...Deno.readDirSync(`${dir}/${mode}`)].map((e) => e.name).sort(),
        ["epoch-0001.safetensors", "epoch-0002.safetensors", "latest"],
      );
      const rest = await fit({
        ...runOptions(mode),
        epochs: 2,
        resume: `${dir}/${mode}/epoch-0002.safetensors`,
      });
      assert.deepEqual(bits(rest.rawParams), bits(whole.rawParams), `${mode}: raw params`);
      assert.deepEqual(bits(rest.params), bits(whole.params), `${mode}: clean params`);
      assert.deepEqual(serialize(rest.state), serialize(whole.state), `${mode}: optimizer state`);
      assert.equal(rest.history.length, 4, "the history starts with the checkpoint's epochs");
      assert.deepEqual(noTiming(rest.history), noTiming(whole.history), `${mode}: history`);
      assert.deepEqual(noTiming(first.history), noTiming(whole.history.slice(0, 2)));
      // The folder's `latest` names the newest checkpoint; resuming from the folder with 0 epochs
      // gives back its params and history.
      const again = await fit({ ...runOptions(mode), epochs: 0, resume: `${dir}/${mode}` });
      assert.equal(again.history.length, 2);
      assert.deepEqual(bits(again.rawParams), bits(first.rawParams));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fit resume: a startEpoch, state, batch order or optimizer that disagrees is refused, naming both values", async () => {
  const dir = await Deno.makeTempDir({ prefix: "nvrm_ckpt_" });
  try {
    const first = await fit({
      ...runOptions(),
      epochs: 2,
      checkpoint: { dir, every: 2, config: { lr: 0.2 } },
    });
    const file = `${dir}/epoch-0002.safetensors`;
    const o = runOptions();
    const cases: [Partial<FitOptions<MlpParams, any>>, RegExp][] = [
      [
        { startEpoch: 1 },
        /fit: startEpoch 1 disagrees with the checkpoint .*epoch-0002\.safetensors, which ends epoch 2/,
      ],
      [{ startEpoch: 2 }, /^$/], // agrees: accepted
      [{ state: o.optimizer.init(o.params) }, /the state given is at step 0, .* at step 8/],
      [{ batchSize: 20 }, /was made with batchSize 16, this call has batchSize 20/],
      [{ seed: 6 }, /was made with seed 5, this call has seed 6/],
      [{ dropLast: true }, /was made with dropLast false, this call has dropLast true/],
      [
        { optimizer: vsgd({ lr: 0.2, momentum: 0.9, variability: 0.05, numIters: 7, seed: 12 }) },
        /made with seed 11, this optimizer has seed 12/,
      ],
      [
        {
          optimizer: vsgd({
            lr: 0.2,
            momentum: 0.9,
            variability: 0.05,
            numIters: 7,
            seed: 11,
            noise: "laplace",
          }),
        },
        /optimizer state does not match the template at state\.inner\[1\]\.meta\.law: expected "laplace", got "gaussian"/,
      ],
      [
        {
          optimizer: vsgd({
            lr: 0.2,
            momentum: 0.9,
            variability: 0.05,
            numIters: 7,
            seed: 11,
            mode: "exact",
          }),
        },
        /optimizer state does not match the template at state\.inner\[1\]\.meta\.mode: expected "exact", got "official"/,
      ],
      // A constant lr of 0.2 where the run's schedule had decayed to 0.1 at its last step.
      [
        { optimizer: vsgd({ lr: 0.2, momentum: 0.9, variability: 0.05, numIters: 7, seed: 11 }) },
        /made with lr 0\.1, this optimizer has lr 0\.2 \(at the checkpoint's step 8\)/,
      ],
      [
        {
          optimizer: vsgd({
            lr: multiStepSchedule({ init: 0.2, milestones: [1], gamma: 0.5, stepsPerEpoch: 4 }),
            momentum: 0.9,
            variability: 0.05,
            numIters: 9,
            seed: 11,
          }),
        },
        /made with numIters 7, this optimizer has numIters 9/,
      ],
      [
        { optimizer: vadam({ seed: 11 }) },
        /does not match the template at state\.inner\[0\]\.kind: expected "adam", got "sgd"/,
      ],
      [
        { params: mlp([4, 5, 3], { seed: 3 }).params },
        /params\.layers\.0\.w is float32 \[4, 8\], expected float32 \[4, 5\]/,
      ],
    ];
    for (const [extra, re] of cases) {
      const run = fit({ ...o, epochs: 1, resume: file, ...extra } as FitOptions<MlpParams, any>);
      if (re.source === "^$") await run;
      else await assert.rejects(run, re, JSON.stringify(Object.keys(extra)));
    }
    await assert.rejects(
      fit({ ...o, epochs: 1, resume: `${dir}/nope` }),
      /loadCheckpoint: .*nope does not exist/,
    );
    const ck = await loadCheckpoint(dir, { params: o.params, optimizer: o.optimizer });
    assert.equal(ck.epoch, 2);
    assert.equal(ck.step, 8);
    assert.deepEqual(ck.config, { lr: 0.2 });
    assert.deepEqual(ck.loop, { seed: 5, batchSize: 16, dropLast: false, trainSize: 60, stepsPerEpoch: 4 });
    assert.deepEqual(noTiming(ck.history!), noTiming(first.history));
    assert.ok(
      ck.history!.every((m) => Number.isNaN(m.trainTrueLabelAccuracy)),
      "NaN survives the round trip",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fit checkpoint: every N epochs and the last, keep the newest, stop on an aborted signal", async () => {
  const dir = await Deno.makeTempDir({ prefix: "nvrm_ckpt_" });
  try {
    await fit({ ...runOptions(), epochs: 5, checkpoint: { dir: `${dir}/a`, every: 2 } });
    const names = (d: string) => [...Deno.readDirSync(d)].map((e) => e.name).sort();
    assert.deepEqual(names(`${dir}/a`), [
      "epoch-0002.safetensors",
      "epoch-0004.safetensors",
      "epoch-0005.safetensors",
      "latest",
    ]);
    assert.equal(Deno.readTextFileSync(`${dir}/a/latest`), "epoch-0005.safetensors\n");
    await fit({ ...runOptions(), epochs: 3, checkpoint: { dir: `${dir}/b`, keep: 1 } });
    assert.deepEqual(names(`${dir}/b`), ["epoch-0003.safetensors", "latest"]);
    // Aborted during epoch 2: the epoch finishes, is checkpointed, and training stops.
    const ctl = new AbortController();
    const r = await fit({
      ...runOptions(),
      epochs: 5,
      checkpoint: { dir: `${dir}/c`, every: Infinity },
      signal: ctl.signal,
      onEpoch: (m) => {
        if (m.epoch === 2) ctl.abort();
      },
    });
    assert.equal(r.history.length, 2);
    assert.deepEqual(names(`${dir}/c`), ["epoch-0002.safetensors", "latest"]);
    await assert.rejects(
      fit({ ...runOptions(), epochs: 1, checkpoint: { dir: `${dir}/d`, every: 0 } }),
      /fit: checkpoint\.every must be a positive integer, got 0/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("saveCheckpoint/loadCheckpoint: a hand-written loop's checkpoint; corrupt files are errors naming the file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "nvrm_ckpt_" });
  try {
    const opt = sgd({ lr: 0.1, momentum: 0.9 });
    const params = { w: tensor([1, 2, 3], [3], { dtype: "float64" }), b: tensor([0.5]) };
    const r = opt.update(
      { w: tensor([1, 1, 1], [3], { dtype: "float64" }), b: tensor([2]) },
      opt.init(params),
      params,
    );
    const file = `${dir}/mine.safetensors`;
    await saveCheckpoint(file, {
      params,
      optimizerState: r.state,
      modelState: { bn: { mean: tensor([0, 1]) } },
      epoch: 1,
      step: 1,
      config: { note: "x", big: Infinity },
    });
    const ck = await loadCheckpoint(file, { params, optimizer: opt });
    assert.deepEqual(serialize(ck.optimizerState), serialize(r.state));
    assert.deepEqual([...ck.params.w.dataSync()], [1, 2, 3]);
    assert.equal(ck.params.w.dtype, "float64");
    assert.deepEqual([...(ck.modelState as any).bn.mean.dataSync()], [0, 1]);
    assert.deepEqual(ck.config, { note: "x", big: Infinity });
    // The file is plain safetensors: its tensors are named by their place.
    const { loadSafetensors } = await import("../src/io/files.ts");
    const raw = await loadSafetensors(file);
    assert.deepEqual(Object.keys(raw.tree).sort(), [
      "model_state.bn.mean",
      "optimizer.leaves.b.buffers.momentum",
      "optimizer.leaves.w.buffers.momentum",
      "params.b",
      "params.w",
    ]);
    // Not a checkpoint, truncated, or a params tree of another shape: errors naming the file.
    const plain = `${dir}/plain.safetensors`;
    const { saveSafetensors } = await import("../src/io/files.ts");
    await saveSafetensors(plain, params);
    await assert.rejects(loadCheckpoint(plain, { params }), /plain\.safetensors: not a checkpoint/);
    const bytes = await Deno.readFile(file);
    await Deno.writeFile(`${dir}/cut.safetensors`, bytes.subarray(0, bytes.length - 5));
    await assert.rejects(loadCheckpoint(`${dir}/cut.safetensors`, { params }), /cut\.safetensors/);
    await assert.rejects(
      loadCheckpoint(file, { params: { w: params.w } }),
      /the tensor params\.b is a parameter the template does not have/,
    );
    await assert.rejects(loadCheckpoint(file, { params, optimizer: sgd({ lr: 0.1 }) }), /momentum/);
    await assert.rejects(loadCheckpoint(`${dir}/empty`, { params }), /does not exist/);
    await Deno.mkdir(`${dir}/empty`);
    await assert.rejects(loadCheckpoint(`${dir}/empty`, { params }), /no checkpoint in the folder .*empty/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deserialize: a momentum buffer of the wrong shape or dtype (valid checksum) is refused, naming the path", () => {
  const opt = vsgd({ lr: 0.1, momentum: 0.9, seed: 7 });
  const params = { layer: { w: tensor([1, 2, 3, 4, 5, 6], [2, 3]) } };
  const template = opt.init(params); // buffers null: created by the first update
  const good = opt.update({ layer: { w: tensor([1, 1, 1, 1, 1, 1], [2, 3]) } }, template, params).state;
  assert.doesNotThrow(() => deserialize(serialize(good), template));
  const withMomentum = (m: Tensor) => {
    const sgdState = good.inner[0] as any;
    const leaf = sgdState.leaves["layer.w"];
    return {
      ...good,
      inner: [{ ...sgdState, leaves: { "layer.w": { ...leaf, buffers: { momentum: m } } } }, good.inner[1]],
    };
  };
  const wrongShape = serialize(withMomentum(tensor([1, 2, 3, 4, 5, 6], [3, 2])));
  const wrongDtype = serialize(withMomentum(tensor([1, 2, 3, 4, 5, 6], [2, 3], { dtype: "float64" })));
  for (const t of [template, good]) {
    assert.throws(
      () => deserialize(wrongShape, t),
      /deserialize: the data does not match the template at state\.inner\[0\]\.leaves\.layer\.w\.buffers\.momentum: expected a float32 tensor of shape \[2, 3\].*got float32 \[3, 2\]/,
    );
    assert.throws(
      () => deserialize(wrongDtype, t),
      /at state\.inner\[0\]\.leaves\.layer\.w\.buffers\.momentum: expected a float32 tensor of shape \[2, 3\].*got float64 \[2, 3\]/,
    );
  }
  // Without a template the bytes are intact, so they load (the checksum is valid).
  assert.ok(deserialize(wrongShape));
});

const gpuSuite = await webgpuSuite("checkpoint_test", "checkpoints on webgpu");

Deno.test({
  name: "fit on webgpu: 4 epochs = 2 + resume from the checkpoint folder, bit for bit, on the device",
  ignore: gpuSuite.ignore,
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "nvrm_ckpt_gpu_" });
  try {
    const options = async () => ({ ...runOptions(), params: await toDevice(runOptions().params, "webgpu") });
    const whole = await fit({ ...(await options()), epochs: 4 });
    await fit({ ...(await options()), epochs: 2, checkpoint: { dir } });
    const rest = await fit({ ...(await options()), epochs: 2, resume: dir });
    assert.equal(rest.rawParams.layers[0].w.device, "webgpu");
    const cpu = async (t: unknown) => bits(await toDevice(t as any, "cpu"));
    assert.deepEqual(await cpu(rest.rawParams), await cpu(whole.rawParams));
    assert.deepEqual(await serializeAsync(rest.state), await serializeAsync(whole.state));
    assert.deepEqual(noTiming(rest.history), noTiming(whole.history));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
