// Bad input: every validation of docs/algorithm.md §2.3 as an error naming the function, the argument
// and the value; tree and shape mismatches naming the path; truncated or mismatched serialized states.
import assert from "node:assert/strict";
import { Tensor } from "../src/tensor.ts";
import { tensor } from "../src/creation.ts";
import {
  adam,
  adamw,
  addDecayedWeights,
  antiPgd,
  applyUpdates,
  chain,
  clipByGlobalNorm,
  clipByValue,
  constantSchedule,
  cosineDecaySchedule,
  deserialize,
  joinSchedules,
  linearSchedule,
  linearWarmup,
  masked,
  multiStepSchedule,
  type Optimizer,
  piecewiseConstantSchedule,
  serialize,
  sgd,
  stepDecaySchedule,
  vadam,
  vsgd,
  warmupCosineSchedule,
  weightNoise,
  zeroNans,
} from "../src/optim/mod.ts";
import { treeLeaves } from "../src/tree.ts";

const t = (n: number, shape = [n]) => new Tensor(new Float32Array(n).fill(0.5), shape, "float32", "cpu");

function throwsWith(fn: () => unknown, ...parts: (string | RegExp)[]): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof Error, `expected an error containing ${parts.join(" / ")}`);
  for (const p of parts) {
    if (typeof p === "string") assert.ok(err.message.includes(p), `"${err.message}" lacks "${p}"`);
    else assert.match(err.message, p);
  }
}

/** Like `throwsWith`, and the error is exactly of class `cls` (not a subclass). */
function throwsExactly(fn: () => unknown, cls: ErrorConstructor, ...parts: (string | RegExp)[]): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof Error, `expected a ${cls.name} containing ${parts.join(" / ")}`);
  assert.equal(err.constructor, cls, `expected a ${cls.name}, got ${err.constructor.name}: ${err.message}`);
  for (const p of parts) {
    if (typeof p === "string") assert.ok(err.message.includes(p), `"${err.message}" lacks "${p}"`);
    else assert.match(err.message, p);
  }
}

Deno.test("vsgd validations: lr, variability, numIters, momentum, weightDecay, noise, nesterov", () => {
  throwsWith(() => vsgd({} as any), "vsgd: lr is required");
  throwsWith(() => vsgd({ lr: -0.1 }), "vsgd: lr must be a finite number >= 0, got -0.1");
  throwsWith(() => vsgd({ lr: NaN }), "vsgd: lr", "got NaN");
  throwsWith(
    () => vsgd({ lr: "0.1" as any }),
    'vsgd: lr must be a number or a function of the step, got "0.1"',
  );
  throwsWith(
    () => vsgd({ lr: 0.1, variability: -1 }),
    "vsgd: variability must be a finite number >= 0, got -1",
  );
  throwsWith(
    () => vsgd({ lr: 0.1, numIters: 0 }),
    "vsgd: numIters (the noise reset period, in steps) must be a positive integer or Infinity",
    "got 0",
  );
  throwsWith(() => vsgd({ lr: 0.1, numIters: -5 }), "vsgd: numIters", "got -5");
  throwsWith(() => vsgd({ lr: 0.1, numIters: 2.5 }), "vsgd: numIters", "got 2.5");
  throwsWith(() => vsgd({ lr: 0.1, numIters: NaN }), "vsgd: numIters", "got NaN");
  throwsWith(
    () => vsgd({ lr: 0.1, momentum: -0.9 }),
    "vsgd: momentum must be a number in [0, 1), got -0.9",
  );
  throwsWith(
    () => vsgd({ lr: 0.1, weightDecay: -1e-4 }),
    "vsgd: weightDecay must be a finite number >= 0, got -0.0001",
  );
  throwsWith(
    () => vsgd({ lr: 0.1, noise: "Gaussian" as any }),
    "vsgd: noise must be one of",
    'got "Gaussian"',
  );
  throwsWith(
    () => vsgd({ lr: 0.1, nesterov: true }),
    "vsgd: nesterov needs momentum > 0 and dampening = 0",
    "momentum 0",
  );
  throwsWith(
    () => vsgd({ lr: 0.1, nesterov: true, momentum: 0.9, dampening: 0.1 }),
    "vsgd: nesterov needs momentum > 0 and dampening = 0",
    "dampening 0.1",
  );
  throwsWith(() => vsgd({ lr: 0.1, nesterov: 1 as any }), "vsgd: nesterov must be true or false, got 1");
  throwsWith(() => vsgd({ lr: 0.1, seed: -1 }), "vsgd: seed must be an integer in [0, 2^32), got -1");
  throwsWith(
    () => vsgd({ lr: 0.1, mode: "clean" as any }),
    'vsgd: mode must be "official" or "exact", got "clean"',
  );
  throwsWith(() => vsgd({ lr: 0.1, num_iters: 5 } as any), 'vsgd: unknown option "num_iters"');
  throwsWith(
    () => sgd({ lr: 0.1, dampening: Infinity }),
    "sgd: dampening must be a number in [0, 1], got Infinity",
  );
  throwsWith(() => antiPgd({ lr: 0.1, numIters: 5 } as any), 'antiPgd: unknown option "numIters"');
});

