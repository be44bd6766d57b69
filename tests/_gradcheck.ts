/**
 * Shared test helpers: float64 finite-difference gradient checks through a random projection, and
 * small deterministic input generators (seeded, away from kinks and ties when asked).
 *
 * @module
 */
import assert from "node:assert/strict";
import { mul, randn, sum, Tensor, tensor, valueAndGrad } from "../mod.ts";

/** Options of {@linkcode gradcheck}. */
export interface GradcheckOptions {
  /** Central-difference step (default 1e-6). */
  h?: number;
  /** Largest accepted relative error (default 1e-6). */
  tol?: number;
  /** Seed of the projection vector r (default 7). */
  seed?: number;
  /** Indices of the inputs to differentiate (default: all). */
  wrt?: readonly number[];
}

/** Float64 tensor from a plain array and a shape. */
export function f64(data: ArrayLike<number>, shape: readonly number[]): Tensor {
  return tensor(data, shape, { dtype: "float64" });
}

/** Float64 standard-normal tensor, scaled and shifted. */
export function rnd(shape: readonly number[], seed: number, std = 1, mean = 0): Tensor {
  return randn(shape, { seed, dtype: "float64", std, mean });
}

/** Float64 normal draws pushed at least `gap` away from zero (for relu, abs, sign kinks). */
export function rndAwayFromZero(shape: readonly number[], seed: number, gap = 0.1): Tensor {
  const d = rnd(shape, seed).dataSync();
  for (let i = 0; i < d.length; i++) d[i] = d[i] >= 0 ? d[i] + gap : d[i] - gap;
  return f64(d, shape);
}

/** Float64 positive draws in [lo, lo + span) (for log, sqrt, pow bases, divisors). */
export function rndPositive(shape: readonly number[], seed: number, lo = 0.5, span = 1.5): Tensor {
  const d = rnd(shape, seed).dataSync();
  for (let i = 0; i < d.length; i++) d[i] = lo + span * (0.5 + 0.5 * Math.tanh(d[i]));
  return f64(d, shape);
}

/**
 * Float64 values that are pairwise distinct by at least `gap`: a seeded permutation of
 * `0, gap, 2·gap, …` shifted to be centred, plus a small jitter (for max, maxPool2d ties).
 */
export function rndDistinct(shape: readonly number[], seed: number, gap = 0.05): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const u = rnd([n], seed).dataSync();
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => u[a] - u[b]);
  const d = new Float64Array(n);
  order.forEach((src, rank) => (d[src] = (rank - n / 2) * gap + 0.1 * gap * Math.tanh(u[src])));
  return f64(d, shape);
}

/** Row-major multi-index iteration helper: calls `f` with every index of `shape`. */
export function forEachIndex(shape: readonly number[], f: (idx: number[], flat: number) => void): void {
  const n = shape.reduce((a, b) => a * b, 1);
  const idx = new Array<number>(shape.length).fill(0);
  for (let o = 0; o < n; o++) {
    f(idx, o);
    for (let ax = shape.length - 1; ax >= 0; ax--) {
      if (++idx[ax] < shape[ax]) break;
      idx[ax] = 0;
    }
  }
}

/** The relative error used by {@linkcode gradcheck}, per entry with a floor at 1% of the scale. */
export function relError(analytic: ArrayLike<number>, numeric: ArrayLike<number>): number {
  let scale = 0;
  for (let i = 0; i < numeric.length; i++) {
    scale = Math.max(scale, Math.abs(numeric[i]), Math.abs(analytic[i]));
  }
  const floor = Math.max(1e-2 * scale, 1e-12);
  let worst = 0;
  for (let i = 0; i < numeric.length; i++) {
    const a = analytic[i], n = numeric[i];
    const e = Math.abs(a - n) / Math.max(Math.abs(a), Math.abs(n), floor);
    if (!(e <= worst)) worst = e; // NaN propagates as the worst error
  }
  return worst;
}

