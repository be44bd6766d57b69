/**
 * Where the convolution kernels get the arrays they return. By default a fresh typed array; a
 * backend may install a provider (the CPU backend hands out recycled arrays of released tensors:
 * on machines where fresh pages fault expensively, a ResNet step otherwise pays for its large
 * outputs' first touch every step). The kernels ask only for arrays they overwrite completely, so a
 * provider need not zero them.
 *
 * @module
 */
import type { TypedArray } from "../../src/types.ts";

/** Returns an array of `n` elements of `like`'s type; its contents may be anything. */
export type OutputProvider = (n: number, float64: boolean) => TypedArray;

let provider: OutputProvider | null = null;

/** Installs `p` (or `null`: fresh arrays); returns the previous provider. */
export function setOutputProvider(p: OutputProvider | null): OutputProvider | null {
  const prev = provider;
  provider = p;
  return prev;
}

/**
 * An array of `n` elements of `like`'s type for a kernel's result that the kernel overwrites
 * completely (not zeroed when a provider is installed).
 */
export function outputArray<T extends Float32Array | Float64Array>(like: T, n: number): T {
  const f64 = like instanceof Float64Array;
  if (provider) {
    const a = provider(n, f64);
    if (a.length !== n || (a instanceof Float64Array) !== f64) {
      throw new Error(
        `outputArray: the provider returned ${a.constructor.name}(${a.length}), asked for ${n}`,
      );
    }
    return a as T;
  }
  return (f64 ? new Float64Array(n) : new Float32Array(n)) as T;
}
