/**
 * Generates the WebAssembly SIMD GEMM module: panel packing, an MR×NR register-tiled micro-kernel
 * of f32x4 accumulators inside a macro-kernel, and the cache-blocked drivers that the main thread
 * and the workers call (see `gemm_wasm.ts`).
 *
 * Layouts: a packed A block of `mc` rows and `kc` columns is stored as strips of MR rows, each strip
 * k-major (`[strip][k][MR]`, zero-padded); a packed B block likewise as strips of NR columns
 * (`[strip][k][NR]`). Strides passed to the functions are in elements, pointers in bytes.
 *
 * @module
 */
import { buildModule, F32, Fn, I32, type MemoryImport, V128 } from "./wasm_emit.ts";

/** Tile and block sizes of a generated module. */
export interface GemmTiling {
  /** Micro-tile rows. */
  MR: number;
  /** Micro-tile columns (a multiple of 4). */
  NR: number;
  /** Block depth (K per packed panel). */
  KC: number;
  /** Rows per packed A block (a multiple of MR). */
  MC: number;
  /** Columns per packed B block in `cols` mode (a multiple of NR). */
  NC: number;
  /** Unrolling of the micro-kernel's k loop (a power of two). */
  unroll: number;
  /** Use `f32x4.relaxed_madd` (fused multiply-add) when the engine has relaxed SIMD. */
  fma: boolean;
}

/** Function indices (the order passed to `buildModule`). */
const PACK_A = 0, PACK_B = 1, MACRO = 2;

function packA(t: GemmTiling): Fn {
  const { MR } = t;
  const f = new Fn("packA", [I32, I32, I32, I32, I32, I32]);
  const [src, rs, cs, m, k, dst] = [0, 1, 2, 3, 4, 5];
  const ir = f.local(I32), rows = f.local(I32), base = f.local(I32), kk = f.local(I32);
  const i = f.local(I32), q = f.local(I32), d = f.local(I32), end = f.local(I32);
  const p = Array.from({ length: MR }, () => f.local(I32));
  f.get(rs).i32(2).op("i32.shl").set(rs);
  f.get(cs).i32(2).op("i32.shl").set(cs);
  f.for(ir, 0, { l: m }, MR, () => {
    f.min(MR, () => f.get(m).get(ir).op("i32.sub")).set(rows);
    f.get(src).get(ir).get(rs).op("i32.mul", "i32.add").set(base);
    f.if(() => f.get(rows).i32(MR).op("i32.eq"), () => {
      f.get(base).set(p[0]);
      for (let r = 1; r < MR; r++) f.get(p[r - 1]).get(rs).op("i32.add").set(p[r]);
      f.get(k).set(kk);
      f.doWhile(() => {
        for (let r = 0; r < MR; r++) {
          f.get(dst).get(p[r]).mem("f32.load").mem("f32.store", 4 * r);
          f.addTo(p[r], () => f.get(cs));
        }
        f.addTo(dst, 4 * MR);
      }, () => f.get(kk).i32(1).op("i32.sub").tee(kk));
    }, () => {
      // Edge strip: zero it, then copy the valid rows.
      f.get(dst).get(k).i32(4 * MR).op("i32.mul", "i32.add").set(end);
      f.for(d, { l: dst }, { l: end }, 4, () => f.get(d).f32(0).mem("f32.store"));
      f.for(i, 0, { l: rows }, 1, () => {
        f.get(base).get(i).get(rs).op("i32.mul", "i32.add").set(q);
        f.get(dst).get(i).i32(2).op("i32.shl", "i32.add").set(d);
        f.for(kk, 0, { l: k }, 1, () => {
          f.get(d).get(q).mem("f32.load").mem("f32.store");
          f.addTo(q, () => f.get(cs));
          f.addTo(d, 4 * MR);
        });
      });
      f.get(end).set(dst);
    });
  });
  return f;
}

