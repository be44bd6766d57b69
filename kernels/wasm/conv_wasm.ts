/**
 * float32 stride-1 convolution (and 2×2 max pooling) in WebAssembly SIMD, without an unfolded
 * column matrix.
 *
 * Each image is staged zero-padded as `[C, Hp, Wp]` (`Hp = H + 2ph`, `Wp = W + 2pw`) in the
 * module's own linear memory. On the "wide" output grid `Ho × Wp` (the last `Wp − Wo` columns of
 * each row are computed and discarded), the column-matrix row of tap `(c, ky, kx)` is the contiguous
 * slice of the staged image at `c·Hp·Wp + ky·Wp + kx`, so the kernels read it in place:
 *
 * - `mm` (forward; grad input): register tiles of 6 rows × 8 columns,
 *   `out[m, j] = Σ_k w[m, k] · src[off[k] + j]`, weights packed as strips of 6 rows. Forward: `W · cols`
 *   on the staged input. Grad input: `Wᵀ · gy` on the widened gy (zero in the discarded columns),
 *   then `fold` gathers the kh·kw shifted column rows of each input position (col2im as a gather).
 * - `gw2`/`gw1` (grad weight): dot products along the output positions, 2 (or 1) output channels ×
 *   5 taps of 4-lane accumulators, `gw[o, r] += Σ_j gy[o, j] · src[off[r] + j]`, image by image.
 *
 * Everything is float32 with float32 accumulation, like the GEMM path. The engine is single
 * threaded; its memory grows as needed and is kept (a few MiB for LeNet-sized layers; large
 * batches are processed in groups of images, see `setWasmConvGroupBudget`).
 *
 * @module
 */
import { hasRelaxedSimd, hasWasmSimd } from "./gemm_wasm.ts";
import { buildModule, Fn, I32, V128 } from "./wasm_emit.ts";
import type { ConvDims } from "./conv.ts";

/** Weight rows × output columns of one `mm` register tile (15 of the 16 vector registers). */
const MR = 6, NR = 8;
/** Unrolling of the `mm` k loop (a power of two; 2 measured ~10% faster than 1, 4 and 8 no better). */
const MM_UNROLL = 2;
/** Output channels × taps of one `gw2` block. */
const GW_TAPS = 5;
const PAGE = 65536;

/** Geometry of a stride-1 convolution: {@linkcode ConvDims} without the strides, plus the output size. */
export interface WideConv extends Omit<ConvDims, "sh" | "sw"> {
  /** Output height. */
  Ho: number;
  /** Output width. */
  Wo: number;
}

function emitFma(f: Fn, a: number, b: number, acc: number): void {
  if (hasRelaxedSimd) f.get(a).get(b).get(acc).op("f32x4.relaxed_madd").set(acc);
  else f.get(acc).get(a).get(b).op("f32x4.mul", "f32x4.add").set(acc);
}

/** zero(ptr, bytes): zeroes `bytes` (a multiple of 16) from `ptr`. */
function zeroFn(): Fn {
  const f = new Fn("zero", [I32, I32]);
  const [ptr, n] = [0, 1];
  const p = f.local(I32), end = f.local(I32);
  f.get(ptr).get(n).op("i32.add").set(end);
  f.for(p, { l: ptr }, { l: end }, 16, () => f.get(p).v128Zero().mem("v128.store"));
  return f;
}

/**
 * copyPlanes(src, sRow, sPlane, dst, dRow, dPlane, planes, rows, len): copies `planes × rows` runs
 * of `len` elements (strides in elements).
 */
function copyPlanesFn(): Fn {
  const f = new Fn("copyPlanes", new Array(9).fill(I32));
  const [src, sRow, sPlane, dst, dRow, dPlane, planes, rows, len] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const pl = f.local(I32), r = f.local(I32), q = f.local(I32), s = f.local(I32), d = f.local(I32);
  const vb = f.local(I32), tb = f.local(I32);
  for (const l of [sRow, sPlane, dRow, dPlane]) f.get(l).i32(2).op("i32.shl").set(l);
  f.get(len).i32(2).op("i32.shl").set(tb);
  f.get(tb).i32(-16).op("i32.and").set(vb);
  f.for(pl, 0, { l: planes }, 1, () => {
    f.get(src).get(pl).get(sPlane).op("i32.mul", "i32.add").set(s);
    f.get(dst).get(pl).get(dPlane).op("i32.mul", "i32.add").set(d);
    f.for(r, 0, { l: rows }, 1, () => {
      f.for(q, 0, { l: vb }, 16, () => {
        f.get(d).get(q).op("i32.add");
        f.get(s).get(q).op("i32.add").mem("v128.load").mem("v128.store");
      });
      f.for(q, { l: vb }, { l: tb }, 4, () => {
        f.get(d).get(q).op("i32.add");
        f.get(s).get(q).op("i32.add").mem("f32.load").mem("f32.store");
      });
      f.addTo(s, () => f.get(sRow));
      f.addTo(d, () => f.get(dRow));
    });
  });
  return f;
}

