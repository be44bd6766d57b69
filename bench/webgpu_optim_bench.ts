/**
 * The fused optimizer steps on WebGPU: SGD vs VSGD and Adam vs VAdam, one dispatch per parameter
 * array, on one 16M-element array and on the MLP 784-256-256-10 of the label-noise protocol:
 * `deno bench -A bench/webgpu_optim_bench.ts`. Prints GB/s of compulsory traffic and the
 * VSGD/SGD and VAdam/Adam time ratios (target on a real GPU: VSGD ≤ 1.1× SGD).
 *
 * Traffic per element (float32): SGD reads g, writes u (8 B); VSGD (official mode) also reads
 * the old noise and writes the new one (16 B) and draws the noise in-kernel (Philox4x32-10).
 *
 * The generator alone is timed too (4 B written per element, so GB/s ÷ 4 = G draws/s): raw
 * Philox words, and each noise law (Philox plus the exact fixed-point transform). Where these
 * rows are far below the SGD row's GB/s, the fused VSGD step is bound by the noise arithmetic,
 * not by memory.
 */
import { NOISE_LAWS } from "../src/random/noise.ts";
import {
  NOISE_WORDS,
  noiseKernel,
  noiseUniforms,
  PHILOX_WORDS,
  philoxKernel,
} from "../kernels/wgsl/random.ts";
import { WG1D } from "../kernels/wgsl/common.ts";
import { f32bits, type GpuStorage } from "../src/webgpu/backend.ts";
import { optimKernels } from "../src/optim/fused_ops.ts";
import "../src/optim/mod.ts";
import type { Tensor } from "../src/tensor.ts";
import { benchGpu, gpuBench, perRepMs } from "./webgpu_util.ts";

const b = await benchGpu("webgpu_optim_bench");
const software = b?.ctx.description.includes("llvmpipe") ?? false;

function t(n: number): Tensor {
  return b!.fromArray(Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 1e-2), [n], "float32");
}

if (b) {
  const k = optimKernels("webgpu");
  const sizes: [string, number[]][] = [
    [`one array of ${software ? "1M" : "16M"}`, [software ? 1 << 20 : 1 << 24]],
    ["MLP 784-256-256-10", [784 * 256, 256, 256 * 256, 256, 256 * 10, 10]],
  ];
  // The generator alone: raw Philox words and each law's draws (4 B written per element).
  const nDraws = software ? 1 << 20 : 1 << 24;
  const drawsOut = b.alloc([nDraws], "bench");
  const drawsBuf = (drawsOut.storage as GpuStorage).buffer;
  const KEY = [1, 2, 3, 0];
  gpuBench(b, `philox words ${software ? "1M" : "16M"}`, 4 * nDraws, "GB/s", () => {
    b.run(
      { key: "bench/philox", code: philoxKernel, bindings: ["write"], uniformWords: PHILOX_WORDS },
      [nDraws / 4, ...KEY],
      [drawsBuf],
      b.grid(Math.ceil(nDraws / 4 / WG1D)),
    );
  });
  for (const law of NOISE_LAWS) {
    gpuBench(b, `noise ${law} ${software ? "1M" : "16M"}`, 4 * nDraws, "GB/s", () => {
      b.run(
        {
          key: `bench/noise/${law}`,
          code: () => noiseKernel(law),
          bindings: ["write"],
          uniformWords: NOISE_WORDS,
        },
        noiseUniforms(nDraws, { k0: 1, k1: 2, c1: 3, c2: 0 }, law, f32bits(0.05)),
        [drawsBuf],
        b.grid(Math.ceil(nDraws / 4 / WG1D)),
      );
    });
  }

  const pairs: [string, ReturnType<typeof gpuBench>, ReturnType<typeof gpuBench>][] = [];
  for (const [label, shapes] of sizes) {
    const leaves = shapes.map((n) => ({ g: t(n), p: t(n), nOld: t(n), m: t(n), v: t(n) }));
    const total = shapes.reduce((a, c) => a + c, 0);
    const key = { k0: 1, k1: 2, c1: 3, c2: 0 };
    const drop = (
      r: { u: Tensor; buffers: Readonly<Record<string, Tensor | null>>; noise?: Tensor | null },
    ) => {
      b.release(r.u);
      for (const x of Object.values(r.buffers)) if (x) b.release(x);
      if (r.noise) b.release(r.noise);
    };
    const sgdArgs = (l: typeof leaves[0]) => ({
      g: l.g,
      p: null,
      buf: null,
      useMomentum: false,
      lr: 0.1,
      momentum: 0,
      dampening: 0,
      weightDecay: 0,
      nesterov: false,
    });
    const sgd = gpuBench(b, `sgd  ${label}`, 8 * total, "GB/s", () => {
      for (const l of leaves) drop(k.sgd(sgdArgs(l)));
    });
    const vsgd = gpuBench(b, `vsgd ${label}`, 16 * total, "GB/s", () => {
      for (const l of leaves) {
        drop(
          k.sgd({ ...sgdArgs(l), noise: { law: "gaussian", scale: 0.05, key, reset: false, nOld: l.nOld } }),
        );
      }
    });
    const adamArgs = (l: typeof leaves[0]) => ({
      g: l.g,
      p: null,
      m: l.m,
      v: l.v,
      vmax: null,
      t: 10,
      lr: 1e-3,
      b1: 0.9,
      b2: 0.999,
      eps: 1e-8,
      weightDecay: 0,
      decoupled: false,
      amsgrad: false,
    });
    const adam = gpuBench(b, `adam  ${label}`, 24 * total, "GB/s", () => {
      for (const l of leaves) drop(k.adam(adamArgs(l)));
    });
    const vadam = gpuBench(b, `vadam ${label}`, 32 * total, "GB/s", () => {
      for (const l of leaves) {
        drop(
          k.adam({
            ...adamArgs(l),
            noise: { law: "gaussian", scale: 0.05, key, reset: false, nOld: l.nOld },
          }),
        );
      }
    });
    pairs.push([`vsgd/sgd   ${label}`, vsgd, sgd], [`vadam/adam ${label}`, vadam, adam]);
  }
  globalThis.addEventListener("unload", () => {
    console.log("\nFused step time ratios (target on a real GPU: vsgd/sgd ≤ 1.1):");
    for (const [name, x, y] of pairs) {
      if (x && y && x.ms.length && y.ms.length) {
        console.log(`  ${name.padEnd(36)} ${(perRepMs(x) / perRepMs(y)).toFixed(2)}×`);
      }
    }
  });
}
