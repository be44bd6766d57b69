/**
 * WebGPU batch normalization with channels split over several workgroups
 * (`batchNormParts`, `kernels/wgsl/norm.ts`): the part-count rule, parity with the CPU on whole
 * and split channels (several parts, a shorter last part, N = 1, S = 1, S around the workgroup
 * size, odd sizes), the dispatch counts of each path, and the same bits on repeated runs.
 */
import assert from "node:assert/strict";
import { type Backend, getBackend } from "../src/backend.ts";
import "../src/cpu/backend.ts";
import type { Tensor } from "../src/tensor.ts";
import { valueAndGrad } from "../src/autodiff.ts";
import { batchNormTrain, mul, sum } from "../src/ops/mod.ts";
import { testRng } from "../src/webgpu/testing.ts";
import { webgpuStats } from "../src/webgpu/mod.ts";
import { BATCH_NORM_MAX_PARTS, BATCH_NORM_MIN_PART, batchNormParts } from "../src/webgpu/norm_ops.ts";
import { webgpuSuite } from "./_webgpu.ts";

const { gpu, ignore } = await webgpuSuite("webgpu_batchnorm_test", "webgpu batchnorm");
const cpu: Backend = getBackend("cpu");
const G = gpu as Backend;
const rng = testRng(1515);

const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const valuesPerChannel = (s: readonly number[]) => size(s) / s[1];

/** A CPU tensor and its GPU twin holding the same float32 data, uniform in [lo, hi). */
function pair(shape: readonly number[], lo: number, hi: number): [Tensor, Tensor] {
  const d = Float32Array.from({ length: size(shape) }, () => lo + (hi - lo) * rng());
  return [cpu.fromArray(d, shape, "float32"), G.fromArray(d, shape, "float32")];
}

/** |gpu − cpu| ≤ tol · max(1, max |cpu|) elementwise. */
async function close(who: string, g: Tensor, c: Tensor, tol: number): Promise<void> {
  assert.deepEqual(g.shape, c.shape, `${who}: shape`);
  const a = await g.data(), b = c.dataSync();
  let scale = 1;
  for (const v of b) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < b.length; i++) {
    if (!(Math.abs(a[i] - b[i]) <= tol * scale)) {
      assert.fail(`${who}: element ${i} of [${c.shape}]: gpu ${a[i]} vs cpu ${b[i]} (scale ${scale})`);
    }
  }
}

/** Dispatches encoded by `f`. */
function dispatchesOf<T>(f: () => T): [T, number] {
  const d0 = webgpuStats()!.dispatches;
  const r = f();
  return [r, webgpuStats()!.dispatches - d0];
}

/** Shapes and the parts their channels are split into (m = the values per channel). */
const CASES: [number[], number][] = [
  [[7, 3, 5, 5], 1], // short channels: one workgroup each
  [[33, 5], 1], // BatchNorm1d, short
  [[1, 3, 4, 4], 1], // N = 1, short
  [[2, 3, 17, 19], 1],
  [[3, 2, 67, 101], 4], // m = 20,301: parts of 5,076, the last 5,073; S > 256, odd
  [[20000, 3], 4], // BatchNorm1d (S = 1): each thread steps 256 whole rows
  [[1, 4, 130, 131], 4], // N = 1: the parts cut one plane
  [[37, 5, 257], 2], // S just over the workgroup: a carry on every step
  [[65, 2, 255], 4], // S just under it
  [[129, 1, 256], 8], // S = the workgroup size, one channel
  [[4100, 2, 3], 3], // S = 3, parts of 4,100 (not a multiple of S)
  [[2, 2, 4096], 2], // m = 8,192: the smallest split, parts of exactly one plane
  [[16, 40, 24, 24], 2], // many channels: 80 workgroups
];

