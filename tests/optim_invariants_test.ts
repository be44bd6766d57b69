// Invariants of the optimizers: reset steps give the base optimizer's weights, exact mode is exact,
// variability 0 is a no-op, purity, reproducibility, resume after serialize, path independence.
import assert from "node:assert/strict";
import { fillNoise, type NoiseLaw } from "../src/random/noise.ts";
import { hashString } from "../src/random/philox.ts";
import { type DType, Tensor, type TypedArray } from "../src/tensor.ts";
import { mapTree, type TensorTree, treeLeaves } from "../src/tree.ts";
import {
  adam,
  adamw,
  antiPgd,
  applyUpdates,
  chain,
  type ChainState,
  cosineDecaySchedule,
  deserialize,
  type GradientTransformation,
  hyperparams,
  type Optimizer,
  serialize,
  sgd,
  type TransformState,
  vadam,
  vsgd,
  weightNoise,
} from "../src/optim/mod.ts";
import { optimKernels } from "../src/optim/fused_ops.ts";
import { registerBackend } from "../src/backend.ts";
import { cpuBackend } from "../src/cpu/backend.ts";

const LAWS: NoiseLaw[] = ["gaussian", "laplace", "uniform"];

function leaf(n: number, dtype: DType, seed: number, shape: number[] = [n]): Tensor {
  const a = dtype === "float64" ? new Float64Array(n) : new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.sin(0.7 * i + seed);
  return new Tensor(a, shape, dtype, "cpu");
}

function makeParams(dtype: DType = "float64"): TensorTree {
  return { a: leaf(12, dtype, 1, [3, 4]), b: [leaf(7, dtype, 2), leaf(2050, dtype, 3)] };
}

/** A gradient that does not depend on the params: fixed per (path, step). */
function fixedGrads(params: TensorTree, step: number): TensorTree {
  return mapTree(params, (t, path) => {
    const a = t.dtype === "float64" ? new Float64Array(t.size) : new Float32Array(t.size);
    const h = hashString(path) % 17;
    for (let i = 0; i < a.length; i++) a[i] = Math.cos(0.3 * i + 1.1 * step + h);
    return new Tensor(a, t.shape, t.dtype, "cpu");
  });
}

/** A gradient that depends on the params: ∇ of Σ (p²/2 + p⁴/40) plus a step term. */
function paramGrads(params: TensorTree, step: number): TensorTree {
  return mapTree(params, (t, path) => {
    const p = t.storage as TypedArray;
    const a = t.dtype === "float64" ? new Float64Array(t.size) : new Float32Array(t.size);
    const h = hashString(path) % 17;
    for (let i = 0; i < a.length; i++) a[i] = p[i] + 0.1 * p[i] ** 3 + 0.1 * Math.cos(i + step + h);
    return new Tensor(a, t.shape, t.dtype, "cpu");
  });
}

type GradFn = (p: TensorTree, step: number) => TensorTree;

/** Runs `steps` steps; calls `each(params, state, step)` after every step. */
function run<S>(
  opt: Optimizer<S>,
  steps: number,
  grad: GradFn,
  dtype: DType = "float64",
  each?: (params: TensorTree, state: S, step: number) => void,
): { params: TensorTree; state: S } {
  let params = makeParams(dtype);
  let state = opt.init(params);
  for (let s = 0; s < steps; s++) {
    const r = opt.update(grad(opt.perturb(params, state), s), state, params);
    params = applyUpdates(params, r.updates);
    state = r.state;
    each?.(params, state, s + 1);
  }
  return { params, state };
}

function leavesOf(t: TensorTree): Map<string, TypedArray> {
  return new Map(treeLeaves(t).map((l) => [l.path, l.tensor.storage as TypedArray]));
}

function assertBitwise(a: TensorTree, b: TensorTree, what: string): void {
  const la = leavesOf(a), lb = leavesOf(b);
  assert.deepEqual([...la.keys()], [...lb.keys()]);
  for (const [k, v] of la) assert.deepEqual(v, lb.get(k), `${what}: ${k}`);
}

function assertRelClose(a: TensorTree, b: TensorTree, tol: number, what: string): void {
  const la = leavesOf(a), lb = leavesOf(b);
  for (const [k, x] of la) {
    const y = lb.get(k)!;
    for (let i = 0; i < x.length; i++) {
      const err = Math.abs(x[i] - y[i]) / Math.max(1e-300, Math.abs(y[i]));
      assert.ok(err <= tol || Math.abs(x[i] - y[i]) <= tol, `${what}: ${k}[${i}] ${x[i]} vs ${y[i]}`);
    }
  }
}

