/**
 * WebGPU kernel parity: every primitive of the Backend interface against the CPU backend, on
 * seeded random shapes that include sizes which are not multiples of the tiles (1, 3, 17, 33, 65…),
 * within float32 tolerance. Runs on Debian's software Vulkan (lavapipe) in CI; skipped with a
 * visible message elsewhere when no adapter exists (a failure under CI=true).
 */
import assert from "node:assert/strict";
import { type Backend, getBackend } from "../src/backend.ts";
import "../src/cpu/backend.ts";
import { shapeSize, type Tensor } from "../src/tensor.ts";
import { chooseTile } from "../kernels/wgsl/matmul.ts";
import { testRng } from "../src/webgpu/testing.ts";
import { webgpuSuite } from "./_webgpu.ts";

const { gpu, ignore } = await webgpuSuite("webgpu_kernels_test", "webgpu kernels");
const cpu: Backend = getBackend("cpu");
const G = gpu as Backend;

const rng = testRng(12345);
const randArr = (n: number, lo = -1, hi = 1) =>
  Float32Array.from({ length: n }, () => lo + (hi - lo) * rng());
const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** A CPU tensor and its GPU twin holding the same float32 data. */
function pair(shape: readonly number[], lo = -1, hi = 1): [Tensor, Tensor] {
  const d = randArr(size(shape), lo, hi);
  return [cpu.fromArray(d, shape, "float32"), G.fromArray(d, shape, "float32")];
}

async function close(who: string, g: Tensor, c: Tensor, atol = 1e-5, rtol = 1e-5): Promise<void> {
  assert.deepEqual(g.shape, c.shape, `${who}: shape`);
  assert.equal(g.device, "webgpu");
  const a = await g.data(), b = c.dataSync();
  assert.equal(a.length, b.length, `${who}: length`);
  for (let i = 0; i < b.length; i++) {
    const ok = Object.is(a[i], b[i]) || Math.abs(a[i] - b[i]) <= atol + rtol * Math.abs(b[i]) ||
      (Number.isNaN(a[i]) && Number.isNaN(b[i]));
    if (!ok) assert.fail(`${who}: element ${i} of ${fmt(c.shape)}: gpu ${a[i]} vs cpu ${b[i]}`);
  }
}
const fmt = (s: readonly number[]) => `[${s.join(", ")}]`;

Deno.test({ name: "webgpu kernels: fromArray, read, fill, reshape views, cast", ignore }, async () => {
  for (const shape of [[], [1], [3], [5, 7], [2, 3, 4, 5], [0, 3]]) {
    const [c, g] = pair(shape);
    await close("roundtrip", g, c, 0, 0);
    await close("fill 0", G.fill(shape, 0, "float32"), cpu.fill(shape, 0, "float32"), 0, 0);
    await close("fill 2.5", G.fill(shape, 2.5, "float32"), cpu.fill(shape, 2.5, "float32"), 0, 0);
    await close("cast", G.cast(g, "float32"), cpu.cast(c, "float32"), 0, 0);
  }
  const [c, g] = pair([4, 6]);
  const v = G.reshape(g, [2, 12]);
  G.release(g); // the view keeps the shared buffer alive
  await close("reshape view after releasing the base", v, cpu.reshape(c, [2, 12]), 0, 0);
});

Deno.test({ name: "webgpu kernels: unary ops", ignore }, async () => {
  const ops = [
    "neg",
    "exp",
    "log",
    "sqrt",
    "relu",
    "tanh",
    "sigmoid",
    "abs",
    "sign",
    "step",
    "square",
    "reciprocal",
  ] as const;
  for (const op of ops) {
    const positive = op === "log" || op === "sqrt" || op === "reciprocal";
    const shape = [1 + Math.floor(rng() * 40), 1 + Math.floor(rng() * 70)];
    const [c, g] = positive ? pair(shape, 0.05, 4) : pair(shape, -6, 6);
    await close(op, G.unary(op, g), cpu.unary(op, c), 1e-6, 2e-6);
  }
  // large arguments: tanh and sigmoid stay finite
  const big = Float32Array.from([-100, -30, 0, 30, 100]);
  for (const op of ["tanh", "sigmoid"] as const) {
    await close(
      `${op} saturation`,
      G.unary(op, G.fromArray(big, [5], "float32")),
      cpu.unary(op, cpu.fromArray(big, [5], "float32")),
      1e-7,
      0,
    );
  }
});

