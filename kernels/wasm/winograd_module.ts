/**
 * The generated WebAssembly SIMD transforms of the Winograd F(2×2, 3×3) convolution (`winograd.ts`
 * drives them; the products in between are the convolution module's `mm`).
 *
 * With `Bᵀ = [[1,0,−1,0],[0,1,1,0],[0,−1,1,0],[0,1,0,−1]]` and `Aᵀ = [[1,1,1,0],[0,1,−1,−1]]`, a 2×2
 * output tile of a 3×3 correlation is `Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A` for its 4×4 input tile `d`: 16
 * products per tile and channel pair instead of 36. The transforms take four tiles at once, one
 * per SIMD lane: lanes 0–1 are two horizontally adjacent tiles (tile `tx` starts at column `2·tx`,
 * so a lane's values are the even or odd columns of vector loads, regrouped by shuffles), lanes
 * 2–3 the two read `lane2` bytes further: the next two tiles of the row (`lane2` = 16), or, for
 * outputs two tiles wide, the two tiles of the next tile row (`lane2` = two rows). A step of the
 * row loop advances `rowStep` bytes (two or four rows).
 *
 * - `wgIn`: staged (zero-padded) images → `V[ξ][c][t]`, `ξ = 4i + j` the position in the 4×4 tile,
 *   `t` the tile (image-major, then tile row, then tile column).
 * - `wgOut`: `M[ξ][o][t]` (the 16 products `U[ξ]·V[ξ]`) → 2×2 output tiles.
 * - `wgGy`: the output gradient's 2×2 tiles → `A y Aᵀ` (the weight gradient's transform).
 *
 * Pointers and strides are in bytes.
 *
 * @module
 */
import { F64, Fn, I32, V128 } from "./wasm_emit.ts";

const EVEN = [0, 2, 4, 6] as const, ODD = [1, 3, 5, 7] as const;
/** Interleaves the low (high) halves of two vectors: `a0 b0 a1 b1` (`a2 b2 a3 b3`). */
const ZIP_LO = [0, 4, 1, 5] as const, ZIP_HI = [2, 6, 3, 7] as const;

/** The parameter indices `0 … n − 1`. */
const indices = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/** Declares `n` locals of `type`. */
const locals = (f: Fn, n: number, type: number): number[] => Array.from({ length: n }, () => f.local(type));

/** Emits `dst = a op b` for vectors. */
function vop(f: Fn, dst: number, a: number, op: "f32x4.add" | "f32x4.sub", b: number): void {
  f.get(a).get(b).op(op).set(dst);
}

/** Locals `k·step` for k = 0 … 15 (16 offsets of the ξ blocks; index 0 holds 0). */
function xiOffsets(f: Fn, step: number): number[] {
  const off = locals(f, 16, I32);
  f.i32(0).set(off[0]);
  for (let k = 1; k < 16; k++) f.get(off[k - 1]).get(step).op("i32.add").set(off[k]);
  return off;
}

/**
 * wgIn(src, srcImg, srcPlane, srcRow, C, images, rowsT, groups, V, ldV, xs, lane2, rowStep): for
 * channel `c`, image `n < images`, row step `ty < rowsT` and group `g < groups` of four tiles, reads
 * the tiles' 4×4 inputs (rows from `ty·rowStep`, columns from `8g`; lanes 2–3 `lane2` further) of
 * the staged plane at `src + n·srcImg + c·srcPlane` and stores
 * `Bᵀ d B` at `V + ξ·xs + c·ldV + 4t`, `t = (n·rowsT + ty)·4·groups + 4g`.
 */
