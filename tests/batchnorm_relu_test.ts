/**
 * Batch norm with a fused ReLU and the residual's add + ReLU: on the CPU the fused paths give the
 * bits of the unfused ones (the op, the layers, `sequential`'s fusion of a batchNorm then a relu, a
 * reduced ResNet-18's loss, gradients and running statistics), with NaN, ±Infinity and −0 in the
 * data; float64 finite-difference gradients of the fused op; on WebGPU the fused kernels match the
 * CPU on whole and split channels (`batchNormParts`) in as many dispatches as a plain batch norm,
 * and the ResNet-18 step matches the CPU and the unfused WebGPU step.
 */
import assert from "node:assert/strict";
import { type Backend, getBackend } from "../src/backend.ts";
import "../src/cpu/backend.ts";
import type { Tensor } from "../src/tensor.ts";
import { tensor } from "../src/creation.ts";
import { valueAndGrad, valueAndGradWithAux } from "../src/autodiff.ts";
import { add, batchNormInference, batchNormTrain, mul, relu, sum } from "../src/ops/mod.ts";
import { addRelu } from "../src/ops/elementwise.ts";
import { relu as reluLayer } from "../src/nn/layers.ts";
import { batchNorm, setFusedActivations } from "../src/nn/batch_norm.ts";
import { residual, sequential } from "../src/nn/sequential.ts";
import { resnet18 } from "../src/nn/resnet.ts";
import { crossEntropy } from "../src/ops/softmax.ts";
import { toDevice } from "../src/webgpu/mod.ts";
import { type TensorTree, treeLeaves } from "../src/tree.ts";
import { testRng } from "../src/webgpu/testing.ts";
import { webgpuStats } from "../src/webgpu/mod.ts";
import { batchNormParts } from "../src/webgpu/norm_ops.ts";
import { gradcheck, rnd } from "./_gradcheck.ts";
import { webgpuSuite } from "./_webgpu.ts";
import { withSetting } from "./_reference.ts";

const { gpu, ignore } = await webgpuSuite("batchnorm_relu_test", "batchnorm relu");
const cpu: Backend = getBackend("cpu");
const rng = testRng(1616);

const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** Data of `shape`, uniform in [lo, hi), with the special values `special` at the given flat indices. */
function data(
  shape: readonly number[],
  lo: number,
  hi: number,
  special: [number, number][] = [],
): Float32Array {
  const d = Float32Array.from({ length: size(shape) }, () => lo + (hi - lo) * rng());
  for (const [i, v] of special) d[i] = v;
  return d;
}

/** A value as it reads in messages (−0 apart from 0). */
const show = (v: number) => (Object.is(v, -0) ? "-0" : String(v));

/** Both tensors hold the same bits (NaN payloads aside), element by element. */
async function sameBits(who: string, a: Tensor, b: Tensor): Promise<void> {
  assert.deepEqual(a.shape, b.shape, `${who}: shape`);
  const x = await a.data(), y = await b.data();
  for (let i = 0; i < y.length; i++) {
    if (!Object.is(x[i], y[i])) assert.fail(`${who}: element ${i}: ${show(x[i])} vs ${show(y[i])}`);
  }
}

/** |a − b| ≤ tol · max(1, max |b|) where b is finite; NaN exactly where b is NaN; exact zeros where `zeros`. */
async function close(who: string, a: Tensor, b: Tensor, tol: number, zeros = false): Promise<void> {
  assert.deepEqual(a.shape, b.shape, `${who}: shape`);
  const x = await a.data(), y = await b.data();
  let scale = 1;
  for (const v of y) if (Number.isFinite(v)) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < y.length; i++) {
    const ok = Number.isNaN(y[i])
      ? Number.isNaN(x[i])
      : zeros && y[i] === 0
      ? Object.is(x[i], y[i])
      : Number.isFinite(y[i])
      ? Math.abs(x[i] - y[i]) <= tol * scale
      : x[i] === y[i];
    if (!ok) {
      assert.fail(`${who}: element ${i} of [${b.shape}]: ${show(x[i])} vs ${show(y[i])} (scale ${scale})`);
    }
  }
}

