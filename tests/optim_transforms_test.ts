// clipByGlobalNorm, clipByValue, masked, addDecayedWeights and zeroNans: float64 parity with their
// closed forms, composition with chain and the variable optimizers (fused or not, both modes),
// masks, schedules, serialize round trips, purity, and the same steps on WebGPU against the CPU.
import assert from "node:assert/strict";
import { Tensor } from "../src/tensor.ts";
import { type TensorTree, treeLeaves } from "../src/tree.ts";
import type { DType, TypedArray } from "../src/types.ts";
import {
  adam,
  adamw,
  addDecayedWeights,
  applyUpdates,
  chain,
  clipByGlobalNorm,
  clipByValue,
  deserialize,
  type GradientTransformation,
  hyperparams,
  linearSchedule,
  masked,
  type MaskedState,
  nonFiniteCounts,
  type Optimizer,
  serialize,
  sgd,
  type TransformState,
  vadam,
  vsgd,
  weightNoise,
  zeroNans,
} from "../src/optim/mod.ts";
import { toDevice } from "../src/webgpu/mod.ts";
import { testRng } from "../src/webgpu/testing.ts";
import { webgpuSuite } from "./_webgpu.ts";

const rng = testRng(2024);
const rand = (n: number, scale = 1) => Array.from({ length: n }, () => (rng() * 2 - 1) * scale);
const T = (xs: readonly number[], shape: number[], dtype: DType = "float64") =>
  new Tensor(dtype === "float64" ? Float64Array.from(xs) : Float32Array.from(xs), shape, dtype, "cpu");

/** A tree with nesting, an array, a scalar and a matrix: every kind of node. */
function tree(scale = 1, dtype: DType = "float64"): TensorTree {
  return {
    layers: [{ w: T(rand(6, scale), [2, 3], dtype), b: T(rand(3, scale), [3], dtype) }, {
      w: T(rand(4, scale), [4, 1], dtype),
      b: T(rand(1, scale), [1], dtype),
    }],
    norm: { scale: T(rand(1, scale), [], dtype) },
  };
}
const like = (t: TensorTree, f: (x: number, i: number, path: string) => number, dtype?: DType) => {
  const m = new Map(treeLeaves(t).map((l) => [l.path, l.tensor]));
  return rebuild(t, (x, path) => {
    const d = x.storage as TypedArray;
    return T(Array.from(d, (v, i) => f(v, i, path)), x.shape.slice(), dtype ?? x.dtype);
  }, m);
};
function rebuild(t: TensorTree, f: (x: Tensor, path: string) => Tensor, _m?: unknown): TensorTree {
  const walk = (n: unknown, path: string): unknown => {
    if (n instanceof Tensor) return f(n, path);
    if (Array.isArray(n)) return n.map((c, i) => walk(c, path === "" ? `${i}` : `${path}.${i}`));
    return Object.fromEntries(
      Object.entries(n as object).map(([k, c]) => [k, walk(c, path === "" ? k : `${path}.${k}`)]),
    );
  };
  return walk(t, "") as TensorTree;
}
const flat = (t: TensorTree) => new Map(treeLeaves(t).map((l) => [l.path, Array.from(l.tensor.dataSync())]));
const bits = (t: TensorTree) => treeLeaves(t).map((l) => [l.path, Array.from(l.tensor.dataSync())]);
const copyTree = (t: TensorTree) =>
  rebuild(t, (x) => new Tensor((x.storage as TypedArray).slice(), x.shape, x.dtype, "cpu"));

function closeTrees(a: TensorTree, b: TensorTree, rel: number, what: string) {
  const fa = flat(a), fb = flat(b);
  assert.deepEqual([...fa.keys()], [...fb.keys()], what);
  for (const [p, xs] of fa) {
    const ys = fb.get(p)!;
    xs.forEach((x, i) => {
      const tol = rel * Math.max(1, Math.abs(ys[i]));
      assert.ok(Math.abs(x - ys[i]) <= tol, `${what}: ${p}[${i}] ${x} vs ${ys[i]}`);
    });
  }
}

