/**
 * The CPU storage pool (src/cpu/storage_pool.ts): released tensors give their large arrays back,
 * later ops reuse them, and nothing that is still in use, nor a user's array, is ever handed out
 * again; a released tensor whose array was pooled cannot be read.
 */
import assert from "node:assert/strict";
import {
  add,
  conv2d,
  crossEntropy,
  dispose,
  matmul,
  mul,
  randn,
  relu,
  reshape,
  sum,
  Tensor,
  tensor,
  tidy,
  valueAndGrad,
  zeros,
} from "../mod.ts";
import {
  cpuStoragePoolStats,
  DEFAULT_POOL_BYTES,
  DEFAULT_POOLED_MIN_ELEMENTS,
  POOL_MIN_ELEMENTS,
  resetCpuStoragePool,
  setCpuStoragePoolAdaptive,
  setCpuStoragePoolBytes,
  setCpuStoragePoolMinElements,
} from "../src/cpu/storage_pool.ts";
import { allocOutputArray, allocTensorArray } from "../src/alloc.ts";

const N = POOL_MIN_ELEMENTS; // the smallest pooled length
const BIG = [N / 256, 256];

/**
 * Runs `fn` with an empty pool of `bytes` (default bound) that keeps arrays from
 * {@linkcode POOL_MIN_ELEMENTS} up whatever happens (the default narrows to far larger ones once
 * full), restoring both after.
 */
function withPool<T>(fn: () => T, bytes = DEFAULT_POOL_BYTES): T {
  resetCpuStoragePool();
  const prev = setCpuStoragePoolBytes(bytes), prevMin = setCpuStoragePoolMinElements(POOL_MIN_ELEMENTS);
  try {
    return fn();
  } finally {
    setCpuStoragePoolBytes(prev);
    setCpuStoragePoolMinElements(prevMin);
    resetCpuStoragePool();
  }
}

const storageOf = (t: Tensor) => t.storage as Float32Array;

Deno.test("storage pool: a released array is reused by the next op of that dtype and length", () => {
  withPool(() => {
    const x = randn(BIG, { seed: 1 });
    const y = relu(x);
    const kept = storageOf(y);
    dispose(y);
    assert.equal(cpuStoragePoolStats().returned, 1);
    assert.equal(cpuStoragePoolStats().freeArrays, 1);
    const z = mul(x, x); // same dtype and length: takes y's array
    assert.equal(storageOf(z), kept);
    assert.equal(cpuStoragePoolStats().reused, 1);
    assert.equal(cpuStoragePoolStats().freeArrays, 0);
    const xs = x.dataSync();
    const zs = z.dataSync();
    for (let i = 0; i < xs.length; i += 997) assert.equal(zs[i], Math.fround(xs[i] * xs[i]));
    // another dtype or length is not served from that list
    const other = relu(reshape(x, [N]));
    const freed = storageOf(other);
    dispose(other);
    const f64 = randn([N], { seed: 2, dtype: "float64" });
    assert.notEqual(f64.storage, freed);
    const longer = randn([N + 1], { seed: 3 });
    assert.notEqual(storageOf(longer), freed);
    assert.equal(cpuStoragePoolStats().freeArrays, 1, "still free");
  });
});

Deno.test("storage pool: a loop in tidy reuses its arrays from the second iteration on", () => {
  withPool(() => {
    const x = randn(BIG, { seed: 4 });
    resetCpuStoragePool(); // count from here
    const totals: number[] = [];
    for (let i = 0; i < 4; i++) {
      totals.push(tidy(() => sum(add(relu(x), mul(x, x))).item()));
    }
    const s = cpuStoragePoolStats();
    assert.equal(s.fresh, 3, "three large intermediates in the first iteration");
    assert.equal(s.reused, 9, "all of them taken back in each later one");
    assert.deepEqual(totals, [totals[0], totals[0], totals[0], totals[0]]);
  });
});

