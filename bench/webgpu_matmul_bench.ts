/**
 * WebGPU matmul throughput, 256…4096 square (NN), plus the transposed layouts the backward pass
 * uses at 1024 and 2048, each timed with both kernels: `4x4` (kernels/wgsl/matmul.ts, what "auto"
 * uses today) and `8x8` (the register-blocked kernels/wgsl/matmul_wide.ts), selected by
 * `setMatmulKernel`: `deno bench -A bench/webgpu_matmul_bench.ts`. GFLOP/s (2·M·N·K per product)
 * are printed at the end, then each product's 8x8/4x4 time ratio (below 1: the 8×8 kernel is
 * faster). On a software adapter (lavapipe) only correctness means anything; compare with
 * TensorFlow.js through `bench/webgpu_tfjs_matmul.ts`.
 */
import type { Tensor } from "../src/tensor.ts";
import { type MatmulKernelChoice, setMatmulKernel } from "../src/webgpu/matmul_ops.ts";
import { benchGpu, gpuBench, perRepMs, throughput } from "./webgpu_util.ts";

const b = await benchGpu("webgpu_matmul_bench");
const software = b?.ctx.description.includes("llvmpipe") ?? false;
const SIZES = software ? [256, 512] : [256, 512, 1024, 2048, 4096];
const KERNELS = ["4x4", "8x8"] as const satisfies readonly MatmulKernelChoice[];

function operand(n: number, f: (i: number) => number): Tensor {
  return b!.fromArray(Float32Array.from({ length: n * n }, (_, i) => f(i)), [n, n], "float32");
}

if (b) {
  const pairs: { name: string; rows: ReturnType<typeof gpuBench>[] }[] = [];
  for (const n of SIZES) {
    const x = operand(n, Math.sin), y = operand(n, Math.cos);
    const layouts: [string, boolean, boolean][] = n === 1024 || n === 2048
      ? [["NN", false, false], ["NT", false, true], ["TN", true, false]]
      : [["NN", false, false]];
    for (const [tag, tA, tB] of layouts) {
      const name = `matmul ${tag} ${n}x${n}x${n}`;
      const rows = KERNELS.map((kernel) =>
        gpuBench(b, `${name} ${kernel}`, 2 * n * n * n, "GFLOP/s", () => {
          const previous = setMatmulKernel(kernel);
          try {
            b.release(b.matmul(x, y, tA, tB, [n, n]));
          } finally {
            setMatmulKernel(previous);
          }
        })
      );
      pairs.push({ name, rows });
    }
  }
  globalThis.addEventListener("unload", () => {
    console.log("\nMatmul kernel A/B, time ratio 8x8/4x4 (below 1: the 8x8 kernel is faster):");
    for (const { name, rows: [narrow, wide] } of pairs) {
      if (narrow?.ms.length && wide?.ms.length) {
        console.log(
          `  ${name.padEnd(28)} 8x8/4x4 ${(perRepMs(wide) / perRepMs(narrow)).toFixed(2)}×  ` +
            `(4x4 ${throughput(narrow).toFixed(1)}, 8x8 ${throughput(wide).toFixed(1)} GFLOP/s)`,
        );
      }
    }
  });
}