function wgInFn(): Fn {
  const f = new Fn("wgIn", new Array(13).fill(I32));
  const [src, srcImg, srcPlane, srcRow, C, images, rowsT, groups, V, ldV, xs, lane2, rowStep] = indices(13);
  const c = f.local(I32), n = f.local(I32), ty = f.local(I32), g = f.local(I32);
  const pc = f.local(I32), vc = f.local(I32), pn = f.local(I32), vn = f.local(I32);
  const pr = f.local(I32), vr = f.local(I32), p = f.local(I32), vb = f.local(I32), q = f.local(I32);
  const rowBytes = f.local(I32);
  const off = xiOffsets(f, xs);
  const a = f.local(V128), b = f.local(V128), u0 = f.local(V128), u1 = f.local(V128);
  const d = locals(f, 4, V128);
  const e = locals(f, 16, V128); // e[4r + j]: row r after the column transform
  const v = locals(f, 4, V128);
  f.get(groups).i32(16).op("i32.mul").set(rowBytes); // V bytes per tile row
  f.for(c, 0, { l: C }, 1, () => {
    f.get(src).get(c).get(srcPlane).op("i32.mul", "i32.add").set(pc);
    f.get(V).get(c).get(ldV).op("i32.mul", "i32.add").set(vc);
    f.for(n, 0, { l: images }, 1, () => {
      f.get(pc).get(n).get(srcImg).op("i32.mul", "i32.add").set(pn);
      f.get(vc).get(n).get(rowsT).get(rowBytes).op("i32.mul", "i32.mul", "i32.add").set(vn);
      f.get(pn).set(pr);
      f.get(vn).set(vr);
      f.for(ty, 0, { l: rowsT }, 1, () => {
        f.for(g, 0, { l: groups }, 1, () => {
          f.get(pr).get(g).i32(5).op("i32.shl", "i32.add").set(p);
          f.get(vr).get(g).i32(4).op("i32.shl", "i32.add").set(vb);
          f.get(p).get(lane2).op("i32.add").set(q);
          for (let r = 0; r < 4; r++) {
            // Columns 0…3 (a, b) and 2…5 (u0, u1) of row r of lanes 0–1 (a, u0) and 2–3 (b, u1).
            f.get(p).mem("v128.load", 0).set(a);
            f.get(q).mem("v128.load", 0).set(b);
            f.get(p).mem("v128.load", 8).set(u0);
            f.get(q).mem("v128.load", 8).set(u1);
            f.get(a).get(b).shuffle32(EVEN).set(d[0]);
            f.get(a).get(b).shuffle32(ODD).set(d[1]);
            f.get(u0).get(u1).shuffle32(EVEN).set(d[2]);
            f.get(u0).get(u1).shuffle32(ODD).set(d[3]);
            // d·B: (d0 − d2, d1 + d2, d2 − d1, d1 − d3)
            vop(f, e[4 * r], d[0], "f32x4.sub", d[2]);
            vop(f, e[4 * r + 1], d[1], "f32x4.add", d[2]);
            vop(f, e[4 * r + 2], d[2], "f32x4.sub", d[1]);
            vop(f, e[4 * r + 3], d[1], "f32x4.sub", d[3]);
            if (r < 3) {
              f.addTo(p, () => f.get(srcRow));
              f.addTo(q, () => f.get(srcRow));
            }
          }
          for (let j = 0; j < 4; j++) {
            // Bᵀ·(column j): (e0 − e2, e1 + e2, e2 − e1, e1 − e3)
            vop(f, v[0], e[j], "f32x4.sub", e[8 + j]);
            vop(f, v[1], e[4 + j], "f32x4.add", e[8 + j]);
            vop(f, v[2], e[8 + j], "f32x4.sub", e[4 + j]);
            vop(f, v[3], e[4 + j], "f32x4.sub", e[12 + j]);
            for (let i = 0; i < 4; i++) {
              f.get(vb).get(off[4 * i + j]).op("i32.add").get(v[i]).mem("v128.store");
            }
          }
        });
        f.addTo(pr, () => f.get(rowStep));
        f.addTo(vr, () => f.get(rowBytes));
      });
    });
  });
  return f;
}

/**
 * wgOut(M, ldM, xs, O, images, rowsT, groups, dst, dstImg, dstPlane, dstRow, lane2, rowStep): for
 * output channel `o`, image `n`, row step `ty` and group `g` of four tiles, reads `M[ξ][o][t]` at
 * `M + ξ·xs + o·ldM + 4t` and stores `Aᵀ m A` of lanes 0–1 as two rows of four columns from column
 * `8g` of row `ty·rowStep` of the plane at `dst + n·dstImg + o·dstPlane` (rows `dstRow` apart),
 * those of lanes 2–3 `lane2` bytes further.
 */
