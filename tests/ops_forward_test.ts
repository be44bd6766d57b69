/**
 * Forward values of every op against hand-computed or closed-form results, plus the creation
 * helpers.
 */
import assert from "node:assert/strict";
import {
  abs,
  add,
  arange,
  avgPool2d,
  broadcastTo,
  concat,
  conv2d,
  crossEntropy,
  div,
  eq,
  exp,
  flatten,
  full,
  ge,
  grad,
  gt,
  log,
  logSoftmax,
  matmul,
  matmulTransposed,
  max,
  maximum,
  maxPool2d,
  mean,
  minimum,
  mul,
  neg,
  ones,
  onesLike,
  pow,
  rand,
  randn,
  reciprocal,
  relu,
  reshape,
  sigmoid,
  sign,
  slice,
  softmax,
  sqrt,
  square,
  sub,
  sum,
  tanh,
  type Tensor,
  tensor,
  transpose,
  zeros,
  zerosLike,
} from "../mod.ts";
import { assertClose, f64, forEachIndex, rnd } from "./_gradcheck.ts";

const t64 = (data: number | number[] | number[][] | number[][][], shape?: number[]) =>
  tensor(data, shape, { dtype: "float64" });

function expectValues(t: Tensor, shape: number[], values: number[], tol = 1e-12): void {
  assert.deepEqual(t.shape, shape);
  assertClose(t, values, { atol: tol, rtol: tol });
}

// ---------------------------------------------------------------- creation

Deno.test("forward: tensor from nested arrays, flat data, typed arrays, scalars", () => {
  const a = tensor([[1, 2, 3], [4, 5, 6]]);
  assert.deepEqual(a.shape, [2, 3]);
  assert.equal(a.dtype, "float32");
  assert.equal(a.device, "cpu");
  assert.equal(a.size, 6);
  assert.equal(a.rank, 2);
  assert.ok(a.dataSync() instanceof Float32Array);
  assert.deepEqual(Array.from(a.dataSync()), [1, 2, 3, 4, 5, 6]);
  const b = tensor([1, 2, 3, 4, 5, 6], [3, 2], { dtype: "float64" });
  assert.ok(b.dataSync() instanceof Float64Array);
  assert.deepEqual(b.shape, [3, 2]);
  const c = tensor(new Float32Array([1, 2]), [2, 1]);
  assert.deepEqual(c.shape, [2, 1]);
  const s = tensor(3.5);
  assert.deepEqual(s.shape, []);
  assert.equal(s.size, 1);
  assert.equal(s.item(), 3.5);
  assert.deepEqual(tensor([]).shape, [0]);
  assert.deepEqual(tensor([[[1], [2]]]).shape, [1, 2, 1]);
  // The data is copied, and reads are copies.
  const src = new Float64Array([1, 2]);
  const d = tensor(src, [2], { dtype: "float64" });
  src[0] = 99;
  d.dataSync()[1] = 99;
  assert.deepEqual(Array.from(d.dataSync()), [1, 2]);
});

Deno.test("forward: tensor data() is an async host copy", async () => {
  const a = tensor([1, 2, 3]);
  const d = await a.data();
  assert.deepEqual(Array.from(d), [1, 2, 3]);
  d[0] = 42;
  assert.equal(a.dataSync()[0], 1);
  assert.equal(a.toString(), "Tensor([3], float32, cpu)");
});

Deno.test("forward: zeros, ones, full, zerosLike, onesLike", () => {
  expectValues(zeros([2, 2]), [2, 2], [0, 0, 0, 0]);
  expectValues(ones([3]), [3], [1, 1, 1]);
  expectValues(full([2, 1], -2.5, { dtype: "float64" }), [2, 1], [-2.5, -2.5]);
  assert.equal(full([2], 1, { dtype: "float64" }).dtype, "float64");
  assert.deepEqual(zeros([]).shape, []);
  assert.equal(zeros([0, 3]).size, 0);
  const x = rnd([2, 3], 1);
  const z = zerosLike(x), o = onesLike(x);
  assert.equal(z.dtype, "float64");
  expectValues(z, [2, 3], [0, 0, 0, 0, 0, 0]);
  expectValues(o, [2, 3], [1, 1, 1, 1, 1, 1]);
});

Deno.test("forward: arange", () => {
  expectValues(arange(5), [5], [0, 1, 2, 3, 4]);
  expectValues(arange(2, 5), [3], [2, 3, 4]);
  expectValues(arange(0, 1, 0.25, { dtype: "float64" }), [4], [0, 0.25, 0.5, 0.75]);
  expectValues(arange(5, 0, -2), [3], [5, 3, 1]);
  assert.deepEqual(arange(3, 1).shape, [0]);
});