/**
 * mm(src, offIn, K, wp, strips, jTab, tiles, out, ldo): for each strip `s` of 6 weight rows and each
 * tile of 8 columns starting at byte offset `jTab[t]`, stores `Σ_k wp[s][k][m] · src[offIn[k] + j]`
 * as rows `6s + m` of `out` (row stride `ldo` elements). `offIn` holds byte offsets (int32). Tiles
 * may overlap (a column's value depends on its index only).
 */
function mmFn(): Fn {
  const NV = NR / 4;
  const f = new Fn("mm", new Array(9).fill(I32));
  const [src, offIn, K, wp, strips, jTab, tiles, out, ldo] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const s = f.local(I32), t = f.local(I32), j = f.local(I32), pa = f.local(I32), po = f.local(I32);
  const kk = f.local(I32), sj = f.local(I32), b = f.local(I32), wps = f.local(I32), row = f.local(I32);
  const av = f.local(V128);
  const bv = Array.from({ length: NV }, () => f.local(V128));
  const acc = Array.from({ length: NV * MR }, () => f.local(V128));
  f.get(ldo).i32(2).op("i32.shl").set(ldo);
  f.for(s, 0, { l: strips }, 1, () => {
    f.get(wp).get(s).get(K).op("i32.mul").i32(4 * MR).op("i32.mul", "i32.add").set(wps);
    f.for(t, 0, { l: tiles }, 1, () => {
      f.get(jTab).get(t).i32(2).op("i32.shl", "i32.add").mem("i32.load").set(j);
      for (const a of acc) f.v128Zero().set(a);
      f.get(wps).set(pa);
      f.get(offIn).set(po);
      f.get(src).get(j).op("i32.add").set(sj);
      // K mod U single k steps, then U per iteration.
      const kStep = (u: number) => {
        f.get(sj).get(po).mem("i32.load", 4 * u).op("i32.add").set(b);
        for (let v = 0; v < NV; v++) f.get(b).mem("v128.load", 16 * v).set(bv[v]);
        for (let r = 0; r < MR; r++) {
          f.get(pa).mem("v128.load32_splat", 4 * (MR * u + r)).set(av);
          for (let v = 0; v < NV; v++) emitFma(f, av, bv[v], acc[NV * r + v]);
        }
      };
      f.get(K).i32(MM_UNROLL - 1).op("i32.and").set(kk);
      f.if(() => f.get(kk), () => {
        f.doWhile(() => {
          kStep(0);
          f.addTo(pa, 4 * MR);
          f.addTo(po, 4);
        }, () => f.get(kk).i32(1).op("i32.sub").tee(kk));
      });
      f.get(K).i32(Math.log2(MM_UNROLL));
      f.body.push(0x76); // i32.shr_u
      f.set(kk);
      f.if(() => f.get(kk), () => {
        f.doWhile(() => {
          for (let u = 0; u < MM_UNROLL; u++) kStep(u);
          f.addTo(pa, 4 * MR * MM_UNROLL);
          f.addTo(po, 4 * MM_UNROLL);
        }, () => f.get(kk).i32(1).op("i32.sub").tee(kk));
      });
      f.get(out).get(s).i32(MR).op("i32.mul").get(ldo).op("i32.mul", "i32.add").get(j).op("i32.add").set(row);
      for (let r = 0; r < MR; r++) {
        for (let v = 0; v < NV; v++) f.get(row).get(acc[NV * r + v]).mem("v128.store", 16 * v);
        if (r < MR - 1) f.addTo(row, () => f.get(ldo));
      }
    });
  });
  return f;
}

/**
 * fold(cols, taps, tapOff, planes, tapsPerPlane, rows, vecs, srcRow, dstRow, dst, dstPlane): col2im
 * as a gather. For each plane `c`, row `y < rows` and 8 columns `x = 8v`, writes
 * `dst[c·dstPlane + y·dstRow + x .. +8] = Σ_t cols[c·tapsPerPlane + tapOff[t] + y·srcRow + x .. +8]`
 * (byte offsets in `tapOff`, every other stride in elements). Runs in increasing order, so a group
 * running past the end of its row is overwritten by the next row.
 */
function foldFn(): Fn {
  const f = new Fn("fold", new Array(11).fill(I32));
  const [cols, taps, tapOff, planes, tapsPerPlane, rows, vecs, srcRow, dstRow, dst, dstPlane] = [
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
  ];
  const c = f.local(I32), y = f.local(I32), v = f.local(I32), t = f.local(I32), base = f.local(I32);
  const d = f.local(I32), p = f.local(I32), a0 = f.local(V128), a1 = f.local(V128);
  for (const l of [tapsPerPlane, srcRow, dstRow, dstPlane]) f.get(l).i32(2).op("i32.shl").set(l);
  f.for(c, 0, { l: planes }, 1, () => {
    f.for(y, 0, { l: rows }, 1, () => {
      f.for(v, 0, { l: vecs }, 1, () => {
        // base = cols + c·tapsPerPlane + y·srcRow + 32v; d = dst + c·dstPlane + y·dstRow + 32v
        f.get(cols).get(c).get(tapsPerPlane).op("i32.mul", "i32.add").get(y).get(srcRow).op(
          "i32.mul",
          "i32.add",
        );
        f.get(v).i32(5).op("i32.shl", "i32.add").set(base);
        f.get(dst).get(c).get(dstPlane).op("i32.mul", "i32.add").get(y).get(dstRow).op("i32.mul", "i32.add");
        f.get(v).i32(5).op("i32.shl", "i32.add").set(d);
        f.v128Zero().set(a0);
        f.v128Zero().set(a1);
        f.for(t, 0, { l: taps }, 1, () => {
          f.get(base).get(tapOff).get(t).i32(2).op("i32.shl", "i32.add").mem("i32.load").op("i32.add").set(p);
          f.get(a0).get(p).mem("v128.load").op("f32x4.add").set(a0);
          f.get(a1).get(p).mem("v128.load", 16).op("f32x4.add").set(a1);
        });
        f.get(d).get(a0).mem("v128.store");
        f.get(d).get(a1).mem("v128.store", 16);
      });
    });
  });
  return f;
}

