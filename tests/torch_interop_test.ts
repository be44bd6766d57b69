/**
 * PyTorch interop, against fixtures written by real PyTorch (tools/fixtures/make_fixtures.py, which
 * also loaded our committed ours_* files in PyTorch and checked them): state dicts of the torch
 * modules equal to our mlp and lenet give torch's logits here; the original VSGD/VAdam state after 4
 * steps imports and, after the same two gradients, reaches the weights and buffers torch reached;
 * the committed ours_* files are byte for byte what we write now. No Python needed.
 */
import assert from "node:assert/strict";
import {
  decodeSafetensors,
  encodeSafetensors,
  fromTorchStateDict,
  lenet,
  loadSafetensors,
  mlp,
  saveSafetensors,
  type Tensor,
  tensor,
  type TensorTree,
  toDevice,
  toTorchStateDict,
} from "../mod.ts";
import {
  applyUpdates,
  type ChainState,
  fromTorchOptimizerState,
  hyperparams,
  type TorchOptimizerSpec,
  toTorchOptimizerState,
  vadam,
  vsgd,
  type VsgdOptions,
} from "../src/optim/mod.ts";
import type { TransformState } from "../src/optim/types.ts";
import {
  fakeGrads,
  LENET_INPUT,
  MLP_SIZES,
  oursFixtures,
  VADAM_SPEC,
  VSGD_SPEC,
} from "../tools/fixtures/ours.ts";
import { webgpuSuite } from "./_webgpu.ts";

const FIX = new URL("./fixtures/safetensors/", import.meta.url);
const load = (name: string) => decodeSafetensors(Deno.readFileSync(new URL(name, FIX)), { name });

function maxDiff(a: Tensor, b: Tensor): number {
  assert.deepEqual(a.shape, b.shape);
  const x = a.dataSync(), y = b.dataSync();
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m;
}

Deno.test("the committed ours_* files are exactly what we write now (the files PyTorch verified)", () => {
  const ours = oursFixtures();
  assert.ok(Object.keys(ours).length >= 10);
  for (const [name, bytes] of Object.entries(ours)) {
    const committed = Deno.readFileSync(new URL(name, FIX));
    assert.equal(bytes.length, committed.length, name);
    assert.ok(
      bytes.every((b, i) => b === committed[i]),
      `${name} differs: rerun tools/fixtures/write_ours.ts and make_fixtures.py`,
    );
  }
});

Deno.test("torch mlp and lenet state dicts: fromTorchStateDict gives torch's logits; toTorchStateDict gives torch's bytes", () => {
  type Net = { params: TensorTree; forward: (p: any, x: Tensor) => Tensor };
  const cases = [
    { name: "mlp", layout: "mlp" as const, net: mlp(MLP_SIZES, { seed: 42 }) as Net },
    { name: "lenet", layout: "lenet" as const, net: lenet({ seed: 42, inputShape: LENET_INPUT }) as Net },
  ];
  for (const { name, layout, net } of cases) {
    const file = load(`torch_${name}.safetensors`);
    const io = load(`torch_${name}_io.safetensors`).tree;
    const { params } = fromTorchStateDict(layout, file.tree, net.params);
    const err = maxDiff(net.forward(params, io.x), io.logits);
    assert.ok(err < 1e-5, `${name}: logits differ from torch's by ${err}`);
    // And back: the same state dict, so the same bytes as the Python library wrote.
    const back = toTorchStateDict(layout, params);
    const bytes = Deno.readFileSync(new URL(`torch_${name}.safetensors`, FIX));
    assert.deepEqual(file.metadata, {});
    assert.deepEqual(encodeSafetensors(back), bytes, `${name}: our state dict bytes differ from torch's`);
  }
});

