/**
 * The fused convolution `fusedConv2d` (act(conv2d(x, w) + b) in one op, what `nn.conv2d` and LeNet
 * run): on the CPU its values and gradients equal the separate
 * `relu(add(conv2d(x, w), reshape(b, [1, O, 1, 1])))` bit for bit (float32 and float64, with and
 * without bias and ReLU, NaN, ±Infinity and −0 included), and so does `conv2d` with a bias; a
 * float64 finite-difference gradient check; the argument errors; on WebGPU its kernels (bias and
 * ReLU in the convolution's epilogue, gy masked by the ReLU's step as the gradient products load it,
 * the bias gradient as a column of ones of the weight gradient's product, split or not) against the
 * CPU on strides, paddings, odd channel counts and batches > 1, a NaN input propagating as on the
 * CPU, and the dispatches each direction costs.
 */
import assert from "node:assert/strict";
import { valueAndGrad } from "../src/autodiff.ts";
import { getBackend } from "../src/backend.ts";
import { randn, tensor } from "../src/creation.ts";
import { dispose } from "../src/memory.ts";
import { add, conv2d, mul, relu, reshape, sum } from "../src/ops/mod.ts";
import { fusedConv2d } from "../src/ops/conv.ts";
import type { Tensor } from "../src/tensor.ts";
import type { DType } from "../src/types.ts";
import { toDevice } from "../src/webgpu/mod.ts";
import { testRng } from "../src/webgpu/testing.ts";
import { assertClose, gradcheck, rnd } from "./_gradcheck.ts";
import { webgpuSuite } from "./_webgpu.ts";

const { gpu, ignore } = await webgpuSuite("fused_conv_test", "fused conv");

type Act = "none" | "relu";
type Size2 = [number, number];
interface Geo {
  stride: Size2;
  padding: Size2;
}
type Conv = (x: Tensor, w: Tensor, b: Tensor | null, act: Act, geo: Geo) => Tensor;

const unfused: Conv = (x, w, b, act, geo) => {
  const c = conv2d(x, w, geo);
  const z = b ? add(c, reshape(b, [1, w.shape[0], 1, 1])) : c;
  return act === "relu" ? relu(z) : z;
};
const fused: Conv = (x, w, b, act, geo) => fusedConv2d(x, w, b, { ...geo, activation: act });

/** The output and the gradients of Σ f(x, w, b)·r with respect to x, w (and b). */
function valueAndGrads(f: Conv, x: Tensor, w: Tensor, b: Tensor | null, act: Act, geo: Geo, r: Tensor) {
  const inputs = b ? [x, w, b] : [x, w];
  const { grads } = valueAndGrad((xs: Tensor[]) => sum(mul(f(xs[0], xs[1], xs[2] ?? null, act, geo), r)))(
    inputs,
  );
  return { y: f(x, w, b, act, geo), grads };
}

const bits = (t: Tensor) => Array.from(t.dataSync());
const outShape = (x: number[], w: number[], g: Geo) => [
  x[0],
  w[0],
  Math.floor((x[2] + 2 * g.padding[0] - w[2]) / g.stride[0]) + 1,
  Math.floor((x[3] + 2 * g.padding[1] - w[3]) / g.stride[1]) + 1,
];

interface Case {
  x: number[];
  w: number[];
  geo: Geo;
}
const c = (x: number[], w: number[], s: number | Size2, p: number | Size2): Case => ({
  x,
  w,
  geo: {
    stride: typeof s === "number" ? [s, s] : s,
    padding: typeof p === "number" ? [p, p] : p,
  },
});

/** Small shapes for the CPU: stride 2, padding, odd channels, batch > 1. */
const CPU_CASES = [
  c([2, 3, 6, 6], [4, 3, 3, 3], 1, 1),
  c([3, 5, 7, 7], [7, 5, 3, 3], 2, 1),
  c([2, 7, 5, 5], [5, 7, 1, 1], 2, 0),
  c([1, 2, 5, 6], [3, 2, 2, 3], [2, 1], [1, 0]),
];

