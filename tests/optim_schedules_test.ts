// The schedules: values at key steps, and hyperparameters other than lr driven by schedules.
import assert from "node:assert/strict";
import { Tensor } from "../src/tensor.ts";
import {
  applyUpdates,
  constantSchedule,
  cosineDecaySchedule,
  hyperparams,
  joinSchedules,
  linearSchedule,
  linearWarmup,
  multiStepSchedule,
  piecewiseConstantSchedule,
  stepDecaySchedule,
  type TransformState,
  vsgd,
  warmupCosineSchedule,
} from "../src/optim/mod.ts";

const close = (a: number, b: number, what: string) =>
  assert.ok(Math.abs(a - b) < 1e-12, `${what}: ${a} vs ${b}`);

Deno.test("constant, linear and cosine schedules", () => {
  const c = constantSchedule(0.3);
  assert.equal(c(0), 0.3);
  assert.equal(c(1e6), 0.3);
  const l = linearSchedule({ init: 1, end: 0.1, steps: 10 });
  close(l(0), 1, "linear 0");
  close(l(5), 0.55, "linear 5");
  close(l(10), 0.1, "linear 10");
  close(l(50), 0.1, "linear after");
  const cs = cosineDecaySchedule({ init: 0.1, decaySteps: 100, alpha: 0.1 });
  close(cs(0), 0.1, "cos 0");
  close(cs(50), 0.1 * (0.9 * 0.5 + 0.1), "cos 50");
  close(cs(100), 0.01, "cos 100");
  close(cs(1000), 0.01, "cos after");
});

Deno.test("step decay by epoch (MultiStepLR, StepLR) and piecewise constant", () => {
  const spe = 469;
  const m = multiStepSchedule({ init: 0.1, milestones: [20, 30], gamma: 0.1, stepsPerEpoch: spe });
  close(m(0), 0.1, "epoch 0");
  close(m(20 * spe - 1), 0.1, "last step of epoch 19");
  close(m(20 * spe), 0.01, "epoch 20");
  close(m(30 * spe), 0.001, "epoch 30");
  close(m(40 * spe), 0.001, "epoch 40");
  const s = stepDecaySchedule({ init: 1, stepSize: 2, gamma: 0.5, stepsPerEpoch: 10 });
  assert.deepEqual([0, 19, 20, 39, 40, 60].map(s), [1, 1, 0.5, 0.5, 0.25, 0.125]);
  const p = piecewiseConstantSchedule({ boundaries: [3, 6], values: [1, 2, 3] });
  assert.deepEqual([0, 2, 3, 5, 6, 100].map(p), [1, 1, 2, 2, 3, 3]);
});

Deno.test("warm-up schedules and joining", () => {
  const w = warmupCosineSchedule({ peak: 1, warmupSteps: 10, decaySteps: 110, end: 0.1 });
  close(w(0), 0, "start");
  close(w(5), 0.5, "mid warm-up");
  close(w(10), 1, "peak");
  close(w(60), 0.55, "half decay");
  close(w(110), 0.1, "end");
  const lw = linearWarmup(4, multiStepSchedule({ init: 0.2, milestones: [1], stepsPerEpoch: 10 }));
  assert.deepEqual([0, 1, 2, 4, 13, 14].map(lw), [0, 0.05, 0.1, 0.2, 0.2, 0.020000000000000004]);
  const j = joinSchedules([() => 1, (s) => 10 + s], [5]);
  assert.deepEqual([0, 4, 5, 7].map(j), [1, 1, 10, 12]);
});

Deno.test("variability, momentum and weight decay schedules drive the step", () => {
  const params = { w: new Tensor(new Float64Array([1, 2, 3, 4]), [4], "float64", "cpu") };
  const opt = vsgd({
    lr: 0.1,
    momentum: (s) => (s < 2 ? 0 : 0.9),
    weightDecay: linearSchedule({ init: 0, end: 0.1, steps: 4 }),
    variability: (s) => (s === 1 ? 0 : 0.01 * s),
    numIters: 100,
  });
  let p = params, state = opt.init(p);
  const seen: Record<string, number>[] = [];
  for (let s = 0; s < 4; s++) {
    const r = opt.update({ w: new Tensor(new Float64Array(4).fill(1), [4], "float64", "cpu") }, state, p);
    p = applyUpdates(p, r.updates);
    state = r.state;
    seen.push(hyperparams(state));
    const n = (state.inner[1] as TransformState).leaves.w.buffers.noise;
    // the update with index s draws the noise of step s + 1 with variability(s + 1)
    if (s + 1 === 1) assert.equal(n, null, "variability 0 draws nothing");
    else assert.ok(n !== null && Math.max(...(n.storage as Float64Array).map(Math.abs)) > 0);
  }
  assert.deepEqual(seen.map((h) => h.momentum), [0, 0, 0.9, 0.9]);
  assert.deepEqual(seen.map((h) => h.weightDecay), [0, 0.025, 0.05, 0.07500000000000001]);
  assert.deepEqual(seen.map((h) => h.variability), [0, 0.02, 0.03, 0.04]);
});
