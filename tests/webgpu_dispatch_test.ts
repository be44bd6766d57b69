/**
 * Host overhead on WebGPU: the bind-group cache's default by adapter (a pure rule, checked on crafted
 * adapter infos, and on the adapter at hand), the exact number of dispatches of one MLP training step
 * (so that a change that adds dispatches fails here), the host time the encoder reports, and the
 * kernels that made the step shorter (the one-dispatch mean cross-entropy, the shared constant 1
 * that seeds each backward pass) against the CPU.
 */
import assert from "node:assert/strict";
import { valueAndGrad } from "../src/autodiff.ts";
import { type Backend, getBackend } from "../src/backend.ts";
import "../src/cpu/backend.ts";
import { randn } from "../src/creation.ts";
import { dispose } from "../src/memory.ts";
import { mlp } from "../src/nn/mod.ts";
import { crossEntropy } from "../src/ops/mod.ts";
import { applyUpdates, type Optimizer, sgd } from "../src/optim/mod.ts";
import type { UpdateResult } from "../src/optim/types.ts";
import type { Tensor } from "../src/tensor.ts";
import type { TensorTree } from "../src/tree.ts";
import { type AdapterInfoLike, chooseBindGroupCache, isSoftwareAdapter } from "../src/webgpu/device.ts";
import { CE_MEAN_MAX_ELEMENTS } from "../kernels/wgsl/softmax.ts";
import { testRng } from "../src/webgpu/testing.ts";
import { webgpuSuite } from "./_webgpu.ts";

const { gpu, ignore } = await webgpuSuite("webgpu_dispatch_test", "webgpu dispatches");

/** Adapter infos as Deno reports them (lavapipe: seen here) or as the other runtimes name them. */
const SOFTWARE: Record<string, AdapterInfoLike> = {
  "lavapipe (Deno on Mesa)": {
    vendor: "65541",
    architecture: "",
    device: "0",
    description: "llvmpipe (LLVM 15.0.6, 256 bits)",
    isFallbackAdapter: true,
  },
  "llvmpipe without the fallback flag": { vendor: "65541", description: "llvmpipe (LLVM 19.1.7, 256 bits)" },
  "lavapipe by name only": { architecture: "lavapipe" },
  "SwiftShader (Chrome)": {
    vendor: "google",
    architecture: "swiftshader",
    description: "SwiftShader Device",
  },
  "SwiftShader Subzero": { description: "SwiftShader Device (Subzero)" },
  "WARP (D3D12)": { vendor: "microsoft", description: "Microsoft Basic Render Driver" },
  "fallback flag only": { vendor: "", isFallbackAdapter: true },
};
const HARDWARE: Record<string, AdapterInfoLike> = {
  "NVIDIA H200 (Deno on Vulkan)": {
    vendor: "4318",
    architecture: "",
    device: "8989",
    description: "NVIDIA H200",
  },
  "NVIDIA (Chrome)": { vendor: "nvidia", architecture: "hopper", isFallbackAdapter: false },
  "AMD": { vendor: "4098", description: "AMD Radeon RX 7900 XTX (RADV NAVI31)" },
  "Apple": { vendor: "apple", architecture: "metal-3" },
  "Intel integrated": { vendor: "intel", architecture: "gen-12lp", description: "Intel(R) Xe Graphics" },
  "a runtime that reports nothing": {},
  "a name that only contains 'warp' inside a word": { description: "Warpspeed Accelerator 9000" },
};

Deno.test("webgpu adapters: software adapters are recognised from GPUAdapterInfo", () => {
  for (const [name, info] of Object.entries(SOFTWARE)) assert.equal(isSoftwareAdapter(info), true, name);
  for (const [name, info] of Object.entries(HARDWARE)) assert.equal(isSoftwareAdapter(info), false, name);
});

Deno.test("webgpu adapters: the bind-group cache is on for hardware, off for software, unless asked", () => {
  for (const [name, info] of Object.entries(SOFTWARE)) {
    assert.equal(chooseBindGroupCache(info), false, name);
    assert.equal(chooseBindGroupCache(info, true), true, `${name}, asked for true`);
  }
  for (const [name, info] of Object.entries(HARDWARE)) {
    assert.equal(chooseBindGroupCache(info), true, name);
    assert.equal(chooseBindGroupCache(info, false), false, `${name}, asked for false`);
  }
});

Deno.test(
  { name: "webgpu dispatches: the adapter at hand gets its default bind-group cache", ignore },
  () => {
    const s = gpu!.stats();
    assert.equal(s.bindGroupCache, !gpu!.ctx.software, gpu!.ctx.description);
    if (/llvmpipe|lavapipe/i.test(gpu!.ctx.description)) {
      assert.equal(gpu!.ctx.software, true, "lavapipe is a software adapter");
      assert.equal(s.bindGroupCache, false, "so the cache is off by default");
    }
  },
);