Deno.test({ name: "webgpu kernels: binary ops with broadcasting", ignore }, async () => {
  const cases: [number[], number[]][] = [
    [[7, 13], [7, 13]],
    [[], [5, 3]],
    [[5, 3], []],
    [[9, 10], [10]],
    [[9, 1], [1, 10]],
    [[2, 1, 3, 1], [1, 4, 1, 5]],
    [[3, 1, 17], [4, 17]],
    [[1], [33]],
    [[2, 3, 2, 2, 3, 2, 2], [3, 1, 3, 1, 2]],
  ];
  const ops = ["add", "sub", "mul", "div", "pow", "maximum", "minimum", "gt", "ge", "eq"] as const;
  for (const op of ops) {
    for (const [sa, sb] of cases) {
      const out = broadcast(sa, sb);
      const [ca, ga] = op === "pow" ? pair(sa, 0.1, 3) : pair(sa);
      const [cb, gb] = op === "div" ? pair(sb, 0.5, 2) : pair(sb);
      await close(
        `${op} ${fmt(sa)} ${fmt(sb)}`,
        G.binary(op, ga, gb, out),
        cpu.binary(op, ca, cb, out),
        1e-6,
        1e-5,
      );
    }
  }
  // eq on equal values, pow with negative bases and integer exponents
  const x = Float32Array.from([-2, -1.5, 0, 1, 2, 3]), y = Float32Array.from([2, 3, 2, 0, -1, 3]);
  const cx = cpu.fromArray(x, [6], "float32"), cy = cpu.fromArray(y, [6], "float32");
  const gx = G.fromArray(x, [6], "float32"), gy = G.fromArray(y, [6], "float32");
  await close("pow negative base", G.binary("pow", gx, gy, [6]), cpu.binary("pow", cx, cy, [6]), 1e-6, 1e-5);
  await close("eq", G.binary("eq", gx, gx, [6]), cpu.binary("eq", cx, cx, [6]), 0, 0);
});

function broadcast(a: readonly number[], b: readonly number[]): number[] {
  const r = Math.max(a.length, b.length), out: number[] = [];
  for (let i = 0; i < r; i++) {
    const da = a[a.length - r + i] ?? 1, db = b[b.length - r + i] ?? 1;
    out.push(da === 1 ? db : da);
  }
  return out;
}

Deno.test({ name: "webgpu kernels: sum and max over any axes", ignore }, async () => {
  const cases: [number[], number[]][] = [
    [[37], [0]],
    [[13, 29], [0]],
    [[13, 29], [1]],
    [[13, 29], [0, 1]],
    [[3, 4, 5, 6], [1, 3]],
    [[3, 4, 5, 6], [0, 2]],
    [[2, 3, 65], [2]],
    [[5, 0, 3], [1]],
    [[3, 40000], [1]], // long rows: chunked two-pass reduction
    [[50000], [0]],
    [[300, 7], [0]],
  ];
  for (const [shape, axes] of cases) {
    const [c, g] = pair(shape);
    for (const op of ["sum", "max"] as const) {
      for (const keep of [false, true]) {
        const R = axes.reduce((s, a) => s * shape[a], 1);
        await close(
          `${op} ${fmt(shape)} axes ${fmt(axes)}`,
          G.reduce(op, g, axes, keep),
          cpu.reduce(op, c, axes, keep),
          op === "sum" ? 2e-7 * Math.max(1, R) : 0,
          1e-5,
        );
      }
    }
  }
});