Deno.test("forward: randn and rand are seeded, reproducible, with the right moments", () => {
  const a = randn([4000], { seed: 3, dtype: "float64" });
  const b = randn([4000], { seed: 3, dtype: "float64" });
  const c = randn([4000], { seed: 4, dtype: "float64" });
  assert.deepEqual(Array.from(a.dataSync()), Array.from(b.dataSync()));
  assert.notDeepEqual(Array.from(a.dataSync()), Array.from(c.dataSync()));
  // Streams differ, and a float32 draw equals the rounded float64 draw.
  assert.notDeepEqual(
    Array.from(randn([8], { seed: 3, stream: 1 }).dataSync()),
    Array.from(randn([8], { seed: 3 }).dataSync()),
  );
  assert.deepEqual(
    Array.from(randn([8], { seed: 3 }).dataSync()),
    Array.from(Float32Array.from(a.dataSync().slice(0, 8))),
  );
  // A prefix of a longer draw equals a shorter draw (counter-based).
  assert.deepEqual(
    Array.from(randn([5], { seed: 3, dtype: "float64" }).dataSync()),
    Array.from(a.dataSync().slice(0, 5)),
  );
  const m = mean(a).item(), v = mean(square(sub(a, m))).item();
  assert.ok(Math.abs(m) < 0.06, `randn mean ${m}`);
  assert.ok(Math.abs(v - 1) < 0.08, `randn variance ${v}`);
  const s = randn([4000], { seed: 5, dtype: "float64", mean: 3, std: 0.5 });
  assert.ok(Math.abs(mean(s).item() - 3) < 0.03);
  const u = rand([4000], { seed: 6, dtype: "float64", low: -2, high: 4 });
  const ud = u.dataSync();
  assert.ok(ud.every((x) => x >= -2 && x < 4), "rand in [low, high)");
  assert.ok(Math.abs(mean(u).item() - 1) < 0.15);
  assert.ok(Math.min(...ud) < -1.9 && Math.max(...ud) > 3.9);
  assert.deepEqual(
    Array.from(rand([7], { seed: 1 }).dataSync()),
    Array.from(rand([7], { seed: 1 }).dataSync()),
  );
});

Deno.test("forward: rand never returns high, even where the dtype rounds draws up to it", () => {
  // In float32 every number in (2^24 − 1, 2^24) rounds to one of the two ends: half the draws
  // would round up to `high` without a clamp.
  const hi = 2 ** 24;
  const a = rand([1000], { seed: 2, low: hi - 1, high: hi }).dataSync();
  assert.ok(a.every((v) => v === hi - 1), "float32 draws stay below high");
  const b = rand([1000], { seed: 2, low: -1, high: 0 }).dataSync();
  assert.ok(b.every((v) => v >= -1 && v < 0), "float32 draws in [-1, 0)");
  const c = rand([1000], { seed: 2, low: 2 ** 53 - 2, high: 2 ** 53, dtype: "float64" }).dataSync();
  assert.ok(c.every((v) => v >= 2 ** 53 - 2 && v < 2 ** 53), "float64 draws stay below high");
});

// ---------------------------------------------------------------- elementwise

Deno.test("forward: add, sub, mul, div with broadcasting and numbers", () => {
  const a = t64([[1, 2, 3], [4, 5, 6]]), row = t64([10, 20, 30]), col = t64([[100], [200]]);
  expectValues(add(a, row), [2, 3], [11, 22, 33, 14, 25, 36]);
  expectValues(add(a, col), [2, 3], [101, 102, 103, 204, 205, 206]);
  expectValues(add(row, col), [2, 3], [110, 120, 130, 210, 220, 230]);
  expectValues(sub(a, row), [2, 3], [-9, -18, -27, -6, -15, -24]);
  expectValues(sub(col, a), [2, 3], [99, 98, 97, 196, 195, 194]);
  expectValues(mul(a, col), [2, 3], [100, 200, 300, 800, 1000, 1200]);
  expectValues(div(a, row), [2, 3], [0.1, 0.1, 0.1, 0.4, 0.25, 0.2]);
  expectValues(div(1, t64([2, 4])), [2], [0.5, 0.25]);
  expectValues(add(a, 1), [2, 3], [2, 3, 4, 5, 6, 7]);
  expectValues(sub(10, row), [3], [0, -10, -20]);
  expectValues(mul(2, t64(3)), [], [6]);
  // Broadcasting across a middle size-1 axis and rank extension: [2,1,3] + [4,1] -> [2,4,3].
  const p = f64([0, 1, 2, 3, 4, 5], [2, 1, 3]), q = f64([0, 10, 20, 30], [4, 1]);
  const r = add(p, q);
  assert.deepEqual(r.shape, [2, 4, 3]);
  const rd = r.dataSync();
  forEachIndex([2, 4, 3], ([i, j, k], o) => assert.equal(rd[o], i * 3 + k + 10 * j));
  // dtype follows the inputs.
  assert.equal(add(tensor([1]), 1).dtype, "float32");
  assert.equal(add(t64([1]), 1).dtype, "float64");
});

