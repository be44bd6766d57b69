/**
 * The noise of `noise.ts` in WebAssembly SIMD, generated at run time by this file (no toolchain,
 * no committed binary): the same Philox4x32-10 blocks and the same fixed-point transforms, with the
 * same integers at every stage, so every draw has the bits of `transformBlock` (and of the WGSL
 * twin in `kernels/wgsl/random.ts`).
 *
 * - **Philox**, four blocks per vector (lane L holds block b + L), two vectors interleaved: the
 *   32×32 → 64-bit products of a round are `i64x2.extmul_{low,high}_i32x4_u`, their high words
 *   gathered by one shuffle, their low words from `i32x4.mul`. Round 0 (c3 = 0, c1 and c2 the same
 *   in every lane) is half hoisted out of the loop.
 * - **Transforms** in `f64x2` arithmetic on integer values, every operation exact: a product of
 *   two integers below 2^26 is below 2^52, scaling by a power of two is exact, `f64x2.floor` is
 *   exact; so ⌊a·b / 2^25⌋ is `floor(a · (b·2^-25))`, two instructions for two lanes (64-bit
 *   integer lanes would need `i64x2.mul`, three 32-bit multiplies plus shifts in V8, and a
 *   shuffle to narrow). The rest is checked exhaustively, over every input it can see
 *   (`tests/noise_test.ts` runs both paths on all 2^24 lane values of each law, in each role of a
 *   Box–Muller pair, against `transformBlock`):
 *   - ⌊m / n⌋ for the constants n of the sine and cosine series is `floor(m · R)`, R the smallest
 *     double ≥ 1/n (exact for every integer 0 ≤ m < 2^26: m·R ≥ m/n never rounds below an exact
 *     quotient, and m·R − m/n < 2^-27/n stays below the 1/n gap to the next integer);
 *   - ⌊⌊T2·v⌋ / n⌋ as `floor((T2·R)·v)` and ⌊⌊x⌋ / 2⌋ = ⌊x / 2⌋ in the series (all 2^22 angles);
 *   - the first floor of the logarithm's series dropped (all d ≤ 2^25/33 it can receive);
 *   - the logarithm's special case (e − k = 1, j = 31) is the general formula with j = 31
 *     (LOG_RECIP[31] = 2^24, LOG_OFFSET[31] = LN2_Q25), so it needs no branch; the reduction reads
 *     the exponent k and the top five mantissa bits j of the exact double q and loads
 *     [LOG_RECIP[j]·2^-25, (e − k)·ln 2 − LOG_OFFSET[j]] from a table indexed by both.
 *   Independent chains (the logarithms, the sines and cosines of several lanes) are emitted in
 *   lockstep: one chain alone would leave the CPU waiting on latency.
 * - **Results**: `f32x4.demote_f64x2_zero` of an integer and `f32x4.mul` by the float32 scale are
 *   the correctly rounded `Math.fround` steps of `transformBlock`; signs flip the sign bit
 *   (rounding to nearest even is symmetric).
 *
 * Internal module: `noise.ts` uses it where the engine has WebAssembly fixed-width SIMD and falls
 * back to plain JavaScript otherwise.
 *
 * @module
 */
import { Builder } from "./simd_builder.ts";
import { buildModule, F32, Fn, I32 } from "./wasm_emit.ts";

/** Constants of the fixed-point transforms (passed in by `noise.ts`, which owns them). */
export interface NoiseTables {
  /** ⌊2^25 · 32 / (33 + j)⌋, j < 32. */
  readonly recip: readonly number[];
  /** round(ln(2^25 / recip[j]) · 2^25). */
  readonly offset: readonly number[];
  /** round(ln 2 · 2^25). */
  readonly ln2: number;
  /** round(π/2 · 2^25). */
  readonly halfPi: number;
}

const M0 = 0xd2511f53, M1 = 0xcd9e8d57, W0 = 0x9e3779b9, W1 = 0xbb67ae85;
const ONE = 33554432; // 2^25

