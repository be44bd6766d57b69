/**
 * Host overhead on WebGPU: the bind-group cache's default by adapter (a pure rule, checked on crafted
 * adapter infos, and on the adapter at hand), the exact number of dispatches of one MLP and one
 * LeNet training step by phase (so that a change that adds dispatches fails here), the host time the encoder reports,
 * and the kernels that made the step shorter (the one-dispatch mean cross-entropy, the shared
 * constant 1 that seeds each backward pass, the optimizer step that applies its own update)
 * against the CPU or the unfused path.
 */
import assert from "node:assert/strict";
import { valueAndGrad } from "../src/autodiff.ts";
import { type Backend, getBackend } from "../src/backend.ts";
import "../src/cpu/backend.ts";
import { randn, tensor } from "../src/creation.ts";
import { dispose, tidy } from "../src/memory.ts";
import { lenet, mlp } from "../src/nn/mod.ts";
import { crossEntropy } from "../src/ops/mod.ts";
import { adam, applyUpdates, type Optimizer, sgd, vadam, vsgd } from "../src/optim/mod.ts";
import type { UpdateResult } from "../src/optim/types.ts";
import type { OptimKernels } from "../src/optim/fused_ops.ts";
import type { Tensor } from "../src/tensor.ts";
import type { TensorTree } from "../src/tree.ts";
import {
  type AdapterInfoLike,
  chooseBindGroupCache,
  chooseMergeArrays,
  isSoftwareAdapter,
} from "../src/webgpu/device.ts";
import { CE_MEAN_MAX_ELEMENTS } from "../kernels/wgsl/softmax.ts";
import { testRng } from "../src/webgpu/testing.ts";
import { MAX_ARRAYS_PER_DISPATCH, webgpuOptimKernels } from "../src/webgpu/optim.ts";
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

Deno.test("webgpu adapters: the bind-group cache and merged arrays: on for hardware, off for software, unless asked", () => {
  for (const choose of [chooseBindGroupCache, chooseMergeArrays]) {
    for (const [name, info] of Object.entries(SOFTWARE)) {
      assert.equal(choose(info), false, `${choose.name}: ${name}`);
      assert.equal(choose(info, true), true, `${choose.name}: ${name}, asked for true`);
    }
    for (const [name, info] of Object.entries(HARDWARE)) {
      assert.equal(choose(info), true, `${choose.name}: ${name}`);
      assert.equal(choose(info, false), false, `${choose.name}: ${name}, asked for false`);
    }
  }
});

Deno.test(
  {
    name: "webgpu dispatches: the adapter at hand gets its default bind-group cache and array merging",
    ignore,
  },
  () => {
    const s = gpu!.stats();
    assert.equal(s.bindGroupCache, !gpu!.ctx.software, gpu!.ctx.description);
    assert.equal(s.mergeArrays, !gpu!.ctx.software, gpu!.ctx.description);
    if (/llvmpipe|lavapipe/i.test(gpu!.ctx.description)) {
      assert.equal(gpu!.ctx.software, true, "lavapipe is a software adapter");
      assert.equal(s.bindGroupCache, false, "so the cache is off by default");
      assert.equal(s.mergeArrays, false, "and so is merging");
    }
  },
);

/**
 * Dispatches of one SGD step of the label-noise MLP 784-256-256-10 at batch 128:
 *
 *   forward   3 fused linear layers (matmul + bias + ReLU in one kernel; the last without ReLU)
 *             + 1 cross-entropy (probabilities and mean loss)                                  = 4
 *   seed      0 (the gradient 1 of the loss is a view of the backend's constant 1)
 *   backward  cross-entropy gradient 1; per layer the weight gradient with the bias gradient as
 *             one extra row (3), the ReLU's mask applied as the gradient is loaded; the input
 *             gradients of layers 2 and 3 (2; the data needs none)                             = 6
 *   update    the fused SGD kernel, which also writes params + update, so that applyUpdates
 *             dispatches nothing: over all 6 parameter arrays at once with `mergeArrays` (4
 *             storage bindings each; the default on hardware adapters)                        = 1
 *             or one dispatch per array without it (the default on software adapters)         = 6
 *
 * 11 in all merged, 16 not (34 before the fused linear layers and the applied update, 36 before
 * the cross-entropy and the seed stopped costing a dispatch each).
 */