Deno.test("forward: pow, maximum, minimum, comparisons", () => {
  expectValues(pow(t64([1, 2, 3]), 2), [3], [1, 4, 9]);
  expectValues(pow(t64([4, 9]), 0.5), [2], [2, 3]);
  expectValues(pow(2, t64([0, 1, 10, -1])), [4], [1, 2, 1024, 0.5]);
  expectValues(pow(t64([[2], [3]]), t64([1, 2, 3])), [2, 3], [2, 4, 8, 3, 9, 27]);
  expectValues(maximum(t64([1, 5, -2]), t64([3, 4, -2])), [3], [3, 5, -2]);
  expectValues(minimum(t64([1, 5, -2]), t64([3, 4, -2])), [3], [1, 4, -2]);
  expectValues(maximum(t64([[-1, 2], [3, -4]]), 0), [2, 2], [0, 2, 3, 0]);
  expectValues(minimum(t64([-1, 2]), t64([[0], [1]])), [2, 2], [-1, 0, -1, 1]);
  expectValues(gt(t64([1, 2, 3]), 2), [3], [0, 0, 1]);
  expectValues(ge(t64([1, 2, 3]), 2), [3], [0, 1, 1]);
  expectValues(eq(t64([1, 2, 3]), t64([1, 0, 3])), [3], [1, 0, 1]);
  expectValues(sign(t64([-3, 0, 2])), [3], [-1, 0, 1]);
});

Deno.test("forward: unary ops at known points", () => {
  const x = t64([-2, -0.5, 0, 0.5, 2]);
  expectValues(neg(x), [5], [2, 0.5, -0, -0.5, -2]);
  expectValues(exp(t64([0, 1, -1])), [3], [1, Math.E, 1 / Math.E]);
  expectValues(log(t64([1, Math.E, Math.E ** 2, 0.5])), [4], [0, 1, 2, -Math.LN2]);
  expectValues(sqrt(t64([0, 1, 4, 2.25])), [4], [0, 1, 2, 1.5]);
  expectValues(square(x), [5], [4, 0.25, 0, 0.25, 4]);
  expectValues(reciprocal(t64([2, -4, 0.5])), [3], [0.5, -0.25, 2]);
  expectValues(abs(x), [5], [2, 0.5, 0, 0.5, 2]);
  expectValues(relu(x), [5], [0, 0, 0, 0.5, 2]);
  expectValues(tanh(t64([0, 1, -1, 50])), [4], [0, Math.tanh(1), -Math.tanh(1), 1]);
  expectValues(sigmoid(t64([0, 2, -2])), [3], [0.5, 1 / (1 + Math.exp(-2)), 1 / (1 + Math.exp(2))]);
  // Stable at extreme inputs (no NaN, no overflow).
  expectValues(sigmoid(t64([-1000, 1000])), [2], [0, 1]);
  expectValues(sigmoid(tensor([-100, 100])), [2], [0, 1]);
  assert.equal(exp(t64([-1000])).item(), 0);
  assert.equal(log(t64([0])).item(), -Infinity);
  // Scalars and shapes are kept.
  expectValues(exp(t64(0)), [], [1]);
  assert.deepEqual(relu(zeros([2, 0, 3])).shape, [2, 0, 3]);
});

// ---------------------------------------------------------------- reductions

Deno.test("forward: sum, mean, max over axes with and without keepDims", () => {
  // x[i][j][k] = 12 i + 4 j + k, shape [2, 3, 4]
  const x = reshape(arange(24, undefined, 1, { dtype: "float64" }), [2, 3, 4]);
  expectValues(sum(x), [], [276]);
  expectValues(sum(x, undefined, true), [1, 1, 1], [276]);
  expectValues(sum(x, 0), [3, 4], [12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34]);
  expectValues(sum(x, -1), [2, 3], [6, 22, 38, 54, 70, 86]);
  expectValues(sum(x, 1, true), [2, 1, 4], [12, 15, 18, 21, 48, 51, 54, 57]);
  expectValues(sum(x, [0, 2]), [3], [60, 92, 124]);
  expectValues(sum(x, [2, 0], true), [1, 3, 1], [60, 92, 124]);
  expectValues(sum(x, [0, 1]), [4], [60, 66, 72, 78]);
  expectValues(mean(x), [], [11.5]);
  expectValues(mean(x, 1), [2, 4], [4, 5, 6, 7, 16, 17, 18, 19]);
  expectValues(mean(x, [0, 2], true), [1, 3, 1], [7.5, 11.5, 15.5]);
  expectValues(max(x), [], [23]);
  expectValues(max(x, 1), [2, 4], [8, 9, 10, 11, 20, 21, 22, 23]);
  expectValues(max(x, [0, 2], true), [1, 3, 1], [15, 19, 23]);
  expectValues(max(t64([[-5, -3], [-7, -9]]), -1), [2], [-3, -7]);
  expectValues(max(t64([[1, 9, 3], [4, 2, 8]]), 0), [3], [4, 9, 8]);
  // Size-1 axes and scalars.
  expectValues(sum(t64([[1], [2], [3]]), 1), [3], [1, 2, 3]);
  expectValues(sum(t64(5)), [], [5]);
  expectValues(mean(t64([2, 4]), 0, true), [1], [3]);
  // Repeated and negative axes mean the same axis once.
  expectValues(sum(x, [2, -1]), [2, 3], [6, 22, 38, 54, 70, 86]);
});

