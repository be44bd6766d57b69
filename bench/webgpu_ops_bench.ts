/**
 * WebGPU throughput of conv2d (forward and both gradients, GFLOP/s; a CIFAR-like layer and ResNet-18's
 * late-stage shapes: 4×4 images, stride-2 3×3 and 1×1), elementwise ops and reductions (GB/s of
 * compulsory traffic): `deno bench -A bench/webgpu_ops_bench.ts`. The ResNet-18 rows are timed with
 * both matmul kernels (`setMatmulKernel`: `4x4`, what "auto" uses today, and the register-blocked
 * `8x8`), and each shape's 8x8/4x4 time ratio is printed at the end (below 1: the 8×8 kernel is faster).
 */
import type { Tensor } from "../src/tensor.ts";
import { type MatmulKernelChoice, setMatmulKernel } from "../src/webgpu/matmul_ops.ts";
import { benchGpu, gpuBench, perRepMs, throughput } from "./webgpu_util.ts";

const b = await benchGpu("webgpu_ops_bench");
const software = b?.ctx.description.includes("llvmpipe") ?? false;

const KERNELS = ["4x4", "8x8"] as const satisfies readonly MatmulKernelChoice[];
const pairs: { name: string; rows: ReturnType<typeof gpuBench>[] }[] = [];

/** One bench row of `encode` per matmul kernel (`name 4x4`, `name 8x8`), paired for the ratio table. */
function kernelRows(name: string, flops: number, encode: () => void): void {
  const rows = KERNELS.map((kernel) =>
    gpuBench(b, `${name} ${kernel}`, flops, "GFLOP/s", () => {
      const previous = setMatmulKernel(kernel);
      try {
        encode();
      } finally {
        setMatmulKernel(previous);
      }
    })
  );
  pairs.push({ name, rows });
}

function t(shape: number[]): Tensor {
  const n = shape.reduce((a, c) => a * c, 1);
  return b!.fromArray(Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 0.5), shape, "float32");
}

if (b) {
  // conv2d: batch × 32 channels × 32² → 64 channels, 3×3, padding 1 (a CIFAR-like layer)
  const N = software ? 4 : 64, C = 32, H = 32, O = 64;
  const x = t([N, C, H, H]), w = t([O, C, 3, 3]), gy = t([N, O, H, H]);
  const geo = { stride: [1, 1] as [number, number], padding: [1, 1] as [number, number] };
  const flops = 2 * N * O * H * H * C * 9;
  gpuBench(
    b,
    `conv2d fwd ${N}x${C}x${H}² → ${O}, 3x3`,
    flops,
    "GFLOP/s",
    () => b.release(b.conv2d(x, w, geo)),
  );
  gpuBench(b, `conv2d grad input`, flops, "GFLOP/s", () => b.release(b.conv2dGradInput(gy, w, x.shape, geo)));
  gpuBench(
    b,
    `conv2d grad weight`,
    flops,
    "GFLOP/s",
    () => b.release(b.conv2dGradWeight(x, gy, w.shape, geo)),
  );

  // ResNet-18 (CIFAR) at batch 128 (8 on software): its last stage's 3×3 on 4×4 images, the stride-2 3×3
  // that enters it and the 1×1 stride-2 shortcut (FLOPs of the dense product; the stride-2 input
  // gradient skips the taps off the stride grid)
  const RB = software ? 8 : 128;
  for (const [C, H, O, k, s, p] of [[512, 4, 512, 3, 1, 1], [256, 8, 512, 3, 2, 1], [256, 8, 512, 1, 2, 0]]) {
    const OH = Math.floor((H + 2 * p - k) / s) + 1;
    const rx = t([RB, C, H, H]), rw = t([O, C, k, k]), rgy = t([RB, O, OH, OH]);
    const rgeo = { stride: [s, s] as [number, number], padding: [p, p] as [number, number] };
    const rflops = 2 * RB * O * OH * OH * C * k * k;
    const what = `resnet18 ${RB}x${C}x${H}² → ${O}, ${k}x${k} s${s}`;
    kernelRows(`${what} fwd`, rflops, () => b.release(b.conv2d(rx, rw, rgeo)));
    kernelRows(`${what} grad input`, rflops, () => b.release(b.conv2dGradInput(rgy, rw, rx.shape, rgeo)));
    kernelRows(`${what} grad weight`, rflops, () => b.release(b.conv2dGradWeight(rx, rgy, rw.shape, rgeo)));
  }
  globalThis.addEventListener("unload", () => {
    console.log("\nConvolution matmul kernel A/B, time ratio 8x8/4x4 (below 1: the 8x8 kernel is faster):");
    for (const { name, rows: [narrow, wide] } of pairs) {
      if (narrow?.ms.length && wide?.ms.length) {
        console.log(
          `  ${name.padEnd(46)} 8x8/4x4 ${(perRepMs(wide) / perRepMs(narrow)).toFixed(2)}×  ` +
            `(4x4 ${throughput(narrow).toFixed(1)}, 8x8 ${throughput(wide).toFixed(1)} GFLOP/s)`,
        );
      }
    }
  });

  // elementwise: 16M elements (1M on software)
  const n = software ? 1 << 20 : 1 << 24;
  const a = t([n]), c = t([n]);
  gpuBench(b, `relu ${n}`, 8 * n, "GB/s", () => b.release(b.unary("relu", a)));
  gpuBench(b, `add ${n} + ${n}`, 12 * n, "GB/s", () => b.release(b.binary("add", a, c, [n])));
  const rows = n / 1024;
  const m = t([rows, 1024]), bias = t([1024]);
  gpuBench(
    b,
    `add [${rows}, 1024] + [1024] (bias)`,
    8 * n,
    "GB/s",
    () => b.release(b.binary("add", m, bias, [rows, 1024])),
  );
  const col = t([rows, 1]);
  gpuBench(
    b,
    `mul [${rows}, 1024] · [${rows}, 1]`,
    8 * n,
    "GB/s",
    () => b.release(b.binary("mul", m, col, [rows, 1024])),
  );

  // reductions
  gpuBench(b, `sum all ${n}`, 4 * n, "GB/s", () => b.release(b.reduce("sum", a, [0], false)));
  gpuBench(
    b,
    `sum [${rows}, 1024] axis 1 (rows)`,
    4 * n,
    "GB/s",
    () => b.release(b.reduce("sum", m, [1], false)),
  );
  gpuBench(
    b,
    `sum [${rows}, 1024] axis 0 (bias grad)`,
    4 * n,
    "GB/s",
    () => b.release(b.reduce("sum", m, [0], false)),
  );
  gpuBench(b, `max [${rows}, 1024] axis 1`, 4 * n, "GB/s", () => b.release(b.reduce("max", m, [1], false)));
  const logits = t([rows * 100, 10]);
  gpuBench(b, `softmax [${rows * 100}, 10]`, 8 * rows * 1000, "GB/s", () => b.release(b.softmax(logits)));
}