/** Groups of four Philox blocks per loop iteration. */
const GROUPS = 2;
/** Blocks one call of a generated function produces at most (a multiple of 4·GROUPS). */
export const CAP_BLOCKS = 4096;

// Memory layout (bytes).
const KEYS = 0; // the ten round keys, splatted: [k0 ×4][k1 ×4] per round
const OUT = 1024; // the draws, float32, 16 bytes per block
const RAW = OUT + 16 * CAP_BLOCKS; // raw mode: the Philox words to transform, 16 bytes per block
/**
 * The logarithm's tables, one per exponent e (25: gaussian radius, 24: laplace), addressed by the
 * top bits of the double q: `(bits >> 43) & 0xffff0` = 16·(32·(1023 + k) + j).
 */
const TABLE_BASE = 16 * 32 * 1023, TABLE_END = 16 * 32 * (1023 + 25);
const TABLE_OFFSET: Record<number, number> = { 25: 0, 24: TABLE_END - TABLE_BASE };
const PAGES = Math.ceil((TABLE_END + TABLE_OFFSET[24]) / 65536);
/** Control words of the worker pool (`noise_threads.ts`), shared memory only: 128 int32 words. */
export const CTL_BYTE = 512;
/** Per-chunk completion flags of the worker pool (one int32 per chunk). */
export const FLAGS_BYTE = PAGES * 65536;
/** Most chunks one threaded round can have (the size of the flag area). */
export const MAX_CHUNKS = 16384;
/** Start of the growable draw region of threaded rounds (16 bytes per block). */
export const REGION_BYTE = FLAGS_BYTE + 4 * MAX_CHUNKS;
/** Pages a shared memory may grow to: room for threaded rounds of up to 2^20 blocks (16 MiB). */
const MAX_PAGES = REGION_BYTE / 65536 + 258;

/** The smallest double ≥ 1/n. */
function recipUp(n: number): number {
  const f = new Float64Array([1 / n]), u = new BigUint64Array(f.buffer);
  // 1/n rounded to nearest is below 1/n iff n·fl(1/n) < 1 in exact arithmetic
  const below = (x: number) => {
    const bits = new BigUint64Array(Float64Array.of(x).buffer)[0];
    const e = Number((bits >> 52n) & 0x7ffn) - 1075, m = (bits & 0xfffffffffffffn) | (1n << 52n);
    return m * BigInt(n) < 1n << BigInt(-e);
  };
  if (below(f[0])) u[0] += 1n;
  return f[0];
}

/** The law codes (the index in NOISE_LAWS). */
export const GAUSSIAN = 0, LAPLACE = 1, UNIFORM = 2;
const LAW_NAMES = ["gaussian", "laplace", "uniform"];

/**
 * The generated function of one law: `(groups, b0, c1, c2, sc, dst, keys)` writes the float32
 * draws of the blocks `b0 .. b0 + 4·GROUPS·groups` (counter `(b, c1, c2, 0)`, the splatted round
 * keys at byte address `keys`) at byte address `dst`, 16 bytes per block. In raw mode the Philox
 * words are read from `dst + (RAW − OUT)` instead (b0, c1, c2 unused), for the tests.
 */
