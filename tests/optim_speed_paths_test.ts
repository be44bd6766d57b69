// The fast paths of the CPU optimizer kernels (src/cpu/optim.ts) against the path they
// replaced: the noise drawn by fillNoise into the noise array, chunk by chunk, then read back by
// separate loops. Same bits for every kernel, law, dtype, length (odd ones included), offset and
// thread setting (calling thread alone, workers, "auto", the JavaScript noise path); and whole
// vsgd/vadam runs in both modes give identical params and states whatever the thread setting.
import assert from "node:assert/strict";
import {
  fillNoise,
  NOISE_LAWS,
  type NoiseLaw,
  noiseThreadStats,
  noiseWasmAvailable,
  setNoiseImpl,
  setNoiseThreads,
  type StreamKey,
} from "../src/random/noise.ts";
import { threadSupport } from "../kernels/wasm/noise_threads.ts";
import {
  adamRange,
  cpuOptimKernels,
  noiseRange,
  perturbRange,
  sgdDrawRange,
  sgdRange,
} from "../src/cpu/optim.ts";
import type { NoiseStage } from "../src/optim/fused_ops.ts";
import { applyUpdates, type Optimizer, serialize, vadam, vsgd } from "../src/optim/mod.ts";
import { type DType, Tensor, type TypedArray } from "../src/tensor.ts";
import { type TensorTree, treeLeaves } from "../src/tree.ts";

type Setting = { threads: number | "auto"; impl: "auto" | "js"; name: string };
/**
 * The thread settings (more than two participants is covered by noise_threads_test.ts: switching
 * between pool sizes restarts the workers, which would make this file slow).
 */
const SETTINGS: Setting[] = [
  { threads: 1, impl: "auto", name: "1 thread" },
  { threads: 2, impl: "auto", name: "2 threads" },
  { threads: "auto", impl: "auto", name: "auto" },
  { threads: 1, impl: "js", name: "js" },
];

const THREADS_OK = noiseWasmAvailable() && threadSupport().ok;

/**
 * Starts the noise workers and waits until one has drawn a chunk (they start asynchronously), so
 * that the threaded cases below really run on several threads; returns the chunks drawn so far.
 */
