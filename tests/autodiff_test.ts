/**
 * Semantics of valueAndGrad / grad: tree-shaped gradients, unused and reused params, `rest`
 * arguments, non-scalar outputs, no mutation, and a tape that is only active during a call.
 */
import assert from "node:assert/strict";
import {
  add,
  conv2d,
  crossEntropy,
  exp,
  grad,
  gt,
  matmul,
  mul,
  relu,
  reshape,
  slice,
  square,
  sum,
  Tensor,
  tensor,
  treeLeaves,
  valueAndGrad,
} from "../mod.ts";
import { getBackend } from "../src/backend.ts";
import { activeTape } from "../src/tape.ts";
import { assertClose, rnd } from "./_gradcheck.ts";

const t64 = (data: number | number[] | number[][], shape?: number[]) =>
  tensor(data, shape, { dtype: "float64" });
const vals = (t: Tensor) => Array.from(t.dataSync());

Deno.test("autodiff: value and gradient of simple functions", () => {
  const { value, grads } = valueAndGrad((x: Tensor) => sum(mul(x, x)))(t64([1, 2, 3]));
  assert.equal(value.item(), 14);
  assert.deepEqual(value.shape, []);
  assert.deepEqual(vals(grads), [2, 4, 6]);
  assert.deepEqual(vals(grad((x: Tensor) => sum(exp(x)))(t64([0, 1]))), [1, Math.E]);
  // A [1, 1] output counts as a scalar.
  const g = grad((x: Tensor) => matmul(reshape(x, [1, 2]), t64([[3], [4]])))(t64([1, 1]));
  assert.deepEqual(vals(g), [3, 4]);
  // The function may return a param itself.
  const id = valueAndGrad((p: { s: Tensor }) => p.s)({ s: t64(5) });
  assert.equal(id.value.item(), 5);
  assert.deepEqual(vals(id.grads.s), [1]);
  // float32 params give float32 gradients.
  const g32 = grad((x: Tensor) => sum(square(x)))(tensor([1, -2]));
  assert.equal(g32.dtype, "float32");
  assert.deepEqual(vals(g32), [2, -4]);
});

Deno.test("autodiff: grads over nested trees have the params' structure", () => {
  const params = {
    layers: [
      { w: t64([[1, 2], [3, 4]]), b: t64([0.5, -0.5]) },
      { w: t64([[1], [-1]]), b: t64([0]) },
    ],
    scale: t64(2),
    extra: [[t64([1, 2, 3])]],
  };
  const f = (p: typeof params, x: Tensor) => {
    let h = x;
    for (const l of p.layers) h = add(matmul(h, l.w), l.b);
    return add(mul(sum(h), p.scale), sum(mul(p.extra[0][0], p.extra[0][0])));
  };
  const x = t64([[1, 1]]);
  const { value, grads } = valueAndGrad(f)(params, x);
  // Same keys, same nesting, same shapes and dtypes.
  assert.deepEqual(Object.keys(grads).sort(), ["extra", "layers", "scale"]);
  assert.ok(Array.isArray(grads.layers) && grads.layers.length === 2);
  assert.ok(Array.isArray(grads.extra) && Array.isArray(grads.extra[0]) && grads.extra[0].length === 1);
  const pl = treeLeaves(params), gl = treeLeaves(grads);
  assert.deepEqual(gl.map((l) => l.path), pl.map((l) => l.path));
  gl.forEach((l, i) => {
    assert.ok(l.tensor instanceof Tensor);
    assert.deepEqual(l.tensor.shape, pl[i].tensor.shape, l.path);
    assert.equal(l.tensor.dtype, pl[i].tensor.dtype, l.path);
  });
  // h1 = x·w1 + b1 = [4.5, 5.5]; h2 = h1·w2 + b2 = −1; value = 2·(−1) + 14 = 12.
  assert.equal(value.item(), 12);
  assert.deepEqual(vals(grads.scale), [-1]);
  assert.deepEqual(vals(grads.layers[1].w), [9, 11]); // scale · h1ᵀ
  assert.deepEqual(vals(grads.layers[1].b), [2]);
  assert.deepEqual(vals(grads.layers[0].b), [2, -2]); // scale · w2ᵀ
  assert.deepEqual(vals(grads.layers[0].w), [2, -2, 2, -2]);
  assert.deepEqual(vals(grads.extra[0][0]), [2, 4, 6]);
  // A bare array of tensors as params.
  const ga = grad((p: Tensor[]) => sum(mul(p[0], p[1])))([t64([1, 2]), t64([3, 4])]);
  assert.ok(Array.isArray(ga));
  assert.deepEqual(ga.map(vals), [[3, 4], [1, 2]]);
});