function lawFunction(law: number, raw: boolean, halfPi: number): Fn {
  const f = new Fn(LAW_NAMES[law], [I32, I32, I32, I32, F32, I32, I32]);
  const a = new Builder(f);
  const [groups, b0, c1, c2, sc, dst, kp] = [0, 1, 2, 3, 4, 5, 6];
  const e = law === GAUSSIAN ? 25 : 24; // the logarithm's exponent

  // ---- constants, kept in locals (a v128.const inside the loop costs several instructions)
  const one = a.i32x4(1), two24 = a.i32x4(16777216), sign32 = a.i32x4(0x80000000);
  const m0 = a.i32x4(M0), m1 = a.i32x4(M1);
  const scv = a.get(sc).simd("f32x4.splat").result();
  const fONE = a.f64x2(ONE), inv25 = a.f64x2(2 ** -25);
  const L = law === UNIFORM ? null : {
    mant: a.i64x2(0xfffffffffffffn),
    exp25: a.f64x2(2 ** 25),
    idxMask: a.i64x2(0xffff0n),
    h5: a.f64x2(6710886),
    h4: a.f64x2(8388608),
    h3: a.f64x2(11184810),
    h2: a.f64x2(16777216),
  };
  const G = law !== GAUSSIAN ? null : {
    mask23: a.i32x4(0x1fffffc),
    top: a.i32x4(16777215),
    oneI: a.i32x4(ONE),
    hp: a.f64x2(halfPi * 2 ** -25),
    inv26: a.f64x2(2 ** -26),
    two20: a.f64x2(2 ** 20),
    r: Object.fromEntries([6, 12, 20, 30, 42, 56, 72, 90].map((n) => [n, a.f64x2(recipUp(n))])),
  };
  const fm = (x: number, y: number) => a.op("f64x2.mul", x, y);
  const floor = (x: number) => a.un("f64x2.floor", x);

  // Each chain is a generator that yields between its steps; `interleave` runs several in lockstep.

  /** −ln(q / 2^e) in Q25 for exact doubles q (1 ≤ q < 2^e): noise.ts's `negLogQ25`. */
  function* negLog(q: number): Generator<void, number> {
    const l = L!;
    const y = a.op("v128.or", a.op("v128.and", q, l.mant), l.exp25); // q·2^(25−k) ∈ [2^25, 2^26)
    const idx = a.op("v128.and", a.shift("i64x2.shr_u", q, 43), l.idxMask); // 16·(32·(1023 + k) + j)
    yield;
    const off = TABLE_OFFSET[e];
    const e0 = a.load(a.lane(idx, 0), off), e1 = a.load(a.lane(idx, 2), off);
    yield;
    const rc = a.shuf64(e0, e1, [0, 2]), base = a.shuf64(e0, e1, [1, 3]); // recip·2^-25, (e−k)·ln2 − offset
    yield;
    const D = fm(a.op("f64x2.sub", fONE, floor(fm(y, rc))), inv25); // d·2^-25, d = ONE − ⌊y·recip/2^25⌋
    yield;
    let h = a.op("f64x2.add", fm(D, l.h5), l.h4); // 8388608 + d·6710886/2^25 (its floor is not needed)
    yield;
    for (const c of [l.h3, l.h2, fONE]) {
      h = floor(fm(D, h));
      yield;
      h = a.op("f64x2.add", h, c);
      yield;
    }
    const series = floor(fm(D, h));
    yield;
    return a.op("f64x2.add", base, series);
  }

  /** ⌊√(2L)·2^22⌋·2^-25 for the gaussian radius lanes (q = 2m + 1 as doubles). */
  function* radius(q: number): Generator<void, number> {
    const l2 = yield* negLog(q);
    const r = floor(a.un("f64x2.sqrt", fm(l2, G!.two20)));
    yield;
    return fm(r, inv25);
  }

  /** [sin, cos] of (π/2)·y/2^25 in Q25: noise.ts's `sinCosQ25` before its final swap. */
  function* sinCos(y: number): Generator<void, [number, number]> {
    const g = G!;
    const t = floor(fm(y, g.hp));
    yield;
    const T = fm(t, inv25);
    yield;
    const t2 = floor(fm(t, T));
    yield;
    const T2 = fm(t2, inv25), T2h = fm(t2, g.inv26);
    let s = a.op("f64x2.sub", fONE, floor(fm(t2, g.r[72])));
    let c = a.op("f64x2.sub", fONE, floor(fm(t2, g.r[90])));
    yield;
    for (const [ns, nc] of [[42, 56], [20, 30], [6, 12]]) {
      const ks = fm(T2, g.r[ns]), kc = fm(T2, g.r[nc]);
      yield;
      s = a.op("f64x2.sub", fONE, floor(fm(ks, s)));
      c = a.op("f64x2.sub", fONE, floor(fm(kc, c)));
      yield;
    }
    const sin0 = floor(fm(T, s));
    const cos0 = a.op("f64x2.sub", fONE, floor(fm(T2h, c)));
    yield;
    return [sin0, cos0];
  }

  /** Runs chains in lockstep; returns their results in order. */
  function interleave<T>(chains: Generator<void, T>[]): T[] {
    const out: T[] = new Array(chains.length);
    const done = chains.map(() => false);
    for (let live = chains.length; live > 0;) {
      chains.forEach((ch, i) => {
        if (done[i]) return;
        const r = ch.next();
        if (r.done) {
          out[i] = r.value;
          done[i] = true;
          live--;
        }
      });
    }
    return out;
  }

  /** i32x4 → its two f64x2 halves. */
  const halves = (v: number): [number, number] => [
    a.un("f64x2.convert_low_i32x4_s", v),
    a.un("f64x2.convert_low_i32x4_s", a.shuf32(v, v, [2, 3, 2, 3])),
  ];
  /** Two f64x2 of integers → one f32x4, correctly rounded. */
  const toF32 = (lo: number, hi: number): number =>
    a.shuf32(a.un("f32x4.demote_f64x2_zero", lo), a.un("f32x4.demote_f64x2_zero", hi), [0, 1, 4, 5]);
  /** 2m + 1 for the top 24 bits m of each lane. */
  const odd = (x: number) => a.op("v128.or", a.shift("i32x4.shr_u", x, 7), one);

  /** Per group: the four output vectors (word w of blocks b..b+3) from the Philox words X. */
  const transform = (groupsX: number[][]): number[][] => {
    if (law === UNIFORM) {
      return groupsX.map((X) =>
        X.map((w) => a.op("f32x4.mul", a.un("f32x4.convert_i32x4_s", a.op("i32x4.sub", odd(w), two24)), scv))
      );
    }
    if (law === LAPLACE) {
      return groupsX.map((X) => {
        const s = X.map((w) => a.op("i32x4.sub", odd(w), two24)); // 2m + 1 − 2^24
        const q = s.flatMap((v) => halves(a.op("i32x4.sub", two24, a.un("i32x4.abs", v))));
        const l = interleave(q.map((v) => negLog(v)));
        return s.map((v, w) => {
          const x = a.op("f32x4.mul", toF32(l[2 * w], l[2 * w + 1]), scv);
          return a.op("v128.xor", x, a.op("v128.and", v, sign32));
        });
      });
    }
    const g = G!;
    return groupsX.map((X) => {
      // Box–Muller pairs (X0, X1) and (X2, X3): radius lanes, angle lanes a in units of 2π/2^25
      const aw = [odd(X[1]), odd(X[3])];
      const q = [...halves(odd(X[0])), ...halves(odd(X[2]))];
      const x = aw.map((v) => a.op("v128.and", a.shift("i32x4.shl", v, 2), g.mask23)); // (a mod 2^23)·4
      const swap = x.map((v) => a.op("i32x4.gt_s", v, g.top));
      const y = x.flatMap((v) => halves(a.op("i32x4.min_s", v, a.op("i32x4.sub", g.oneI, v))));
      const both = interleave<number | [number, number]>([...q.map(radius), ...y.map(sinCos)]);
      const R = both.slice(0, 4) as number[], SC = both.slice(4) as [number, number][];
      const fs = R.map((r, u) => floor(fm(r, SC[u][0])));
      const fc = R.map((r, u) => floor(fm(r, SC[u][1])));
      return [0, 1].flatMap((p) => {
        const FS = toF32(fs[2 * p], fs[2 * p + 1]), FC = toF32(fc[2 * p], fc[2 * p + 1]);
        // quadrant = a >> 23: bit 23 of a odd quadrant, bit 24 the lower half-plane
        const a7 = a.shift("i32x4.shl", aw[p], 7), a8 = a.shift("i32x4.shl", aw[p], 8);
        const m = a.op("v128.xor", swap[p], a.shift("i32x4.shr_s", a8, 31)); // cos ↔ sin
        const xo = a.op("f32x4.mul", a.select(FS, FC, m), scv);
        const yo = a.op("f32x4.mul", a.select(FC, FS, m), scv);
        return [
          a.op("v128.xor", xo, a.op("v128.and", a.op("v128.xor", a7, a8), sign32)), // quadrants 1, 2
          a.op("v128.xor", yo, a.op("v128.and", a7, sign32)), // quadrants 2, 3
        ];
      });
    });
  };

  /** 4×4 transpose of 32-bit lanes: in[w] lane L → out[L] lane w. */
  const transpose = ([o0, o1, o2, o3]: number[]): number[] => {
    const t0 = a.shuf32(o0, o1, [0, 4, 1, 5]), t1 = a.shuf32(o2, o3, [0, 4, 1, 5]);
    const t2 = a.shuf32(o0, o1, [2, 6, 3, 7]), t3 = a.shuf32(o2, o3, [2, 6, 3, 7]);
    return [
      a.shuf64(t0, t1, [0, 2]),
      a.shuf64(t0, t1, [1, 3]),
      a.shuf64(t2, t3, [0, 2]),
      a.shuf64(t2, t3, [1, 3]),
    ];
  };

  let source: () => number[][];
  if (raw) {
    // the words of block b at RAW + 16·(b − b0): load four blocks and transpose to word vectors
    source = () =>
      Array.from(
        { length: GROUPS },
        (_, g) => transpose([0, 1, 2, 3].map((L) => a.load(dst, RAW - OUT + 64 * g + 16 * L))),
      );
  } else {
    // round 0 with c3 = 0 and the constant words c1, c2: the c2 product is loop invariant
    const k00 = a.load(kp, 0), k10 = a.load(kp, 16);
    const vc1 = a.get(c1).simd("i32x4.splat").result(), vc2 = a.get(c2).simd("i32x4.splat").result();
    const p1l = a.op("i64x2.extmul_low_i32x4_u", vc2, m1), p1h = a.op("i64x2.extmul_high_i32x4_u", vc2, m1);
    const r0n0 = a.op("v128.xor", a.op("v128.xor", a.shuf32(p1l, p1h, [1, 3, 5, 7]), vc1), k00);
    const r0n1 = a.op("i32x4.mul", vc2, m1);
    const ctr = a.op("i32x4.add", a.get(b0).simd("i32x4.splat").result(), a.i32x4(0, 1, 2, 3));
    const stepG = a.i32x4(4 * GROUPS);
    const offs = Array.from({ length: GROUPS }, (_, g) => (g === 0 ? -1 : a.i32x4(4 * g)));
    source = () => {
      let S = offs.map((off) => {
        const c0 = off < 0 ? ctr : a.op("i32x4.add", ctr, off);
        const pl = a.op("i64x2.extmul_low_i32x4_u", c0, m0), ph = a.op("i64x2.extmul_high_i32x4_u", c0, m0);
        return [r0n0, r0n1, a.op("v128.xor", a.shuf32(pl, ph, [1, 3, 5, 7]), k10), a.op("i32x4.mul", c0, m0)];
      });
      for (let r = 1; r < 10; r++) {
        const k0 = a.load(kp, 32 * r), k1 = a.load(kp, 32 * r + 16);
        S = S.map(([x0, x1, x2, x3]) => {
          const pl = a.op("i64x2.extmul_low_i32x4_u", x0, m0), ph = a.op("i64x2.extmul_high_i32x4_u", x0, m0);
          const ql = a.op("i64x2.extmul_low_i32x4_u", x2, m1), qh = a.op("i64x2.extmul_high_i32x4_u", x2, m1);
          const hi0 = a.shuf32(pl, ph, [1, 3, 5, 7]), hi1 = a.shuf32(ql, qh, [1, 3, 5, 7]);
          return [
            a.op("v128.xor", a.op("v128.xor", hi1, x1), k0),
            a.op("i32x4.mul", x2, m1),
            a.op("v128.xor", a.op("v128.xor", hi0, x3), k1),
            a.op("i32x4.mul", x0, m0),
          ];
        });
      }
      a.get(ctr).get(stepG).simd("i32x4.add").set(ctr);
      return S;
    };
  }

  a.b.push(0x03, 0x40); // loop
  transform(source()).forEach((o, g) => {
    // element 4(b + L) + w is word w of lane L
    transpose(o).forEach((v, L) => a.store(dst, v, 64 * g + 16 * L));
  });
  a.get(dst).i32(64 * GROUPS).b.push(0x6a); // i32.add
  a.set(dst);
  a.get(groups).i32(1).b.push(0x6b); // i32.sub
  a.set(groups).get(groups);
  a.b.push(0x0d, 0, 0x0b); // br_if 0; end
  return f;
}

