/**
 * The fused fully connected op `fusedLinear` (act(x·w + b) in one op): on the CPU its values and
 * gradients equal the separate `relu(add(matmul(x, w), b))` bit for bit (float32 and float64, with
 * and without bias and ReLU, NaN and −0 included); a float64 finite-difference gradient check; the
 * argument errors; on WebGPU its kernels (bias + ReLU epilogue, the masked input gradient, the
 * weight gradient with the bias gradient as an extra row) against the CPU on sizes that are not
 * multiples of the tiles or of 4, and the dispatches each direction costs.
 */
import assert from "node:assert/strict";
import { valueAndGrad } from "../src/autodiff.ts";
import { getBackend } from "../src/backend.ts";
import { randn, tensor } from "../src/creation.ts";
import { dispose } from "../src/memory.ts";
import { add, matmul, mul, relu, sum } from "../src/ops/mod.ts";
import { fusedLinear } from "../src/ops/linear.ts";
import type { Tensor } from "../src/tensor.ts";
import type { DType } from "../src/types.ts";
import { toDevice } from "../src/webgpu/mod.ts";
import { testRng } from "../src/webgpu/testing.ts";
import { assertClose, gradcheck, rnd } from "./_gradcheck.ts";
import { webgpuSuite } from "./_webgpu.ts";

const { gpu, ignore } = await webgpuSuite("fused_linear_test", "fused linear");

type Act = "none" | "relu";
const unfused = (x: Tensor, w: Tensor, b: Tensor | null, act: Act) => {
  const z = b ? add(matmul(x, w), b) : matmul(x, w);
  return act === "relu" ? relu(z) : z;
};
const fused = (x: Tensor, w: Tensor, b: Tensor | null, act: Act) => fusedLinear(x, w, b, { activation: act });

/** The output and the gradients of Σ f(x, w, b)·r with respect to x, w (and b). */
function valueAndGrads(
  f: typeof fused,
  x: Tensor,
  w: Tensor,
  b: Tensor | null,
  act: Act,
  r: Tensor,
): { y: Tensor; grads: Tensor[] } {
  const inputs = b ? [x, w, b] : [x, w];
  const { grads } = valueAndGrad((xs: Tensor[]) => sum(mul(f(xs[0], xs[1], xs[2] ?? null, act), r)))(inputs);
  return { y: f(x, w, b, act), grads };
}

/** Bits of a float array, to compare NaN and −0 exactly. */
const bits = (t: Tensor) => Array.from(t.dataSync());

Deno.test("fusedLinear on the CPU: the same values and gradients as relu(add(matmul(x, w), b))", () => {
  const rng = testRng(11);
  for (const dtype of ["float32", "float64"] as DType[]) {
    for (const [n, k, m] of [[5, 7, 3], [8, 16, 12], [1, 1, 1], [33, 20, 9]]) {
      for (const act of ["none", "relu"] as Act[]) {
        for (const withBias of [true, false]) {
          const mk = (shape: number[]) =>
            tensor(Array.from({ length: shape.reduce((a, c) => a * c, 1) }, () => 4 * rng() - 2), shape, {
              dtype,
            });
          const x = mk([n, k]), w = mk([k, m]), b = withBias ? mk([m]) : null, r = mk([n, m]);
          const a = valueAndGrads(fused, x, w, b, act, r), e = valueAndGrads(unfused, x, w, b, act, r);
          const label = `${dtype} ${n}×${k}·${k}×${m} ${act}${withBias ? " +b" : ""}`;
          assert.deepEqual(bits(a.y), bits(e.y), `${label}: y`);
          a.grads.forEach((g, i) => assert.deepEqual(bits(g), bits(e.grads[i]), `${label}: grad ${i}`));
        }
      }
    }
  }
});

Deno.test("fusedLinear on the CPU: NaN, ±Infinity and −0 pass through as in the separate ops", () => {
  const x = tensor([[Number.NaN, 1], [0, -0], [Infinity, 1], [1, 1]]);
  const w = tensor([[1, -1], [0, 0]]);
  const b = tensor([-0, -1]);
  const r = tensor([[1, 1], [1, 1], [1, 1], [Infinity, 1]]);
  for (const act of ["none", "relu"] as Act[]) {
    const a = valueAndGrads(fused, x, w, b, act, r), e = valueAndGrads(unfused, x, w, b, act, r);
    assert.deepEqual(bits(a.y), bits(e.y), `${act}: y`);
    a.grads.forEach((g, i) => assert.deepEqual(bits(g), bits(e.grads[i]), `${act}: grad ${i}`));
  }
});

Deno.test("fusedLinear: float64 finite-difference gradient check", () => {
  for (const [n, k, m] of [[3, 4, 5], [6, 2, 3]]) {
    const x = rnd([n, k], 1), w = rnd([k, m], 2), b = rnd([m], 3);
    gradcheck(`linear ${n}×${k}·${k}×${m}`, (xx, ww, bb) => fusedLinear(xx, ww, bb), [x, w, b]);
    gradcheck(`linear ${n}×${k}·${k}×${m} no bias`, (xx, ww) => fusedLinear(xx, ww), [x, w]);
    // ReLU: the seeded pre-activations are far from the kink compared with the step h.
    const z = add(matmul(x, w), b).dataSync();
    assert.ok(z.every((v) => Math.abs(v) > 1e-3), `${n}×${k}·${k}×${m}: a pre-activation near 0`);
    gradcheck(
      `linear+relu ${n}×${k}·${k}×${m}`,
      (xx, ww, bb) => fusedLinear(xx, ww, bb, { activation: "relu" }),
      [
        x,
        w,
        b,
      ],
    );
  }
});