Deno.test("autodiff: a param unused by f gets zeros of its shape and dtype", () => {
  const params = { used: t64([1, 2]), unused: t64([[5, 6, 7]]), unused32: tensor([1, 2, 3, 4], [2, 2]) };
  const { grads } = valueAndGrad((p: typeof params) => sum(p.used))(params);
  assert.deepEqual(vals(grads.used), [1, 1]);
  assert.deepEqual(grads.unused.shape, [1, 3]);
  assert.equal(grads.unused.dtype, "float64");
  assert.deepEqual(vals(grads.unused), [0, 0, 0]);
  assert.equal(grads.unused32.dtype, "float32");
  assert.deepEqual(vals(grads.unused32), [0, 0, 0, 0]);
  // Used only through a comparison (no gradient): zeros as well.
  const g = grad((p: { a: Tensor; b: Tensor }) => sum(mul(gt(p.a, 0), p.b)))({
    a: t64([1, -1]),
    b: t64([2, 3]),
  });
  assert.deepEqual(vals(g.a), [0, 0]);
  assert.deepEqual(vals(g.b), [1, 0]);
  // f that does not depend on params at all.
  const c = valueAndGrad((_p: Tensor) => t64(3))(t64([1, 2]));
  assert.equal(c.value.item(), 3);
  assert.deepEqual(vals(c.grads), [0, 0]);
});

Deno.test("autodiff: a param used several times accumulates", () => {
  // x·x: 2x; x + x + x: 3; x used in two branches of different shapes.
  assert.deepEqual(vals(grad((x: Tensor) => sum(mul(x, x)))(t64([3, -1]))), [6, -2]);
  assert.deepEqual(vals(grad((x: Tensor) => sum(add(add(x, x), x)))(t64([3, -1]))), [3, 3]);
  const g = grad((x: Tensor) => add(sum(mul(x, t64([[1], [2]]))), sum(slice(x, [1]))))(t64([5, 7, 9]));
  assert.deepEqual(vals(g), [3, 4, 4]);
  // A shared intermediate used twice: y = x², f = Σ y·y → 4x³.
  const g2 = grad((x: Tensor) => {
    const y = square(x);
    return sum(mul(y, y));
  })(t64([1, 2]));
  assert.deepEqual(vals(g2), [4, 32]);
  // The same Tensor object at two paths: each path is its own variable.
  const t = t64([2, 3]);
  const gp = grad((p: { a: Tensor; b: Tensor }) => sum(mul(p.a, mul(p.b, p.b))))({ a: t, b: t });
  assert.deepEqual(vals(gp.a), [4, 9]); // b²
  assert.deepEqual(vals(gp.b), [8, 18]); // 2ab
});

Deno.test("autodiff: rest arguments are not differentiated", () => {
  const w = t64([[1, 2], [3, 4]]);
  const x = t64([[1, 0], [0, 1], [1, 1]]);
  const f = (p: { w: Tensor }, xb: Tensor, labels: number[], scale: number) =>
    mul(crossEntropy(matmul(xb, p.w), labels), scale);
  const { value, grads } = valueAndGrad(f)({ w }, x, [0, 1, 1], 2);
  assert.deepEqual(Object.keys(grads), ["w"]);
  assert.deepEqual(grads.w.shape, [2, 2]);
  assert.ok(Number.isFinite(value.item()));
  // A tensor passed both as a param and in rest: only the param slot is a variable.
  const t = t64([1, 2, 3]);
  const g = grad((p: Tensor, c: Tensor) => sum(mul(p, c)))(t, t);
  assert.deepEqual(vals(g), [1, 2, 3]); // = c, not 2·t
  // The gradient of the rest argument would be nonzero; it is simply not returned.
  const h = valueAndGrad((p: Tensor, c: Tensor) => sum(mul(p, square(c))))(t64([1, 1]), t64([2, 3]));
  assert.deepEqual(vals(h.grads), [4, 9]);
});

Deno.test("autodiff: non-scalar output is a clear error, and the tape is cleaned up after it", () => {
  assert.throws(
    () => valueAndGrad((x: Tensor) => mul(x, 2))(t64([1, 2])),
    /valueAndGrad: the function must return a scalar \(one element\), got shape \[2\]/,
  );
  assert.equal(activeTape(), null);
  // An exception inside f leaves no tape active either, and the next call works.
  assert.throws(() =>
    valueAndGrad((x: Tensor) => {
      sum(x);
      throw new Error("boom");
    })(t64([1])), /boom/);
  assert.equal(activeTape(), null);
  assert.deepEqual(vals(grad((x: Tensor) => sum(x))(t64([1, 2]))), [1, 1]);
});