const N = 5;
const SGD_VARIANTS = [
  {},
  { momentum: 0.9 },
  { momentum: 0.9, nesterov: true },
  { momentum: 0.5, dampening: 0.5 },
];
const ADAM_VARIANTS = [{}, { amsgrad: true }];

Deno.test("reset invariant, official mode: after k·numIters steps vsgd/vadam weights equal sgd/adam's (float64, 1e-12)", () => {
  for (const noise of LAWS) {
    for (const v of SGD_VARIANTS) {
      const base = sgd({ lr: 0.05, ...v });
      const variable = vsgd({ lr: 0.05, ...v, variability: 0.05, numIters: N, noise, seed: 3 });
      for (const k of [1, 2, 3]) {
        const want = run(base, k * N, fixedGrads).params;
        const got = run(variable, k * N, fixedGrads);
        assertRelClose(got.params, want, 1e-12, `vsgd ${noise} ${JSON.stringify(v)} k=${k}`);
        // and at a reset the stored noise is zero
        const ns = (got.state.inner[1] as TransformState).leaves;
        for (const l of Object.values(ns)) assert.equal(l.buffers.noise, null);
      }
    }
    for (const v of ADAM_VARIANTS) {
      const base = adam({ lr: 0.01, ...v });
      const variable = vadam({ lr: 0.01, ...v, variability: 0.05, numIters: N, noise, seed: 4 });
      for (const k of [1, 3]) {
        assertRelClose(
          run(variable, k * N, fixedGrads).params,
          run(base, k * N, fixedGrads).params,
          1e-12,
          `vadam ${noise} ${JSON.stringify(v)} k=${k}`,
        );
      }
    }
  }
});

Deno.test("reset invariant, exact mode: clean(params) equals the sgd/adam weights bit for bit at every step", () => {
  for (const dtype of ["float32", "float64"] as const) {
    for (const noise of LAWS) {
      const pairs: [Optimizer<any>, Optimizer<any>][] = [
        [
          sgd({ lr: 0.05, momentum: 0.9 }),
          vsgd({ lr: 0.05, momentum: 0.9, variability: 0.05, numIters: N, noise, mode: "exact" }),
        ],
        [
          adam({ lr: 0.01, amsgrad: true }),
          vadam({ lr: 0.01, amsgrad: true, variability: 0.05, numIters: N, noise, mode: "exact" }),
        ],
      ];
      for (const [base, variable] of pairs) {
        const want: TensorTree[] = [];
        run(base, 2 * N + 2, fixedGrads, dtype, (p) => want.push(p));
        run(variable, 2 * N + 2, fixedGrads, dtype, (p, state, s) => {
          assertBitwise(variable.clean(p, state), want[s - 1], `${dtype} ${noise} step ${s}`);
          assertBitwise(p, want[s - 1], `${dtype} ${noise} step ${s} (params are exact)`);
        });
      }
    }
  }
});

Deno.test("exact mode perturb: θ + n_t with n_t = fillNoise(seed, hash(path), t), none on reset steps", () => {
  const opt = vsgd({ lr: 0.1, variability: 0.07, numIters: 3, noise: "uniform", seed: 8, mode: "exact" });
  const p0 = makeParams("float32");
  assert.equal(opt.perturb(p0, opt.init(p0)), p0, "step 0: no noise");
  run(opt, 7, fixedGrads, "float32", (params, state, s) => {
    const pert = opt.perturb(params, state);
    if (s % 3 === 0) {
      assert.equal(pert, params, `step ${s} is a reset step`);
      return;
    }
    const pl = leavesOf(params);
    for (const [path, x] of leavesOf(pert)) {
      const n = new Float32Array(x.length);
      fillNoise(n, "uniform", 0.07, { k0: 8, k1: hashString(path), c1: s, c2: 0 });
      const want = pl.get(path)!.map((v, i) => v + n[i]);
      assert.deepEqual(x, want, `step ${s} ${path}`);
    }
  });
});

/**
 * Runs 10 steps of `mk("official")` and of `mk("exact")` on the params-dependent gradient in
 * float64 and asserts that the exact-mode parameters equal the official run's clean weights.
 */
