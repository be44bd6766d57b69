/**
 * The Winograd F(2×2, 3×3) path of float32 3×3 stride-1 convolutions (kernels/wasm/winograd.ts):
 * forward pass, input gradient and weight gradient against the float64 7-loop reference on shapes
 * that hit every edge (odd sizes: padded tile rows and columns; padding 0, 1, 2; channel counts
 * that leave partial strips of 6 and blocks of 5; odd output channels; batches that do not divide
 * into chunks; images in several groups), the same bits on one thread and on the workers, and the
 * rules by which `"auto"` takes it.
 */
import assert from "node:assert/strict";
import {
  conv2dForward,
  conv2dGradInput,
  conv2dGradWeight,
  type ConvDims,
  convOutSize,
} from "../kernels/wasm/conv.ts";
import {
  convThreadParticipants,
  convThreadStats,
  hasWasmConv,
  setWasmConvGroupBudget,
} from "../kernels/wasm/conv_wasm.ts";
import { setWinogradEnabled, winogradApplies, winogradGradWeightApplies } from "../kernels/wasm/winograd.ts";
import {
  assertCloseToLargest,
  randArray,
  refConv,
  rng,
  withConvPath,
  withConvThreads,
} from "./_reference.ts";

const conv3 = (N: number, C: number, H: number, W: number, O: number, ph: number, pw: number): ConvDims => ({
  N,
  C,
  H,
  W,
  O,
  kh: 3,
  kw: 3,
  sh: 1,
  sw: 1,
  ph,
  pw,
});

/**
 * Shapes: ResNet-like (whole vectors of tiles), odd heights and widths (padded tiles), outputs two
 * tiles wide (4×4, 8×4, 5×3: lanes from two tile rows, an odd tile-row count padded), padding 0
 * and 2 (the input gradient pads by 2 and 0), 1×1 outputs, channels 16–33 (partial strips of 6,
 * partial blocks of 5, odd O), batches of 1 to 9.
 */
const SHAPES: ConvDims[] = [
  conv3(4, 16, 16, 16, 16, 1, 1),
  conv3(3, 17, 8, 8, 19, 1, 1),
  conv3(5, 16, 7, 9, 16, 1, 1),
  conv3(2, 20, 10, 6, 17, 0, 0),
  conv3(2, 16, 6, 5, 23, 2, 2),
  conv3(1, 33, 3, 11, 16, 1, 0),
  conv3(2, 16, 1, 1, 16, 1, 1),
  conv3(9, 16, 4, 4, 18, 1, 1),
  conv3(3, 16, 8, 4, 17, 1, 1),
  conv3(2, 19, 5, 3, 16, 1, 1),
  conv3(3, 18, 12, 16, 21, 2, 1),
];

function inputs(d: ConvDims, seed: number) {
  const r = rng(seed), { Ho, Wo } = convOutSize(d);
  return {
    x: randArray(Float32Array, d.N * d.C * d.H * d.W, r) as Float32Array,
    w: randArray(Float32Array, d.O * d.C * d.kh * d.kw, r) as Float32Array,
    gy: randArray(Float32Array, d.N * d.O * Ho * Wo, r) as Float32Array,
  };
}

function all(d: ConvDims, seed: number): Float32Array[] {
  const { x, w, gy } = inputs(d, seed);
  return [conv2dForward(x, w, d), conv2dGradInput(gy, w, d), conv2dGradWeight(x, gy, d)] as Float32Array[];
}

const geometry = (d: ConvDims) => ({ ...d, ...convOutSize(d) });

Deno.test({
  name: "cpu winograd: forward, input gradient and weight gradient match the float64 reference",
  ignore: !hasWasmConv,
  fn: () => {
    for (const [i, d] of SHAPES.entries()) {
      assert.ok(winogradApplies(geometry(d)), `Winograd applies to ${JSON.stringify(d)}`);
      const { x, w, gy } = inputs(d, 100 + i);
      const want = refConv(x, w, gy, d), tag = JSON.stringify(d);
      const [y, gx, gw] = withConvPath("winograd", () => all(d, 100 + i));
      assertCloseToLargest(`y ${tag}`, y, want.y, 2e-6);
      assertCloseToLargest(`gx ${tag}`, gx, want.gx, 2e-6);
      assertCloseToLargest(`gw ${tag}`, gw, want.gw, 2e-6);
    }
  },
});