/** Appends a SIMD instruction (0xfd prefix, LEB128 sub-opcode, then immediates). */
function simd(f: Fn, sub: number, ...imm: number[]): void {
  f.body.push(0xfd);
  if (sub < 0x80) f.body.push(sub);
  else f.body.push((sub & 0x7f) | 0x80, sub >> 7);
  f.body.push(...imm);
}
const F32X4_EQ = 0x41, F32X4_GT = 0x44, V128_AND = 0x4e, V128_BITSELECT = 0x52, I32X4_EQ = 0x37;
const I32X4_ADD = 0xae, F32X4_CONVERT_I32X4_S = 0xfa, I32X4_TRUNC_SAT_F32X4_S = 0xf8;

/** Pushes a v128 constant of four int32 (or float32 bit patterns). */
function v128Const(f: Fn, lanes: number[]): void {
  const b = new Uint8Array(new Int32Array(lanes).buffer);
  simd(f, 0x0c, ...b);
}

/** i8x16.shuffle of two f32x4 by float lanes (0–3 first operand, 4–7 second). */
function shuffle32(f: Fn, lanes: number[]): void {
  const bytes: number[] = [];
  for (const l of lanes) for (let i = 0; i < 4; i++) bytes.push(4 * l + i);
  simd(f, 0x0d, ...bytes);
}

/**
 * pool2(x, planes, h, w, ho, wo, groups, y, am): 2×2 stride-2 max pooling, 4 windows per step
 * (`groups` = ⌈wo/4⌉ per output row; a group past the row's end computes garbage that the next row
 * overwrites, so the outputs and the input need 4 and 8 spare elements at the end). The maximum is
 * the first window element not smaller than the others, NaN never winning (`-Infinity` and offset 0
 * when all are NaN) — the generic scan's result; `am` gets the offset `ky·2 + kx` as float32.
 */
function poolFn(): Fn {
  const f = new Fn("pool2", new Array(9).fill(I32));
  const [x, planes, h, w, ho, wo, groups, y, am] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const p = f.local(I32), oy = f.local(I32), gI = f.local(I32), top = f.local(I32), bot = f.local(I32);
  const dst = f.local(I32), dk = f.local(I32);
  const [t0, t1, a, b, c, d, m, tv, ti, bv, bi] = Array.from({ length: 11 }, () => f.local(V128));
  const ninf = f.local(V128), one = f.local(V128), two = f.local(V128);
  v128Const(f, [0xff800000 | 0, 0xff800000 | 0, 0xff800000 | 0, 0xff800000 | 0]);
  f.set(ninf);
  v128Const(f, [1, 1, 1, 1]);
  f.set(one);
  v128Const(f, [2, 2, 2, 2]);
  f.set(two);
  /** v = v == v ? v : -Infinity */
  const noNaN = (v: number) => {
    f.get(v).get(ninf).get(v).get(v);
    simd(f, F32X4_EQ);
    simd(f, V128_BITSELECT);
    f.set(v);
  };
  f.for(p, 0, { l: planes }, 1, () => {
    f.for(oy, 0, { l: ho }, 1, () => {
      // top = x + 4(p·h·w + 2·oy·w); bot = top + 4w; dst = y + 4(p·ho·wo + oy·wo)
      f.get(x).get(p).get(h).op("i32.mul").get(oy).i32(2).op("i32.mul", "i32.add").get(w).op("i32.mul");
      f.i32(2).op("i32.shl", "i32.add").set(top);
      f.get(top).get(w).i32(2).op("i32.shl", "i32.add").set(bot);
      f.get(p).get(ho).op("i32.mul").get(oy).op("i32.add").get(wo).op("i32.mul").i32(2).op("i32.shl").set(
        dst,
      );
      f.get(am).get(dst).op("i32.add").set(dk);
      f.get(y).get(dst).op("i32.add").set(dst);
      f.for(gI, 0, { l: groups }, 1, () => {
        for (const [row, e, o] of [[top, a, b], [bot, c, d]]) {
          f.get(row).mem("v128.load").set(t0);
          f.get(row).mem("v128.load", 16).set(t1);
          f.get(t0).get(t1);
          shuffle32(f, [0, 2, 4, 6]);
          f.set(e);
          f.get(t0).get(t1);
          shuffle32(f, [1, 3, 5, 7]);
          f.set(o);
          noNaN(e);
          noNaN(o);
        }
        // Top pair: m = b > a; tv = m ? b : a; ti = m & 1.
        f.get(b).get(a);
        simd(f, F32X4_GT);
        f.set(m);
        f.get(b).get(a).get(m);
        simd(f, V128_BITSELECT);
        f.set(tv);
        f.get(m).get(one);
        simd(f, V128_AND);
        f.set(ti);
        // Bottom pair: bi = (d > c) & 1 + 2.
        f.get(d).get(c);
        simd(f, F32X4_GT);
        f.set(m);
        f.get(d).get(c).get(m);
        simd(f, V128_BITSELECT);
        f.set(bv);
        f.get(m).get(one);
        simd(f, V128_AND);
        f.get(two);
        simd(f, I32X4_ADD);
        f.set(bi);
        // Bottom beats top only when strictly greater (the top comes first in the scan).
        f.get(bv).get(tv);
        simd(f, F32X4_GT);
        f.set(m);
        f.get(dst).get(bv).get(tv).get(m);
        simd(f, V128_BITSELECT);
        f.mem("v128.store");
        f.get(dk).get(bi).get(ti).get(m);
        simd(f, V128_BITSELECT);
        simd(f, F32X4_CONVERT_I32X4_S);
        f.mem("v128.store");
        f.addTo(top, 32);
        f.addTo(bot, 32);
        f.addTo(dst, 16);
        f.addTo(dk, 16);
      });
    });
  });
  return f;
}

