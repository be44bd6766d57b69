/**
 * Schedules: functions from the step (the 0-based index of the update being taken) to a
 * hyperparameter value. Any numeric hyperparameter of the optimizers accepts one — `lr`,
 * `variability`, `momentum`, `weightDecay`, `betas`, `eps`, `dampening`, `maxNorm`, ….
 *
 * Every option is checked when the schedule is built (errors name the schedule, the option, the
 * value and the accepted range, e.g. `multiStepSchedule: gamma must be a finite number > 0, got 0`);
 * the optimizer checks each value it evaluates against its own range, naming the step.
 *
 * @module
 */
import { checkOptions, fmtValue } from "./hyper.ts";
import type { Schedule } from "./types.ts";

function num(who: string, name: string, v: unknown, ok: (x: number) => boolean, expect: string): number {
  if (typeof v !== "number" || !ok(v)) {
    throw new RangeError(`${who}: ${name} must be ${expect}, got ${fmtValue(v)}`);
  }
  return v;
}
const finite = (x: number) => Number.isFinite(x);
const positive = (x: number) => x > 0 && x < Infinity;
const posInt = (x: number) => Number.isInteger(x) && x >= 1;
const nonnegInt = (x: number) => Number.isInteger(x) && x >= 0;

/** The options object of a schedule: a plain object with known keys only (typos are errors). */
function opts(who: string, o: unknown, known: readonly string[]): Record<string, unknown> {
  if (o === undefined) throw new TypeError(`${who}: options are required ({ ${known.join(", ")} })`);
  return checkOptions(who, o, known);
}

/**
 * Checks that `xs` is an array of strictly increasing positive integers (steps or epochs); returns
 * a copy. A boundary at 0 would hide the first piece, so it is refused too.
 */
function increasing(who: string, name: string, xs: unknown): number[] {
  if (!Array.isArray(xs)) {
    throw new TypeError(
      `${who}: ${name} must be an array of increasing positive integers, got ${fmtValue(xs)}`,
    );
  }
  xs.forEach((x, i) => {
    num(who, `${name}[${i}]`, x, posInt, "a positive integer");
    if (i > 0 && !(x > xs[i - 1])) {
      throw new RangeError(
        `${who}: ${name} must be strictly increasing, got ${fmtValue(xs)} (${name}[${i}] = ${x} after ${
          xs[i - 1]
        })`,
      );
    }
  });
  return xs.slice();
}

/** How many of the increasing `bounds` are ≤ `s`. */
function passed(bounds: readonly number[], s: number): number {
  let k = 0;
  while (k < bounds.length && s >= bounds[k]) k++;
  return k;
}

/**
 * A constant schedule.
 *
 * @example
 * ```ts
 * import { constantSchedule } from "@nvrm/core/optim";
 * const lr = constantSchedule(0.1);
 * console.log(lr(0), lr(1000)); // 0.1 0.1
 * ```
 */
export function constantSchedule(value: number): Schedule {
  num("constantSchedule", "value", value, finite, "a finite number");
  return () => value;
}

/**
 * Linear interpolation from `init` to `end` over `steps` steps, then `end`:
 * `init + (end − init)·min(step, steps)/steps` (optax's `linear_schedule`).
 */
export function linearSchedule(options: { init: number; end: number; steps: number }): Schedule {
  const who = "linearSchedule";
  const o = opts(who, options, ["init", "end", "steps"]);
  const init = num(who, "init", o.init, finite, "a finite number");
  const end = num(who, "end", o.end, finite, "a finite number");
  const steps = num(who, "steps", o.steps, posInt, "a positive integer");
  return (s) => init + (end - init) * Math.min(s, steps) / steps;
}

/**
 * Cosine decay from `init` to `alpha·init` (alpha in [0, 1], default 0) over `decaySteps` steps, then
 * `alpha·init`:
 * `init·((1 − alpha)·½(1 + cos(π·min(step, decaySteps)/decaySteps)) + alpha)` (optax's
 * `cosine_decay_schedule`).
 *
 * @example
 * ```ts
 * import { cosineDecaySchedule } from "@nvrm/core/optim";
 * const lr = cosineDecaySchedule({ init: 0.1, decaySteps: 100 });
 * console.log(lr(0), lr(50), lr(100)); // 0.1 0.05 0
 * ```
 */