Deno.test(
  { name: "webgpu kernels: matmul, tiled, transposed in place, batched with broadcasting", ignore },
  async () => {
    const dims = [1, 3, 4, 16, 17, 33, 64, 65, 70];
    const pick = () => dims[Math.floor(rng() * dims.length)];
    for (let t = 0; t < 24; t++) {
      const M = pick(), N = pick(), K = pick();
      const transA = t % 2 === 1, transB = (t >> 1) % 2 === 1;
      const [ca, ga] = pair(transA ? [K, M] : [M, K]);
      const [cb, gb] = pair(transB ? [N, K] : [K, N]);
      await close(
        `matmul ${M}x${K}x${N} tA=${transA} tB=${transB}`,
        G.matmul(ga, gb, transA, transB, [M, N]),
        cpu.matmul(ca, cb, transA, transB, [M, N]),
        2e-6 * K,
        1e-5,
      );
    }
    // batched with broadcasting, and a shape large enough for the 64×64 tile
    const cases: [number[], number[], boolean, boolean, number[]][] = [
      [[2, 3, 5, 7], [7, 9], false, false, [2, 3, 5, 9]],
      [[1, 6, 4], [3, 4, 6], true, true, [3, 4, 4]],
      [[4, 1, 8, 12], [1, 3, 12, 5], false, false, [4, 3, 8, 5]],
      [[8, 200, 30], [8, 30, 260], false, false, [8, 200, 260]],
      [[8, 31, 201], [8, 259, 31], true, true, [8, 201, 259]],
      // rectangular tiles: 8×128 and 8×32 (few rows, many columns), 32×8 and 16×32, transposed too
      [[130, 5, 20], [20, 130], false, false, [130, 5, 130]],
      [[6, 40], [40, 300], false, false, [6, 300]],
      [[40, 3], [300, 40], true, true, [3, 300]],
      [[130, 21], [21, 5], false, false, [130, 5]],
      [[2, 13, 19], [2, 19, 29], false, false, [2, 13, 29]],
    ];
    const tiles = new Set(cases.map(([, , , , out]) => {
      const t = chooseTile(out[out.length - 2], out[out.length - 1], shapeSize(out.slice(0, -2)));
      return `${t.m}x${t.n}`;
    }));
    for (const t of ["8x128", "8x32", "32x8", "16x32", "64x64"]) {
      assert.ok(tiles.has(t), `no case uses the ${t} tile`);
    }
    for (const [sa, sb, tA, tB, out] of cases) {
      const [ca, ga] = pair(sa), [cb, gb] = pair(sb);
      const K = tA ? sa[sa.length - 2] : sa[sa.length - 1];
      await close(
        `matmul ${fmt(sa)}·${fmt(sb)}`,
        G.matmul(ga, gb, tA, tB, out),
        cpu.matmul(ca, cb, tA, tB, out),
        2e-6 * K,
        1e-5,
      );
    }
    // K = 0 gives zeros
    const [ca, ga] = pair([3, 0]), [cb, gb] = pair([0, 4]);
    await close(
      "matmul K=0",
      G.matmul(ga, gb, false, false, [3, 4]),
      cpu.matmul(ca, cb, false, false, [3, 4]),
      0,
      0,
    );
  },
);

Deno.test({ name: "webgpu kernels: transpose, slice, sliceGrad, concat", ignore }, async () => {
  const [c, g] = pair([3, 4, 5, 2]);
  for (const perm of [[1, 0, 2, 3], [3, 2, 1, 0], [0, 2, 3, 1], [0, 1, 2, 3]]) {
    await close(`transpose ${fmt(perm)}`, G.transpose(g, perm), cpu.transpose(c, perm), 0, 0);
  }
  const begin = [1, 0, 1, 0], end = [3, 4, 5, 2], step = [1, 2, 3, 1];
  const cs = cpu.slice(c, begin, end, step), gs = G.slice(g, begin, end, step);
  await close("slice", gs, cs, 0, 0);
  await close(
    "sliceGrad",
    G.sliceGrad(gs, [3, 4, 5, 2], begin, step),
    cpu.sliceGrad(cs, [3, 4, 5, 2], begin, step),
    0,
    0,
  );
  const parts = [[2, 3, 5], [2, 1, 5], [2, 4, 5]].map((s) => pair(s));
  await close(
    "concat axis 1",
    G.concat(parts.map((p) => p[1]), 1),
    cpu.concat(parts.map((p) => p[0]), 1),
    0,
    0,
  );
  const rows = [[1, 7], [4, 7]].map((s) => pair(s));
  await close(
    "concat axis 0",
    G.concat(rows.map((p) => p[1]), 0),
    cpu.concat(rows.map((p) => p[0]), 0),
    0,
    0,
  );
});