function packB(t: GemmTiling): Fn {
  const { NR } = t;
  const f = new Fn("packB", [I32, I32, I32, I32, I32, I32]);
  const [src, rs, cs, k, n, dst] = [0, 1, 2, 3, 4, 5];
  const jr = f.local(I32), cols = f.local(I32), base = f.local(I32), kk = f.local(I32);
  const j = f.local(I32), q = f.local(I32), d = f.local(I32), end = f.local(I32);
  const p = Array.from({ length: NR }, () => f.local(I32));
  const contiguous = f.local(I32);
  f.get(cs).i32(1).op("i32.eq").set(contiguous);
  f.get(rs).i32(2).op("i32.shl").set(rs);
  f.get(cs).i32(2).op("i32.shl").set(cs);
  f.for(jr, 0, { l: n }, NR, () => {
    f.min(NR, () => f.get(n).get(jr).op("i32.sub")).set(cols);
    f.get(src).get(jr).get(cs).op("i32.mul", "i32.add").set(base);
    f.get(k).set(kk);
    f.if(() => f.get(cols).i32(NR).op("i32.eq"), () => {
      f.if(() => f.get(contiguous), () => {
        f.get(base).set(q);
        f.doWhile(() => {
          for (let v = 0; v < NR / 4; v++) {
            f.get(dst).get(q).mem("v128.load", 16 * v).mem("v128.store", 16 * v);
          }
          f.addTo(q, () => f.get(rs));
          f.addTo(dst, 4 * NR);
        }, () => f.get(kk).i32(1).op("i32.sub").tee(kk));
      }, () => {
        f.get(base).set(p[0]);
        for (let c = 1; c < NR; c++) f.get(p[c - 1]).get(cs).op("i32.add").set(p[c]);
        f.doWhile(() => {
          for (let c = 0; c < NR; c++) {
            f.get(dst).get(p[c]).mem("f32.load").mem("f32.store", 4 * c);
            f.addTo(p[c], () => f.get(rs));
          }
          f.addTo(dst, 4 * NR);
        }, () => f.get(kk).i32(1).op("i32.sub").tee(kk));
      });
    }, () => {
      f.get(dst).get(k).i32(4 * NR).op("i32.mul", "i32.add").set(end);
      f.for(d, { l: dst }, { l: end }, 4, () => f.get(d).f32(0).mem("f32.store"));
      f.for(j, 0, { l: cols }, 1, () => {
        f.get(base).get(j).get(cs).op("i32.mul", "i32.add").set(q);
        f.get(dst).get(j).i32(2).op("i32.shl", "i32.add").set(d);
        f.for(kk, 0, { l: k }, 1, () => {
          f.get(d).get(q).mem("f32.load").mem("f32.store");
          f.addTo(q, () => f.get(rs));
          f.addTo(d, 4 * NR);
        });
      });
      f.get(end).set(dst);
    });
  });
  return f;
}

