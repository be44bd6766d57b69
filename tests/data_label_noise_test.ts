import assert from "node:assert/strict";
import { addLabelNoise, applyTransition, pairflip, symmetric, transitionMatrix } from "../src/data/mod.ts";

const balanced = (n: number, C: number) => new Int32Array(n).map((_, i) => i % C);

Deno.test("transitionMatrix: exactly the matrices of docs/algorithm.md §5", () => {
  assert.deepEqual(transitionMatrix("pairflip", 0.4, 4), [
    [0.6, 0.4, 0, 0],
    [0, 0.6, 0.4, 0],
    [0, 0, 0.6, 0.4],
    [0.4, 0, 0, 0.6],
  ]);
  const s = transitionMatrix("symmetric", 0.3, 4);
  for (let i = 0; i < 4; i++) {
    for (let j = 0; j < 4; j++) assert.equal(s[i][j], i === j ? 1 - 0.3 : 0.3 / 3);
  }
  assert.deepEqual(transitionMatrix("pairflip", 0.25, 2), [[0.75, 0.25], [0.25, 0.75]]);
  assert.deepEqual(transitionMatrix("symmetric", 0, 3), [[1, 0, 0], [0, 1, 0], [0, 0, 1]]);
  // Rows are stochastic.
  for (const row of transitionMatrix("symmetric", 0.45, 10)) {
    assert.ok(Math.abs(row.reduce((a, b) => a + b, 0) - 1) < 1e-12);
  }
});

Deno.test("pairflip: flips only to (i+1) mod C, at the requested rate within sampling error", () => {
  const n = 60000, C = 10, r = 0.4;
  const clean = balanced(n, C);
  const out = pairflip(clean, r, { numClasses: C, seed: 7 });
  let flips = 0;
  const perClass = new Array(C).fill(0);
  for (let i = 0; i < n; i++) {
    if (out.labels[i] !== clean[i]) {
      assert.equal(out.labels[i], (clean[i] + 1) % C, `example ${i}`);
      assert.equal(out.flipped[i], 1);
      flips++;
      perClass[clean[i]]++;
    } else assert.equal(out.flipped[i], 0);
  }
  assert.equal(out.flippedIndices.length, flips);
  assert.equal(out.actualRate, flips / n);
  const se = Math.sqrt(r * (1 - r) / n); // 0.002
  assert.ok(Math.abs(out.actualRate - r) < 4 * se, `rate ${out.actualRate}`);
  const seC = Math.sqrt(r * (1 - r) / (n / C));
  for (const k of perClass) assert.ok(Math.abs(k / (n / C) - r) < 4.5 * seC, `per-class rate ${k / (n / C)}`);
  // flippedIndices ascending and consistent with the mask.
  for (let k = 1; k < out.flippedIndices.length; k++) {
    assert.ok(out.flippedIndices[k] > out.flippedIndices[k - 1]);
  }
  for (const i of out.flippedIndices) assert.equal(out.flipped[i], 1);
  // The input is not mutated.
  assert.deepEqual(clean, balanced(n, C));
});

Deno.test("symmetric: the off-diagonal mass is spread uniformly over the other classes", () => {
  const n = 100000, C = 5, r = 0.4;
  const clean = balanced(n, C);
  const out = symmetric(clean, r, { numClasses: C, seed: 3 });
  const counts = Array.from({ length: C }, () => new Array(C).fill(0));
  for (let i = 0; i < n; i++) counts[clean[i]][out.labels[i]]++;
  const perRow = n / C;
  for (let i = 0; i < C; i++) {
    for (let j = 0; j < C; j++) {
      const p = i === j ? 1 - r : r / (C - 1);
      const se = Math.sqrt(p * (1 - p) / perRow);
      assert.ok(Math.abs(counts[i][j] / perRow - p) < 4.5 * se, `P[${i}][${j}] ≈ ${counts[i][j] / perRow}`);
    }
  }
  assert.ok(Math.abs(out.actualRate - r) < 4 * Math.sqrt(r * (1 - r) / n));
});