/**
 * Cases [shape, γ, β, specials in x]: channel 0 plain; channel 1 with γ = 0 and β = −0 (the normalized
 * values are ±0 exactly, −0 where x is below the mean, so the ReLU sees −0); with three or more
 * channels, a NaN in channel 2 and an Infinity in the last one.
 */
function specialCase(shape: number[]): { x: Float32Array; gamma: Float32Array; beta: Float32Array } {
  const C = shape[1], S = size(shape.slice(2));
  const gamma = data([C], 0.5, 1.5), beta = data([C], -0.5, 0.5);
  gamma[1] = 0;
  beta[1] = -0;
  const specials: [number, number][] = [];
  if (C >= 3) specials.push([2 * S, NaN], [(C - 1) * S + (S > 1 ? 1 : 0) + C * S, Infinity]);
  return { x: data(shape, -2, 3, specials), gamma, beta };
}

Deno.test("batchNormTrain relu: the CPU's fused op gives the bits of relu after the plain op, forward and gradients", async () => {
  for (const dtype of ["float32", "float64"] as const) {
    for (const shape of [[6, 4, 3, 5], [9, 3], [2, 5, 7], [1, 3, 4, 4]]) {
      const { x, gamma, beta } = specialCase(shape);
      const t = (d: Float32Array, s: number[]) => tensor(Array.from(d), s, { dtype });
      const xs = t(x, shape), g = t(gamma, [shape[1]]), b = t(beta, [shape[1]]);
      // an upstream gradient with NaN and ±Infinity where the mask is 0 and where it is 1
      const r = t(data(shape, -1, 1, [[0, NaN], [1, Infinity], [5, -Infinity]]), shape);
      const fused = valueAndGrad((ps: Tensor[]) => {
        const o = batchNormTrain(ps[0], ps[1], ps[2], { activation: "relu" });
        return sum(mul(o.y, r));
      });
      const plain = valueAndGrad((ps: Tensor[]) => sum(mul(relu(batchNormTrain(ps[0], ps[1], ps[2]).y), r)));
      const who = `${dtype} [${shape}]`;
      const yf = batchNormTrain(xs, g, b, { activation: "relu" }), yp = batchNormTrain(xs, g, b);
      await sameBits(`${who} y`, yf.y, relu(yp.y));
      await sameBits(`${who} mean`, yf.mean, yp.mean);
      await sameBits(`${who} var`, yf.var, yp.var);
      const a = fused([xs, g, b]), e = plain([xs, g, b]);
      await sameBits(`${who} loss`, a.value, e.value);
      for (let k = 0; k < 3; k++) await sameBits(`${who} grad ${k}`, a.grads[k], e.grads[k]);
      // the special values reach the output: −0 becomes +0, NaN stays, and the mask is y > 0
      const yv = await yf.y.data();
      assert.ok(yv.every((v) => Number.isNaN(v) || v >= 0 && !Object.is(v, -0)), `${who}: relu's range`);
    }
  }
});

Deno.test("batchNormTrain relu: float64 finite-difference gradients w.r.t. x, γ and β", () => {
  for (const [k, shape] of [[5, 3], [3, 2, 3, 4], [4, 2, 3]].entries()) {
    const C = shape[1];
    const x = rnd(shape, 140 + k, 1.5, 0.5), g = rnd([C], 150 + k, 1, 0.5), b = rnd([C], 160 + k);
    gradcheck(
      `batchNormTrain relu ${JSON.stringify(shape)}`,
      (xx, gg, bb) => batchNormTrain(xx, gg, bb, { activation: "relu" }).y,
      [x, g, b],
      { tol: 1e-6 },
    );
  }
});