/**
 * pool2Grad(gy, am, planes, h, w, ho, wo, groups, gx): the gradient of `pool2` into a zeroed `gx`:
 * each window's gradient to its argmax, the other three get zero. `groups` = ⌊wo/4⌋ runs of 4
 * windows per row, then the rest one by one.
 */
function poolGradFn(): Fn {
  const f = new Fn("pool2Grad", new Array(9).fill(I32));
  const [gy, am, planes, h, w, ho, wo, groups, gx] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const p = f.local(I32), oy = f.local(I32), gI = f.local(I32), top = f.local(I32), bot = f.local(I32);
  const src = f.local(I32), sk = f.local(I32), ox = f.local(I32), k = f.local(I32);
  const [g, kv, e0, e1, e2, e3] = Array.from({ length: 6 }, () => f.local(V128));
  f.for(p, 0, { l: planes }, 1, () => {
    f.for(oy, 0, { l: ho }, 1, () => {
      f.get(gx).get(p).get(h).op("i32.mul").get(oy).i32(2).op("i32.mul", "i32.add").get(w).op("i32.mul");
      f.i32(2).op("i32.shl", "i32.add").set(top);
      f.get(top).get(w).i32(2).op("i32.shl", "i32.add").set(bot);
      f.get(p).get(ho).op("i32.mul").get(oy).op("i32.add").get(wo).op("i32.mul").i32(2).op("i32.shl").set(
        src,
      );
      f.get(am).get(src).op("i32.add").set(sk);
      f.get(gy).get(src).op("i32.add").set(src);
      f.for(gI, 0, { l: groups }, 1, () => {
        f.get(src).mem("v128.load").set(g);
        f.get(sk).mem("v128.load");
        simd(f, I32X4_TRUNC_SAT_F32X4_S);
        f.set(kv);
        for (const [e, kk] of [[e0, 0], [e1, 1], [e2, 2], [e3, 3]]) {
          f.get(g).get(kv);
          v128Const(f, [kk, kk, kk, kk]);
          simd(f, I32X4_EQ);
          simd(f, V128_AND);
          f.set(e);
        }
        for (const [row, l, r] of [[top, e0, e1], [bot, e2, e3]]) {
          f.get(row).get(l).get(r);
          shuffle32(f, [0, 4, 1, 5]);
          f.mem("v128.store");
          f.get(row).get(l).get(r);
          shuffle32(f, [2, 6, 3, 7]);
          f.mem("v128.store", 16);
        }
        f.addTo(top, 32);
        f.addTo(bot, 32);
        f.addTo(src, 16);
        f.addTo(sk, 16);
      });
      // The windows left over: gx[top + 4((k >> 1)·w + (k & 1))] = g.
      f.get(groups).i32(2).op("i32.shl").set(ox);
      f.for(ox, { l: ox }, { l: wo }, 1, () => {
        f.get(sk).mem("f32.load");
        f.body.push(0xa8); // i32.trunc_f32_s
        f.set(k);
        f.get(top).get(k).i32(1).op("i32.and").i32(2).op("i32.shl", "i32.add");
        f.get(k).i32(2).op("i32.and", "i32.eqz", "i32.eqz").get(w).op("i32.mul").i32(2).op(
          "i32.shl",
          "i32.add",
        );
        f.get(src).mem("f32.load").mem("f32.store");
        f.addTo(top, 8);
        f.addTo(src, 4);
        f.addTo(sk, 4);
      });
    });
  });
  return f;
}

/** Pushes the sum of the four lanes of `v` (an f32). */
function hsum(f: Fn, v: number): void {
  for (let lane = 0; lane < 4; lane++) {
    f.get(v);
    f.body.push(0xfd, 0x1f, lane); // f32x4.extract_lane
    if (lane > 0) f.op("f32.add");
  }
}