Deno.test("clipByGlobalNorm: g·c/max(‖g‖, c) over the whole tree (float64), identity bit for bit below c", () => {
  for (let trial = 0; trial < 5; trial++) {
    const g = tree(3);
    const all = [...flat(g).values()].flat();
    const norm = Math.sqrt(all.reduce((a, x) => a + x * x, 0));
    for (const c of [norm / 3, norm * 0.999, norm * 2]) {
      const clip = clipByGlobalNorm(c);
      const r = clip.update(g, clip.init(g));
      closeTrees(r.updates, like(g, (x) => x * c / Math.max(norm, c)), 1e-15, `c = ${c}`);
      if (c > norm) assert.deepEqual(bits(r.updates), bits(g), "below the threshold: unchanged");
      const out = [...flat(r.updates).values()].flat();
      const outNorm = Math.sqrt(out.reduce((a, x) => a + x * x, 0));
      assert.ok(Math.abs(outNorm - Math.min(norm, c)) < 1e-12 * norm, `norm after: ${outNorm}`);
      assert.equal(hyperparams(r.state).maxNorm, c);
    }
  }
});

Deno.test("clipByValue: min(max(g, −c), c) entry by entry, infinities to ±c (float64 and float32)", () => {
  for (const dtype of ["float64", "float32"] as const) {
    const g = like(tree(2, dtype), (x, i) => (i === 0 ? Infinity : i === 1 ? -Infinity : x));
    const c = 0.75;
    const clip = clipByValue(c);
    const r = clip.update(g, clip.init(g));
    const want = like(g, (x) => Math.min(Math.max(x, -c), c));
    assert.deepEqual(bits(r.updates), bits(want), dtype);
    assert.equal(treeLeaves(r.updates)[0].tensor.dtype, dtype);
  }
});

Deno.test("addDecayedWeights: u + wd·p, and before sgd exactly sgd's own weight decay (every step, bit for bit)", () => {
  const p = tree(), g = tree(), wd = 0.05;
  const d = addDecayedWeights(wd);
  const pm = flat(p);
  const r = d.update(g, d.init(p), p);
  assert.deepEqual(bits(r.updates), bits(like(g, (x, i, path) => x + wd * pm.get(path)![i])));
  const d0 = addDecayedWeights(0);
  assert.deepEqual(bits(d0.update(g, d0.init(p)).updates), bits(g), "wd 0 needs no params");
  for (const dtype of ["float64", "float32"] as const) {
    for (const mode of ["official", "exact"] as const) {
      const mine = chain(addDecayedWeights(wd), vsgd({ lr: 0.1, momentum: 0.9, numIters: 3, seed: 5, mode }));
      const ref = vsgd({ lr: 0.1, momentum: 0.9, weightDecay: wd, numIters: 3, seed: 5, mode });
      let pa = tree(1, dtype), sa = mine.init(pa);
      let pb = copyTree(pa), sb = ref.init(pb);
      for (let s = 0; s < 7; s++) {
        const ga = like(mine.perturb(pa, sa), (x) => 2 * x + 0.1); // ∇ of a parabola at the noisy weights
        const gb = like(ref.perturb(pb, sb), (x) => 2 * x + 0.1);
        const ra = mine.update(ga, sa, pa), rb = ref.update(gb, sb, pb);
        pa = applyUpdates(pa, ra.updates), sa = ra.state;
        pb = applyUpdates(pb, rb.updates), sb = rb.state;
        // float64: bit for bit; float32: sgd's fused kernel keeps g + wd·p unrounded into the momentum
        if (dtype === "float64") assert.deepEqual(bits(pa), bits(pb), `${mode} step ${s}`);
        else closeTrees(pa, pb, 1e-6, `float32 ${mode} step ${s}`);
      }
      if (dtype === "float64") assert.deepEqual(bits(mine.clean(pa, sa)), bits(ref.clean(pb, sb)));
    }
  }
});

