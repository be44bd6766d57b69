/**
 * float32 2×2 stride-2 max pooling (no padding) and its gradient in WebAssembly SIMD, generated at
 * run time: 4 windows per step, the argmax kept as the offset `ky·2 + kx` of each maximum in its
 * window (as float32), exactly as the generic scan in `src/cpu/nn.ts` picks it. The kernels run on
 * their own {@linkcode WasmArena} (single threaded; memory grows as needed and is kept).
 *
 * @module
 */
import { hasWasmSimd } from "./gemm_wasm.ts";
import { WasmArena } from "./wasm_arena.ts";
import { Fn, I32, V128 } from "./wasm_emit.ts";

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

interface PoolExports {
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

let arena: WasmArena<PoolExports> | undefined;
function getArena(): WasmArena<PoolExports> {
  return arena ??= new WasmArena<PoolExports>([poolFn(), poolGradFn()]);
}

/** Whether the WebAssembly pooling kernels can run here (WebAssembly SIMD). */
export const hasWasmPool2x2: boolean = hasWasmSimd;

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
  const e = getArena(), ho = h >> 1, wo = w >> 1, n = planes * ho * wo;
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
  const e = getArena(), ho = h >> 1, wo = w >> 1, n = planes * ho * wo;
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
