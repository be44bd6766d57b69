/**
 * Batch normalization and dropout on the CPU: forward values against a float64 two-pass reference,
 * float64 finite-difference gradient checks (x, γ, β; running statistics for inference), the
 * dropout mask against an independent draw from Philox, its statistics and its gradient, and the
 * error messages.
 */
import assert from "node:assert/strict";
import {
  add,
  batchNormInference,
  batchNormTrain,
  dropout,
  mul,
  ones,
  sum,
  type Tensor,
  tensor,
  valueAndGrad,
  zeros,
} from "../mod.ts";
import { hashString, philox4x32, U24 } from "../src/random/philox.ts";
import { DROPOUT_STREAM } from "../src/ops/dropout.ts";
import { assertClose, f64, gradcheck, rnd, rndPositive } from "./_gradcheck.ts";

/** Float64 two-pass reference: mean, biased var and y of batch normalization over axis 1. */
function referenceBatchNorm(
  x: Float64Array | Float32Array,
  shape: readonly number[],
  gamma: ArrayLike<number>,
  beta: ArrayLike<number>,
  eps: number,
): { y: Float64Array; mean: Float64Array; var: Float64Array } {
  const [N, C] = shape, S = shape.slice(2).reduce((a, b) => a * b, 1), m = N * S;
  const mean = new Float64Array(C), v = new Float64Array(C), y = new Float64Array(x.length);
  const idx = (n: number, c: number, s: number) => (n * C + c) * S + s;
  for (let c = 0; c < C; c++) {
    let a = 0;
    for (let n = 0; n < N; n++) for (let s = 0; s < S; s++) a += x[idx(n, c, s)];
    mean[c] = a / m;
    let q = 0;
    for (let n = 0; n < N; n++) for (let s = 0; s < S; s++) q += (x[idx(n, c, s)] - mean[c]) ** 2;
    v[c] = q / m;
    for (let n = 0; n < N; n++) {
      for (let s = 0; s < S; s++) {
        const i = idx(n, c, s);
        y[i] = (x[i] - mean[c]) / Math.sqrt(v[c] + eps) * gamma[c] + beta[c];
      }
    }
  }
  return { y, mean, var: v };
}

const SHAPES = [[5, 3], [2, 4], [3, 2, 3, 4], [7, 3, 5, 5], [2, 3, 1, 1], [4, 2, 6]];

Deno.test("batchNormTrain: forward equals a float64 two-pass reference (float64 and float32)", () => {
  for (const [k, shape] of SHAPES.entries()) {
    const C = shape[1];
    const x = rnd(shape, 10 + k, 2, 3), g = rnd([C], 20 + k), b = rnd([C], 30 + k);
    const ref = referenceBatchNorm(x.dataSync() as Float64Array, shape, g.dataSync(), b.dataSync(), 1e-5);
    const r = batchNormTrain(x, g, b);
    assert.deepEqual(r.y.shape, shape);
    assert.deepEqual(r.mean.shape, [C]);
    assert.deepEqual(r.var.shape, [C]);
    assertClose(r.y, ref.y, { atol: 1e-12, rtol: 1e-12, msg: `y ${shape}` });
    assertClose(r.mean, ref.mean, { atol: 1e-13, rtol: 1e-13, msg: `mean ${shape}` });
    assertClose(r.var, ref.var, { atol: 1e-12, rtol: 1e-12, msg: `var ${shape}` });
    // float32: the same within float32 rounding
    const x32 = tensor(x.dataSync(), shape), g32 = tensor(g.dataSync(), [C]), b32 = tensor(b.dataSync(), [C]);
    const r32 = batchNormTrain(x32, g32, b32, { eps: 1e-3 });
    assert.equal(r32.y.dtype, "float32");
    const ref32 = referenceBatchNorm(
      x32.dataSync() as Float32Array,
      shape,
      g32.dataSync(),
      b32.dataSync(),
      1e-3,
    );
    assertClose(r32.y, ref32.y, { atol: 2e-6, rtol: 2e-6, msg: `y float32 ${shape}` });
    assertClose(r32.var, ref32.var, { atol: 1e-6, rtol: 2e-6, msg: `var float32 ${shape}` });
  }
});

