/**
 * WebGPU convolutions (implicit GEMM whose columns span the batch, geometry compiled into the
 * kernels, the input gradient as one product per stride phase) against the CPU backend: the shapes
 * of ResNet-18's late stages (4×4, 2×2, 1×1 images with batch > 1), stride 2 with 3×3 and 1×1
 * kernels, padding 0 and 1, odd sizes and channel counts, tiles that cross image boundaries, tiles
 * of 8 rows (each element gathers its column) and of 16+ rows (each thread gathers its column once);
 * plus the dispatch count of each op and run-to-run bit identity. Every case again under both matmul
 * kernels (`setMatmulKernel`: the 4×4 and the 8×8 one): the same bits and the same dispatches, the
 * fused forward (bias + ReLU) and its masked gradients included, and shapes that take each of the
 * 8×8 kernel's tiles.
 */
import assert from "node:assert/strict";
import { type Backend, getBackend } from "../src/backend.ts";
import "../src/cpu/backend.ts";
import type { Tensor } from "../src/tensor.ts";
import { type MatmulKernelChoice, setMatmulKernel } from "../src/webgpu/matmul_ops.ts";
import { testRng } from "../src/webgpu/testing.ts";
import { webgpuSuite } from "./_webgpu.ts";
import { withSetting } from "./_reference.ts";

const { gpu, ignore } = await webgpuSuite("webgpu_conv_test", "webgpu conv");
const cpu: Backend = getBackend("cpu");
const G = gpu as Backend;

const rng = testRng(2024);
const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const fmt = (s: readonly number[]) => `[${s.join(", ")}]`;

/** A CPU tensor and its GPU twin holding the same float32 data. */
function pair(shape: readonly number[]): [Tensor, Tensor] {
  const d = Float32Array.from({ length: size(shape) }, () => 2 * rng() - 1);
  return [cpu.fromArray(d, shape, "float32"), G.fromArray(d, shape, "float32")];
}

async function close(who: string, g: Tensor, c: Tensor, atol: number): Promise<void> {
  assert.deepEqual(g.shape, c.shape, `${who}: shape`);
  const a = await g.data(), b = c.dataSync();
  for (let i = 0; i < b.length; i++) {
    if (!(Math.abs(a[i] - b[i]) <= atol + 1e-5 * Math.abs(b[i]))) {
      assert.fail(`${who}: element ${i} of ${fmt(c.shape)}: gpu ${a[i]} vs cpu ${b[i]}`);
    }
  }
}

interface Case {
  x: [number, number, number, number];
  w: [number, number, number, number];
  s: [number, number];
  p: [number, number];
}
const c = (x: Case["x"], w: Case["w"], s: number | [number, number], p: number | [number, number]): Case => ({
  x,
  w,
  s: typeof s === "number" ? [s, s] : s,
  p: typeof p === "number" ? [p, p] : p,
});

const cases: Case[] = [
  // ResNet-18's last stages at a small batch: 4×4, 2×2 and 1×1 images, 16+ channels (hoisted gathers)
  c([3, 16, 4, 4], [32, 16, 3, 3], 1, 1),
  c([5, 16, 2, 2], [24, 16, 3, 3], 1, 1),
  c([6, 17, 1, 1], [20, 17, 3, 3], 1, 1),
  c([4, 16, 8, 8], [32, 16, 3, 3], 2, 1), // stride 2, 8×8 → 4×4 (a stage's first block)
  c([4, 16, 8, 8], [32, 16, 1, 1], 2, 0), // its 1×1 stride-2 shortcut
  c([3, 32, 4, 4], [16, 32, 3, 3], 2, 1), // 4×4 → 2×2
  c([2, 32, 2, 2], [16, 32, 1, 1], 2, 0), // 2×2 → 1×1 shortcut
  // odd sizes and channel counts, stride 2 on odd images (phases of unequal size), padding 0
  c([3, 5, 7, 7], [9, 5, 3, 3], 2, 1),
  c([2, 7, 5, 5], [5, 7, 1, 1], 2, 0),
  c([3, 3, 7, 6], [5, 3, 3, 3], 2, 0),
  c([2, 5, 9, 9], [7, 5, 3, 3], 1, 0),
  c([4, 3, 5, 5], [3, 3, 3, 3], [2, 1], [1, 0]),
  c([2, 4, 9, 10], [6, 4, 2, 3], [3, 2], [1, 2]),
  // 6×6 images: 36 columns each, so 32- and 64-wide tiles straddle images
  c([5, 18, 6, 6], [20, 18, 3, 3], 1, 1),
  // a shape where per-image products would already fill the tiles (16×16 = 256 columns per image)
  c([2, 16, 16, 16], [32, 16, 3, 3], 1, 1),
];