/**
 * gw{MO}(gy, S, xp, offTab, o0, o1, blocks, qEnd, acc, ldAcc): for output channels `o0 .. o1` in
 * steps of MO and blocks of 5 taps (byte offsets `offTab[5b + t]` into `xp`),
 * `acc[o, 5b + t] += Σ_{q < qEnd} gy[o·S + q] · xp[off + q]` (`qEnd` in elements, a multiple of 4).
 * (Skipping the discarded columns row by row measured slower: the extra loop costs more than the
 * products it saves.)
 */
function gwFn(MO: number): Fn {
  const f = new Fn(`gw${MO}`, new Array(10).fill(I32));
  const [gy, S, xp, offTab, o0, o1, blocks, qEnd, accOut, ldAcc] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const o = f.local(I32), blk = f.local(I32), q = f.local(I32), gp = f.local(I32), p = f.local(I32);
  const xs = Array.from({ length: GW_TAPS }, () => f.local(I32));
  const g = Array.from({ length: MO }, () => f.local(V128));
  const xv = f.local(V128);
  const acc = Array.from({ length: MO * GW_TAPS }, () => f.local(V128));
  f.get(S).i32(2).op("i32.shl").set(S);
  f.get(ldAcc).i32(2).op("i32.shl").set(ldAcc);
  f.get(qEnd).i32(2).op("i32.shl").set(qEnd);
  f.for(o, { l: o0 }, { l: o1 }, MO, () => {
    f.get(gy).get(o).get(S).op("i32.mul", "i32.add").set(gp);
    f.for(blk, 0, { l: blocks }, 1, () => {
      for (let t = 0; t < GW_TAPS; t++) {
        f.get(xp).get(offTab).get(blk).i32(4 * GW_TAPS).op("i32.mul", "i32.add").mem("i32.load", 4 * t);
        f.op("i32.add").set(xs[t]);
      }
      for (const a of acc) f.v128Zero().set(a);
      f.for(q, 0, { l: qEnd }, 16, () => {
        for (let m = 0; m < MO; m++) {
          f.get(gp).get(q).op("i32.add");
          if (m > 0) f.get(S).i32(m).op("i32.mul", "i32.add");
          f.mem("v128.load").set(g[m]);
        }
        for (let t = 0; t < GW_TAPS; t++) {
          f.get(xs[t]).get(q).op("i32.add").mem("v128.load").set(xv);
          for (let m = 0; m < MO; m++) emitFma(f, g[m], xv, acc[m * GW_TAPS + t]);
        }
      });
      for (let m = 0; m < MO; m++) {
        for (let t = 0; t < GW_TAPS; t++) {
          // p = &acc[o + m, 5·blk + t]
          f.get(accOut).get(o).i32(m).op("i32.add").get(ldAcc).op("i32.mul", "i32.add");
          f.get(blk).i32(4 * GW_TAPS).op("i32.mul", "i32.add").i32(4 * t).op("i32.add").set(p);
          f.get(p).get(p).mem("f32.load");
          hsum(f, acc[m * GW_TAPS + t]);
          f.op("f32.add").mem("f32.store");
        }
      }
    });
  });
  return f;
}

type MMFn = (
  src: number,
  offIn: number,
  K: number,
  wp: number,
  strips: number,
  jTab: number,
  tiles: number,
  out: number,
  ldo: number,
) => void;

type GwFn = (
  gy: number,
  S: number,
  xp: number,
  offTab: number,
  o0: number,
  o1: number,
  blocks: number,
  qEnd: number,
  acc: number,
  ldAcc: number,
) => void;

interface ConvExports {
  zero(ptr: number, bytes: number): void;
  copyPlanes(
    src: number,
    sRow: number,
    sPlane: number,
    dst: number,
    dRow: number,
    dPlane: number,
    planes: number,
    rows: number,
    len: number,
  ): void;
  mm: MMFn;
  fold(
    cols: number,
    taps: number,
    tapOff: number,
    planes: number,
    tapsPerPlane: number,
    rows: number,
    vecs: number,
    srcRow: number,
    dstRow: number,
    dst: number,
    dstPlane: number,
  ): void;
  gw2: GwFn;
  gw1: GwFn;
  pool2(
    x: number,
    planes: number,
    h: number,
    w: number,
    ho: number,
    wo: number,
    groups: number,
    y: number,
    am: number,
  ): void;
  pool2Grad(
    gy: number,
    am: number,
    planes: number,
    h: number,
    w: number,
    ho: number,
    wo: number,
    groups: number,
    gx: number,
  ): void;
}

const ceilTo = (n: number, m: number): number => Math.ceil(n / m) * m;
/** Bytes of `n` float32/int32, rounded up to 64 (keeps every region 16-byte aligned). */
const bytesOf = (n: number): number => ceilTo(4 * n, 64);

/**
 * How `mm` covers the wide output columns of one image: the tiles' first columns (bytes), either back
 * to back over `[0, L)` or row by row over the `Wo` valid columns of each output row, whichever
 * computes fewer columns. (A 4×12 tile, which wastes fewer rows for 16 channels, spills registers
 * and measured slower.)
 */