function wgOutFn(): Fn {
  const f = new Fn("wgOut", new Array(13).fill(I32));
  const [M, ldM, xs, O, images, rowsT, groups, dst, dstImg, dstPlane, dstRow, lane2, rowStep] = indices(13);
  const o = f.local(I32), n = f.local(I32), ty = f.local(I32), g = f.local(I32);
  const mr = f.local(I32), qr = f.local(I32), mb = f.local(I32);
  const q = f.local(I32), rowBytes = f.local(I32);
  const off = xiOffsets(f, xs);
  const m = locals(f, 4, V128), t0 = f.local(V128), t1 = f.local(V128);
  const h = locals(f, 8, V128); // h[2i + k]: row i of m·A
  const y = locals(f, 4, V128); // y[2r + k]
  f.get(groups).i32(16).op("i32.mul").set(rowBytes);
  f.for(o, 0, { l: O }, 1, () => {
    f.for(n, 0, { l: images }, 1, () => {
      f.get(M).get(o).get(ldM).op("i32.mul", "i32.add");
      f.get(n).get(rowsT).get(rowBytes).op("i32.mul", "i32.mul", "i32.add").set(mr);
      f.get(dst).get(n).get(dstImg).op("i32.mul", "i32.add").get(o).get(dstPlane).op("i32.mul", "i32.add");
      f.set(qr);
      f.for(ty, 0, { l: rowsT }, 1, () => {
        f.for(g, 0, { l: groups }, 1, () => {
          f.get(mr).get(g).i32(4).op("i32.shl", "i32.add").set(mb);
          for (let i = 0; i < 4; i++) {
            for (let j = 0; j < 4; j++) {
              f.get(mb).get(off[4 * i + j]).op("i32.add").mem("v128.load").set(m[j]);
            }
            // m·A: (m0 + m1 + m2, m1 − m2 − m3)
            vop(f, t0, m[0], "f32x4.add", m[1]);
            vop(f, h[2 * i], t0, "f32x4.add", m[2]);
            vop(f, t1, m[1], "f32x4.sub", m[2]);
            vop(f, h[2 * i + 1], t1, "f32x4.sub", m[3]);
          }
          for (let k = 0; k < 2; k++) {
            // Aᵀ·(column k): (h0 + h1 + h2, h1 − h2 − h3)
            vop(f, t0, h[k], "f32x4.add", h[2 + k]);
            vop(f, y[k], t0, "f32x4.add", h[4 + k]);
            vop(f, t1, h[2 + k], "f32x4.sub", h[4 + k]);
            vop(f, y[2 + k], t1, "f32x4.sub", h[6 + k]);
          }
          f.get(qr).get(g).i32(5).op("i32.shl", "i32.add").set(q);
          for (let r = 0; r < 2; r++) {
            f.get(q).get(y[2 * r]).get(y[2 * r + 1]).shuffle32(ZIP_LO).mem("v128.store", 0);
            f.get(q).get(lane2).op("i32.add").get(y[2 * r]).get(y[2 * r + 1]).shuffle32(ZIP_HI);
            f.mem("v128.store", 0);
            if (r === 0) f.addTo(q, () => f.get(dstRow));
          }
        });
        f.addTo(mr, () => f.get(rowBytes));
        f.addTo(qr, () => f.get(rowStep));
      });
    });
  });
  return f;
}

/**
 * wgGy(src, srcImg, srcPlane, srcRow, O, images, rowsT, groups, G, ldG, xs, lane2, rowStep): the
 * output-gradient transform of the weight gradient. For channel `o`, image `n`, row step `ty` and
 * group `g` of four tiles, reads the 2×2 tiles `y` (as `wgOut` writes them) of the plane at
 * `src + n·srcImg + o·srcPlane` and stores `A y Aᵀ` (`A = [[1,0],[1,1],[1,−1],[0,−1]]`) at
 * `G + ξ·xs + o·ldG + 4t` (tiles numbered as in `wgIn`).
 */