Deno.test("forward: zero-size tensors flow through ops and gradients", () => {
  const e = zeros([0, 3], { dtype: "float64" });
  expectValues(sum(e, 0), [3], [0, 0, 0]);
  assert.deepEqual(sum(e, 1).shape, [0]);
  assert.deepEqual(max(e, 1).shape, [0]);
  assert.deepEqual(softmax(e).shape, [0, 3]);
  assert.deepEqual(add(e, t64([1, 2, 3])).shape, [0, 3]);
  assert.deepEqual(reshape(e, [-1, 3]).shape, [0, 3]);
  expectValues(concat([e, t64([[1, 2, 3]])]), [1, 3], [1, 2, 3]);
  // K = 0: an empty sum.
  expectValues(matmul(ones([2, 0]), ones([0, 3])), [2, 3], [0, 0, 0, 0, 0, 0]);
  assert.deepEqual(grad((x: Tensor) => sum(x))(e).shape, [0, 3]);
  const g = grad((x: Tensor) => sum(add(x, zeros([0], { dtype: "float64" }))))(t64([5]));
  expectValues(g, [1], [0]);
});

// ---------------------------------------------------------------- matmul

Deno.test("forward: matmul of small integer matrices", () => {
  expectValues(matmul(t64([[1, 2], [3, 4]]), t64([[5, 6], [7, 8]])), [2, 2], [19, 22, 43, 50]);
  expectValues(matmul(t64([[1, 2, 3]]), t64([[1], [0], [-1]])), [1, 1], [-2]);
  expectValues(matmul(t64([[1], [2]]), t64([[3, 4, 5]])), [2, 3], [3, 4, 5, 6, 8, 10]);
  const a = t64([[1, 0, 2], [0, 1, -1]]); // [2, 3]
  const b = t64([[1, 2], [3, 4], [5, 6]]); // [3, 2]
  expectValues(matmul(a, b), [2, 2], [11, 14, -2, -2]);
  expectValues(matmul(b, a), [3, 3], [1, 2, 0, 3, 4, 2, 5, 6, 4]);
  // float32 too.
  expectValues(matmul(tensor([[1, 2], [3, 4]]), tensor([[1, 0], [0, 1]])), [2, 2], [1, 2, 3, 4]);
});

Deno.test("forward: matmul follows IEEE arithmetic (0·∞ and 0·NaN are NaN)", () => {
  assert.ok(Number.isNaN(matmul(tensor([[0, 1]]), tensor([[Infinity], [1]])).item()));
  assert.ok(Number.isNaN(matmul(tensor([[0, 1]]), tensor([[NaN], [1]])).item()));
  assert.ok(Number.isNaN(matmul(tensor([[NaN, 1]]), tensor([[0], [1]])).item()));
  assert.equal(matmul(tensor([[2, 1]]), tensor([[Infinity], [1]])).item(), Infinity);
});

/** Reference batched matmul by explicit loops over broadcast batch indices. */
function refMatmul(a: Tensor, b: Tensor): { shape: number[]; data: number[] } {
  const [m, k] = a.shape.slice(-2), n = b.shape[b.rank - 1];
  const ba = a.shape.slice(0, -2), bb = b.shape.slice(0, -2);
  const r = Math.max(ba.length, bb.length);
  const pad = (s: readonly number[]) => [...new Array(r - s.length).fill(1), ...s];
  const pa = pad(ba), pb = pad(bb);
  const batch = pa.map((d, i) => Math.max(d, pb[i]));
  const ad = a.dataSync(), bd = b.dataSync();
  const data: number[] = [];
  forEachIndex(batch, (idx) => {
    let oa = 0, ob = 0;
    for (let i = 0; i < r; i++) {
      oa = oa * pa[i] + (pa[i] === 1 ? 0 : idx[i]);
      ob = ob * pb[i] + (pb[i] === 1 ? 0 : idx[i]);
    }
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += ad[oa * m * k + i * k + p] * bd[ob * k * n + p * n + j];
        data.push(s);
      }
    }
  });
  return { shape: [...batch, m, n], data };
}

Deno.test("forward: batched and batch-broadcast matmul", () => {
  // Two batches of 2x2 integer matrices.
  const a = t64([[[1, 2], [3, 4]], [[0, 1], [1, 0]]]);
  const b = t64([[[5, 6], [7, 8]], [[2, 3], [4, 5]]]);
  expectValues(matmul(a, b), [2, 2, 2], [19, 22, 43, 50, 4, 5, 2, 3]);
  // A 2-D right operand applies to every batch.
  expectValues(matmul(a, t64([[1, 0], [0, 2]])), [2, 2, 2], [1, 4, 3, 8, 0, 2, 1, 0]);
  for (
    const [sa, sb] of [
      [[2, 1, 3, 4], [3, 4, 2]],
      [[3, 4], [2, 4, 5]],
      [[1, 3, 4], [2, 4, 2]],
      [[2, 1, 2, 3], [1, 3, 3, 2]],
    ]
  ) {
    const x = rnd(sa, 1), y = rnd(sb, 2);
    const ref = refMatmul(x, y);
    const got = matmul(x, y);
    assert.deepEqual(got.shape, ref.shape, `${sa} x ${sb}`);
    assertClose(got, ref.data, { atol: 1e-12, msg: `${sa} x ${sb}` });
  }
});