function assertSameTrajectory(mk: (mode: "exact" | "official") => Optimizer<any>, label: string): void {
  const official: TensorTree[] = [];
  run(mk("official"), 10, paramGrads, "float64", (p, state) => official.push(mk("official").clean(p, state)));
  run(mk("exact"), 10, paramGrads, "float64", (p, _state, s) => {
    assertRelClose(p, official[s - 1], 1e-11, `${label} step ${s}`);
  });
}

Deno.test("exact and official modes take the same trajectory with weight decay (it acts on θ + n in both)", () => {
  for (const noise of LAWS) {
    const makers: ((mode: "exact" | "official") => ReturnType<typeof vsgd>)[] = [
      (mode) =>
        vsgd({
          lr: 0.05,
          momentum: 0.9,
          weightDecay: 0.1,
          variability: 0.03,
          numIters: 4,
          noise,
          seed: 1,
          mode,
        }),
      (mode) => vadam({ lr: 0.01, weightDecay: 0.1, variability: 0.03, numIters: 4, noise, seed: 2, mode }),
      (mode) =>
        vadam({
          lr: 0.01,
          weightDecay: 0.1,
          decoupled: true,
          variability: 0.03,
          numIters: 4,
          noise,
          seed: 3,
          mode,
        }),
    ];
    for (const mk of makers) assertSameTrajectory(mk, noise);
  }
});

Deno.test("exact and official modes take the same trajectory (params-dependent gradient, no weight decay)", () => {
  for (const noise of LAWS) {
    const mk = (mode: "exact" | "official") =>
      vsgd({ lr: 0.05, momentum: 0.9, variability: 0.03, numIters: 4, noise, seed: 1, mode });
    assertSameTrajectory(mk, noise);
  }
});

Deno.test("variability 0 is an exact no-op: vsgd/vadam equal sgd/adam bit for bit, both modes", () => {
  for (const mode of ["official", "exact"] as const) {
    for (const dtype of ["float32", "float64"] as const) {
      assertBitwise(
        run(
          vsgd({ lr: 0.05, momentum: 0.9, weightDecay: 0.01, variability: 0, numIters: 3, mode }),
          7,
          paramGrads,
          dtype,
        )
          .params,
        run(sgd({ lr: 0.05, momentum: 0.9, weightDecay: 0.01 }), 7, paramGrads, dtype).params,
        `vsgd ${mode} ${dtype}`,
      );
      assertBitwise(
        run(
          vadam({ lr: 0.01, weightDecay: 0.01, decoupled: true, variability: 0, mode }),
          7,
          paramGrads,
          dtype,
        ).params,
        run(adamw({ lr: 0.01, weightDecay: 0.01 }), 7, paramGrads, dtype).params,
        `vadam ${mode} ${dtype}`,
      );
    }
  }
});

Deno.test("antiPgd and numIters: Infinity never reset; increments are n_t − n_{t−1}", () => {
  const opt = antiPgd({ lr: 0, variability: 0.1, seed: 2 });
  const zero = (p: TensorTree) =>
    mapTree(p, (t) => new Tensor(new Float64Array(t.size), t.shape, t.dtype, "cpu"));
  let params = makeParams();
  let state = opt.init(params);
  for (let s = 1; s <= 6; s++) {
    const r = opt.update(zero(params), state, params);
    params = applyUpdates(params, r.updates);
    state = r.state;
    const nz = (state.inner[1] as TransformState).leaves["b.0"].buffers.noise!;
    const want = new Float64Array(7);
    fillNoise(want, "gaussian", 0.1, { k0: 2, k1: hashString("b.0"), c1: s, c2: 0 });
    assert.deepEqual(nz.storage, want);
  }
  assertRelClose(opt.clean(params, state), makeParams(), 1e-14, "clean weights are the start (lr 0)");
  assert.equal(hyperparams(state).numIters, Infinity);
});

// ------------------------------------------------------------------------------------------------
// Purity

function deepFreeze(x: unknown): void {
  if (x === null || typeof x !== "object" || ArrayBuffer.isView(x)) return;
  Object.freeze(x);
  for (const v of Object.values(x)) deepFreeze(v);
}

/** Copies of every typed array reachable from x (tensor storages included), in walk order. */
function snapshot(x: unknown, out: TypedArray[] = []): TypedArray[] {
  if (x instanceof Tensor) out.push((x.storage as TypedArray).slice());
  else if (ArrayBuffer.isView(x)) out.push((x as TypedArray).slice());
  else if (x !== null && typeof x === "object") { for (const v of Object.values(x)) snapshot(v, out); }
  return out;
}