Deno.test("batchNormTrain: the one-pass variance stays accurate for a large mean", () => {
  // float32 values 1000 + small noise: a naive Σx² − (Σx)²/m would lose every digit of the variance.
  const n = 4096, d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = 1000 + 0.01 * Math.sin(i * 1.7);
  const x = tensor(d, [n, 1]);
  const r = batchNormTrain(x, ones([1]), zeros([1]), { eps: 0 });
  const ref = referenceBatchNorm(d, [n, 1], [1], [0], 0);
  assertClose(r.var, ref.var, { atol: 0, rtol: 1e-3, msg: "var" });
  assertClose(r.y, ref.y, { atol: 2e-3, rtol: 0, msg: "y" });
});

Deno.test("batchNormTrain: float64 finite-difference gradients w.r.t. x, γ and β", () => {
  // (m = 2 is left out: y = ±γ + β there, so dx is O(eps) and finite differences are all noise)
  for (const [k, shape] of [[5, 3], [3, 4], [3, 2, 3, 4], [2, 3, 2, 2], [4, 2, 3]].entries()) {
    const C = shape[1];
    const x = rnd(shape, 40 + k, 1.5, 0.5), g = rnd([C], 50 + k, 1, 0.5), b = rnd([C], 60 + k);
    gradcheck(
      `batchNormTrain ${JSON.stringify(shape)}`,
      (xx, gg, bb) => batchNormTrain(xx, gg, bb).y,
      [x, g, b],
      { tol: 1e-6 },
    );
    // with a large eps the gradient's eps terms matter
    gradcheck(
      `batchNormTrain eps 0.5 ${JSON.stringify(shape)}`,
      (xx, gg, bb) => batchNormTrain(xx, gg, bb, { eps: 0.5 }).y,
      [x, g, b],
    );
  }
});

Deno.test("batchNormTrain: mean and var carry no gradient", () => {
  const x = rnd([4, 3, 2, 2], 70), g = rnd([3], 71), b = rnd([3], 72), r = rnd([4, 3, 2, 2], 73);
  const withStats = (xs: Tensor[]) => {
    const o = batchNormTrain(xs[0], xs[1], xs[2]);
    return add(sum(mul(o.y, r)), add(sum(o.mean), sum(o.var)));
  };
  const yOnly = (xs: Tensor[]) => sum(mul(batchNormTrain(xs[0], xs[1], xs[2]).y, r));
  const a = valueAndGrad(withStats)([x, g, b]), e = valueAndGrad(yOnly)([x, g, b]);
  for (let k = 0; k < 3; k++) assert.deepEqual([...a.grads[k].dataSync()], [...e.grads[k].dataSync()]);
});

Deno.test("batchNormInference: forward and float64 gradients w.r.t. every argument", () => {
  for (const [k, shape] of [[5, 3], [3, 2, 3, 4], [2, 4, 5]].entries()) {
    const C = shape[1];
    const x = rnd(shape, 80 + k), g = rnd([C], 81 + k), b = rnd([C], 82 + k);
    const rm = rnd([C], 83 + k), rv = rndPositive([C], 84 + k);
    const y = batchNormInference(x, g, b, rm, rv, { eps: 1e-3 });
    const xd = x.dataSync(), S = xd.length / (shape[0] * C);
    const expect = Array.from(xd, (v, i) => {
      const c = Math.floor(i / S) % C;
      return (v - rm.dataSync()[c]) / Math.sqrt(rv.dataSync()[c] + 1e-3) * g.dataSync()[c] + b.dataSync()[c];
    });
    assertClose(y, expect, { atol: 1e-12, rtol: 1e-12, msg: `inference ${shape}` });
    gradcheck(
      `batchNormInference ${JSON.stringify(shape)}`,
      (xx, gg, bb, mm, vv) => batchNormInference(xx, gg, bb, mm, vv),
      [x, g, b, rm, rv],
    );
  }
});