Deno.test("fusedLinear: argument errors name the op, the argument and the shapes", () => {
  const x = randn([2, 3]), w = randn([3, 4]);
  assert.throws(
    () => fusedLinear(x, randn([4, 4])),
    /fusedLinear: x \[2, 3\] has 3 features, w \[4, 4\] expects 4/,
  );
  assert.throws(() => fusedLinear(randn([3]), w), /fusedLinear: x must be \[N, in\] and w \[in, out\]/);
  assert.throws(() => fusedLinear(x, w, randn([3])), /fusedLinear: b must be \[4\]/);
  assert.throws(
    () => fusedLinear(x, w, null, { activation: "tanh" as Act }),
    /fusedLinear: activation must be "none" or "relu", got "tanh"/,
  );
  assert.throws(() => fusedLinear(x, randn([3, 4], { dtype: "float64" })), /cannot mix dtypes/);
});

Deno.test({ name: "fusedLinear on WebGPU: values and gradients match the CPU", ignore }, async () => {
  const rng = testRng(5);
  // Not multiples of 4 or of the tiles, multiples of 4 (the vec4 paths), and the MLP's shapes.
  const cases = [[7, 5, 3], [16, 8, 12], [33, 65, 17], [128, 784, 256], [128, 256, 10], [3, 4, 1]];
  for (const [n, k, m] of cases) {
    for (const act of ["none", "relu"] as Act[]) {
      for (const withBias of [true, false]) {
        const mk = (shape: number[]) =>
          tensor(Array.from({ length: shape.reduce((a, c) => a * c, 1) }, () => 2 * rng() - 1), shape);
        const x = mk([n, k]), w = mk([k, m]), b = withBias ? mk([m]) : null, r = mk([n, m]);
        const e = valueAndGrads(fused, x, w, b, act, r);
        const [xg, wg, bg, rg] = await toDevice([x, w, b ?? x, r], "webgpu");
        const a = valueAndGrads(fused, xg, wg, withBias ? bg : null, act, rg);
        const label = `${n}×${k}·${k}×${m} ${act}${withBias ? " +b" : ""}`;
        const tol = { atol: 1e-5 * Math.sqrt(Math.max(k, n)), rtol: 1e-4 };
        assertClose(await a.y.data(), e.y.dataSync(), { ...tol, msg: `${label}: y` });
        for (let i = 0; i < e.grads.length; i++) {
          assertClose(await a.grads[i].data(), e.grads[i].dataSync(), { ...tol, msg: `${label}: grad ${i}` });
        }
        dispose([xg, wg, bg, rg, a.y, a.grads]);
      }
    }
  }
});

Deno.test({ name: "fusedLinear on WebGPU: gradients asked for one at a time", ignore }, async () => {
  const x = randn([9, 6], { seed: 1 }), w = randn([6, 5], { seed: 2 }), b = randn([5], { seed: 3 });
  const cpu = getBackend("cpu"), G = gpu!;
  const y = cpu.linear(x, w, b, "relu"), g = randn([9, 5], { seed: 4 });
  const all = cpu.linearGrad(x, w, y, g, { x: true, w: true, b: true });
  const [xg, wg, yg, gg] = await toDevice([x, w, y, g], "webgpu");
  for (
    const needs of [{ x: true, w: false, b: false }, { x: false, w: true, b: false }, {
      x: false,
      w: false,
      b: true,
    }]
  ) {
    const r = G.linearGrad(xg, wg, yg, gg, needs);
    for (const key of ["x", "w", "b"] as const) {
      const got = r[`g${key}`];
      if (!needs[key]) {
        assert.equal(got, null, `${JSON.stringify(needs)}: g${key} not computed`);
        continue;
      }
      assertClose(await got!.data(), all[`g${key}`]!.dataSync(), { atol: 1e-5, rtol: 1e-5, msg: `g${key}` });
      G.release(got!);
    }
  }
  dispose([xg, wg, yg, gg]);
});

Deno.test({ name: "fusedLinear on WebGPU: one dispatch forward, two backward", ignore }, async () => {
  const x = randn([128, 784], { seed: 1, device: "webgpu" });
  const w = randn([784, 256], { seed: 2, device: "webgpu" }), b = randn([256], { seed: 3, device: "webgpu" });
  const w2 = randn([256, 10], { seed: 4, device: "webgpu" });
  let before = gpu!.stats().dispatches;
  const y = fusedLinear(x, w, b, { activation: "relu" });
  assert.equal(gpu!.stats().dispatches - before, 1, "forward: matmul + bias + relu");
  const g = randn([128, 256], { seed: 5, device: "webgpu" });
  before = gpu!.stats().dispatches;
  const r = gpu!.linearGrad(x, w, y, g, { x: true, w: true, b: true });
  assert.equal(gpu!.stats().dispatches - before, 2, "backward: gx, then gw with gb");
  // Through the tape: the data needs no gradient, so the first layer's backward is one dispatch.
  const vg = valueAndGrad((p: { w: Tensor; b: Tensor; w2: Tensor }) =>
    sum(fusedLinear(fusedLinear(x, p.w, p.b, { activation: "relu" }), p.w2))
  );
  before = gpu!.stats().dispatches;
  const out = vg({ w, b, w2 });
  // forward 2 + sum 1; backward: the sum's gradient 1, layer 2 (gx; gw) 2, layer 1 (gw with gb) 1.
  assert.equal(gpu!.stats().dispatches - before, 7, "two fused layers under valueAndGrad");
  await gpu!.sync();
  dispose([x, w, b, w2, y, g, r.gx, r.gw, r.gb, out.value, out.grads]);
});
