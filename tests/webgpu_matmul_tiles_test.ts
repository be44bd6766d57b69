/**
 * The register-blocked WebGPU matmul (8×8 outputs per thread, `kernels/wgsl/matmul_wide.ts`) under
 * `setMatmulKernel("8x8")`: against the CPU matmul on square and ragged sizes (1 … 200), all four
 * transposition combinations, batches and broadcast batches, each of its four tiles (64/128 a side);
 * bit for bit against the 4×4 kernel (the same K order); the fused linear layer (bias + ReLU
 * epilogue, masked operands, the bias gradient's row of ones) through it; the selection rule (the
 * convolutions through it: tests/webgpu_conv_test.ts).
 */
import assert from "node:assert/strict";
import { type Backend, getBackend } from "../src/backend.ts";
import "../src/cpu/backend.ts";
import { shapeSize, type Tensor } from "../src/tensor.ts";
import { chooseWideTile, matmulWideKernel, wideSupports } from "../kernels/wgsl/matmul_wide.ts";
import {
  type MatmulDispatch,
  type MatmulKernelChoice,
  setMatmulKernel,
  wideKernelFor,
} from "../src/webgpu/matmul_ops.ts";
import { testRng } from "../src/webgpu/testing.ts";
import { webgpuSuite } from "./_webgpu.ts";
import { withSetting } from "./_reference.ts";

const { gpu, ignore } = await webgpuSuite("webgpu_matmul_tiles_test", "webgpu matmul tiles");
const cpu: Backend = getBackend("cpu");
const G = gpu as Backend;

const rng = testRng(2024);
const fmt = (s: readonly number[]) => `[${s.join(", ")}]`;

/** A CPU tensor and its GPU twin holding the same float32 data. */
function pair(shape: readonly number[]): [Tensor, Tensor] {
  const d = Float32Array.from({ length: shapeSize(shape) }, () => 2 * rng() - 1);
  return [cpu.fromArray(d, shape, "float32"), G.fromArray(d, shape, "float32")];
}

/** `f` run with the matmul kernel `choice`, the previous choice restored after. */
const withKernel = <T>(choice: MatmulKernelChoice, f: () => T): T => withSetting(setMatmulKernel, choice, f);

/** GPU data within the matmul tolerance of the CPU's (as tests/webgpu_kernels_test.ts). */
function assertClose(who: string, got: Float32Array, want: ArrayLike<number>, K: number): void {
  assert.equal(got.length, want.length, `${who}: length`);
  const atol = 2e-6 * K, rtol = 1e-5;
  for (let i = 0; i < want.length; i++) {
    if (!(Math.abs(got[i] - want[i]) <= atol + rtol * Math.abs(want[i]))) {
      assert.fail(`${who}: element ${i}: gpu ${got[i]} vs cpu ${want[i]}`);
    }
  }
}

/** The first index where two arrays differ in bits, or -1. */
function firstBitDifference(a: Float32Array, b: Float32Array): number {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length),
    y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  if (x.length !== y.length) return 0;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

/**
 * `op(a)·op(b)` through the 8×8 kernel: close to the CPU, and the same bits as the 4×4 kernel (each
 * output summed in the same order).
 */
async function checkProduct(
  sa: number[],
  sb: number[],
  tA: boolean,
  tB: boolean,
  out: number[],
): Promise<void> {
  const [ca, ga] = pair(sa), [cb, gb] = pair(sb);
  const K = tA ? sa[sa.length - 2] : sa[sa.length - 1];
  const who = `matmul ${fmt(sa)}${tA ? "ᵀ" : ""}·${fmt(sb)}${tB ? "ᵀ" : ""}`;
  const wide = withKernel("8x8", () => G.matmul(ga, gb, tA, tB, out));
  const narrow = withKernel("4x4", () => G.matmul(ga, gb, tA, tB, out));
  const want = cpu.matmul(ca, cb, tA, tB, out);
  assert.deepEqual(wide.shape, want.shape, `${who}: shape`);
  const w = await wide.data() as Float32Array, n = await narrow.data() as Float32Array;
  assertClose(who, w, want.dataSync(), K);
  const i = firstBitDifference(w, n);
  assert.equal(i, -1, `${who}: 8×8 and 4×4 kernels differ at element ${i}: ${w[i]} vs ${n[i]}`);
  for (const t of [ga, gb, wide, narrow]) G.release(t);
}