Deno.test("zeroNans: non-finite entries become 0, counted per step and in total (float64 and float32)", async () => {
  for (const dtype of ["float64", "float32"] as const) {
    const bad = new Set([0, 3]);
    const g = like(
      tree(1, dtype),
      (x, i, path) => (path === "layers.0.w" && bad.has(i) ? (i ? NaN : -Infinity) : x),
    );
    const z = zeroNans();
    let state = z.init(g);
    assert.deepEqual(await nonFiniteCounts(state), { last: 0, total: 0, paths: [] });
    const r = z.update(g, state);
    assert.deepEqual(bits(r.updates), bits(like(g, (x) => (Number.isFinite(x) ? x : 0))));
    assert.equal(
      treeLeaves(r.updates)[0].tensor,
      treeLeaves(g)[0].tensor,
      "a finite leaf passes through as is",
    );
    state = r.state;
    assert.deepEqual(await nonFiniteCounts(state), { last: 2, total: 2, paths: ["layers.0.w"] });
    state = z.update(tree(1, dtype), state).state;
    assert.deepEqual(await nonFiniteCounts(state), { last: 0, total: 2, paths: [] });
    state = z.update(g, state).state;
    assert.deepEqual(await nonFiniteCounts(state), { last: 2, total: 4, paths: ["layers.0.w"] });
    const c = state.counts["layers.0.w"];
    assert.equal(c.nonFiniteTotal!.dtype, dtype);
    assert.deepEqual(Array.from(c.nonFinite!.dataSync()), [2]);
    assert.equal(state.counts["layers.0.b"].nonFinite, null);
  }
});

Deno.test("masked: the transformation on the selected leaves only, the others' gradients unchanged", () => {
  const p = tree(), g = tree();
  const isMatrix = (_: string, x: Tensor) => x.rank === 2;
  const byTree = { layers: [{ w: true, b: false }, { w: true, b: false }], norm: false };
  for (const mask of [isMatrix, byTree]) {
    const opt = masked(adam({ lr: 0.1 }), mask);
    const state = opt.init(p);
    assert.deepEqual(state.paths, ["layers.0.w", "layers.1.w"]);
    assert.deepEqual(Object.keys((state.inner as TransformState).leaves), ["layers.0.w", "layers.1.w"]);
    const r = opt.update(g, state, p);
    // reference: adam on the sub-tree alone, at the same paths
    const sub = { layers: { 0: { w: (p as any).layers[0].w }, 1: { w: (p as any).layers[1].w } } };
    const gsub = { layers: { 0: { w: (g as any).layers[0].w }, 1: { w: (g as any).layers[1].w } } };
    const a = adam({ lr: 0.1 });
    const ra = a.update(gsub, a.init(sub), sub);
    const got = flat(r.updates), want = flat(ra.updates), gin = flat(g);
    for (const [path, xs] of got) {
      if (want.has(path)) assert.deepEqual(xs, want.get(path), path);
      else assert.deepEqual(xs, gin.get(path), `${path} passes through`);
    }
  }
  // a boolean stands for a whole sub-tree
  const o = masked(sgd({ lr: 1 }), { layers: true, norm: false });
  assert.deepEqual(o.init(p).paths, ["layers.0.b", "layers.0.w", "layers.1.b", "layers.1.w"]);
  assert.deepEqual(masked(sgd({ lr: 1 }), false).init(p).paths, []);
  const none = masked(sgd({ lr: 1 }), false);
  assert.deepEqual(bits(none.update(g, none.init(p), p).updates), bits(g));
});

