/**
 * GPU memory: 2,000 training steps with no growth in live GPU buffers (count and bytes of the pool
 * stay flat), reference-counted views, tidy scopes, `using`, fit, and the garbage-collection backstop.
 */
import assert from "node:assert/strict";
import { getBackend } from "../src/backend.ts";
import { valueAndGrad } from "../src/autodiff.ts";
import { tensor } from "../src/creation.ts";
import { mlp } from "../src/nn/mod.ts";
import { add, crossEntropy, exp, matmul, maxPool2d, mul, relu, reshape } from "../src/ops/mod.ts";
import { applyUpdates, vadam, vsgd } from "../src/optim/mod.ts";
import { observeTensorCreation, type Tensor } from "../src/tensor.ts";
import { makeDataset } from "../src/data/dataset.ts";
import { fit } from "../src/train/loop.ts";
import { dispose, tidy } from "../src/memory.ts";
import { webgpuStats } from "../src/webgpu/mod.ts";
import { webgpuSuite } from "./_webgpu.ts";

const { gpu, ignore } = await webgpuSuite("webgpu_memory_test", "webgpu memory");
const gc = (globalThis as { gc?: () => void }).gc;

const live = () => {
  const s = webgpuStats()!;
  return { buffers: s.liveBuffers, bytes: s.liveBytes };
};

/**
 * Collects garbage and lets the finalizers run (they return collected tensors' buffers to the pool),
 * so that a count taken next does not move when an earlier test's garbage is collected later.
 */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) {
    await new Promise((r) => setTimeout(r, 10));
    gc?.();
  }
  await new Promise((r) => setTimeout(r, 10));
}

Deno.test(
  { name: "webgpu memory: 2,000 VSGD training steps keep the live GPU buffers flat", ignore },
  async () => {
    const net = mlp([16, 32, 4], { seed: 0, device: "webgpu" });
    const opt = vsgd({ lr: 0.05, variability: 0.01, numIters: 50, momentum: 0.9 });
    let params = net.params;
    let state = opt.init(params);
    const vg = valueAndGrad((p: typeof params, x: Tensor, y: Int32Array) =>
      crossEntropy(net.forward(p, x), y)
    );
    const x = tensor(Float32Array.from({ length: 64 * 16 }, (_, i) => Math.sin(i)), [64, 16], {
      device: "webgpu",
    });
    const y = Int32Array.from({ length: 64 }, (_, i) => i % 4);
    let lossSum: Tensor | null = null;
    const checkpoints: { buffers: number; bytes: number; created: number }[] = [];
    for (let s = 1; s <= 2000; s++) {
      const perturbed = opt.perturb(params, state);
      const { value, grads } = vg(perturbed, x, y);
      const r = opt.update(grads, state, params);
      const next = applyUpdates(params, r.updates);
      const sum: Tensor = lossSum === null ? value : add(lossSum, value);
      dispose([params, state, grads, r.updates, value, perturbed, lossSum], [next, r.state, sum]);
      params = next;
      state = r.state;
      lossSum = sum;
      // Every 50 steps is a reset step (no noise buffers): compare like with like.
      if (s % 100 === 0) checkpoints.push({ ...live(), created: webgpuStats()!.created });
    }
    const mean = (await lossSum!.data())[0] / 2000;
    assert.ok(Number.isFinite(mean), `mean loss ${mean}`);
    const first = checkpoints[1];
    for (const [i, c] of checkpoints.slice(1).entries()) {
      assert.deepEqual(c, first, `checkpoint ${(i + 2) * 100}: live buffers/bytes/created changed`);
    }
  },
);

