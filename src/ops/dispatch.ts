/**
 * Argument checks shared by the ops: one device, one dtype, broadcast shapes, axes.
 *
 * @module
 */
import { type Backend, getBackend } from "../backend.ts";
import { fmtShape, Tensor } from "../tensor.ts";

/** A tensor or a plain number (broadcast as a scalar of the other operand's dtype and device). */
export type TensorLike = Tensor | number;

/** Throws a TypeError naming the op and argument unless `x` is a Tensor. */
export function checkTensor(op: string, name: string, x: unknown): asserts x is Tensor {
  if (!(x instanceof Tensor)) {
    throw new TypeError(`${op}: argument ${name} must be a Tensor, got ${x === null ? "null" : typeof x}`);
  }
}

/**
 * The backend for an op's tensor arguments: checks that they share one device and one dtype and
 * names the offending arguments otherwise.
 */
export function backendFor(op: string, args: Record<string, Tensor>): Backend {
  const names = Object.keys(args);
  const first = args[names[0]];
  for (const n of names) {
    const t = args[n];
    checkTensor(op, n, t);
    if (t.device !== first.device) {
      throw new Error(
        `${op}: cannot mix devices: ${
          names[0]
        } is on ${first.device}, ${n} is on ${t.device} (move one with toDevice)`,
      );
    }
    if (t.dtype !== first.dtype) {
      throw new TypeError(
        `${op}: cannot mix dtypes: ${names[0]} is ${first.dtype} ${
          fmtShape(first.shape)
        }, ${n} is ${t.dtype} ${fmtShape(t.shape)} (cast one first)`,
      );
    }
  }
  return getBackend(first.device);
}

/** Turns a number into a scalar tensor like `like`. */
export function scalarLike(x: TensorLike, like: Tensor): Tensor {
  if (x instanceof Tensor) return x;
  if (typeof x !== "number") throw new TypeError(`expected a Tensor or a number, got ${typeof x}`);
  return getBackend(like.device).fill([], x, like.dtype);
}

/** NumPy broadcast of two shapes; throws naming the op and both shapes when incompatible. */
export function broadcastShapes(op: string, a: readonly number[], b: readonly number[]): number[] {
  const r = Math.max(a.length, b.length);
  const out = new Array<number>(r);
  for (let i = 1; i <= r; i++) {
    const da = i <= a.length ? a[a.length - i] : 1;
    const db = i <= b.length ? b[b.length - i] : 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new RangeError(
        `${op}: shapes ${fmtShape(a)} and ${fmtShape(b)} cannot broadcast (axis -${i}: ${da} vs ${db})`,
      );
    }
    out[r - i] = da === 1 ? db : da;
  }
  return out;
}

/** Normalizes axes (negative allowed) to sorted unique non-negative ints; throws when out of range. */
export function normalizeAxes(
  op: string,
  axes: number | readonly number[] | undefined,
  rank: number,
): number[] {
  if (axes === undefined) return Array.from({ length: rank }, (_, i) => i);
  const list = typeof axes === "number" ? [axes] : axes;
  const out = new Set<number>();
  for (const a of list) out.add(normalizeAxis(op, a, rank));
  return [...out].sort((x, y) => x - y);
}

/** Normalizes one axis (negative counts from the end); throws when out of range. */
export function normalizeAxis(op: string, axis: number, rank: number): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= Math.max(rank, 1)) {
    throw new RangeError(`${op}: axis ${axis} is out of range for a tensor of rank ${rank}`);
  }
  return axis < 0 ? axis + rank : axis;
}