Deno.test("masked parameter groups: decoupled decay on weights, plain Adam on the rest = two optimizers", () => {
  const p0 = tree(), isW = (path: string) => path.endsWith(".w");
  const opt = chain(
    masked(adamw({ lr: 0.01, weightDecay: 0.1 }), isW),
    masked(adam({ lr: 0.01 }), (path) => !isW(path)),
  );
  const split = (t: TensorTree, w: boolean) => {
    const out: Record<string, Tensor> = {};
    for (const l of treeLeaves(t)) if (isW(l.path) === w) out[l.path.replaceAll(".", "_")] = l.tensor;
    return out;
  };
  let p = p0, s = opt.init(p);
  const aw = adamw({ lr: 0.01, weightDecay: 0.1 }), ad = adam({ lr: 0.01 });
  let pw = split(p0, true), pr = split(p0, false), sw = aw.init(pw), sr = ad.init(pr);
  for (let k = 0; k < 4; k++) {
    const g = like(p, (x) => Math.sin(3 * x) + 0.2);
    const r = opt.update(g, s, p);
    p = applyUpdates(p, r.updates), s = r.state;
    const rw = aw.update(split(g, true), sw, pw), rr = ad.update(split(g, false), sr, pr);
    pw = applyUpdates(pw, rw.updates), sw = rw.state, pr = applyUpdates(pr, rr.updates), sr = rr.state;
  }
  const got = [...treeLeaves(p)].map((l) => Array.from(l.tensor.dataSync()));
  const want = treeLeaves(p).map((l) =>
    Array.from((isW(l.path) ? pw : pr)[l.path.replaceAll(".", "_")].dataSync())
  );
  assert.deepEqual(got, want);
});

Deno.test("masked weight noise: noise only on the selected leaves, the same noise as unmasked, clean removes it", () => {
  const p = tree(), g = tree();
  const isW = { layers: [{ w: true, b: false }, { w: true, b: false }], norm: false };
  for (const mode of ["official", "exact"] as const) {
    const opt = chain(
      sgd({ lr: 0.1 }),
      masked(weightNoise({ variability: 0.1, seed: 3, mode, numIters: 10 }), isW),
    );
    const ref = chain(sgd({ lr: 0.1 }), weightNoise({ variability: 0.1, seed: 3, mode, numIters: 10 }));
    const r = opt.update(g, opt.init(p), p), rr = ref.update(g, ref.init(p), p);
    const p1 = applyUpdates(p, r.updates), q1 = applyUpdates(p, rr.updates);
    const seen = flat(opt.perturb(p1, r.state)), seenRef = flat(ref.perturb(q1, rr.state));
    const plain = flat(applyUpdates(p, sgd({ lr: 0.1 }).update(g, sgd({ lr: 0.1 }).init(p)).updates));
    for (const [path, xs] of seen) {
      if (path.endsWith(".w")) {
        assert.deepEqual(xs, seenRef.get(path), `${mode} ${path}: the unmasked noise`);
        assert.notDeepEqual(xs, plain.get(path));
      } else assert.deepEqual(xs, plain.get(path), `${mode} ${path}: no noise`);
    }
    closeTrees(opt.clean(p1, r.state), ref.clean(q1, rr.state), 1e-15, `${mode} clean`);
  }
});

Deno.test("composition: order matters and each chain equals its members applied one after the other", () => {
  const p = tree(), g = tree(4);
  const a = chain(clipByValue(1), clipByGlobalNorm(1.5)), b = chain(clipByGlobalNorm(1.5), clipByValue(1));
  const step = (t: GradientTransformation<any>, x: TensorTree) => t.update(x, t.init(p), p).updates;
  const ra = step(a, g), rb = step(b, g);
  assert.deepEqual(bits(ra), bits(step(clipByGlobalNorm(1.5), step(clipByValue(1), g))));
  assert.deepEqual(bits(rb), bits(step(clipByValue(1), step(clipByGlobalNorm(1.5), g))));
  assert.notDeepEqual(bits(ra), bits(rb));
  // with the variable optimizers, fused (sgd + official weight noise) and nested (vsgd, vadam)
  const gNaN = like(g, (x, i, path) => (path === "norm.scale" ? NaN : x * (i + 1)));
  const makers: [() => Optimizer<any>, () => Optimizer<any>][] = [
    [() => vsgd({ lr: 0.1, momentum: 0.9, seed: 1 }), () => vsgd({ lr: 0.1, momentum: 0.9, seed: 1 })],
    [
      () => chain(sgd({ lr: 0.1 }), weightNoise({ seed: 2 })),
      () => chain(sgd({ lr: 0.1 }), weightNoise({ seed: 2 })),
    ],
    [() => vadam({ lr: 0.01, mode: "exact", seed: 4 }), () => vadam({ lr: 0.01, mode: "exact", seed: 4 })],
  ];
  for (const [mk, mkRef] of makers) {
    const opt = chain(zeroNans(), clipByGlobalNorm(1), mk());
    const ref = mkRef();
    let pa = p, sa = opt.init(pa), pb = p, sb = ref.init(pb);
    for (let s = 0; s < 4; s++) {
      const ra = opt.update(gNaN, sa, pa);
      const pre = step(chain(zeroNans(), clipByGlobalNorm(1)), gNaN);
      const rb = ref.update(pre, sb, pb);
      pa = applyUpdates(pa, ra.updates), sa = ra.state, pb = applyUpdates(pb, rb.updates), sb = rb.state;
      assert.deepEqual(bits(pa), bits(pb), `step ${s}`);
      assert.deepEqual(bits(opt.perturb(pa, sa)), bits(ref.perturb(pb, sb)));
      assert.deepEqual(bits(opt.clean(pa, sa)), bits(ref.clean(pb, sb)));
    }
    assert.ok(treeLeaves(pa).every((l) => Array.from(l.tensor.dataSync()).every(Number.isFinite)));
  }
});