interface MMPlan {
  strips: number;
  tiles: Int32Array;
  /** One past the last column any tile writes. */
  end: number;
}

function planMM(M: number, g: WideConv, L: number, Wp: number): MMPlan {
  const perRow = Math.ceil(g.Wo / NR), byRow = g.Ho * perRow < Math.ceil(L / NR);
  const n = byRow ? g.Ho * perRow : Math.ceil(L / NR);
  const tiles = new Int32Array(n);
  for (let t = 0; t < n; t++) {
    tiles[t] = 4 * (byRow ? Math.floor(t / perRow) * Wp + (t % perRow) * NR : t * NR);
  }
  return { strips: Math.ceil(M / MR), tiles, end: tiles[n - 1] / 4 + NR };
}

/** Staged layout of one convolution (elements). */
interface Layout {
  Wp: number;
  plane: number;
  /** Staged image elements (`C·Hp·Wp`). */
  img: number;
  /** Wide output columns per image (`Ho·Wp`), and the row length of wide buffers (≥ L, ≥ tile ends). */
  L: number;
  Lpad: number;
  /** Elements read past the last staged plane (`kw − 1` plus a tile's overhang), rounded up. */
  tail: number;
}

function layoutOf(g: WideConv, end = 0): Layout {
  const Hp = g.H + 2 * g.ph, Wp = g.W + 2 * g.pw, plane = Hp * Wp, L = g.Ho * Wp;
  const Lpad = ceilTo(Math.max(L, end), 4);
  return { Wp, plane, img: g.C * plane, L, Lpad, tail: g.kw + Lpad - L + 16 };
}

/** The engine: one memory, one instance, a bump allocator reset by every call. */
class ConvEngine {
  readonly memory: WebAssembly.Memory;
  readonly ex: ConvExports;
  private top = 0;

  constructor() {
    this.memory = new WebAssembly.Memory({ initial: 16 });
    const bytes = buildModule({ initial: 16, shared: false }, [
      zeroFn(),
      copyPlanesFn(),
      mmFn(),
      foldFn(),
      gwFn(2),
      gwFn(1),
      poolFn(),
      poolGradFn(),
    ]);
    const mod = new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
    this.ex = new WebAssembly.Instance(mod, { env: { mem: this.memory } }).exports as unknown as ConvExports;
  }

  /** Frees every region. */
  reset(): void {
    this.top = 0;
  }

  /** The current top, to free back to with {@linkcode ConvEngine.release}. */
  mark(): number {
    return this.top;
  }

  /** Frees the regions taken since `mark`. */
  release(mark: number): void {
    this.top = mark;
  }

  /** A region of `n` elements (not zeroed); its byte pointer. */
  take(n: number): number {
    const p = this.top;
    this.top += bytesOf(n);
    const have = this.memory.buffer.byteLength;
    if (this.top > have) this.memory.grow(Math.ceil((this.top - have) / PAGE));
    return p;
  }

  f32(ptr: number, n: number): Float32Array {
    return new Float32Array(this.memory.buffer, ptr, n);
  }

  i32(ptr: number, n: number): Int32Array {
    return new Int32Array(this.memory.buffer, ptr, n);
  }

  /** A zeroed region of `n` elements. */
  zeros(n: number): number {
    const p = this.take(n);
    this.ex.zero(p, bytesOf(n));
    return p;
  }

  /** A region holding a copy of `a`. */
  put(a: Float32Array | Int32Array): number {
    const p = this.take(a.length);
    (a instanceof Float32Array ? this.f32(p, a.length) : this.i32(p, a.length)).set(a);
    return p;
  }

  /** Stages `x[N, C, H, W]` zero-padded as `[N, C, Hp, Wp]` plus a zero tail; its pointer. */
  stage(x: Float32Array, g: WideConv, l: Layout): number {
    const n = g.N * l.img + l.tail;
    if (g.ph === 0 && g.pw === 0) {
      const p = this.zeros(n);
      this.f32(p, x.length).set(x);
      return p;
    }
    const src = this.put(x);
    const p = this.zeros(n);
    this.ex.copyPlanes(src, g.W, g.H * g.W, p + 4 * (g.ph * l.Wp + g.pw), l.Wp, l.plane, g.N * g.C, g.H, g.W);
    return p;
  }

  /**
   * `gy[N, O, Ho, Wo]` widened to `[N, O, Lpad]` (row stride `Wp`, zero in the discarded columns and
   * past `L`); its pointer.
   */
  widen(gy: Float32Array, g: WideConv, l: Layout): number {
    const src = this.put(gy);
    const p = this.zeros(g.N * g.O * l.Lpad + l.tail);
    this.ex.copyPlanes(src, g.Wo, g.Ho * g.Wo, p, l.Wp, l.Lpad, g.N * g.O, g.Ho, g.Wo);
    return p;
  }
}

let engine: ConvEngine | undefined;
function getEngine(): ConvEngine {
  return engine ??= new ConvEngine();
}

/** Whether the WebAssembly convolution kernels can run here. */
export const hasWasmConv: boolean = hasWasmSimd;