Deno.test({ name: "webgpu memory: VAdam steps in exact mode stay flat too", ignore }, () => {
  const net = mlp([8, 16, 3], { seed: 1, device: "webgpu" });
  const opt = vadam({ lr: 1e-2, variability: 0.01, numIters: 1000, mode: "exact", amsgrad: true });
  let params = net.params;
  let state = opt.init(params);
  const vg = valueAndGrad((p: typeof params, x: Tensor, y: Int32Array) => crossEntropy(net.forward(p, x), y));
  const x = tensor(Float32Array.from({ length: 32 * 8 }, (_, i) => Math.cos(i)), [32, 8], {
    device: "webgpu",
  });
  const y = Int32Array.from({ length: 32 }, (_, i) => i % 3);
  let base: { buffers: number; bytes: number } | null = null;
  for (let s = 1; s <= 300; s++) {
    const perturbed = opt.perturb(params, state);
    const { value, grads } = vg(perturbed, x, y);
    const r = opt.update(grads, state, params);
    const next = applyUpdates(params, r.updates);
    dispose([params, state, grads, r.updates, value, perturbed], [next, r.state]);
    params = next;
    state = r.state;
    if (s === 50) base = live();
    if (s > 50 && s % 50 === 0) assert.deepEqual(live(), base, `step ${s}`);
  }
});

Deno.test(
  { name: "webgpu memory: views share storage by reference count; release is idempotent", ignore },
  async () => {
    const before = live();
    const a = tensor([1, 2, 3, 4, 5, 6], [2, 3], { device: "webgpu" });
    const v = reshape(a, [3, 2]);
    const b = getBackend("webgpu");
    b.release(a);
    b.release(a); // idempotent
    assert.deepEqual(Array.from(await v.data()), [1, 2, 3, 4, 5, 6]);
    assert.throws(() => exp(a), /was released/);
    b.release(v);
    assert.deepEqual(live(), before);
  },
);

Deno.test({ name: "webgpu memory: tidy releases everything but its result", ignore }, async () => {
  const w = tensor([[1, -2], [3, 4]], undefined, { device: "webgpu" });
  // Earlier tests' garbage is collected now, not during the awaits below (which would lower the count).
  await settle();
  const before = live();
  const out = tidy(() => {
    const h = relu(matmul(w, w));
    return { y: mul(h, 2), z: [add(h, 1)] };
  });
  assert.equal(live().buffers, before.buffers + 2);
  assert.deepEqual(Array.from(await out.y.data()), [0, 0, 30, 20]);
  dispose(out);
  assert.deepEqual(live(), before);
  assert.throws(() => tidy(() => Promise.resolve(1) as unknown as number), /synchronous/);
  // A nested scope's result is the outer scope's: released unless the outer result holds it.
  const outer = tidy(() => {
    const inner = tidy(() => exp(relu(w)));
    return add(inner, 1);
  });
  assert.equal(live().buffers, before.buffers + 1);
  dispose(outer);
  assert.deepEqual(live(), before);
});

Deno.test(
  { name: "webgpu memory: `using` returns a tensor's buffer at the end of its block", ignore },
  async () => {
    const w = tensor([[1, -2], [3, 4]], undefined, { device: "webgpu" });
    const before = live();
    let total: Float32Array | null = null;
    let t: Tensor | null = null;
    {
      using sq = mul(w, w);
      t = sq;
      assert.equal(live().buffers, before.buffers + 1);
      total = await sq.data() as Float32Array;
    }
    assert.deepEqual(live(), before, "released at the end of the block");
    assert.ok(gpu!.isReleased(t!));
    t![Symbol.dispose](); // idempotent
    assert.deepEqual(live(), before);
    assert.deepEqual(Array.from(total!), [1, 4, 9, 16]);
    assert.throws(() => exp(t!), /was released/);
  },
);

Deno.test({
  name: "webgpu memory: collected tensors return their buffers to the pool (backstop)",
  ignore: ignore || !gc,
}, async () => {
  await settle();
  const before = live();
  (() => {
    for (let i = 0; i < 200; i++) exp(tensor([i, i + 1, i + 2], [3], { device: "webgpu" }));
  })();
  assert.ok(live().buffers > before.buffers, "allocated");
  await settle();
  assert.deepEqual(live(), before);
});

