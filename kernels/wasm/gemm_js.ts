/**
 * Plain-JavaScript matrix products: the float64 path (gradient checks) and the float32 fallback
 * where WebAssembly SIMD is unavailable. Loop orders keep the innermost loop contiguous; nothing is
 * allocated per element.
 *
 * @module
 */

import type { GemmArgs } from "./gemm_call.ts";

/**
 * C[M×N] = op(A)·op(B) in plain JavaScript (overwrites C). Row-major; A is M×K (stored K×M when
 * `transA`), B is K×N (stored N×K when `transB`). Arguments are not checked (see `gemm`).
 */
export function gemmJs(g: GemmArgs): void {
  const { transA, transB, M, N, K, a, aOff, b, bOff, c, cOff } = g;
  if (!transB) {
    // i-k-j: for each row of C, add a[i,k]·(row k of B). A is read at a[i,k] (row-major) or a[k,i].
    const aRowStride = transA ? 1 : K;
    const aColStride = transA ? M : 1;
    for (let i = 0; i < M; i++) {
      const ci = cOff + i * N;
      c.fill(0, ci, ci + N);
      const ai = aOff + i * aRowStride;
      for (let k = 0; k < K; k++) {
        const aik = a[ai + k * aColStride];
        const bk = bOff + k * N;
        for (let j = 0; j < N; j++) c[ci + j] += aik * b[bk + j];
      }
    }
  } else if (!transA) {
    // NT: C[i,j] = dot(row i of A, row j of B), both contiguous.
    for (let i = 0; i < M; i++) {
      const ai = aOff + i * K;
      const ci = cOff + i * N;
      for (let j = 0; j < N; j++) {
        const bj = bOff + j * K;
        let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        let k = 0;
        for (; k + 3 < K; k += 4) {
          s0 += a[ai + k] * b[bj + k];
          s1 += a[ai + k + 1] * b[bj + k + 1];
          s2 += a[ai + k + 2] * b[bj + k + 2];
          s3 += a[ai + k + 3] * b[bj + k + 3];
        }
        for (; k < K; k++) s0 += a[ai + k] * b[bj + k];
        c[ci + j] = (s0 + s1) + (s2 + s3);
      }
    }
  } else {
    // TT (rare): C[i,j] = Σ_k A[k,i]·B[j,k].
    for (let i = 0; i < M; i++) {
      const ci = cOff + i * N;
      for (let j = 0; j < N; j++) {
        const bj = bOff + j * K;
        let s = 0;
        for (let k = 0; k < K; k++) s += a[aOff + k * M + i] * b[bj + k];
        c[ci + j] = s;
      }
    }
  }
}
