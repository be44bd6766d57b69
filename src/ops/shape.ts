/**
 * Shape ops: reshape, flatten, transpose, slice, concat — each with its VJP.
 *
 * @module
 */
import { checkShape, fmtShape, shapeSize, type Tensor } from "../tensor.ts";
import { record } from "../tape.ts";
import { backendFor, normalizeAxis } from "./dispatch.ts";

/**
 * The same data with a new shape; one dim may be −1 (inferred).
 *
 * @example
 * ```ts
 * import { arange, reshape } from "@nvrm/core";
 * console.log(reshape(arange(6), [2, -1]).shape); // [2, 3]
 * ```
 */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const b = backendFor("reshape", { x });
  checkShapeArg("reshape", "shape", shape);
  const s = shape.slice();
  const infer = s.indexOf(-1);
  if (infer >= 0) {
    if (s.indexOf(-1, infer + 1) >= 0) {
      throw new RangeError(`reshape: at most one -1 allowed, got ${fmtShape(shape)}`);
    }
    const known = shapeSize(s.filter((_, i) => i !== infer));
    if (known === 0 || x.size % known !== 0) {
      throw new RangeError(
        `reshape: cannot reshape ${fmtShape(x.shape)} (${x.size} elements) to ${fmtShape(shape)}`,
      );
    }
    s[infer] = x.size / known;
  }
  checkShape(s, "reshape");
  if (shapeSize(s) !== x.size) {
    throw new RangeError(
      `reshape: cannot reshape ${fmtShape(x.shape)} (${x.size} elements) to ${fmtShape(shape)} (${
        shapeSize(s)
      })`,
    );
  }
  const y = b.reshape(x, s);
  return record(y, [x], (g) => [reshape(g, x.shape)]);
}

/** Throws a TypeError naming the op and argument unless `v` is an array of numbers. */
function checkShapeArg(op: string, name: string, v: unknown): void {
  if (!Array.isArray(v) || v.some((d) => typeof d !== "number")) {
    throw new TypeError(`${op}: ${name} must be an array of integers, got ${JSON.stringify(v)}`);
  }
}

/** Merges axes `startAxis … endAxis` (inclusive, negatives from the end) into one, like `torch.flatten`. */
export function flatten(x: Tensor, startAxis = 0, endAxis = -1): Tensor {
  backendFor("flatten", { x });
  if (x.rank === 0) return reshape(x, [1]);
  const s = normalizeAxis("flatten", startAxis, x.rank), e = normalizeAxis("flatten", endAxis, x.rank);
  if (s > e) throw new RangeError(`flatten: startAxis ${startAxis} comes after endAxis ${endAxis}`);
  const mid = shapeSize(x.shape.slice(s, e + 1));
  return reshape(x, [...x.shape.slice(0, s), mid, ...x.shape.slice(e + 1)]);
}

/**
 * Permutes axes: output axis i is input axis `perm[i]`; reverses the axes when `perm` is omitted.
 */
export function transpose(x: Tensor, perm?: readonly number[]): Tensor {
  const b = backendFor("transpose", { x });
  const p = perm
    ? perm.map((a) => normalizeAxis("transpose", a, x.rank))
    : x.shape.map((_, i) => x.rank - 1 - i);
  if (p.length !== x.rank || new Set(p).size !== x.rank) {
    throw new RangeError(`transpose: perm ${fmtShape(perm ?? [])} is not a permutation of ${x.rank} axes`);
  }
  const y = b.transpose(x, p);
  const inv = new Array<number>(p.length);
  p.forEach((a, i) => (inv[a] = i));
  return record(y, [x], (g) => [transpose(g, inv)]);
}

/**
 * A strided slice. `begin`/`end` per axis (negative from the end, `end` exclusive and clamped,
 * missing axes taken whole), `step` positive.
 *
 * @example
 * ```ts
 * import { arange, reshape, slice } from "@nvrm/core";
 * const x = reshape(arange(12), [3, 4]);
 * console.log(slice(x, [1, 0], [3, 4], [1, 2]).dataSync()); // [4, 6, 8, 10]
 * ```
 */
export function slice(
  x: Tensor,
  begin: readonly number[],
  end?: readonly number[],
  step?: readonly number[],
): Tensor {
  const b = backendFor("slice", { x });
  checkShapeArg("slice", "begin", begin);
  if (end !== undefined) checkShapeArg("slice", "end", end);
  if (step !== undefined) checkShapeArg("slice", "step", step);
  if (begin.length > x.rank) {
    throw new RangeError(`slice: begin has ${begin.length} entries but the tensor has rank ${x.rank}`);
  }
  const bs: number[] = [], es: number[] = [], ss: number[] = [];
  for (let i = 0; i < x.rank; i++) {
    const d = x.shape[i];
    const st = step?.[i] ?? 1;
    if (!Number.isInteger(st) || st < 1) {
      throw new RangeError(`slice: step[${i}] must be a positive integer, got ${st}`);
    }
    let bi = begin[i] ?? 0, ei = end?.[i] ?? d;
    if (!Number.isInteger(bi) || !Number.isInteger(ei)) {
      throw new RangeError(`slice: begin/end must be integers, got begin[${i}]=${bi}, end[${i}]=${ei}`);
    }
    if (bi < 0) bi += d;
    if (ei < 0) ei += d;
    bi = Math.min(Math.max(bi, 0), d);
    ei = Math.min(Math.max(ei, bi), d);
    bs.push(bi);
    es.push(ei);
    ss.push(st);
  }
  const y = b.slice(x, bs, es, ss);
  return record(y, [x], (g) => [sliceGradOp(g, x.shape, bs, ss)]);
}

function sliceGradOp(g: Tensor, shape: readonly number[], begin: number[], step: number[]): Tensor {
  const y = backendFor("slice (backward)", { g }).sliceGrad(g, shape, begin, step);
  const outShape = g.shape;
  return record(y, [g], (gg) => [
    slice(gg, begin, begin.map((b, i) => b + (outShape[i] - 1) * step[i] + 1), step),
  ]);
}

/** Concatenates tensors along `axis`; all other dims must match. */
export function concat(xs: readonly Tensor[], axis = 0): Tensor {
  if (!Array.isArray(xs as unknown)) {
    throw new TypeError(`concat: xs must be an array of tensors, got ${typeof xs}`);
  }
  if (xs.length === 0) throw new RangeError(`concat: needs a non-empty array of tensors`);
  const args: Record<string, Tensor> = {};
  xs.forEach((t, i) => (args[`xs[${i}]`] = t));
  const b = backendFor("concat", args);
  const ax = normalizeAxis("concat", axis, xs[0].rank);
  xs.forEach((t, i) => {
    if (t.rank !== xs[0].rank || t.shape.some((d, j) => j !== ax && d !== xs[0].shape[j])) {
      throw new RangeError(
        `concat: xs[${i}] has shape ${fmtShape(t.shape)}, incompatible with xs[0] ${
          fmtShape(xs[0].shape)
        } along axis ${ax}`,
      );
    }
  });
  const y = b.concat(xs, ax);
  return record(y, xs, (g) => {
    let off = 0;
    return xs.map((t) => {
      const begin = t.shape.map((_, j) => (j === ax ? off : 0));
      const end = t.shape.map((d, j) => (j === ax ? off + d : d));
      off += t.shape[ax];
      return slice(g, begin, end);
    });
  });
}