Deno.test("forward: matmulTransposed equals matmul of explicit transposes, all flags", () => {
  const a = t64([[1, 2, 3], [4, 5, 6]]); // [2, 3]
  const b = t64([[1, 0], [2, 1], [0, 3]]); // [3, 2]
  const expected = matmul(a, b).dataSync(); // [[5, 11], [14, 23]]
  assertClose(expected, [5, 11, 14, 23]);
  const aT = transpose(a), bT = transpose(b);
  expectValues(matmulTransposed(a, b), [2, 2], Array.from(expected));
  expectValues(matmulTransposed(aT, b, { transposeA: true }), [2, 2], Array.from(expected));
  expectValues(matmulTransposed(a, bT, { transposeB: true }), [2, 2], Array.from(expected));
  expectValues(
    matmulTransposed(aT, bT, { transposeA: true, transposeB: true }),
    [2, 2],
    Array.from(expected),
  );
  // Batched with broadcasting.
  const x = rnd([2, 1, 4, 3], 3), y = rnd([3, 5, 4], 4);
  const want = matmul(transpose(x, [0, 1, 3, 2]), transpose(y, [0, 2, 1]));
  const got = matmulTransposed(x, y, { transposeA: true, transposeB: true });
  assert.deepEqual(got.shape, [2, 3, 3, 5]);
  assertClose(got, want.dataSync(), { atol: 1e-12 });
});

// ---------------------------------------------------------------- shape ops

Deno.test("forward: reshape, flatten, transpose", () => {
  const x = arange(6, undefined, 1, { dtype: "float64" });
  expectValues(reshape(x, [2, 3]), [2, 3], [0, 1, 2, 3, 4, 5]);
  expectValues(reshape(x, [3, -1]), [3, 2], [0, 1, 2, 3, 4, 5]);
  expectValues(reshape(x, [-1]), [6], [0, 1, 2, 3, 4, 5]);
  expectValues(reshape(t64([7]), []), [], [7]);
  const y = reshape(arange(24, undefined, 1, { dtype: "float64" }), [2, 3, 4]);
  assert.deepEqual(flatten(y).shape, [24]);
  assert.deepEqual(flatten(y, 1).shape, [2, 12]);
  assert.deepEqual(flatten(y, 0, 1).shape, [6, 4]);
  assert.deepEqual(flatten(y, -2).shape, [2, 12]);
  assert.deepEqual(flatten(t64(3)).shape, [1]);
  expectValues(transpose(t64([[1, 2, 3], [4, 5, 6]])), [3, 2], [1, 4, 2, 5, 3, 6]);
  const t = transpose(y, [2, 0, 1]); // t[k][i][j] = y[i][j][k]
  assert.deepEqual(t.shape, [4, 2, 3]);
  const td = t.dataSync();
  forEachIndex([4, 2, 3], ([k, i, j], o) => assert.equal(td[o], 12 * i + 4 * j + k));
  const d = transpose(y); // reversed axes
  assert.deepEqual(d.shape, [4, 3, 2]);
  forEachIndex([4, 3, 2], ([k, j, i], o) => assert.equal(d.dataSync()[o], 12 * i + 4 * j + k));
  // A large 2-D transpose (the tiled path).
  const big = reshape(arange(70 * 45, undefined, 1, { dtype: "float64" }), [70, 45]);
  const bt = transpose(big).dataSync();
  forEachIndex([45, 70], ([j, i], o) => assert.equal(bt[o], i * 45 + j));
});

Deno.test("forward: slice with steps, negative indices and clamping", () => {
  const x = reshape(arange(12, undefined, 1, { dtype: "float64" }), [3, 4]);
  expectValues(slice(x, [1, 0], [3, 4], [1, 2]), [2, 2], [4, 6, 8, 10]);
  expectValues(slice(x, [-1]), [1, 4], [8, 9, 10, 11]);
  expectValues(slice(x, [0, -3], [-1, -1]), [2, 2], [1, 2, 5, 6]);
  expectValues(slice(x, [0, 1], [3, 4], [2, 2]), [2, 2], [1, 3, 9, 11]);
  expectValues(slice(x, [-10, 2], [100, 100]), [3, 2], [2, 3, 6, 7, 10, 11]);
  assert.deepEqual(slice(x, [2, 0], [1, 4]).shape, [0, 4]);
  expectValues(slice(arange(10, undefined, 1, { dtype: "float64" }), [1], [10], [3]), [3], [1, 4, 7]);
  expectValues(slice(arange(10, undefined, 1, { dtype: "float64" }), [-4], undefined, [2]), [2], [6, 8]);
});