Deno.test("fusedConv2d on the CPU: the same values and gradients as relu(add(conv2d(x, w), b))", () => {
  const rng = testRng(31);
  for (const dtype of ["float32", "float64"] as DType[]) {
    for (const cse of CPU_CASES) {
      for (const act of ["none", "relu"] as Act[]) {
        for (const withBias of [true, false]) {
          const mk = (shape: number[]) =>
            tensor(Array.from({ length: shape.reduce((a, v) => a * v, 1) }, () => 4 * rng() - 2), shape, {
              dtype,
            });
          const x = mk(cse.x), w = mk(cse.w), b = withBias ? mk([cse.w[0]]) : null;
          const r = mk(outShape(cse.x, cse.w, cse.geo));
          const a = valueAndGrads(fused, x, w, b, act, cse.geo, r);
          const e = valueAndGrads(unfused, x, w, b, act, cse.geo, r);
          const label = `${dtype} x[${cse.x}] w[${cse.w}] ${JSON.stringify(cse.geo)} ${act}${
            withBias ? " +b" : ""
          }`;
          assert.deepEqual(bits(a.y), bits(e.y), `${label}: y`);
          assert.equal(a.grads.length, e.grads.length);
          a.grads.forEach((g, i) => assert.deepEqual(bits(g), bits(e.grads[i]), `${label}: grad ${i}`));
        }
      }
    }
  }
});

Deno.test("conv2d with a bias (fused now) gives the bits of conv2d then add, values and gradients", () => {
  const x = randn([2, 3, 7, 7], { seed: 1 }), w = randn([5, 3, 3, 3], { seed: 2 });
  const b = randn([5], { seed: 3 }), r = randn([2, 5, 4, 4], { seed: 4 });
  const geo: Geo = { stride: [2, 2], padding: [1, 1] };
  const withBias: Conv = (xx, ww, bb, _act, g) => conv2d(xx, ww, { ...g, bias: bb! });
  const a = valueAndGrads(withBias, x, w, b, "none", geo, r);
  const e = valueAndGrads(unfused, x, w, b, "none", geo, r);
  assert.deepEqual(bits(a.y), bits(e.y), "y");
  a.grads.forEach((g, i) => assert.deepEqual(bits(g), bits(e.grads[i]), `grad ${i}`));
});

Deno.test("fusedConv2d on the CPU: NaN, ±Infinity and −0 pass through as in the separate ops", () => {
  const x = tensor([NaN, 1, 0, -0, Infinity, 1, 1, -1, 2], [1, 1, 3, 3]);
  const w = tensor([1, -1, 0, 0.5], [2, 1, 1, 2]);
  const b = tensor([-0, -1]);
  const r = tensor([1, 1, 1, Infinity, 1, 1, 1, 1, 1, 1, 1, 1], [1, 2, 3, 2]);
  const geo: Geo = { stride: [1, 1], padding: [0, 0] };
  for (const act of ["none", "relu"] as Act[]) {
    const a = valueAndGrads(fused, x, w, b, act, geo, r), e = valueAndGrads(unfused, x, w, b, act, geo, r);
    assert.ok(bits(a.y).some((v) => Number.isNaN(v)), `${act}: the NaN reaches y`);
    assert.deepEqual(bits(a.y), bits(e.y), `${act}: y`);
    a.grads.forEach((g, i) => assert.deepEqual(bits(g), bits(e.grads[i]), `${act}: grad ${i}`));
  }
});

Deno.test("fusedConv2d: float64 finite-difference gradient check", () => {
  for (const cse of [c([2, 3, 5, 5], [4, 3, 3, 3], 2, 1), c([1, 2, 4, 4], [3, 2, 2, 2], 1, 0)]) {
    const x = rnd(cse.x, 1), w = rnd(cse.w, 2), b = rnd([cse.w[0]], 3);
    const label = `conv x[${cse.x}] w[${cse.w}]`;
    gradcheck(label, (xx, ww, bb) => fusedConv2d(xx, ww, bb, cse.geo), [x, w, b]);
    gradcheck(`${label} no bias`, (xx, ww) => fusedConv2d(xx, ww, null, cse.geo), [x, w]);
    // ReLU: the seeded pre-activations are far from the kink compared with the step h.
    const z = fusedConv2d(x, w, b, cse.geo).dataSync();
    assert.ok(z.every((v) => Math.abs(v) > 1e-3), `${label}: a pre-activation near 0`);
    const act = { ...cse.geo, activation: "relu" as const };
    gradcheck(`${label} relu`, (xx, ww, bb) => fusedConv2d(xx, ww, bb, act), [x, w, b]);
  }
});