Deno.test({
  name: "cpu winograd: images in several groups give the same forward and input gradient bits",
  ignore: !hasWasmConv,
  fn: () => {
    for (const [i, d] of SHAPES.entries()) {
      const whole = withConvPath("winograd", () => all(d, 200 + i));
      const prev = setWasmConvGroupBudget(3000); // one or two images per group
      try {
        const grouped = withConvPath("winograd", () => all(d, 200 + i));
        const tag = JSON.stringify(d);
        assert.deepEqual(grouped[0], whole[0], `y ${tag}`);
        assert.deepEqual(grouped[1], whole[1], `gx ${tag}`);
        // The weight gradient's sums over the tiles run group by group: same values up to rounding.
        const { x, w, gy } = inputs(d, 200 + i);
        assertCloseToLargest(`gw ${tag}`, grouped[2], refConv(x, w, gy, d).gw, 2e-6);
      } finally {
        setWasmConvGroupBudget(prev);
      }
    }
  },
});

Deno.test({
  name: "cpu winograd: the worker threads give the one-thread results bit for bit",
  ignore: !hasWasmConv || convThreadParticipants() < 2,
  fn: () => {
    const before = convThreadStats().workerChunks;
    withConvPath("winograd", () => {
      for (const [i, d] of SHAPES.entries()) {
        const one = withConvThreads("single", () => all(d, 300 + i));
        for (let rep = 0; rep < 2; rep++) {
          const two = withConvThreads("threads", () => all(d, 300 + i));
          for (const k of [0, 1, 2]) {
            assert.deepEqual(two[k], one[k], `${["y", "gx", "gw"][k]} of ${JSON.stringify(d)}, call ${rep}`);
          }
        }
      }
    });
    assert.ok(convThreadStats().workerChunks > before, "the workers computed chunks");
  },
});

Deno.test({
  name: "cpu winograd: auto takes it for ResNet-like 3×3 layers, not for 2×2 outputs, few channels or 5×5",
  ignore: !hasWasmConv,
  fn: () => {
    const same = (d: ConvDims, mode: "winograd" | "direct" | "gemm", seed: number, which: number[]) => {
      const auto = withConvPath("auto", () => all(d, seed)), forced = withConvPath(mode, () => all(d, seed));
      for (const k of which) assert.deepEqual(auto[k], forced[k], `${mode} ${k} of ${JSON.stringify(d)}`);
    };
    const resnet = conv3(2, 32, 16, 16, 32, 1, 1);
    assert.ok(winogradGradWeightApplies(geometry(resnet)));
    same(resnet, "winograd", 400, [0, 1, 2]);
    // Its rounding differs from the direct kernels' (so the comparison above can tell them apart).
    const direct = withConvPath("direct", () => all(resnet, 400)),
      wino = withConvPath("winograd", () => all(resnet, 400));
    for (const k of [0, 1, 2]) assert.notDeepEqual(direct[k], wino[k], `direct and Winograd differ (${k})`);
    // 4×4 outputs (two tiles wide: lanes 2–3 are the next tile row's): Winograd, weight gradient too.
    same(conv3(4, 32, 4, 4, 32, 1, 1), "winograd", 401, [0, 1, 2]);
    // 2×2 outputs (one tile wide: half the lanes padding) stay on the GEMM path.
    same(conv3(4, 32, 2, 2, 32, 1, 1), "gemm", 406, [0, 1, 2]);
    // Fewer than 16 channels, or other kernel sizes: the direct kernels.
    same(conv3(2, 8, 16, 16, 32, 1, 1), "direct", 402, [0, 1, 2]);
    same({ ...conv3(2, 32, 16, 16, 32, 2, 2), kh: 5, kw: 5 }, "direct", 403, [0, 1, 2]);
    // A width that is not a multiple of 8: Winograd forward and input gradient, direct weight gradient.
    const odd = conv3(2, 16, 12, 12, 16, 1, 1);
    assert.ok(!winogradGradWeightApplies(geometry(odd)));
    same(odd, "winograd", 404, [0, 1]);
    same(odd, "direct", 404, [2]);
    // setWinogradEnabled(false) puts auto back on the direct kernels.
    const prev = setWinogradEnabled(false);
    try {
      same(resnet, "direct", 405, [0, 1, 2]);
    } finally {
      setWinogradEnabled(prev);
    }
  },
});
