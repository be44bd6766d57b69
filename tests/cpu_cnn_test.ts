/**
 * The CPU fast paths the CNN training step runs through, each against a plain reference: conv2d
 * (WebAssembly kernels for float32 stride 1, the wide JavaScript path, the im2col path for other
 * strides), ReLU and its mask, per-channel broadcasts, sums over [0, 2, 3], and 2×2 max pooling.
 */
import assert from "node:assert/strict";
import {
  col2im,
  conv2dForward,
  conv2dGradInput,
  conv2dGradWeight,
  type ConvDims,
  convOutSize,
  im2col,
  setConvPath,
} from "../kernels/wasm/conv.ts";
import {
  CONV_THREAD_MIN_FLOPS,
  convThreadParticipants,
  convThreadStats,
  hasWasmConv,
  setConvThreads,
  setWasmConvGroupBudget,
} from "../kernels/wasm/conv_wasm.ts";
import { getGemmImpl, setGemmImpl } from "../kernels/wasm/gemm.ts";
import { setOutputProvider } from "../kernels/wasm/output.ts";
import { binaryLoop, unaryLoop } from "../src/cpu/elementwise.ts";
import { reduceLoop } from "../src/cpu/layout.ts";
import { pool2d, pool2dGrad, pooledSize } from "../src/cpu/nn.ts";
import type { Pool2dGeometry } from "../src/backend.ts";
import type { BinaryOp } from "../src/backend.ts";
import {
  conv2d,
  crossEntropy,
  lenet,
  maxPool2d,
  relu,
  sum,
  type Tensor,
  tensor,
  valueAndGrad,
} from "../mod.ts";
import {
  assertCloseToLargest,
  type FloatCtor,
  randArray,
  refConv,
  rng,
  withConvPath,
  withConvThreads,
} from "./_reference.ts";

const randInt = (r: () => number, lo: number, hi: number): number =>
  lo + Math.floor(((r() + 1) / 2) * (hi - lo + 1));

// ---------------------------------------------------------------- conv2d

/** Random geometries: odd sizes, kh ≠ kw, ph ≠ pw, padding up to the kernel size, channels 1..17. */
function randomDims(r: () => number, stride1: boolean): ConvDims {
  for (;;) {
    const kh = randInt(r, 1, 6), kw = randInt(r, 1, 6);
    const d: ConvDims = {
      N: randInt(r, 1, 5),
      C: randInt(r, 1, 9),
      H: randInt(r, 1, 17),
      W: randInt(r, 1, 17),
      O: randInt(r, 1, 17),
      kh,
      kw,
      sh: stride1 ? 1 : randInt(r, 1, 3),
      sw: stride1 ? 1 : randInt(r, 1, 3),
      ph: randInt(r, 0, kh),
      pw: randInt(r, 0, kw),
    };
    const { Ho, Wo } = convOutSize(d);
    if (Ho >= 1 && Wo >= 1) return d;
  }
}

const FIXED: ConvDims[] = [
  // The two LeNet layers (small batch).
  { N: 3, C: 1, H: 28, W: 28, O: 6, kh: 5, kw: 5, sh: 1, sw: 1, ph: 2, pw: 2 },
  { N: 3, C: 6, H: 14, W: 14, O: 16, kh: 5, kw: 5, sh: 1, sw: 1, ph: 0, pw: 0 },
  // Kernel as large as the padded input (one output), 1×1 kernels, wide and tall kernels.
  { N: 2, C: 3, H: 4, W: 3, O: 5, kh: 6, kw: 5, sh: 1, sw: 1, ph: 1, pw: 1 },
  { N: 2, C: 7, H: 5, W: 9, O: 13, kh: 1, kw: 1, sh: 1, sw: 1, ph: 0, pw: 0 },
  { N: 2, C: 2, H: 3, W: 19, O: 7, kh: 1, kw: 7, sh: 1, sw: 1, ph: 0, pw: 3 },
  { N: 2, C: 2, H: 19, W: 3, O: 7, kh: 7, kw: 1, sh: 1, sw: 1, ph: 3, pw: 0 },
  // Enough columns for several image groups in the JavaScript paths.
  { N: 37, C: 4, H: 20, W: 22, O: 5, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1 },
  { N: 9, C: 3, H: 21, W: 17, O: 4, kh: 3, kw: 5, sh: 2, sw: 3, ph: 1, pw: 2 },
  // Small images: the stride-1 GEMM path unfolds without the wide grid and groups images up to
  // CONV_MIN_GEMM_COLS columns (here two groups).
  { N: 40, C: 6, H: 4, W: 4, O: 7, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1 },
];

