// Bad input: every validation of docs/algorithm.md §2.3 as an error naming the function, the argument
// and the value; tree and shape mismatches naming the path; truncated or mismatched serialized states.
import assert from "node:assert/strict";
import { Tensor } from "../src/tensor.ts";
import { tensor } from "../src/creation.ts";
import {
  adam,
  adamw,
  antiPgd,
  applyUpdates,
  chain,
  deserialize,
  linearWarmup,
  multiStepSchedule,
  type Optimizer,
  piecewiseConstantSchedule,
  serialize,
  sgd,
  vadam,
  vsgd,
  weightNoise,
} from "../src/optim/mod.ts";

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
    "vsgd: momentum must be a finite number >= 0, got -0.9",
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
    "sgd: dampening must be a finite number, got Infinity",
  );
  throwsWith(() => antiPgd({ lr: 0.1, numIters: 5 } as any), 'antiPgd: unknown option "numIters"');
});

Deno.test("vadam validations: lr, eps, betas, weightDecay, variability, numIters, noise", () => {
  throwsWith(() => vadam({ lr: -1 }), "vadam: lr must be a finite number >= 0, got -1");
  throwsWith(() => vadam({ eps: -1e-8 }), "vadam: eps must be a finite number >= 0, got -1e-8");
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
    "boundaries must increase",
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