/** A user-defined transformation (clip by value), to exercise the generic chain path. */
function clip(c: number): GradientTransformation<{ count: number }> {
  return {
    init: () => ({ count: 0 }),
    update: (grads, state) => ({
      updates: mapTree(grads, (t) => {
        const a = (t.storage as TypedArray).map((v) => Math.max(-c, Math.min(c, v)));
        return new Tensor(a, t.shape, t.dtype, "cpu");
      }) as typeof grads,
      state: { count: state.count + 1 },
    }),
  };
}

const ALL: [string, () => Optimizer<any>][] = [
  ["sgd", () => sgd({ lr: 0.1 })],
  ["sgd+momentum+wd", () => sgd({ lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.1 })],
  ["adam amsgrad", () => adam({ lr: 0.01, amsgrad: true, weightDecay: 0.1 })],
  ["adamw", () => adamw({ lr: 0.01 })],
  ["vsgd official", () => vsgd({ lr: 0.1, momentum: 0.9, weightDecay: 0.1, numIters: 3 })],
  ["vsgd exact", () => vsgd({ lr: 0.1, momentum: 0.9, numIters: 3, mode: "exact" })],
  ["vadam official", () => vadam({ lr: 0.01, numIters: 3, decoupled: true, weightDecay: 0.1 })],
  ["vadam exact", () => vadam({ lr: 0.01, numIters: 3, mode: "exact" })],
  ["antiPgd", () => antiPgd({ lr: 0.1, noise: "laplace" })],
  ["chain(clip, sgd, weightNoise)", () => chain(clip(0.5), sgd({ lr: 0.1 }), weightNoise({ numIters: 3 }))],
];

Deno.test("purity: update, perturb, clean and applyUpdates leave frozen inputs unchanged", () => {
  for (const [name, make] of ALL) {
    for (const dtype of ["float32", "float64"] as const) {
      const opt = make();
      let params = makeParams(dtype);
      let state = opt.init(params);
      for (let s = 0; s < 5; s++) {
        const grads = paramGrads(opt.perturb(params, state), s);
        for (const x of [params, state, grads]) deepFreeze(x);
        const before = snapshot([params, state, grads]);
        const r = opt.update(grads, state, params);
        const again = opt.update(grads, state, params); // same inputs, same outputs
        assertBitwise(again.updates, r.updates, `${name}: update is deterministic`);
        opt.perturb(params, state);
        opt.clean(params, state);
        const next = applyUpdates(params, r.updates);
        serialize(state);
        assert.deepEqual(
          snapshot([params, state, grads]),
          before,
          `${name} ${dtype} step ${s}: inputs changed`,
        );
        params = next;
        state = r.state;
      }
    }
  }
});

// ------------------------------------------------------------------------------------------------
// Reproducibility and resume

Deno.test("reproducibility: the same seed gives identical states; another seed other noise", () => {
  for (const [name, make] of ALL) {
    const a = run(make(), 5, paramGrads, "float32");
    const b = run(make(), 5, paramGrads, "float32");
    assert.deepEqual(serialize(a.state), serialize(b.state), name);
    assertBitwise(a.params, b.params, name);
  }
  const x = run(vsgd({ lr: 0.1, seed: 1 }), 2, fixedGrads).params;
  const y = run(vsgd({ lr: 0.1, seed: 2 }), 2, fixedGrads).params;
  assert.notDeepEqual(leavesOf(x).get("a"), leavesOf(y).get("a"));
});

Deno.test("resume: serialize mid-run, deserialize, continue → bitwise equal to the uninterrupted run", () => {
  const makers: [string, () => Optimizer<any>][] = [
    ...ALL.filter(([n]) => n !== "chain(clip, sgd, weightNoise)"),
    ["vsgd scheduled", () =>
      vsgd({
        lr: cosineDecaySchedule({ init: 0.1, decaySteps: 10 }),
        variability: (s) => 0.01 * (1 + s),
        momentum: 0.9,
        numIters: 4,
      })],
    ["chain with a user transform", () => chain(clip(0.5), sgd({ lr: 0.1 }), weightNoise({ numIters: 3 }))],
  ];
  for (const [name, make] of makers) {
    for (const dtype of ["float32", "float64"] as const) {
      const opt = make();
      const full = run(opt, 9, paramGrads, dtype);
      // interrupted after 5 steps
      const first = run(opt, 5, paramGrads, dtype);
      const bytes = serialize({ params: first.params, opt: first.state });
      const back = deserialize<{ params: TensorTree; opt: ChainState }>(bytes, {
        params: first.params,
        opt: opt.init(first.params),
      });
      let params = back.params, state = back.opt;
      for (let s = 5; s < 9; s++) {
        const r = opt.update(paramGrads(opt.perturb(params, state), s), state, params);
        params = applyUpdates(params, r.updates);
        state = r.state;
      }
      assertBitwise(params, full.params, `${name} ${dtype}`);
      assert.deepEqual(serialize(state), serialize(full.state), `${name} ${dtype}: states`);
    }
  }
});

