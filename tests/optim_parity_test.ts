// Parity of vsgd/vadam (official mode) with a transliteration of the official PyTorch step
// (docs/algorithm.md §2), fed the same noise; fused and unfused chains; kernel noise vs fillNoise (the
// noise paths themselves are checked in noise_test.ts).
import assert from "node:assert/strict";
import { fillNoise, type NoiseLaw } from "../src/random/noise.ts";
import { hashString } from "../src/random/philox.ts";
import { type DType, Tensor, type TypedArray } from "../src/tensor.ts";
import { type TensorTree, treeLeaves } from "../src/tree.ts";
import {
  adam,
  applyUpdates,
  chain,
  type ChainState,
  type Optimizer,
  sgd,
  type TransformState,
  vadam,
  vsgd,
  weightNoise,
} from "../src/optim/mod.ts";
import { noiseRange, perturbRange } from "../src/cpu/optim.ts";

// ------------------------------------------------------------------------------------------------
// The oracle: the step of docs/algorithm.md §2 line by line, scalar loops, float64, per-tensor state as
// in the original.

interface OracleCfg {
  kind: "vsgd" | "vadam";
  lr: number;
  variability: number;
  numIters: number;
  noise: NoiseLaw;
  seed: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
  betas: [number, number];
  eps: number;
  amsgrad: boolean;
  decoupled: boolean;
}

class OracleParam {
  step = 0;
  noise: Float64Array;
  buf: Float64Array | null = null; // VSGD momentum_buffer
  m: Float64Array;
  v: Float64Array;
  vmax: Float64Array;
  constructor(readonly path: string, readonly p: Float64Array) {
    this.noise = new Float64Array(p.length);
    this.m = new Float64Array(p.length);
    this.v = new Float64Array(p.length);
    this.vmax = new Float64Array(p.length);
  }
}

/** The noise the oracle is fed: the same counter-based stream, through fillNoise. */
function sample(cfg: OracleCfg, path: string, step: number, n: number): Float64Array {
  const out = new Float64Array(n);
  fillNoise(out, cfg.noise, cfg.variability, { k0: cfg.seed, k1: hashString(path), c1: step, c2: 0 });
  return out;
}

function oracleStep(st: OracleParam, g: Float64Array, cfg: OracleCfg): void {
  const p = st.p, n = p.length;
  st.step += 1;
  if (cfg.kind === "vsgd") {
    const d = g.slice();
    if (cfg.weightDecay !== 0) { for (let i = 0; i < n; i++) d[i] = g[i] + cfg.weightDecay * p[i]; }
    if (cfg.momentum !== 0) {
      if (st.buf === null) st.buf = d.slice();
      else for (let i = 0; i < n; i++) st.buf[i] = cfg.momentum * st.buf[i] + (1 - cfg.dampening) * d[i];
      for (let i = 0; i < n; i++) d[i] = cfg.nesterov ? d[i] + cfg.momentum * st.buf[i] : st.buf[i];
    }
    for (let i = 0; i < n; i++) p[i] = p[i] - cfg.lr * d[i];
  } else {
    const [b1, b2] = cfg.betas;
    const gg = g.slice();
    if (cfg.decoupled) { for (let i = 0; i < n; i++) p[i] = p[i] * (1 - cfg.lr * cfg.weightDecay); }
    else for (let i = 0; i < n; i++) gg[i] = g[i] + cfg.weightDecay * p[i];
    for (let i = 0; i < n; i++) {
      st.m[i] = b1 * st.m[i] + (1 - b1) * gg[i];
      st.v[i] = b2 * st.v[i] + (1 - b2) * gg[i] * gg[i];
      let vhat = st.v[i];
      if (cfg.amsgrad) vhat = st.vmax[i] = Math.max(st.vmax[i], st.v[i]);
      const denom = Math.sqrt(vhat) / Math.sqrt(1 - b2 ** st.step) + cfg.eps;
      p[i] = p[i] - (cfg.lr / (1 - b1 ** st.step)) * st.m[i] / denom;
    }
  }
  if (st.step % cfg.numIters !== 0) {
    const nn = sample(cfg, st.path, st.step, n);
    for (let i = 0; i < n; i++) p[i] = p[i] + (nn[i] - st.noise[i]);
    st.noise = nn;
  } else {
    for (let i = 0; i < n; i++) p[i] = p[i] - st.noise[i];
    st.noise = new Float64Array(n);
  }
}

