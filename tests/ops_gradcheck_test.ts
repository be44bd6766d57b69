/**
 * Float64 finite-difference gradient checks of every op, on several shapes (broadcasting and
 * size-1 axes included), through a random projection of the output (full Jacobian per reverse pass).
 */
import assert from "node:assert/strict";
import {
  abs,
  add,
  avgPool2d,
  broadcastTo,
  concat,
  conv2d,
  crossEntropy,
  div,
  exp,
  flatten,
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
  pow,
  reciprocal,
  relu,
  reshape,
  sigmoid,
  slice,
  softmax,
  sqrt,
  square,
  sub,
  sum,
  tanh,
  type Tensor,
  transpose,
} from "../mod.ts";
import { testRng } from "../src/webgpu/testing.ts";
import { f64, gradcheck, rnd, rndAwayFromZero, rndDistinct, rndPositive } from "./_gradcheck.ts";

type Shape = number[];

/** A random pair of broadcast-compatible shapes: rank 0–4, dims 1–4, some axes 1 or missing. */
function randomBroadcastPair(seed: number): [Shape, Shape] {
  const u = testRng(seed); // seeded shapes
  const rank = Math.floor(u() * 5);
  const full = Array.from({ length: rank }, () => 1 + Math.floor(u() * 4));
  const squash = (s: Shape) => {
    const drop = Math.floor(u() * (s.length + 1));
    return s.slice(drop).map((d) => (u() < 0.3 ? 1 : d));
  };
  return u() < 0.5 ? [full, squash(full)] : [squash(full), full];
}

const BROADCAST_PAIRS: [Shape, Shape][] = [
  [[3, 4], [3, 4]],
  [[2, 3, 4], [4]],
  [[2, 1, 4], [3, 1]],
  [[1], [2, 3]],
  [[], [2, 3]],
  [[2, 3], []],
  [[4, 1, 1], [1, 3, 2]],
  [[1, 1], [1, 1]],
  ...[11, 12, 13, 14, 15, 16, 17, 18].map(randomBroadcastPair),
];

const UNARY_SHAPES: Shape[] = [[], [1], [5], [3, 1, 4], [2, 5]];

/** Seeds (from `start`) at which |a − b| ≥ gap everywhere after broadcasting. */
function separatedPair(sa: Shape, sb: Shape, start: number, gap = 1e-3): [Tensor, Tensor] {
  for (let s = start; s < start + 100; s++) {
    const a = rnd(sa, s), b = rnd(sb, s + 1000);
    if (-max(neg(abs(sub(a, b)))).item() >= gap) return [a, b];
  }
  throw new Error(`no separated pair for ${sa} ${sb}`);
}

Deno.test("gradcheck: add, sub, mul with broadcasting and size-1 axes", () => {
  BROADCAST_PAIRS.forEach(([sa, sb], k) => {
    const a = rnd(sa, 10 + k), b = rnd(sb, 50 + k);
    gradcheck(`add ${sa} ${sb}`, add, [a, b]);
    gradcheck(`sub ${sa} ${sb}`, sub, [a, b]);
    gradcheck(`mul ${sa} ${sb}`, mul, [a, b]);
  });
  const x = rnd([2, 3], 1);
  gradcheck("add(x, 2)", (t) => add(t, 2), [x]);
  gradcheck("sub(2, x)", (t) => sub(2, t), [x]);
  gradcheck("mul(x, -1.5)", (t) => mul(t, -1.5), [x]);
});

Deno.test("gradcheck: div and pow with broadcasting", () => {
  BROADCAST_PAIRS.forEach(([sa, sb], k) => {
    gradcheck(`div ${sa} ${sb}`, div, [rnd(sa, 20 + k), rndAwayFromZero(sb, 60 + k, 0.5)]);
    // pow: positive base, any exponent (d/db needs ln a).
    gradcheck(`pow ${sa} ${sb}`, pow, [rndPositive(sa, 30 + k), rnd(sb, 70 + k, 0.7)]);
  });
  const x = rndPositive([3, 2], 2);
  gradcheck("div(1, x)", (t) => div(1, t), [x]);
  gradcheck("pow(x, 3)", (t) => pow(t, 3), [rnd([3, 2], 3)]);
  gradcheck("pow(x, 0.5)", (t) => pow(t, 0.5), [x]);
  gradcheck("pow(2, x)", (t) => pow(2, t), [rnd([3, 2], 4)]);
});

