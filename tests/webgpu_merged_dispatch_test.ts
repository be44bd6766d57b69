/**
 * Work of several arrays in one dispatch. The optimizer step (`src/webgpu/optim.ts`): the same bits
 * as one dispatch per array for every optimizer, noise law and mode, over a tree larger than one
 * dispatch holds; the dispatches it takes under several binding limits; and the order of the GPU
 * work kept when a merged step waits for its next array (a buffer released and handed out again,
 * another op reading its result, a read-back). The non-finite marks of `fit`'s guard
 * (`src/webgpu/finite.ts`): one dispatch per guard, the same guard word as one mark per array.
 */
import assert from "node:assert/strict";
import { add, matmul } from "../src/ops/mod.ts";
import { randn, tensor } from "../src/creation.ts";
import { dispose } from "../src/memory.ts";
import { adam, adamw, applyUpdates, type Optimizer, sgd, vadam, vsgd } from "../src/optim/mod.ts";
import type { OptimKernels } from "../src/optim/fused_ops.ts";
import { Tensor } from "../src/tensor.ts";
import { MAX_ARRAYS_PER_DISPATCH, webgpuOptimKernels } from "../src/webgpu/optim.ts";
import { webgpuFiniteKernels } from "../src/webgpu/finite.ts";
import { webgpuSuite } from "./_webgpu.ts";

const { gpu, ignore } = await webgpuSuite("webgpu_merged_dispatch_test", "webgpu merged dispatches");

/** Nine arrays (more than one dispatch holds), of sizes that leave partial Philox blocks. */
const SIZES: Record<string, number[]> = {
  a: [1],
  b: [3],
  c: [4],
  d: [5],
  e: [37, 13],
  f: [1001],
  g: [8],
  h: [2, 3, 7],
  i: [257],
};

function makeParams(seed: number): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  let s = seed;
  for (const [k, shape] of Object.entries(SIZES)) out[k] = randn(shape, { seed: s++, device: "webgpu" });
  return out;
}

/** Every tensor of a tree (state included), read back, in tree order. */
async function readAll(tree: unknown): Promise<Float32Array[]> {
  const found: Tensor[] = [];
  const walk = (v: unknown): void => {
    if (v instanceof Tensor) found.push(v);
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v !== null && typeof v === "object") {
      Object.keys(v).sort().forEach((k) => walk((v as Record<string, unknown>)[k]));
    }
  };
  walk(tree);
  const out: Float32Array[] = [];
  for (const t of found) out.push(await t.data() as Float32Array);
  return out;
}

/**
 * Three steps of `opt` (perturb, update, apply) with the optimizer kernels `k`: every update, state,
 * perturbed and new params, read back.
 */
async function train(opt: Optimizer<unknown>, k: OptimKernels): Promise<Float32Array[]> {
  const saved = gpu!.optim;
  gpu!.optim = k;
  try {
    let params: Record<string, Tensor> = makeParams(100);
    let state = opt.init(params);
    const seen: Float32Array[] = [];
    for (let step = 0; step < 3; step++) {
      const perturbed = opt.perturb(params, state) as Record<string, Tensor>;
      const grads = makeParams(200 + step);
      const r = opt.update(grads, state, params);
      const next = applyUpdates(params, r.updates) as Record<string, Tensor>;
      seen.push(...await readAll(perturbed), ...await readAll(r.updates), ...await readAll(r.state));
      seen.push(...await readAll(next));
      dispose([grads, r.updates, perturbed === params ? null : perturbed], [next, r.state, params, state]);
      params = next;
      state = r.state;
    }
    return seen;
  } finally {
    gpu!.optim = saved;
  }
}

const OPTIMIZERS: [string, () => Optimizer<unknown>][] = [
  ["sgd", () => sgd({ lr: 0.1 }) as Optimizer<unknown>],
  ["sgd momentum, nesterov, wd", () => sgd({ lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 1e-2 })],
  [
    "vsgd gaussian, momentum, wd",
    () => vsgd({ lr: 0.1, variability: 0.05, momentum: 0.9, weightDecay: 1e-3, seed: 3 }),
  ],
  [
    "vsgd laplace, reset every 2 steps",
    () => vsgd({ lr: 0.1, variability: 0.05, noise: "laplace", numIters: 2, seed: 4 }),
  ],
  [
    "vsgd uniform, exact mode",
    () => vsgd({ lr: 0.1, variability: 0.05, noise: "uniform", mode: "exact", seed: 5 }),
  ],
  ["adam", () => adam({ lr: 1e-2 }) as Optimizer<unknown>],
  ["adamw amsgrad", () => adamw({ lr: 1e-2, weightDecay: 1e-2, amsgrad: true }) as Optimizer<unknown>],
  ["vadam", () => vadam({ lr: 1e-2, variability: 0.02, seed: 6 })],
];

