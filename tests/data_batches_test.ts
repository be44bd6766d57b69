import assert from "node:assert/strict";
import {
  batchIndices,
  gather,
  makeDataset,
  permutation,
  randomSubset,
  reshapeInputs,
  subset,
  withLabels,
} from "../src/data/mod.ts";

Deno.test("permutation: a permutation, deterministic per (seed, epoch), roughly uniform", () => {
  const p = permutation(1000, { seed: 3, epoch: 2 });
  assert.deepEqual(Array.from(p).sort((a, b) => a - b), Array.from({ length: 1000 }, (_, i) => i));
  assert.deepEqual(p, permutation(1000, { seed: 3, epoch: 2 }));
  assert.notDeepEqual(p, permutation(1000, { seed: 3, epoch: 3 }));
  assert.notDeepEqual(p, permutation(1000, { seed: 4, epoch: 2 }));
  // Position of element 0 over many epochs of n = 4: each of the 4 places ≈ 1/4 of the time.
  const where = [0, 0, 0, 0];
  for (let e = 0; e < 4000; e++) where[permutation(4, { seed: 1, epoch: e }).indexOf(0)]++;
  for (const w of where) assert.ok(Math.abs(w - 1000) < 120, `${where}`);
  assert.deepEqual(permutation(0), new Int32Array(0));
  assert.throws(() => permutation(-1), /permutation: n must be a non-negative integer, got -1/);
});

Deno.test("batchIndices: sizes, coverage, dropLast, no shuffle", () => {
  const b = batchIndices(10, 4, { seed: 0 });
  assert.deepEqual(b.map((x) => x.length), [4, 4, 2]);
  assert.deepEqual(b.flatMap((x) => Array.from(x)).sort((a, c) => a - c), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual(batchIndices(10, 4, { dropLast: true }).map((x) => x.length), [4, 4]);
  assert.deepEqual(batchIndices(5, 2, { shuffle: false }).map((x) => Array.from(x)), [[0, 1], [2, 3], [4]]);
  assert.throws(() => batchIndices(10, 0), /batchIndices: batchSize must be a positive integer, got 0/);
});

Deno.test("datasets: make, gather, subset, reshape, relabel", () => {
  const x = new Float32Array([0, 1, 10, 11, 20, 21]);
  const ds = makeDataset(x, new Int32Array([0, 1, 2]), [2], 3);
  const g = gather(ds, [2, 0]);
  assert.deepEqual(Array.from(g.x), [20, 21, 0, 1]);
  assert.deepEqual(Array.from(g.y), [2, 0]);
  assert.deepEqual(Array.from(subset(ds, [1]).x), [10, 11]);
  assert.deepEqual(reshapeInputs(ds, [1, 2]).inputShape, [1, 2]);
  assert.throws(() => reshapeInputs(ds, [3]), /reshapeInputs: inputShape \[3\] must hold 2 numbers/);
  assert.deepEqual(Array.from(withLabels(ds, new Int32Array([1, 1, 1])).y), [1, 1, 1]);
  assert.throws(
    () => withLabels(ds, new Int32Array([1, 1, 3])),
    /withLabels: y\[2\] must be an integer in \[0, 3\), got 3/,
  );
  assert.throws(
    () => makeDataset(x, new Int32Array([0, 1]), [2], 3),
    /makeDataset: x has 6 numbers, expected 4/,
  );
  assert.throws(() => gather(ds, [3]), /gather: indices\[0\] must be an integer in \[0, 3\), got 3/);
  const big = makeDataset(new Float32Array(100), new Int32Array(100).map((_, i) => i % 3), [1], 3);
  const sub = randomSubset(big, 10, 5);
  assert.equal(sub.y.length, 10);
  assert.deepEqual(sub, randomSubset(big, 10, 5));
  assert.equal(randomSubset(big, 1000), big);
});