function checkConv(Ctor: FloatCtor, cases: ConvDims[], seed: number): void {
  const r = rng(seed);
  const tol = Ctor === Float64Array ? 1e-12 : 3e-6;
  for (const d of cases) {
    const { Ho, Wo } = convOutSize(d);
    const x = randArray(Ctor, d.N * d.C * d.H * d.W, r), w = randArray(Ctor, d.O * d.C * d.kh * d.kw, r);
    const gy = randArray(Ctor, d.N * d.O * Ho * Wo, r);
    const want = refConv(x, w, gy, d);
    const tag = JSON.stringify(d);
    const y = conv2dForward(x, w, d), gx = conv2dGradInput(gy, w, d), gw = conv2dGradWeight(x, gy, d);
    assert.ok(y instanceof Ctor && gx instanceof Ctor && gw instanceof Ctor, `${tag}: result type`);
    assertCloseToLargest(`y ${tag}`, y, want.y, tol);
    assertCloseToLargest(`gx ${tag}`, gx, want.gx, tol);
    assertCloseToLargest(`gw ${tag}`, gw, want.gw, tol);
  }
}

const randomStride1 = (seed: number, n: number) => {
  const r = rng(seed);
  return Array.from({ length: n }, () => randomDims(r, true));
};

Deno.test("cpu cnn: conv2d float32 stride 1 (WebAssembly kernels) matches the 7-loop reference", () => {
  assert.ok(hasWasmConv, "this engine has WebAssembly SIMD");
  withConvPath("direct", () => checkConv(Float32Array, [...FIXED, ...randomStride1(11, 60)], 1));
});

Deno.test("cpu cnn: conv2d float32 stride 1 on the GEMM path (WebAssembly GEMM) matches the reference", () => {
  withConvPath("gemm", () => checkConv(Float32Array, [...FIXED, ...randomStride1(18, 40)], 6));
});

Deno.test("cpu cnn: conv2d float32 stride 1 in auto mode (either path by shape) matches the reference", () => {
  withConvPath("auto", () => checkConv(Float32Array, [...FIXED, ...randomStride1(19, 40)], 7));
  assert.throws(
    () => setConvPath("fast" as "auto"),
    /setConvPath: mode must be "auto", "direct", "gemm" or "winograd", got fast/,
  );
});

Deno.test("cpu cnn: conv2d float32 stride 1 processed in groups of images gives the same results", () => {
  const prev = setWasmConvGroupBudget(3000); // a few images per group
  try {
    withConvPath("direct", () => checkConv(Float32Array, [...FIXED, ...randomStride1(17, 20)], 5));
  } finally {
    setWasmConvGroupBudget(prev);
  }
});

/**
 * Shapes for the threaded direct kernels: channel counts that leave a partial strip of 6 rows (whose
 * zero rows must not reach another image), odd O (the lone `gw1` channel in the last chunk), widths
 * that are not a multiple of 8 (`fold` runs past the image), more images than chunks per thread.
 */
const THREADED: ConvDims[] = [
  { N: 7, C: 16, H: 12, W: 13, O: 14, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1 },
  { N: 5, C: 9, H: 10, W: 10, O: 23, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1 },
  { N: 3, C: 5, H: 17, W: 9, O: 3, kh: 5, kw: 3, sh: 1, sw: 1, ph: 2, pw: 0 },
  { N: 9, C: 1, H: 28, W: 28, O: 6, kh: 5, kw: 5, sh: 1, sw: 1, ph: 2, pw: 2 },
  { N: 1, C: 4, H: 8, W: 8, O: 1, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1 },
];

