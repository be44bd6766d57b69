/**
 * The WGSL generator against the TypeScript one (bit-identical Philox words and noise draws), and
 * full VSGD/VAdam steps on the GPU against the CPU: parameters within float32 tolerance, the noise
 * itself bit-identical.
 */
import assert from "node:assert/strict";
import { getBackend } from "../src/backend.ts";
import "../src/cpu/backend.ts";
import { fillNoise, NOISE_LAWS, type NoiseLaw, transformBlock } from "../src/random/noise.ts";
import { philox4x32 } from "../src/random/philox.ts";
import { Tensor } from "../src/tensor.ts";
import { applyUpdates, type Optimizer, vadam, vsgd } from "../src/optim/mod.ts";
import {
  NOISE_WORDS,
  noiseKernel,
  noiseUniforms,
  PHILOX_WORDS,
  philoxKernel,
  transformKernel,
} from "../kernels/wgsl/random.ts";
import { f32bits, type GpuStorage } from "../src/webgpu/backend.ts";
import { webgpuOptimKernels } from "../src/webgpu/optim.ts";
import { testRng } from "../src/webgpu/testing.ts";
import { webgpuSuite } from "./_webgpu.ts";

const { gpu, ignore } = await webgpuSuite("webgpu_random_test", "webgpu random");
const cpu = getBackend("cpu");
const rng = testRng(777);
const u32 = () => Math.floor(rng() * 4294967296) >>> 0;

Deno.test(
  { name: "webgpu random: WGSL Philox4x32-10 is bit-identical to the TypeScript one", ignore },
  async () => {
    const g = gpu!;
    for (let trial = 0; trial < 4; trial++) {
      const blocks = 4099, k0 = u32(), k1 = u32(), c1 = u32(), c2 = u32();
      const t = g.alloc([blocks * 4], "philox");
      g.run(
        { key: "test/philox", code: philoxKernel, bindings: ["write"], uniformWords: PHILOX_WORDS },
        [blocks, k0, k1, c1, c2],
        [(t.storage as GpuStorage).buffer],
        g.grid(Math.ceil(blocks / 256)),
      );
      const got = new Uint32Array((await t.data()).buffer);
      const want = new Uint32Array(blocks * 4);
      for (let b = 0; b < blocks; b++) philox4x32(k0, k1, b, c1, c2, 0, want, 4 * b);
      for (let i = 0; i < want.length; i++) {
        if (got[i] !== want[i]) {
          assert.fail(
            `philox word ${i} (key ${k0}, ${k1}): gpu ${got[i]} vs ts ${want[i]}`,
          );
        }
      }
    }
  },
);

async function gpuNoise(
  n: number,
  law: NoiseLaw,
  scale: number,
  key: { k0: number; k1: number; c1: number; c2: number },
) {
  const g = gpu!;
  const t = g.alloc([n], "noise");
  g.run(
    {
      key: `test/noise/${law}`,
      code: () => noiseKernel(law),
      bindings: ["write"],
      uniformWords: NOISE_WORDS,
    },
    noiseUniforms(n, key, law, f32bits(scale)),
    [(t.storage as GpuStorage).buffer],
    g.grid(Math.ceil(n / 4 / 256)),
  );
  return await t.data();
}

Deno.test({ name: "webgpu random: every noise law is bit-identical to fillNoise", ignore }, async () => {
  for (const law of NOISE_LAWS) {
    for (const scale of [1, 0.05, 3.25, 1e-3]) {
      const n = 100003, key = { k0: u32(), k1: u32(), c1: u32(), c2: u32() };
      const got = await gpuNoise(n, law, scale, key);
      const want = new Float32Array(n);
      fillNoise(want, law, scale, key);
      for (let i = 0; i < n; i++) {
        if (!Object.is(got[i], want[i])) {
          assert.fail(`${law} scale ${scale} element ${i}: gpu ${got[i]} vs cpu ${want[i]}`);
        }
      }
    }
  }
});

/**
 * 24-bit draws (the transforms read `word >>> 8`) at the edges of the arithmetic: the extreme
 * tails (0, 1, 2…), every power of two and its neighbours (the logarithm's exponent), the 32
 * table intervals of several octaves (the logarithm's table index), and the octant, quadrant and
 * sign boundaries of the angle and of the laplace sign.
 */