Deno.test({ name: "webgpu conv: forward and both gradients match the CPU backend", ignore }, async () => {
  for (const cse of cases) {
    const geo = { stride: cse.s, padding: cse.p };
    const name = `conv x${fmt(cse.x)} w${fmt(cse.w)} s${fmt(cse.s)} p${fmt(cse.p)}`;
    const [cx, gx] = pair(cse.x), [cw, gw] = pair(cse.w);
    const cy = cpu.conv2d(cx, cw, geo);
    await close(name, G.conv2d(gx, gw, geo), cy, 2e-6 * cse.w[1] * cse.w[2] * cse.w[3]);
    const [cg, gg] = pair(cy.shape);
    await close(
      `${name} gradInput`,
      G.conv2dGradInput(gg, gw, cse.x, geo),
      cpu.conv2dGradInput(cg, cw, cse.x, geo),
      2e-6 * cse.w[0] * cse.w[2] * cse.w[3],
    );
    await close(
      `${name} gradWeight`,
      G.conv2dGradWeight(gx, gg, cse.w, geo),
      cpu.conv2dGradWeight(cx, cg, cse.w, geo),
      2e-6 * cse.x[0] * cy.shape[2] * cy.shape[3],
    );
  }
});

Deno.test(
  { name: "webgpu conv: one dispatch per forward and input gradient, same bits twice", ignore },
  async () => {
    for (const cse of [cases[3], cases[4], cases[7]]) {
      const geo = { stride: cse.s, padding: cse.p };
      const [, gx] = pair(cse.x), [, gw] = pair(cse.w);
      const at = () => gpu!.stats().dispatches;
      let d0 = at();
      const y1 = G.conv2d(gx, gw, geo);
      assert.equal(at() - d0, 1, `conv2d x${fmt(cse.x)}: dispatches`);
      const [, gg] = pair(y1.shape);
      d0 = at();
      const dx1 = G.conv2dGradInput(gg, gw, cse.x, geo);
      assert.equal(
        at() - d0,
        1,
        `conv2dGradInput x${fmt(cse.x)} s${fmt(cse.s)}: dispatches (all phases in one)`,
      );
      const y2 = G.conv2d(gx, gw, geo), dx2 = G.conv2dGradInput(gg, gw, cse.x, geo);
      const dw1 = G.conv2dGradWeight(gx, gg, cse.w, geo), dw2 = G.conv2dGradWeight(gx, gg, cse.w, geo);
      for (const [what, a, b] of [["y", y1, y2], ["gx", dx1, dx2], ["gw", dw1, dw2]] as const) {
        assert.deepEqual(
          await a.data(),
          await b.data(),
          `${what} of x${fmt(cse.x)}: not the same bits twice`,
        );
      }
    }
  },
);

/** `f` run with the matmul kernel `choice`, the previous choice restored after. */
const withKernel = <T>(choice: MatmulKernelChoice, f: () => T): T => withSetting(setMatmulKernel, choice, f);

/** The first index where two arrays differ in bits, or -1. */
function firstBitDifference(a: Float32Array, b: Float32Array): number {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length),
    y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  if (x.length !== y.length) return 0;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

/** GPU inputs of one case: x, w, a bias, and gy. */
interface ConvInputs {
  x: Tensor;
  w: Tensor;
  b: Tensor;
  g: Tensor;
}

/**
 * Every convolution product of a case with the current matmul kernel: conv2d and its two gradients
 * (the weight gradient alone: split K or not), the fused forward with bias and ReLU and its masked
 * gradients (weight and bias gradients from one product), and the bias without the ReLU (unmasked);
 * with each op's dispatches and the pipeline keys of the products.
 */