const MLP_SGD_STEP = { forward: 4, backward: 6, update: 1, apply: 0 };
const MLP_SGD_STEP_DISPATCHES = 11;
const MLP_SGD_STEP_PER_ARRAY = { forward: 4, backward: 6, update: 6, apply: 0 };

for (const merged of [true, false]) {
  Deno.test(
    {
      name: `webgpu dispatches: one MLP SGD training step takes exactly ${merged ? 11 : 16} dispatches ${
        merged ? "with merged arrays" : "with one optimizer dispatch per array"
      }`,
      ignore,
    },
    () => withOptim(webgpuOptimKernels(gpu!, undefined, { coalesce: merged }), () => mlpStep(merged)),
  );
}

/** Runs `fn` with the optimizer kernels `k` on the GPU backend. */
async function withOptim(k: OptimKernels, fn: () => Promise<void>): Promise<void> {
  const saved = gpu!.optim;
  gpu!.optim = k;
  try {
    await fn();
  } finally {
    gpu!.optim = saved;
  }
}

/** Three MLP SGD steps, counting the dispatches of each phase. */
async function mlpStep(merged: boolean): Promise<void> {
  const model = mlp([784, 256, 256, 10], { seed: 0, device: "webgpu" });
  const x = randn([128, 784], { seed: 1, device: "webgpu" });
  const { steps, micros } = await sgdStepPhases(model, x);
  // Merged: as many of the 6 arrays per dispatch as the device's storage bindings allow (4 each).
  const perDispatch = Math.min(
    MAX_ARRAYS_PER_DISPATCH,
    Math.floor(gpu!.ctx.limits.maxStorageBuffersPerShaderStage / 4),
  );
  const expected = merged ? { ...MLP_SGD_STEP, update: Math.ceil(6 / perDispatch) } : MLP_SGD_STEP_PER_ARRAY;
  assert.deepEqual(steps, [expected, expected, expected]);
  const total = steps[0].forward + steps[0].backward + steps[0].update + steps[0].apply;
  if (perDispatch >= 6) assert.equal(total, merged ? MLP_SGD_STEP_DISPATCHES : 16);
  for (const us of micros) assert.ok(us > 0 && us < 5e6, `host µs encoding each step: ${micros}`);
}

/**
 * Three SGD steps of `model` on the batch `x` (labels i mod 10), counting the dispatches of each
 * phase (the forward alone, counted apart, then the rest of valueAndGrad, update, applyUpdates) and
 * the host µs encoding each step; releases the model and `x`.
 */
