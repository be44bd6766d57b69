/**
 * The WebGPU non-finite guard kernels (`FiniteKernels` of `src/backend.ts`): one dispatch per
 * checked array (`mark`), per selected array (`select`) and per step (`fold`), WGSL in
 * `kernels/wgsl/finite.ts`. Nothing here waits on the GPU: `fit` reads the epoch's guard back with
 * the epoch's loss.
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

/** The guard kernels of `b`. */
export function webgpuFiniteKernels(b: WebGPUBackend): FiniteKernels {
  const mark = kernelSpec("finite/mark", MARK_WORDS, ["read", "write"], markNonFiniteKernel);
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
      if (x.size === 0) return;
      b.run(mark, [x.size, codeOf(code, "finite.mark")], [xb, gb], b.grid(Math.ceil(x.size / WG1D)));
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
