/**
 * Host-side index arithmetic for the strided kernels: broadcast strides and dimension coalescing
 * (fewer dims means less index math per element on the GPU).
 *
 * @module
 */
import { stridesOf } from "../tensor.ts";

/** Strides of `shape` broadcast (right-aligned) to `outShape`: 0 along broadcast dims. */
export function broadcastStrides(shape: readonly number[], outShape: readonly number[]): number[] {
  const own = stridesOf(shape);
  const off = outShape.length - shape.length;
  return outShape.map((_, i) => (i < off || shape[i - off] === 1 ? 0 : own[i - off]));
}

/**
 * Drops size-1 dims and merges neighbours along which every stride list is contiguous
 * (`strides[k][d] == strides[k][d + 1] · shape[d + 1]`). Returns at least one dim.
 */
export function coalesce(
  shape: readonly number[],
  strides: readonly (readonly number[])[],
): { shape: number[]; strides: number[][] } {
  const outShape: number[] = [];
  const outStrides: number[][] = strides.map(() => []);
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d] === 1) continue;
    const last = outShape.length - 1;
    if (last >= 0 && strides.every((s, k) => s[d] === outStrides[k][0] * outShape[0])) {
      outShape[0] *= shape[d];
      continue;
    }
    outShape.unshift(shape[d]);
    strides.forEach((s, k) => outStrides[k].unshift(s[d]));
  }
  if (outShape.length === 0) return { shape: [1], strides: strides.map(() => [0]) };
  return { shape: outShape, strides: outStrides };
}