async function sgdStepPhases<P extends TensorTree>(
  model: { params: P; forward: (p: P, x: Tensor) => Tensor },
  x: Tensor,
): Promise<{ steps: Record<string, number>[]; micros: number[] }> {
  const y = Int32Array.from({ length: x.shape[0] }, (_, i) => i % 10);
  const opt = sgd({ lr: 0.01 }) as Optimizer<unknown>;
  const loss = (p: TensorTree, xb: Tensor) => crossEntropy(model.forward(p as P, xb), y);
  const vg = valueAndGrad(loss);
  let params: TensorTree = model.params;
  let state: unknown = opt.init(params);
  const steps: Record<string, number>[] = [], micros: number[] = [];
  for (let s = 0; s < 3; s++) {
    const count = gpu!.stats().dispatches;
    const at = () => gpu!.stats().dispatches;
    const perturbed: TensorTree = opt.perturb(params, state);
    const forward = loss(perturbed, x); // the forward alone, counted apart, then released
    const c0 = at();
    dispose(forward);
    const before = gpu!.stats();
    const { value, grads } = vg(perturbed, x);
    const c1 = at();
    const r: UpdateResult<TensorTree, unknown> = opt.update(grads, state, params);
    const c2 = at();
    const next: TensorTree = applyUpdates(params, r.updates);
    const after = gpu!.stats();
    steps.push({
      forward: c0 - count,
      backward: c1 - before.dispatches - (c0 - count),
      update: c2 - c1,
      apply: after.dispatches - c2,
    });
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
  return { steps, micros };
}

/**
 * Dispatches of one SGD step of LeNet on 3×32×32 at batch 128 (the bench's `lenet` workload):
 *
 *   forward   2 convolutions with their bias and ReLU in the kernel (2), 2 max pools (2), 3 fused
 *             linear layers (3), the cross-entropy (1)                                         = 8
 *   backward  cross-entropy gradient 1; the linear layers' weight-and-bias gradients (3) and input
 *             gradients (3); the pools' gradients (2); conv2: its input gradient (1) and its
 *             weight gradient with the bias gradient as a column of ones, then its split parts
 *             summed into both (2); conv1 the same but no input gradient (2); the ReLUs' masks
 *             applied as the gradient products load gy (0)                                    = 14
 *   update    10 parameter arrays: one dispatch each, or merged as the bindings allow (8 arrays
 *             at 4 storage bindings each under lavapipe's 32: 2)                              = 10 / 2
 *
 * 32 per array, 24 merged (42 and 34 before the convolutions' bias and ReLU moved into their
 * kernels: each layer had its bias add, ReLU, ReLU gradient and a two-pass bias-gradient sum).
 */
const LENET_SGD_STEP_PER_ARRAY = { forward: 8, backward: 14, update: 10, apply: 0 };

for (const merged of [false, true]) {
  Deno.test(
    {
      name: `webgpu dispatches: one LeNet SGD training step, ${
        merged ? "merged arrays" : "one dispatch per array"
      }`,
      ignore,
    },
    () =>
      withOptim(webgpuOptimKernels(gpu!, undefined, { coalesce: merged }), async () => {
        const model = lenet({ inputShape: [3, 32, 32], seed: 0, device: "webgpu" });
        const x = randn([128, 3, 32, 32], { seed: 1, device: "webgpu" });
        const { steps } = await sgdStepPhases(model, x);
        const perDispatch = Math.min(
          MAX_ARRAYS_PER_DISPATCH,
          Math.floor(gpu!.ctx.limits.maxStorageBuffersPerShaderStage / 4),
        );
        const expected = merged
          ? { ...LENET_SGD_STEP_PER_ARRAY, update: Math.ceil(10 / perDispatch) }
          : LENET_SGD_STEP_PER_ARRAY;
        assert.deepEqual(steps, [expected, expected, expected]);
        const total = Object.values(steps[0]).reduce((a, b) => a + b, 0);
        if (perDispatch === 8) assert.equal(total, merged ? 24 : 32);
      }),
  );
}

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

/** The second update of `opt` on GPU params, applied: the new params and the dispatches of update and apply. */
function stepOnce(opt: Optimizer<unknown>, params: Record<string, Tensor>, seed: number) {
  const grads = {
    w: randn([37, 13], { seed, device: "webgpu" }),
    b: randn([13], { seed: seed + 1, device: "webgpu" }),
  };
  // The second step: the moments, momentum and old noise exist then (the most bindings).
  const first = opt.update(grads, opt.init(params), params);
  const state = first.state;
  dispose(first.updates);
  const c0 = gpu!.stats().dispatches;
  const r = opt.update(grads, state, params);
  const c1 = gpu!.stats().dispatches;
  const next = applyUpdates(params, r.updates) as Record<string, Tensor>;
  const c2 = gpu!.stats().dispatches;
  dispose([grads, state]);
  return { next, updates: r.updates as Record<string, Tensor>, update: c1 - c0, apply: c2 - c1 };
}

Deno.test(
  { name: "webgpu dispatches: the optimizer step applies its own update, as applyUpdates would", ignore },
  async () => {
    const params = {
      w: randn([37, 13], { seed: 1, device: "webgpu" }),
      b: randn([13], { seed: 2, device: "webgpu" }),
    };
    // Under WebGPU's default limit of 8 storage buffers per stage, and under the device's own;
    // merging the two arrays' steps into one dispatch, and not (one dispatch per array).
    const deviceMax = gpu!.ctx.limits.maxStorageBuffersPerShaderStage;
    // name, optimizer, bindings limit, applied in the step, storage bindings per array
    const cases: [string, Optimizer<unknown>, number, boolean, number][] = [];
    for (const max of [8, deviceMax]) {
      cases.push(
        ["sgd", sgd({ lr: 0.1 }) as Optimizer<unknown>, max, true, 4], // G, Pp; Uo, PNew
        [
          "sgd momentum, wd, nesterov",
          sgd({ lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 1e-2 }),
          max,
          true,
          6, // G, Pp, Buf; Uo, BufO, PNew
        ],
        [
          "vsgd",
          vsgd({ lr: 0.1, variability: 0.05, momentum: 0.9, weightDecay: 1e-3, seed: 3 }),
          max,
          true,
          8, // G, Pp, Buf, NOld; Uo, BufO, NOut, PNew
        ],
        ["adam", adam({ lr: 1e-2 }) as Optimizer<unknown>, max, true, 8], // G, M, V, Pp; Uo, MO, VO, PNew
        // 8 bindings already (G, M, V, NOld; Uo, MO, VO, NOut): room for the parameter and its sum
        // only past the default limit.
        ["vadam", vadam({ lr: 1e-2, variability: 0.02, seed: 4 }), max, max >= 10, max >= 10 ? 10 : 8],
      );
    }
    const saved = gpu!.optim;
    try {
      for (const [name, opt, max, fused, perArray] of cases) {
        gpu!.optim = webgpuOptimKernels(gpu!, max, { coalesce: false });
        const single = stepOnce(opt, params, 10);
        assert.equal(single.update, 2, `${name}, ${max} bindings, not merged: one dispatch per array`);
        dispose([single.next, single.updates]);
        gpu!.optim = webgpuOptimKernels(gpu!, max, { coalesce: true });
        const r = stepOnce(opt, params, 10);
        const merged = 2 * perArray <= max ? 1 : 2;
        assert.equal(r.update, merged, `${name}, ${max} bindings: both arrays in ${merged} dispatch(es)`);
        // Otherwise applyUpdates adds both arrays in one dispatch (A, B; Uo: 3 bindings each).
        assert.equal(r.apply, fused ? 0 : 1, `${name}, ${max} bindings: dispatches of applyUpdates`);
        // The same sum through addScaled's own dispatch: the entry was taken, so this one computes.
        const again = applyUpdates(params, r.updates) as Record<string, Tensor>;
        for (const k of ["w", "b"] as const) {
          const a = await r.next[k].data(), e = await again[k].data();
          for (let i = 0; i < e.length; i++) {
            // Bit for bit on lavapipe; a driver may contract p + (−lr·d) into one fma: an ulp apart.
            assert.ok(
              Object.is(a[i], e[i]) || Math.abs(a[i] - e[i]) <= 1.2e-7 * Math.abs(e[i]),
              `${name} ${k}[${i}]: applied in the step ${a[i]}, by addScaled ${e[i]}`,
            );
          }
        }
        dispose([r.next, r.updates, again]);
      }
    } finally {
      gpu!.optim = saved;
    }
    dispose(params);
  },
);

Deno.test(
  {
    name: "webgpu dispatches: an update applied elsewhere than where it was made is computed afresh",
    ignore,
  },
  async () => {
    const params = { w: tensor([1, 2, 3, 4], [4], { device: "webgpu" }) };
    const other = { w: tensor([10, 20, 30, 40], [4], { device: "webgpu" }) };
    const opt = sgd({ lr: 0.5 }) as Optimizer<unknown>;
    const grads = { w: tensor([1, 1, 1, 1], [4], { device: "webgpu" }) };
    const state = opt.init(params);
    // Other params than the update saw: a dispatch, and their own sum.
    let r = opt.update(grads, state, params);
    let c = gpu!.stats().dispatches;
    const moved = applyUpdates(other, r.updates) as typeof other;
    assert.equal(gpu!.stats().dispatches - c, 1);
    assert.deepEqual(Array.from(await moved.w.data()), [9.5, 19.5, 29.5, 39.5]);
    dispose([r.updates, moved]);
    // The update made inside a tidy that kept only the updates: the sum was released with the scope.
    const live = gpu!.stats().liveBuffers;
    const kept = tidy(() => opt.update(grads, state, params).updates);
    assert.equal(gpu!.stats().liveBuffers, live + 1, "only the update survives the scope");
    c = gpu!.stats().dispatches;
    const later = applyUpdates(params, kept) as typeof params;
    assert.equal(gpu!.stats().dispatches - c, 1);
    assert.deepEqual(Array.from(await later.w.data()), [0.5, 1.5, 2.5, 3.5]);
    // Without the params, the step cannot apply itself.
    r = opt.update(grads, state);
    c = gpu!.stats().dispatches;
    const plain = applyUpdates(params, r.updates) as typeof params;
    assert.equal(gpu!.stats().dispatches - c, 1);
    assert.deepEqual(Array.from(await plain.w.data()), [0.5, 1.5, 2.5, 3.5]);
    // A device allowing too few storage bindings: the step does not apply itself.
    const saved = gpu!.optim;
    try {
      gpu!.optim = webgpuOptimKernels(gpu!, 3);
      r = opt.update(grads, state, params);
      c = gpu!.stats().dispatches;
      const small = applyUpdates(params, r.updates) as typeof params;
      assert.equal(gpu!.stats().dispatches - c, 1);
      assert.deepEqual(Array.from(await small.w.data()), [0.5, 1.5, 2.5, 3.5]);
      dispose([small, r.updates]);
    } finally {
      gpu!.optim = saved;
    }
    dispose([params, other, grads, kept, later, plain]);
  },
);

Deno.test(
  { name: "webgpu dispatches: a number operand travels in the uniforms, not as a filled tensor", ignore },
  async () => {
    const G = gpu as Backend, cpu = getBackend("cpu");
    const d = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i) * 3);
    const x = G.fromArray(d, [10, 100], "float32"), xc = cpu.fromArray(d, [10, 100], "float32");
    // Every op with a number on either side: one dispatch each, the CPU's values bit for bit.
    for (const op of ["add", "sub", "mul", "div", "maximum", "minimum", "pow"] as const) {
      for (
        const [v, left] of [[0.1, false], [-2.5, true], [0, false], [NaN, true], [1e-30, false]] as const
      ) {
        const c0 = gpu!.stats().dispatches;
        const s = G.fill(left ? [] : [1, 1], v, "float32");
        const y = left ? G.binary(op, s, x, [10, 100]) : G.binary(op, x, s, [10, 100]);
        assert.equal(gpu!.stats().dispatches - c0, 1, `${op} with ${v}: dispatches`);
        const sc = cpu.fill(left ? [] : [1, 1], v, "float32");
        const e = (left ? cpu.binary(op, sc, xc, [10, 100]) : cpu.binary(op, xc, sc, [10, 100])).dataSync();
        const a = await y.data();
        for (let i = 0; i < e.length; i++) {
          assert.ok(
            Object.is(a[i], e[i]) || Math.abs(a[i] - e[i]) <= 1e-6 * Math.abs(e[i]),
            `${op}(${left ? `${v}, x` : `x, ${v}`})[${i}]: ${a[i]} vs ${e[i]}`,
          );
        }
        // The constant itself, read or used by another kernel afterwards, is filled then.
        assert.deepEqual(Array.from(await s.data()), [Math.fround(v)]);
        G.release(y);
      }
    }
    // Used first by another kernel (here exp, then a product with a number on both sides): filled.
    const s = G.fill([], 2, "float32");
    const [e2] = await G.unary("exp", s).data();
    assert.ok(Math.abs(e2 - Math.exp(2)) <= 1e-6 * Math.exp(2), `exp(2) on the GPU: ${e2}`);
    const both = G.binary("mul", G.fill([], 3, "float32"), G.fill([1], 4, "float32"), [1]);
    assert.deepEqual(Array.from(await both.data()), [12]);
    // Released before any use: back to the pool unfilled, no dispatch, no error.
    const c0 = gpu!.stats().dispatches;
    G.release(G.fill([], 7, "float32"));
    assert.equal(gpu!.stats().dispatches - c0, 0);
    await gpu!.sync();
  },
);