Deno.test("batchNormInference relu and addRelu: the values of relu after the plain op, gradients too", async () => {
  const x = tensor(Array.from(data([4, 3, 2], -2, 2, [[0, NaN], [1, -0], [2, Infinity]])), [4, 3, 2]);
  const [g, b, m, v] = [[1, -2, 0.5], [0.1, -0.2, -0], [0.3, 0, -0.1], [1, 2, 0.5]].map((d) => tensor(d));
  await sameBits(
    "inference",
    batchNormInference(x, g, b, m, v, { activation: "relu" }),
    relu(batchNormInference(x, g, b, m, v)),
  );
  const y = tensor(Array.from(data([4, 3, 2], -2, 2, [[0, -0], [3, NaN], [4, -Infinity], [5, 0]])), [
    4,
    3,
    2,
  ]);
  const r = tensor(Array.from(data([4, 3, 2], -1, 1, [[1, NaN], [6, Infinity]])), [4, 3, 2]);
  await sameBits("addRelu", addRelu(x, y), relu(add(x, y)));
  const fused = valueAndGrad((ps: Tensor[]) => sum(mul(addRelu(ps[0], ps[1]), r)))([x, y]);
  const plain = valueAndGrad((ps: Tensor[]) => sum(mul(relu(add(ps[0], ps[1])), r)))([x, y]);
  for (let k = 0; k < 2; k++) await sameBits(`addRelu grad ${k}`, fused.grads[k], plain.grads[k]);
  assert.throws(
    () => addRelu(x, tensor([1, 2])),
    /addRelu: a \[4, 3, 2\] and b \[2\] must have the same shape/,
  );
  // deno-lint-ignore no-explicit-any
  const bad = { activation: "gelu" as any };
  assert.throws(
    () => batchNormTrain(x, g, b, bad),
    /batchNormTrain: activation must be "none" or "relu", got "gelu"/,
  );
  assert.throws(() => batchNormInference(x, g, b, m, v, bad), /batchNormInference: activation must be/);
  assert.throws(() => batchNorm(3, bad), /nn.batchNorm: activation must be "none" or "relu", got "gelu"/);
});

/** Runs `f` with the containers' fusion on or off. */
const withFusion = <T>(on: boolean, f: () => T): T => withSetting(setFusedActivations, on, f);

Deno.test("sequential and residual: batchNorm + relu and the residual's ReLU fused give the unfused bits", async () => {
  const net = residual(
    sequential({ bn1: batchNorm(3), relu: reluLayer(), bn2: batchNorm(3, { momentum: 0.2 }) }),
    sequential([batchNorm(3, { activation: "relu" }), reluLayer()]), // already fused: the relu runs alone
    { activation: "relu" },
  );
  const { params, state } = net.init(0, "block");
  assert.deepEqual(Object.keys(params), ["bn1", "bn2", "shortcut"]);
  const x = tensor(Array.from(data([4, 3, 2, 3], -1, 2)), [4, 3, 2, 3]);
  const r = tensor(Array.from(data([4, 3, 2, 3], -1, 1)), [4, 3, 2, 3]);
  for (const training of [true, false]) {
    const run = (on: boolean) =>
      withFusion(on, () =>
        valueAndGradWithAux((p: typeof params) => {
          const o = net.apply(p, state, x, { training, step: 0, seed: 0, path: "block" });
          return { value: sum(mul(o.y, r)), aux: o.state };
        })(params));
    const a = run(true), e = run(false);
    await sameBits(`training ${training}: loss`, a.value, e.value);
    const [ga, ge] = [treeLeaves(a.grads as TensorTree), treeLeaves(e.grads as TensorTree)];
    const [sa, se] = [treeLeaves(a.aux as TensorTree), treeLeaves(e.aux as TensorTree)];
    assert.deepEqual(ga.map((l) => l.path), ge.map((l) => l.path));
    assert.deepEqual(sa.map((l) => l.path), se.map((l) => l.path));
    for (let i = 0; i < ga.length; i++) await sameBits(`grad ${ga[i].path}`, ga[i].tensor, ge[i].tensor);
    for (let i = 0; i < sa.length; i++) await sameBits(`state ${sa[i].path}`, sa[i].tensor, se[i].tensor);
  }
  // errors still name the batch norm's path and kind
  assert.throws(
    () =>
      net.apply(params, state, tensor(Array.from(data([4, 2, 2, 3], 0, 1)), [4, 2, 2, 3]), {
        training: true,
        step: 0,
        seed: 0,
        path: "block",
      }),
    /layer "block.bn1" \(batchNorm 3\): expects 3 channels/,
  );
});