// ------------------------------------------------------------------------------------------------

const SHAPES: Record<string, number[]> = { "layer.b": [4], "layer.w": [3, 4], "scale": [5003] };

function makeParams(dtype: DType = "float64"): TensorTree {
  const leaf = (path: string) => {
    const shape = SHAPES[path];
    const n = shape.reduce((a, b) => a * b, 1);
    const a = dtype === "float64" ? new Float64Array(n) : new Float32Array(n);
    const h = hashString(path) % 97;
    for (let i = 0; i < n; i++) a[i] = Math.sin(0.37 * i + h) * 1.5;
    return new Tensor(a, shape, dtype, "cpu");
  };
  return { layer: { b: leaf("layer.b"), w: leaf("layer.w") }, scale: leaf("scale") };
}

/** The gradient the tests use: depends on the (noisy) weights and on the step. */
function gradOf(path: string, p: ArrayLike<number>, step: number, out: TypedArray): void {
  const h = hashString(path) % 13;
  for (let i = 0; i < p.length; i++) {
    out[i] = 0.4 * p[i] + 0.2 * Math.cos(1.3 * i + step + h) + 0.05 * p[i] * p[i];
  }
}

function gradsFor(params: TensorTree, step: number): TensorTree {
  const out: Record<string, Record<string, Tensor> | Tensor> = {};
  const leaves = treeLeaves(params);
  const make = (path: string, t: Tensor) => {
    const a = t.dtype === "float64" ? new Float64Array(t.size) : new Float32Array(t.size);
    gradOf(path, t.storage as TypedArray, step, a);
    return new Tensor(a, t.shape, t.dtype, "cpu");
  };
  const get = (p: string) => leaves.find((l) => l.path === p)!.tensor;
  out.layer = { b: make("layer.b", get("layer.b")), w: make("layer.w", get("layer.w")) };
  out.scale = make("scale", get("scale"));
  return out;
}

function arr(t: Tensor | null | undefined): TypedArray | null {
  return t ? (t.storage as TypedArray) : null;
}

function assertClose(
  got: ArrayLike<number> | null,
  want: ArrayLike<number>,
  what: string,
  tol = 1e-12,
): void {
  let scale = 1, err = 0;
  for (let i = 0; i < want.length; i++) {
    scale = Math.max(scale, Math.abs(want[i]));
    err = Math.max(err, Math.abs((got ? got[i] : 0) - want[i]));
  }
  assert.ok(err <= tol * scale, `${what}: max abs error ${err} (scale ${scale})`);
}

function runParity(cfg: OracleCfg, opt: Optimizer<ChainState>): number {
  let params = makeParams();
  let state = opt.init(params);
  const oracle = treeLeaves(params).map((l) =>
    new OracleParam(l.path, (l.tensor.storage as Float64Array).slice())
  );
  const steps = 2 * cfg.numIters + 3;
  let maxErr = 0;
  for (let s = 0; s < steps; s++) {
    const grads = gradsFor(opt.perturb(params, state), s);
    for (const o of oracle) {
      const g = new Float64Array(o.p.length);
      gradOf(o.path, o.p, s, g);
      oracleStep(o, g, cfg);
    }
    const r = opt.update(grads, state, params);
    params = applyUpdates(params, r.updates);
    state = r.state;
    const [base, noise] = state.inner as [TransformState, TransformState];
    const mine = new Map(treeLeaves(params).map((l) => [l.path, l.tensor]));
    for (const o of oracle) {
      const what = `${cfg.kind} ${JSON.stringify(cfg)} step ${s + 1} path ${o.path}`;
      const p = mine.get(o.path)!.storage as Float64Array;
      assertClose(p, o.p, `${what}: params`);
      for (let i = 0; i < p.length; i++) maxErr = Math.max(maxErr, Math.abs(p[i] - o.p[i]));
      // The noise is the very same numbers (same stream, same law): bitwise.
      const n = arr(noise.leaves[o.path].buffers.noise);
      assert.deepEqual(n ?? new Float64Array(o.p.length), o.noise, `${what}: noise`);
      const b = base.leaves[o.path].buffers;
      if (cfg.kind === "vsgd") {
        if (cfg.momentum !== 0) assertClose(arr(b.momentum), o.buf!, `${what}: momentum buffer`);
        else assert.deepEqual(Object.keys(b), []);
      } else {
        assertClose(arr(b.m), o.m, `${what}: m`);
        assertClose(arr(b.v), o.v, `${what}: v`);
        if (cfg.amsgrad) assertClose(arr(b.vmax), o.vmax, `${what}: vmax`);
        else assert.equal(b.vmax, undefined);
      }
      assert.equal(base.step, o.step);
      assert.equal(noise.step, o.step);
    }
  }
  return maxErr;
}