function convAll(d: ConvDims, seed: number): Float32Array[] {
  const r = rng(seed), { Ho, Wo } = convOutSize(d);
  const x = randArray(Float32Array, d.N * d.C * d.H * d.W, r),
    w = randArray(Float32Array, d.O * d.C * d.kh * d.kw, r);
  const gy = randArray(Float32Array, d.N * d.O * Ho * Wo, r);
  return [conv2dForward(x, w, d), conv2dGradInput(gy, w, d), conv2dGradWeight(x, gy, d)] as Float32Array[];
}

const threadsIgnored = !hasWasmConv || convThreadParticipants() < 2;

Deno.test({
  name: "cpu cnn: the direct conv kernels on worker threads give the one-thread results bit for bit",
  ignore: threadsIgnored,
  fn: () => {
    withConvPath("direct", () => {
      const before = convThreadStats().workerChunks;
      for (const [i, d] of THREADED.entries()) {
        const one = withConvThreads("single", () => convAll(d, 40 + i));
        // Several calls: a worker that is still starting, then awake ones, must change nothing.
        for (let rep = 0; rep < 3; rep++) {
          const two = withConvThreads("threads", () => convAll(d, 40 + i));
          for (const k of [0, 1, 2]) {
            assert.deepEqual(two[k], one[k], `${["y", "gx", "gw"][k]} of ${JSON.stringify(d)}, call ${rep}`);
          }
        }
      }
      // Same in groups of images (the group loop publishes one job per group).
      const prev = setWasmConvGroupBudget(3000);
      try {
        const d = THREADED[0];
        const one = withConvThreads("single", () => convAll(d, 50));
        assert.deepEqual(withConvThreads("threads", () => convAll(d, 50)), one, "grouped images");
      } finally {
        setWasmConvGroupBudget(prev);
      }
      withConvThreads("threads", () => checkConv(Float32Array, THREADED, 51));
      assert.ok(convThreadStats().workers >= 1, "workers started");
      assert.ok(convThreadStats().workerChunks >= before, "worker chunk count");
    });
  },
});

Deno.test({
  name: "cpu cnn: in auto mode a ResNet-sized conv uses the workers (or retries them), a small one never",
  ignore: threadsIgnored,
  fn: () => {
    const big: ConvDims = { N: 8, C: 32, H: 16, W: 16, O: 32, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1 };
    const small: ConvDims = { N: 2, C: 4, H: 8, W: 8, O: 4, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1 };
    const flops = (d: ConvDims) => 2 * d.N * d.O * d.C * d.kh * d.kw * d.H * d.W;
    assert.ok(flops(big) >= CONV_THREAD_MIN_FLOPS && flops(small) < CONV_THREAD_MIN_FLOPS);
    withConvPath("direct", () =>
      withConvThreads("auto", () => {
        const one = withConvThreads("single", () => convAll(big, 60));
        convAll(big, 60); // starts the workers
        // Wait (bounded) until the worker has taken chunks: it proves the threaded path is taken.
        const t0 = performance.now();
        let chunks0 = convThreadStats().workerChunks, got = one;
        while (convThreadStats().workerChunks === chunks0 && performance.now() - t0 < 20000) {
          chunks0 = convThreadStats().workerChunks;
          got = convAll(big, 60);
        }
        assert.ok(convThreadStats().workerChunks > 0, "a worker computed chunks of the large conv");
        assert.deepEqual(got, one);
        const c0 = convThreadStats().workerChunks;
        for (let i = 0; i < 5; i++) convAll(small, 61);
        assert.equal(convThreadStats().workerChunks, c0, "the small conv stays on the calling thread");
      }));
  },
});

Deno.test("cpu cnn: setConvThreads rejects unknown modes", () => {
  assert.throws(
    () => setConvThreads("two" as "auto"),
    /setConvThreads: mode must be "auto", "single" or "threads", got two/,
  );
});

Deno.test("cpu cnn: conv2d with GEMM forced to JavaScript (wide and im2col paths) matches the reference", () => {
  const prev = getGemmImpl();
  setGemmImpl("js");
  try {
    checkConv(Float32Array, [...FIXED, ...randomStride1(12, 30)], 2);
  } finally {
    setGemmImpl(prev);
  }
});