Deno.test("forward: concat along each axis", () => {
  const a = t64([[1, 2], [3, 4]]), b = t64([[5, 6]]), c = t64([[7], [8]]);
  expectValues(concat([a, b]), [3, 2], [1, 2, 3, 4, 5, 6]);
  expectValues(concat([a, c], 1), [2, 3], [1, 2, 7, 3, 4, 8]);
  expectValues(concat([c, a, c], -1), [2, 4], [7, 1, 2, 7, 8, 3, 4, 8]);
  expectValues(concat([a]), [2, 2], [1, 2, 3, 4]);
  const x = reshape(arange(8, undefined, 1, { dtype: "float64" }), [2, 2, 2]);
  expectValues(concat([x, x], 1), [2, 4, 2], [0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7]);
});

Deno.test("forward: broadcastTo", () => {
  expectValues(broadcastTo(t64([1, 2, 3]), [2, 3]), [2, 3], [1, 2, 3, 1, 2, 3]);
  expectValues(broadcastTo(t64([[1], [2]]), [2, 3]), [2, 3], [1, 1, 1, 2, 2, 2]);
  expectValues(broadcastTo(t64(7), [2, 2]), [2, 2], [7, 7, 7, 7]);
  expectValues(broadcastTo(t64([[1], [2]]), [2, 2, 2]), [2, 2, 2], [1, 1, 2, 2, 1, 1, 2, 2]);
  const same = t64([1, 2]);
  assert.deepEqual(Array.from(broadcastTo(same, [2]).dataSync()), [1, 2]);
});

// ---------------------------------------------------------------- softmax and losses

Deno.test("forward: softmax and logSoftmax closed forms", () => {
  expectValues(softmax(t64([1, 1, 1, 1])), [4], [0.25, 0.25, 0.25, 0.25]);
  expectValues(softmax(t64([[3, 3], [-7, -7]])), [2, 2], [0.5, 0.5, 0.5, 0.5]);
  expectValues(logSoftmax(t64([2, 2, 2])), [3], [-Math.log(3), -Math.log(3), -Math.log(3)]);
  // softmax([0, ln 2, ln 3]) = [1, 2, 3] / 6
  expectValues(softmax(t64([0, Math.LN2, Math.log(3)])), [3], [1 / 6, 2 / 6, 3 / 6]);
  expectValues(logSoftmax(t64([0, Math.LN2, Math.log(3)])), [3], [
    -Math.log(6),
    Math.log(2 / 6),
    Math.log(3 / 6),
  ]);
  // Shift invariance and stability with huge logits.
  expectValues(softmax(t64([1000, 1000 + Math.LN2])), [2], [1 / 3, 2 / 3]);
  expectValues(softmax(tensor([-1000, 0, 1000])), [3], [0, 0, 1], 0);
  expectValues(logSoftmax(t64([1000, 0])), [2], [0, -1000]);
  // Along a non-last axis: columns of [[0, ln3], [0, 0]] over axis 0.
  expectValues(softmax(t64([[0, Math.log(3)], [0, 0]]), 0), [2, 2], [0.5, 0.75, 0.5, 0.25]);
  expectValues(logSoftmax(t64([[0, Math.log(3)], [0, 0]]), 0), [2, 2], [
    -Math.LN2,
    Math.log(0.75),
    -Math.LN2,
    Math.log(0.25),
  ]);
  // Rows sum to one along the chosen axis, for a 3-D tensor.
  const x = rnd([2, 3, 4], 9, 3);
  for (const ax of [0, 1, 2]) {
    const s = sum(softmax(x, ax), ax);
    assertClose(s, new Array(s.size).fill(1), { atol: 1e-12 });
    assertClose(exp(logSoftmax(x, ax)), softmax(x, ax).dataSync(), { atol: 1e-12 });
  }
});

Deno.test("forward: crossEntropy closed forms", () => {
  // Uniform logits: ln C for every C.
  for (const c of [1, 2, 3, 10]) {
    assertClose([crossEntropy(zeros([4, c], { dtype: "float64" }), [0, 0, 0, c - 1]).item()], [Math.log(c)], {
      atol: 1e-12,
    });
    assertClose([crossEntropy(full([2, c], 5), [0, c - 1]).item()], [Math.log(c)], { atol: 1e-6 });
  }
  // One row [0, ln 2, ln 3]: probabilities [1, 2, 3] / 6.
  const l = t64([[0, Math.LN2, Math.log(3)], [0, Math.LN2, Math.log(3)]]);
  assertClose([crossEntropy(l, [2, 0]).item()], [(Math.log(2) + Math.log(6)) / 2], { atol: 1e-12 });
  // Labels as Int32Array and as a tensor of integral floats.
  assertClose([crossEntropy(l, new Int32Array([1, 1])).item()], [Math.log(3)], { atol: 1e-12 });
  assertClose([crossEntropy(l, tensor([1, 1])).item()], [Math.log(3)], { atol: 1e-12 });
  // Huge logits stay finite: loss of a confident right answer ~ 0, a wrong one = the margin.
  assertClose([crossEntropy(t64([[1000, 0]]), [0]).item()], [0], { atol: 1e-12 });
  assertClose([crossEntropy(t64([[1000, 0]]), [1]).item()], [1000], { atol: 1e-9 });
  assertClose([crossEntropy(tensor([[100, 0]]), [1]).item()], [100], { atol: 1e-4 });
  // Equals −mean(logSoftmax[label]).
  const x = rnd([5, 4], 11, 2), y = [3, 0, 1, 1, 2];
  const ls = logSoftmax(x).dataSync();
  const want = -y.reduce((s, lab, i) => s + ls[i * 4 + lab], 0) / 5;
  assertClose([crossEntropy(x, y).item()], [want], { atol: 1e-12 });
  const loss = crossEntropy(x, y);
  assert.deepEqual(loss.shape, []);
  assert.equal(loss.dtype, "float64");
});