Deno.test("autodiff: params and rest args are not mutated; grads are fresh tensors", () => {
  const params = { w: rnd([4, 3], 1), b: rnd([3], 2) };
  const x = rnd([5, 4], 3);
  const before = { w: vals(params.w), b: vals(params.b), x: vals(x) };
  const f = (p: typeof params, xb: Tensor) => crossEntropy(relu(add(matmul(xb, p.w), p.b)), [0, 1, 2, 0, 1]);
  const r1 = valueAndGrad(f)(params, x);
  const r2 = valueAndGrad(f)(params, x);
  assert.deepEqual(vals(params.w), before.w);
  assert.deepEqual(vals(params.b), before.b);
  assert.deepEqual(vals(x), before.x);
  assert.notEqual(r1.grads.w, params.w);
  assert.notEqual(r1.grads, params);
  assert.notEqual(r1.grads.w.storage, params.w.storage);
  // Deterministic: the same call twice gives identical results.
  assert.equal(r1.value.item(), r2.value.item());
  assert.deepEqual(vals(r1.grads.w), vals(r2.grads.w));
  assert.deepEqual(vals(r1.grads.b), vals(r2.grads.b));
  // Params tree objects are not modified (no new keys, same leaves).
  assert.deepEqual(Object.keys(params), ["w", "b"]);
});

Deno.test("autodiff: recording happens only inside a call", () => {
  assert.equal(activeTape(), null);
  let inside: unknown = null;
  grad((x: Tensor) => {
    inside = activeTape();
    return sum(x);
  })(t64([1]));
  assert.ok(inside !== null, "a tape is active during the call");
  assert.equal(activeTape(), null, "and none after it");
  // Ops outside any call record nothing and still compute.
  assertClose(sum(mul(t64([1, 2]), 3)), [9]);
});

Deno.test("autodiff: gradient of a small MLP matches a hand-derived formula", () => {
  // L = mean over rows of ½‖x·w‖² → dL/dw = xᵀ·x·w / N.
  const x = rnd([6, 3], 10), w = rnd([3, 2], 11);
  const g = grad((p: Tensor) => mul(sum(square(matmul(x, p))), 0.5 / 6))(w);
  const xd = x.dataSync(), wd = w.dataSync();
  const want: number[] = [];
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 2; j++) {
      let s = 0;
      for (let n = 0; n < 6; n++) {
        const yj = xd[n * 3] * wd[j] + xd[n * 3 + 1] * wd[2 + j] + xd[n * 3 + 2] * wd[4 + j];
        s += xd[n * 3 + i] * yj;
      }
      want.push(s / 6);
    }
  }
  assertClose(g, want, { atol: 1e-12 });
});

Deno.test("autodiff: the backward pass skips gradients of inputs that are not differentiated", () => {
  const cpu = getBackend("cpu");
  const calls: string[] = [];
  const spy = <K extends "matmul" | "conv2dGradInput" | "conv2dGradWeight">(k: K) => {
    const orig = cpu[k];
    (cpu as any)[k] = function (this: unknown, ...args: unknown[]) {
      calls.push(k);
      return (orig as (...a: unknown[]) => unknown).apply(this, args);
    };
    return () => ((cpu as any)[k] = orig);
  };
  const restore = [spy("matmul"), spy("conv2dGradInput"), spy("conv2dGradWeight")];
  try {
    const x = rnd([4, 3], 1), w = rnd([3, 2], 2);
    const { grads } = valueAndGrad((p: { w: Tensor }, xb: Tensor) => sum(matmul(xb, p.w)))({ w }, x);
    // one forward product and one for dL/dw; dL/dx (the data) is never computed
    assert.deepEqual(calls, ["matmul", "matmul"]);
    const xs = x.dataSync(), colSums = [0, 1, 2].map((i) => xs[i] + xs[3 + i] + xs[6 + i] + xs[9 + i]);
    assertClose(grads.w, colSums.flatMap((c) => [c, c])); // dL/dw[i][j] = Σ_n x[n][i]
    calls.length = 0;
    const img = rnd([2, 1, 5, 5], 3), k = rnd([2, 1, 3, 3], 4);
    valueAndGrad((p: { k: Tensor }, xb: Tensor) => sum(conv2d(xb, p.k)))({ k }, img);
    assert.deepEqual(calls, ["conv2dGradWeight"]);
  } finally {
    for (const r of restore) r();
  }
});