Deno.test("fromTorchStateDict / toTorchStateDict: names, layouts and errors", () => {
  const net = mlp([3, 4, 2], { seed: 0 });
  const sd = toTorchStateDict("mlp", net.params);
  assert.deepEqual(Object.keys(sd).sort(), ["0.bias", "0.weight", "2.bias", "2.weight"]);
  assert.deepEqual(sd["2.weight"].shape, [2, 4]);
  assert.deepEqual(
    Array.from(sd["0.weight"].dataSync()).slice(0, 3),
    [0, 1, 2].map((i) => net.params.layers[0].w.dataSync()[i * 4]),
  );
  const { params } = fromTorchStateDict("mlp", sd, net.params);
  assert.deepEqual(params.layers[1].w.dataSync(), net.params.layers[1].w.dataSync());
  const l = lenet({ seed: 0 });
  assert.deepEqual(Object.keys(toTorchStateDict("lenet", l.params)).sort(), [
    "conv1.bias",
    "conv1.weight",
    "conv2.bias",
    "conv2.weight",
    "fc.0.bias",
    "fc.0.weight",
    "fc.1.bias",
    "fc.1.weight",
    "fc.2.bias",
    "fc.2.weight",
  ]);
  assert.throws(
    () => fromTorchStateDict("mlp", { ...sd, extra: tensor(1) }, net.params),
    /keys the model does not: "extra".*strict: false/,
  );
  assert.equal(
    fromTorchStateDict("mlp", { ...sd, extra: tensor(1) }, net.params, undefined, { strict: false }).params
      .layers.length,
    2,
  );
  const { ["2.bias"]: _drop, ...missing } = sd;
  assert.throws(
    () => fromTorchStateDict("mlp", missing, net.params),
    /no "2\.bias" \(for our params "layers\.1\.b"\)/,
  );
  assert.throws(
    () => fromTorchStateDict("mlp", { ...sd, "0.weight": net.params.layers[0].w }, net.params),
    /"0\.weight" \(our "layers\.0\.w"\) has shape \[3, 4\], expected \[4, 3\] \(torch \[out, in\]/,
  );
  assert.throws(
    () => toTorchStateDict("mlp", l.params),
    /torch layout "mlp": unexpected parameter path "conv1\.b"/,
  );
  // A custom layout: a function of our path and shape.
  const custom = toTorchStateDict((p, s) => ({ name: `net.${p}`, transpose: s.length === 2 }), {
    w: net.params.layers[0].w,
  });
  assert.deepEqual(custom["net.w"].shape, [4, 3]);
  assert.throws(
    () => toTorchStateDict(() => ({ name: "same", transpose: false }), net.params),
    /both map to "same"/,
  );
});

/** Steps 5 and 6 with the gradients stored in a *_next file (torch layout). */
function continueRun(
  spec: TorchOptimizerSpec,
  rawParams: TensorTree,
  state: ChainState,
  next: Record<string, Tensor>,
) {
  const opt = spec.optimizer === "vsgd" ? vsgd(spec.options) : vadam(spec.options);
  for (const s of [5, 6]) {
    const sd: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(next)) {
      if (k.startsWith(`grad${s}.`)) sd[k.slice(`grad${s}.`.length)] = v;
    }
    const { params: grads } = fromTorchStateDict("mlp", sd, rawParams);
    const r = opt.update(grads, state, rawParams);
    rawParams = applyUpdates(rawParams, r.updates);
    state = r.state;
  }
  return { rawParams, state };
}

const TORCH_SPECS: [string, TorchOptimizerSpec][] = [
  ["vsgd", { optimizer: "vsgd", options: { lr: 0.1, momentum: 0.9, variability: 0.01, numIters: 3 } }],
  // Imported into exact mode: the weights lose torch's noise, ours is drawn from then on.
  ["vadam", {
    optimizer: "vadam",
    options: { lr: 0.01, amsgrad: true, variability: 0.01, numIters: 3, mode: "exact" },
  }],
];

Deno.test("the original VSGD/VAdam after 4 steps imports and continues to torch's weights and buffers", () => {
  for (const [name, spec] of TORCH_SPECS) {
    const model = load(`torch_${name}_model.safetensors`).tree;
    const optim = load(`torch_${name}_optim.safetensors`);
    const next = load(`torch_${name}_next.safetensors`).tree;
    const template = mlp(MLP_SIZES, { seed: 0 }).params;
    const { rawParams, state } = fromTorchOptimizerState(
      "mlp",
      { model, optimizer: optim.tree, metadata: optim.metadata },
      template,
      spec,
    );
    const base = state.inner[0] as TransformState;
    assert.equal(base.step, 4, name);
    assert.equal(hyperparams(state).lr, spec.options.lr, name);
    // The imported buffers are torch's, bit for bit, in our layout.
    const field = name === "vsgd" ? ["momentum", "momentum_buffer"] : ["v", "exp_avg_sq"];
    const imported = base.leaves["layers.0.w"].buffers[field[0]]!;
    assert.deepEqual(
      toTorchStateDict("mlp", { layers: [{ w: imported, b: tensor([0]) }] })["0.weight"].dataSync(),
      optim.tree[`0.weight.${field[1]}`].dataSync(),
    );
    // Two more steps with torch's gradients: step 6 is a noise reset, so no noise is left on either side.
    const after = continueRun(spec, rawParams, state, next);
    const ours = toTorchStateDict("mlp", after.rawParams);
    let err = 0;
    for (const k of Object.keys(ours)) err = Math.max(err, maxDiff(ours[k], next[`after6.${k}`]));
    assert.ok(err < 2e-6, `${name}: weights after step 6 differ from torch's by ${err}`);
    const b6 = after.state.inner[0] as TransformState;
    const pairs = name === "vsgd"
      ? [["momentum", "momentum_buffer"]]
      : [["m", "exp_avg"], ["v", "exp_avg_sq"], ["vmax", "max_exp_avg_sq"]];
    for (const [ours6, theirs] of pairs) {
      const t = toTorchStateDict("mlp", {
        layers: [{ w: b6.leaves["layers.1.w"].buffers[ours6]!, b: tensor([0]) }],
      })["0.weight"];
      const e = maxDiff(t, next[`state6.2.weight.${theirs}`]);
      assert.ok(e < 1e-6, `${name}: ${theirs} after step 6 differs by ${e}`);
    }
  }
});

