// Every optimizer minimises a parabola and the Rosenbrock function; the variable ones are judged on
// their noise-free weights after a reset step (small variability).
import assert from "node:assert/strict";
import { Tensor } from "../src/tensor.ts";
import {
  adam,
  adamw,
  antiPgd,
  applyUpdates,
  chain,
  cosineDecaySchedule,
  type Optimizer,
  sgd,
  vadam,
  vsgd,
  weightNoise,
} from "../src/optim/mod.ts";

type Grad = (w: Float64Array) => Float64Array;

function minimise(opt: Optimizer<any>, grad: Grad, start: number[], steps: number): Float64Array {
  let params = { w: new Tensor(new Float64Array(start), [start.length], "float64", "cpu") };
  let state = opt.init(params);
  for (let s = 0; s < steps; s++) {
    const w = opt.perturb(params, state).w.storage as Float64Array;
    const r = opt.update({ w: new Tensor(grad(w), [start.length], "float64", "cpu") }, state, params);
    params = applyUpdates(params, r.updates);
    state = r.state;
  }
  return opt.clean(params, state).w.storage as Float64Array;
}

const A = [1, 2, 3, 4, 1.5, 2.5];
const C = [0.5, -1, 2, 0.25, -0.75, 1.5];
/** ∇ of ½ Σ a_i (w_i − c_i)². */
const parabola: Grad = (w) => w.map((x, i) => A[i] * (x - C[i]));
/** ∇ of (1 − x)² + 100 (y − x²)². */
const rosenbrock: Grad = ([x, y]) =>
  new Float64Array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)]);

const nz = { variability: 1e-3, numIters: 500 };
// [name, optimizer for the parabola, optimizer for Rosenbrock, Rosenbrock steps]
const CASES: [string, () => Optimizer<any>, () => Optimizer<any>, number][] = [
  ["sgd", () => sgd({ lr: 0.1 }), () => sgd({ lr: 2e-3 }), 20000],
  ["sgd momentum", () => sgd({ lr: 0.05, momentum: 0.9 }), () => sgd({ lr: 1e-3, momentum: 0.9 }), 5000],
  [
    "sgd nesterov + wd",
    () => sgd({ lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 1e-6 }),
    () => sgd({ lr: 1e-3, momentum: 0.9, nesterov: true }),
    5000,
  ],
  ["adam", () => adam({ lr: 0.05 }), () => adam({ lr: 1e-2 }), 5000],
  ["adam amsgrad", () => adam({ lr: 0.05, amsgrad: true }), () => adam({ lr: 1e-2, amsgrad: true }), 5000],
  ["adamw", () => adamw({ lr: 0.05, weightDecay: 1e-5 }), () => adamw({ lr: 1e-2, weightDecay: 1e-5 }), 5000],
  ["vsgd gaussian", () => vsgd({ lr: 0.1, ...nz }), () => vsgd({ lr: 1e-3, momentum: 0.9, ...nz }), 5000],
  [
    "vsgd laplace exact",
    () => vsgd({ lr: 0.1, ...nz, noise: "laplace", mode: "exact" }),
    () => vsgd({ lr: 1e-3, momentum: 0.9, ...nz, noise: "laplace", mode: "exact" }),
    5000,
  ],
  [
    "vadam uniform",
    () => vadam({ lr: 0.05, ...nz, noise: "uniform" }),
    () => vadam({ lr: 1e-2, ...nz, noise: "uniform" }),
    5000,
  ],
  [
    "vadam exact amsgrad",
    () => vadam({ lr: 0.05, ...nz, amsgrad: true, mode: "exact" }),
    () => vadam({ lr: 1e-2, ...nz, amsgrad: true, mode: "exact" }),
    5000,
  ],
  [
    "antiPgd",
    () => antiPgd({ lr: 0.1, variability: 1e-3 }),
    () => antiPgd({ lr: 1e-3, momentum: 0.9, variability: 1e-3 }),
    5000,
  ],
  [
    "chain(adam, weightNoise) with schedules",
    () =>
      chain(adam({ lr: cosineDecaySchedule({ init: 0.05, decaySteps: 1000, alpha: 0.1 }) }), weightNoise(nz)),
    () =>
      chain(adam({ lr: cosineDecaySchedule({ init: 1e-2, decaySteps: 5000, alpha: 0.1 }) }), weightNoise(nz)),
    5000,
  ],
];

for (const [name, forParabola, forRosenbrock, steps] of CASES) {
  Deno.test(`${name} converges on a parabola and on Rosenbrock`, () => {
    const w = minimise(forParabola(), parabola, [0, 0, 0, 0, 0, 0], 1000);
    w.forEach((x, i) => assert.ok(Math.abs(x - C[i]) < 1e-2, `parabola w[${i}] = ${x}, want ${C[i]}`));
    const [x, y] = minimise(forRosenbrock(), rosenbrock, [-1, 1], steps);
    assert.ok(
      Math.abs(x - 1) < 0.02 && Math.abs(y - 1) < 0.02,
      `Rosenbrock ended at (${x}, ${y}), want (1, 1)`,
    );
  });
}