/**
 * The generated module: one function per law (memory imported as `env.mem`; `shared`: a shared
 * memory that may grow, for the worker pool of `noise_threads.ts`).
 */
export function noiseModuleBytes(tables: NoiseTables, raw = false, shared = false): Uint8Array {
  const fns = [GAUSSIAN, LAPLACE, UNIFORM].map((law) => lawFunction(law, raw, tables.halfPi));
  return buildModule(
    shared ? { initial: PAGES, maximum: MAX_PAGES, shared } : { initial: PAGES, shared },
    fns,
  );
}

/** A generated law function: `(groups, b0, c1, c2, sc, dst, keys)`. */
export type LawFn = (
  groups: number,
  b0: number,
  c1: number,
  c2: number,
  sc: number,
  dst: number,
  keys: number,
) => void;

/** Blocks one call of a generated function produces per loop iteration (calls round up to it). */
export const BLOCKS_PER_ITER = 4 * GROUPS;
/** Byte address of the round keys (written by {@linkcode WasmNoise.setKeys}). */
export const KEYS_BYTE = KEYS;
/** Byte address of the single-thread draw buffer (`CAP_BLOCKS` blocks). */
export const OUT_BYTE = OUT;

/**
 * An instance of the generated module with its own memory (round keys, draws, tables); with
 * `shared`, the memory is a growable shared `WebAssembly.Memory` that workers can instantiate the
 * same module over ({@linkcode WasmNoise.bytes}, {@linkcode WasmNoise.memory}).
 */