Deno.test("gradcheck: maximum and minimum away from ties", () => {
  BROADCAST_PAIRS.forEach(([sa, sb], k) => {
    const [a, b] = separatedPair(sa, sb, 100 + 7 * k);
    gradcheck(`maximum ${sa} ${sb}`, maximum, [a, b]);
    gradcheck(`minimum ${sa} ${sb}`, minimum, [a, b]);
  });
  const x = rndAwayFromZero([4, 3], 5);
  gradcheck("maximum(x, 0)", (t) => maximum(t, 0), [x]);
  gradcheck("minimum(0, x)", (t) => minimum(0, t), [x]);
});

Deno.test("gradcheck: unary ops on several shapes", () => {
  UNARY_SHAPES.forEach((s, k) => {
    const x = rnd(s, 200 + k);
    const pos = rndPositive(s, 300 + k);
    const away = rndAwayFromZero(s, 400 + k);
    gradcheck(`neg ${s}`, neg, [x]);
    gradcheck(`exp ${s}`, exp, [x]);
    gradcheck(`log ${s}`, log, [pos]);
    gradcheck(`sqrt ${s}`, sqrt, [pos]);
    gradcheck(`square ${s}`, square, [x]);
    gradcheck(`reciprocal ${s}`, reciprocal, [away]);
    gradcheck(`abs ${s}`, abs, [away]);
    gradcheck(`relu ${s}`, relu, [away]);
    gradcheck(`tanh ${s}`, tanh, [x]);
    gradcheck(`sigmoid ${s}`, sigmoid, [mul(x, 3)]);
  });
  // Large magnitudes: the stable sigmoid branch and tanh saturation.
  const big = rnd([6], 9, 8);
  gradcheck("sigmoid (large |x|)", sigmoid, [big]);
  gradcheck("tanh (large |x|)", tanh, [rnd([6], 10, 3)]);
});

const REDUCE_CASES: { shape: Shape; axes?: number | number[] }[] = [
  { shape: [2, 3, 4] },
  { shape: [2, 3, 4], axes: 0 },
  { shape: [2, 3, 4], axes: 1 },
  { shape: [2, 3, 4], axes: -1 },
  { shape: [2, 3, 4], axes: [0, 2] },
  { shape: [2, 3, 4], axes: [1, 2] },
  { shape: [2, 3, 4], axes: [-3, -2] },
  { shape: [3, 1, 2], axes: 1 },
  { shape: [3, 1, 2], axes: [0, 1] },
  { shape: [5] },
  { shape: [5], axes: 0 },
  { shape: [1] },
  { shape: [] },
];

Deno.test("gradcheck: sum, mean, max over various axes, keepDims both", () => {
  REDUCE_CASES.forEach(({ shape, axes }, k) => {
    for (const keep of [false, true]) {
      const tag = `${shape} axes ${JSON.stringify(axes)} keepDims ${keep}`;
      gradcheck(`sum ${tag}`, (x) => sum(x, axes, keep), [rnd(shape, 500 + k)]);
      gradcheck(`mean ${tag}`, (x) => mean(x, axes, keep), [rnd(shape, 600 + k)]);
      gradcheck(`max ${tag}`, (x) => max(x, axes, keep), [rndDistinct(shape, 700 + k)]);
    }
  });
});

