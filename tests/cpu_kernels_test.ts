import assert from "node:assert/strict";
import { denoEval } from "./_examples.ts";
import {
  gemm,
  gemmCapabilities,
  type GemmImpl,
  gemmThreadStats,
  getGemmImpl,
  getGemmThreads,
  setGemmImpl,
  setGemmThreads,
  setGemmWorkerKind,
  shutdownGemmWorkers,
} from "../kernels/wasm/gemm.ts";
import { WasmGemmEngine } from "../kernels/wasm/gemm_wasm.ts";
import type { GemmTiling } from "../kernels/wasm/gemm_wasm_module.ts";

/** Reference: float64 triple loop straight from the definition. */
function refGemm(
  tA: boolean,
  tB: boolean,
  M: number,
  N: number,
  K: number,
  a: ArrayLike<number>,
  aOff: number,
  b: ArrayLike<number>,
  bOff: number,
): Float64Array {
  const c = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) {
        s += a[aOff + (tA ? k * M + i : i * K + k)] * b[bOff + (tB ? j * K + k : k * N + j)];
      }
      c[i * N + j] = s;
    }
  }
  return c;
}

const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [1, 17, 3],
  [3, 1, 33],
  [17, 33, 65],
  [33, 3, 127],
  [65, 130, 17],
  [127, 65, 257],
  [130, 127, 300],
  [6, 8, 256],
  [200, 40, 70],
];

function checkImpl(impl: GemmImpl, Ctor: FloatCtor, tol: number): void {
  setGemmImpl(impl);
  const r = rng(42);
  try {
    for (const [M, N, K] of SHAPES) {
      for (const tA of [false, true]) {
        for (const tB of [false, true]) {
          const aOff = 3, bOff = 5, cOff = 7;
          const a = randArray(Ctor, aOff + M * K, r), b = randArray(Ctor, bOff + K * N, r);
          const c = new Ctor(cOff + M * N + 2).fill(123);
          gemm({ transA: tA, transB: tB, M, N, K, a, aOff, b, bOff, c, cOff });
          const want = refGemm(tA, tB, M, N, K, a, aOff, b, bOff);
          for (let i = 0; i < M * N; i++) {
            const got = c[cOff + i];
            if (!(Math.abs(got - want[i]) <= tol * Math.sqrt(K))) {
              assert.fail(
                `${impl} ${Ctor.name} tA=${tA} tB=${tB} M=${M} N=${N} K=${K}: c[${i}]=${got}, want ${
                  want[i]
                }`,
              );
            }
          }
          assert.equal(c[cOff - 1], 123, "wrote before cOff");
          assert.equal(c[cOff + M * N], 123, "wrote after C");
        }
      }
    }
  } finally {
    setGemmImpl("auto");
  }
}

Deno.test("gemm float64 (plain JS) matches the reference", () => checkImpl("auto", Float64Array, 1e-13));
Deno.test("gemm float32 js matches the reference", () => checkImpl("js", Float32Array, 1e-5));

const caps = gemmCapabilities();

Deno.test({
  name: "gemm float32 wasm matches the reference",
  ignore: !caps.wasmSimd,
  fn: () => checkImpl("wasm", Float32Array, 1e-5),
});