Deno.test("storage pool: a reshape view kept alive keeps the array its source shared", () => {
  withPool(() => {
    const x = randn(BIG, { seed: 5 });
    const src = relu(x);
    const view = reshape(src, [N]);
    assert.equal(view.storage, src.storage, "reshape shares storage on the CPU");
    const expected = view.dataSync();
    dispose(src);
    assert.equal(cpuStoragePoolStats().returned, 0, "the view still uses the array");
    assert.throws(() => src.dataSync(), /was released/);
    // ops that would love that array get fresh ones
    const others = [mul(x, x), add(x, x), relu(mul(x, x))];
    for (const o of others) assert.notEqual(o.storage, view.storage);
    assert.deepEqual(view.dataSync(), expected);
    dispose(view);
    assert.equal(cpuStoragePoolStats().returned, 1, "the last user released: now it is pooled");
  });
});

Deno.test("storage pool: a user's array wrapped in a Tensor is never recycled, and stays readable", () => {
  withPool(() => {
    const mine = new Float32Array(N).fill(7);
    const t = new Tensor(mine, [N], "float32", "cpu");
    dispose(t);
    assert.equal(cpuStoragePoolStats().returned, 0);
    assert.equal(t.dataSync()[0], 7, "not pooled, so still readable");
    const x = randn([N], { seed: 6 });
    for (let i = 0; i < 3; i++) assert.notEqual(relu(x).storage, mine);
    assert.ok(mine.every((v) => v === 7), "nothing wrote into it");
    // tensor() copies: the copy may be recycled, the user's data never is
    const data = new Float32Array(N).fill(3);
    const copied = tensor(data, [N]);
    dispose(copied);
    assert.equal(cpuStoragePoolStats().returned, 1);
    const reused = mul(x, x);
    assert.notEqual(reused.storage, data);
    assert.ok(data.every((v) => v === 3));
  });
});

Deno.test("storage pool: using a released tensor whose array was pooled throws; small tensors stay readable", () => {
  withPool(() => {
    const x = randn(BIG, { seed: 7 });
    const y = relu(x);
    dispose(y);
    assert.throws(() => y.dataSync(), /Tensor\(\[256, 256\], float32, cpu\) was released/);
    assert.throws(() => relu(y), /was released/);
    assert.throws(() => y.storage, /was released/);
    y[Symbol.dispose](); // releasing again: harmless, counted once
    assert.equal(cpuStoragePoolStats().returned, 1);
    const small = relu(tensor([1, -2, 3]));
    dispose(small);
    assert.deepEqual([...small.dataSync()], [1, 0, 3]);
  });
});

Deno.test("storage pool: an array wrapped again from a stale reference leaves the free list", () => {
  withPool(() => {
    const x = randn([N], { seed: 8 });
    const y = relu(x);
    const stale = storageOf(y);
    dispose(y);
    assert.equal(cpuStoragePoolStats().freeArrays, 1);
    const again = new Tensor(stale, [N], "float32", "cpu");
    assert.equal(cpuStoragePoolStats().freeArrays, 0);
    assert.notEqual(mul(x, x).storage, stale);
    dispose(again);
    assert.equal(cpuStoragePoolStats().freeArrays, 1);
  });
});

Deno.test("storage pool: zeroed allocations are zero even when recycled", () => {
  withPool(() => {
    const y = relu(randn([N], { seed: 9 }));
    dispose(y);
    const z = zeros([N]);
    assert.equal(cpuStoragePoolStats().reused, 1);
    assert.ok(z.dataSync().every((v) => v === 0));
    dispose(z);
    assert.ok((allocTensorArray("float32", [N], "test") as Float32Array).every((v) => v === 0));
    // the output flavour skips the zeroing: it returns the recycled array as it was
    const w = relu(randn([N], { seed: 10 }));
    const stale = storageOf(w).slice();
    dispose(w);
    assert.deepEqual(allocOutputArray("float32", [N], "test"), stale);
  });
});