Deno.test("gradcheck: matmul 2-D, batched and batch-broadcast", () => {
  const cases: [Shape, Shape][] = [
    [[3, 4], [4, 2]],
    [[1, 4], [4, 1]],
    [[4, 1], [1, 3]],
    [[2, 3, 4], [2, 4, 5]],
    [[2, 1, 3, 4], [3, 4, 2]],
    [[3, 4], [2, 4, 5]],
    [[2, 3, 4], [4, 2]],
    [[1, 3, 4], [2, 4, 2]],
    [[2, 1, 2, 3], [1, 3, 3, 2]],
  ];
  cases.forEach(([sa, sb], k) => {
    gradcheck(`matmul ${sa} x ${sb}`, matmul, [rnd(sa, 800 + k), rnd(sb, 850 + k)]);
  });
});

Deno.test("gradcheck: matmulTransposed, all four flag combinations", () => {
  const [m, k, n] = [3, 4, 2];
  for (const ta of [false, true]) {
    for (const tb of [false, true]) {
      const opts = { transposeA: ta, transposeB: tb };
      const sa = ta ? [k, m] : [m, k], sb = tb ? [n, k] : [k, n];
      gradcheck(`matmulT ${ta} ${tb} 2-D`, (a, b) => matmulTransposed(a, b, opts), [
        rnd(sa, 900),
        rnd(sb, 901),
      ]);
      // Batched, with batch broadcasting on both sides.
      gradcheck(`matmulT ${ta} ${tb} batched`, (a, b) => matmulTransposed(a, b, opts), [
        rnd([2, 1, ...sa], 902),
        rnd([3, ...sb], 903),
      ]);
    }
  }
});

Deno.test("gradcheck: reshape, flatten, transpose", () => {
  const x = rnd([2, 3, 4], 1000);
  gradcheck("reshape [4, -1]", (t) => reshape(t, [4, -1]), [x]);
  gradcheck("reshape [24]", (t) => reshape(t, [24]), [x]);
  gradcheck("reshape [1, 2, 1, 12]", (t) => reshape(t, [1, 2, 1, 12]), [x]);
  gradcheck("reshape scalar", (t) => reshape(t, [1, 1]), [rnd([], 1001)]);
  gradcheck("flatten", (t) => flatten(t), [x]);
  gradcheck("flatten 1", (t) => flatten(t, 1), [x]);
  gradcheck("flatten 0..1", (t) => flatten(t, 0, 1), [x]);
  gradcheck("transpose default", (t) => transpose(t), [x]);
  gradcheck("transpose [1, 0, 2]", (t) => transpose(t, [1, 0, 2]), [x]);
  gradcheck("transpose [2, 0, 1]", (t) => transpose(t, [2, 0, 1]), [x]);
  gradcheck("transpose 2-D", (t) => transpose(t), [rnd([3, 5], 1002)]);
  gradcheck("transpose size-1", (t) => transpose(t, [2, 1, 0]), [rnd([1, 3, 1], 1003)]);
});

Deno.test("gradcheck: slice with steps and negative indices", () => {
  const x = rnd([4, 5, 3], 1100);
  gradcheck("slice plain", (t) => slice(t, [1, 0], [3, 5]), [x]);
  gradcheck("slice steps", (t) => slice(t, [0, 1, 0], [4, 5, 3], [2, 2, 1]), [x]);
  gradcheck("slice negative", (t) => slice(t, [-3, -4], [-1, 5], [1, 3]), [x]);
  gradcheck("slice negative end, clamped", (t) => slice(t, [1, -2, -10], [100, -1, 2], [3, 1, 1]), [x]);
  gradcheck("slice begin only", (t) => slice(t, [2]), [x]);
  gradcheck("slice 1-D step 3", (t) => slice(t, [1], [7], [3]), [rnd([7], 1101)]);
});

