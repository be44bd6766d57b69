/**
 * WebGPU convolutions (implicit GEMM whose columns span the batch, geometry compiled into the
 * kernels, the input gradient as one product per stride phase) against the CPU backend: the shapes
 * of ResNet-18's late stages (4×4, 2×2, 1×1 images with batch > 1), stride 2 with 3×3 and 1×1
 * kernels, padding 0 and 1, odd sizes and channel counts, tiles that cross image boundaries, tiles
 * of 8 rows (each element gathers its column) and of 16+ rows (each thread gathers its column once);
 * plus the dispatch count of each op and run-to-run bit identity.
 */
import assert from "node:assert/strict";
import { type Backend, getBackend } from "../src/backend.ts";
import "../src/cpu/backend.ts";
import type { Tensor } from "../src/tensor.ts";
import { testRng } from "../src/webgpu/testing.ts";
import { webgpuSuite } from "./_webgpu.ts";

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