/** macro(mc, nc, kc, pA, pB, c, ldc, acc, scratch): C block (+)= packed A block · packed B block. */
function macro(t: GemmTiling): Fn {
  const { MR, NR, fma } = t;
  const NV = NR / 4, U = t.unroll;
  const f = new Fn("macro", [I32, I32, I32, I32, I32, I32, I32, I32, I32]);
  const [mc, nc, kc, pA, pB, c, ldc, acc, scratch] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const jr = f.local(I32), ir = f.local(I32), pa = f.local(I32), pb = f.local(I32), kk = f.local(I32);
  const row = f.local(I32), mr = f.local(I32), nr = f.local(I32), i = f.local(I32), j = f.local(I32);
  const d = f.local(I32), s = f.local(I32), x = f.local(F32);
  const av = f.local(V128);
  const bv = Array.from({ length: NV }, () => f.local(V128));
  const accs = Array.from({ length: MR * NV }, () => f.local(V128));
  f.get(ldc).i32(2).op("i32.shl").set(ldc); // bytes per C row
  f.for(jr, 0, { l: nc }, NR, () => {
    f.for(ir, 0, { l: mc }, MR, () => {
      for (const a of accs) f.v128Zero().set(a);
      f.get(pA).get(ir).get(kc).op("i32.mul").i32(2).op("i32.shl", "i32.add").set(pa);
      f.get(pB).get(jr).get(kc).op("i32.mul").i32(2).op("i32.shl", "i32.add").set(pb);
      // k loop, unrolled U times, then the remainder one step at a time.
      const step = (u: number) => {
        for (let v = 0; v < NV; v++) f.get(pb).mem("v128.load", 16 * (v + NV * u)).set(bv[v]);
        for (let r = 0; r < MR; r++) {
          f.get(pa).mem("v128.load32_splat", 4 * (r + MR * u)).set(av);
          for (let v = 0; v < NV; v++) {
            const x = accs[r * NV + v];
            if (fma) f.get(av).get(bv[v]).get(x).op("f32x4.relaxed_madd").set(x);
            else f.get(x).get(av).get(bv[v]).op("f32x4.mul", "f32x4.add").set(x);
          }
        }
      };
      f.if(() => f.get(kc).i32(U).op("i32.ge_s"), () => {
        f.get(kc).i32(-U).op("i32.and").set(kk);
        f.doWhile(() => {
          for (let u = 0; u < U; u++) step(u);
          f.addTo(pa, 4 * MR * U);
          f.addTo(pb, 4 * NR * U);
        }, () => f.get(kk).i32(U).op("i32.sub").tee(kk));
      });
      f.get(kc).i32(U - 1).op("i32.and").set(kk);
      f.if(() => f.get(kk), () => {
        f.doWhile(() => {
          step(0);
          f.addTo(pa, 4 * MR);
          f.addTo(pb, 4 * NR);
        }, () => f.get(kk).i32(1).op("i32.sub").tee(kk));
      });
      // row = &C[ir, jr]
      f.get(c).get(ir).get(ldc).op("i32.mul", "i32.add").get(jr).i32(2).op("i32.shl", "i32.add").set(row);
      f.if(() => {
        f.get(mc).get(ir).op("i32.sub").i32(MR).op("i32.ge_s");
        f.get(nc).get(jr).op("i32.sub").i32(NR).op("i32.ge_s", "i32.and");
      }, () => {
        f.if(() => f.get(acc), () => {
          for (let r = 0; r < MR; r++) {
            for (let v = 0; v < NV; v++) {
              f.get(row).get(row).mem("v128.load", 16 * v).get(accs[r * NV + v]).op("f32x4.add");
              f.mem("v128.store", 16 * v);
            }
            if (r < MR - 1) f.addTo(row, () => f.get(ldc));
          }
        }, () => {
          for (let r = 0; r < MR; r++) {
            for (let v = 0; v < NV; v++) f.get(row).get(accs[r * NV + v]).mem("v128.store", 16 * v);
            if (r < MR - 1) f.addTo(row, () => f.get(ldc));
          }
        });
      }, () => {
        // Partial tile: spill to scratch, copy the valid part.
        for (let r = 0; r < MR; r++) {
          for (let v = 0; v < NV; v++) {
            f.get(scratch).get(accs[r * NV + v]).mem("v128.store", 16 * (r * NV + v));
          }
        }
        f.min(MR, () => f.get(mc).get(ir).op("i32.sub")).set(mr);
        f.min(NR, () => f.get(nc).get(jr).op("i32.sub")).set(nr);
        f.for(i, 0, { l: mr }, 1, () => {
          f.get(row).get(i).get(ldc).op("i32.mul", "i32.add").set(d);
          f.get(scratch).get(i).i32(4 * NR).op("i32.mul", "i32.add").set(s);
          f.for(j, 0, { l: nr }, 1, () => {
            f.get(s).mem("f32.load").set(x);
            f.if(() => f.get(acc), () => f.get(x).get(d).mem("f32.load").op("f32.add").set(x));
            f.get(d).get(x).mem("f32.store");
            f.addTo(d, 4);
            f.addTo(s, 4);
          });
        });
      });
    });
  });
  return f;
}