const LAWS: NoiseLaw[] = ["gaussian", "laplace", "uniform"];
const NUM_ITERS = 4;

Deno.test("vsgd (official) matches the transliterated official step for every option combination and law", () => {
  let runs = 0, worst = 0;
  for (const noise of LAWS) {
    for (const momentum of [0, 0.9]) {
      for (const dampening of [0, 0.3]) {
        for (const nesterov of [false, true]) {
          if (nesterov && (momentum === 0 || dampening !== 0)) continue;
          for (const weightDecay of [0, 0.1]) {
            const cfg: OracleCfg = {
              kind: "vsgd",
              lr: 0.05,
              variability: 0.02,
              numIters: NUM_ITERS,
              noise,
              seed: 11,
              momentum,
              dampening,
              weightDecay,
              nesterov,
              betas: [0.9, 0.999],
              eps: 1e-8,
              amsgrad: false,
              decoupled: false,
            };
            const opt = vsgd({
              lr: cfg.lr,
              variability: cfg.variability,
              numIters: cfg.numIters,
              noise,
              seed: cfg.seed,
              momentum,
              dampening,
              weightDecay,
              nesterov,
            });
            worst = Math.max(worst, runParity(cfg, opt));
            runs++;
          }
        }
      }
    }
  }
  assert.equal(runs, 30);
  assert.ok(worst < 1e-14, `worst params error ${worst}`);
});

Deno.test("vadam (official) matches the transliterated official step for amsgrad × decoupled × decay and every law", () => {
  let runs = 0, worst = 0;
  for (const noise of LAWS) {
    for (const amsgrad of [false, true]) {
      for (const decoupled of [false, true]) {
        for (const weightDecay of [0, 0.1]) {
          const cfg: OracleCfg = {
            kind: "vadam",
            lr: 0.01,
            variability: 0.02,
            numIters: NUM_ITERS,
            noise,
            seed: 5,
            momentum: 0,
            dampening: 0,
            weightDecay,
            nesterov: false,
            betas: [0.8, 0.99],
            eps: 1e-8,
            amsgrad,
            decoupled,
          };
          const opt = vadam({
            lr: cfg.lr,
            variability: cfg.variability,
            numIters: cfg.numIters,
            noise,
            seed: cfg.seed,
            betas: cfg.betas,
            eps: cfg.eps,
            weightDecay,
            amsgrad,
            decoupled,
          });
          worst = Math.max(worst, runParity(cfg, opt));
          runs++;
        }
      }
    }
  }
  assert.equal(runs, 24);
  assert.ok(worst < 1e-14, `worst params error ${worst}`);
});

function runTrajectory(opt: Optimizer<any>, dtype: DType, steps: number): TensorTree {
  let params = makeParams(dtype);
  let state = opt.init(params);
  for (let s = 0; s < steps; s++) {
    const r = opt.update(gradsFor(opt.perturb(params, state), s), state, params);
    params = applyUpdates(params, r.updates);
    state = r.state;
  }
  return params;
}

