/**
 * The description of one matrix product `C = op(A)·op(B)`, passed as one record through every
 * layer of the GEMM (the public {@linkcode GemmCall}, and the resolved {@linkcode GemmArgs} the
 * implementations receive), built once per product.
 *
 * @module
 */

/** A float32 or float64 array; one call uses one type for all three operands. */
export type GemmArray = Float32Array | Float64Array;

/**
 * One product `C[M×N] = op(A)·op(B)`, row-major: A is M×K (stored K×M when `transA`), B is K×N
 * (stored N×K when `transB`); the operands start at `aOff`, `bOff`, `cOff` of their arrays
 * (default 0).
 */
export interface GemmCall<T extends GemmArray = GemmArray> {
  /** A is stored transposed (K×M). Default false. */
  readonly transA?: boolean;
  /** B is stored transposed (N×K). Default false. */
  readonly transB?: boolean;
  /** Rows of C. */
  readonly M: number;
  /** Columns of C. */
  readonly N: number;
  /** The inner dimension. */
  readonly K: number;
  /** The left operand. */
  readonly a: T;
  /** Where A starts in `a`. Default 0. */
  readonly aOff?: number;
  /** The right operand. */
  readonly b: T;
  /** Where B starts in `b`. Default 0. */
  readonly bOff?: number;
  /** The result (overwritten; must not overlap A or B). */
  readonly c: T;
  /** Where C starts in `c`. Default 0. */
  readonly cOff?: number;
}

/** A {@linkcode GemmCall} with every default filled in: what the implementations receive. */
export type GemmArgs<T extends GemmArray = GemmArray> = Required<GemmCall<T>>;

/** `call` with its defaults filled in (one small record per product). */
export function resolveGemm<T extends GemmArray>(call: GemmCall<T>): GemmArgs<T> {
  return {
    transA: call.transA ?? false,
    transB: call.transB ?? false,
    M: call.M,
    N: call.N,
    K: call.K,
    a: call.a,
    aOff: call.aOff ?? 0,
    b: call.b,
    bOff: call.bOff ?? 0,
    c: call.c,
    cOff: call.cOff ?? 0,
  };
}