Deno.test("schedules drive maxNorm, maxAbs and the decay; hyperparams reports the values used", () => {
  const p = tree(), g = tree(5);
  const opt = chain(
    clipByValue((s) => 2 - 0.5 * s),
    clipByGlobalNorm(linearSchedule({ init: 3, end: 1, steps: 2 })),
    addDecayedWeights((s) => 0.01 * s, (path) => path.endsWith("w")),
    sgd({ lr: 0.1 }),
  );
  let state = opt.init(p);
  const seen: Record<string, number>[] = [];
  for (let s = 0; s < 3; s++) {
    const r = opt.update(g, state, p);
    const ref = chain(
      clipByValue(2 - 0.5 * s),
      clipByGlobalNorm([3, 2, 1][s]),
      masked(addDecayedWeights(0.01 * s), (path) => path.endsWith("w")),
      sgd({ lr: 0.1 }),
    );
    assert.deepEqual(bits(r.updates), bits(ref.update(g, ref.init(p), p).updates), `step ${s}`);
    state = r.state;
    seen.push(hyperparams(state));
  }
  assert.deepEqual(seen.map((h) => [h.step, h.maxAbs, h.maxNorm, h.addDecayedWeights]), [
    [1, 2, 3, 0],
    [2, 1.5, 2, 0.01],
    [3, 1, 1, 0.02],
  ]);
});

Deno.test("serialize round trip: a resumed chain of every new transformation continues bit for bit", () => {
  const mk = () =>
    chain(
      zeroNans(),
      clipByGlobalNorm(1),
      clipByValue(0.5),
      addDecayedWeights(1e-2, { layers: true, norm: false }),
      masked(vsgd({ lr: 0.1, momentum: 0.9, numIters: 4, seed: 9 }), (path) => path !== "norm.scale"),
    );
  const opt = mk();
  const base = tree();
  const grads = (s: number) => like(base, (x, i) => (i === s ? NaN : Math.cos(x + s)));
  let p = tree(), state = opt.init(p);
  for (let s = 0; s < 3; s++) {
    const r = opt.update(grads(s), state, p);
    p = applyUpdates(p, r.updates), state = r.state;
  }
  const bytes = serialize(state);
  const other = mk();
  let q = copyTree(p), back = deserialize(bytes, other.init(q));
  assert.deepEqual(serialize(back), bytes);
  for (let s = 3; s < 9; s++) {
    const r = opt.update(grads(s), state, p), rb = other.update(grads(s), back, q);
    p = applyUpdates(p, r.updates), state = r.state, q = applyUpdates(q, rb.updates), back = rb.state;
    assert.deepEqual(bits(p), bits(q), `step ${s}`);
  }
  assert.deepEqual(serialize(back), serialize(state));
  // a template whose mask selects other paths is refused
  const wrong = chain(
    zeroNans(),
    clipByGlobalNorm(1),
    clipByValue(0.5),
    addDecayedWeights(1e-2, { layers: true, norm: true }),
    masked(vsgd({ lr: 0.1, momentum: 0.9, numIters: 4, seed: 9 }), (path) => path !== "norm.scale"),
  );
  assert.throws(() => deserialize(bytes, wrong.init(q)), /does not match the template/);
});