Deno.test("gradcheck: concat along several axes", () => {
  const a = rnd([2, 3, 4], 1200), b = rnd([2, 1, 4], 1201), c = rnd([2, 2, 4], 1202);
  gradcheck("concat axis 1", (...xs) => concat(xs, 1), [a, b, c]);
  gradcheck("concat axis 0", (...xs) => concat(xs, 0), [rnd([1, 3], 1203), rnd([3, 3], 1204)]);
  gradcheck("concat axis -1", (...xs) => concat(xs, -1), [rnd([2, 1], 1205), rnd([2, 3], 1206)]);
  gradcheck("concat single", (...xs) => concat(xs, 0), [rnd([3], 1207)]);
  // The same tensor twice: its gradient is the sum of both slices.
  gradcheck("concat same twice", (t) => concat([t, t], 0), [rnd([2, 2], 1208)]);
});

Deno.test("gradcheck: broadcastTo", () => {
  const cases: [Shape, Shape][] = [
    [[3, 1], [2, 3, 4]],
    [[], [2, 2]],
    [[4], [3, 4]],
    [[1, 1], [1, 5]],
    [[2, 3], [2, 3]],
  ];
  cases.forEach(([s, to], k) =>
    gradcheck(`broadcastTo ${s} -> ${to}`, (t) => broadcastTo(t, to), [rnd(s, 1300 + k)])
  );
});

Deno.test("gradcheck: softmax and logSoftmax, last and non-last axes", () => {
  const cases: [Shape, number | undefined][] = [
    [[3, 4], undefined],
    [[3, 4], 0],
    [[2, 3, 4], 1],
    [[2, 3, 4], -3],
    [[5], undefined],
    [[4, 1], -1],
    [[1, 4], 0],
  ];
  cases.forEach(([s, ax], k) => {
    const x = rnd(s, 1400 + k, 2);
    gradcheck(`softmax ${s} axis ${ax}`, (t) => softmax(t, ax), [x]);
    gradcheck(`logSoftmax ${s} axis ${ax}`, (t) => logSoftmax(t, ax), [x]);
  });
  gradcheck("softmax shifted logits", (t) => softmax(t), [rnd([2, 3], 1450, 3, 100)]);
  gradcheck("logSoftmax shifted logits", (t) => logSoftmax(t, 0), [rnd([2, 3], 1451, 3, -100)]);
});

Deno.test("gradcheck: crossEntropy", () => {
  gradcheck("crossEntropy [4, 5]", (t) => crossEntropy(t, [0, 4, 2, 2]), [rnd([4, 5], 1500, 2)]);
  gradcheck("crossEntropy [1, 3]", (t) => crossEntropy(t, [1]), [rnd([1, 3], 1501)]);
  gradcheck("crossEntropy [3, 1]", (t) => crossEntropy(t, new Int32Array(3)), [rnd([3, 1], 1502)]);
  gradcheck("crossEntropy large logits", (t) => crossEntropy(t, [1, 0]), [rnd([2, 3], 1503, 8)], {
    h: 1e-5, // the loss is O(10) while most entries of the gradient are tiny: trade roundoff for truncation
  });
  // Composed with a linear layer, labels as a tensor.
  const labels = [2, 0, 1];
  gradcheck("crossEntropy(x·w)", (x, w) => crossEntropy(matmul(x, w), labels), [
    rnd([3, 4], 1504),
    rnd([4, 3], 1505),
  ]);
});

Deno.test("gradcheck: conv2d with stride, padding, non-square shapes, bias", () => {
  const cases: {
    x: Shape;
    w: Shape;
    stride?: number | [number, number];
    padding?: number | [number, number];
  }[] = [
    { x: [1, 1, 4, 4], w: [1, 1, 3, 3] },
    { x: [2, 3, 5, 6], w: [4, 3, 3, 2], stride: [2, 1], padding: [1, 0] },
    { x: [1, 2, 5, 5], w: [3, 2, 3, 3], stride: 2, padding: 1 },
    { x: [2, 2, 4, 7], w: [2, 2, 2, 3], stride: [1, 3], padding: [0, 2] },
    { x: [1, 1, 3, 3], w: [2, 1, 1, 1] },
    { x: [1, 2, 3, 4], w: [1, 2, 3, 4] },
  ];
  cases.forEach(({ x, w, stride, padding }, k) => {
    gradcheck(`conv2d x ${x} w ${w} s ${stride} p ${padding}`, (a, b) => conv2d(a, b, { stride, padding }), [
      rnd(x, 1600 + k),
      rnd(w, 1650 + k),
    ]);
  });
  gradcheck("conv2d with bias", (a, b, c) => conv2d(a, b, { bias: c, padding: 1 }), [
    rnd([2, 2, 3, 4], 1690),
    rnd([3, 2, 2, 2], 1691),
    rnd([3], 1692),
  ]);
});

