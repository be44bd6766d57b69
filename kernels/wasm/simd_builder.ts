/**
 * A straight-line builder of WebAssembly SIMD code on top of `wasm_emit.ts`'s {@linkcode Fn}, which
 * lacks the 64-bit and most SIMD opcodes: every value lives in a fresh local, so a generator reads
 * like the math it emits (used by the noise kernels, `noise_wasm.ts`).
 *
 * @module
 */
import { type Fn, I32, V128 } from "./wasm_emit.ts";

function uleb(n: number, out: number[]): void {
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
}

function sleb(n: number, out: number[]): void {
  n |= 0;
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return;
    }
    out.push(b | 0x80);
  }
}

/** SIMD sub-opcodes (after the 0xfd prefix). */
const SIMD = {
  "v128.load": 0x00,
  "v128.store": 0x0b,
  "i32x4.splat": 0x11,
  "f32x4.splat": 0x13,
  "i32x4.extract_lane": 0x1b,
  "i32x4.gt_s": 0x3b,
  "f64x2.ge": 0x4c,
  "v128.and": 0x4e,
  "v128.andnot": 0x4f,
  "v128.or": 0x50,
  "v128.xor": 0x51,
  "v128.bitselect": 0x52,
  "f32x4.demote_f64x2_zero": 0x5e,
  "f64x2.floor": 0x75,
  "i32x4.abs": 0xa0,
  "i32x4.shl": 0xab,
  "i32x4.shr_s": 0xac,
  "i32x4.shr_u": 0xad,
  "i32x4.add": 0xae,
  "i32x4.sub": 0xb1,
  "i32x4.mul": 0xb5,
  "i32x4.min_s": 0xb6,
  "i64x2.shr_u": 0xcd,
  "i64x2.extmul_low_i32x4_u": 0xde,
  "i64x2.extmul_high_i32x4_u": 0xdf,
  "f32x4.mul": 0xe6,
  "f64x2.sqrt": 0xef,
  "f64x2.add": 0xf0,
  "f64x2.sub": 0xf1,
  "f64x2.mul": 0xf2,
  "f32x4.convert_i32x4_s": 0xfa,
  "f64x2.convert_low_i32x4_s": 0xfe,
} as const;
/** A SIMD instruction this builder can emit. */
export type SimdOp = keyof typeof SIMD;

/**
 * A straight-line builder over one function: every value lives in a fresh local (the optimizing
 * compiler turns them into SSA values), so the generator reads like the math.
 */
export class Builder {
  readonly b: number[];
  constructor(readonly f: Fn) {
    this.b = f.body;
  }
  local(type = V128): number {
    return this.f.local(type);
  }
  get(l: number): this {
    this.b.push(0x20);
    uleb(l, this.b);
    return this;
  }
  set(l: number): this {
    this.b.push(0x21);
    uleb(l, this.b);
    return this;
  }
  i32(v: number): this {
    this.b.push(0x41);
    sleb(v, this.b);
    return this;
  }
  simd(op: SimdOp): this {
    this.b.push(0xfd);
    uleb(SIMD[op], this.b);
    return this;
  }
  /** Stores the value on the stack in a fresh local. */
  result(): number {
    const r = this.local();
    this.set(r);
    return r;
  }
  /** A binary SIMD operation on two locals. */
  op(op: SimdOp, x: number, y: number): number {
    return this.get(x).get(y).simd(op).result();
  }
  /** A unary SIMD operation. */
  un(op: SimdOp, x: number): number {
    return this.get(x).simd(op).result();
  }
  /** A SIMD shift by a constant. */
  shift(op: "i32x4.shl" | "i32x4.shr_s" | "i32x4.shr_u" | "i64x2.shr_u", x: number, n: number): number {
    return this.get(x).i32(n).simd(op).result();
  }
  /** `mask ? x : y`, bitwise. */
  select(x: number, y: number, mask: number): number {
    return this.get(x).get(y).get(mask).simd("v128.bitselect").result();
  }
  /** A shuffle of 32-bit lanes (4..7 from `y`). */
  shuf32(x: number, y: number, lanes: number[]): number {
    this.get(x).get(y);
    this.b.push(0xfd, 0x0d, ...lanes.flatMap((k) => [4 * k, 4 * k + 1, 4 * k + 2, 4 * k + 3]));
    return this.result();
  }
  /** A shuffle of 64-bit lanes (2, 3 from `y`). */
  shuf64(x: number, y: number, lanes: number[]): number {
    return this.shuf32(x, y, lanes.flatMap((k) => [2 * k, 2 * k + 1]));
  }
  /** A `v128.const` (emit before the loop: constants are kept in locals). */
  bytes(bytes: Uint8Array): number {
    this.b.push(0xfd, 0x0c, ...bytes);
    return this.result();
  }
  i32x4(...v: number[]): number {
    return this.bytes(new Uint8Array(Int32Array.from(v.length === 1 ? [v[0], v[0], v[0], v[0]] : v).buffer));
  }
  i64x2(v: bigint): number {
    return this.bytes(new Uint8Array(BigUint64Array.of(v, v).buffer));
  }
  f64x2(v: number): number {
    return this.bytes(new Uint8Array(Float64Array.of(v, v).buffer));
  }
  /** `v128.load` from `addr` (an i32 local) + `offset`. */
  load(addr: number, offset: number): number {
    this.get(addr).simd("v128.load");
    this.b.push(4);
    uleb(offset, this.b);
    return this.result();
  }
  store(addr: number, v: number, offset: number): void {
    this.get(addr).get(v).simd("v128.store");
    this.b.push(4);
    uleb(offset, this.b);
  }
  /** i32 lane `lane` of `v`. */
  lane(v: number, lane: number): number {
    this.get(v).simd("i32x4.extract_lane");
    this.b.push(lane);
    const r = this.local(I32);
    this.set(r);
    return r;
  }
}