Deno.test("vadam validations: lr, eps, betas, weightDecay, variability, numIters, noise", () => {
  throwsWith(() => vadam({ lr: -1 }), "vadam: lr must be a finite number >= 0, got -1");
  throwsWith(() => vadam({ eps: -1e-8 }), "vadam: eps must be a finite number > 0, got -1e-8");
  throwsWith(() => vadam({ betas: [1, 0.999] }), "vadam: betas[0] must be a number in [0, 1), got 1");
  throwsWith(() => vadam({ betas: [-0.1, 0.999] }), "vadam: betas[0] must be a number in [0, 1), got -0.1");
  throwsWith(() => vadam({ betas: [0.9, 1.5] }), "vadam: betas[1] must be a number in [0, 1), got 1.5");
  throwsWith(() => vadam({ betas: [0.9] as any }), "vadam: betas must be a pair [b1, b2], got [0.9]");
  throwsWith(() => vadam({ weightDecay: -1 }), "vadam: weightDecay must be a finite number >= 0, got -1");
  throwsWith(
    () => vadam({ variability: -0.01 }),
    "vadam: variability must be a finite number >= 0, got -0.01",
  );
  throwsWith(
    () => vadam({ numIters: 0 }),
    "vadam: numIters (the noise reset period, in steps) must be a positive integer or Infinity",
    "got 0",
  );
  throwsWith(() => vadam({ noise: "cauchy" as any }), "vadam: noise must be one of", 'got "cauchy"');
  throwsWith(() => vadam({ amsgrad: "yes" as any }), 'vadam: amsgrad must be true or false, got "yes"');
  throwsWith(() => adam({ decoupled: 0 as any }), "adam: decoupled must be true or false, got 0");
  throwsWith(() => adamw({ decoupled: false } as any), 'adamw: unknown option "decoupled"');
  throwsWith(
    () => weightNoise({ numIters: 0 }),
    "weightNoise: numIters (the noise reset period, in steps) must be a positive integer or Infinity",
    "got 0",
  );
});

Deno.test("schedule values are checked when evaluated, naming the step", () => {
  const params = { w: t(3) };
  const opt = vsgd({ lr: (s) => 0.1 - 0.1 * s, variability: 0.01 });
  let state = opt.init(params);
  state = opt.update({ w: t(3) }, state, params).state; // lr(0) = 0.1
  state = opt.update({ w: t(3) }, state, params).state; // lr(1) = 0
  throwsWith(
    () => opt.update({ w: t(3) }, state, params),
    "vsgd: lr must be a finite number >= 0, got -0.1",
    "at step 2",
  );
  const v = vadam({ betas: [(s) => (s < 1 ? 0.9 : 1), 0.999] });
  const vs = v.update({ w: t(3) }, v.init(params), params).state;
  throwsWith(
    () => v.update({ w: t(3) }, vs, params),
    "vadam: betas[0] must be a number in [0, 1), got 1",
    "at step 1",
  );
  const n = vsgd({ lr: 0.1, momentum: (s) => (s < 1 ? 0.9 : 0), nesterov: true });
  throwsWith(
    () => n.update({ w: t(3) }, n.update({ w: t(3) }, n.init(params), params).state, params),
    "nesterov needs momentum > 0",
  );
  throwsWith(
    () => vsgd({ lr: 0.1, variability: () => -1 }).init(params),
    "vsgd: variability",
    "got -1",
    "at step 0",
  );
  throwsWith(
    () => piecewiseConstantSchedule({ boundaries: [10, 5], values: [1, 2, 3] }),
    "piecewiseConstantSchedule: boundaries must be strictly increasing, got [10, 5]",
  );
  throwsWith(
    () => multiStepSchedule({ init: 0.1, milestones: [20], stepsPerEpoch: 0 }),
    "stepsPerEpoch must be a positive integer, got 0",
  );
  throwsWith(() => linearWarmup(0, 0.1), "linearWarmup: warmupSteps must be a positive integer, got 0");
});

