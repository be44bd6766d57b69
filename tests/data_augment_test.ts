import assert from "node:assert/strict";
import {
  CIFAR10_MEAN,
  CIFAR10_RECORD_BYTES,
  CIFAR10_STD,
  cifar10FromRecords,
  cifarAugment,
  cropOffsets,
  flipDrawn,
  horizontalFlip,
  normalizeChannels,
  randomCrop,
} from "../src/data/mod.ts";

/** A batch of n images [c, h, w] whose every pixel holds a distinct positive value. */
function distinct(n: number, c: number, h: number, w: number): Float32Array {
  return Float32Array.from({ length: n * c * h * w }, (_, i) => i + 1);
}

/** An independent reference crop: pad into a (h+2p)×(w+2p) canvas, then cut at (dy, dx). */
function referenceCrop(
  img: Float32Array,
  c: number,
  h: number,
  w: number,
  p: number,
  dy: number,
  dx: number,
) {
  const H = h + 2 * p, W = w + 2 * p;
  const out = new Float32Array(c * h * w);
  for (let ch = 0; ch < c; ch++) {
    const canvas = new Float32Array(H * W);
    for (let i = 0; i < h; i++) {
      for (let j = 0; j < w; j++) canvas[(i + p) * W + j + p] = img[ch * h * w + i * w + j];
    }
    for (let i = 0; i < h; i++) {
      for (let j = 0; j < w; j++) out[ch * h * w + i * w + j] = canvas[(i + dy) * W + j + dx];
    }
  }
  return out;
}

Deno.test("randomCrop: equals pad-then-cut at the drawn offsets, offsets cover [0, 2p]", () => {
  const n = 64, c = 3, h = 6, w = 5, p = 2;
  const x = distinct(n, c, h, w);
  const idx = Int32Array.from({ length: n }, (_, k) => 1000 + 7 * k);
  const y = randomCrop(x, [c, h, w], idx, { padding: p, seed: 3, epoch: 2 });
  const seen = new Set<string>();
  for (let k = 0; k < n; k++) {
    const { dy, dx } = cropOffsets(idx[k], p, { seed: 3, epoch: 2 });
    assert.ok(Number.isInteger(dy) && dy >= 0 && dy <= 2 * p, `dy ${dy}`);
    assert.ok(Number.isInteger(dx) && dx >= 0 && dx <= 2 * p, `dx ${dx}`);
    seen.add(`${dy},${dx}`);
    const per = c * h * w;
    const want = referenceCrop(x.subarray(k * per, (k + 1) * per), c, h, w, p, dy, dx);
    assert.deepEqual(y.subarray(k * per, (k + 1) * per), want, `example ${k} (dy ${dy}, dx ${dx})`);
  }
  // 64 draws from 25 offsets: most appear (a constant or narrow draw would fail).
  assert.ok(seen.size >= 15, `only ${seen.size} distinct offsets`);
  // padding 0 is the identity
  assert.deepEqual(randomCrop(x, [c, h, w], idx, { padding: 0, seed: 3 }), x);
});

Deno.test("randomCrop: the padding is zeros (or fill per channel), the rest is the image", () => {
  const x = new Float32Array(200 * 2 * 4 * 4).fill(5); // 200 images of 5s
  const idx = Int32Array.from({ length: 200 }, (_, k) => k);
  const y = randomCrop(x, [2, 4, 4], idx, { padding: 4, seed: 1 });
  const zeros = y.filter((v) => v === 0).length, fives = y.filter((v) => v === 5).length;
  assert.equal(zeros + fives, y.length);
  assert.ok(zeros > 0 && fives > 0);
  // The same crops with a per-channel fill: exactly the zeros above become the channel's fill.
  const f = randomCrop(x, [2, 4, 4], idx, { padding: 4, seed: 1, fill: [-1, -2] });
  for (let k = 0; k < 200; k++) {
    for (let ch = 0; ch < 2; ch++) {
      const o = (k * 2 + ch) * 16;
      for (let q = 0; q < 16; q++) {
        const a = y[o + q], b = f[o + q];
        assert.equal(b, a === 0 ? (ch === 0 ? -1 : -2) : 5, `example ${k} channel ${ch} pixel ${q}`);
      }
    }
  }
});