Deno.test("webgpu batchnorm: the part count rule", () => {
  // ResNet-18 at batch 128 on 32×32 images, stage by stage
  assert.equal(batchNormParts(64, 128 * 32 * 32), 8);
  assert.equal(batchNormParts(128, 128 * 16 * 16), 4);
  assert.equal(batchNormParts(256, 128 * 8 * 8), 2);
  assert.equal(batchNormParts(512, 128 * 4 * 4), 1);
  assert.equal(batchNormParts(64, 2 * 32 * 32), 1);
  assert.equal(batchNormParts(1, 1e7), BATCH_NORM_MAX_PARTS);
  for (const [shape, parts] of CASES) assert.equal(batchNormParts(shape[1], valuesPerChannel(shape)), parts);
  // every part is at least BATCH_NORM_MIN_PART values, the last one included, and non-empty
  for (const C of [1, 2, 3, 7, 64, 100, 511, 512, 4096]) {
    for (let m = 1; m < 300_000; m = Math.ceil(m * 1.37) + 1) {
      const P = batchNormParts(C, m), L = Math.ceil(m / P);
      assert.ok(P >= 1 && P <= BATCH_NORM_MAX_PARTS && Number.isInteger(P), `C ${C} m ${m}: P ${P}`);
      if (P > 1) assert.ok(m - (P - 1) * L >= BATCH_NORM_MIN_PART / 2, `C ${C} m ${m}: last part of P ${P}`);
    }
  }
});

Deno.test(
  { name: "webgpu batchnorm: whole and split channels match the CPU, in 2 + 2 or 2 + 3 dispatches", ignore },
  async () => {
    for (const [shape, parts] of CASES) {
      const C = shape[1], who = `[${shape}] (${parts} parts)`;
      // an offset far from zero: the shifted sums keep the variance accurate
      const [xc, xg] = pair(shape, 48, 52), [gc, gg] = pair([C], 0.5, 1.5), [bc, bg] = pair([C], -1, 1);
      const rc = cpu.batchNormForward(xc, gc, bc, 1e-5);
      const [rg, fwd] = dispatchesOf(() => G.batchNormForward(xg, gg, bg, 1e-5));
      assert.equal(fwd, 2, `${who}: forward dispatches`);
      await close(`mean ${who}`, rg.mean, rc.mean, 2e-6);
      await close(`var ${who}`, rg.var, rc.var, 2e-5);
      await close(`y ${who}`, rg.y, rc.y, 5e-5);
      const [gyc, gyg] = pair(shape, -1, 1);
      const dc = cpu.batchNormBackward(xc, gc, rc, gyc, 1e-5);
      const [dg, bwd] = dispatchesOf(() => G.batchNormBackward(xg, gg, rg, gyg, 1e-5));
      assert.equal(bwd, parts === 1 ? 2 : 3, `${who}: backward dispatches`);
      await close(`gx ${who}`, dg.gx, dc.gx, 5e-5);
      await close(`gGamma ${who}`, dg.gGamma, dc.gGamma, 5e-5);
      await close(`gBeta ${who}`, dg.gBeta, dc.gBeta, 5e-5);
    }
  },
);

Deno.test(
  { name: "webgpu batchnorm: split channels give the same bits on repeated runs", ignore },
  async () => {
    for (const shape of [[3, 2, 67, 101], [20000, 3], [129, 1, 256]]) {
      const C = shape[1];
      const [, xg] = pair(shape, -3, 5), [, gg] = pair([C], 0.5, 1.5), [, bg] = pair([C], -1, 1);
      const [, gyg] = pair(shape, -1, 1);
      const bits = async () => {
        const f = G.batchNormForward(xg, gg, bg, 1e-5);
        const b = G.batchNormBackward(xg, gg, f, gyg, 1e-5);
        const out: number[][] = [];
        for (const t of [f.mean, f.var, f.y, b.gx, b.gGamma, b.gBeta]) {
          out.push([...new Uint32Array((await t.data()).slice().buffer)]);
        }
        return out;
      };
      const first = await bits();
      for (let r = 0; r < 3; r++) assert.deepEqual(await bits(), first, `[${shape}] run ${r + 1}`);
    }
  },
);

Deno.test(
  { name: "webgpu batchnorm: batchNormTrain gradients on split channels match the CPU", ignore },
  async () => {
    const shape = [5, 3, 41, 43]; // m = 8,815: 2 parts, the last one shorter
    assert.equal(batchNormParts(3, valuesPerChannel(shape)), 2);
    const [xc, xg] = pair(shape, -1, 2), [gc, gg] = pair([3], 0.5, 1.5), [bc, bg] = pair([3], -1, 1);
    const [rc, rg] = pair(shape, -1, 1);
    const loss = (r: Tensor) => (ps: Tensor[]) => sum(mul(batchNormTrain(ps[0], ps[1], ps[2]).y, r));
    const c = valueAndGrad(loss(rc))([xc, gc, bc]), g = valueAndGrad(loss(rg))([xg, gg, bg]);
    await close("loss", g.value, c.value, 1e-4);
    for (let k = 0; k < 3; k++) await close(`grad ${k}`, g.grads[k], c.grads[k], 5e-5);
  },
);