/**
 * Dispatches of one SGD step of the label-noise MLP 784-256-256-10 at batch 128:
 *
 *   forward   3 × (matmul, bias add) + 2 ReLU + 1 cross-entropy (probabilities and mean loss) = 9
 *   seed      0 (the gradient 1 of the loss is a view of the backend's constant 1)
 *   backward  cross-entropy gradient 1; per layer a bias-gradient row sum and the weight gradient
 *             (3 + 3); the input gradients of layers 2 and 3 (2; the data needs none); the ReLU
 *             gradients, a step mask and a product each (2 × 2)                              = 13
 *   update    per parameter array (6): the fused SGD kernel and applyUpdates' addScaled     = 12
 *
 * 34 in all (36 before the cross-entropy and the seed stopped costing a dispatch each).
 */
const MLP_SGD_STEP_DISPATCHES = 34;

Deno.test(
  { name: "webgpu dispatches: one MLP SGD training step takes exactly 34 dispatches", ignore },
  async () => {
    const model = mlp([784, 256, 256, 10], { seed: 0, device: "webgpu" });
    const x = randn([128, 784], { seed: 1, device: "webgpu" });
    const y = Int32Array.from({ length: 128 }, (_, i) => i % 10);
    const opt = sgd({ lr: 0.01 }) as Optimizer<unknown>;
    const vg = valueAndGrad((p: TensorTree, xb: Tensor) =>
      crossEntropy(model.forward(p as typeof model.params, xb), y)
    );
    let params: TensorTree = model.params;
    let state: unknown = opt.init(params);
    const counts: number[] = [], micros: number[] = [];
    for (let s = 0; s < 3; s++) {
      const before = gpu!.stats();
      const perturbed: TensorTree = opt.perturb(params, state);
      const { value, grads } = vg(perturbed, x);
      const r: UpdateResult<TensorTree, unknown> = opt.update(grads, state, params);
      const next: TensorTree = applyUpdates(params, r.updates);
      const after = gpu!.stats();
      counts.push(after.dispatches - before.dispatches);
      micros.push(after.encodeMicros - before.encodeMicros);
      dispose([params === model.params ? null : params, state, grads, r.updates, value, perturbed], [
        next,
        r.state,
        model.params,
      ]);
      params = next;
      state = r.state;
    }
    await gpu!.sync();
    dispose([params, state, model.params, x]);
    assert.deepEqual(counts, [MLP_SGD_STEP_DISPATCHES, MLP_SGD_STEP_DISPATCHES, MLP_SGD_STEP_DISPATCHES]);
    for (const us of micros) assert.ok(us > 0 && us < 5e6, `host µs encoding each step: ${micros}`);
  },
);

Deno.test(
  { name: "webgpu dispatches: the seed 1 is shared without a dispatch and survives its releases", ignore },
  async () => {
    const G = gpu as Backend;
    const before = gpu!.stats();
    const ones = [[], [1], [1, 1]].map((shape) => G.fill(shape, 1, "float32"));
    const after = gpu!.stats();
    assert.equal(after.dispatches - before.dispatches, 0, "dispatches");
    assert.equal(after.liveBuffers, before.liveBuffers, "no new buffer");
    for (const t of ones) G.release(t);
    const again = G.fill([], 1, "float32");
    assert.deepEqual(Array.from(await again.data()), [1]);
    assert.deepEqual(Array.from(await G.fill([2], 1, "float32").data()), [1, 1], "longer fills are real");
  },
);

Deno.test(
  {
    name: "webgpu dispatches: the one-dispatch cross-entropy and the two-dispatch one match the CPU",
    ignore,
  },
  async () => {
    const G = gpu as Backend, cpu = getBackend("cpu");
    const rng = testRng(777);
    // 128×10: one workgroup; 520×512 (past CE_MEAN_MAX_ELEMENTS): per-row losses, then their sum.
    for (const [n, c] of [[128, 10], [300, 7], [520, 512]]) {
      const d = Float32Array.from({ length: n * c }, () => 10 * rng() - 5);
      const labels = Int32Array.from({ length: n }, () => Math.floor(rng() * c));
      const before = gpu!.stats().dispatches;
      const rg = G.crossEntropy(G.fromArray(d, [n, c], "float32"), labels);
      const used = gpu!.stats().dispatches - before;
      assert.equal(used, n * c <= CE_MEAN_MAX_ELEMENTS ? 1 : 2, `dispatches of crossEntropy ${n}×${c}`);
      const rc = cpu.crossEntropy(cpu.fromArray(d, [n, c], "float32"), labels);
      const [lg, lc] = [(await rg.loss.data())[0], rc.loss.dataSync()[0]];
      assert.ok(Math.abs(lg - lc) <= 1e-5 * Math.abs(lc) + 1e-6, `loss ${n}×${c}: gpu ${lg} vs cpu ${lc}`);
      const pg = await rg.probs.data(), pc = rc.probs.dataSync();
      for (let i = 0; i < pc.length; i++) {
        assert.ok(
          Math.abs(pg[i] - pc[i]) <= 1e-7 + 1e-5 * pc[i],
          `probs ${n}×${c} [${i}]: ${pg[i]} vs ${pc[i]}`,
        );
      }
    }
  },
);