Deno.test(
  { name: "webgpu matmul tiles: 8×8 kernel, square sizes, every transposition", ignore },
  async () => {
    for (const s of [1, 3, 17, 63, 64, 65, 127, 129, 200]) {
      for (const [tA, tB] of [[false, false], [false, true], [true, false], [true, true]]) {
        await checkProduct([s, s], [s, s], tA, tB, [s, s]);
      }
    }
  },
);

Deno.test(
  { name: "webgpu matmul tiles: 8×8 kernel, ragged sizes (vec4 and scalar operands)", ignore },
  async () => {
    const dims = [1, 3, 4, 17, 63, 64, 65, 127, 129, 200];
    const pick = () => dims[Math.floor(rng() * dims.length)];
    for (let t = 0; t < 32; t++) {
      const M = pick(), N = pick(), K = pick();
      const tA = t % 2 === 1, tB = (t >> 1) % 2 === 1;
      await checkProduct(tA ? [K, M] : [M, K], tB ? [N, K] : [K, N], tA, tB, [M, N]);
    }
  },
);

Deno.test(
  { name: "webgpu matmul tiles: 8×8 kernel, batches, broadcast batches, every tile", ignore },
  async () => {
    const cases: [number[], number[], boolean, boolean, number[]][] = [
      [[2, 3, 5, 7], [7, 9], false, false, [2, 3, 5, 9]],
      [[1, 6, 4], [3, 4, 6], true, true, [3, 4, 4]],
      [[4, 1, 8, 12], [1, 3, 12, 5], false, false, [4, 3, 8, 5]],
      [[8, 200, 30], [8, 30, 260], false, false, [8, 200, 260]],
      [[8, 31, 201], [8, 259, 31], true, true, [8, 201, 259]],
      [[2, 1, 3, 2, 5, 6], [1, 2, 1, 2, 6, 7], false, false, [2, 2, 3, 2, 5, 7]],
      // many batches: 128×128, 128×64 and 64×128 tiles (64×64 above)
      [[64, 129, 12], [64, 12, 130], false, false, [64, 129, 130]],
      [[128, 13, 200], [1, 13, 60], true, false, [128, 200, 60]],
      [[128, 64, 9], [128, 200, 9], false, true, [128, 64, 200]],
    ];
    const tiles = new Set(cases.map(([, , , , out]) => {
      const t = chooseWideTile(out[out.length - 2], out[out.length - 1], shapeSize(out.slice(0, -2)));
      return `${t.m}x${t.n}`;
    }));
    assert.deepEqual(
      [...tiles].sort(),
      ["128x128", "128x64", "64x128", "64x64"],
      "every tile of the 8×8 kernel",
    );
    for (const [sa, sb, tA, tB, out] of cases) await checkProduct(sa, sb, tA, tB, out);
  },
);

Deno.test({ name: "webgpu matmul tiles: fused linear through the 8×8 kernel", ignore }, async () => {
  for (const [rows, IN, OUT] of [[33, 65, 17], [130, 64, 200], [7, 5, 3], [64, 128, 64]]) {
    for (const withBias of [true, false]) {
      const [cx, gx] = pair([rows, IN]), [cw, gw] = pair([IN, OUT]), [cb, gb] = pair([OUT]);
      const [cg, gg] = pair([rows, OUT]);
      const label = `linear ${rows}×${IN}·${IN}×${OUT}${withBias ? " +b" : ""}`;
      const run = () => {
        const y = G.linear(gx, gw, withBias ? gb : null, "relu");
        return { y, ...G.linearGrad(gx, gw, y, gg, { x: true, w: true, b: true }) };
      };
      const wide = withKernel("8x8", run), narrow = withKernel("4x4", run);
      const y = cpu.linear(cx, cw, withBias ? cb : null, "relu");
      const want = { y, ...cpu.linearGrad(cx, cw, y, cg, { x: true, w: true, b: true }) };
      const inner = { y: IN, gx: OUT, gw: rows, gb: rows };
      for (const k of ["y", "gx", "gw", "gb"] as const) {
        const w = await wide[k]!.data() as Float32Array, n = await narrow[k]!.data() as Float32Array;
        assertClose(`${label}: ${k}`, w, want[k]!.dataSync(), inner[k]);
        const i = firstBitDifference(w, n);
        assert.equal(i, -1, `${label}: ${k}: 8×8 and 4×4 differ at element ${i}: ${w[i]} vs ${n[i]}`);
      }
      for (const t of [gx, gw, gb, gg, ...Object.values(wide), ...Object.values(narrow)]) if (t) G.release(t);
    }
  }
});