// ---------------------------------------------------------------- conv and pooling

/** Direct-loop reference conv2d (cross-correlation, zero padding). */
function refConv(
  x: Tensor,
  w: Tensor,
  [sh, sw]: [number, number],
  [ph, pw]: [number, number],
): { shape: number[]; data: number[] } {
  const [n, c, h, wd] = x.shape, [o, , kh, kw] = w.shape;
  const ho = Math.floor((h + 2 * ph - kh) / sh) + 1, wo = Math.floor((wd + 2 * pw - kw) / sw) + 1;
  const xd = x.dataSync(), wdat = w.dataSync();
  const data: number[] = [];
  for (let b = 0; b < n; b++) {
    for (let oc = 0; oc < o; oc++) {
      for (let oy = 0; oy < ho; oy++) {
        for (let ox = 0; ox < wo; ox++) {
          let s = 0;
          for (let ic = 0; ic < c; ic++) {
            for (let ky = 0; ky < kh; ky++) {
              for (let kx = 0; kx < kw; kx++) {
                const iy = oy * sh - ph + ky, ix = ox * sw - pw + kx;
                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                s += xd[((b * c + ic) * h + iy) * wd + ix] * wdat[((oc * c + ic) * kh + ky) * kw + kx];
              }
            }
          }
          data.push(s);
        }
      }
    }
  }
  return { shape: [n, o, ho, wo], data };
}

Deno.test("forward: conv2d with known kernels", () => {
  // x = 0..15 on a 4x4 grid.
  const x = reshape(arange(16, undefined, 1, { dtype: "float64" }), [1, 1, 4, 4]);
  // Kernel [[1, 0], [0, -1]]: x[i][j] − x[i+1][j+1] = −5 everywhere.
  const k = f64([1, 0, 0, -1], [1, 1, 2, 2]);
  expectValues(conv2d(x, k), [1, 1, 3, 3], new Array(9).fill(-5));
  // Identity 1x1 kernel with stride 2: picks x[0][0], x[0][2], x[2][0], x[2][2].
  expectValues(conv2d(x, f64([1], [1, 1, 1, 1]), { stride: 2 }), [1, 1, 2, 2], [0, 2, 8, 10]);
  // Box 3x3 of ones over a 4x4 of ones with padding 1: neighbour counts.
  const box = conv2d(ones([1, 1, 4, 4], { dtype: "float64" }), ones([1, 1, 3, 3], { dtype: "float64" }), {
    padding: 1,
  });
  expectValues(box, [1, 1, 4, 4], [4, 6, 6, 4, 6, 9, 9, 6, 6, 9, 9, 6, 4, 6, 6, 4]);
  // Two input channels summed, two output channels, a bias.
  const x2 = concat([x, mul(x, 10)], 1); // [1, 2, 4, 4]
  const w2 = f64([1, 0, 0, 0, 0, 0, 0, 0, /* oc 1: */ 0, 0, 0, 1, 0, 0, 0, -1], [2, 2, 2, 2]);
  const y2 = conv2d(x2, w2, { bias: f64([100, 0], [2]) });
  assert.deepEqual(y2.shape, [1, 2, 3, 3]);
  const yd = y2.dataSync();
  forEachIndex([3, 3], ([i, j], o) => {
    assert.equal(yd[o], 100 + 4 * i + j); // oc 0: top-left of channel 0 plus bias
    assert.equal(yd[9 + o], (4 * (i + 1) + j + 1) * (1 - 10)); // oc 1: x − 10x at bottom-right
  });
  // Non-square input, kernel, stride and padding against the direct loops.
  for (
    const [sx, sk, st, pd] of [
      [[2, 3, 5, 6], [4, 3, 3, 2], [2, 1], [1, 0]],
      [[1, 2, 4, 7], [3, 2, 2, 3], [1, 3], [0, 2]],
      [[1, 1, 6, 3], [2, 1, 3, 1], [2, 2], [1, 1]],
    ] as [number[], number[], [number, number], [number, number]][]
  ) {
    const xi = rnd(sx, 21), wi = rnd(sk, 22);
    const ref = refConv(xi, wi, st, pd);
    const got = conv2d(xi, wi, { stride: st, padding: pd });
    assert.deepEqual(got.shape, ref.shape);
    assertClose(got, ref.data, { atol: 1e-12 });
  }
});