Deno.test("grads, params or updates whose tree or shapes differ from the state's: errors naming the path", () => {
  const params = { layer: { w: t(6, [2, 3]), b: t(3) } };
  const opts: Optimizer<any>[] = [
    vsgd({ lr: 0.1, momentum: 0.9 }),
    vadam({}),
    sgd({ lr: 0.1 }),
    vsgd({ lr: 0.1, mode: "exact" }),
  ];
  for (const opt of opts) {
    const state = opt.init(params);
    throwsWith(
      () => opt.update({ layer: { w: t(6, [2, 3]) } }, state, params),
      'grads has no leaf at path "layer.b"',
    );
    throwsWith(
      () => opt.update({ layer: { w: t(6, [2, 3]), b: t(3), c: t(1) } }, state, params),
      'grads has a leaf at path "layer.c"',
    );
    throwsWith(
      () => opt.update({ layer: { w: t(6, [3, 2]), b: t(3) } }, state, params),
      'grads at path "layer.w" has shape [3, 2], the optimizer state expects [2, 3]',
    );
    const f64 = new Tensor(new Float64Array(3), [3], "float64", "cpu");
    throwsWith(
      () => opt.update({ layer: { w: t(6, [2, 3]), b: f64 } }, state, params),
      'grads at path "layer.b" is float64',
    );
    throwsWith(
      () => opt.update({ layer: { w: t(6, [2, 3]), b: t(3) } }, state, { layer: { w: t(6, [2, 3]) } }),
      'params has no leaf at path "layer.b"',
    );
    throwsWith(
      () => opt.perturb({ layer: { w: t(6, [2, 3]), b: t(4) } }, state),
      'params at path "layer.b" has shape [4]',
    );
    throwsWith(
      () => opt.clean({ layer: { w: t(6, [2, 3]) } }, state),
      'params has no leaf at path "layer.b"',
    );
    throwsWith(
      () => opt.update({ layer: { w: t(6, [2, 3]), b: 3 as any } }, state, params),
      'leaf at path "layer.b"',
    );
  }
  throwsWith(
    () => applyUpdates(params, { layer: { w: t(6, [2, 3]), b: t(2) } }),
    'applyUpdates: updates at path "layer.b" has shape [2]',
  );
  throwsWith(
    () => applyUpdates(params, { layer: { w: t(6, [2, 3]) } }),
    'applyUpdates: updates has no leaf at path "layer.b"',
  );
  // weight decay needs params
  const wd = sgd({ lr: 0.1, weightDecay: 0.1 });
  throwsWith(
    () => wd.update({ layer: { w: t(6, [2, 3]), b: t(3) } }, wd.init(params)),
    "sgd.update: params are required",
  );
});

Deno.test("states that do not belong to the optimizer are rejected", () => {
  const params = { w: t(3) };
  const g = { w: t(3) };
  throwsWith(
    () => sgd({ lr: 0.1 }).update(g, adam().init(params), params),
    'sgd.update: state must be a "sgd" state',
    'got a "adam" state',
  );
  throwsWith(
    () => adam({ amsgrad: true }).update(g, adam().init(params), params),
    "the state was made with amsgrad false, this optimizer has amsgrad true",
  );
  throwsWith(
    () => vsgd({ lr: 0.1, mode: "exact" }).update(g, vsgd({ lr: 0.1 }).init(params), params),
    'the state was made with mode "official", this optimizer has mode "exact"',
  );
  throwsWith(
    () => vsgd({ lr: 0.1 }).update(g, sgd({ lr: 0.1 }).init(params) as any, params),
    "vsgd.update: state must be a chain state",
  );
  throwsWith(
    () => chain(sgd({ lr: 0.1 }), adam()).update(g, vsgd({ lr: 0.1 }).init(params), params),
    'adam.update: state must be a "adam" state',
  );
  throwsWith(
    () => chain(weightNoise(), sgd({ lr: 0.1 })),
    "chain: weightNoise must be the last transformation",
  );
  throwsWith(() => chain(sgd({ lr: 0.1 }), {} as any), "chain: argument 1 must be a gradient transformation");
});

