/**
 * Hyperparameter checking and evaluation: every numeric hyperparameter is a number or a schedule
 * (a function of the step); constants are checked when the optimizer is built, schedule values
 * every time they are evaluated. Errors name the function, the argument, the value and what was
 * expected: `vsgd: variability must be a finite number >= 0, got -1`.
 *
 * Internal module.
 *
 * @module
 */
import type { HyperParam } from "./types.ts";

/** Formats a value for an error message. */
export function fmtValue(v: unknown): string {
  if (typeof v === "number") return Object.is(v, -0) ? "-0" : String(v);
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "function") return "a function";
  if (v === null) return "null";
  if (Array.isArray(v)) return `[${v.map(fmtValue).join(", ")}]`;
  if (typeof v === "object") return `an object (${Object.prototype.toString.call(v)})`;
  return String(v);
}

/** A constraint on a hyperparameter value. */
export interface Rule {
  /** What is expected, for the error message ("a finite number >= 0"). */
  readonly expect: string;
  /** True when the value is acceptable. */
  readonly ok: (v: number) => boolean;
}

/** x ≥ 0 and finite (lr, weight decay, variability). */
export const NONNEG: Rule = { expect: "a finite number >= 0", ok: (v) => v >= 0 && v < Infinity };
/** x > 0 and finite (eps, clipping thresholds). */
export const POSITIVE: Rule = { expect: "a finite number > 0", ok: (v) => v > 0 && v < Infinity };
/** Any finite number. */
export const FINITE: Rule = { expect: "a finite number", ok: (v) => Number.isFinite(v) };
/** 0 ≤ x < 1 (momentum, Adam's betas). */
export const UNIT: Rule = { expect: "a number in [0, 1)", ok: (v) => v >= 0 && v < 1 };
/** 0 ≤ x ≤ 1 (dampening). */
export const UNIT_CLOSED: Rule = { expect: "a number in [0, 1]", ok: (v) => v >= 0 && v <= 1 };

/** Throws a RangeError in the house style. */
export function fail(who: string, name: string, expect: string, got: unknown, extra = ""): never {
  throw new RangeError(`${who}: ${name} must be ${expect}, got ${fmtValue(got)}${extra}`);
}

/**
 * Checks a hyperparameter when the optimizer is built: a number must satisfy `rule`, anything else
 * must be a function (its value at step 0 is checked now, the others as they are evaluated).
 */
export function checkHyper(who: string, name: string, h: unknown, rule: Rule): HyperParam {
  if (typeof h === "number") {
    if (!rule.ok(h)) fail(who, name, rule.expect, h);
    return h;
  }
  if (typeof h === "function") {
    evalHyper(who, name, h as HyperParam, 0, rule); // a schedule that is wrong from the start fails here
    return h as HyperParam;
  }
  throw new TypeError(`${who}: ${name} must be a number or a function of the step, got ${fmtValue(h)}`);
}

/** The value of `h` at `step`, checked against `rule` (schedules are checked here). */
export function evalHyper(who: string, name: string, h: HyperParam, step: number, rule: Rule): number {
  if (typeof h === "number") return h;
  const v = h(step);
  if (typeof v !== "number" || !rule.ok(v)) {
    fail(who, name, rule.expect, v, ` (value of the schedule at step ${step})`);
  }
  return v;
}

/** Checks a boolean option. */
export function checkBool(who: string, name: string, v: unknown): boolean {
  if (typeof v !== "boolean") {
    throw new TypeError(`${who}: ${name} must be true or false, got ${fmtValue(v)}`);
  }
  return v;
}

/** Checks that `options` is a plain object and has no key outside `known` (typos are errors). */
export function checkOptions(
  who: string,
  options: unknown,
  known: readonly string[],
): Record<string, unknown> {
  if (options === undefined) return {};
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new TypeError(`${who}: options must be an object, got ${fmtValue(options)}`);
  }
  for (const k of Object.keys(options)) {
    if (!known.includes(k)) {
      throw new TypeError(`${who}: unknown option ${JSON.stringify(k)} (known: ${known.join(", ")})`);
    }
  }
  return options as Record<string, unknown>;
}