Deno.test(
  { name: "webgpu memory: no buffers left by a throwing function, forward-only ops or fit", ignore },
  async () => {
    const w = tensor([[1, -2], [3, 4]], undefined, { device: "webgpu" });
    const y = new Int32Array([0, 1]);
    crossEntropy(w, y); // caches the label upload (and leaves its loss, released below)
    const before = live();
    // intermediates of a call that throws are released
    assert.throws(
      () => valueAndGrad((p: { w: Tensor }) => reshape(relu(matmul(p.w, p.w)), [3]))({ w }),
      /cannot reshape/,
    );
    assert.deepEqual(live(), before, "after a throwing valueAndGrad");
    // outside a tape, only the results stay: crossEntropy's probabilities and maxPool2d's argmax go
    const loss = crossEntropy(w, y);
    const pooled = maxPool2d(reshape(w, [1, 1, 2, 2]), { kernel: 2 });
    assert.equal(live().buffers, before.buffers + 2, "the loss and the pooled output (the view shares w)");
    dispose([loss, pooled]);

    // fit releases every step's tensors itself (not left to the garbage collector): once its
    // results are disposed, every GPU tensor created during the run is released
    const n = 48, d = 6;
    const x = Float32Array.from({ length: n * d }, (_, i) => Math.sin(i));
    const train = makeDataset(x, Int32Array.from({ length: n }, (_, i) => i % 3), [d], 3);
    const net = mlp([d, 8, 3], { seed: 1, device: "webgpu" });
    const created: Tensor[] = [];
    const stop = observeTensorCreation((t) => created.push(t));
    let r;
    try {
      r = await fit({
        params: net.params,
        forward: net.forward,
        optimizer: vsgd({ lr: 0.1, variability: 0.01, numIters: 5, momentum: 0.9 }),
        train,
        epochs: 2,
        batchSize: 8,
        progressEvery: 1,
        logger: null,
      });
    } finally {
      stop();
    }
    dispose([net.params, r.params, r.rawParams, r.state]);
    const kept = created.filter((t) => t.device === "webgpu" && !gpu!.isReleased(t));
    assert.deepEqual(kept.map(String), [], "GPU tensors fit left alive");
  },
);

Deno.test(
  { name: "webgpu memory: fit keeps the live GPU buffers flat from epoch to epoch", ignore },
  async () => {
    const n = 60, d = 5;
    const x = Float32Array.from({ length: n * d }, (_, i) => Math.cos(i * 0.7));
    const train = makeDataset(x, Int32Array.from({ length: n }, (_, i) => i % 4), [d], 4);
    const test = makeDataset(x.slice(0, 20 * d), train.y.slice(0, 20), [d], 4);
    const net = mlp([d, 12, 4], { seed: 2, device: "webgpu" });
    const perEpoch: { buffers: number; bytes: number }[] = [];
    // 60 / 16: three full batches and a short one; numIters 4 = one epoch, so every epoch ends on
    // a reset step (no noise buffers in the state) and the epochs compare like with like.
    const r = await fit({
      params: net.params,
      forward: net.forward,
      optimizer: vsgd({ lr: 0.1, variability: 0.02, numIters: 4, momentum: 0.9 }),
      train,
      test,
      epochs: 6,
      batchSize: 16,
      evalBatchSize: 7,
      progressEvery: 1,
      logger: null,
      onEpoch: () => void perEpoch.push(live()),
    });
    assert.equal(perEpoch.length, 6);
    for (let e = 2; e < 6; e++) assert.deepEqual(perEpoch[e], perEpoch[1], `after epoch ${e + 1}`);
    assert.ok(r.history.every((m) => Number.isFinite(m.testLoss) && Number.isFinite(m.trainLoss)));
    dispose([r.params, r.rawParams, r.state]);
  },
);