/**
 * Dispatches of one SGD-momentum training step of ResNet-18 (the original CIFAR model; narrow
 * widths here, the same dispatches as the full one): 20 convolutions forward, 20 weight and 19 input
 * gradients; 20 batch norms at 2 dispatches forward and 2 backward (whole channels at this batch;
 * 3 backward where a channel is split), and 2 `axpby` for their running statistics; of the 17
 * ReLUs, the 9 after a batch norm (the stem's bn1, each block's bn1) run inside the batch-norm
 * kernels forward and backward (0 dispatches), and the 8 after a residual sum are one add + ReLU
 * kernel forward (instead of an add and a relu) and one ReLU-gradient kernel backward; the
 * optimizer's 62 arrays (13 dispatches merged 5 by 5 under lavapipe's 32 storage bindings: the
 * merged figure below; fewer where the device allows more) and the rest. 308 (259 merged) before
 * the ReLUs were fused (9·2 + 8 fewer), 485 before the number operands moved into the uniforms,
 * ReLU's gradient became one kernel and the running statistics one axpby.
 */
const RESNET18_STEP_DISPATCHES = { perArray: 282, merged: 233 };

Deno.test({ name: "webgpu dispatches: one ResNet-18 SGD-momentum step", ignore }, async () => {
  const { resnet18 } = await import("../src/nn/resnet.ts");
  const { valueAndGradWithAux } = await import("../src/autodiff.ts");
  const model = resnet18({ widths: [4, 8, 8, 8], seed: 0, device: "webgpu" });
  const x = randn([2, 3, 32, 32], { seed: 1, device: "webgpu" });
  const y = Int32Array.from([3, 7]);
  const vg = valueAndGradWithAux((p: typeof model.params, s: typeof model.state, xb: Tensor, k: number) => {
    const r = model.apply(p, s, xb, { training: true, step: k });
    return { value: crossEntropy(r.y, y), aux: r.state };
  });
  // Merged, the 62 arrays' SGD-momentum steps (6 storage bindings each) go out as many per dispatch as the
  // device allows (lavapipe's 32: 5, so 13 dispatches instead of 62).
  const perDispatch = Math.min(
    MAX_ARRAYS_PER_DISPATCH,
    Math.floor(gpu!.ctx.limits.maxStorageBuffersPerShaderStage / 6),
  );
  const mergedCount = RESNET18_STEP_DISPATCHES.perArray - 62 + Math.ceil(62 / perDispatch);
  if (gpu!.ctx.limits.maxStorageBuffersPerShaderStage === 32) {
    assert.equal(mergedCount, RESNET18_STEP_DISPATCHES.merged);
  }
  for (const merged of [false, true]) {
    await withOptim(webgpuOptimKernels(gpu!, undefined, { coalesce: merged }), async () => {
      const opt = sgd({ lr: 0.01, momentum: 0.9 }) as Optimizer<unknown>;
      let params: TensorTree = model.params, state: unknown = opt.init(params), ms: TensorTree = model.state;
      const used: number[] = [];
      for (let k = 0; k < 2; k++) { // the second step: the momentum buffers exist
        const c0 = gpu!.stats().dispatches;
        const next = tidy(() => {
          const { value, grads, aux } = vg(params as typeof model.params, ms as typeof model.state, x, k);
          const r = opt.update(grads, state, params);
          return { params: applyUpdates(params, r.updates), state: r.state, ms: aux, value };
        });
        used.push(gpu!.stats().dispatches - c0);
        dispose(
          [params === model.params ? null : params, state, ms === model.state ? null : ms, next.value],
          [
            model.params,
            model.state,
          ],
        );
        ({ params, state, ms } = next);
      }
      assert.equal(
        used[1],
        merged ? mergedCount : RESNET18_STEP_DISPATCHES.perArray,
        `merged ${merged}: ${used}`,
      );
      await gpu!.sync(); // the steps ran, not only encoded
      dispose([params, state, ms]);
    });
  }
  await gpu!.sync();
  dispose([model.params, model.state, x]);
});