/** Runs threaded products until a worker has computed a chunk (workers start asynchronously). */
async function assertWorkersJoin(): Promise<void> {
  setGemmImpl("wasm-threads");
  try {
    const n = 256, a = new Float32Array(n * n).fill(1), c = new Float32Array(n * n);
    const before = gemmThreadStats().workerChunks;
    const t0 = Date.now();
    while (gemmThreadStats().workerChunks === before && Date.now() - t0 < 10_000) {
      gemm({ M: n, N: n, K: n, a, b: a, c });
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(gemmThreadStats().workers >= 1, "no worker started");
    assert.ok(gemmThreadStats().workerChunks > before, "workers never computed a chunk");
    assert.equal(c[n * n - 1], n);
  } finally {
    setGemmImpl("auto");
  }
}

Deno.test({
  name: "gemm float32 wasm-threads (node:worker_threads) matches the reference",
  ignore: caps.threads < 2,
  fn: async () => {
    await assertWorkersJoin();
    checkImpl("wasm-threads", Float32Array, 1e-5);
  },
});

Deno.test({
  name: "a script using threaded gemm exits by itself",
  ignore: caps.threads < 2 || Deno.permissions.querySync({ name: "run" }).state !== "granted",
  fn: async () => {
    const url = new URL("../kernels/wasm/gemm.ts", import.meta.url).href;
    const code = `import { gemm, gemmThreadStats, setGemmImpl } from "${url}";
      setGemmImpl("wasm-threads");
      const a = new Float32Array(512 * 512).fill(1), c = new Float32Array(512 * 512);
      for (let i = 0; i < 20; i++) gemm({ M: 512, N: 512, K: 512, a, b: a, c });
      await new Promise((r) => setTimeout(r, 300));
      gemm({ M: 512, N: 512, K: 512, a, b: a, c });
      console.log(c[0], gemmThreadStats().workers);`;
    const out = await denoEval(code);
    assert.equal(out.code, 0, `exit code ${out.code}: ${out.stderr}`);
    assert.equal(out.stdout.trim(), `512 ${caps.threads - 1}`);
  },
});

Deno.test({
  name: "gemm float32 wasm-threads (Web Workers) matches the reference",
  ignore: caps.threads < 2,
  fn: async () => {
    setGemmWorkerKind("web");
    try {
      await assertWorkersJoin();
      checkImpl("wasm-threads", Float32Array, 1e-5);
    } finally {
      shutdownGemmWorkers();
      setGemmWorkerKind("node");
    }
  },
});

Deno.test({
  name: "gemm setGemmThreads: 1 and 2 participants give the wasm bits (auto, wasm-threads); bad counts throw",
  ignore: caps.threads < 2,
  fn: async () => {
    const r = rng(11);
    const [M, N, K] = [203, 150, 190]; // above GEMM_THREAD_MIN_FLOPS; rows of C in chunks
    const a = randArray(Float32Array, M * K, r), b = randArray(Float32Array, K * N, r);
    const product = () => {
      const c = new Float32Array(M * N);
      gemm({ transA: true, M, N, K, a, b, c });
      return new Uint32Array(c.buffer);
    };
    setGemmImpl("wasm");
    const want = product();
    try {
      for (const impl of ["auto", "wasm-threads"] as const) {
        setGemmImpl(impl);
        for (const k of [1, 2]) {
          assert.equal(setGemmThreads(k), "auto");
          assert.equal(getGemmThreads(), k);
          const before = gemmThreadStats().workerChunks;
          const t0 = Date.now();
          do {
            assert.deepEqual(product(), want, `${impl}, ${k} participants`);
            await new Promise((res) => setTimeout(res, 5));
          } while (k === 2 && gemmThreadStats().workerChunks === before && Date.now() - t0 < 10_000);
          if (k === 1) {
            assert.equal(gemmThreadStats().workerChunks, before, `${impl}: 1 participant used a worker`);
          } else assert.ok(gemmThreadStats().workerChunks > before, `${impl}: the worker never joined`);
          setGemmThreads("auto");
        }
      }
    } finally {
      setGemmImpl("auto");
      setGemmThreads("auto");
    }
    for (const bad of [0, caps.threads + 1, 1.5, "2"]) {
      assert.throws(
        () => setGemmThreads(bad as number),
        /setGemmThreads: threads must be "auto" or an integer in \[1, \d+\] \(the participants available/,
      );
    }
    assert.equal(getGemmThreads(), "auto");
  },
});

Deno.test({
  name: "gemm auto: large products and repeated calls agree with js",
  ignore: !caps.wasmSimd,
  fn: () => {
    const r = rng(7);
    const [M, N, K] = [300, 260, 500];
    const a = randArray(Float32Array, M * K, r), b = randArray(Float32Array, K * N, r);
    const want = new Float32Array(M * N), got = new Float32Array(M * N);
    setGemmImpl("js");
    gemm({ transB: true, M, N, K: K / 2, a, b, c: want });
    setGemmImpl("auto");
    for (let rep = 0; rep < 3; rep++) {
      gemm({ transB: true, M, N, K: K / 2, a, b, c: got });
      for (let i = 0; i < M * N; i++) assert.ok(Math.abs(got[i] - want[i]) < 1e-3, `rep ${rep} c[${i}]`);
    }
    assert.equal(getGemmImpl(), "auto");
  },
});

Deno.test({
  name: "generated kernels are correct for other tilings (no FMA, other tiles, unrolls, tiny blocks)",
  ignore: !caps.wasmSimd,
  fn: () => {
    const tilings: GemmTiling[] = [
      { MR: 6, NR: 8, KC: 256, MC: 120, NC: 1024, unroll: 4, fma: false },
      { MR: 4, NR: 12, KC: 16, MC: 8, NC: 24, unroll: 1, fma: caps.relaxedSimd },
      { MR: 3, NR: 4, KC: 7, MC: 9, NC: 8, unroll: 2, fma: caps.relaxedSimd },
      { MR: 1, NR: 16, KC: 33, MC: 5, NC: 32, unroll: 8, fma: false },
    ];
    const r = rng(5);
    for (const t of tilings) {
      const e = new WasmGemmEngine(t, false, 1);
      for (const [M, N, K] of [[1, 1, 1], [17, 33, 65], [65, 31, 40], [9, 130, 3]]) {
        for (const tA of [false, true]) {
          for (const tB of [false, true]) {
            const a = randArray(Float32Array, M * K, r) as Float32Array;
            const b = randArray(Float32Array, K * N, r) as Float32Array;
            const c = new Float32Array(M * N);
            e.gemm({ transA: tA, transB: tB, M, N, K, a, aOff: 0, b, bOff: 0, c, cOff: 0 });
            const want = refGemm(tA, tB, M, N, K, a, 0, b, 0);
            for (let i = 0; i < M * N; i++) {
              if (!(Math.abs(c[i] - want[i]) < 1e-4)) {
                assert.fail(
                  `${JSON.stringify(t)} tA=${tA} tB=${tB} ${M}x${N}x${K}: c[${i}]=${c[i]}, want ${want[i]}`,
                );
              }
            }
          }
        }
      }
    }
  },
});

Deno.test("gemm edge cases and argument errors", () => {
  const c = new Float32Array(6).fill(9);
  gemm({ M: 2, N: 3, K: 0, a: new Float32Array(0), b: new Float32Array(0), c });
  assert.deepEqual(Array.from(c), [0, 0, 0, 0, 0, 0]);
  gemm({ M: 0, N: 3, K: 4, a: new Float32Array(0), b: new Float32Array(12), c });
  const a = new Float32Array(4), b = new Float64Array(4);
  assert.throws(() => gemm({ M: 2, N: 2, K: 2, a, b, c: a }), /a, b and c must have one type/);
  assert.throws(
    () => gemm({ M: 2, N: 2, K: 2, a, aOff: 1, b: a, c: new Float32Array(4) }),
    /a needs 4 elements/,
  );
  assert.throws(() => gemm({ M: -1, N: 2, K: 2, a, b: a, c: a }), /M must be an integer >= 0, got -1/);
  assert.throws(() => setGemmImpl("gpu" as GemmImpl), /which must be/);
});

// ---------------------------------------------------------------------------------------------
// Convolution via im2col / col2im.

import {
  col2im,
  conv2dForward,
  conv2dGradInput,
  conv2dGradWeight,
  type ConvDims,
  convOutSize,
  im2col,
} from "../kernels/wasm/conv.ts";
import { type FloatCtor, randArray, refConv, rng } from "./_reference.ts";

function assertClose(name: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: number): void {
  assert.equal(got.length, want.length, `${name}: length`);
  for (let i = 0; i < want.length; i++) {
    if (!(Math.abs(got[i] - want[i]) <= tol * (1 + Math.abs(want[i])))) {
      assert.fail(`${name}[${i}] = ${got[i]}, want ${want[i]}`);
    }
  }
}

const CONV_CASES: ConvDims[] = [
  { N: 2, C: 3, H: 7, W: 6, O: 4, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1 },
  { N: 3, C: 2, H: 9, W: 8, O: 5, kh: 3, kw: 2, sh: 2, sw: 3, ph: 0, pw: 2 },
  { N: 1, C: 1, H: 5, W: 5, O: 1, kh: 5, kw: 5, sh: 1, sw: 1, ph: 0, pw: 0 },
  { N: 4, C: 8, H: 12, W: 12, O: 16, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1 },
  { N: 2, C: 3, H: 4, W: 5, O: 2, kh: 1, kw: 1, sh: 2, sw: 2, ph: 2, pw: 1 },
];

for (const Ctor of [Float64Array, Float32Array]) {
  Deno.test(`conv2d forward / grad input / grad weight (${Ctor.name}) match the 7-loop reference`, () => {
    const r = rng(3);
    const tol = Ctor === Float64Array ? 1e-12 : 2e-5;
    for (const d of CONV_CASES) {
      const { Ho, Wo } = convOutSize(d);
      const x = randArray(Ctor, d.N * d.C * d.H * d.W, r), w = randArray(Ctor, d.O * d.C * d.kh * d.kw, r);
      const gy = randArray(Ctor, d.N * d.O * Ho * Wo, r);
      const want = refConv(x, w, gy, d);
      const tag = JSON.stringify(d);
      assertClose(`y ${tag}`, conv2dForward(x, w, d), want.y, tol);
      assertClose(`gx ${tag}`, conv2dGradInput(gy, w, d), want.gx, tol);
      assertClose(`gw ${tag}`, conv2dGradWeight(x, gy, d), want.gw, tol);
    }
  });
}

Deno.test("col2im is the adjoint of im2col (offsets, batched row stride)", () => {
  const r = rng(9);
  const [C, H, W, kh, kw, sh, sw, ph, pw] = [2, 6, 7, 3, 2, 2, 1, 1, 2];
  const { Ho, Wo } = convOutSize({ N: 1, C, H, W, O: 1, kh, kw, sh, sw, ph, pw });
  const geo = { C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo };
  const P = Ho * Wo, R = C * kh * kw, ld = 3 * P, colsOff = P;
  const x = randArray(Float64Array, 5 + C * H * W, r);
  const cols = new Float64Array(R * ld).fill(7);
  im2col(x, 5, geo, cols, colsOff, ld);
  const rc = randArray(Float64Array, R * ld, r);
  let lhs = 0;
  for (let row = 0; row < R; row++) {
    for (let p = 0; p < P; p++) lhs += cols[row * ld + colsOff + p] * rc[row * ld + colsOff + p];
    assert.equal(cols[row * ld], 7, "wrote outside its columns");
  }
  const back = new Float64Array(5 + C * H * W);
  col2im(rc, geo, back, 5, colsOff, ld);
  let rhs = 0;
  for (let i = 0; i < C * H * W; i++) rhs += x[5 + i] * back[5 + i];
  assert.ok(Math.abs(lhs - rhs) < 1e-10, `${lhs} vs ${rhs}`);
});

Deno.test("conv2d argument errors name the argument", () => {
  const d: ConvDims = { N: 1, C: 1, H: 2, W: 2, O: 1, kh: 3, kw: 3, sh: 1, sw: 1, ph: 0, pw: 0 };
  assert.throws(() => conv2dForward(new Float32Array(4), new Float32Array(9), d), /kernel 3×3 does not fit/);
  assert.throws(
    () => conv2dForward(new Float32Array(4), new Float32Array(9), { ...d, sh: 0 }),
    /sh must be an integer >= 1, got 0/,
  );
  assert.throws(
    () => conv2dForward(new Float32Array(5), new Float32Array(1), { ...d, kh: 1, kw: 1 }),
    /x must have 4 elements, got 5/,
  );
});