const POOL_CASES: {
  x: Shape;
  kernel: number | [number, number];
  stride?: number | [number, number];
  padding?: number | [number, number];
}[] = [
  { x: [1, 1, 4, 4], kernel: 2 },
  { x: [2, 2, 5, 6], kernel: 2, stride: 1 },
  { x: [1, 2, 5, 5], kernel: 3, stride: 2, padding: 1 },
  { x: [2, 1, 5, 7], kernel: [3, 2], stride: [1, 2], padding: [1, 1] },
  { x: [1, 3, 6, 4], kernel: [2, 3], stride: [3, 1] },
  { x: [1, 1, 1, 1], kernel: 1 },
];

Deno.test("gradcheck: maxPool2d (stride ≠ kernel, padding)", () => {
  POOL_CASES.forEach(({ x, kernel, stride, padding }, k) => {
    gradcheck(
      `maxPool2d ${x} k ${kernel} s ${stride} p ${padding}`,
      (t) => maxPool2d(t, { kernel, stride, padding }),
      [
        rndDistinct(x, 1700 + k),
      ],
    );
  });
});

Deno.test("gradcheck: avgPool2d (stride ≠ kernel, padding)", () => {
  POOL_CASES.forEach(({ x, kernel, stride, padding }, k) => {
    gradcheck(
      `avgPool2d ${x} k ${kernel} s ${stride} p ${padding}`,
      (t) => avgPool2d(t, { kernel, stride, padding }),
      [
        rnd(x, 1800 + k),
      ],
    );
  });
});

Deno.test("gradcheck: a composed expression (chains of VJPs, shared subexpressions)", () => {
  const f = (x: Tensor, w: Tensor, b: Tensor) => {
    const h = tanh(add(matmul(x, w), b));
    const s = softmax(mul(h, h), 0);
    return sub(mean(mul(s, exp(h)), 1, true), max(h, -1, true));
  };
  gradcheck("composed", f, [rnd([3, 4], 1900), rnd([4, 5], 1901), rnd([5], 1902)]);
});

Deno.test("gradcheck: the same tensor as both operands", () => {
  const x = rnd([3, 3], 1960), pos = rndPositive([2, 3], 1961);
  gradcheck("mul(x, x)", (t) => mul(t, t), [x]);
  gradcheck("sub(x, x)", (t) => sub(t, t), [x]);
  gradcheck("div(x, x)", (t) => div(t, t), [pos]);
  gradcheck("pow(x, x)", (t) => pow(t, t), [pos]);
  gradcheck("maximum(x, x)", (t) => maximum(t, t), [x]);
  gradcheck("minimum(x, x)", (t) => minimum(t, t), [x]);
  gradcheck("matmul(x, x)", (t) => matmul(t, t), [x]);
  gradcheck("matmulTransposed(x, x, B)", (t) => matmulTransposed(t, t, { transposeB: true }), [pos]);
  gradcheck("conv2d(x, x)", (t) => conv2d(t, t, { padding: 1 }), [rnd([1, 1, 3, 3], 1962)]);
});

Deno.test("gradcheck helper: catches a wrong gradient", () => {
  // The value of square(x) with the gradient of the identity (the correction carries no gradient).
  const stopGrad = (t: Tensor) => f64(t.dataSync(), t.shape);
  const wrong = (t: Tensor) => add(t, stopGrad(sub(square(t), t)));
  assert.throws(() => gradcheck("wrong", wrong, [rnd([3], 1950)]), /relative error/);
});