/**
 * Checks the full Jacobian of `f` at `inputs` (float64) in one reverse pass: with a fixed random
 * projection `r` of the output's shape, the analytic gradient of L(x) = Σ f(x)·r from
 * `valueAndGrad` must match central differences of L in every coordinate of every checked input.
 * Returns the worst relative error (also asserted below `tol`).
 */
export function gradcheck(
  label: string,
  f: (...xs: Tensor[]) => Tensor,
  inputs: readonly Tensor[],
  options: GradcheckOptions = {},
): number {
  const h = options.h ?? 1e-6, tol = options.tol ?? 1e-6;
  const wrt = options.wrt ?? inputs.map((_, i) => i);
  for (const x of inputs) assert.equal(x.dtype, "float64", `${label}: gradcheck needs float64 inputs`);
  const y0 = f(...inputs);
  assert.equal(y0.dtype, "float64", `${label}: output dtype`);
  const r = randn(y0.shape, { seed: options.seed ?? 7, dtype: "float64" });
  const loss = (xs: readonly Tensor[]) => sum(mul(f(...xs), r));

  const { value, grads } = valueAndGrad((xs: Tensor[]) => loss(xs))(inputs.slice());
  assert.ok(Number.isFinite(value.item()), `${label}: loss is ${value.item()}`);
  assert.equal(grads.length, inputs.length, `${label}: one gradient per input`);

  let worst = 0;
  for (const i of wrt) {
    const x = inputs[i];
    const g = grads[i];
    assert.deepEqual(g.shape, x.shape, `${label}: gradient of input ${i} has the input's shape`);
    assert.equal(g.dtype, "float64", `${label}: gradient of input ${i} dtype`);
    const base = x.dataSync() as Float64Array;
    const numeric = new Float64Array(x.size);
    for (let j = 0; j < x.size; j++) {
      const at = (v: number) => {
        const d = base.slice();
        d[j] = v;
        const xs = inputs.slice();
        xs[i] = f64(d, x.shape);
        return loss(xs).item();
      };
      numeric[j] = (at(base[j] + h) - at(base[j] - h)) / (2 * h);
    }
    const analytic = g.dataSync();
    const err = relError(analytic, numeric);
    if (!(err < tol)) {
      let at = 0, big = -1;
      for (let j = 0; j < x.size; j++) {
        const e = Math.abs(analytic[j] - numeric[j]);
        if (!(e <= big)) [big, at] = [e, j];
      }
      assert.fail(
        `${label}: input ${i} ${JSON.stringify(x.shape)}: relative error ${
          err.toExponential(2)
        } ≥ ${tol} (worst at flat ${at}: analytic ${analytic[at]}, numeric ${numeric[at]})`,
      );
    }
    worst = Math.max(worst, err);
    if (Deno.env.get("GRADCHECK_VERBOSE")) console.log(`${label} #${i}: ${err.toExponential(1)}`);
  }
  return worst;
}

/** Asserts two arrays are elementwise close: |a − e| ≤ atol + rtol·|e|. */
export function assertClose(
  actual: ArrayLike<number> | Tensor,
  expected: ArrayLike<number>,
  { atol = 1e-6, rtol = 1e-6, msg = "" }: { atol?: number; rtol?: number; msg?: string } = {},
): void {
  const a = actual instanceof Tensor ? actual.dataSync() : actual;
  assert.equal(a.length, expected.length, `${msg} length: got ${a.length}, expected ${expected.length}`);
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - expected[i]);
    if (!(d <= atol + rtol * Math.abs(expected[i])) && !(Object.is(a[i], expected[i]))) {
      assert.fail(
        `${msg} at ${i}: got ${a[i]}, expected ${expected[i]} (|diff| ${d})\n got      ${
          Array.from(a).slice(0, 24).join(", ")
        }\n expected ${Array.from(expected).slice(0, 24).join(", ")}`,
      );
    }
  }
}