Deno.test(
  { name: "webgpu kernels: softmax, logSoftmax, crossEntropy and its gradient", ignore },
  async () => {
    for (const shape of [[5, 10], [3, 4, 7], [6, 130], [1, 1], [2, 257]]) {
      const [c, g] = pair(shape, -8, 8);
      await close(`softmax ${fmt(shape)}`, G.softmax(g), cpu.softmax(c), 1e-7, 1e-5);
      await close(`logSoftmax ${fmt(shape)}`, G.logSoftmax(g), cpu.logSoftmax(c), 1e-5, 1e-5);
    }
    for (const [n, k] of [[17, 10], [5, 100], [1, 3]]) {
      const [c, g] = pair([n, k], -5, 5);
      const labels = Int32Array.from({ length: n }, () => Math.floor(rng() * k));
      const rc = cpu.crossEntropy(c, labels), rg = G.crossEntropy(g, labels);
      await close(`crossEntropy loss ${n}x${k}`, rg.loss, rc.loss, 1e-5, 1e-5);
      await close(`crossEntropy probs ${n}x${k}`, rg.probs, rc.probs, 1e-7, 1e-5);
      const gc = cpu.fromArray(Float32Array.of(0.7), [], "float32"),
        gg = G.fromArray(Float32Array.of(0.7), [], "float32");
      await close(
        `crossEntropyGrad ${n}x${k}`,
        G.crossEntropyGrad(rg.probs, labels, gg),
        cpu.crossEntropyGrad(rc.probs, labels, gc),
        1e-7,
        1e-5,
      );
    }
    // the label upload cache notices a mutated label array
    const [c, g] = pair([4, 3]);
    const labels = Int32Array.of(0, 1, 2, 0);
    G.crossEntropy(g, labels);
    labels[0] = 2;
    await close(
      "crossEntropy after mutating labels",
      G.crossEntropy(g, labels).loss,
      cpu.crossEntropy(c, labels).loss,
      1e-6,
      1e-5,
    );
  },
);

Deno.test({ name: "webgpu kernels: conv2d forward and both gradients (implicit GEMM)", ignore }, async () => {
  const cases = [
    { x: [2, 3, 9, 11], w: [4, 3, 3, 3], stride: [1, 1], padding: [1, 1] },
    { x: [3, 2, 10, 10], w: [5, 2, 3, 2], stride: [2, 1], padding: [0, 1] },
    { x: [1, 1, 28, 28], w: [6, 1, 5, 5], stride: [1, 1], padding: [2, 2] },
    { x: [4, 6, 7, 7], w: [16, 6, 5, 5], stride: [1, 1], padding: [0, 0] },
    { x: [2, 4, 8, 9], w: [3, 4, 1, 1], stride: [2, 3], padding: [0, 0] },
    { x: [2, 2, 6, 6], w: [3, 2, 3, 3], stride: [3, 3], padding: [2, 1] },
    // LeNet's first layer on CIFAR-size images: 6 of 8 tile rows, 1,024 columns, 8 images
    { x: [8, 3, 32, 32], w: [6, 3, 5, 5], stride: [1, 1], padding: [2, 2] },
  ] as const;
  for (const cse of cases) {
    const geo = {
      stride: [cse.stride[0], cse.stride[1]] as [number, number],
      padding: [cse.padding[0], cse.padding[1]] as [number, number],
    };
    const [cx, gx] = pair(cse.x), [cw, gw] = pair(cse.w);
    const cy = cpu.conv2d(cx, cw, geo), gy = G.conv2d(gx, gw, geo);
    const K = cse.w[1] * cse.w[2] * cse.w[3];
    const name = `conv2d x${fmt(cse.x)} w${fmt(cse.w)} s${fmt(cse.stride)} p${fmt(cse.padding)}`;
    await close(name, gy, cy, 2e-6 * K, 1e-5);
    const [cg, gg] = pair(cy.shape);
    await close(
      `${name} gradInput`,
      G.conv2dGradInput(gg, gw, cse.x, geo),
      cpu.conv2dGradInput(cg, cw, cse.x, geo),
      2e-6 * K * cse.w[0],
      1e-5,
    );
    const kw = cse.x[0] * cy.shape[2] * cy.shape[3];
    await close(
      `${name} gradWeight`,
      G.conv2dGradWeight(gx, gg, cse.w, geo),
      cpu.conv2dGradWeight(cx, cg, cse.w, geo),
      2e-6 * kw,
      1e-5,
    );
  }
});