Deno.test("export then import gives back the same state, in both modes; metadata holds the param group", () => {
  const exactVsgd: TorchOptimizerSpec = {
    optimizer: "vsgd",
    options: { lr: 0.1, momentum: 0.9, variability: 0.01, numIters: 3, seed: 7, mode: "exact" },
  };
  for (const spec of [VSGD_SPEC, VADAM_SPEC, exactVsgd]) {
    const net = mlp(MLP_SIZES, { seed: 3 });
    const opt = spec.optimizer === "vsgd" ? vsgd(spec.options) : vadam(spec.options);
    let params: TensorTree = net.params, state: ChainState = opt.init(net.params);
    // Step 0: no per-parameter state, as the original before its first step.
    assert.deepEqual(toTorchOptimizerState("mlp", params, state, spec).optimizer, {});
    for (let s = 1; s <= 2; s++) {
      const grads = fromTorchStateDict("mlp", toTorchStateDict("mlp", net.params), net.params).params;
      const r: { updates: TensorTree; state: ChainState } = opt.update(grads, state, params);
      params = applyUpdates(params, r.updates);
      state = r.state;
    }
    const ckpt = toTorchOptimizerState("mlp", params, state, spec);
    const group = JSON.parse(ckpt.metadata.param_group);
    assert.equal(group.num_iters, 3);
    assert.equal(group.noise_type, "Gaussian");
    assert.equal(ckpt.metadata.step, "2");
    assert.equal(ckpt.optimizer["0.weight.step"].dataSync()[0], 2);
    // Through the bytes, as it would go through files.
    const rt = (t: Record<string, Tensor>, m?: Record<string, string>) =>
      decodeSafetensors(encodeSafetensors(t, m));
    const o = rt(ckpt.optimizer, ckpt.metadata);
    const back = fromTorchOptimizerState(
      "mlp",
      { model: rt(ckpt.model).tree, optimizer: o.tree, metadata: o.metadata },
      net.params,
      spec,
    );
    const b0 = state.inner[0] as TransformState, b1 = back.state.inner[0] as TransformState;
    assert.equal(b1.step, 2);
    for (const path of Object.keys(b0.leaves)) {
      for (const [k, v] of Object.entries(b0.leaves[path].buffers)) {
        assert.deepEqual(
          b1.leaves[path].buffers[k]!.dataSync(),
          v!.dataSync(),
          `${spec.optimizer} ${path} ${k}`,
        );
      }
    }
    const n0 = state.inner[1] as TransformState, n1 = back.state.inner[1] as TransformState;
    for (const path of Object.keys(n0.leaves)) {
      assert.deepEqual(Object.keys(n1.leaves[path].buffers), Object.keys(n0.leaves[path].buffers));
      if (n0.leaves[path].buffers.noise) {
        assert.deepEqual(
          n1.leaves[path].buffers.noise!.dataSync(),
          n0.leaves[path].buffers.noise!.dataSync(),
        );
      }
    }
    // Official: the raw weights come back bit for bit; exact: (θ + n) − n, within rounding.
    const exact = spec.options.mode === "exact";
    const p0 = toTorchStateDict("mlp", params), p1 = toTorchStateDict("mlp", back.rawParams);
    for (const k of Object.keys(p0)) {
      const e = maxDiff(p0[k], p1[k]);
      assert.ok(exact ? e < 1e-7 : e === 0, `${spec.optimizer} ${k}: ${e}`);
    }
    // The imported state continues with the same optimizer.
    const r = opt.update(
      fromTorchStateDict("mlp", toTorchStateDict("mlp", net.params), net.params).params,
      back.state,
      back.rawParams,
    );
    assert.equal((r.state.inner[0] as TransformState).step, 3);
  }
});

Deno.test("a run that never resets (numIters Infinity) exports num_iters as Python's Infinity", () => {
  const spec: TorchOptimizerSpec = { optimizer: "vsgd", options: { lr: 0.1, numIters: Infinity } };
  const net = mlp([2, 2], { seed: 0 });
  const opt = vsgd(spec.options as VsgdOptions);
  const r = opt.update(fakeGrads(net.params, 1), opt.init(net.params), net.params);
  const ckpt = toTorchOptimizerState("mlp", applyUpdates(net.params, r.updates), r.state, spec);
  assert.match(ckpt.metadata.param_group, /"num_iters":Infinity,/); // json.loads reads it as inf
  const back = fromTorchOptimizerState("mlp", ckpt, net.params, spec);
  assert.equal((back.state.inner[0] as TransformState).step, 1);
});