Deno.test("cpu cnn: conv2d float64 and strided float32 match the reference", () => {
  checkConv(Float64Array, [...FIXED, ...randomStride1(13, 30)], 3);
  const r = rng(14);
  checkConv(Float32Array, Array.from({ length: 40 }, () => randomDims(r, false)), 4);
});

Deno.test("cpu cnn: conv2d results do not depend on earlier calls of other shapes (engine reuse)", () => {
  const r = rng(15);
  const a: ConvDims = { N: 4, C: 3, H: 9, W: 11, O: 5, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1 };
  const big: ConvDims = { N: 8, C: 6, H: 30, W: 30, O: 9, kh: 5, kw: 5, sh: 1, sw: 1, ph: 2, pw: 2 };
  const mk = (d: ConvDims) => {
    const { Ho, Wo } = convOutSize(d);
    return {
      x: randArray(Float32Array, d.N * d.C * d.H * d.W, r),
      w: randArray(Float32Array, d.O * d.C * d.kh * d.kw, r),
      gy: randArray(Float32Array, d.N * d.O * Ho * Wo, r),
    };
  };
  const A = mk(a), B = mk(big);
  const run = (d: ConvDims, t: typeof A) => [
    conv2dForward(t.x, t.w, d),
    conv2dGradInput(t.gy, t.w, d),
    conv2dGradWeight(t.x, t.gy, d),
  ];
  const first = run(a, A);
  run(big, B); // fills the engine's memory with other data
  const again = run(a, A);
  for (let i = 0; i < 3; i++) assert.deepEqual(again[i], first[i]);
});

Deno.test("cpu cnn: col2im is the adjoint of im2col across strides and paddings", () => {
  const r = rng(16);
  for (let t = 0; t < 40; t++) {
    const d = randomDims(r, false);
    const { Ho, Wo } = convOutSize(d);
    const { C, H, W, kh, kw } = d;
    const geo = { ...d, Ho, Wo };
    const P = Ho * Wo, R = C * kh * kw, ld = 2 * P + 3, colsOff = 3;
    const x = randArray(Float64Array, 2 + C * H * W, r);
    const cols = new Float64Array(R * ld).fill(7);
    im2col(x, 2, geo, cols, colsOff, ld);
    const rc = randArray(Float64Array, R * ld, r);
    let lhs = 0;
    for (let row = 0; row < R; row++) {
      for (let p = 0; p < P; p++) lhs += cols[row * ld + colsOff + p] * rc[row * ld + colsOff + p];
      for (let p = 0; p < colsOff; p++) assert.equal(cols[row * ld + p], 7, "wrote outside its columns");
      for (let p = colsOff + P; p < ld; p++) assert.equal(cols[row * ld + p], 7, "wrote outside its columns");
    }
    const back = new Float64Array(2 + C * H * W);
    col2im(rc, geo, back, 2, colsOff, ld);
    let rhs = 0;
    for (let i = 0; i < C * H * W; i++) rhs += x[2 + i] * back[2 + i];
    assert.ok(Math.abs(lhs - rhs) < 1e-9 * (1 + Math.abs(lhs)), `${JSON.stringify(d)}: ${lhs} vs ${rhs}`);
  }
});

// ---------------------------------------------------------------- elementwise

const SPECIALS = [0, -0, 1, -1, 1e-40, -1e-40, Infinity, -Infinity, NaN, -NaN, 3.5e38, -3.5e38];

Deno.test("cpu cnn: relu and its mask (step) match the plain definitions bit for bit", () => {
  const r = rng(20);
  for (const Ctor of [Float32Array, Float64Array]) {
    const x = new Ctor(1003);
    for (let i = 0; i < x.length; i++) x[i] = i < SPECIALS.length ? SPECIALS[i] : r() * 10;
    // A NaN with the sign bit set, as x86 produces (0/0).
    if (Ctor === Float32Array) new Int32Array(x.buffer)[SPECIALS.length] = 0xffc00000 | 0;
    const y = new Ctor(x.length), m = new Ctor(x.length);
    unaryLoop("relu", x, y);
    unaryLoop("step", x, m);
    for (let i = 0; i < x.length; i++) {
      const v = x[i];
      const want = v > 0 || v !== v ? v : 0;
      assert.ok(Object.is(y[i], want) || (Number.isNaN(y[i]) && Number.isNaN(want)), `relu(${v}) = ${y[i]}`);
      assert.ok(Object.is(m[i], v > 0 ? 1 : 0), `step(${v}) = ${m[i]}`);
    }
  }
});