Deno.test(
  { name: "webgpu merged optimizer steps: the same bits as one dispatch per array", ignore },
  async () => {
    const max = gpu!.ctx.limits.maxStorageBuffersPerShaderStage;
    for (const [name, make] of OPTIMIZERS) {
      // The device's limit for all; WebGPU's default of 8 (two arrays per dispatch, or one) for two.
      for (const limit of name === "vsgd gaussian, momentum, wd" || name === "adam" ? [8, max] : [max]) {
        const single = await train(make(), webgpuOptimKernels(gpu!, limit, { coalesce: false }));
        const merged = await train(make(), webgpuOptimKernels(gpu!, limit, { coalesce: true }));
        assert.equal(merged.length, single.length, name);
        for (let t = 0; t < single.length; t++) {
          const [a, e] = [merged[t], single[t]];
          assert.equal(a.length, e.length, `${name}, tensor ${t}`);
          for (let i = 0; i < e.length; i++) {
            if (!Object.is(a[i], e[i])) {
              assert.fail(
                `${name}, ${limit} bindings, tensor ${t} [${i}]: merged ${a[i]}, one per array ${e[i]}`,
              );
            }
          }
        }
      }
    }
  },
);

Deno.test(
  { name: "webgpu merged optimizer steps: as many arrays per dispatch as the bindings allow", ignore },
  () => {
    const max = gpu!.ctx.limits.maxStorageBuffersPerShaderStage;
    const params = makeParams(1), grads = makeParams(2);
    const opt = sgd({ lr: 0.1 }) as Optimizer<unknown>; // 4 bindings per array: G, Pp; Uo, PNew
    const n = Object.keys(SIZES).length;
    const perDispatch = (limit: number) =>
      Math.max(1, Math.min(MAX_ARRAYS_PER_DISPATCH, Math.floor(limit / 4)));
    const saved = gpu!.optim;
    try {
      for (const [limit, coalesce] of [[max, true], [8, true], [4, true], [max, false]] as const) {
        gpu!.optim = webgpuOptimKernels(gpu!, limit, { coalesce });
        const c0 = gpu!.stats().dispatches;
        const r = opt.update(grads, opt.init(params), params);
        const used = gpu!.stats().dispatches - c0;
        const expected = coalesce ? Math.ceil(n / perDispatch(limit)) : n;
        assert.equal(used, expected, `${n} arrays, ${limit} bindings, merged ${coalesce}`);
        dispose(r.updates);
      }
    } finally {
      gpu!.optim = saved;
    }
    dispose([params, grads]);
  },
);

Deno.test(
  { name: "webgpu merged optimizer steps: a waiting step runs before whatever comes next", ignore },
  async () => {
    const K = webgpuOptimKernels(gpu!, undefined, { coalesce: true });
    // A buffer the waiting step reads, released and handed out again as the next array's output:
    // the next array must not join the dispatch (it would overwrite what the first one reads).
    const g1 = tensor([1, 2, 3, 4], [4], { device: "webgpu" });
    const g2 = tensor([10, 20, 30, 40], [4], { device: "webgpu" });
    const first = K.sgd({
      g: g1,
      p: null,
      buf: null,
      useMomentum: false,
      lr: 0.5,
      momentum: 0,
      dampening: 0,
      weightDecay: 0,
      nesterov: false,
    });
    const reused = (g1.storage as { buffer: GPUBuffer }).buffer;
    dispose(g1); // its buffer goes back to the pool, the next output of 4 floats takes it
    const second = K.sgd({
      g: g2,
      p: null,
      buf: null,
      useMomentum: false,
      lr: 1,
      momentum: 0,
      dampening: 0,
      weightDecay: 0,
      nesterov: false,
    });
    assert.equal(
      (second.u.storage as { buffer: GPUBuffer }).buffer,
      reused,
      "the released buffer was reused",
    );
    // Another op on a waiting result, then a read-back.
    const shifted = add(second.u, tensor([1, 1, 1, 1], [4], { device: "webgpu" }));
    assert.deepEqual(Array.from(await first.u.data()), [-0.5, -1, -1.5, -2]);
    assert.deepEqual(Array.from(await second.u.data()), [-10, -20, -30, -40]);
    assert.deepEqual(Array.from(await shifted.data()), [-9, -19, -29, -39]);
    // A waiting step followed by a matmul reading its update, with no read-back in between.
    const w = tensor([1, 2, 3, 4], [2, 2], { device: "webgpu" });
    const r = sgd({ lr: 1 }).update({ w }, sgd({ lr: 1 }).init({ w }), { w }) as { updates: { w: Tensor } };
    const prod = matmul(r.updates.w, tensor([1, 0, 0, 1], [2, 2], { device: "webgpu" }));
    assert.deepEqual(Array.from(await prod.data()), [-1, -2, -3, -4]);
    await gpu!.sync(); // no GPU error (a buffer bound both read and written in one dispatch is one)
    dispose([first.u, second.u, g2, shifted, w, r.updates, prod]);
  },
);