/**
 * rows(A, rsA, csA, pB, Npad, C, ldc, N, K, m0, m1, wsA, scratch): rows [m0, m1) of C from A
 * (packed here, block by block, into wsA) and the fully packed B (`packBFull`).
 */
function rows(t: GemmTiling): Fn {
  const { KC, MC } = t;
  const f = new Fn("rows", new Array(13).fill(I32));
  const [A, rsA, csA, pB, Npad, C, ldc, N, K, m0, m1, wsA, scratch] = [
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    12,
  ];
  const pc = f.local(I32), kc = f.local(I32), ic = f.local(I32), mc = f.local(I32);
  f.for(pc, 0, { l: K }, KC, () => {
    f.min(KC, () => f.get(K).get(pc).op("i32.sub")).set(kc);
    f.for(ic, { l: m0 }, { l: m1 }, MC, () => {
      f.min(MC, () => f.get(m1).get(ic).op("i32.sub")).set(mc);
      f.get(A).get(ic).get(rsA).op("i32.mul").get(pc).get(csA).op("i32.mul", "i32.add");
      f.i32(2).op("i32.shl", "i32.add");
      f.get(rsA).get(csA).get(mc).get(kc).get(wsA).call(PACK_A);
      f.get(mc).get(N).get(kc).get(wsA);
      f.get(pB).get(pc).get(Npad).op("i32.mul").i32(2).op("i32.shl", "i32.add");
      f.get(C).get(ic).get(ldc).op("i32.mul").i32(2).op("i32.shl", "i32.add");
      f.get(ldc).get(pc).i32(0).op("i32.gt_s").get(scratch).call(MACRO);
    });
  });
  return f;
}

/**
 * cols(pA, Mpad, B, rsB, csB, C, ldc, M, K, n0, n1, wsB, scratch): columns [n0, n1) of C from the
 * fully packed A (`packAFull`) and B (packed here, block by block, into wsB).
 */
function cols(t: GemmTiling): Fn {
  const { KC, MC, NC } = t;
  const f = new Fn("cols", new Array(13).fill(I32));
  const [pA, Mpad, B, rsB, csB, C, ldc, M, K, n0, n1, wsB, scratch] = [
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    12,
  ];
  const pc = f.local(I32), kc = f.local(I32), jc = f.local(I32), nc = f.local(I32);
  const ic = f.local(I32), mc = f.local(I32);
  f.for(pc, 0, { l: K }, KC, () => {
    f.min(KC, () => f.get(K).get(pc).op("i32.sub")).set(kc);
    f.for(jc, { l: n0 }, { l: n1 }, NC, () => {
      f.min(NC, () => f.get(n1).get(jc).op("i32.sub")).set(nc);
      f.get(B).get(pc).get(rsB).op("i32.mul").get(jc).get(csB).op("i32.mul", "i32.add");
      f.i32(2).op("i32.shl", "i32.add");
      f.get(rsB).get(csB).get(kc).get(nc).get(wsB).call(PACK_B);
      f.for(ic, 0, { l: M }, MC, () => {
        f.min(MC, () => f.get(M).get(ic).op("i32.sub")).set(mc);
        f.get(mc).get(nc).get(kc);
        f.get(pA).get(pc).get(Mpad).op("i32.mul").get(ic).get(kc).op("i32.mul", "i32.add");
        f.i32(2).op("i32.shl", "i32.add");
        f.get(wsB);
        f.get(C).get(ic).get(ldc).op("i32.mul").get(jc).op("i32.add").i32(2).op("i32.shl", "i32.add");
        f.get(ldc).get(pc).i32(0).op("i32.gt_s").get(scratch).call(MACRO);
      });
    });
  });
  return f;
}

