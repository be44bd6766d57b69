/**
 * Our WebGPU matmul against TensorFlow.js's WebGPU backend, in the same run, on the same adapter:
 *
 *   deno run -A -c bench/deno.json bench/webgpu_tfjs_matmul.ts [--sizes 256,512,1024,2048,4096] [--rounds 5]
 *
 * For each square size: GFLOP/s (median over rounds; each round encodes R products and waits
 * once, R calibrated to ~200 ms of GPU work) of ours and of `tf.matMul`, and the ratio ours/theirs.
 * Target on a real GPU: ≥ 1.0× at 2048². On a software adapter (lavapipe) the numbers mean nothing.
 */
import { parseArgs } from "node:util";
// deno-lint-ignore no-import-prefix -- bench-only peer; deno.json stays dependency-free
import * as tf from "npm:@tensorflow/tfjs-core@4.22.0";
// deno-lint-ignore no-import-prefix -- bench-only peer; deno.json stays dependency-free
import "npm:@tensorflow/tfjs-backend-webgpu@4.22.0";
import { initWebGPUBackend, NoWebGPUError } from "../src/webgpu/mod.ts";
import { calibrate, median } from "./webgpu_util.ts";

const args = parseArgs({
  args: Deno.args,
  options: { sizes: { type: "string" }, rounds: { type: "string", default: "5" } },
});
const rounds = Number(args.values.rounds);

let ours: Awaited<ReturnType<typeof initWebGPUBackend>>;
try {
  ours = await initWebGPUBackend();
} catch (e) {
  if (e instanceof NoWebGPUError) {
    console.warn(`webgpu_tfjs_matmul: SKIPPED, no WebGPU adapter (${e.message})`);
    Deno.exit(0);
  }
  throw e;
}
const software = ours.ctx.description.includes("llvmpipe");
const sizes = args.values.sizes
  ? args.values.sizes.split(",").map(Number)
  : software
  ? [256, 512]
  : [256, 512, 1024, 2048, 4096];
if (!(await tf.setBackend("webgpu"))) throw new Error("tfjs: the webgpu backend failed to initialise");
await tf.ready();
console.log(`adapter: ${ours.ctx.description}; tfjs ${tf.version_core} backend ${tf.getBackend()}`);
console.log("size     ours GFLOP/s   tfjs GFLOP/s   ours/tfjs");

for (const n of sizes) {
  const flops = 2 * n * n * n;
  const data = (f: (i: number) => number) => Float32Array.from({ length: n * n }, (_, i) => f(i));
  const ad = data(Math.sin), bd = data(Math.cos);
  // ours
  const a = ours.fromArray(ad, [n, n], "float32"), b = ours.fromArray(bd, [n, n], "float32");
  const encodeOurs = () => ours.release(ours.matmul(a, b, false, false, [n, n]));
  const rOurs = await calibrate(ours, encodeOurs);
  const tOurs: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (let i = 0; i < rOurs; i++) encodeOurs();
    await ours.sync();
    tOurs.push((performance.now() - t0) / rOurs);
  }
  // theirs
  const ta = tf.tensor2d(ad, [n, n]), tb = tf.tensor2d(bd, [n, n]);
  const runTheirs = async (reps: number) => {
    let last: tf.Tensor | null = null;
    for (let i = 0; i < reps; i++) {
      if (last) last.dispose();
      last = tf.matMul(ta, tb);
    }
    await last!.data(); // waits for the queue, like our sync
    last!.dispose();
  };
  await runTheirs(1);
  let rTheirs = 1;
  for (;;) {
    const t0 = performance.now();
    await runTheirs(rTheirs);
    const ms = performance.now() - t0;
    if (ms >= 200 || rTheirs >= 4096) break;
    rTheirs = Math.min(4096, Math.max(rTheirs * 2, Math.ceil((rTheirs * 200) / Math.max(ms - 10, 1))));
  }
  const tTheirs: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    await runTheirs(rTheirs);
    tTheirs.push((performance.now() - t0) / rTheirs);
  }
  ta.dispose();
  tb.dispose();
  ours.release(a);
  ours.release(b);
  const gOurs = flops / (median(tOurs) / 1000) / 1e9, gTheirs = flops / (median(tTheirs) / 1000) / 1e9;
  console.log(
    `${String(n).padEnd(8)} ${gOurs.toFixed(1).padStart(13)} ${gTheirs.toFixed(1).padStart(14)} ${
      (gOurs / gTheirs).toFixed(2).padStart(10)
    }×`,
  );
}