export function cosineDecaySchedule(
  options: { init: number; decaySteps: number; alpha?: number },
): Schedule {
  const who = "cosineDecaySchedule";
  const o = opts(who, options, ["init", "decaySteps", "alpha"]);
  const init = num(who, "init", o.init, finite, "a finite number");
  const decaySteps = num(who, "decaySteps", o.decaySteps, posInt, "a positive integer");
  const alpha = num(who, "alpha", o.alpha ?? 0, (x) => x >= 0 && x <= 1, "a number in [0, 1]");
  return (s) => {
    const c = 0.5 * (1 + Math.cos(Math.PI * Math.min(s, decaySteps) / decaySteps));
    return init * ((1 - alpha) * c + alpha);
  };
}

/**
 * Piecewise constant: `values[k]` where k is the number of `boundaries` (steps: strictly increasing
 * positive integers) that are ≤ step. `values` has one more entry than `boundaries`.
 *
 * @example
 * ```ts
 * import { piecewiseConstantSchedule } from "@nvrm/core/optim";
 * const lr = piecewiseConstantSchedule({ boundaries: [100, 200], values: [0.1, 0.01, 0.001] });
 * console.log(lr(99), lr(100), lr(250)); // 0.1 0.01 0.001
 * ```
 */
export function piecewiseConstantSchedule(
  options: { boundaries: readonly number[]; values: readonly number[] },
): Schedule {
  const who = "piecewiseConstantSchedule";
  const o = opts(who, options, ["boundaries", "values"]);
  const b = o.boundaries, v = o.values;
  if (!Array.isArray(b) || !Array.isArray(v) || v.length !== b.length + 1) {
    throw new RangeError(
      `${who}: values must have one more entry than boundaries, got boundaries ${fmtValue(b)} and values ${
        fmtValue(v)
      }`,
    );
  }
  const bs = increasing(who, "boundaries", b);
  v.forEach((x, i) => num(who, `values[${i}]`, x, finite, "a finite number"));
  const vs = v.slice();
  return (s) => vs[passed(bs, s)];
}

/**
 * Step decay by epoch, like PyTorch's `MultiStepLR`: `init·gamma^k`, k the number of `milestones`
 * (epochs: strictly increasing positive integers) ≤ the current epoch `floor(step / stepsPerEpoch)`.
 * `gamma` > 0 (default 0.1), `stepsPerEpoch` a positive integer.
 *
 * @example
 * ```ts
 * import { multiStepSchedule } from "@nvrm/core/optim";
 * // lr 0.1, ×0.1 at epochs 20 and 30, 469 steps per epoch (MNIST, batch 128)
 * const lr = multiStepSchedule({ init: 0.1, milestones: [20, 30], gamma: 0.1, stepsPerEpoch: 469 });
 * console.log(lr(0), lr(20 * 469), lr(30 * 469));
 * ```
 */
export function multiStepSchedule(
  options: { init: number; milestones: readonly number[]; gamma?: number; stepsPerEpoch: number },
): Schedule {
  const who = "multiStepSchedule";
  const o = opts(who, options, ["init", "milestones", "gamma", "stepsPerEpoch"]);
  const init = num(who, "init", o.init, finite, "a finite number");
  const gamma = num(who, "gamma", o.gamma ?? 0.1, positive, "a finite number > 0");
  const spe = num(who, "stepsPerEpoch", o.stepsPerEpoch, posInt, "a positive integer");
  const list = increasing(who, "milestones", o.milestones);
  return (s) => init * gamma ** passed(list, Math.floor(s / spe));
}

/**
 * Step decay every `stepSize` epochs, like PyTorch's `StepLR`:
 * `init·gamma^floor(epoch / stepSize)` with `epoch = floor(step / stepsPerEpoch)`; `gamma` > 0
 * (default 0.1), `stepSize` and `stepsPerEpoch` positive integers.
 */
export function stepDecaySchedule(
  options: { init: number; stepSize: number; gamma?: number; stepsPerEpoch: number },
): Schedule {
  const who = "stepDecaySchedule";
  const o = opts(who, options, ["init", "stepSize", "gamma", "stepsPerEpoch"]);
  const init = num(who, "init", o.init, finite, "a finite number");
  const stepSize = num(who, "stepSize", o.stepSize, posInt, "a positive integer");
  const gamma = num(who, "gamma", o.gamma ?? 0.1, positive, "a finite number > 0");
  const spe = num(who, "stepsPerEpoch", o.stepsPerEpoch, posInt, "a positive integer");
  return (s) => init * gamma ** Math.floor(Math.floor(s / spe) / stepSize);
}

