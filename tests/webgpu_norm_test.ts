/**
 * WebGPU parity of the batch-norm kernels (statistics, normalization, per-channel sums, input
 * gradient) against the CPU backend on odd shapes, through the ops and autodiff, and of the
 * dropout mask drawn in-kernel: bit-identical to the CPU's.
 */
import assert from "node:assert/strict";
import { type Backend, getBackend } from "../src/backend.ts";
import "../src/cpu/backend.ts";
import type { Tensor } from "../src/tensor.ts";
import { tensor } from "../src/creation.ts";
import { valueAndGrad } from "../src/autodiff.ts";
import { batchNormInference, batchNormTrain, dropout, mul, sum } from "../src/ops/mod.ts";
import { testRng } from "../src/webgpu/testing.ts";
import { webgpuSuite } from "./_webgpu.ts";

const { gpu, ignore } = await webgpuSuite("webgpu_norm_test", "webgpu norm");
const cpu: Backend = getBackend("cpu");
const G = gpu as Backend;
const rng = testRng(4242);

const randArr = (n: number, lo = -1, hi = 1) =>
  Float32Array.from({ length: n }, () => lo + (hi - lo) * rng());
const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** A CPU tensor and its GPU twin holding the same float32 data. */
function pair(shape: readonly number[], lo = -1, hi = 1): [Tensor, Tensor] {
  const d = randArr(size(shape), lo, hi);
  return [cpu.fromArray(d, shape, "float32"), G.fromArray(d, shape, "float32")];
}

/** |gpu − cpu| ≤ tol · max(1, max |cpu|) elementwise. */
async function close(who: string, g: Tensor, c: Tensor, tol = 2e-5): Promise<void> {
  assert.deepEqual(g.shape, c.shape, `${who}: shape`);
  assert.equal(g.device, "webgpu");
  const a = await g.data(), b = c.dataSync();
  let scale = 1;
  for (const v of b) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < b.length; i++) {
    if (!(Math.abs(a[i] - b[i]) <= tol * scale)) {
      assert.fail(`${who}: element ${i} of [${c.shape}]: gpu ${a[i]} vs cpu ${b[i]} (scale ${scale})`);
    }
  }
}

const SHAPES = [[7, 3, 5, 5], [4, 64, 8, 8], [33, 5], [3, 300], [2, 3, 17, 19], [130, 2, 3, 3]];

Deno.test(
  { name: "webgpu norm: batch-norm forward and backward primitives match the CPU", ignore },
  async () => {
    for (const shape of SHAPES) {
      const C = shape[1], who = `[${shape}]`;
      const [xc, xg] = pair(shape, -2, 3), [gc, gg] = pair([C], 0.5, 1.5), [bc, bg] = pair([C]);
      const rc = cpu.batchNormForward(xc, gc, bc, 1e-5), rg = G.batchNormForward(xg, gg, bg, 1e-5);
      await close(`mean ${who}`, rg.mean, rc.mean);
      await close(`var ${who}`, rg.var, rc.var);
      await close(`y ${who}`, rg.y, rc.y, 5e-5);
      const [gyc, gyg] = pair(shape);
      const dc = cpu.batchNormBackward(xc, gc, rc, gyc, 1e-5),
        dg = G.batchNormBackward(xg, gg, rg, gyg, 1e-5);
      await close(`gx ${who}`, dg.gx, dc.gx, 5e-5);
      await close(`gGamma ${who}`, dg.gGamma, dc.gGamma, 5e-5);
      await close(`gBeta ${who}`, dg.gBeta, dc.gBeta, 5e-5);
    }
  },
);

Deno.test(
  { name: "webgpu norm: batchNormTrain/Inference through valueAndGrad match the CPU", ignore },
  async () => {
    for (const shape of [[7, 3, 5, 5], [4, 64, 8, 8]]) {
      const C = shape[1];
      const [xc, xg] = pair(shape, -1, 2), [gc, gg] = pair([C], 0.5, 1.5), [bc, bg] = pair([C]);
      const [rc, rg] = pair(shape);
      const loss = (r: Tensor) => (ps: Tensor[]) => sum(mul(batchNormTrain(ps[0], ps[1], ps[2]).y, r));
      const c = valueAndGrad(loss(rc))([xc, gc, bc]), g = valueAndGrad(loss(rg))([xg, gg, bg]);
      await close(`loss [${shape}]`, g.value, c.value, 1e-4);
      for (let k = 0; k < 3; k++) await close(`grad ${k} [${shape}]`, g.grads[k], c.grads[k], 5e-5);
      const [mc, mg] = pair([C]), [vc, vg] = pair([C], 0.2, 2);
      await close(
        `inference [${shape}]`,
        batchNormInference(xg, gg, bg, mg, vg),
        batchNormInference(xc, gc, bc, mc, vc),
        5e-5,
      );
    }
  },
);

Deno.test({ name: "webgpu norm: the dropout mask is bit-identical to the CPU's", ignore }, async () => {
  for (
    const [n, rate, seed, step, path] of [
      [1001, 0.5, 0, 0, "a"],
      [3, 0.1, 7, 12, "features.3"],
      [4096, 1 / 3, -5, 2 ** 32 - 1, "block.0.drop"],
      [70_001, 0.9, 123456789, 99, ""],
    ] as const
  ) {
    const d = randArr(n);
    const key = { seed, step, path };
    const yc = dropout(tensor(d, [n]), rate, key);
    const yg = dropout(tensor(d, [n], { device: "webgpu" }), rate, key);
    assert.equal(yg.device, "webgpu");
    assert.deepEqual([...(await yg.data())], [...yc.dataSync()], `n ${n} rate ${rate}`);
    // the mask itself, and the gradient g · mask
    const spec = {
      k0: seed >>> 0,
      k1: 1,
      c1: step,
      c2: 2,
      threshold: Math.ceil(rate * 2 ** 24),
      scale: 1.25,
    };
    assert.deepEqual(
      [...(await G.dropoutMask([n], "float32", spec).data())],
      [...cpu.dropoutMask([n], "float32", spec).dataSync()],
    );
    const gc = valueAndGrad((x: Tensor) => sum(dropout(x, rate, key)))(tensor(d, [n]));
    const gg = valueAndGrad((x: Tensor) => sum(dropout(x, rate, key)))(tensor(d, [n], { device: "webgpu" }));
    assert.deepEqual([...(await gg.grads.data())], [...gc.grads.dataSync()]);
  }
});