Deno.test(
  { name: "webgpu merged non-finite marks: one dispatch per guard, the smallest code marked wins", ignore },
  async () => {
    const k = webgpuFiniteKernels(gpu!, { merge: true });
    // One dispatch for the 9 arrays where 10 storage bindings are allowed (the guard and the arrays).
    const one = Math.ceil(9 / Math.min(16, gpu!.ctx.limits.maxStorageBuffersPerShaderStage - 1));
    const arrays = Object.values(SIZES).map((shape, i) => {
      const n = shape.reduce((a, b) => a * b, 1);
      const d = Float32Array.from({ length: n }, (_, j) => j - i);
      // NaN, +Inf or -Inf at the end, in the middle or at the start of arrays 2, 4, 5 and 8.
      if (i === 2) d[n - 1] = NaN;
      if (i === 4) d[n >> 1] = Infinity;
      if (i === 5) d[0] = -Infinity;
      if (i === 8) d[n - 1] = NaN;
      return tensor(d, shape, { device: "webgpu" });
    });
    const codes = [40, 31, 12, 9, 7, 3, 11, 2, 5];
    const guardWord = async (pick: (i: number) => boolean) => {
      const guard = tensor([0, 0], [2], { device: "webgpu" });
      const c0 = gpu!.stats().dispatches;
      arrays.forEach((x, i) => pick(i) && k.mark(x, guard, codes[i]));
      const used = gpu!.stats().dispatches - c0;
      const w = new Uint32Array((await guard.data() as Float32Array).buffer)[0];
      dispose(guard);
      return { code: w === 0 ? null : 0xffffffff - w, used };
    };
    // All nine (in one dispatch); the marked arrays are 2, 4, 5, 8 with codes 12, 7, 3, 5 → 3.
    assert.deepEqual(await guardWord(() => true), { code: 3, used: one });
    // Without array 5: 5 (array 8, the last one of the dispatch); one array alone: its own code.
    assert.deepEqual(await guardWord((i) => i !== 5), { code: 5, used: one });
    for (const i of [2, 4, 8]) assert.deepEqual(await guardWord((j) => j === i), { code: codes[i], used: 1 });
    // Only finite arrays: the guard stays 0.
    assert.deepEqual(await guardWord((i) => ![2, 4, 5, 8].includes(i)), { code: null, used: one });
    // Two guards alternating: one dispatch each time the guard changes.
    const [g1, g2] = [tensor([0, 0], [2], { device: "webgpu" }), tensor([0, 0], [2], { device: "webgpu" })];
    const c0 = gpu!.stats().dispatches;
    k.mark(arrays[0], g1, 1);
    k.mark(arrays[2], g1, 2);
    k.mark(arrays[4], g2, 3);
    k.mark(arrays[8], g1, 4);
    assert.equal(gpu!.stats().dispatches - c0, 3);
    const word = async (g: Tensor) =>
      0xffffffff - new Uint32Array((await g.data() as Float32Array).buffer)[0];
    assert.equal(await word(g1), 2);
    assert.equal(await word(g2), 3);
    // Not merged: one dispatch per mark, the same guard word.
    const single = webgpuFiniteKernels(gpu!, { merge: false });
    const guard = tensor([0, 0], [2], { device: "webgpu" });
    const c1 = gpu!.stats().dispatches;
    arrays.forEach((x, i) => single.mark(x, guard, codes[i]));
    assert.equal(gpu!.stats().dispatches - c1, arrays.length);
    assert.equal(await word(guard), 3);
    dispose([arrays, g1, g2, guard]);
  },
);