export class WasmNoise {
  /** The law functions, indexed by law code. */
  readonly fns: LawFn[];
  /** The module's bytes (what a worker compiles). */
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** The memory (shared when constructed with `shared`). */
  readonly memory: WebAssembly.Memory;
  private readonly keys: Int32Array;
  private readonly draws: Float32Array;
  private readonly raw: Uint32Array;
  private view: Float32Array;
  private k0 = NaN;
  private k1 = NaN;

  /**
   * Compiles and instantiates the module, synchronously (a few milliseconds); throws where
   * WebAssembly or its SIMD is missing (or shared memory, with `shared`). `raw`: the functions
   * transform given Philox words ({@linkcode WasmNoise.transform}) instead of generating them,
   * for the tests.
   */
  constructor(tables: NoiseTables, readonly isRaw = false, readonly shared = false) {
    const memory = shared
      ? new WebAssembly.Memory({ initial: PAGES, maximum: MAX_PAGES, shared: true })
      : new WebAssembly.Memory({ initial: PAGES });
    this.memory = memory;
    this.bytes = noiseModuleBytes(tables, isRaw, shared) as Uint8Array<ArrayBuffer>;
    const ex = new WebAssembly.Instance(new WebAssembly.Module(this.bytes), { env: { mem: memory } }).exports;
    this.fns = LAW_NAMES.map((n) => ex[n] as LawFn);
    const buf = memory.buffer;
    this.keys = new Int32Array(buf, KEYS, 80);
    this.draws = new Float32Array(buf, OUT, 4 * CAP_BLOCKS);
    this.raw = new Uint32Array(buf, RAW, 4 * CAP_BLOCKS);
    this.view = new Float32Array(buf);
    for (const e of [24, 25]) {
      const table = new Float64Array(buf, TABLE_BASE + TABLE_OFFSET[e], (TABLE_END - TABLE_BASE) / 8);
      for (let k = 0; k < e; k++) {
        for (let j = 0; j < 32; j++) {
          table[2 * (32 * k + j)] = tables.recip[j] * 2 ** -25;
          table[2 * (32 * k + j) + 1] = (e - k) * tables.ln2 - tables.offset[j];
        }
      }
    }
  }

