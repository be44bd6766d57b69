/**
 * The experimental bind-group cache (`initWebGPU({ cacheBindGroups: true })`): training steps and
 * convolutions give the CPU's results, bind groups are reused step after step, and `trim` (which
 * destroys pooled buffers) forgets them first.
 */
import assert from "node:assert/strict";
import { valueAndGrad } from "../src/autodiff.ts";
import { getBackend } from "../src/backend.ts";
import { tensor } from "../src/creation.ts";
import { mlp } from "../src/nn/mod.ts";
import { conv2d, crossEntropy } from "../src/ops/mod.ts";
import { applyUpdates, vsgd } from "../src/optim/mod.ts";
import type { Tensor } from "../src/tensor.ts";
import { type TensorTree, treeLeaves } from "../src/tree.ts";
import { dispose } from "../src/memory.ts";
import { testRng } from "../src/webgpu/testing.ts";
import { webgpuSuite } from "./_webgpu.ts";

const { gpu, ignore } = await webgpuSuite("webgpu_bind_groups_test", "webgpu bind-group cache", {
  cacheBindGroups: true,
  force: true,
});
const rng = testRng(4242);

/** `steps` VSGD steps of a small MLP on `device` (`before(s)` ahead of step s); returns the final parameters. */
function train(device: "cpu" | "webgpu", steps: number, before?: (s: number) => void): TensorTree {
  const net = mlp([12, 24, 5], { seed: 3, device });
  const opt = vsgd({ lr: 0.05, variability: 0.01, numIters: 7, momentum: 0.9 });
  const vg = valueAndGrad((p: typeof net.params, x: Tensor, y: Int32Array) =>
    crossEntropy(net.forward(p, x), y)
  );
  const data = Float32Array.from({ length: 16 * 12 }, (_, i) => Math.sin(i * 0.37));
  const x = tensor(data, [16, 12], { device });
  const y = Int32Array.from({ length: 16 }, (_, i) => i % 5);
  let params = net.params;
  let state = opt.init(params);
  for (let s = 0; s < steps; s++) {
    before?.(s);
    const perturbed = opt.perturb(params, state);
    const { value, grads } = vg(perturbed, x, y);
    const r = opt.update(grads, state, params);
    const next = applyUpdates(params, r.updates);
    if (device === "webgpu") {
      dispose([params === net.params ? null : params, state, grads, r.updates, value, perturbed], [
        next,
        r.state,
        net.params,
      ]);
    }
    params = next;
    state = r.state;
  }
  return params;
}

async function assertTreesClose(g: TensorTree, c: TensorTree) {
  const lg = treeLeaves(g), lc = treeLeaves(c);
  assert.equal(lg.length, lc.length);
  for (let k = 0; k < lc.length; k++) {
    const a = await lg[k].tensor.data(), b = lc[k].tensor.dataSync();
    for (let i = 0; i < b.length; i++) {
      assert.ok(
        Math.abs(a[i] - b[i]) <= 1e-5 + 1e-4 * Math.abs(b[i]),
        `${lc[k].path}[${i}]: gpu ${a[i]} vs cpu ${b[i]}`,
      );
    }
  }
}

Deno.test(
  { name: "webgpu bind-group cache: VSGD training matches the CPU and reuses bind groups", ignore },
  async () => {
    const g = train("webgpu", 30);
    await assertTreesClose(g, train("cpu", 30));
    // Steady state: the pool hands out its oldest free buffer first, so a step's buffers recur with
    // a short period and, after the first steps, every dispatch but a noise reset's finds its bind
    // group. (Newest first, the arrangements recurred with long periods: 66% hits here, 65% on the
    // MLP's VSGD step, each miss a new bind group: ~100 µs for the merged optimizer dispatch.)
    let mid = gpu!.stats();
    train("webgpu", 60, (step) => void (step === 20 && (mid = gpu!.stats())));
    const s = gpu!.stats();
    const hits = s.bindGroupHits - mid.bindGroupHits, dispatches = s.dispatches - mid.dispatches;
    assert.ok(dispatches >= 40 * 5, `dispatches of steps 20…59: ${dispatches}`);
    // At most one miss per noise-reset step (numIters 7: steps 21, 28, …, 56 run other kernels).
    assert.ok(
      dispatches - hits <= 6,
      `bind-group hits of steps 20…59: ${hits} of ${dispatches} dispatches`,
    );
    assert.ok(s.bindGroups > 0 && s.bindGroups <= 4096, `cached bind groups: ${s.bindGroups} (cap 4096)`);
  },
);

Deno.test({
  name: "webgpu bind-group cache: convolutions match the CPU; trim forgets the bind groups",
  ignore,
}, async () => {
  const cpu = getBackend("cpu");
  const xd = Float32Array.from({ length: 2 * 3 * 9 * 9 }, () => rng() - 0.5);
  const wd = Float32Array.from({ length: 4 * 3 * 3 * 3 }, () => rng() - 0.5);
  const want = conv2d(
    cpu.fromArray(xd, [2, 3, 9, 9], "float32"),
    cpu.fromArray(wd, [4, 3, 3, 3], "float32"),
    {
      padding: 1,
    },
  ).dataSync();
  for (let round = 0; round < 2; round++) {
    const x = tensor(xd, [2, 3, 9, 9], { device: "webgpu" }),
      w = tensor(wd, [4, 3, 3, 3], { device: "webgpu" });
    const got = await conv2d(x, w, { padding: 1 }).data();
    for (let i = 0; i < want.length; i++) {
      assert.ok(Math.abs(got[i] - want[i]) <= 1e-5, `round ${round} [${i}]: gpu ${got[i]} vs cpu ${want[i]}`);
    }
    dispose([x, w]);
    // trim destroys the pooled buffers: the cache must not hand out bind groups that use them
    gpu!.trim();
    assert.equal(gpu!.stats().bindGroups, 0, "bind groups after trim");
  }
});