Deno.test("storage pool: the free lists stay within their bound, keeping the first arrays released", () => {
  const bytes = 4 * N * 3; // room for three arrays of N float32
  withPool(() => {
    const x = randn([N], { seed: 11 });
    const ys = Array.from({ length: 5 }, (_, i) => mul(x, tensor(i + 1)));
    const arrays = ys.map(storageOf);
    dispose(ys);
    const s = cpuStoragePoolStats();
    assert.equal(s.returned, 3);
    assert.equal(
      s.dropped,
      2,
      "the last two did not fit: the next loop iteration asks for the first ones first",
    );
    assert.equal(s.evicted, 0);
    assert.equal(s.freeArrays, 3);
    assert.ok(s.freeBytes <= bytes, `${s.freeBytes} > ${bytes}`);
    // the most recently returned is handed out first; the dropped ones never come back
    const got = [relu(x), relu(x), relu(x), relu(x)].map(storageOf);
    assert.deepEqual(got.slice(0, 3), [arrays[2], arrays[1], arrays[0]]);
    assert.ok(!arrays.includes(got[3]));
    // an array larger than the bound is never kept
    const huge = relu(randn([4 * N], { seed: 12 }));
    dispose(huge);
    assert.equal(cpuStoragePoolStats().freeArrays, 0);
  }, bytes);
  assert.throws(() => setCpuStoragePoolBytes(-1), /bytes must be a non-negative integer, got -1/);
});

Deno.test("storage pool: when full, arrays of a size no longer asked for make room, oldest first", () => {
  const bytes = 4 * N * 3;
  withPool(() => {
    const x = randn([N], { seed: 16 });
    const old = [relu(x), relu(x), relu(x)];
    const oldArrays = old.map(storageOf);
    dispose(old); // the pool is full of length-N arrays
    const y = randn([N + 4], { seed: 17 }); // an allocation of another size: N is not asked for
    const z = relu(y);
    const zArray = storageOf(z);
    dispose(z);
    let s = cpuStoragePoolStats();
    assert.equal(s.evicted, 2, "two stale arrays made room for the new one");
    assert.equal(s.freeArrays, 2);
    assert.equal(storageOf(relu(y)), zArray, "the new size was kept");
    assert.equal(storageOf(relu(x)), oldArrays[2], "the newest stale array is still there");
    // arrays of a size asked for since they were returned are not stale: the incoming one is dropped
    const b = relu(y), bArray = storageOf(b);
    dispose([relu(x), relu(x), relu(x)]); // full again
    dispose(relu(x)); // N asked for (and returned) after the others: all of them are wanted
    dispose(b);
    s = cpuStoragePoolStats();
    assert.equal(s.dropped, 1);
    assert.notEqual(storageOf(relu(y)), bArray);
  }, bytes);
});

Deno.test("storage pool: by default every registered array is kept; without the adaptive rule only long ones", () => {
  resetCpuStoragePool();
  const x = randn([N], { seed: 18 });
  dispose(relu(x));
  assert.equal(cpuStoragePoolStats().returned, 1, "adaptive (the default): kept");
  assert.equal(cpuStoragePoolStats().minElements, N);
  resetCpuStoragePool();
  const prev = setCpuStoragePoolAdaptive(false);
  try {
    assert.equal(cpuStoragePoolStats().minElements, DEFAULT_POOLED_MIN_ELEMENTS);
    const y = relu(x);
    dispose(y);
    assert.equal(cpuStoragePoolStats().returned, 0, "registered (and marked) but not kept");
    assert.throws(() => y.dataSync(), /was released/);
    const big = relu(zeros([DEFAULT_POOLED_MIN_ELEMENTS]));
    dispose(big);
    assert.equal(cpuStoragePoolStats().returned, 1);
  } finally {
    setCpuStoragePoolAdaptive(prev);
  }
  resetCpuStoragePool();
  assert.throws(() => setCpuStoragePoolMinElements(N - 1), /n must be an integer >= 65536, got 65535/);
});

