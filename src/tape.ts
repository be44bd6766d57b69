/**
 * The tape of reverse-mode autodiff. While a tape is active, every op whose inputs include a
 * tracked tensor records its inputs, its output and its vector-Jacobian product (VJP); the backward
 * pass walks the records in reverse. Ops call {@linkcode record}; users call `valueAndGrad`.
 *
 * @module
 */
import type { Tensor } from "./tensor.ts";

/**
 * A vector-Jacobian product: given the gradient of the output, the gradient for each input
 * (`null` where the input gets none, e.g. integer labels). `needs[k]` is false when input k is not
 * tracked (data, constants): its gradient would be discarded, so an expensive VJP (matmul, conv)
 * may skip it and return `null`.
 */
export type Vjp = (g: Tensor, needs: readonly boolean[]) => readonly (Tensor | null)[];

/** One recorded op. */
export interface TapeEntry {
  /** The op's tensor inputs, in the order its VJP returns gradients. */
  readonly inputs: readonly Tensor[];
  /** The op's output. */
  readonly output: Tensor;
  /** The op's vector-Jacobian product. */
  readonly vjp: Vjp;
}

/** A recording of the ops applied to tracked tensors. */
export class Tape {
  /** Recorded ops in execution order. */
  readonly entries: TapeEntry[] = [];
  /** Ids of tensors whose gradient is wanted or that depend on one. */
  readonly tracked: Set<number> = new Set();

  /** Marks a tensor as a differentiation variable. */
  watch(t: Tensor): void {
    this.tracked.add(t.id);
  }
}

let active: Tape | null = null;

/** The tape currently recording, if any. */
export function activeTape(): Tape | null {
  return active;
}

/** Runs `fn` with `tape` recording (or with recording paused when `tape` is null). */
export function withTape<T>(tape: Tape | null, fn: () => T): T {
  const prev = active;
  active = tape;
  try {
    return fn();
  } finally {
    active = prev;
  }
}

/**
 * Records an op on the active tape when any input is tracked. Ops call this right after computing
 * their output; `vjp` runs later, during the backward pass, with recording paused.
 */
export function record(output: Tensor, inputs: readonly Tensor[], vjp: Vjp): Tensor {
  if (isTracked(inputs)) {
    active!.tracked.add(output.id);
    active!.entries.push({ inputs, output, vjp });
  }
  return output;
}

/**
 * True when a tape is recording and one of `inputs` is tracked, i.e. when {@linkcode record} would
 * record an op on them. Ops use it to free forward-only intermediates (softmax probabilities, pooling
 * argmax) at once when no backward pass will need them.
 */
export function isTracked(inputs: readonly Tensor[]): boolean {
  const tape = active;
  if (tape === null) return false;
  for (const t of inputs) if (tape.tracked.has(t.id)) return true;
  return false;
}