Deno.test("deserialize: truncated, corrupted, foreign or mismatched data is an error; nothing half-loaded", () => {
  const params = { a: t(10), b: { c: t(6, [2, 3]) } };
  const opt = vsgd({ lr: 0.1, momentum: 0.9, numIters: 5 });
  let state = opt.init(params);
  state = opt.update({ a: t(10), b: { c: t(6, [2, 3]) } }, state, params).state;
  const bytes = serialize(state);
  assert.deepEqual(serialize(deserialize(bytes)), bytes);
  for (let n = 0; n < bytes.length; n += Math.max(1, Math.floor(bytes.length / 97))) {
    throwsWith(() => deserialize(bytes.slice(0, n)), "deserialize:");
  }
  throwsWith(() => deserialize(bytes.slice(0, bytes.length - 1)), "deserialize: data is truncated");
  const extra = new Uint8Array(bytes.length + 3);
  extra.set(bytes);
  throwsWith(() => deserialize(extra), "deserialize: unexpected trailing data");
  for (const at of [20, Math.floor(bytes.length / 2), bytes.length - 10]) {
    const bad = bytes.slice();
    bad[at] ^= 0x10;
    throwsWith(() => deserialize(bad), "deserialize:");
  }
  const bad = bytes.slice();
  bad[bytes.length - 20] ^= 1; // inside the data: only the checksum can tell
  throwsWith(() => deserialize(bad), "deserialize: checksum mismatch");
  throwsWith(
    () => deserialize(new TextEncoder().encode("hello, this is not a state at all")),
    "not an optimizer state",
  );
  const v2 = bytes.slice();
  v2[8] = 2;
  throwsWith(() => deserialize(v2), "unsupported format version 2");
  throwsWith(() => deserialize("abc" as any), "expected a Uint8Array");
  // mismatched template: another parameter tree, another optimizer
  const other = vsgd({ lr: 0.1, momentum: 0.9 }).init({ a: t(10), b: { c: t(6, [3, 2]) } });
  throwsWith(() => deserialize(bytes, other), "does not match the template", "leaves.b.c");
  throwsWith(
    () => deserialize(bytes, vsgd({ lr: 0.1 }).init(params)),
    "does not match the template",
    "momentum",
  );
  throwsWith(() => deserialize(bytes, vadam().init(params)), "does not match the template");
  throwsWith(
    () => deserialize(bytes, vsgd({ lr: 0.1, momentum: 0.9, mode: "exact" }).init(params)),
    "does not match the template",
  );
  // unsupported values in a state
  throwsWith(() => serialize({ f: () => 1 }), "serialize: unsupported value at state.f");
  throwsWith(() => serialize({ m: new Map() }), "serialize: unsupported value at state.m");
});

Deno.test("a state made with one noise law is refused by an optimizer with another", () => {
  const params = { w: tensor([1, 2], [2], { dtype: "float64" }) };
  const state = vsgd({ lr: 0.1, noise: "laplace" }).init(params);
  const other = vsgd({ lr: 0.1, noise: "gaussian" });
  assert.throws(
    () => other.update({ w: tensor([0.1, 0.1], [2], { dtype: "float64" }) }, state, params),
    /law "laplace".*law "gaussian"/,
  );
  assert.throws(() => other.perturb(params, state), /law "laplace"/);
});