/** NumPy-broadcast reference by index arithmetic. */
function refBinary(
  f: (a: number, b: number) => number,
  a: ArrayLike<number>,
  aShape: number[],
  b: ArrayLike<number>,
  bShape: number[],
  outShape: number[],
): Float64Array {
  const r = outShape.length, n = outShape.reduce((p, d) => p * d, 1);
  const out = new Float64Array(n);
  const offset = (shape: number[], idx: number[]) => {
    let o = 0;
    const s = r - shape.length;
    for (let i = 0; i < shape.length; i++) o = o * shape[i] + (shape[i] === 1 ? 0 : idx[i + s]);
    return o;
  };
  const idx = new Array<number>(r).fill(0);
  for (let k = 0; k < n; k++) {
    let rem = k;
    for (let i = r - 1; i >= 0; i--) {
      idx[i] = rem % outShape[i];
      rem = Math.floor(rem / outShape[i]);
    }
    out[k] = f(a[offset(aShape, idx)], b[offset(bShape, idx)]);
  }
  return out;
}

const FNS: Record<string, (a: number, b: number) => number> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
  maximum: (a, b) => (a >= b || a !== a ? a : b),
};

Deno.test("cpu cnn: binary ops with a per-channel (block) operand match the index-arithmetic reference", () => {
  const r = rng(21);
  const cases: [number[], number[]][] = [
    [[4, 6, 5, 7], [1, 6, 1, 1]],
    [[4, 6, 5, 7], [6, 1, 1]],
    [[3, 5, 4], [1, 5, 1]],
    [[2, 3, 4, 5], [1, 3, 4, 1]],
    [[2, 3, 4, 5], [2, 3, 1, 1]],
    [[3, 1, 4], [1, 1, 4]],
    [[2, 7, 1, 3], [7, 1, 1]],
  ];
  for (const Ctor of [Float32Array, Float64Array]) {
    for (const [full, part] of cases) {
      for (const op of Object.keys(FNS) as BinaryOp[]) {
        for (const swap of [false, true]) {
          const [aShape, bShape] = swap ? [part, full] : [full, part];
          const a = randArray(Ctor, aShape.reduce((p, d) => p * d, 1), r);
          const b = randArray(Ctor, bShape.reduce((p, d) => p * d, 1), r);
          const out = new Ctor(full.reduce((p, d) => p * d, 1));
          binaryLoop(op, a, aShape, b, bShape, out, full);
          const want = refBinary(FNS[op], a, aShape, b, bShape, full);
          const tag = `${op} ${JSON.stringify(aShape)} ${JSON.stringify(bShape)} ${Ctor.name}`;
          for (let i = 0; i < out.length; i++) {
            assert.ok(
              Object.is(out[i], Ctor === Float32Array ? Math.fround(want[i]) : want[i]),
              `${tag} [${i}]`,
            );
          }
        }
      }
    }
  }
});