  /** Writes the splatted round keys of the Philox key (k0, k1) at `KEYS_BYTE` (cached). */
  setKeys(k0: number, k1: number): void {
    if (k0 === this.k0 && k1 === this.k1) return;
    const keys = this.keys;
    let a = k0 | 0, b = k1 | 0;
    for (let r = 0; r < 10; r++) {
      keys.fill(a, 8 * r, 8 * r + 4);
      keys.fill(b, 8 * r + 4, 8 * r + 8);
      a = (a + W0) | 0;
      b = (b + W1) | 0;
    }
    this.k0 = k0;
    this.k1 = k1;
  }

  /**
   * The whole memory as float32 (element `byte / 4`); a new view after the memory grew. Only
   * valid until the next {@linkcode WasmNoise.reserve}.
   */
  f32(): Float32Array {
    if (this.view.length * 4 !== this.memory.buffer.byteLength) {
      this.view = new Float32Array(this.memory.buffer);
    }
    return this.view;
  }

  /** Grows the memory so that it holds at least `bytes` bytes (throws past its maximum). */
  reserve(bytes: number): void {
    const have = this.memory.buffer.byteLength;
    if (bytes > have) this.memory.grow(Math.ceil((bytes - have) / 65536));
  }

  /**
   * `out[j]` = element `start + j` of the stream with key words (k0, k1) and counter words
   * (c1, c2) under law code `law`, with `sc` the float32 factor of the law (its scale times the
   * fixed-point unit, as `transformBlock` computes it).
   */
  fill(
    out: Float32Array | Float64Array,
    law: number,
    sc: number,
    k0: number,
    k1: number,
    c1: number,
    c2: number,
    start: number,
  ): void {
    const n = out.length;
    if (n === 0) return;
    this.setKeys(k0, k1);
    const fn = this.fns[law];
    for (let j = 0, i = start; j < n;) {
      const b = Math.floor(i / 4), lane = i - 4 * b;
      const take = Math.min(n - j, 4 * CAP_BLOCKS - lane);
      fn(Math.ceil((lane + take) / (16 * GROUPS)), b | 0, c1 | 0, c2 | 0, sc, OUT, KEYS);
      out.set(this.draws.subarray(lane, lane + take), j);
      j += take;
      i += take;
    }
  }

  /** Raw mode: the draws of law `law` of the Philox blocks `words` (4 per block), into `out`. */
  transform(words: Uint32Array, law: number, sc: number, out: Float32Array): void {
    if (!this.isRaw) throw new Error("WasmNoise.transform: needs an instance created in raw mode");
    for (let i = 0; i < words.length; i += 4 * CAP_BLOCKS) {
      const part = words.subarray(i, i + 4 * CAP_BLOCKS);
      this.raw.set(part);
      this.fns[law](Math.ceil(part.length / (16 * GROUPS)), 0, 0, 0, sc, OUT, KEYS);
      out.set(this.draws.subarray(0, part.length), i);
    }
  }
}