Deno.test("forward: maxPool2d and avgPool2d of a known grid", () => {
  const x = reshape(arange(16, undefined, 1, { dtype: "float64" }), [1, 1, 4, 4]);
  expectValues(maxPool2d(x, { kernel: 2 }), [1, 1, 2, 2], [5, 7, 13, 15]);
  expectValues(avgPool2d(x, { kernel: 2 }), [1, 1, 2, 2], [2.5, 4.5, 10.5, 12.5]);
  // Stride 1 (overlapping windows).
  expectValues(maxPool2d(x, { kernel: 2, stride: 1 }), [1, 1, 3, 3], [5, 6, 7, 9, 10, 11, 13, 14, 15]);
  expectValues(avgPool2d(x, { kernel: 3, stride: 1 }), [1, 1, 2, 2], [5, 6, 9, 10]);
  // Padding 1, kernel 3, stride 2: windows centred on (0,0), (0,2), (2,0), (2,2).
  expectValues(maxPool2d(x, { kernel: 3, stride: 2, padding: 1 }), [1, 1, 2, 2], [5, 7, 13, 15]);
  // avg with padding counts the zeros in the divisor (PyTorch default): (0+1+4+5)/9, (1+2+3+5+6+7)/9, …
  expectValues(avgPool2d(x, { kernel: 3, stride: 2, padding: 1 }), [1, 1, 2, 2], [
    10 / 9,
    24 / 9,
    51 / 9,
    90 / 9,
  ]);
  // Max pooling ignores padding even when every value is negative.
  expectValues(maxPool2d(neg(add(x, 1)), { kernel: 2, stride: 2, padding: 1 }), [1, 1, 3, 3], [
    -1,
    -2,
    -4,
    -5,
    -6,
    -8,
    -13,
    -14,
    -16,
  ]);
  // Non-square kernel and stride: kernel [1, 4] gives row maxima / means.
  expectValues(maxPool2d(x, { kernel: [1, 4] }), [1, 1, 4, 1], [3, 7, 11, 15]);
  expectValues(avgPool2d(x, { kernel: [4, 1] }), [1, 1, 1, 4], [6, 7, 8, 9]);
  expectValues(maxPool2d(x, { kernel: [2, 3], stride: [2, 1] }), [1, 1, 2, 2], [6, 7, 14, 15]);
  // Planes (N·C) are pooled independently.
  const two = concat([x, neg(x)], 1);
  expectValues(maxPool2d(two, { kernel: 2 }), [1, 2, 2, 2], [5, 7, 13, 15, 0, -2, -8, -10]);
});

Deno.test("forward: max and maxPool2d send gradients to the maximum; ties share or pick one", () => {
  // max: ties share the gradient equally.
  const g = grad((x: Tensor) => max(x))(t64([1, 3, 3, 2]));
  expectValues(g, [4], [0, 0.5, 0.5, 0]);
  const g2 = grad((x: Tensor) => sum(max(x, 1)))(t64([[1, 5], [4, 2]]));
  expectValues(g2, [2, 2], [0, 1, 1, 0]);
  // maxPool2d: each window's gradient goes to one winner.
  const x = reshape(arange(16, undefined, 1, { dtype: "float64" }), [1, 1, 4, 4]);
  const gp = grad((t: Tensor) => sum(maxPool2d(t, { kernel: 2, stride: 1 })))(x);
  expectValues(gp, [1, 1, 4, 4], [0, 0, 0, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1]);
  const ga = grad((t: Tensor) => sum(avgPool2d(t, { kernel: 2, stride: 1 })))(x);
  expectValues(ga, [1, 1, 4, 4], [
    0.25,
    0.5,
    0.5,
    0.25,
    0.5,
    1,
    1,
    0.5,
    0.5,
    1,
    1,
    0.5,
    0.25,
    0.5,
    0.5,
    0.25,
  ]);
  // relu at 0 and maximum at a tie: documented choices (0, and the first argument).
  expectValues(grad((t: Tensor) => sum(relu(t)))(t64([-1, 0, 1])), [3], [0, 0, 1]);
  const [ga2, gb2] = grad((p: Tensor[]) => sum(maximum(p[0], p[1])))([t64([1, 2]), t64([1, 3])]);
  expectValues(ga2, [2], [1, 0]);
  expectValues(gb2, [2], [0, 1]);
});

Deno.test("forward: NaN propagates through relu, max, maximum and minimum (as PyTorch)", () => {
  assert.ok(Number.isNaN(relu(tensor([NaN])).item()));
  assert.ok(Number.isNaN(max(tensor([1, NaN, 3])).item()));
  assert.ok(Number.isNaN(max(tensor([[1, NaN], [3, 4]]), 0).dataSync()[1]));
  assert.ok(Number.isNaN(maximum(tensor([NaN]), tensor([1])).item()));
  assert.ok(Number.isNaN(maximum(tensor([1]), tensor([NaN])).item()));
  assert.ok(Number.isNaN(minimum(tensor([NaN]), tensor([1])).item()));
  assert.ok(Number.isNaN(minimum(tensor([1]), tensor([NaN])).item()));
});