Deno.test("augmentation is a pure function of (seed, epoch, example index)", () => {
  const x = distinct(8, 3, 8, 8);
  const idx = new Int32Array([3, 1, 4, 1, 5, 9, 2, 6]);
  const a = randomCrop(x, [3, 8, 8], idx, { seed: 1, epoch: 4 });
  assert.deepEqual(randomCrop(x, [3, 8, 8], idx, { seed: 1, epoch: 4 }), a);
  assert.notDeepEqual(randomCrop(x, [3, 8, 8], idx, { seed: 2, epoch: 4 }), a);
  assert.notDeepEqual(randomCrop(x, [3, 8, 8], idx, { seed: 1, epoch: 5 }), a);
  // An example's crop does not depend on its batch: example 9 alone equals example 9 in the batch.
  const per = 3 * 64, k = 5;
  const alone = randomCrop(x.slice(k * per, (k + 1) * per), [3, 8, 8], new Int32Array([9]), {
    seed: 1,
    epoch: 4,
  });
  assert.deepEqual(alone, a.subarray(k * per, (k + 1) * per));
  // Flips: the same key gives the same choice; about half are flipped.
  let flips = 0;
  for (let i = 0; i < 2000; i++) {
    const f = flipDrawn(i, 0.5, { seed: 9, epoch: 1 });
    assert.equal(flipDrawn(i, 0.5, { seed: 9, epoch: 1 }), f);
    flips += f ? 1 : 0;
  }
  assert.ok(Math.abs(flips - 1000) < 120, `${flips} flips of 2000`);
  // crop and flip draw from different streams: flips are not a function of the crop offsets
  let agree = 0;
  for (let i = 0; i < 2000; i++) {
    agree += (cropOffsets(i, 4, { seed: 9 }).dy < 4) === flipDrawn(i, 4 / 9, { seed: 9 }) ? 1 : 0;
  }
  assert.ok(agree < 1500, `${agree} of 2000 agree`);
});

Deno.test("horizontalFlip: mirrors the drawn examples, and is an involution", () => {
  const n = 40, c = 2, h = 3, w = 5;
  const x = distinct(n, c, h, w);
  const idx = Int32Array.from({ length: n }, (_, k) => k * 3);
  const key = { seed: 11, epoch: 3 };
  const y = horizontalFlip(x, [c, h, w], idx, key);
  let flipped = 0;
  for (let k = 0; k < n; k++) {
    const f = flipDrawn(idx[k], 0.5, key);
    flipped += f ? 1 : 0;
    for (let ch = 0; ch < c; ch++) {
      for (let i = 0; i < h; i++) {
        for (let j = 0; j < w; j++) {
          const o = ((k * c + ch) * h + i) * w;
          assert.equal(y[o + j], x[o + (f ? w - 1 - j : j)]);
        }
      }
    }
  }
  assert.ok(flipped > 5 && flipped < 35, `${flipped} of ${n} flipped`);
  assert.deepEqual(horizontalFlip(y, [c, h, w], idx, key), x);
  assert.deepEqual(horizontalFlip(x, [c, h, w], idx, { ...key, probability: 0 }), x);
});

Deno.test("normalizeChannels: (x − mean[c]) / std[c] per channel, float64 then rounded once", () => {
  const x = Float32Array.from({ length: 2 * 3 * 4 }, (_, i) => i / 7);
  const mean = [0.1, -0.2, 0.3], std = [0.5, 2, 0.25];
  const y = normalizeChannels(x, [3, 2, 2], mean, std);
  for (let i = 0; i < x.length; i++) {
    const c = Math.floor(i / 4) % 3;
    assert.equal(y[i], Math.fround((x[i] - mean[c]) / std[c]), `element ${i}`);
  }
  assert.throws(
    () => normalizeChannels(x, [3, 2, 2], [0, 0], std),
    /mean must be a number or a list of 3 \(one per channel\)/,
  );
  assert.throws(() => normalizeChannels(x, [3, 2, 2], mean, [1, 0, 1]), /std\[1\] must be > 0, got 0/);
  assert.throws(() => normalizeChannels(x, [5], [0], [1]), /x has 24 numbers, not a multiple of 5/);
});