Deno.test("storage pool (adaptive): short arrays are kept until a long one finds no room, then long ones only", () => {
  resetCpuStoragePool();
  const prevBytes = setCpuStoragePoolBytes(4 * N * 4); // room for four arrays of N float32, two of 2N
  const prevMin = setCpuStoragePoolMinElements(2 * N), prevAdaptive = setCpuStoragePoolAdaptive(true);
  try {
    assert.equal(cpuStoragePoolStats().minElements, N, "adaptive: every registered array is kept at first");
    const x = randn([N], { seed: 19 }), xl = randn([2 * N], { seed: 20 });
    const long = [relu(xl), relu(xl)];
    const short = [relu(x), relu(x), relu(x)];
    const shortArrays = short.map(storageOf);
    dispose(short); // asked for after the long ones: not stale
    let s = cpuStoragePoolStats();
    assert.equal(s.returned, 3);
    assert.equal(s.freeArrays, 3);
    dispose(long[0]); // 3N + 2N > 4N: the short ones leave, the long one is kept
    s = cpuStoragePoolStats();
    assert.deepEqual([s.returned, s.evicted, s.dropped, s.freeArrays], [4, 3, 0, 1]);
    assert.equal(s.minElements, 2 * N, "narrowed to the long arrays");
    const again = relu(x);
    assert.ok(!shortArrays.includes(storageOf(again)), "the short arrays left the free lists");
    dispose(again);
    assert.equal(cpuStoragePoolStats().returned, 4, "short arrays are not kept any more");
    dispose(long[1]);
    assert.equal(cpuStoragePoolStats().freeArrays, 2);
    resetCpuStoragePool();
    assert.equal(cpuStoragePoolStats().minElements, N, "a reset starts over with every array");
    setCpuStoragePoolAdaptive(false);
    assert.equal(cpuStoragePoolStats().minElements, 2 * N, "not adaptive: the shortest kept length");
  } finally {
    setCpuStoragePoolBytes(prevBytes);
    setCpuStoragePoolMinElements(prevMin);
    setCpuStoragePoolAdaptive(prevAdaptive);
    resetCpuStoragePool();
  }
});

Deno.test("storage pool: a training step gives the same bits with recycling on and off", () => {
  const x = randn([8, 4, 32, 32], { seed: 13 });
  const labels = new Int32Array([0, 1, 2, 3, 0, 1, 2, 3]);
  const init = { w1: randn([16, 4, 3, 3], { seed: 14 }), w2: randn([4 * 16, 4], { seed: 15 }) };
  const loss = (p: typeof init) => {
    const h = relu(conv2d(x, p.w1, { padding: 1 })); // [8, 16, 32, 32]: 131072 elements, pooled
    const pooled = reshape(sum(reshape(h, [8, 16, 4, 256]), 3), [8, 64]);
    return crossEntropy(matmul(mul(pooled, 1e-3), p.w2), labels);
  };
  const run = () => {
    let p = init;
    const out: number[][] = [];
    for (let i = 0; i < 3; i++) {
      const next = tidy(() => {
        const { value, grads } = valueAndGrad(loss)(p);
        return { value, p: { w1: add(p.w1, mul(grads.w1, -0.1)), w2: add(p.w2, mul(grads.w2, -0.1)) } };
      });
      if (p !== init) dispose(p);
      out.push([next.value.item(), ...next.p.w1.dataSync().slice(0, 8)]);
      p = next.p;
    }
    return out;
  };
  const on = withPool(run);
  const stats = withPool(() => (run(), cpuStoragePoolStats()));
  const off = withPool(run, 0);
  assert.ok(stats.reused > 0, "the step reused arrays");
  assert.deepEqual(on, off);
});