Deno.test("adding a parameter to the tree does not change the other parameters' noise or trajectory", () => {
  for (const mode of ["official", "exact"] as const) {
    const opt = vsgd({ lr: 0.05, momentum: 0.9, variability: 0.05, numIters: 4, seed: 6, mode });
    const small = { w: leaf(10, "float32", 1), v: leaf(6, "float32", 2) };
    const big = {
      w: leaf(10, "float32", 1),
      v: leaf(6, "float32", 2),
      extra: [leaf(33, "float32", 3)],
      a: leaf(5, "float32", 4),
    };
    const go = (p0: TensorTree) => {
      let p = p0, st = opt.init(p);
      const seen: TensorTree[] = [];
      for (let s = 0; s < 6; s++) {
        const pert = opt.perturb(p, st);
        seen.push(pert);
        const r = opt.update(paramGrads(pert, s), st, p);
        p = applyUpdates(p, r.updates);
        st = r.state;
      }
      return seen;
    };
    const a = go(small), b = go(big);
    a.forEach((t, s) => {
      const la = leavesOf(t), lb = leavesOf(b[s]);
      for (const k of ["w", "v"]) assert.deepEqual(la.get(k), lb.get(k), `${mode} step ${s} ${k}`);
    });
  }
});

Deno.test("hyperparams(state) reports the current values, schedules included", () => {
  const opt = vsgd({ lr: (s) => 0.1 / (1 + s), variability: (s) => 0.01 * s, momentum: 0.9, numIters: 10 });
  let params = makeParams();
  let state = opt.init(params);
  assert.deepEqual(hyperparams(state), {
    step: 0,
    lr: 0.1,
    momentum: 0.9,
    dampening: 0,
    weightDecay: 0,
    variability: 0,
    numIters: 10,
  });
  for (let s = 0; s < 3; s++) {
    const r = opt.update(fixedGrads(params, s), state, params);
    params = applyUpdates(params, r.updates);
    state = r.state;
  }
  // the third update (index 2) used lr(2) and drew the noise for step 3 with variability(3)
  const h = hyperparams(state);
  assert.equal(h.step, 3);
  assert.equal(h.lr, 0.1 / 3);
  assert.equal(h.variability, 0.03);
  const a = adam({ lr: 1e-3, betas: [0.8, (s) => 0.99 + s * 0], eps: 1e-6 });
  assert.deepEqual(hyperparams(a.init(params)), {
    step: 0,
    lr: 1e-3,
    b1: 0.8,
    b2: 0.99,
    eps: 1e-6,
    weightDecay: 0,
  });
});

Deno.test("schedules drive the step: a scheduled lr equals re-creating the optimizer with lr(step) each step", () => {
  const lr = (s: number) => 0.1 * 0.5 ** s;
  const a = run(vsgd({ lr, momentum: 0.9, numIters: 3 }), 6, paramGrads).params;
  let params = makeParams();
  let state = vsgd({ lr: 1, momentum: 0.9, numIters: 3 }).init(params);
  for (let s = 0; s < 6; s++) {
    const opt = vsgd({ lr: lr(s), momentum: 0.9, numIters: 3 });
    const r = opt.update(paramGrads(opt.perturb(params, state), s), state, params);
    params = applyUpdates(params, r.updates);
    state = r.state;
  }
  assertBitwise(a, params, "scheduled lr");
});