Deno.test("fusedConv2d: argument errors name the op, the argument and the shapes", () => {
  const x = randn([2, 3, 6, 6]), w = randn([4, 3, 3, 3]);
  assert.throws(() => fusedConv2d(x, w, randn([3])), /fusedConv2d: b must be \[4\], got \[3\]/);
  assert.throws(() => conv2d(x, w, { bias: randn([3]) }), /conv2d: bias must be \[4\], got \[3\]/);
  assert.throws(
    () => fusedConv2d(x, randn([4, 2, 3, 3])),
    /fusedConv2d: channel mismatch: x \[2, 3, 6, 6\] has 3 channels, w \[4, 2, 3, 3\] expects 2/,
  );
  assert.throws(() => fusedConv2d(randn([3, 6, 6]), w), /fusedConv2d: x must be \[N, C, H, W\]/);
  assert.throws(
    () => fusedConv2d(x, w, null, { activation: "tanh" as Act }),
    /fusedConv2d: activation must be "none" or "relu", got "tanh"/,
  );
  assert.throws(() => fusedConv2d(x, w, null, { stride: 0 }), /fusedConv2d: stride must be an integer ≥ 1/);
  assert.throws(() => fusedConv2d(x, w, randn([4], { dtype: "float64" })), /cannot mix dtypes/);
});

/**
 * GPU shapes: LeNet's two layers (small batch), stride 2 with padding, odd channels, 1×1 kernels;
 * weight gradients whose K (batch × output pixels) is split (≥ 512) and not, with N + 1 (the ones
 * column) a multiple of 4 (vec4 stores) and not.
 */
const GPU_CASES = [
  c([4, 3, 32, 32], [6, 3, 5, 5], 1, 2), // LeNet conv1 (3×32×32), split K
  c([4, 6, 14, 14], [16, 6, 5, 5], 1, 0), // LeNet conv2, K = 400: one part
  c([3, 5, 7, 7], [9, 5, 3, 3], 2, 1),
  c([2, 7, 5, 5], [5, 7, 1, 1], 2, 0),
  c([16, 3, 8, 8], [4, 3, 1, 1], 1, 0), // N + 1 = 4, split K
  c([2, 4, 9, 10], [6, 4, 2, 3], [3, 2], [1, 2]),
];

Deno.test({ name: "fusedConv2d on WebGPU: values and gradients match the CPU", ignore }, async () => {
  const rng = testRng(8);
  for (const cse of GPU_CASES) {
    for (const act of ["none", "relu"] as Act[]) {
      for (const withBias of [true, false]) {
        const mk = (shape: number[]) =>
          tensor(Array.from({ length: shape.reduce((a, v) => a * v, 1) }, () => 2 * rng() - 1), shape);
        const x = mk(cse.x), w = mk(cse.w), b = withBias ? mk([cse.w[0]]) : null;
        const r = mk(outShape(cse.x, cse.w, cse.geo));
        const e = valueAndGrads(fused, x, w, b, act, cse.geo, r);
        const [xg, wg, bg, rg] = await toDevice([x, w, b ?? x, r], "webgpu");
        const a = valueAndGrads(fused, xg, wg, withBias ? bg : null, act, cse.geo, rg);
        const label = `x[${cse.x}] w[${cse.w}] ${JSON.stringify(cse.geo)} ${act}${withBias ? " +b" : ""}`;
        const terms = Math.max(cse.w[1] * cse.w[2] * cse.w[3], r.size / cse.w[0]);
        const tol = { atol: 2e-6 * Math.sqrt(terms) + 1e-6, rtol: 1e-4 };
        assertClose(await a.y.data(), e.y.dataSync(), { ...tol, msg: `${label}: y` });
        for (let i = 0; i < e.grads.length; i++) {
          assertClose(await a.grads[i].data(), e.grads[i].dataSync(), { ...tol, msg: `${label}: grad ${i}` });
        }
        dispose([xg, wg, bg, rg, a.y, a.grads]);
      }
    }
  }
});