Deno.test("label noise: deterministic per seed, different across seeds, rate 0 leaves labels unchanged", () => {
  const clean = balanced(5000, 10);
  const a = pairflip(clean, 0.3, { numClasses: 10, seed: 11 });
  const b = pairflip(clean, 0.3, { numClasses: 10, seed: 11 });
  const c = pairflip(clean, 0.3, { numClasses: 10, seed: 12 });
  assert.deepEqual(a.labels, b.labels);
  assert.deepEqual(a.flipped, b.flipped);
  assert.notDeepEqual(a.labels, c.labels);
  // An example's draw does not depend on the dataset size.
  const prefix = pairflip(clean.subarray(0, 100), 0.3, { numClasses: 10, seed: 11 });
  assert.deepEqual(prefix.labels, a.labels.subarray(0, 100));
  for (const f of [pairflip, symmetric]) {
    const z = f(clean, 0, { numClasses: 10, seed: 5 });
    assert.deepEqual(z.labels, clean);
    assert.equal(z.actualRate, 0);
    assert.equal(z.flippedIndices.length, 0);
  }
  assert.deepEqual(
    addLabelNoise("symmetric", clean, 0.2, { numClasses: 10, seed: 1 }).labels,
    symmetric(clean, 0.2, { numClasses: 10, seed: 1 }).labels,
  );
  // Plain arrays work too; empty input has rate 0.
  assert.equal(pairflip([], 0.2, { numClasses: 3 }).actualRate, 0);
  assert.equal(pairflip([0, 1, 2], 0.2, { numClasses: 3 }).labels.length, 3);
});

Deno.test("label noise: bad rate, class count or labels are errors naming the value", () => {
  const y = [0, 1, 2];
  for (const f of [pairflip, symmetric]) {
    const name = f.name;
    for (const r of [1, 1.5, -0.1, NaN]) {
      assert.throws(
        () => f(y, r, { numClasses: 3 }),
        new RegExp(`^RangeError: ${name}: rate must be in \\[0, 1\\), got ${r}$`),
      );
    }
    for (const C of [1, 0, 2.5]) {
      assert.throws(
        () => f([0], 0.1, { numClasses: C }),
        new RegExp(`${name}: numClasses must be an integer ≥ 2, got ${C}`),
      );
    }
    assert.throws(
      () => f([0, 3], 0.1, { numClasses: 3 }),
      new RegExp(`${name}: labels\\[1\\] must be an integer in \\[0, 3\\), got 3`),
    );
    assert.throws(
      () => f(y, 0.1, { numClasses: 3, seed: -1 }),
      /seed must be an integer in \[0, 2\^32\), got -1/,
    );
  }
  assert.throws(
    () => transitionMatrix("upside" as never, 0.1, 3),
    /transitionMatrix: kind must be one of pairflip, symmetric, got "upside"/,
  );
});

Deno.test("applyTransition: any stochastic matrix; zero-probability classes never drawn", () => {
  const P = [[0, 0, 1], [0.5, 0.5, 0], [0, 1, 0]];
  const y = new Int32Array(3000).map((_, i) => i % 3);
  const out = applyTransition(y, P, { numClasses: 3, seed: 2 });
  for (let i = 0; i < y.length; i++) {
    if (y[i] === 0) assert.equal(out.labels[i], 2);
    if (y[i] === 2) assert.equal(out.labels[i], 1);
    if (y[i] === 1) assert.ok(out.labels[i] <= 1);
  }
  assert.throws(() => applyTransition(y, [[1, 0], [0, 1]], { numClasses: 3 }), /matrix must have 3 rows/);
  assert.throws(
    () => applyTransition(y, [[0.5, 0.6, 0], [0, 1, 0], [0, 0, 1]], { numClasses: 3 }),
    /matrix\[0\] must sum to 1, got 1.1/,
  );
});