const RESNET_X = Array.from(data([3, 3, 32, 32], -2, 2));

/** A reduced ResNet-18 step's loss, gradients and next running statistics, on `device`. */
async function resnetStep(device: "cpu" | "webgpu", fused: boolean) {
  const model = resnet18({ widths: [4, 8, 8, 8], seed: 3 });
  const params = await toDevice(model.params, device), state = await toDevice(model.state, device);
  const x = await toDevice(tensor(RESNET_X, [3, 3, 32, 32]), device);
  const labels = Int32Array.from([1, 5, 9]);
  return withFusion(fused, () =>
    valueAndGradWithAux((p: typeof params) => {
      const o = model.apply(p, state, x, { training: true, step: 0 });
      return { value: crossEntropy(o.y, labels), aux: o.state };
    })(params));
}

/** The leaves of a step's loss, gradients and state, by path. */
function leavesOf(r: Awaited<ReturnType<typeof resnetStep>>): [string, Tensor][] {
  return [
    ["loss", r.value],
    ...treeLeaves(r.grads as TensorTree).map((l) => [`grad ${l.path}`, l.tensor] as [string, Tensor]),
    ...treeLeaves(r.aux as TensorTree).map((l) => [`state ${l.path}`, l.tensor] as [string, Tensor]),
  ];
}

Deno.test("resnet18: the fused step gives the unfused step's loss, gradients and running statistics on the CPU", async () => {
  const a = leavesOf(await resnetStep("cpu", true)), e = leavesOf(await resnetStep("cpu", false));
  assert.deepEqual(a.map(([p]) => p), e.map(([p]) => p));
  assert.ok(a.some(([p]) => p === "grad layer1.0.bn1.w") && a.some(([p]) => p === "state bn1.runningVar"));
  for (let i = 0; i < a.length; i++) await sameBits(a[i][0], a[i][1], e[i][1]);
});

/** Dispatches encoded by `f`. */
function dispatchesOf<T>(f: () => T): [T, number] {
  const d0 = webgpuStats()!.dispatches;
  const r = f();
  return [r, webgpuStats()!.dispatches - d0];
}