Deno.test("every option of every optimizer is checked at construction: class, name, value and range", () => {
  const R = RangeError, T = TypeError;
  const cases: [() => unknown, ErrorConstructor, string][] = [
    [() => sgd({ lr: 0.1, momentum: 1 }), R, "sgd: momentum must be a number in [0, 1), got 1"],
    [() => sgd({ lr: 0.1, momentum: 1.5 }), R, "sgd: momentum must be a number in [0, 1), got 1.5"],
    [() => vsgd({ lr: 0.1, momentum: NaN }), R, "vsgd: momentum must be a number in [0, 1), got NaN"],
    [() => sgd({ lr: 0.1, dampening: 1.5 }), R, "sgd: dampening must be a number in [0, 1], got 1.5"],
    [
      () => antiPgd({ lr: 0.1, dampening: -0.1 }),
      R,
      "antiPgd: dampening must be a number in [0, 1], got -0.1",
    ],
    [() => sgd({ lr: Infinity }), R, "sgd: lr must be a finite number >= 0, got Infinity"],
    [() => sgd({ lr: 0.1, weightDecay: NaN }), R, "sgd: weightDecay must be a finite number >= 0, got NaN"],
    [() => adam({ eps: 0 }), R, "adam: eps must be a finite number > 0, got 0"],
    [() => adamw({ eps: Infinity }), R, "adamw: eps must be a finite number > 0, got Infinity"],
    [() => adam({ lr: -1e-3 }), R, "adam: lr must be a finite number >= 0, got -0.001"],
    [() => adamw({ weightDecay: -0.01 }), R, "adamw: weightDecay must be a finite number >= 0, got -0.01"],
    [() => vadam({ betas: [0.9, 1] }), R, "vadam: betas[1] must be a number in [0, 1), got 1"],
    [() => vadam({ betas: "0.9" as any }), T, 'vadam: betas must be a pair [b1, b2], got "0.9"'],
    [
      () => weightNoise({ variability: -1 }),
      R,
      "weightNoise: variability must be a finite number >= 0, got -1",
    ],
    [() => weightNoise({ numIters: 1.5 }), R, "weightNoise: numIters (the noise reset period"],
    [
      () => weightNoise({ seed: 2 ** 32 }),
      R,
      "weightNoise: seed must be an integer in [0, 2^32), got 4294967296",
    ],
    [() => weightNoise({ mode: "clean" as any }), R, 'weightNoise: mode must be "official" or "exact"'],
    [() => weightNoise({ noise: "cauchy" as any }), R, "weightNoise: noise must be one of"],
    [
      () => sgd({ lr: 0.1, momentum: "0.9" as any }),
      T,
      "sgd: momentum must be a number or a function of the step",
    ],
    [() => sgd(null as any), T, "sgd: options must be an object, got null"],
    [() => clipByGlobalNorm(0), R, "clipByGlobalNorm: maxNorm must be a finite number > 0, got 0"],
    [() => clipByGlobalNorm(-1), R, "clipByGlobalNorm: maxNorm must be a finite number > 0, got -1"],
    [
      () => clipByGlobalNorm(Infinity),
      R,
      "clipByGlobalNorm: maxNorm must be a finite number > 0, got Infinity",
    ],
    [
      () => clipByGlobalNorm("1" as any),
      T,
      'clipByGlobalNorm: maxNorm must be a number or a function of the step, got "1"',
    ],
    [() => clipByValue(0), R, "clipByValue: maxAbs must be a finite number > 0, got 0"],
    [() => clipByValue(NaN), R, "clipByValue: maxAbs must be a finite number > 0, got NaN"],
    [
      () => addDecayedWeights(-1e-4),
      R,
      "addDecayedWeights: weightDecay must be a finite number >= 0, got -0.0001",
    ],
    [
      () => addDecayedWeights(1e-4, 3 as any),
      T,
      'masked: mask at path "" must be true, false, an array or an object',
    ],
    [() => masked({} as any, true), T, "masked: transform must be a gradient transformation"],
    [() => masked(sgd({ lr: 0.1 }), { w: "yes" } as any), T, 'masked: mask at path "w" must be true, false'],
    // a schedule that is out of range from the start is refused when the optimizer is built
    [
      () => vsgd({ lr: () => -1 }),
      R,
      "vsgd: lr must be a finite number >= 0, got -1 (value of the schedule at step 0)",
    ],
    [() => sgd({ lr: 0.1, momentum: () => 1 }), R, "sgd: momentum must be a number in [0, 1), got 1"],
  ];
  for (const [fn, cls, msg] of cases) throwsExactly(fn, cls, msg);
});