/** packAFull(A, rsA, csA, M, Mpad, K, dst): all of op(A), block after block of KC columns. */
function packAFull(t: GemmTiling): Fn {
  const f = new Fn("packAFull", new Array(7).fill(I32));
  const [A, rsA, csA, M, Mpad, K, dst] = [0, 1, 2, 3, 4, 5, 6];
  const pc = f.local(I32), kc = f.local(I32);
  f.for(pc, 0, { l: K }, t.KC, () => {
    f.min(t.KC, () => f.get(K).get(pc).op("i32.sub")).set(kc);
    f.get(A).get(pc).get(csA).op("i32.mul").i32(2).op("i32.shl", "i32.add");
    f.get(rsA).get(csA).get(M).get(kc);
    f.get(dst).get(pc).get(Mpad).op("i32.mul").i32(2).op("i32.shl", "i32.add").call(PACK_A);
  });
  return f;
}

/** packBFull(B, rsB, csB, K, N, Npad, dst): all of op(B), block after block of KC rows. */
function packBFull(t: GemmTiling): Fn {
  const f = new Fn("packBFull", new Array(7).fill(I32));
  const [B, rsB, csB, K, N, Npad, dst] = [0, 1, 2, 3, 4, 5, 6];
  const pc = f.local(I32), kc = f.local(I32);
  f.for(pc, 0, { l: K }, t.KC, () => {
    f.min(t.KC, () => f.get(K).get(pc).op("i32.sub")).set(kc);
    f.get(B).get(pc).get(rsB).op("i32.mul").i32(2).op("i32.shl", "i32.add");
    f.get(rsB).get(csB).get(kc).get(N);
    f.get(dst).get(pc).get(Npad).op("i32.mul").i32(2).op("i32.shl", "i32.add").call(PACK_B);
  });
  return f;
}

/** The bytes of a GEMM module with tiling `t`, importing memory `mem` as `env.mem`. */
export function gemmModuleBytes(t: GemmTiling, mem: MemoryImport): Uint8Array {
  if (t.NR % 4 !== 0 || (t.unroll & (t.unroll - 1)) !== 0 || t.MC % t.MR !== 0 || t.NC % t.NR !== 0) {
    throw new Error(
      `gemmModuleBytes: bad tiling ${
        JSON.stringify(t)
      }: NR % 4, MC % MR, NC % NR must be 0, unroll a power of two`,
    );
  }
  return buildModule(mem, [packA(t), packB(t), macro(t), rows(t), cols(t), packAFull(t), packBFull(t)]);
}

/** Exports of an instantiated GEMM module (pointers in bytes, strides in elements). */
export interface GemmExports {
  /** Packs an m×k block of op(A) (element (i,k) at src + 4(i·rs + k·cs)) into MR strips. */
  packA(src: number, rs: number, cs: number, m: number, k: number, dst: number): void;
  /** Packs a k×n block of op(B) into NR strips. */
  packB(src: number, rs: number, cs: number, k: number, n: number, dst: number): void;
  /** C block (+)= packed A · packed B. */
  macro(
    mc: number,
    nc: number,
    kc: number,
    pA: number,
    pB: number,
    c: number,
    ldc: number,
    acc: number,
    scratch: number,
  ): void;
  /** Rows [m0, m1) of C against the fully packed B. */
  rows(
    A: number,
    rsA: number,
    csA: number,
    pB: number,
    Npad: number,
    C: number,
    ldc: number,
    N: number,
    K: number,
    m0: number,
    m1: number,
    wsA: number,
    scratch: number,
  ): void;
  /** Columns [n0, n1) of C against the fully packed A. */
  cols(
    pA: number,
    Mpad: number,
    B: number,
    rsB: number,
    csB: number,
    C: number,
    ldc: number,
    M: number,
    K: number,
    n0: number,
    n1: number,
    wsB: number,
    scratch: number,
  ): void;
  /** Packs all of op(A) (M×K) for `cols`. */
  packAFull(A: number, rsA: number, csA: number, M: number, Mpad: number, K: number, dst: number): void;
  /** Packs all of op(B) (K×N) for `rows`. */
  packBFull(B: number, rsB: number, csB: number, K: number, N: number, Npad: number, dst: number): void;
}