function edgeDraws(): number[] {
  const v = new Set<number>([0, 1, 2, 3, 4, 5, (1 << 24) - 1, (1 << 24) - 2]);
  for (let k = 1; k < 24; k++) for (const d of [-1, 0, 1]) v.add((1 << k) + d);
  for (const k of [6, 11, 17, 23]) {
    for (let j = 0; j < 32; j++) for (const d of [-1, 0]) v.add((1 << k) + j * (1 << (k - 5)) + d);
  }
  for (let m = 0; m < 8; m++) for (const d of [-1, 0, 1]) v.add(m * (1 << 21) + d);
  return [...v].filter((x) => x >= 0 && x < 1 << 24).sort((a, b) => a - b);
}

Deno.test(
  {
    name: "webgpu random: the WGSL transforms equal the CPU's at the edges (tails, tables, quadrants)",
    ignore,
  },
  async () => {
    const g = gpu!;
    const edges = edgeDraws();
    // Every ordered pair of edge draws, as (radius word, angle word) of the gaussian and as two
    // laplace/uniform words; the low 8 bits (ignored by the transforms) random.
    const words: number[] = [];
    for (const a of edges) {
      for (const b of edges) words.push((a << 8 | (u32() & 255)) >>> 0, (b << 8 | (u32() & 255)) >>> 0);
    }
    while (words.length % 4) words.push(0);
    const blocks = words.length / 4;
    const x = g.fromArray(new Float32Array(new Uint32Array(words).buffer), [words.length], "float32");
    for (const law of NOISE_LAWS) {
      const y = g.alloc([words.length], "transform");
      g.run(
        {
          key: `test/transform/${law}`,
          code: () => transformKernel(law),
          bindings: ["read", "write"],
          uniformWords: NOISE_WORDS,
        },
        noiseUniforms(blocks, { k0: 0, k1: 0, c1: 0, c2: 0 }, law, f32bits(1)),
        [(x.storage as GpuStorage).buffer, (y.storage as GpuStorage).buffer],
        g.grid(Math.ceil(blocks / 256)),
      );
      const got = await y.data();
      const want = new Float64Array(4), block = new Uint32Array(4);
      for (let b = 0; b < blocks; b++) {
        block.set(words.slice(4 * b, 4 * b + 4));
        transformBlock(block, law, 1, want);
        for (let l = 0; l < 4; l++) {
          if (!Object.is(got[4 * b + l], Math.fround(want[l]))) {
            assert.fail(
              `${law} words ${[...block].map((w) => w.toString(16))} lane ${l}: gpu ${
                got[4 * b + l]
              } vs cpu ${want[l]}`,
            );
          }
        }
      }
      g.release(y);
    }
    g.release(x);
    assert.ok(edges.length > 200, `edge draws: ${edges.length}`);
  },
);

/** A CPU params tree and its GPU twin. */
function paramsPair(shapes: Record<string, number[]>) {
  const c: Record<string, Tensor> = {}, g: Record<string, Tensor> = {};
  for (const [k, s] of Object.entries(shapes)) {
    const n = s.reduce((a, b) => a * b, 1);
    const d = Float32Array.from({ length: n }, () => rng() * 2 - 1);
    c[k] = cpu.fromArray(d, s, "float32");
    g[k] = gpu!.fromArray(d, s, "float32");
  }
  return { c, g };
}

function noiseLeaves(state: unknown): Tensor[] {
  const out: Tensor[] = [];
  const walk = (x: unknown, key: string) => {
    if (x instanceof Tensor) {
      if (key === "noise") out.push(x);
    } else if (Array.isArray(x)) x.forEach((v) => walk(v, ""));
    else if (x && typeof x === "object") { for (const [k, v] of Object.entries(x)) walk(v, k); }
  };
  walk(state, "");
  return out;
}

async function assertClose(who: string, g: Tensor, c: Tensor, atol: number, rtol: number) {
  assert.equal(g.device, "webgpu", `${who}: device`);
  const a = await g.data(), b = c.dataSync();
  for (let i = 0; i < b.length; i++) {
    if (!(Math.abs(a[i] - b[i]) <= atol + rtol * Math.abs(b[i]))) {
      assert.fail(`${who}: element ${i}: gpu ${a[i]} vs cpu ${b[i]}`);
    }
  }
}

async function assertBitIdentical(who: string, g: Tensor, c: Tensor) {
  const a = await g.data(), b = c.dataSync();
  assert.equal(a.length, b.length, `${who}: length`);
  for (let i = 0; i < b.length; i++) {
    if (!Object.is(a[i], b[i])) assert.fail(`${who}: element ${i}: gpu ${a[i]} vs cpu ${b[i]}`);
  }
}

