/**
 * GEMM throughput: `deno bench bench/matmul_bench.ts`. Square products of 256, 512, 1024 in the
 * three layouts training uses (NN, NT, TN), single-threaded WebAssembly SIMD ("wasm") and the
 * default ("auto": workers for large products where they measure faster); plain JS at 256 for
 * reference. A GFLOP/s table (median over the timed
 * iterations) is printed when the run ends.
 */
import { gemm, gemmCapabilities, type GemmImpl, setGemmImpl } from "../kernels/wasm/gemm.ts";

const SIZES = [256, 512, 1024];
const LAYOUTS: [string, boolean, boolean][] = [["NN", false, false], ["NT", false, true], [
  "TN",
  true,
  false,
]];
const IMPLS: GemmImpl[] = gemmCapabilities().threads > 1 ? ["wasm", "auto"] : ["wasm"];

const samples = new Map<string, number[]>();

function operands(n: number): [Float32Array, Float32Array, Float32Array] {
  const a = new Float32Array(n * n), b = new Float32Array(n * n);
  for (let i = 0; i < n * n; i++) {
    a[i] = Math.sin(i);
    b[i] = Math.cos(i);
  }
  return [a, b, new Float32Array(n * n)];
}

{
  // Plain-JS reference point (the fallback without WebAssembly SIMD), small size only.
  const [a, b, c] = operands(256);
  samples.set("js    NN 256", []);
  Deno.bench({ name: "js    NN 256", group: "256" }, () => {
    setGemmImpl("js");
    const t0 = performance.now();
    gemm({ M: 256, N: 256, K: 256, a, b, c });
    samples.get("js    NN 256")!.push(performance.now() - t0);
  });
}

for (const n of SIZES) {
  const [a, b, c] = operands(n);
  for (const impl of IMPLS) {
    for (const [name, tA, tB] of LAYOUTS) {
      const key = `${impl.padEnd(5)} ${name} ${n}`;
      samples.set(key, []);
      Deno.bench({ name: key, group: `${n}`, baseline: impl === "wasm" && name === "NN" }, () => {
        setGemmImpl(impl);
        const t0 = performance.now();
        gemm({ transA: tA, transB: tB, M: n, N: n, K: n, a, b, c });
        samples.get(key)!.push(performance.now() - t0);
      });
    }
  }
}

globalThis.addEventListener("unload", () => {
  const rows: string[] = [];
  for (const [key, ms] of samples) {
    if (ms.length === 0) continue;
    ms.sort((x, y) => x - y);
    const med = ms[ms.length >> 1], n = Number(key.split(" ").pop());
    rows.push(
      `${key.padEnd(16)} ${(2 * n ** 3 / med / 1e6).toFixed(1).padStart(6)} GFLOP/s (median ${
        med.toFixed(2)
      } ms)`,
    );
  }
  console.log(`\ngemm float32, ${gemmCapabilities().threads} hardware threads\n${rows.join("\n")}`);
});