Deno.test(
  {
    name:
      "webgpu batchnorm relu: the fused kernels match the CPU on whole and split channels, in 2 + 2 or 2 + 3 dispatches",
    ignore,
  },
  async () => {
    const G = gpu as Backend;
    // [shape, parts]: short channels, BatchNorm1d, N = 1, split channels (a shorter last part, S > 256,
    // S = 1, S just over the workgroup)
    const cases: [number[], number][] = [
      [[7, 3, 5, 5], 1],
      [[33, 5], 1],
      [[1, 4, 4, 4], 1],
      [[3, 3, 67, 101], 4],
      [[20000, 3], 4],
      [[37, 4, 257], 2],
    ];
    for (const [shape, parts] of cases) {
      const C = shape[1], who = `[${shape}] (${parts} parts)`;
      assert.equal(batchNormParts(C, size(shape) / C), parts, `${who}: parts`);
      const { x, gamma, beta } = specialCase(shape);
      const gy = data(shape, -1, 1, [[3, NaN], [4, Infinity]]);
      const on = (b: Backend) => ({
        x: b.fromArray(x, shape, "float32"),
        g: b.fromArray(gamma, [C], "float32"),
        b: b.fromArray(beta, [C], "float32"),
        gy: b.fromArray(gy, shape, "float32"),
      });
      const c = on(cpu), g = on(G);
      const rc = cpu.batchNormForward(c.x, c.g, c.b, 1e-5, "relu");
      const [rg, fwd] = dispatchesOf(() => G.batchNormForward(g.x, g.g, g.b, 1e-5, "relu"));
      assert.equal(fwd, 2, `${who}: forward dispatches`);
      await close(`mean ${who}`, rg.mean, rc.mean, 2e-6);
      await close(`var ${who}`, rg.var, rc.var, 2e-5);
      await close(`y ${who}`, rg.y, rc.y, 5e-5, true);
      const dc = cpu.batchNormBackward(c.x, c.g, rc, c.gy, 1e-5, rc.y);
      const [dg, bwd] = dispatchesOf(() => G.batchNormBackward(g.x, g.g, rg, g.gy, 1e-5, rg.y));
      assert.equal(bwd, parts === 1 ? 2 : 3, `${who}: backward dispatches`);
      await close(`gx ${who}`, dg.gx, dc.gx, 5e-5);
      await close(`gGamma ${who}`, dg.gGamma, dc.gGamma, 5e-5);
      await close(`gBeta ${who}`, dg.gBeta, dc.gBeta, 5e-5);
      // against the unfused GPU kernels: the same values (bit for bit on lavapipe)
      const pg = G.batchNormForward(g.x, g.g, g.b, 1e-5);
      const yp = G.unary("relu", pg.y);
      const dp = G.batchNormBackward(g.x, g.g, pg, G.reluGrad(yp, g.gy), 1e-5);
      const exact = gpu!.ctx.software;
      for (
        const [name, a, e] of [["y", rg.y, yp], ["gx", dg.gx, dp.gx], [
          "gGamma",
          dg.gGamma,
          dp.gGamma,
        ]] as const
      ) {
        if (exact) await sameBits(`${who} ${name}: fused vs unfused on the GPU`, a, e);
        else await close(`${who} ${name}: fused vs unfused on the GPU`, a, e, 1e-6);
      }
      const add1 = G.addRelu(g.x, g.gy), add0 = cpu.addRelu(c.x, c.gy);
      await close(`addRelu ${who}`, add1, add0, 1e-7, true);
    }
  },
);

Deno.test(
  { name: "webgpu resnet18: the fused step matches the CPU and the unfused WebGPU step", ignore },
  async () => {
    const c = leavesOf(await resnetStep("cpu", true));
    const g = leavesOf(await resnetStep("webgpu", true)), u = leavesOf(await resnetStep("webgpu", false));
    assert.deepEqual(g.map(([p]) => p), c.map(([p]) => p));
    for (let i = 0; i < c.length; i++) {
      await close(`${c[i][0]}: webgpu vs cpu`, g[i][1], c[i][1], 2e-3);
      await close(`${c[i][0]}: fused vs unfused webgpu`, g[i][1], u[i][1], 1e-5);
    }
  },
);

Deno.test("sequential fuses a batchNorm and a relu only while both keep the forward they were made with", () => {
  const x = tensor(Float32Array.from({ length: 4 * 2 * 3 * 3 }, () => rng() - 0.5), [4, 2, 3, 3]);
  const ctx = { training: true, step: 0, seed: 0, path: "" };
  const run = (bn: ReturnType<typeof batchNorm>, r: ReturnType<typeof reluLayer>) => {
    const net = sequential({ bn, relu: r });
    const { params, state } = net.init(0, "");
    return net.apply(params, state, x, ctx).y.dataSync();
  };
  // A relu layer whose apply was replaced (a wrapper that counts, then halves) runs as given.
  const plain = run(batchNorm(2), reluLayer());
  let calls = 0;
  const r = reluLayer(), own = r.apply;
  r.apply = (p, s, h, c) => {
    calls++;
    const out = own(p, s, h, c);
    return { y: mul(out.y, 0.5), state: out.state };
  };
  const wrapped = run(batchNorm(2), r);
  assert.equal(calls, 1, "the replaced relu apply ran");
  assert.deepEqual([...wrapped], [...plain].map((v) => v * 0.5));
  // The same for a batchNorm whose apply was replaced.
  const bn = batchNorm(2), bnOwn = bn.apply;
  let bnCalls = 0;
  bn.apply = (p, s, h, c) => (bnCalls++, bnOwn(p, s, h, c));
  assert.deepEqual([...run(bn, reluLayer())], [...plain]);
  assert.equal(bnCalls, 1, "the replaced batchNorm apply ran");
});