/** Byte offsets of the taps `(c, ky, kx)` in a staged image, padded with zeros to `n` entries. */
function tapOffsets(g: WideConv, l: Layout, n: number): Int32Array {
  const off = new Int32Array(n);
  let r = 0;
  for (let c = 0; c < g.C; c++) {
    for (let ky = 0; ky < g.kh; ky++) {
      for (let kx = 0; kx < g.kw; kx++) off[r++] = 4 * (c * l.plane + ky * l.Wp + kx);
    }
  }
  return off;
}

/** `a[M, K]` (or `a[K, M]` when `transposed`) as strips of 6 rows, `[strip][k][MR]`, zero-padded. */
function packStrips(a: Float32Array, M: number, K: number, transposed: boolean): Float32Array {
  const dst = new Float32Array(Math.ceil(M / MR) * K * MR);
  for (let m = 0; m < M; m++) {
    const s = Math.floor(m / MR), base = s * K * MR + m - s * MR;
    for (let k = 0; k < K; k++) dst[base + k * MR] = transposed ? a[k * M + m] : a[m * K + k];
  }
  return dst;
}

/**
 * Float32 elements of per-image buffers one group of images may use (64 MiB): a batch whose buffers
 * would need more is processed in groups, which bounds the engine's memory (it never shrinks).
 */
let groupBudget = 1 << 24;

/** Sets the per-group buffer budget (elements; tests use a small one); returns the previous one. */
export function setWasmConvGroupBudget(elements: number): number {
  const prev = groupBudget;
  groupBudget = elements;
  return prev;
}

/** Images per group when each needs `perImage` elements of buffers. */
function groupOf(N: number, perImage: number): number {
  return Math.max(1, Math.min(N, Math.floor(groupBudget / perImage)));
}

/** y[N, O, Ho, Wo] = conv(x, w), stride 1. */
export function wasmConvForward(x: Float32Array, w: Float32Array, g: WideConv): Float32Array {
  const e = getEngine(), R = g.C * g.kh * g.kw, P = g.Ho * g.Wo, chw = g.C * g.H * g.W;
  const l0 = layoutOf(g), plan = planMM(g.O, g, l0.L, l0.Wp), l = layoutOf(g, plan.end);
  const G = groupOf(g.N, chw + l.img + g.O * (l.Lpad + P));
  const y = new Float32Array(g.N * g.O * P);
  e.reset();
  try {
    const wp = e.put(packStrips(w, g.O, R, false));
    const offIn = e.put(tapOffsets(g, l, R)), jTab = e.put(plan.tiles);
    const mark = e.mark();
    for (let n0 = 0; n0 < g.N; n0 += G) {
      const n1 = Math.min(g.N, n0 + G), gg = { ...g, N: n1 - n0 };
      e.release(mark);
      const xp = e.stage(x.subarray(n0 * chw, n1 * chw), gg, l);
      // Wide output [n, O, Lpad]; the zero rows of the last strip spill into the next image (rewritten
      // after) or past the end.
      const yw = e.take((gg.N * g.O + plan.strips * MR - g.O) * l.Lpad);
      for (let n = 0; n < gg.N; n++) {
        const src = xp + 4 * n * l.img, out = yw + 4 * n * g.O * l.Lpad;
        e.ex.mm(src, offIn, R, wp, plan.strips, jTab, plan.tiles.length, out, l.Lpad);
      }
      const yc = e.take(gg.N * g.O * P);
      e.ex.copyPlanes(yw, l.Wp, l.Lpad, yc, g.Wo, P, gg.N * g.O, g.Ho, g.Wo);
      y.set(e.f32(yc, gg.N * g.O * P), n0 * g.O * P);
    }
    return y;
  } finally {
    e.reset();
  }
}

/**
 * gx[N, C, H, W] = ∂/∂x of conv(x, w) against gy, stride 1: per image, the columns `Wᵀ · gy`
 * (`mm` on the widened gy) into a buffer whose rows have zero margins, then `fold` sums the kh·kw
 * shifted rows at each input position.
 */