Deno.test("fromTorchOptimizerState errors name the key and the problem", () => {
  const model = load("torch_vsgd_model.safetensors").tree;
  const optim = load("torch_vsgd_optim.safetensors");
  const template = mlp(MLP_SIZES, { seed: 0 }).params;
  const spec = TORCH_SPECS[0][1];
  const run = (o: Record<string, Tensor>, meta = optim.metadata, s: TorchOptimizerSpec = spec) =>
    fromTorchOptimizerState("mlp", { model, optimizer: o, metadata: meta }, template, s);
  assert.throws(
    () => run(optim.tree, optim.metadata, TORCH_SPECS[1][1]),
    /the checkpoint is for VSGD, the spec asks for VAdam/,
  );
  const { ["2.weight.noise1"]: _n, ...noNoise } = optim.tree;
  assert.throws(() => run(noNoise), /optimizer key "2\.weight\.noise1" is missing/);
  assert.throws(
    () => run({ ...optim.tree, "0.weight.exp_avg": optim.tree["0.weight.noise1"] }),
    /"0\.weight\.exp_avg" is not a VSGD field/,
  );
  assert.throws(
    () => run({ ...optim.tree, "0.bias.step": tensor([5], [], { dtype: "float64" }) }),
    /"0\.weight\.step" is 4 but "0\.bias\.step" is 5; one step for all/,
  );
  const { ["4.bias.step"]: _s, ...noStep } = optim.tree;
  assert.throws(() => run(noStep), /parameter "4\.bias" has no optimizer state but others do/);
  assert.throws(
    () => run({ ...optim.tree, "0.weight.noise1": tensor([1, 2]) }),
    /optimizer "0\.weight\.noise1" has shape \[2\], expected \[5, 6\]/,
  );
  assert.throws(
    () =>
      run(optim.tree, optim.metadata, {
        optimizer: "vsgd",
        options: { lr: 0.1, variability: 0.01, numIters: 3 },
      }),
    /"0\.bias\.momentum_buffer" is in the file but the options have no momentum/,
  );
});

const { ignore: noGpu } = await webgpuSuite("torch_interop_test", "safetensors on WebGPU");

Deno.test({
  name:
    "WebGPU: saveSafetensors reads GPU tensors; loads and torch maps place tensors on the template's device",
  ignore: noGpu,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "nvrm_st_gpu_" });
    try {
      const cpu = mlp([3, 4, 2], { seed: 1 }).params;
      const gpu = await toDevice(cpu, "webgpu");
      const path = `${dir}/gpu.safetensors`;
      await saveSafetensors(path, gpu, { device: "webgpu" });
      assert.deepEqual(await Deno.readFile(path), encodeSafetensors(cpu, { device: "webgpu" }));
      assert.throws(() => encodeSafetensors(gpu), /tensor "layers\.0\.w" is on webgpu; use saveSafetensors/);
      const back = (await loadSafetensors(path, gpu)).tree;
      assert.equal(back.layers[1].w.device, "webgpu");
      assert.deepEqual(await back.layers[1].w.data(), cpu.layers[1].w.dataSync());
      // From a (CPU) torch state dict into GPU params, and a GPU run exported to torch layout.
      const { params } = fromTorchStateDict("mlp", toTorchStateDict("mlp", cpu), gpu);
      assert.equal(params.layers[0].w.device, "webgpu");
      assert.deepEqual(await params.layers[0].w.data(), cpu.layers[0].w.dataSync());
      const opt = vsgd(VSGD_SPEC.options as VsgdOptions);
      let state = opt.init(gpu);
      const r = opt.update(await toDevice(fakeGrads(cpu, 1), "webgpu"), state, gpu);
      state = r.state;
      const ckpt = toTorchOptimizerState("mlp", applyUpdates(gpu, r.updates), state, VSGD_SPEC);
      await saveSafetensors(`${dir}/optim.safetensors`, ckpt.optimizer, ckpt.metadata);
      const o = await loadSafetensors(`${dir}/optim.safetensors`);
      assert.deepEqual(o.tree["0.weight.momentum_buffer"].shape, [4, 3]);
      const back2 = fromTorchOptimizerState(
        "mlp",
        { model: await toDevice(ckpt.model, "cpu"), optimizer: o.tree, metadata: o.metadata },
        gpu,
        VSGD_SPEC,
      );
      assert.equal(
        (back2.state.inner[0] as TransformState).leaves["layers.0.w"].buffers.momentum!.device,
        "webgpu",
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