Deno.test("every schedule option is checked at construction: class, name, value and range", () => {
  const R = RangeError, T = TypeError;
  const spe = { stepsPerEpoch: 10 };
  const cases: [() => unknown, ErrorConstructor, string][] = [
    [
      () => multiStepSchedule({ init: 0.1, milestones: [2], gamma: 0, ...spe }),
      R,
      "multiStepSchedule: gamma must be a finite number > 0, got 0",
    ],
    [
      () => multiStepSchedule({ init: 0.1, milestones: [2], gamma: -0.1, ...spe }),
      R,
      "multiStepSchedule: gamma must be a finite number > 0, got -0.1",
    ],
    [
      () => multiStepSchedule({ init: 0.1, milestones: [3, 3], ...spe }),
      R,
      "multiStepSchedule: milestones must be strictly increasing, got [3, 3] (milestones[1] = 3 after 3)",
    ],
    [
      () => multiStepSchedule({ init: 0.1, milestones: [0, 3], ...spe }),
      R,
      "multiStepSchedule: milestones[0] must be a positive integer, got 0",
    ],
    [
      () => multiStepSchedule({ init: 0.1, milestones: [2.5], ...spe }),
      R,
      "multiStepSchedule: milestones[0] must be a positive integer, got 2.5",
    ],
    [
      () => multiStepSchedule({ init: 0.1, milestones: 20 as any, ...spe }),
      T,
      "multiStepSchedule: milestones must be an array of increasing positive integers, got 20",
    ],
    [
      () => multiStepSchedule({ init: 0.1, milestones: [2], stepsPerEpoch: 2.5 }),
      R,
      "multiStepSchedule: stepsPerEpoch must be a positive integer, got 2.5",
    ],
    [
      () => multiStepSchedule({ init: NaN, milestones: [2], ...spe }),
      R,
      "multiStepSchedule: init must be a finite number, got NaN",
    ],
    [
      () => multiStepSchedule({ init: 0.1, milestone: [2], ...spe } as any),
      T,
      'multiStepSchedule: unknown option "milestone"',
    ],
    [() => multiStepSchedule(undefined as any), T, "multiStepSchedule: options are required"],
    [
      () => stepDecaySchedule({ init: 1, stepSize: 2, gamma: 0, ...spe }),
      R,
      "stepDecaySchedule: gamma must be a finite number > 0, got 0",
    ],
    [
      () => stepDecaySchedule({ init: 1, stepSize: 0, ...spe }),
      R,
      "stepDecaySchedule: stepSize must be a positive integer, got 0",
    ],
    [
      () => cosineDecaySchedule({ init: 0.1, decaySteps: 100, alpha: 1.5 }),
      R,
      "cosineDecaySchedule: alpha must be a number in [0, 1], got 1.5",
    ],
    [
      () => cosineDecaySchedule({ init: 0.1, decaySteps: 0 }),
      R,
      "cosineDecaySchedule: decaySteps must be a positive integer, got 0",
    ],
    [
      () => linearSchedule({ init: 1, end: 0, steps: -1 }),
      R,
      "linearSchedule: steps must be a positive integer, got -1",
    ],
    [
      () => linearSchedule({ init: 1, end: Infinity, steps: 5 }),
      R,
      "linearSchedule: end must be a finite number, got Infinity",
    ],
    [() => constantSchedule(NaN), R, "constantSchedule: value must be a finite number, got NaN"],
    [
      () => piecewiseConstantSchedule({ boundaries: [0, 5], values: [1, 2, 3] }),
      R,
      "piecewiseConstantSchedule: boundaries[0] must be a positive integer, got 0",
    ],
    [
      () => piecewiseConstantSchedule({ boundaries: [5], values: [1] }),
      R,
      "piecewiseConstantSchedule: values must have one more entry than boundaries",
    ],
    [
      () => piecewiseConstantSchedule({ boundaries: [5], values: [1, NaN] }),
      R,
      "piecewiseConstantSchedule: values[1] must be a finite number, got NaN",
    ],
    [
      () => joinSchedules([() => 1, () => 2], [5, 6]),
      R,
      "joinSchedules: boundaries must have one entry fewer than schedules (1), got [5, 6]",
    ],
    [
      () => joinSchedules([() => 1, () => 2], [-5]),
      R,
      "joinSchedules: boundaries[0] must be a positive integer, got -5",
    ],
    [
      () => joinSchedules([() => 1, 2 as any], [5]),
      T,
      "joinSchedules: schedules must be an array of functions",
    ],
    [
      () => warmupCosineSchedule({ peak: 1, warmupSteps: 10, decaySteps: 10 }),
      R,
      "warmupCosineSchedule: decaySteps must be an integer > warmupSteps (10), got 10",
    ],
    [
      () => warmupCosineSchedule({ peak: 1, warmupSteps: -1, decaySteps: 10 }),
      R,
      "warmupCosineSchedule: warmupSteps must be a non-negative integer, got -1",
    ],
    [() => linearWarmup(0, 0.1), R, "linearWarmup: warmupSteps must be a positive integer, got 0"],
    [
      () => linearWarmup(10, () => NaN),
      R,
      "linearWarmup: then(0) (the value after the warm-up) must be a finite number, got NaN",
    ],
    [() => linearWarmup(10, "0.1" as any), T, 'linearWarmup: then must be a number or a schedule, got "0.1"'],
  ];
  for (const [fn, cls, msg] of cases) throwsExactly(fn, cls, msg);
});