export function wasmConvGradInput(gy: Float32Array, w: Float32Array, g: WideConv): Float32Array {
  const e = getEngine(), R = g.C * g.kh * g.kw, taps = g.kh * g.kw, P = g.Ho * g.Wo;
  const l0 = layoutOf(g), plan = planMM(R, g, l0.L, l0.Wp), l = layoutOf(g, plan.end);
  // Column rows: `front` zeros, Lpad columns, `back` zeros: input (y, x) reads tap (ky, kx) at column
  // (y + ph − ky)·Wp + (x + pw − kx), from (kh−1)·Wp + kw − 1 before a row to (kh−1)·Wp + 7 after L.
  const front = ceilTo((g.kh - 1) * l.Wp + g.kw - 1, 4), back = (g.kh - 1) * l.Wp + 16;
  const Lc = front + l.Lpad + back, rows = plan.strips * MR;
  const chw = g.C * g.H * g.W;
  const G = groupOf(g.N, g.O * (P + l.Lpad) + chw);
  const gx = new Float32Array(g.N * chw);
  e.reset();
  try {
    const wp = e.put(packStrips(w, R, g.O, true));
    const offIn = e.put(Int32Array.from({ length: g.O }, (_, o) => 4 * o * l.Lpad));
    const jTab = e.put(plan.tiles);
    const to = new Int32Array(taps);
    for (let ky = 0; ky < g.kh; ky++) {
      for (let kx = 0; kx < g.kw; kx++) {
        to[ky * g.kw + kx] = 4 * ((ky * g.kw + kx) * Lc + front + (g.ph - ky) * l.Wp + g.pw - kx);
      }
    }
    const tapOff = e.put(to);
    // Zeroed once: the tiles rewrite the same columns of every image, the rest stays zero.
    const cols = e.zeros(rows * Lc + Lc);
    const mark = e.mark(), vecs = Math.ceil(g.W / 8);
    for (let n0 = 0; n0 < g.N; n0 += G) {
      const n1 = Math.min(g.N, n0 + G), gg = { ...g, N: n1 - n0 };
      e.release(mark);
      const gyw = e.widen(gy.subarray(n0 * g.O * P, n1 * g.O * P), gg, l);
      const gxc = e.take(gg.N * chw + 8);
      for (let n = 0; n < gg.N; n++) {
        const src = gyw + 4 * n * g.O * l.Lpad;
        e.ex.mm(src, offIn, g.O, wp, plan.strips, jTab, plan.tiles.length, cols + 4 * front, Lc);
        e.ex.fold(cols, taps, tapOff, g.C, taps * Lc, g.H, vecs, l.Wp, g.W, gxc + 4 * n * chw, g.H * g.W);
      }
      gx.set(e.f32(gxc, gg.N * chw), n0 * chw);
    }
    return gx;
  } finally {
    e.reset();
  }
}

/** gw[O, C, kh, kw] = ∂/∂w of conv(x, w) against gy, stride 1. */
export function wasmConvGradWeight(x: Float32Array, gy: Float32Array, g: WideConv): Float32Array {
  const e = getEngine(), l = layoutOf(g), chw = g.C * g.H * g.W, P = g.Ho * g.Wo;
  const R = g.C * g.kh * g.kw, blocks = Math.ceil(R / GW_TAPS), Rpad = blocks * GW_TAPS;
  const G = groupOf(g.N, chw + l.img + g.O * (P + l.Lpad));
  e.reset();
  try {
    const offTab = e.put(tapOffsets(g, l, Rpad)), acc = e.zeros(g.O * Rpad);
    const o2 = g.O & ~1, qEnd = ceilTo(l.L, 4), mark = e.mark();
    for (let n0 = 0; n0 < g.N; n0 += G) {
      const n1 = Math.min(g.N, n0 + G), gg = { ...g, N: n1 - n0 };
      e.release(mark);
      const xp = e.stage(x.subarray(n0 * chw, n1 * chw), gg, l);
      const gyw = e.widen(gy.subarray(n0 * g.O * P, n1 * g.O * P), gg, l);
      for (let n = 0; n < gg.N; n++) {
        const gp = gyw + 4 * n * g.O * l.Lpad, xq = xp + 4 * n * l.img;
        if (o2 > 0) e.ex.gw2(gp, l.Lpad, xq, offTab, 0, o2, blocks, qEnd, acc, Rpad);
        if (o2 < g.O) e.ex.gw1(gp, l.Lpad, xq, offTab, o2, g.O, blocks, qEnd, acc, Rpad);
      }
    }
    const a = e.f32(acc, g.O * Rpad), gw = new Float32Array(g.O * R);
    for (let o = 0; o < g.O; o++) gw.set(a.subarray(o * Rpad, o * Rpad + R), o * R);
    return gw;
  } finally {
    e.reset();
  }
}

/**
 * 2×2 stride-2 max pooling of `planes` planes `h × w` (no padding): the maxima and each one's offset
 * `ky·2 + kx` in its window (as float32), exactly as the generic scan in `nn.ts`.
 */
export function wasmMaxPool2x2(
  x: Float32Array,
  planes: number,
  h: number,
  w: number,
  out: Float32Array,
  argmax: Float32Array,
): void {
  const e = getEngine(), ho = h >> 1, wo = w >> 1, n = planes * ho * wo;
  if (n === 0) return;
  e.reset();
  try {
    const xp = e.take(x.length + 16);
    e.f32(xp, x.length).set(x);
    const y = e.take(n + 4), am = e.take(n + 4);
    e.ex.pool2(xp, planes, h, w, ho, wo, Math.ceil(wo / 4), y, am);
    out.set(e.f32(y, n));
    argmax.set(e.f32(am, n));
  } finally {
    e.reset();
  }
}

/** The gradient of {@linkcode wasmMaxPool2x2}: `gy` to each window's argmax, zero elsewhere. */
export function wasmMaxPool2x2Grad(
  gy: Float32Array,
  argmax: Float32Array,
  planes: number,
  h: number,
  w: number,
  gx: Float32Array,
): void {
  const e = getEngine(), ho = h >> 1, wo = w >> 1, n = planes * ho * wo;
  if (n === 0) return;
  e.reset();
  try {
    const g = e.put(gy), am = e.put(argmax), out = e.zeros(gx.length);
    e.ex.pool2Grad(g, am, planes, h, w, ho, wo, wo >> 2, out);
    gx.set(e.f32(out, gx.length));
  } finally {
    e.reset();
  }
}