function wgGyFn(): Fn {
  const f = new Fn("wgGy", new Array(13).fill(I32));
  const [src, srcImg, srcPlane, srcRow, O, images, rowsT, groups, G, ldG, xs, lane2, rowStep] = indices(13);
  const o = f.local(I32), n = f.local(I32), ty = f.local(I32), g = f.local(I32);
  const pr = f.local(I32), gr = f.local(I32), p = f.local(I32), gb = f.local(I32);
  const rowBytes = f.local(I32);
  const off = xiOffsets(f, xs);
  const a = f.local(V128), b = f.local(V128);
  const y = locals(f, 4, V128); // y[2r + k]: row r, column k of the four tiles
  const z = locals(f, 8, V128); // z[2i + k]: row i of A·y
  const v = locals(f, 4, V128);
  f.get(groups).i32(16).op("i32.mul").set(rowBytes);
  f.for(o, 0, { l: O }, 1, () => {
    f.for(n, 0, { l: images }, 1, () => {
      f.get(src).get(n).get(srcImg).op("i32.mul", "i32.add").get(o).get(srcPlane).op("i32.mul", "i32.add");
      f.set(pr);
      f.get(G).get(o).get(ldG).op("i32.mul", "i32.add");
      f.get(n).get(rowsT).get(rowBytes).op("i32.mul", "i32.mul", "i32.add").set(gr);
      f.for(ty, 0, { l: rowsT }, 1, () => {
        f.for(g, 0, { l: groups }, 1, () => {
          f.get(pr).get(g).i32(5).op("i32.shl", "i32.add").set(p);
          f.get(gr).get(g).i32(4).op("i32.shl", "i32.add").set(gb);
          for (let r = 0; r < 2; r++) {
            f.get(p).mem("v128.load", 0).set(a);
            f.get(p).get(lane2).op("i32.add").mem("v128.load", 0).set(b);
            f.get(a).get(b).shuffle32(EVEN).set(y[2 * r]);
            f.get(a).get(b).shuffle32(ODD).set(y[2 * r + 1]);
            if (r === 0) f.addTo(p, () => f.get(srcRow));
          }
          for (let k = 0; k < 2; k++) {
            // A·(column k): (y0, y0 + y1, y0 − y1, −y1)
            f.get(y[k]).set(z[k]);
            vop(f, z[2 + k], y[k], "f32x4.add", y[2 + k]);
            vop(f, z[4 + k], y[k], "f32x4.sub", y[2 + k]);
            f.get(y[2 + k]).op("f32x4.neg").set(z[6 + k]);
          }
          for (let i = 0; i < 4; i++) {
            // (row i)·Aᵀ: (z0, z0 + z1, z0 − z1, −z1)
            f.get(z[2 * i]).set(v[0]);
            vop(f, v[1], z[2 * i], "f32x4.add", z[2 * i + 1]);
            vop(f, v[2], z[2 * i], "f32x4.sub", z[2 * i + 1]);
            f.get(z[2 * i + 1]).op("f32x4.neg").set(v[3]);
            for (let j = 0; j < 4; j++) {
              f.get(gb).get(off[4 * i + j]).op("i32.add").get(v[j]).mem("v128.store");
            }
          }
        });
        f.addTo(pr, () => f.get(rowStep));
        f.addTo(gr, () => f.get(rowBytes));
      });
    });
  });
  return f;
}

/**
 * wgKernels(w, O, C, flip, u, block, s0, s1): the kernels' transform `G g Gᵀ` (`G = [[1,0,0],[½,½,½],
 * [½,−½,½],[0,0,1]]`, in float64, rounded once to float32) for the strips `s0 … s1` of six output
 * channels, packed for `mm`: `u + ξ·block + ((s·C + c)·6 + m)·4` holds ξ of `g[6s + m, c]`, zero for
 * rows past `O`. `g[o, c]` is the 3×3 kernel at `w + (o·C + c)·36`, or with `flip` (the input
 * gradient's kernels) the one at `w + (c·O + o)·36` turned by 180°.
 */