function convProducts(cse: Case, t: ConvInputs, gradInput: boolean) {
  const geo = { stride: cse.s, padding: cse.p };
  const out: Record<string, Tensor> = {}, dispatches: Record<string, number> = {};
  const cache = gpu!.pipelines, get = cache.get;
  const keys: string[] = [];
  cache.get = (spec) => (keys.push(spec.key), get.call(cache, spec));
  const op = (name: string, f: () => Record<string, Tensor | null>) => {
    const d0 = gpu!.stats().dispatches;
    const r = f();
    dispatches[name] = gpu!.stats().dispatches - d0;
    for (const [k, v] of Object.entries(r)) if (v) out[`${name} ${k}`] = v;
  };
  try {
    op("conv2d", () => ({ y: G.conv2d(t.x, t.w, geo) }));
    if (gradInput) op("conv2dGradInput", () => ({ gx: G.conv2dGradInput(t.g, t.w, cse.x, geo) }));
    op("conv2dGradWeight", () => ({ gw: G.conv2dGradWeight(t.x, t.g, cse.w, geo) }));
    op("fused relu", () => ({ y: G.fusedConv2d(t.x, t.w, t.b, geo, "relu") }));
    const all = { x: gradInput, w: true, b: true };
    op("fused relu grad", () => G.fusedConv2dGrad(t.x, t.w, out["fused relu y"], t.g, geo, all));
    op("fused bias", () => ({ y: G.fusedConv2d(t.x, t.w, t.b, geo, "none") }));
    op("fused bias grad", () => G.fusedConv2dGrad(t.x, t.w, null, t.g, geo, { x: false, w: true, b: true }));
  } finally {
    cache.get = get;
  }
  return { out, dispatches, keys: keys.filter((k) => /^conv2d(GradInput|GradWeight)?\//.test(k)) };
}

/**
 * `cse` under both matmul kernels (the input gradient unless `gradInput` is false): the same bits
 * and dispatches; returns the 8×8 kernel's tiles and whether the weight gradient was split.
 */
async function checkKernels(cse: Case, gradInput = true): Promise<{ tiles: string[]; split: boolean }> {
  const name = `conv x${fmt(cse.x)} w${fmt(cse.w)} s${fmt(cse.s)} p${fmt(cse.p)}`;
  const oh = Math.floor((cse.x[2] + 2 * cse.p[0] - cse.w[2]) / cse.s[0]) + 1;
  const ow = Math.floor((cse.x[3] + 2 * cse.p[1] - cse.w[3]) / cse.s[1]) + 1;
  const t: ConvInputs = {
    x: pair(cse.x)[1],
    w: pair(cse.w)[1],
    b: pair([cse.w[0]])[1],
    g: pair([cse.x[0], cse.w[0], oh, ow])[1],
  };
  const narrow = withKernel("4x4", () => convProducts(cse, t, gradInput));
  const wide = withKernel("8x8", () => convProducts(cse, t, gradInput));
  assert.deepEqual(wide.dispatches, narrow.dispatches, `${name}: dispatches of 8×8 vs 4×4`);
  assert.ok(narrow.keys.every((k) => !/\/w\d/.test(k)), `${name}: 4×4 keys ${narrow.keys}`);
  assert.equal(wide.keys.length, narrow.keys.length, `${name}: products`);
  const tiles = wide.keys.map((k) => /\/w(\d+x\d+)\//.exec(k)?.[1]);
  assert.ok(tiles.every((x) => x !== undefined), `${name}: a product not on the 8×8 kernel: ${wide.keys}`);
  assert.deepEqual(Object.keys(wide.out), Object.keys(narrow.out));
  for (const k of Object.keys(narrow.out)) {
    const a = await wide.out[k].data() as Float32Array, b = await narrow.out[k].data() as Float32Array;
    const i = firstBitDifference(a, b);
    assert.equal(i, -1, `${name} ${k}: 8×8 and 4×4 differ at element ${i}: ${a[i]} vs ${b[i]}`);
  }
  for (const x of [...Object.values(t), ...Object.values(wide.out), ...Object.values(narrow.out)]) {
    G.release(x);
  }
  return { tiles: tiles as string[], split: narrow.dispatches.conv2dGradWeight === 2 };
}

Deno.test(
  { name: "webgpu conv: the 8×8 matmul kernel gives the 4×4 kernel's bits and dispatches", ignore },
  async () => {
    const splits = new Set<boolean>();
    for (const cse of cases) splits.add((await checkKernels(cse)).split);
    assert.deepEqual([...splits].sort(), [false, true], "weight gradients split and unsplit");
  },
);

Deno.test(
  { name: "webgpu conv: every tile of the 8×8 kernel (gathered columns, 1 or 2 threads each)", ignore },
  async () => {
    const tiles = new Set<string>();
    // 72 output channels × 32,768 columns: the forward 128×128, the input gradient 64×128
    for (const t of (await checkKernels(c([8, 3, 64, 64], [72, 3, 3, 3], 1, 1))).tiles) tiles.add(t);
    // 32,768 output channels × 64 columns: the forward and the weight gradient 128×64; not the input
    // gradient, whose K of 32,768·9 lavapipe cuts short (its shaders' loops stop early: a 4×4 matmul
    // [1, K]·[K, 1] of ones gives 17,473 for any K from 32,768 up, the 8×8 one 58,253 from 65,536)
    for (const t of (await checkKernels(c([4, 3, 4, 4], [32768, 3, 3, 3], 1, 1), false)).tiles) tiles.add(t);
    assert.deepEqual([...tiles].sort(), ["128x128", "128x64", "64x128", "64x64"]);
  },
);