Deno.test("device routing: kernels are looked up by the parameter's device", () => {
  assert.throws(() => optimKernels("webgpu"), /no backend for device "webgpu"/);
  assert.throws(
    () => registerBackend({ ...cpuBackend, device: "webgpu", optim: { sgd: () => {} } } as any),
    /optim.adam must be a function/,
  );
  registerBackend({ ...cpuBackend, device: "webgpu", optim: undefined });
  assert.throws(() => optimKernels("webgpu"), /the "webgpu" backend has no optimizer kernels/);
  // A stand-in "webgpu" backend that counts calls and runs the CPU kernels on the same storage.
  const cpu = optimKernels("cpu");
  const calls: string[] = [];
  const toCpu = (t: Tensor | null) => (t ? new Tensor(t.storage, t.shape, t.dtype, "cpu") : null);
  const toGpu = (
    t: Tensor | null | undefined,
  ) => (t ? new Tensor(t.storage, t.shape, t.dtype, "webgpu") : t ?? null);
  const back = (r: ReturnType<typeof cpu.sgd>) => ({
    u: toGpu(r.u)!,
    buffers: Object.fromEntries(Object.entries(r.buffers).map(([k, v]) => [k, toGpu(v)])),
    noise: r.noise === undefined ? undefined : toGpu(r.noise),
  });
  const stage = (s: any) => s && { ...s, nOld: toCpu(s.nOld) };
  registerBackend({
    ...cpuBackend,
    device: "webgpu",
    optim: {
      sgd: (
        a,
      ) => (calls.push("sgd"),
        back(cpu.sgd({ ...a, g: toCpu(a.g)!, p: toCpu(a.p), buf: toCpu(a.buf), noise: stage(a.noise) }))),
      adam: (
        a,
      ) => (calls.push("adam"),
        back(
          cpu.adam({
            ...a,
            g: toCpu(a.g)!,
            p: toCpu(a.p),
            m: toCpu(a.m),
            v: toCpu(a.v),
            vmax: toCpu(a.vmax),
            noise: stage(a.noise),
          }),
        )),
      noise: (u, s) => {
        calls.push("noise");
        const r = cpu.noise(toCpu(u)!, stage(s));
        return { u: toGpu(r.u)!, noise: toGpu(r.noise) };
      },
      perturb: (
        p,
        law,
        scale,
        key,
      ) => (calls.push("perturb"), toGpu(cpu.perturb(toCpu(p)!, law, scale, key))!),
      addScaled: (
        a,
        b,
        alpha,
      ) => (calls.push("addScaled"), toGpu(cpu.addScaled(toCpu(a)!, toCpu(b)!, alpha))!),
    },
  });
  const gpuTree = (t: TensorTree) => mapTree(t, (x) => toGpu(x)!);
  const opt = vsgd({ lr: 0.1, momentum: 0.9, numIters: 3, mode: "exact" });
  let params = gpuTree(makeParams("float32"));
  let state = opt.init(params);
  for (let s = 0; s < 2; s++) {
    const pert = opt.perturb(params, state);
    const r = opt.update(gpuTree(fixedGrads(mapTree(pert, (x) => toCpu(x)!), s)), state, params);
    params = applyUpdates(params, r.updates);
    state = r.state;
  }
  assert.ok(calls.includes("sgd") && calls.includes("perturb") && calls.includes("addScaled"), calls.join());
  assert.ok(treeLeaves(params).every((l) => l.tensor.device === "webgpu"));
  const off = vadam({ numIters: 3 });
  const st = off.init(params);
  off.update(gpuTree(fixedGrads(makeParams("float32"), 0)), st, params);
  assert.ok(calls.includes("adam"));
});

Deno.test("trees of any shape: a bare tensor, scalars, nested arrays, an empty tree", () => {
  const scalar = new Tensor(new Float64Array([2]), [], "float64", "cpu");
  for (
    const params of [scalar, [scalar, [leaf(3, "float64", 1)]], { x: { y: [scalar] } }, {}] as TensorTree[]
  ) {
    for (
      const opt of [vsgd({ lr: 0.1, momentum: 0.9, numIters: 2 }), vadam({ mode: "exact" })] as Optimizer<
        any
      >[]
    ) {
      let p = params, st = opt.init(p);
      for (let s = 0; s < 3; s++) {
        const r = opt.update(fixedGrads(opt.perturb(p, st), s), st, p);
        p = applyUpdates(p, r.updates);
        st = r.state;
      }
      assert.deepEqual(treeLeaves(p).map((l) => l.path), treeLeaves(params).map((l) => l.path));
      assert.deepEqual(serialize(deserialize(serialize(st))), serialize(st));
    }
  }
});