Deno.test("cpu cnn: sums and maxima over reduced prefix and suffix axes (bias gradients) match the reference", () => {
  const r = rng(22);
  const cases: [number[], number[]][] = [
    [[5, 6, 7, 3], [0, 2, 3]],
    [[5, 6, 7, 3], [0, 3]],
    [[5, 6, 7, 3], [0, 1, 3]],
    [[5, 6, 7, 3], [2, 3]],
    [[4, 3, 2], [0, 2]],
    [[4, 3, 2, 2, 3], [0, 1, 4]],
  ];
  for (const Ctor of [Float32Array, Float64Array]) {
    for (const [shape, axes] of cases) {
      const n = shape.reduce((p, d) => p * d, 1);
      const x = randArray(Ctor, n, r);
      for (const op of ["sum", "max"] as const) {
        const kept = shape.map((d, i) => (axes.includes(i) ? 1 : d));
        const out = new Ctor(kept.reduce((p, d) => p * d, 1));
        reduceLoop(op, x, shape, axes, out);
        // Reference: walk every element, accumulate in float64.
        const want = new Float64Array(out.length).fill(op === "sum" ? 0 : -Infinity);
        const idx = new Array<number>(shape.length).fill(0);
        for (let k = 0; k < n; k++) {
          let rem = k;
          for (let i = shape.length - 1; i >= 0; i--) {
            idx[i] = rem % shape[i];
            rem = Math.floor(rem / shape[i]);
          }
          let o = 0;
          for (let i = 0; i < shape.length; i++) o = o * kept[i] + (axes.includes(i) ? 0 : idx[i]);
          want[o] = op === "sum" ? want[o] + x[k] : Math.max(want[o], x[k]);
        }
        assertCloseToLargest(`${op} ${JSON.stringify(shape)} over ${JSON.stringify(axes)}`, out, want, 1e-6);
      }
    }
  }
  // NaN propagates through max.
  const x = new Float32Array([1, NaN, 2, 3, 4, 5, 6, 7]), out = new Float32Array(2);
  reduceLoop("max", x, [2, 2, 2], [0, 2], out);
  assert.ok(Number.isNaN(out[0]) && out[1] === 7, `${out}`);
});

// ---------------------------------------------------------------- pooling

/** The generic scan (a copy of the loop the 2×2 path replaces). */
function refMaxPool(x: ArrayLike<number>, planes: number, h: number, w: number, geo: Pool2dGeometry) {
  const [kh, kw] = geo.kernel, [sh, sw] = geo.stride, [ph, pw] = geo.padding;
  const ho = pooledSize(h, kh, sh, ph), wo = pooledSize(w, kw, sw, pw);
  const y = new Float64Array(planes * ho * wo), am = new Float64Array(y.length);
  for (let p = 0; p < planes; p++) {
    for (let oy = 0; oy < ho; oy++) {
      for (let ox = 0; ox < wo; ox++) {
        let best = -Infinity, bestK = 0;
        for (let ky = 0; ky < kh; ky++) {
          for (let kx = 0; kx < kw; kx++) {
            const iy = oy * sh - ph + ky, ix = ox * sw - pw + kx;
            if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
            const v = x[p * h * w + iy * w + ix];
            if (v > best) {
              best = v;
              bestK = ky * kw + kx;
            }
          }
        }
        y[(p * ho + oy) * wo + ox] = best;
        am[(p * ho + oy) * wo + ox] = bestK;
      }
    }
  }
  return { y, am };
}

Deno.test("cpu cnn: 2×2 stride-2 max pooling and its gradient match the generic scan (ties, NaN, ±Infinity)", () => {
  const r = rng(23);
  const geo: Pool2dGeometry = { kernel: [2, 2], stride: [2, 2], padding: [0, 0] };
  for (const Ctor of [Float32Array, Float64Array]) {
    for (const [planes, h, w] of [[3, 8, 8], [2, 7, 9], [4, 28, 28], [1, 2, 3], [5, 11, 6]]) {
      const x = new Ctor(planes * h * w);
      // Few distinct values so that windows hold ties; some specials.
      for (let i = 0; i < x.length; i++) x[i] = Math.round(r() * 3);
      for (let i = 0; i < x.length; i += 7) x[i] = [NaN, -Infinity, Infinity, -0][(i / 7) % 4];
      const ho = pooledSize(h, 2, 2, 0), wo = pooledSize(w, 2, 2, 0);
      const y = new Ctor(planes * ho * wo), am = new Ctor(y.length);
      pool2d("max", x, planes, h, w, geo, y, am);
      const want = refMaxPool(x, planes, h, w, geo);
      const tag = `${Ctor.name} ${planes}×${h}×${w}`;
      for (let i = 0; i < y.length; i++) {
        assert.ok(
          Object.is(y[i], Ctor === Float32Array ? Math.fround(want.y[i]) : want.y[i]),
          `${tag} y[${i}]`,
        );
        assert.equal(am[i], want.am[i], `${tag} argmax[${i}]`);
      }
      const gy = randArray(Ctor, y.length, r), gx = new Ctor(x.length);
      pool2dGrad("max", gy, planes, h, w, geo, gx, am);
      const wantGx = new Float64Array(x.length);
      for (let p = 0; p < planes; p++) {
        for (let oy = 0; oy < ho; oy++) {
          for (let ox = 0; ox < wo; ox++) {
            const o = (p * ho + oy) * wo + ox, k = am[o];
            wantGx[p * h * w + (2 * oy + Math.floor(k / 2)) * w + 2 * ox + (k % 2)] += gy[o];
          }
        }
      }
      assertCloseToLargest(`${tag} gx`, gx, wantGx, 0);
    }
  }
});