Deno.test("batchNormTrain/batchNormInference: errors name the op, the argument and the shapes", () => {
  const x = zeros([4, 3]);
  assert.throws(
    () => batchNormTrain(zeros([4]), ones([4]), zeros([4])),
    /batchNormTrain: x must be \[N, C\]/,
  );
  assert.throws(
    () => batchNormTrain(x, ones([2]), zeros([3])),
    /batchNormTrain: gamma must be \[3\] \(one value per channel of x \[4, 3\]\), got \[2\]/,
  );
  assert.throws(() => batchNormTrain(x, ones([3]), zeros([3, 1])), /batchNormTrain: beta must be \[3\]/);
  assert.throws(
    () => batchNormTrain(zeros([1, 3, 1, 1]), ones([3]), zeros([3])),
    /batchNormTrain: expected more than 1 value per channel in training mode, got x \[1, 3, 1, 1\]/,
  );
  assert.throws(
    () => batchNormTrain(x, ones([3]), zeros([3]), { eps: -1 }),
    /eps must be a finite number ≥ 0, got -1/,
  );
  assert.throws(
    () => batchNormTrain(f64([0, 1, 2, 3, 4, 5], [2, 3]), ones([3]), zeros([3])),
    /batchNormTrain: cannot mix dtypes/,
  );
  assert.throws(
    () => batchNormInference(x, ones([3]), zeros([3]), zeros([3]), ones([4])),
    /batchNormInference: runningVar must be \[3\]/,
  );
  // inference accepts a single example
  assert.deepEqual(batchNormInference(zeros([1, 3]), ones([3]), zeros([3]), zeros([3]), ones([3])).shape, [
    1,
    3,
  ]);
});

// ---------------------------------------------------------------------------------------------
// dropout

/** The mask by an independent route: Philox words → 24-bit uniforms u, kept when u ≥ rate. */
function referenceMask(n: number, rate: number, seed: number, step: number, path: string): Float64Array {
  const w = new Uint32Array(4), out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    philox4x32(seed >>> 0, hashString(path), Math.floor(i / 4), step, DROPOUT_STREAM, 0, w);
    out[i] = (w[i % 4] >>> 8) * U24 >= rate ? 1 : 0;
  }
  return out;
}

Deno.test("dropout: rate 0 is the identity, rate 1 gives zeros", () => {
  const x = rnd([3, 5], 1);
  assert.equal(dropout(x, 0, { seed: 1, step: 0, path: "d" }), x);
  const zero = dropout(x, 1, { seed: 1, step: 0, path: "d" }).dataSync();
  assert.ok(zero.length === 15 && zero.every((v) => v === 0), `rate 1: ${zero}`); // ±0 (the sign of x)
});

Deno.test("dropout: the mask equals an independent Philox draw with u ≥ rate", () => {
  for (
    const [rate, n, seed, step, path] of [
      [0.5, 1001, 0, 0, "a"],
      [0.1, 37, 7, 12, "features.3"],
      [1 / 3, 4096, -5, 2 ** 32 - 1, "block.0.drop"],
      [0.9, 513, 123456789, 99, ""],
    ] as const
  ) {
    const y = dropout(ones([n]), rate, { seed, step, path });
    const scale = Math.fround(1 / (1 - rate));
    const ref = referenceMask(n, rate, seed, step, path);
    const got = y.dataSync();
    for (let i = 0; i < n; i++) {
      assert.equal(got[i], ref[i] * scale, `rate ${rate} element ${i}: got ${got[i]}`);
    }
  }
});