Deno.test("a scheduled value that leaves its range fails at that step, naming the optimizer, option and step", () => {
  const params = { w: t(3) };
  const cases: [GradientLike, string][] = [
    [
      clipByGlobalNorm((s) => (s < 2 ? 1 : 0)),
      "clipByGlobalNorm: maxNorm must be a finite number > 0, got 0 (value of the schedule at step 2)",
    ],
    [
      clipByValue((s) => (s < 2 ? 1 : -1)),
      "clipByValue: maxAbs must be a finite number > 0, got -1 (value of the schedule at step 2)",
    ],
    [
      addDecayedWeights((s) => (s < 2 ? 0.1 : NaN)),
      "addDecayedWeights: weightDecay must be a finite number >= 0, got NaN (value of the schedule at step 2)",
    ],
    [
      sgd({ lr: 0.1, dampening: (s) => (s < 2 ? 0 : 2) }),
      "sgd: dampening must be a number in [0, 1], got 2 (value of the schedule at step 2)",
    ],
    [
      adam({ eps: (s) => (s < 2 ? 1e-8 : 0) }),
      "adam: eps must be a finite number > 0, got 0 (value of the schedule at step 2)",
    ],
    [
      sgd({
        lr: multiStepSchedule({ init: 0.1, milestones: [1], gamma: 0.5, stepsPerEpoch: 1 }),
        momentum: (s) => s * 0.5,
      }),
      "sgd: momentum must be a number in [0, 1), got 1 (value of the schedule at step 2)",
    ],
  ];
  for (const [opt, msg] of cases) {
    let state = opt.init(params);
    for (let s = 0; s < 2; s++) state = opt.update({ w: t(3) }, state, params).state;
    throwsExactly(() => opt.update({ w: t(3) }, state, params), RangeError, msg);
  }
});
type GradientLike = { init(p: any): any; update(g: any, s: any, p?: any): { state: any } };

Deno.test("keys that contain the path separator are refused with the key and its path", () => {
  const u = t(2);
  const collide = { "a.b": t(2), a: { b: u } };
  for (
    const opt of [
      sgd({ lr: 0.1 }) as GradientLike,
      vsgd({ lr: 0.1 }),
      clipByGlobalNorm(1),
      zeroNans(),
      masked(sgd({ lr: 0.1 }), true),
    ]
  ) {
    throwsExactly(() => opt.init(collide), TypeError, 'key "a.b" at path "" contains the path separator "."');
    const params = { a: { b: t(2) } };
    const state = opt.init(params);
    throwsExactly(
      () => opt.update({ a: { b: t(2) }, "a.b": t(2) } as any, state, params),
      TypeError,
      'key "a.b"',
    );
  }
  throwsExactly(
    () => vsgd({ lr: 0.1 }).init({ layers: [{ "w.0": t(1) }] }),
    TypeError,
    'vsgd.init (params): key "w.0" at path "layers.0" contains the path separator',
  );
  throwsExactly(() => sgd({ lr: 0.1 }).init({ "": t(1) }), TypeError, 'key "" at path "" is empty');
  throwsExactly(
    () => applyUpdates({ a: { b: u } }, { "a.b": u }),
    TypeError,
    'applyUpdates (updates): key "a.b"',
  );
  // outside the optimizers a dotted key is fine, but two leaves with one path are not
  assert.deepEqual(treeLeaves({ "a.b": u }).map((l) => l.path), ["a.b"]);
  throwsExactly(
    () => treeLeaves(collide, "save"),
    TypeError,
    'save: the leaves at root["a"]["b"] and root["a.b"] both have the path "a.b"',
  );
});

Deno.test("a state whose seed, law or mode differ from the optimizer's is refused on update, perturb and clean", () => {
  const params = { w: tensor([1, 2], [2], { dtype: "float64" }) };
  const g = { w: tensor([0.1, 0.1], [2], { dtype: "float64" }) };
  for (const mode of ["official", "exact"] as const) {
    const state = vsgd({ lr: 0.1, seed: 7, mode }).init(params);
    const other = vsgd({ lr: 0.1, seed: 8, mode });
    const msg = "the state was made with seed 7, this optimizer has seed 8; build the optimizer with seed 7";
    throwsExactly(() => other.update(g, state, params), Error, `vsgd.update: ${msg}`);
    throwsExactly(() => other.perturb(params, state), Error, `vsgd.perturb: ${msg}`);
    throwsExactly(() => other.clean(params, state), Error, `vsgd.clean: ${msg}`);
    // a resumed state: the same check after serialize/deserialize
    const back = deserialize(serialize(state), other.init(params));
    throwsExactly(() => other.update(g, back, params), Error, msg);
  }
  const wn = chain(sgd({ lr: 0.1 }), weightNoise({ seed: 1 }));
  throwsExactly(
    () => chain(sgd({ lr: 0.1 }), weightNoise({ seed: 2 })).update(g, wn.init(params), params),
    Error,
    "the state was made with seed 1, this optimizer has seed 2",
  );
  throwsExactly(
    () =>
      chain(adam(), weightNoise({ seed: 2 })).update(
        g,
        chain(adam(), weightNoise({ seed: 3 })).init(params),
        params,
      ),
    Error,
    "weightNoise.update: the state was made with seed 3, this optimizer has seed 2",
  );
  throwsExactly(
    () => vadam({ noise: "uniform" }).update(g, vadam({ noise: "laplace" }).init(params), params),
    Error,
    'the state was made with law "laplace", this optimizer has law "uniform"',
  );
});