// ---------------------------------------------------------------- end to end

Deno.test("cpu cnn: LeNet gradients (float32 fast paths) agree with float64", () => {
  const net = lenet({ seed: 3 });
  const r = rng(24);
  const xs = randArray(Float64Array, 4 * 28 * 28, r);
  const labels = [1, 7, 3, 0];
  const loss = (p: typeof net.params, x: Tensor) => crossEntropy(net.forward(p, x), labels);
  const g32 = valueAndGrad(loss)(net.params, tensor(xs, [4, 1, 28, 28]));
  const cast = (t: Tensor) => tensor(t.dataSync(), t.shape as number[], { dtype: "float64" });
  const p64 = {
    conv1: { w: cast(net.params.conv1.w), b: cast(net.params.conv1.b) },
    conv2: { w: cast(net.params.conv2.w), b: cast(net.params.conv2.b) },
    fc: net.params.fc.map((l) => ({ w: cast(l.w), b: cast(l.b) })),
  };
  const g64 = valueAndGrad(loss)(p64, tensor(xs, [4, 1, 28, 28], { dtype: "float64" }));
  assert.ok(Math.abs(g32.value.item() - g64.value.item()) < 1e-5);
  const pairs: [string, Tensor, Tensor][] = [
    ["conv1.w", g32.grads.conv1.w, g64.grads.conv1.w],
    ["conv1.b", g32.grads.conv1.b, g64.grads.conv1.b],
    ["conv2.w", g32.grads.conv2.w, g64.grads.conv2.w],
    ["conv2.b", g32.grads.conv2.b, g64.grads.conv2.b],
  ];
  for (const [name, a, b] of pairs) assertCloseToLargest(name, a.dataSync(), b.dataSync(), 1e-4);
  // And the ops themselves on a small input, through the public API.
  const x = tensor([[[[1, -2, 3], [4, 5, -6], [7, 8, 9]]]]);
  const y = maxPool2d(relu(conv2d(x, tensor([[[[1, 0], [0, 1]]]]), { padding: 1 })), { kernel: 2 });
  assert.deepEqual(Array.from(y.dataSync()), [6, 3, 12, 14]);
  assert.equal(sum(y).item(), 35);
});

Deno.test("cpu cnn: every conv path overwrites the whole array an output provider hands it (NaN-filled here)", () => {
  let handed = 0;
  const prev = setOutputProvider((n, f64) => {
    handed++;
    return (f64 ? new Float64Array(n) : new Float32Array(n)).fill(NaN);
  });
  try {
    const winogradSized = [
      { N: 3, C: 16, H: 8, W: 8, O: 17, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1 },
      { N: 2, C: 16, H: 4, W: 4, O: 16, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1 },
    ];
    for (const mode of ["direct", "gemm", "auto", "winograd"] as const) {
      withConvPath(
        mode,
        () => checkConv(Float32Array, [...FIXED, ...winogradSized, ...randomStride1(23, 10)], 8),
      );
    }
    const prevImpl = getGemmImpl();
    setGemmImpl("js");
    try {
      checkConv(Float32Array, FIXED, 9);
    } finally {
      setGemmImpl(prevImpl);
    }
    checkConv(Float64Array, FIXED.slice(0, 4), 10);
  } finally {
    setOutputProvider(prev);
  }
  assert.ok(handed > 0, "the provider was used");
});