function assertTreesBitwise(a: TensorTree, b: TensorTree, what: string): void {
  const la = treeLeaves(a), lb = treeLeaves(b);
  assert.deepEqual(la.map((l) => l.path), lb.map((l) => l.path));
  la.forEach((l, i) => assert.deepEqual(l.tensor.storage, lb[i].tensor.storage, `${what}: ${l.path}`));
}

Deno.test("fused vsgd/vadam equal the unfused chain of base + weightNoise bit for bit (float32 and float64)", () => {
  for (const dtype of ["float32", "float64"] as const) {
    for (const noise of LAWS) {
      const nz = { variability: 0.03, numIters: 3, noise, seed: 9 };
      const sOpts = { lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 0.01 };
      const aOpts = { lr: 0.01, amsgrad: true, weightDecay: 0.01 };
      // chain(chain(x), weightNoise) is not fused: the noise runs as its own pass.
      const pairs: [Optimizer<any>, Optimizer<any>, string][] = [
        [vsgd({ ...sOpts, ...nz }), chain(chain(sgd(sOpts)), weightNoise(nz)), "vsgd"],
        [vadam({ ...aOpts, ...nz }), chain(chain(adam(aOpts)), weightNoise(nz)), "vadam"],
        [
          chain(adam({ ...aOpts, decoupled: true }), weightNoise(nz)),
          chain(chain(adam({ ...aOpts, decoupled: true })), weightNoise(nz)),
          "adamw",
        ],
      ];
      for (const [fused, unfused, name] of pairs) {
        assertTreesBitwise(
          runTrajectory(fused, dtype, 8),
          runTrajectory(unfused, dtype, 8),
          `${name} ${dtype} ${noise}`,
        );
      }
    }
  }
});

Deno.test("kernel noise equals fillNoise element for element, at any offset and across chunk boundaries", () => {
  for (const law of LAWS) {
    for (const dtype of ["float32", "float64"] as const) {
      const C = dtype === "float32" ? Float32Array : Float64Array;
      const key = { k0: 123, k1: hashString("a.b"), c1: 7, c2: 0 };
      const n = 5003;
      const ref = new C(n);
      fillNoise(ref, law, 0.3, key);
      // noiseRange over a few odd ranges, starting from zero updates
      const u = new C(n), nOut = new C(n), uOut = new C(n);
      for (const [lo, hi] of [[0, 3], [3, 10], [10, 2049], [2049, 4099], [4099, n]]) {
        noiseRange(lo, hi, u, uOut, null, nOut, law, 0.3, key);
      }
      assert.deepEqual(nOut, ref, `${law} ${dtype} noiseRange`);
      assert.deepEqual(uOut, ref, `${law} ${dtype} updates`);
      // perturbRange: p + n
      const p = new C(n).map((_, i) => i * 0.001);
      const out = new C(n);
      perturbRange(0, n, p, out, law, 0.3, key);
      const want = new C(n);
      for (let i = 0; i < n; i++) want[i] = p[i] + ref[i];
      assert.deepEqual(out, want, `${law} ${dtype} perturbRange`);
      // a slice from an offset: fillNoise's `start`
      const part = new C(37);
      fillNoise(part, law, 0.3, key, 1001);
      assert.deepEqual(part, ref.subarray(1001, 1038));
    }
  }
});

Deno.test("official noise is keyed by (seed, step, path): each leaf's noise is fillNoise(seed, hash(path), step)", () => {
  const opt = vsgd({ lr: 0.1, variability: 0.05, numIters: 100, seed: 42, noise: "laplace" });
  const params = makeParams("float32");
  let state = opt.init(params);
  let p = params;
  for (let s = 1; s <= 3; s++) {
    const r = opt.update(gradsFor(p, s), state, p);
    p = applyUpdates(p, r.updates);
    state = r.state;
    const noise = (state.inner[1] as TransformState).leaves;
    for (const [path, shape] of Object.entries(SHAPES)) {
      const want = new Float32Array(shape.reduce((a, b) => a * b, 1));
      fillNoise(want, "laplace", 0.05, { k0: 42, k1: hashString(path), c1: s, c2: 0 });
      assert.deepEqual(noise[path].buffers.noise!.storage, want, `step ${s} ${path}`);
    }
  }
});