Deno.test("the new transformations: errors name the transformation, the path and the fix", () => {
  const params = { w: t(6, [2, 3]), b: t(3) };
  const g = { w: t(6, [2, 3]), b: t(3) };
  // weight noise (alone, inside a variable optimizer or masked) must come last
  throwsExactly(
    () => chain(vsgd({ lr: 0.1 }), clipByGlobalNorm(1)),
    Error,
    "chain: weightNoise must be the last transformation (it carries weight noise",
  );
  throwsExactly(
    () => chain(masked(weightNoise(), { w: true, b: false }), sgd({ lr: 0.1 })),
    Error,
    "argument 0 of 2",
  );
  chain(clipByGlobalNorm(1), vsgd({ lr: 0.1 })); // fine: the noise is last
  // params needed
  const d = addDecayedWeights(0.1);
  throwsExactly(
    () => d.update(g, d.init(params)),
    TypeError,
    "addDecayedWeights.update: params are required",
  );
  throwsExactly(
    () => chain(d, sgd({ lr: 0.1 })).update(g, chain(d, sgd({ lr: 0.1 })).init(params)),
    TypeError,
    "addDecayedWeights.update: params are required",
  );
  // foreign state
  throwsExactly(
    () => clipByValue(1).update(g, clipByGlobalNorm(1).init(params)),
    TypeError,
    'clipByValue.update: state must be a "clipByValue" state (from init), got a "clipByGlobalNorm" state',
  );
  throwsExactly(
    () => masked(sgd({ lr: 1 }), true).update(g, sgd({ lr: 1 }).init(params) as any),
    TypeError,
    'masked.update: state must be a "masked" state',
  );
  throwsExactly(
    () => zeroNans().update({ w: t(6, [2, 3]) }, zeroNans().init(params)),
    Error,
    'zeroNans.update: grads has no leaf at path "b"',
  );
  // one norm needs one dtype and device
  const f64 = new Tensor(new Float64Array(3), [3], "float64", "cpu");
  const mixed = { w: t(6, [2, 3]), b: f64 };
  const c = clipByGlobalNorm(1);
  throwsExactly(
    () => c.update(mixed, c.init(mixed)),
    TypeError,
    'clipByGlobalNorm.update: one norm needs one dtype and device, but the leaf at path "w" is float32 on cpu and the one at path "b" is float64 on cpu',
  );
  // masks: tree shape, function results, changed selection
  const m = (mask: any) => masked(sgd({ lr: 0.1 }), mask);
  throwsExactly(
    () => m({ w: true }).init(params),
    TypeError,
    'masked.init: mask has no entry at path "b", which params has',
  );
  throwsExactly(
    () => m({ w: true, b: true, c: false }).init(params),
    TypeError,
    'masked.init: mask has an entry at path "c", which params does not have',
  );
  throwsExactly(
    () => m({ w: [true], b: true }).init(params),
    TypeError,
    'masked.init: mask at path "w" must be true or false (params has a leaf there), got [true]',
  );
  throwsExactly(
    () => m({ l: [true] }).init({ l: [t(1), t(1)] }),
    TypeError,
    'masked.init: mask at path "l" must be a boolean or an array of 2 (as params), got [true]',
  );
  throwsExactly(
    () => m(() => 1).init(params),
    TypeError,
    'masked.init: the mask function must return true or false, got 1 for path "b"',
  );
  const byShape = m((_: string, x: Tensor) => x.shape[0] === 2);
  const st = byShape.init(params);
  throwsExactly(
    () => byShape.update({ w: t(6, [3, 2]), b: t(3) }, st, params),
    Error,
    'masked.update: the mask selects [] in the grads, but the state was made for ["w"]',
  );
});