Deno.test("purity: no input is mutated, the returned states are frozen, the old state still works", () => {
  const p = tree(), g = like(tree(3), (x, i) => (i === 1 ? NaN : x));
  const pc = copyTree(p), gc = copyTree(g);
  const opt = chain(
    zeroNans(),
    clipByGlobalNorm(0.5),
    clipByValue(0.1),
    addDecayedWeights(0.1, (path) => path.includes("w")),
    vsgd({ lr: 0.1, momentum: 0.9 }),
  );
  const s0 = opt.init(p);
  const r1 = opt.update(g, s0, p);
  const r2 = opt.update(g, s0, p);
  assert.deepEqual(bits(r1.updates), bits(r2.updates), "same inputs, same result");
  assert.deepEqual(serialize(r1.state), serialize(r2.state));
  assert.deepEqual(bits(p), bits(pc));
  assert.deepEqual(flat(g).get("layers.0.w")!.map(String), flat(gc).get("layers.0.w")!.map(String));
  const deepFrozen = (x: unknown): boolean =>
    x === null || typeof x !== "object" || x instanceof Tensor || ArrayBuffer.isView(x) ||
    (Object.isFrozen(x) && Object.values(x as object).every(deepFrozen));
  assert.ok(deepFrozen(r1.state), "state frozen");
  const ms = r1.state.inner[3] as MaskedState;
  assert.equal(ms.kind, "masked");
});

const { gpu, ignore } = await webgpuSuite("optim_transforms_test", "optim transforms");

Deno.test({ name: "webgpu: every new transformation matches the CPU (float32)", ignore }, async () => {
  assert.ok(gpu);
  const p = tree(1, "float32");
  const g = like(
    tree(3, "float32"),
    (x, i, path) => path === "layers.0.w" ? [NaN, Infinity, -Infinity, x, x, x][i] : x,
  );
  const mk = () =>
    chain(
      zeroNans(),
      clipByValue(2),
      clipByGlobalNorm(1),
      addDecayedWeights(0.1, { layers: true, norm: false }),
      masked(vsgd({ lr: 0.1, momentum: 0.9, seed: 3, numIters: 3 }), (path) => path !== "norm.scale"),
    );
  const cpuOpt = mk(), gpuOpt = mk();
  let pc = p, sc = cpuOpt.init(pc);
  let pg = await toDevice(p, "webgpu"), sg = gpuOpt.init(pg);
  const gg = await toDevice(g, "webgpu");
  for (let s = 0; s < 4; s++) {
    const rc = cpuOpt.update(g, sc, pc), rg = gpuOpt.update(gg, sg, pg);
    pc = applyUpdates(pc, rc.updates), sc = rc.state, pg = applyUpdates(pg, rg.updates), sg = rg.state;
  }
  closeTrees(await toDevice(pg, "cpu"), pc, 1e-6, "params after 4 steps");
  // zeroNans alone: exact, counts included
  const z = zeroNans();
  const rz = z.update(gg, z.init(gg));
  assert.deepEqual(bits(await toDevice(rz.updates, "cpu")), bits(z.update(g, z.init(g)).updates));
  assert.deepEqual(await nonFiniteCounts(rz.state), { last: 3, total: 3, paths: ["layers.0.w"] });
  assert.deepEqual(await nonFiniteCounts(sg), { last: 3, total: 12, paths: ["layers.0.w"] });
  // clipByValue alone: exact
  const cv = clipByValue(0.3);
  const fin = tree(2, "float32"), finGpu = await toDevice(fin, "webgpu");
  assert.deepEqual(
    bits(await toDevice(cv.update(finGpu, cv.init(finGpu)).updates, "cpu")),
    bits(cv.update(fin, cv.init(fin)).updates),
  );
});
