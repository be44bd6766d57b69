// Statistics of the optimizers' noise on 10^6 draws per law (the table of docs/algorithm.md §4.1), the
// uniform law's support, and the anti-correlation of the increments n_t − n_{t−1}.
import assert from "node:assert/strict";
import type { NoiseLaw } from "../src/random/noise.ts";
import { Tensor } from "../src/tensor.ts";
import { antiPgd, applyUpdates, type TransformState, vsgd, weightNoise } from "../src/optim/mod.ts";

const N = 1_000_000;
const V = 0.05;

function moments(x: ArrayLike<number>) {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i];
  const mean = s / x.length;
  let m2 = 0, m4 = 0;
  for (let i = 0; i < x.length; i++) {
    const d = x[i] - mean, d2 = d * d;
    m2 += d2;
    m4 += d2 * d2;
  }
  m2 /= x.length;
  m4 /= x.length;
  return { mean, std: Math.sqrt(m2), kurt: m4 / (m2 * m2) - 3 };
}

const TABLE: Record<NoiseLaw, { std: number; kurt: number; kurtTol: number }> = {
  gaussian: { std: V, kurt: 0, kurtTol: 0.05 },
  laplace: { std: Math.SQRT2 * V, kurt: 3, kurtTol: 0.3 },
  uniform: { std: V / Math.sqrt(3), kurt: -1.2, kurtTol: 0.02 },
};

for (const law of ["gaussian", "laplace", "uniform"] as const) {
  Deno.test(`${law} noise: mean 0, std and excess kurtosis as in docs/algorithm.md §4.1 (10^6 draws)`, () => {
    // One official weight-noise step on zero updates: the updates are the fresh noise n_1.
    const opt = weightNoise({ variability: V, noise: law, numIters: 1000, seed: 17 });
    const zeros = { w: new Tensor(new Float64Array(N), [1000, 1000], "float64", "cpu") };
    const r = opt.update(zeros, opt.init(zeros));
    const x = r.updates.w.storage as Float64Array;
    const m = moments(x);
    const want = TABLE[law];
    assert.ok(Math.abs(m.mean) < 5 * want.std / Math.sqrt(N), `mean ${m.mean}`);
    assert.ok(Math.abs(m.std / want.std - 1) < 0.005, `std ${m.std}, want ${want.std}`);
    assert.ok(Math.abs(m.kurt - want.kurt) < want.kurtTol, `excess kurtosis ${m.kurt}, want ${want.kurt}`);
    if (law === "uniform") {
      let lo = Infinity, hi = -Infinity;
      for (const v of x) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
      assert.ok(lo >= -V && hi <= V, `support [${lo}, ${hi}] exceeds ±${V}`);
      assert.ok(lo < -0.999 * V && hi > 0.999 * V, `support [${lo}, ${hi}] does not fill ±${V}`);
    }
    // exact mode draws the same numbers in perturb (θ = 0 here)
    const c = vsgd({ lr: 0.1, variability: V, noise: law, numIters: 1000, seed: 17, mode: "exact" });
    const small = { w: new Tensor(new Float64Array(1000), [1000], "float64", "cpu") };
    let st = c.init(small);
    st = c.update(small, st, small).state;
    assert.deepEqual(c.perturb(small, st).w.storage, (r.updates.w.storage as Float64Array).slice(0, 1000));
  });
}

Deno.test("increments n_t − n_{t−1} have lag-1 autocorrelation −0.5; n_t and n_{t−1} are uncorrelated", () => {
  const M = 100_000, T = 12;
  const opt = antiPgd({ lr: 0, variability: V, seed: 3 });
  const zeros = { w: new Tensor(new Float64Array(M), [M], "float64", "cpu") };
  let params = zeros;
  let state = opt.init(params);
  const incs: Float64Array[] = [], noises: Float64Array[] = [];
  for (let t = 1; t <= T; t++) {
    const r = opt.update(zeros, state, params);
    const before = params.w.storage as Float64Array;
    params = applyUpdates(params, r.updates);
    state = r.state;
    const after = params.w.storage as Float64Array;
    incs.push(after.map((v, i) => v - before[i]));
    noises.push((state.inner[1] as TransformState).leaves.w.buffers.noise!.storage as Float64Array);
  }
  const corr = (xs: Float64Array[], from: number) => {
    let sxy = 0, sxx = 0, syy = 0;
    for (let t = from; t < xs.length; t++) {
      const a = xs[t], b = xs[t - 1];
      for (let i = 0; i < a.length; i++) {
        sxy += a[i] * b[i];
        sxx += a[i] * a[i];
        syy += b[i] * b[i];
      }
    }
    return sxy / Math.sqrt(sxx * syy);
  };
  // from t = 2 on: the first increment is n_1 − n_0 = n_1
  const rInc = corr(incs, 2);
  assert.ok(Math.abs(rInc + 0.5) < 0.005, `lag-1 autocorrelation of the increments ${rInc}`);
  const rNoise = corr(noises, 1);
  assert.ok(Math.abs(rNoise) < 0.005, `lag-1 autocorrelation of the noise ${rNoise}`);
});