/** Runs `steps` steps of `opt` on both devices with the same gradients and compares everything. */
async function parity(name: string, opt: Optimizer, steps: number) {
  const shapes = { "w": [37, 13], "b": [13], "deep_k": [3, 2, 5] };
  let { c: pc, g: pg } = paramsPair(shapes);
  let sc = opt.init(pc), sg = opt.init(pg);
  // perturb at identical params: identical bits
  const p0c = opt.perturb(pc, sc) as Record<string, Tensor>,
    p0g = opt.perturb(pg, sg) as Record<string, Tensor>;
  for (const k of Object.keys(shapes)) {
    await assertBitIdentical(`${name} perturb(${k}) at step 0`, p0g[k], p0c[k]);
  }
  for (let s = 0; s < steps; s++) {
    const { c: gc, g: gg } = paramsPair(shapes);
    const rc = opt.update(gc, sc, pc), rg = opt.update(gg, sg, pg);
    pc = applyUpdates(pc, rc.updates) as Record<string, Tensor>;
    pg = applyUpdates(pg, rg.updates) as Record<string, Tensor>;
    sc = rc.state;
    sg = rg.state;
    for (const k of Object.keys(shapes)) {
      await assertClose(`${name} step ${s + 1} params.${k}`, pg[k], pc[k], 2e-6, 2e-5);
    }
    const nc = noiseLeaves(sc), ng = noiseLeaves(sg);
    assert.equal(ng.length, nc.length, `${name}: noise buffers`);
    for (let i = 0; i < nc.length; i++) {
      await assertBitIdentical(`${name} step ${s + 1} noise ${i}`, ng[i], nc[i]);
    }
    const cc = opt.clean(pc, sc) as Record<string, Tensor>, cg = opt.clean(pg, sg) as Record<string, Tensor>;
    for (const k of Object.keys(shapes)) {
      await assertClose(`${name} step ${s + 1} clean.${k}`, cg[k], cc[k], 2e-6, 2e-5);
    }
  }
}

Deno.test({
  name: "webgpu random: fused VSGD steps match the CPU (official and exact modes, every law)",
  ignore,
}, async () => {
  for (const mode of ["official", "exact"] as const) {
    for (const noise of NOISE_LAWS) {
      await parity(
        `vsgd ${mode} ${noise}`,
        vsgd({
          lr: 0.1,
          variability: 0.05,
          numIters: 3,
          momentum: 0.9,
          weightDecay: 1e-3,
          noise,
          mode,
          seed: 7,
        }),
        5,
      );
    }
    await parity(
      `vsgd ${mode} nesterov`,
      vsgd({ lr: 0.05, variability: 0.01, numIters: 4, momentum: 0.9, nesterov: true, mode }),
      3,
    );
    await parity(
      `vsgd ${mode} plain`,
      vsgd({ lr: 0.05, variability: 0.02, numIters: 1000, mode, seed: 3 }),
      3,
    );
  }
});

Deno.test({
  name: "webgpu random: fused VAdam steps match the CPU (official and exact, AdamW, AMSGrad)",
  ignore,
}, async () => {
  for (const mode of ["official", "exact"] as const) {
    await parity(`vadam ${mode}`, vadam({ lr: 1e-2, variability: 0.02, numIters: 3, mode, seed: 11 }), 5);
    await parity(
      `vadam ${mode} decoupled amsgrad laplace`,
      vadam({
        lr: 1e-2,
        variability: 0.01,
        numIters: 4,
        weightDecay: 0.01,
        decoupled: true,
        amsgrad: true,
        noise: "laplace",
        mode,
      }),
      5,
    );
    await parity(
      `vadam ${mode} L2 uniform`,
      vadam({ lr: 1e-3, variability: 0.03, numIters: 2, weightDecay: 1e-3, noise: "uniform", mode, seed: 5 }),
      3,
    );
  }
});

Deno.test({
  name: "webgpu random: the split path (noise stage as a second dispatch) gives the same step",
  ignore,
}, async () => {
  const fused = gpu!.optim;
  gpu!.optim = webgpuOptimKernels(gpu!, 4); // force the split everywhere
  try {
    await parity(
      "vsgd split",
      vsgd({ lr: 0.1, variability: 0.05, numIters: 3, momentum: 0.9, weightDecay: 1e-3 }),
      4,
    );
    await parity("vadam split", vadam({ lr: 1e-2, variability: 0.02, numIters: 3, amsgrad: true }), 4);
  } finally {
    gpu!.optim = fused;
  }
});