async function workersReady(): Promise<number> {
  if (!THREADS_OK) return 0;
  setNoiseThreads(2);
  try {
    const before = noiseThreadStats().workerChunks, t0 = Date.now();
    const out = new Float32Array(1 << 17);
    while (noiseThreadStats().workerChunks === before && Date.now() - t0 < 10_000) {
      fillNoise(out, "uniform", 1, { k0: 0, k1: 0, c1: 0, c2: 0 });
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(noiseThreadStats().workerChunks > before, "the noise workers never drew a chunk");
    return noiseThreadStats().workerChunks;
  } finally {
    setNoiseThreads("auto");
  }
}

/** After a test: the workers took part (where they exist). */
function assertWorkersTookPart(before: number): void {
  if (THREADS_OK) assert.ok(noiseThreadStats().workerChunks > before, "no chunk was drawn by a worker");
}

function withSetting<T>(s: Setting, fn: () => T): T {
  setNoiseThreads(s.threads);
  setNoiseImpl(s.impl);
  try {
    return fn();
  } finally {
    setNoiseThreads("auto");
    setNoiseImpl("auto");
  }
}

const CHUNK = 2048;

/** The replaced noise step: fillNoise into nOut chunk by chunk (one thread), then the update. */
function oldNoiseRange(
  lo: number,
  hi: number,
  uIn: TypedArray,
  uOut: TypedArray,
  nOld: TypedArray | null,
  nOut: TypedArray | null,
  law: NoiseLaw,
  scale: number,
  key: StreamKey,
): void {
  if (nOut === null) {
    if (nOld === null) { if (uOut !== uIn) { for (let i = lo; i < hi; i++) uOut[i] = uIn[i]; } }
    else for (let i = lo; i < hi; i++) uOut[i] = uIn[i] - nOld[i];
    return;
  }
  for (let c = lo; c < hi; c += CHUNK) {
    const e = Math.min(hi, c + CHUNK);
    fillNoise(nOut.subarray(c, e), law, scale, key, c); // 2048 elements: below the threads' threshold
    if (nOld === null) { for (let i = c; i < e; i++) uOut[i] = uIn[i] + nOut[i]; }
    else for (let i = c; i < e; i++) uOut[i] = uIn[i] + (nOut[i] - nOld[i]);
  }
}

/** The replaced perturb: the noise into out, then out = p + out. */
function oldPerturbRange(
  lo: number,
  hi: number,
  p: TypedArray,
  out: TypedArray,
  law: NoiseLaw,
  scale: number,
  key: StreamKey,
) {
  for (let c = lo; c < hi; c += CHUNK) {
    const e = Math.min(hi, c + CHUNK);
    fillNoise(out.subarray(c, e), law, scale, key, c);
    for (let i = c; i < e; i++) out[i] = p[i] + out[i];
  }
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function randomArray(dtype: DType, n: number, r: () => number, scale = 1): TypedArray {
  const a = dtype === "float32" ? new Float32Array(n) : new Float64Array(n);
  for (let i = 0; i < n; i++) a[i] = scale * (2 * r() - 1);
  return a;
}

const tensor = (a: TypedArray, dtype: DType) => new Tensor(a, [a.length], dtype, "cpu");

function assertBitwise(
  got: ArrayLike<number> | null | undefined,
  want: ArrayLike<number> | null,
  what: string,
) {
  if (want === null || got === null || got === undefined) {
    assert.equal(got ?? null, want, `${what}: null-ness`);
    return;
  }
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < got.length; i++) {
    if (!Object.is(got[i], want[i])) assert.fail(`${what}: element ${i} is ${got[i]}, want ${want[i]}`);
  }
}

/** Lengths: tiny, odd, around the 2048-element chunks, above the threads' threshold. */
function lengths(): number[] {
  const r = rng(3);
  return [1, 3, 7, 2047, 2049, 4099, 40_001, 70_003, 1 + Math.floor(r() * 60_000)];
}

/** The settings to try on `n` elements (the JavaScript noise path on short arrays only: it is slow). */
function settingsFor(n: number, draws = true): Setting[] {
  const s = SETTINGS.filter((x) => x.impl !== "js" || n <= 5000);
  return draws ? s : s.slice(0, 1); // no noise drawn: the thread setting cannot matter
}

Deno.test("speed paths: the sgd and adam kernels with a noise stage equal the replaced path bit for bit", async () => {
  const before = await workersReady();
  const r = rng(11);
  const sgdCfgs = [
    { useMomentum: false, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false }, // one loop
    { useMomentum: false, momentum: 0, dampening: 0, weightDecay: 0.01, nesterov: false },
    { useMomentum: true, momentum: 0.9, dampening: 0, weightDecay: 0.01, nesterov: true },
    { useMomentum: true, momentum: 0.5, dampening: 0.1, weightDecay: 0, nesterov: false },
  ];
  const adamCfgs = [
    { amsgrad: false, decoupled: false, weightDecay: 0 },
    { amsgrad: true, decoupled: true, weightDecay: 0.01 },
    { amsgrad: false, decoupled: false, weightDecay: 0.01 },
  ];
  for (const [c, n] of lengths().entries()) {
    for (const dtype of ["float32", "float64"] as const) {
      const law = NOISE_LAWS[c % 3];
      const key: StreamKey = { k0: 5, k1: 1000 + c, c1: 9, c2: 0 };
      const g = randomArray(dtype, n, r), p = randomArray(dtype, n, r), buf = randomArray(dtype, n, r, 0.1);
      const m = randomArray(dtype, n, r, 0.1), v = randomArray(dtype, n, r, 0.01).map(Math.abs);
      const nOld = randomArray(dtype, n, r, 0.05);
      // stages: drawing with and without old noise, a reset, scale 0
      const stages: [string, Omit<NoiseStage, "nOld">, TypedArray | null][] = [
        ["draw", { law, scale: 0.05, key, reset: false }, nOld],
        ["first draw", { law, scale: 0.3, key, reset: false }, null],
        ["reset", { law, scale: 0.05, key, reset: true }, nOld],
        ["scale 0", { law, scale: 0, key, reset: false }, nOld],
      ];
      for (const [sname, st, old] of stages) {
        const stage: NoiseStage = { ...st, nOld: old ? tensor(old, dtype) : null };
        const draws = !st.reset && st.scale !== 0;
        for (const [k, cfg] of sgdCfgs.entries()) {
          const lr = 0.1;
          // the replaced path: sgdRange then the noise step, chunk by chunk
          const u = dtype === "float32" ? new Float32Array(n) : new Float64Array(n);
          const bufOut = cfg.useMomentum
            ? (dtype === "float32" ? new Float32Array(n) : new Float64Array(n))
            : null;
          const nOut = draws ? (dtype === "float32" ? new Float32Array(n) : new Float64Array(n)) : null;
          for (let lo = 0; lo < n; lo += CHUNK) {
            const hi = Math.min(n, lo + CHUNK);
            sgdRange(
              {
                g,
                p,
                buf: k === 3 ? buf : null,
                u,
                bufOut,
                lr,
                momentum: cfg.momentum,
                dampening: cfg.dampening,
                weightDecay: cfg.weightDecay,
                nesterov: cfg.nesterov,
              },
              lo,
              hi,
            );
            oldNoiseRange(lo, hi, u, u, old, nOut, st.law, st.scale, st.key);
          }
          for (const s of settingsFor(n, draws)) {
            const res = withSetting(s, () =>
              cpuOptimKernels.sgd({
                g: tensor(g, dtype),
                p: tensor(p, dtype),
                buf: k === 3 ? tensor(buf, dtype) : null,
                lr,
                ...cfg,
                noise: stage,
              }));
            const what = `sgd cfg ${k} ${sname} ${law} ${dtype} n ${n} ${s.name}`;
            assertBitwise(res.u.storage as TypedArray, u, `${what}: u`);
            assertBitwise(res.noise?.storage as TypedArray, nOut, `${what}: noise`);
            assertBitwise(
              (res.buffers.momentum?.storage ?? null) as TypedArray | null,
              bufOut,
              `${what}: momentum`,
            );
          }
        }
        if (c % 2 === 1) continue; // adam on half the lengths (it is slow in plain loops)
        for (const [k, cfg] of adamCfgs.entries()) {
          const a = { lr: 1e-3, b1: 0.9, b2: 0.999, eps: 1e-8, t: 3, ...cfg };
          const sc = a.lr / (1 - a.b1 ** a.t), sb2 = Math.sqrt(1 - a.b2 ** a.t);
          const mk = () => (dtype === "float32" ? new Float32Array(n) : new Float64Array(n));
          const u = mk(), mOut = mk(), vOut = mk(), vmaxOut = cfg.amsgrad ? mk() : null;
          const nOut = draws ? mk() : null;
          for (let lo = 0; lo < n; lo += CHUNK) {
            const hi = Math.min(n, lo + CHUNK);
            adamRange(
              {
                g,
                p,
                m,
                v,
                vmax: cfg.amsgrad ? v : null,
                u,
                mOut,
                vOut,
                vmaxOut,
                lr: a.lr,
                b1: a.b1,
                b2: a.b2,
                eps: a.eps,
                weightDecay: a.weightDecay,
                decoupled: a.decoupled,
                sc,
                sb2,
              },
              lo,
              hi,
            );
            oldNoiseRange(lo, hi, u, u, old, nOut, st.law, st.scale, st.key);
          }
          for (const s of settingsFor(n, draws)) {
            const res = withSetting(s, () =>
              cpuOptimKernels.adam({
                g: tensor(g, dtype),
                p: tensor(p, dtype),
                m: tensor(m, dtype),
                v: tensor(v, dtype),
                vmax: cfg.amsgrad ? tensor(v, dtype) : null,
                ...a,
                noise: stage,
              }));
            const what = `adam cfg ${k} ${sname} ${law} ${dtype} n ${n} ${s.name}`;
            assertBitwise(res.u.storage as TypedArray, u, `${what}: u`);
            assertBitwise(res.noise?.storage as TypedArray, nOut, `${what}: noise`);
            assertBitwise(res.buffers.m!.storage as TypedArray, mOut, `${what}: m`);
            assertBitwise(res.buffers.v!.storage as TypedArray, vOut, `${what}: v`);
            assertBitwise((res.buffers.vmax?.storage ?? null) as TypedArray | null, vmaxOut, `${what}: vmax`);
          }
        }
      }
    }
  }
  assertWorkersTookPart(before);
});

Deno.test("speed paths: the noise and perturb kernels and the range functions at offsets equal the replaced path", async () => {
  const before = await workersReady();
  const r = rng(5);
  for (const [c, n] of lengths().entries()) {
    for (const dtype of ["float32", "float64"] as const) {
      for (const law of NOISE_LAWS) {
        const key: StreamKey = { k0: 77, k1: 31 * c + 1, c1: 4, c2: 1 };
        const uIn = randomArray(dtype, n, r, 0.01),
          nOld = randomArray(dtype, n, r, 0.05),
          p = randomArray(dtype, n, r);
        const mk = () => (dtype === "float32" ? new Float32Array(n) : new Float64Array(n));
        // reference: the replaced noise step and perturb on [0, n) and on odd sub-ranges
        const uRef = mk(), nRef = mk(), pRef = mk();
        oldNoiseRange(0, n, uIn, uRef, nOld, nRef, law, 0.07, key);
        oldPerturbRange(0, n, p, pRef, law, 0.07, key);
        const cuts = [0, Math.floor(n / 3) | 1, Math.floor((2 * n) / 3) + 1, n].filter((x, i, a) =>
          x <= n && (i === 0 || x > a[i - 1])
        );
        for (const s of settingsFor(n)) {
          withSetting(s, () => {
            const what = `${law} ${dtype} n ${n} ${s.name}`;
            const res = cpuOptimKernels.noise(tensor(uIn, dtype), {
              law,
              scale: 0.07,
              key,
              reset: false,
              nOld: tensor(nOld, dtype),
            });
            assertBitwise(res.u.storage as TypedArray, uRef, `${what}: noise kernel u`);
            assertBitwise(res.noise!.storage as TypedArray, nRef, `${what}: noise kernel noise`);
            assertBitwise(
              cpuOptimKernels.perturb(tensor(p, dtype), law, 0.07, key).storage as TypedArray,
              pRef,
              `${what}: perturb`,
            );
            const u2 = mk(), n2 = mk(), p2 = mk();
            for (let i = 1; i < cuts.length; i++) {
              noiseRange(cuts[i - 1], cuts[i], uIn, u2, nOld, n2, law, 0.07, key);
              perturbRange(cuts[i - 1], cuts[i], p, p2, law, 0.07, key);
            }
            assertBitwise(u2, uRef, `${what}: noiseRange at offsets`);
            assertBitwise(n2, nRef, `${what}: noiseRange noise at offsets`);
            assertBitwise(p2, pRef, `${what}: perturbRange at offsets`);
          });
        }
      }
    }
  }
  assertWorkersTookPart(before);
});

Deno.test("speed paths: sgdDrawRange is sgdRange followed by the noise step, on any sub-range", () => {
  const r = rng(9);
  for (const dtype of ["float32", "float64"] as const) {
    for (const n of [1, 5, 1001]) {
      const g = randomArray(dtype, n, r), nOld = randomArray(dtype, n, r, 0.1);
      const draws = Float32Array.from(randomArray("float32", n + 7, r, 0.2));
      for (const old of [nOld, null]) {
        const mk = () => (dtype === "float32" ? new Float32Array(n) : new Float64Array(n));
        const u = mk(), nOut = mk(), uRef = mk(), nRef = mk();
        const lo = n > 2 ? 1 : 0, hi = n;
        const plain = { p: null, buf: null, bufOut: null, momentum: 0, dampening: 0, weightDecay: 0 };
        sgdRange({ ...plain, g, u: uRef, lr: 0.3, nesterov: false }, lo, hi);
        for (let i = lo; i < hi; i++) {
          nRef[i] = draws[i + 7];
          uRef[i] = old === null ? uRef[i] + nRef[i] : uRef[i] + (nRef[i] - old[i]);
        }
        sgdDrawRange(lo, hi, g, -0.3, u, old, nOut, draws, 7);
        assertBitwise(u, uRef, `${dtype} n ${n} nOld ${old !== null}: u`);
        assertBitwise(nOut, nRef, `${dtype} n ${n} nOld ${old !== null}: noise`);
      }
    }
  }
});

/** A few steps of `opt` on a tree with a large leaf; returns the params and the serialized state. */
function run(opt: Optimizer<any>, dtype: DType, steps: number): { params: TensorTree; state: Uint8Array } {
  const r = rng(1);
  const leaf = (n: number) => tensor(randomArray(dtype, n, r, 0.5), dtype);
  let params: TensorTree = { a: { w: leaf(70_001), b: leaf(3) }, c: leaf(40_000) };
  let state: unknown = opt.init(params);
  const gr = rng(2);
  for (let s = 0; s < steps; s++) {
    const seen: TensorTree = opt.perturb(params, state);
    const grads: TensorTree = {
      a: { w: tensor(randomArray(dtype, 70_001, gr), dtype), b: tensor(randomArray(dtype, 3, gr), dtype) },
      c: tensor((seen as any).c.storage.map((x: number) => 0.3 * x), dtype),
    };
    const u: { updates: TensorTree; state: unknown } = opt.update(grads, state, params);
    params = applyUpdates(params, u.updates);
    state = u.state;
  }
  return { params, state: serialize(state) };
}

Deno.test("speed paths: vsgd and vadam runs (official and exact, every law) are identical under every thread setting", async () => {
  const before = await workersReady();
  for (const dtype of ["float32", "float64"] as const) {
    for (const law of NOISE_LAWS) {
      const makers: [string, () => Optimizer<any>][] = [
        ["vsgd official", () => vsgd({ lr: 0.05, variability: 0.02, numIters: 4, noise: law, seed: 3 })],
        [
          "vsgd exact",
          () => vsgd({ lr: 0.05, variability: 0.02, numIters: 4, noise: law, seed: 3, mode: "exact" }),
        ],
        [
          "vsgd momentum",
          () => vsgd({ lr: 0.05, momentum: 0.9, weightDecay: 1e-3, variability: 0.02, noise: law }),
        ],
        ["vadam official", () => vadam({ lr: 1e-3, variability: 0.02, numIters: 4, noise: law, seed: 3 })],
        [
          "vadam exact",
          () => vadam({ lr: 1e-3, weightDecay: 0.01, variability: 0.02, noise: law, mode: "exact" }),
        ],
      ];
      for (const [name, make] of makers) {
        const want = withSetting(SETTINGS[0], () => run(make(), dtype, 6));
        for (const s of SETTINGS.slice(1)) {
          const got = withSetting(s, () => run(make(), dtype, 6));
          const what = `${name} ${law} ${dtype} ${s.name}`;
          treeLeaves(want.params).forEach((l, i) =>
            assertBitwise(
              treeLeaves(got.params)[i].tensor.storage as TypedArray,
              l.tensor.storage as TypedArray,
              `${what}: ${l.path}`,
            )
          );
          assert.deepEqual(got.state, want.state, `${what}: state`);
        }
      }
    }
  }
  assertWorkersTookPart(before);
});