/**
 * Joins schedules (optax's `join_schedules`): before `boundaries[0]` the first schedule runs; from
 * `boundaries[k−1]` on, schedule k runs on `step − boundaries[k−1]`. `boundaries` are strictly
 * increasing positive integers, one fewer than the schedules.
 */
export function joinSchedules(schedules: readonly Schedule[], boundaries: readonly number[]): Schedule {
  const who = "joinSchedules";
  if (!Array.isArray(schedules) || schedules.some((f) => typeof f !== "function")) {
    throw new TypeError(`${who}: schedules must be an array of functions, got ${fmtValue(schedules)}`);
  }
  if (!Array.isArray(boundaries) || boundaries.length !== schedules.length - 1) {
    throw new RangeError(
      `${who}: boundaries must have one entry fewer than schedules (${schedules.length - 1}), got ${
        fmtValue(boundaries)
      }`,
    );
  }
  const fs = schedules.slice(), bs = increasing(who, "boundaries", boundaries);
  return (s) => {
    const k = passed(bs, s);
    return fs[k](k === 0 ? s : s - bs[k - 1]);
  };
}

/**
 * Linear warm-up from `init` (default 0) to `peak` over `warmupSteps`, then cosine decay to `end`
 * (default 0) until step `decaySteps` (counted from 0, warm-up included), then `end` (optax's
 * `warmup_cosine_decay_schedule`).
 *
 * @example
 * ```ts
 * import { warmupCosineSchedule } from "@nvrm/core/optim";
 * const lr = warmupCosineSchedule({ peak: 0.1, warmupSteps: 100, decaySteps: 1000 });
 * console.log(lr(0), lr(100), lr(1000)); // 0 0.1 0
 * ```
 */
export function warmupCosineSchedule(
  options: { init?: number; peak: number; warmupSteps: number; decaySteps: number; end?: number },
): Schedule {
  const who = "warmupCosineSchedule";
  const o = opts(who, options, ["init", "peak", "warmupSteps", "decaySteps", "end"]);
  const init = num(who, "init", o.init ?? 0, finite, "a finite number");
  const peak = num(who, "peak", o.peak, finite, "a finite number");
  const end = num(who, "end", o.end ?? 0, finite, "a finite number");
  const w = num(who, "warmupSteps", o.warmupSteps, nonnegInt, "a non-negative integer");
  const d = num(
    who,
    "decaySteps",
    o.decaySteps,
    (x) => Number.isInteger(x) && x > w,
    `an integer > warmupSteps (${w})`,
  );
  const cos = (s: number) => {
    const c = 0.5 * (1 + Math.cos(Math.PI * Math.min(s, d - w) / (d - w)));
    return end + (peak - end) * c;
  };
  if (w === 0) return cos;
  const lin = (s: number) => init + (peak - init) * Math.min(s, w) / w;
  return joinSchedules([lin, cos], [w]);
}

/**
 * Linear warm-up in front of any hyperparameter: from `init` (default 0) to `then(0)` over
 * `warmupSteps`, then `then(step − warmupSteps)`.
 *
 * @example
 * ```ts
 * import { linearWarmup, multiStepSchedule } from "@nvrm/core/optim";
 * const lr = linearWarmup(500, multiStepSchedule({ init: 0.1, milestones: [20, 30], stepsPerEpoch: 469 }));
 * console.log(lr(0), lr(250), lr(500)); // 0 0.05 0.1
 * ```
 */
export function linearWarmup(warmupSteps: number, then: number | Schedule, init = 0): Schedule {
  const who = "linearWarmup";
  const w = num(who, "warmupSteps", warmupSteps, posInt, "a positive integer");
  num(who, "init", init, finite, "a finite number");
  if (typeof then !== "function" && typeof then !== "number") {
    throw new TypeError(`${who}: then must be a number or a schedule, got ${fmtValue(then)}`);
  }
  const f: Schedule = typeof then === "function" ? then : constantSchedule(then);
  const peak = num(who, "then(0) (the value after the warm-up)", f(0), finite, "a finite number");
  return joinSchedules([(s) => init + (peak - init) * s / w, f], [w]);
}