Deno.test({ name: "webgpu matmul tiles: the switch picks the kernel of each dispatch", ignore }, async () => {
  const [, ga] = pair([40, 24]), [, gb] = pair([24, 36]);
  // the pipeline key of each dispatch ("…/w64x64/…" for the 8×8 kernel)
  const cache = gpu!.pipelines, get = cache.get;
  const keys: string[] = [];
  cache.get = (spec) => (keys.push(spec.key), get.call(cache, spec));
  try {
    for (const choice of ["4x4", "auto", "8x8"] as const) {
      G.release(withKernel(choice, () => G.matmul(ga, gb, false, false, [40, 36])));
    }
  } finally {
    cache.get = get;
  }
  assert.deepEqual(keys, [
    "matmulNN/32x32/vec-k/vec-n/cv/batch",
    "matmulNN/32x32/vec-k/vec-n/cv/batch",
    "matmulNN/w64x64/vec-k/vec-n/cv/batch",
  ]);
  await gpu!.sync();
  G.release(ga);
  G.release(gb);
});

Deno.test("webgpu matmul tiles: the selection and the tile rule", () => {
  const plain: MatmulDispatch = {
    name: "matmulNN",
    variant: { a: "vec-k", b: "vec-n", cVec: true, splitK: false, loaders: "" },
    M: 512,
    N: 512,
    K: 512,
    z: 1,
    batch: { shape: [], a: [], b: [] },
    extra: [],
    bufs: [],
  };
  assert.equal(wideKernelFor(plain, "auto"), false, "auto: the 4×4 kernel (nothing measured on a GPU yet)");
  assert.equal(wideKernelFor(plain, "4x4"), false);
  assert.equal(wideKernelFor(plain, "8x8"), true);
  const conv = {
    ...plain,
    variant: { ...plain.variant, b: "col-n" as const, gather: { setup: "" }, fusion: { biasRows: true } },
  };
  assert.equal(wideKernelFor(conv, "8x8"), true, "the convolutions (gathered columns, per-row bias) too");
  assert.equal(wideKernelFor(conv, "auto"), false);
  const split = { ...plain, variant: { ...plain.variant, splitK: true }, tile: { m: 64, n: 64 } as const };
  assert.equal(wideKernelFor(split, "8x8"), true, "split K (the 4×4 tile is the 4×4 kernel's only)");
  assert.equal(wideSupports(conv.variant), true);
  const colA = { ...plain.variant, a: "col-n" as const };
  assert.equal(wideSupports(colA), false, "col-n is B's only");
  assert.throws(() => matmulWideKernel({ ...colA, tile: { m: 64, n: 64 } }), /with a col-n is not supported/);
  assert.throws(() => setMatmulKernel("16x16" as MatmulKernelChoice), /setMatmulKernel: choice "16x16"/);
  assert.deepEqual(chooseWideTile(4096, 4096, 1), { m: 128, n: 128 });
  assert.deepEqual(chooseWideTile(2048, 2048, 1), { m: 128, n: 128 });
  assert.deepEqual(chooseWideTile(1024, 1024, 1), { m: 64, n: 64 });
  assert.deepEqual(chooseWideTile(3, 5, 1), { m: 64, n: 64 });
  assert.deepEqual(chooseWideTile(2048, 1024, 1), { m: 64, n: 128 });
  // every variant's workgroup memory (two slices of A and B) within WebGPU's default 16 KiB
  for (const m of [64, 128] as const) {
    for (const n of [64, 128] as const) {
      const code = matmulWideKernel({ ...plain.variant, tile: { m, n } });
      const words = [...code.matchAll(/var<workgroup> \w+: array<vec4<f32>, (\d+)>/g)].map((x) => +x[1]);
      assert.equal(words.length, 2);
      assert.ok(16 * (words[0] + words[1]) <= 16384, `${m}x${n}: ${16 * (words[0] + words[1])} bytes`);
    }
  }
});
