/**
 * WebGPU matmul throughput, 256…4096 square (NN), plus the transposed layouts the backward pass
 * uses at 1024 and 2048: `deno bench -A bench/webgpu_matmul_bench.ts`. GFLOP/s (2·M·N·K per
 * product) are printed at the end. On a software adapter (lavapipe) only correctness means
 * anything; compare with TensorFlow.js through `bench/webgpu_tfjs_matmul.ts`.
 */
import type { Tensor } from "../src/tensor.ts";
import { benchGpu, gpuBench } from "./webgpu_util.ts";

const b = await benchGpu("webgpu_matmul_bench");
const software = b?.ctx.description.includes("llvmpipe") ?? false;
const SIZES = software ? [256, 512] : [256, 512, 1024, 2048, 4096];

function operand(n: number, f: (i: number) => number): Tensor {
  return b!.fromArray(Float32Array.from({ length: n * n }, (_, i) => f(i)), [n, n], "float32");
}

if (b) {
  for (const n of SIZES) {
    const x = operand(n, Math.sin), y = operand(n, Math.cos);
    const layouts: [string, boolean, boolean][] = n === 1024 || n === 2048
      ? [["NN", false, false], ["NT", false, true], ["TN", true, false]]
      : [["NN", false, false]];
    for (const [tag, tA, tB] of layouts) {
      gpuBench(b, `matmul ${tag} ${n}x${n}x${n}`, 2 * n * n * n, "GFLOP/s", () => {
        b.release(b.matmul(x, y, tA, tB, [n, n]));
      });
    }
  }
}