Deno.test("dropout: kept fraction and mean are preserved in expectation", () => {
  const n = 200_000;
  for (const rate of [0.1, 0.5, 0.8]) {
    const x = rnd([n], 3, 1, 2); // mean 2
    const y = dropout(x, rate, { seed: 11, step: 5, path: "p" });
    const yd = y.dataSync(), xd = x.dataSync();
    let kept = 0, sx = 0, sy = 0;
    for (let i = 0; i < n; i++) {
      if (yd[i] !== 0) kept++;
      sx += xd[i];
      sy += yd[i];
    }
    const p = 1 - rate, se = Math.sqrt(p * (1 - p) / n);
    assert.ok(Math.abs(kept / n - p) < 5 * se, `rate ${rate}: kept ${kept / n}, expected ${p} ± ${5 * se}`);
    // E[y] = E[x]; sd of the mean of y ≈ sqrt((E[x²]/p − E[x]²)/n)
    const sdY = Math.sqrt((5 / p - 4) / n);
    assert.ok(Math.abs(sy / n - sx / n) < 5 * sdY, `rate ${rate}: mean ${sy / n} vs ${sx / n}`);
  }
});

Deno.test("dropout: same key → same mask; another seed, step or path → another mask", () => {
  const x = ones([2, 500]);
  const key = { seed: 3, step: 10, path: "layers.2" };
  const base = [...dropout(x, 0.5, key).dataSync()];
  assert.deepEqual([...dropout(x, 0.5, { ...key }).dataSync()], base);
  // float64 draws the same mask
  assert.deepEqual([...dropout(f64(new Float64Array(1000).fill(1), [2, 500]), 0.5, key).dataSync()], base);
  for (const other of [{ ...key, step: 11 }, { ...key, path: "layers.3" }, { ...key, seed: 4 }]) {
    const m = [...dropout(x, 0.5, other).dataSync()];
    const same = m.filter((v, i) => v === base[i]).length;
    assert.ok(same > 400 && same < 600, `${JSON.stringify(other)}: ${same}/1000 agree (independent ≈ 500)`);
  }
});

Deno.test("dropout: the gradient is mask · 1/(1 − rate)", () => {
  const x = rnd([4, 25], 9), key = { seed: 2, step: 1, path: "d" };
  for (const rate of [0.25, 0.5]) {
    const { grads } = valueAndGrad((xs: Tensor[]) => sum(dropout(xs[0], rate, key)))([x]);
    const mask = dropout(ones([4, 25], { dtype: "float64" }), rate, key).dataSync();
    assert.deepEqual([...grads[0].dataSync()], [...mask]);
    assert.ok(mask.every((v) => v === 0 || v === 1 / (1 - rate)));
    gradcheck(`dropout ${rate}`, (xx) => dropout(xx, rate, key), [x]);
  }
});

Deno.test("dropout: errors name the argument and the value", () => {
  const x = ones([3]);
  assert.throws(
    () => dropout(x, 1.5, { seed: 0, step: 0, path: "" }),
    /dropout: rate must be a number in \[0, 1\], got 1.5/,
  );
  assert.throws(
    () => dropout(x, NaN, { seed: 0, step: 0, path: "" }),
    /rate must be a number in \[0, 1\], got NaN/,
  );
  assert.throws(
    () => dropout(x, 0.5, { seed: 0.5, step: 0, path: "" }),
    /dropout: key.seed must be an integer, got 0.5/,
  );
  assert.throws(
    () => dropout(x, 0.5, { seed: 0, step: -1, path: "" }),
    /key.step must be an integer in \[0, 2\^32\), got -1/,
  );
  assert.throws(
    () => dropout(x, 0.5, { seed: 0, step: 0, path: 3 as unknown as string }),
    /dropout: key.path must be a string, got number/,
  );
  assert.throws(
    () => dropout(x, 0.5, null as unknown as { seed: 0; step: 0; path: "" }),
    /dropout: key must be/,
  );
});
