/**
 * The CPU side of the non-finite guard of `fit`: a scan of a typed array for NaN and ±Infinity.
 *
 * @module
 */

/**
 * The index of the first entry of `a` that is NaN, +Infinity or −Infinity, or −1 when every entry is
 * finite. One pass, no allocation: `v − v` is 0 for a finite v and NaN otherwise, so the loop body
 * is one subtraction and one comparison.
 */
export function firstNonFinite(a: ArrayLike<number>): number {
  for (let i = 0; i < a.length; i++) {
    const v = a[i];
    if (v - v !== 0) return i;
  }
  return -1;
}