Deno.test({ name: "webgpu kernels: max and average pooling and their gradients", ignore }, async () => {
  const cases = [
    { x: [2, 3, 8, 8], kernel: [2, 2], stride: [2, 2], padding: [0, 0] },
    { x: [1, 2, 7, 9], kernel: [3, 3], stride: [1, 1], padding: [1, 1] }, // overlapping windows
    { x: [2, 1, 11, 6], kernel: [3, 2], stride: [2, 1], padding: [1, 0] },
    { x: [3, 2, 5, 5], kernel: [2, 2], stride: [3, 3], padding: [0, 0] }, // gaps
  ] as const;
  for (const cse of cases) {
    const geo = {
      kernel: [cse.kernel[0], cse.kernel[1]] as [number, number],
      stride: [cse.stride[0], cse.stride[1]] as [number, number],
      padding: [cse.padding[0], cse.padding[1]] as [number, number],
    };
    const name = `pool x${fmt(cse.x)} k${fmt(cse.kernel)} s${fmt(cse.stride)} p${fmt(cse.padding)}`;
    const [cx, gx] = pair(cse.x);
    const cm = cpu.maxPool2d(cx, geo), gm = G.maxPool2d(gx, geo);
    await close(`max ${name}`, gm.y, cm.y, 0, 0);
    await close(`argmax ${name}`, gm.argmax, cm.argmax, 0, 0);
    const [cg, gg] = pair(cm.y.shape);
    await close(
      `maxGrad ${name}`,
      G.maxPool2dGrad(gg, gm.argmax, cse.x, geo),
      cpu.maxPool2dGrad(cg, cm.argmax, cse.x, geo),
      1e-6,
      1e-5,
    );
    await close(`avg ${name}`, G.avgPool2d(gx, geo), cpu.avgPool2d(cx, geo), 1e-6, 1e-5);
    await close(
      `avgGrad ${name}`,
      G.avgPool2dGrad(gg, cse.x, geo),
      cpu.avgPool2dGrad(cg, cse.x, geo),
      1e-6,
      1e-5,
    );
  }
});

Deno.test(
  {
    name:
      "webgpu kernels: NaN, ±Infinity and −0 through relu, step, zeroNonFinite, maximum, minimum and the fused ReLU",
    ignore,
  },
  async () => {
    // A NaN must reach the loss (and the non-finite guard) as on the CPU, not vanish in a ReLU.
    const specials = [NaN, Infinity, -Infinity, -0, 0, 1, -1, 3.5];
    const bits = async (t: Tensor) =>
      Array.from(await t.data(), (v) => (Number.isNaN(v) ? "NaN" : Object.is(v, -0) ? "-0" : v));
    const x = Float32Array.from(specials);
    for (const op of ["relu", "step", "zeroNonFinite"] as const) {
      assert.deepEqual(
        await bits(G.unary(op, G.fromArray(x, [8], "float32"))),
        await bits(cpu.unary(op, cpu.fromArray(x, [8], "float32"))),
        op,
      );
    }
    const a = Float32Array.from(specials.flatMap((p) => specials.map(() => p)));
    const b = Float32Array.from(specials.flatMap(() => specials));
    for (const op of ["maximum", "minimum"] as const) {
      assert.deepEqual(
        await bits(G.binary(op, G.fromArray(a, [64], "float32"), G.fromArray(b, [64], "float32"), [64])),
        await bits(
          cpu.binary(op, cpu.fromArray(a, [64], "float32"), cpu.fromArray(b, [64], "float32"), [64]),
        ),
        op,
      );
    }
    // The fused linear layer's ReLU epilogue (scalar and vec4 stores): a NaN input row stays NaN.
    for (const out of [3, 8]) {
      const xs = Float32Array.from({ length: 4 * 5 }, (_, i) => (i === 7 ? NaN : Math.sin(i)));
      const ws = Float32Array.from({ length: 5 * out }, (_, i) => Math.cos(i));
      const bs = Float32Array.from({ length: out }, (_, i) => i - 1);
      const g = G.linear(
        G.fromArray(xs, [4, 5], "float32"),
        G.fromArray(ws, [5, out], "float32"),
        G.fromArray(bs, [out], "float32"),
        "relu",
      );
      const c = cpu.linear(
        cpu.fromArray(xs, [4, 5], "float32"),
        cpu.fromArray(ws, [5, out], "float32"),
        cpu.fromArray(bs, [out], "float32"),
        "relu",
      );
      const [gv, cv] = [await g.data(), c.dataSync()];
      for (let i = 0; i < cv.length; i++) {
        assert.equal(
          Number.isNaN(gv[i]),
          Number.isNaN(cv[i]),
          `linear relu, ${out} outputs [${i}]: gpu ${gv[i]}, cpu ${cv[i]}`,
        );
      }
      assert.ok(cv.some(Number.isNaN), "the NaN row is NaN on the CPU");
    }
  },
);