Deno.test("cifarAugment: on the loader's normalized data equals crop+flip of raw pixels, then normalize", () => {
  // Real CIFAR records (random bytes), loaded raw and normalized.
  const n = 12, rec = new Uint8Array(n * CIFAR10_RECORD_BYTES);
  let s = 12345;
  for (let i = 0; i < rec.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    rec[i] = i % CIFAR10_RECORD_BYTES === 0 ? (s >>> 16) % 10 : s >>> 24;
  }
  const raw = cifar10FromRecords(rec, { normalize: false }), norm = cifar10FromRecords(rec);
  const idx = Int32Array.from({ length: n }, (_, k) => k);
  const ctx = { epoch: 3, seed: 5, inputShape: raw.inputShape };
  const a = cifarAugment()(norm.x, idx, ctx);
  const b = cifarAugment({ normalize: { mean: CIFAR10_MEAN, std: CIFAR10_STD } })(raw.x, idx, ctx);
  // The loader rounds (v/255 − m)/s once from float64; normalizeChannels rounds v/255 to float32
  // first: the two differ by at most an ulp or so.
  let maxErr = 0;
  for (let i = 0; i < a.length; i++) maxErr = Math.max(maxErr, Math.abs(a[i] - b[i]));
  assert.ok(maxErr < 1e-6, `max difference ${maxErr}`);
  // Something did change: the batch is not the input.
  assert.notDeepEqual(a, norm.x);
  // The options' seed overrides fit's; the ctx's seed is used otherwise.
  assert.deepEqual(cifarAugment({ seed: 5 })(norm.x, idx, { ...ctx, seed: 99 }), a);
  assert.notDeepEqual(cifarAugment()(norm.x, idx, { ...ctx, seed: 99 }), a);
  // flip: false is the crop alone.
  assert.deepEqual(
    cifarAugment({ flip: false })(norm.x, idx, ctx),
    randomCrop(norm.x, [3, 32, 32], idx, {
      seed: 5,
      epoch: 3,
      fill: CIFAR10_MEAN.map((m, c) => -m / CIFAR10_STD[c]),
    }),
  );
});

Deno.test("augmentation: bad input names the function, the argument and the value", () => {
  const x = new Float32Array(2 * 3 * 4 * 4), idx = new Int32Array([0, 1]);
  assert.throws(() => randomCrop(x, [3, 4], idx), /randomCrop: inputShape must be \[C, H, W\].*got \[3,4\]/);
  assert.throws(
    () => randomCrop(x, [3, 4, 4], new Int32Array([0])),
    /randomCrop: x has 96 numbers, expected 48 \(1 indices × \[3, 4, 4\]\)/,
  );
  assert.throws(
    () => randomCrop(x, [3, 4, 4], idx, { padding: -1 }),
    /padding must be an integer in \[0, 4096\], got -1/,
  );
  assert.throws(
    () => randomCrop(x, [3, 4, 4], idx, { seed: -1 }),
    /randomCrop: seed must be an integer in \[0, 2\^32\), got -1/,
  );
  assert.throws(
    () => randomCrop(x, [3, 4, 4], idx, { fill: [0, 0] }),
    /fill must be a number or a list of 3/,
  );
  assert.throws(
    () => randomCrop(x, [3, 4, 4], [0, -1]),
    /randomCrop: indices\[1\] must be an integer in \[0, 2\^32\), got -1/,
  );
  assert.throws(
    () => horizontalFlip(x, [3, 4, 4], idx, { probability: 2 }),
    /probability must be a number in \[0, 1\], got 2/,
  );
  assert.throws(() => cifarAugment({ padding: 1.5 }), /cifarAugment: padding must be an integer/);
  assert.throws(
    () => cifarAugment()(new Float32Array(2 * 16), idx, { epoch: 0, seed: 0, inputShape: [1, 4, 4] }),
    /randomCrop: fill must be a number or a list of 1 \(one per channel\)/,
  );
});
