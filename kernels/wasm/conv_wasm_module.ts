/**
 * The generated WebAssembly SIMD functions of the stride-1 convolution (`conv_wasm.ts` drives
 * them; see there for the "wide" layout they work on): `copyPlanes` (staging and unstaging), `mm`
 * (register-tiled weights × in-place column rows), `fold` (col2im as a gather) and `gw2`/`gw1`
 * (weight-gradient dot products). Emitted at run time with `wasm_emit.ts`, no toolchain.
 *
 * @module
 */
import { hasRelaxedSimd } from "./gemm_wasm.ts";
import { Fn, I32, V128 } from "./wasm_emit.ts";
import {
  type WgGyFn,
  type WgInFn,
  type WgKernelsFn,
  type WgOutFn,
  winogradFunctions,
} from "./winograd_module.ts";

/** Weight rows × output columns of one `mm` register tile (15 of the 16 vector registers). */
export const MR = 6, NR = 8;
/** Unrolling of the `mm` k loop (a power of two; 2 measured ~10% faster than 1, 4 and 8 no better). */
const MM_UNROLL = 2;
/** Output channels × taps of one `gw2` block. */
export const GW_TAPS = 5;

function emitFma(f: Fn, a: number, b: number, acc: number): void {
  if (hasRelaxedSimd) f.get(a).get(b).get(acc).op("f32x4.relaxed_madd").set(acc);
  else f.get(acc).get(a).get(b).op("f32x4.mul", "f32x4.add").set(acc);
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

/** The signature of `mm`. */
export type MMFn = (
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

/** The signature of `gw2` and `gw1`. */
export type GwFn = (
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

/** The exports of the {@linkcode convFunctions} (plus the arena's `zero`). */
export interface ConvExports {
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
  wgIn: WgInFn;
  wgOut: WgOutFn;
  wgGy: WgGyFn;
  wgKernels: WgKernelsFn;
}

/** The convolution functions, in the order of {@linkcode ConvExports}. */
export function convFunctions(): Fn[] {
  return [copyPlanesFn(), mmFn(), foldFn(), gwFn(2), gwFn(1), ...winogradFunctions()];
}
