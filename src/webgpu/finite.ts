/**
 * The WebGPU non-finite guard kernels (`FiniteKernels` of `src/backend.ts`): `mark` (with the
 * backend's `mergeArrays`, the marks of one guard wait and go out as one dispatch over up to
 * {@linkcode MARKS_PER_DISPATCH} arrays: an MLP step's updates and loss in one, ResNet-18's 62 and
 * the loss in 4), one dispatch per selected array (`select`) and per step
 * (`fold`), WGSL in `kernels/wgsl/finite.ts`. Nothing here waits on the GPU: `fit` reads the epoch's
 * guard back with the epoch's loss.
 *
 * @module
 */
import type { FiniteKernels } from "../backend.ts";
import type { Tensor } from "../tensor.ts";
import { WG1D } from "../../kernels/wgsl/common.ts";
import {
  FOLD_WORDS,
  foldGuardKernel,
  guardSelectKernel,
  MARK_WORDS,
  markNonFiniteKernel,
  SELECT_WORDS,
} from "../../kernels/wgsl/finite.ts";
import type { GpuStorage, WebGPUBackend } from "./backend.ts";
import { kernelSpec } from "./pipelines.ts";

/** Arrays marked in one dispatch at most. */
export const MARKS_PER_DISPATCH = 16;

/** Marks of one guard waiting to be encoded as one dispatch. */
interface PendingMarks {
  guard: GPUBuffer;
  arrays: { x: GPUBuffer; n: number; code: number }[];
  /** Elements of all the arrays: a thread each, indexed in u32. */
  threads: number;
}

/** Threads of one merged marks dispatch at most (their index and the arrays' starts are u32). */
const MAX_MARK_THREADS = 2 ** 31;

/**
 * The guard kernels of `b`; the marks of one guard are merged into one dispatch when `merge`
 * (default: the backend's `mergeArrays`).
 */
export function webgpuFiniteKernels(
  b: WebGPUBackend,
  options: { merge?: boolean } = {},
): FiniteKernels {
  let pending: PendingMarks | null = null;
  /** Encodes the waiting marks (run by the encoder before any other command: `Encoder.defer`). */
  const encodeMarks = (): void => {
    const g = pending;
    if (g === null) return;
    pending = null;
    const L = g.arrays.length;
    const words: number[] = [];
    let threads = 0;
    for (const a of g.arrays) {
      words.push(a.n, a.code, threads, 0);
      threads += a.n;
    }
    b.run(
      {
        key: `finite/mark${L > 1 ? `/x${L}` : ""}`,
        code: () => markNonFiniteKernel(L),
        bindings: [...g.arrays.map(() => "read" as const), "write"],
        uniformWords: MARK_WORDS * L,
      },
      words,
      [...g.arrays.map((a) => a.x), g.guard],
      b.grid(Math.ceil(threads / WG1D)),
    );
  };
  const maxMarks = () =>
    options.merge ?? b.mergeArrays
      ? Math.max(1, Math.min(MARKS_PER_DISPATCH, b.ctx.limits.maxStorageBuffersPerShaderStage - 1))
      : 1;
  const sel = kernelSpec("finite/select", SELECT_WORDS, ["read", "read", "read", "write"], guardSelectKernel);
  const fold = kernelSpec("finite/fold", FOLD_WORDS, ["read", "write"], foldGuardKernel);
  const codeOf = (code: number, who: string) => {
    if (!Number.isInteger(code) || code < 0 || code >= 0xffffffff) {
      throw new RangeError(`${who}: code must be an integer in [0, 2^32 − 1), got ${code}`);
    }
    return code;
  };
  return {
    mark(x: Tensor, guard: Tensor, code: number): void {
      const xb = b.buffer(x, "finite.mark", "x");
      const gb = b.buffer(guard, "finite.mark", "guard");
      const c = codeOf(code, "finite.mark");
      if (x.size === 0) return;
      if (
        pending !== null &&
        (pending.guard !== gb || pending.arrays.length >= maxMarks() ||
          pending.threads + x.size >= MAX_MARK_THREADS)
      ) encodeMarks();
      pending ??= { guard: gb, arrays: [], threads: 0 };
      pending.arrays.push({ x: xb, n: x.size, code: c });
      pending.threads += x.size;
      if (pending.arrays.length >= maxMarks()) encodeMarks();
      else b.encoder.defer(encodeMarks);
    },
    select(guard: Tensor, prev: Tensor, next: Tensor): Tensor {
      if (prev.size !== next.size) {
        throw new RangeError(
          `finite.select: prev has ${prev.size} elements, next has ${next.size}; expected equal sizes`,
        );
      }
      const bufs = [
        b.buffer(guard, "finite.select", "guard"),
        b.buffer(prev, "finite.select", "prev"),
        b.buffer(next, "finite.select", "next"),
      ];
      const out = b.alloc(next.shape, "finite.select");
      if (next.size > 0) {
        b.run(
          sel,
          [next.size],
          [...bufs, (out.storage as GpuStorage).buffer],
          b.grid(Math.ceil(next.size / WG1D)),
        );
      }
      return out;
    },
    fold(step: Tensor, epoch: Tensor, base: number): void {
      if (epoch.size < 2) {
        throw new RangeError(`finite.fold: the epoch guard needs 2 words, got ${epoch.size}`);
      }
      b.run(
        fold,
        [codeOf(base, "finite.fold")],
        [b.buffer(step, "finite.fold", "step"), b.buffer(epoch, "finite.fold", "epoch")],
        [1, 1, 1],
      );
    },
  };
}