function wgKernelsFn(): Fn {
  const f = new Fn("wgKernels", new Array(8).fill(I32));
  const [w, O, C, flip, u, block, s0, s1] = indices(8);
  const s = f.local(I32), c = f.local(I32), m = f.local(I32), mEnd = f.local(I32), k = f.local(I32);
  const step = f.local(I32), p = f.local(I32);
  const tap = locals(f, 9, I32), off = xiOffsets(f, block);
  const g = locals(f, 9, F64), r = locals(f, 12, F64); // r[3i + x]: row i of G·g
  const half = () => f.body.push(0x44, ...new Uint8Array(new Float64Array([0.5]).buffer)); // f64.const
  // step = flip ? −4 : 4; tap[t] = t·step
  f.if(() => f.get(flip), () => f.i32(-4).set(step), () => f.i32(4).set(step));
  f.i32(0).set(tap[0]);
  for (let t = 1; t < 9; t++) f.get(tap[t - 1]).get(step).op("i32.add").set(tap[t]);
  /** Pushes the float32 at `k + tap[t]` as a float64. */
  const load = (t: number) => f.get(k).get(tap[t]).op("i32.add").mem("f32.load").op("f64.promote_f32");
  /** Stores the float64 on top of the stack (under the address pushed first) as float32. */
  const store = (xi: number, value: () => void) => {
    f.get(p).get(off[xi]).op("i32.add");
    value();
    f.op("f32.demote_f64").mem("f32.store");
  };
  f.for(s, { l: s0 }, { l: s1 }, 1, () => {
    // mEnd = min(6, O − 6s)
    f.min(6, () => f.get(O).get(s).i32(6).op("i32.mul", "i32.sub")).set(mEnd);
    f.for(c, 0, { l: C }, 1, () => {
      f.for(m, 0, 6, 1, () => {
        // p = u + ((s·C + c)·6 + m)·4
        f.get(u).get(s).get(C).op("i32.mul").get(c).op("i32.add").i32(6).op("i32.mul").get(m).op("i32.add");
        f.i32(2).op("i32.shl", "i32.add").set(p);
        f.if(() => f.get(m).get(mEnd).op("i32.lt_s"), () => {
          // k = flip ? w + ((c·O + o)·9 + 8)·4 : w + (o·C + c)·36, o = 6s + m
          f.if(() => f.get(flip), () => {
            f.get(w).get(c).get(O).op("i32.mul").get(s).i32(6).op("i32.mul").op("i32.add").get(m).op(
              "i32.add",
            );
            f.i32(9).op("i32.mul").i32(8).op("i32.add").i32(2).op("i32.shl", "i32.add").set(k);
          }, () => {
            f.get(w).get(s).i32(6).op("i32.mul").get(m).op("i32.add").get(C).op("i32.mul").get(c).op(
              "i32.add",
            );
            f.i32(36).op("i32.mul", "i32.add").set(k);
          });
          for (let t = 0; t < 9; t++) load(t).set(g[t]);
          // G·g: rows g0, (g0 + g1 + g2)/2, (g0 − g1 + g2)/2, g2 (each a row of three).
          for (let x = 0; x < 3; x++) {
            f.get(g[x]).set(r[x]);
            f.get(g[x]).get(g[3 + x]).op("f64.add").get(g[6 + x]).op("f64.add");
            half();
            f.op("f64.mul").set(r[3 + x]);
            f.get(g[x]).get(g[3 + x]).op("f64.sub").get(g[6 + x]).op("f64.add");
            half();
            f.op("f64.mul").set(r[6 + x]);
            f.get(g[6 + x]).set(r[9 + x]);
          }
          // (G·g)·Gᵀ: each row (a0, a1, a2) → (a0, (a0 + a1 + a2)/2, (a0 − a1 + a2)/2, a2).
          for (let i = 0; i < 4; i++) {
            const [a0, a1, a2] = [r[3 * i], r[3 * i + 1], r[3 * i + 2]];
            store(4 * i, () => f.get(a0));
            store(4 * i + 1, () => {
              f.get(a0).get(a1).op("f64.add").get(a2).op("f64.add");
              half();
              f.op("f64.mul");
            });
            store(4 * i + 2, () => {
              f.get(a0).get(a1).op("f64.sub").get(a2).op("f64.add");
              half();
              f.op("f64.mul");
            });
            store(4 * i + 3, () => f.get(a2));
          }
        }, () => {
          for (let xi = 0; xi < 16; xi++) f.get(p).get(off[xi]).op("i32.add").f32(0).mem("f32.store");
        });
      });
    });
  });
  return f;
}

/** The signature of `wgKernels`. */
export type WgKernelsFn = (
  w: number,
  O: number,
  C: number,
  flip: number,
  u: number,
  block: number,
  s0: number,
  s1: number,
) => void;

/** The signature of `wgIn`. */
export type WgInFn = (
  src: number,
  srcImg: number,
  srcPlane: number,
  srcRow: number,
  C: number,
  images: number,
  rowsT: number,
  groups: number,
  V: number,
  ldV: number,
  xs: number,
  lane2: number,
  rowStep: number,
) => void;

/** The signature of `wgOut`. */
export type WgOutFn = (
  M: number,
  ldM: number,
  xs: number,
  O: number,
  images: number,
  rowsT: number,
  groups: number,
  dst: number,
  dstImg: number,
  dstPlane: number,
  dstRow: number,
  lane2: number,
  rowStep: number,
) => void;

/** The signature of `wgGy` (as {@linkcode WgInFn}, with output channels for input channels). */
export type WgGyFn = WgInFn;

/** The Winograd transforms, in the order of their exports. */
export function winogradFunctions(): Fn[] {
  return [wgInFn(), wgOutFn(), wgGyFn(), wgKernelsFn()];
}