Deno.test(
  { name: "fusedConv2d on WebGPU: a NaN in the input propagates as on the CPU", ignore },
  async () => {
    const x = randn([2, 3, 9, 9], { seed: 11 }), w = randn([5, 3, 3, 3], { seed: 12 });
    const b = randn([5], { seed: 13 }), r = randn([2, 5, 9, 9], { seed: 14 });
    const d = x.dataSync().slice();
    d[40] = NaN; // image 0, channel 0, row 4, column 4
    d[3 * 81 + 2 * 81 + 7] = NaN; // image 1, channel 2, row 0, column 7 (next to the padding)
    const xn = tensor(d, x.shape);
    const geo: Geo = { stride: [1, 1], padding: [1, 1] };
    for (const act of ["none", "relu"] as Act[]) {
      const e = valueAndGrads(fused, xn, w, b, act, geo, r);
      const [xg, wg, bg, rg] = await toDevice([xn, w, b, r], "webgpu");
      const a = valueAndGrads(fused, xg, wg, bg, act, geo, rg);
      const ye = e.y.dataSync();
      assert.equal(
        ye.filter((v) => Number.isNaN(v)).length,
        (9 + 6) * 5,
        `${act}: the outputs whose 3×3 windows hold a NaN (the second one's cut by the border), 5 channels`,
      );
      // NaN exactly where the CPU has NaN (assertClose takes NaN as equal only to NaN).
      assertClose(await a.y.data(), ye, { atol: 1e-5, rtol: 1e-4, msg: `${act}: y` });
      for (let i = 0; i < 3; i++) {
        assertClose(await a.grads[i].data(), e.grads[i].dataSync(), {
          atol: 1e-4,
          rtol: 1e-4,
          msg: `${act}: grad ${i}`,
        });
      }
      dispose([xg, wg, bg, rg, a.y, a.grads]);
    }
  },
);

Deno.test({ name: "fusedConv2d on WebGPU: gradients asked for one at a time", ignore }, async () => {
  const cpu = getBackend("cpu"), G = gpu!;
  const geo: Geo = { stride: [1, 1], padding: [2, 2] };
  for (const xs of [[8, 3, 12, 12], [2, 3, 6, 6]]) { // K split (1152) and not (72)
    const x = randn(xs, { seed: 1 }), w = randn([6, 3, 5, 5], { seed: 2 }), b = randn([6], { seed: 3 });
    const y = cpu.fusedConv2d(x, w, b, geo, "relu"), g = randn(y.shape, { seed: 4 });
    const all = cpu.fusedConv2dGrad(x, w, y, g, geo, { x: true, w: true, b: true });
    const [xg, wg, yg, gg] = await toDevice([x, w, y, g], "webgpu");
    for (const key of ["x", "w", "b"] as const) {
      const needs = { x: key === "x", w: key === "w", b: key === "b" };
      const live = G.pool.stats().liveBuffers;
      const r = G.fusedConv2dGrad(xg, wg, yg, gg, geo, needs);
      for (const k of ["x", "w", "b"] as const) {
        const got = r[`g${k}`];
        if (!needs[k]) {
          assert.equal(got, null, `x[${xs}] ${JSON.stringify(needs)}: g${k} not computed`);
          continue;
        }
        assertClose(await got!.data(), all[`g${k}`]!.dataSync(), {
          atol: 1e-4,
          rtol: 1e-4,
          msg: `x[${xs}] g${k}`,
        });
        G.release(got!);
      }
      // What was not asked for (e.g. the weight gradient under the bias gradient) was released too.
      assert.equal(G.pool.stats().liveBuffers, live, `x[${xs}] ${JSON.stringify(needs)}: live buffers`);
    }
    dispose([xg, wg, yg, gg]);
  }
});

Deno.test(
  { name: "fusedConv2d on WebGPU: one dispatch forward, three backward, the same bits twice", ignore },
  async () => {
    const G = gpu!;
    const geo: Geo = { stride: [1, 1], padding: [2, 2] };
    // LeNet's first layer at batch 16: its weight gradient's K (16·32·32) is split.
    const x = randn([16, 3, 32, 32], { seed: 1, device: "webgpu" });
    const w = randn([6, 3, 5, 5], { seed: 2, device: "webgpu" }),
      b = randn([6], { seed: 3, device: "webgpu" });
    const at = () => G.stats().dispatches;
    let before = at();
    const y = G.fusedConv2d(x, w, b, geo, "relu");
    assert.equal(at() - before, 1, "forward: conv + bias + relu");
    const g = randn(y.shape, { seed: 5, device: "webgpu" });
    const grads = [];
    for (let k = 0; k < 2; k++) {
      before = at();
      grads.push(G.fusedConv2dGrad(x, w, y, g, geo, { x: true, w: true, b: true }));
      assert.equal(at() - before, 3, "backward: gx; gw with gb, then the parts' sum");
    }
    for (const k of ["gx", "gw", "gb"] as const) {
      assert.deepEqual(await grads[0][k]!.data(), await grads[1][k]!.data(), `${k}: not the same bits twice`);
    }
    dispose([x, w, b, y, g, grads.flatMap((r) => [r.gx!, r.gw!, r.gb!])]);
  },
);
