/**
 * Us vs TensorFlow.js (tfjs-backend-cpu and tfjs-backend-wasm), in one process:
 *
 *   deno run -A -c bench/deno.json bench/compare_tfjs.ts [--rounds 5] [--steps 20] [--no-cpu]
 *
 * 1. matmul 512² and 1024² (float32): GFLOP/s of our `gemm` kernel and of our public `matmul` op
 *    (readback included) vs `tf.matMul` + `dataSync` on each tfjs backend, with ratios.
 * 2. MLP 784-256-256-10 (ReLU, softmax cross-entropy), plain SGD, batch 128: identical initial
 *    weights and batches in all three; examples/s (median over rounds) and the loss after
 *    `--steps` steps (must agree closely).
 */
import { parseArgs } from "node:util";
// deno-lint-ignore no-import-prefix -- bench-only peers; deno.json stays dependency-free
import * as tf from "npm:@tensorflow/tfjs-core@4.22.0";
// deno-lint-ignore no-import-prefix -- bench-only peers; deno.json stays dependency-free
import "npm:@tensorflow/tfjs-backend-cpu@4.22.0";
// tfjs-core's Node build registers no gradients (its ESM sources, which do, have extensionless
// imports Deno cannot load); the union package's Node build registers them all.
// deno-lint-ignore no-import-prefix -- bench-only peers; deno.json stays dependency-free
import "npm:@tensorflow/tfjs@4.22.0";
// deno-lint-ignore no-import-prefix -- bench-only peers; deno.json stays dependency-free
import { setWasmPaths } from "npm:@tensorflow/tfjs-backend-wasm@4.22.0";
import { gemm, gemmCapabilities } from "../kernels/wasm/gemm.ts";
import { add, crossEntropy, matmul, relu, type Tensor, tensor, valueAndGrad } from "../mod.ts";
import { applyUpdates, sgd } from "../src/optim/mod.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "5" },
    steps: { type: "string", default: "20" },
    "no-cpu": { type: "boolean", default: false },
  },
});
const ROUNDS = Number(args.values.rounds), STEPS = Number(args.values.steps);
const WARMUP = 3, BATCH = 128, SIZES = [784, 256, 256, 10], LR = 0.05;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const fmt = (x: number, d = 1) => x.toFixed(d);

/** Deterministic uniform numbers in [0, 1). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

// ---- backends -------------------------------------------------------------------------------

const wasmDir = new URL(
  "dist/",
  import.meta.resolve("npm:@tensorflow/tfjs-backend-wasm@4.22.0/package.json"),
);
setWasmPaths(wasmDir.href);
const tfBackends: string[] = [];
if (!args.values["no-cpu"]) tfBackends.push("cpu");
try {
  if (await tf.setBackend("wasm")) tfBackends.push("wasm");
  else console.log(`tfjs-wasm: setBackend("wasm") returned false (wasm files at ${wasmDir.href})`);
} catch (e) {
  console.log(`tfjs-wasm: cannot load from ${wasmDir.href}: ${(e as Error).message}`);
}
if (tfBackends.includes("wasm")) {
  console.log(
    `tfjs-wasm: SIMD ${tf.env().getBool("WASM_HAS_SIMD_SUPPORT")}, threads ${
      tf.env().getBool("WASM_HAS_MULTITHREAD_SUPPORT")
    }`,
  );
}
console.log(`ours: gemm capabilities ${JSON.stringify(gemmCapabilities())}`);
console.log(
  `deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} hardware threads, tfjs ${tf.version_core}\n`,
);

// ---- 1. matmul ------------------------------------------------------------------------------

/** Median ms of `f` per contender; contenders take turns so that load changes hit all alike. */
async function interleaved(
  reps: number,
  fns: Record<string, { run: () => void | Promise<void>; reps?: number; setup?: () => Promise<void> }>,
): Promise<Record<string, number>> {
  const ts: Record<string, number[]> = {};
  for (let r = -1; r < reps; r++) {
    for (const [k, f] of Object.entries(fns)) {
      if (r >= (f.reps ?? reps)) continue;
      await f.setup?.();
      const t0 = performance.now();
      await f.run();
      if (r >= 0) (ts[k] ??= []).push(performance.now() - t0);
    }
  }
  return Object.fromEntries(Object.entries(ts).map(([k, v]) => [k, median(v)]));
}

console.log("matmul float32 (GFLOP/s, median)");
for (const n of [512, 1024]) {
  const r = rng(n);
  const a = Float32Array.from({ length: n * n }, r), b = Float32Array.from({ length: n * n }, r);
  const c = new Float32Array(n * n);
  const flop = 2 * n ** 3;
  const ta = tensor(a, [n, n]), tb = tensor(b, [n, n]);
  const fns: Parameters<typeof interleaved>[1] = {
    "ours gemm": { run: () => gemm({ M: n, N: n, K: n, a, b, c }) },
    "ours matmul op": { run: async () => void await matmul(ta, tb).data() },
  };
  const tfTensors: tf.Tensor[] = [];
  for (const be of tfBackends) {
    await tf.setBackend(be);
    const xa = tf.tensor2d(a, [n, n]), xb = tf.tensor2d(b, [n, n]);
    tfTensors.push(xa, xb);
    fns[`tfjs-${be}`] = {
      reps: be === "cpu" ? 3 : undefined,
      setup: async () => void await tf.setBackend(be),
      run: () => {
        const y = tf.matMul(xa, xb);
        y.dataSync();
        y.dispose();
      },
    };
  }
  const ms = await interleaved(n === 512 ? 21 : 9, fns);
  for (const t of tfTensors) t.dispose();
  const res = Object.fromEntries(Object.entries(ms).map(([k, v]) => [k, flop / v / 1e6]));
  const ours = res["ours gemm"];
  const line = Object.entries(res).map(([k, v]) => `${k} ${fmt(v)}`).join(", ");
  const ratios = tfBackends.map((be) => `${fmt(ours / res[`tfjs-${be}`])}x tfjs-${be}`).join(", ");
  console.log(`  ${n}²: ${line}  → ours ${ratios}`);
}

// ---- 2. MLP training ------------------------------------------------------------------------

/** Initial weights (He-uniform) and biases, float32, identical for everyone. */
function initWeights(): Float32Array[] {
  const r = rng(1234), out: Float32Array[] = [];
  for (let l = 0; l + 1 < SIZES.length; l++) {
    const fanIn = SIZES[l], fanOut = SIZES[l + 1], lim = Math.sqrt(6 / fanIn);
    out.push(Float32Array.from({ length: fanIn * fanOut }, () => (2 * r() - 1) * lim));
    out.push(new Float32Array(fanOut));
  }
  return out;
}

/** A few fixed batches of synthetic "images" whose label depends on the input (learnable). */
function makeBatches(count: number): { x: Float32Array; y: Int32Array }[] {
  const r = rng(99), batches = [];
  for (let i = 0; i < count; i++) {
    const x = Float32Array.from({ length: BATCH * 784 }, r);
    const y = new Int32Array(BATCH);
    for (let j = 0; j < BATCH; j++) {
      let s = 0;
      for (let k = 0; k < 784; k += 97) s += x[j * 784 + k];
      y[j] = Math.floor(s * 1.25) % 10;
    }
    batches.push({ x, y });
  }
  return batches;
}

const W0 = initWeights(), BATCHES = makeBatches(8);

interface RunResult {
  exPerS: number;
  loss: number;
}

async function runOurs(): Promise<RunResult> {
  let params: Record<string, Tensor> = {};
  for (let l = 0; l < 3; l++) {
    params[`w${l}`] = tensor(W0[2 * l], [SIZES[l], SIZES[l + 1]]);
    params[`b${l}`] = tensor(W0[2 * l + 1], [SIZES[l + 1]]);
  }
  const xs = BATCHES.map((b) => tensor(b.x, [BATCH, 784]));
  const lossFn = (p: Record<string, Tensor>, x: Tensor, y: Int32Array) => {
    const h1 = relu(add(matmul(x, p.w0), p.b0));
    const h2 = relu(add(matmul(h1, p.w1), p.b1));
    return crossEntropy(add(matmul(h2, p.w2), p.b2), y);
  };
  const vg = valueAndGrad(lossFn);
  const opt = sgd({ lr: LR });
  let state = opt.init(params);
  let t0 = 0, loss: Tensor | undefined;
  for (let s = 0; s < STEPS; s++) {
    if (s === WARMUP) t0 = performance.now();
    const i = s % BATCHES.length;
    const { value, grads } = vg(params, xs[i], BATCHES[i].y);
    const step = opt.update(grads, state, params);
    params = applyUpdates(params, step.updates);
    state = step.state;
    loss = value;
  }
  const lossValue = (await loss!.data())[0];
  const dt = performance.now() - t0;
  return { exPerS: (BATCH * (STEPS - WARMUP)) / (dt / 1000), loss: lossValue };
}

function runTf(be: string): RunResult {
  return tf.tidy(() => {
    const vars: tf.Variable[] = [];
    for (let l = 0; l < 3; l++) {
      vars.push(tf.variable(tf.tensor2d(W0[2 * l], [SIZES[l], SIZES[l + 1]])));
      vars.push(tf.variable(tf.tensor1d(W0[2 * l + 1])));
    }
    const xs = BATCHES.map((b) => tf.tensor2d(b.x, [BATCH, 784]));
    const ys = BATCHES.map((b) => tf.oneHot(tf.tensor1d(b.y, "int32"), 10));
    const opt = tf.train.sgd(LR);
    let t0 = 0, loss = NaN;
    for (let s = 0; s < STEPS; s++) {
      if (s === WARMUP) t0 = performance.now();
      const i = s % BATCHES.length;
      const l = opt.minimize(() => {
        const h1 = tf.relu(tf.add(tf.matMul(xs[i], vars[0]), vars[1]));
        const h2 = tf.relu(tf.add(tf.matMul(h1, vars[2]), vars[3]));
        const logits = tf.add(tf.matMul(h2, vars[4]), vars[5]);
        return tf.losses.softmaxCrossEntropy(ys[i], logits) as tf.Scalar;
      }, s === STEPS - 1)!;
      if (s === STEPS - 1) loss = l.dataSync()[0];
    }
    const dt = performance.now() - t0;
    opt.dispose();
    for (const v of vars) v.dispose();
    void be;
    return { exPerS: (BATCH * (STEPS - WARMUP)) / (dt / 1000), loss };
  });
}

console.log(
  `\nMLP ${
    SIZES.join("-")
  } SGD(lr ${LR}) batch ${BATCH}: ${STEPS} steps (${WARMUP} warm-up), ${ROUNDS} rounds`,
);
const results: Record<string, RunResult[]> = { ours: [] };
for (const be of tfBackends) results[`tfjs-${be}`] = [];
for (let r = 0; r < ROUNDS; r++) {
  results.ours.push(await runOurs());
  for (const be of tfBackends) {
    if (be === "cpu" && r >= 3) continue; // slow; three rounds are plenty
    await tf.setBackend(be);
    results[`tfjs-${be}`].push(runTf(be));
  }
}
const med: Record<string, number> = {};
for (const [k, rs] of Object.entries(results)) {
  med[k] = median(rs.map((x) => x.exPerS));
  const runs = rs.map((x) => fmt(x.exPerS, 0)).join(", ");
  console.log(
    `  ${k.padEnd(10)} ${fmt(med[k], 0).padStart(7)} ex/s (runs: ${runs}); loss after ${STEPS} steps ${
      rs[0].loss.toFixed(5)
    }`,
  );
}
for (const be of tfBackends) console.log(`  ours / tfjs-${be}: ${fmt(med.ours / med[`tfjs-${be}`], 2)}x`);
const losses = Object.values(results).map((rs) => rs[0].loss);
const spread = Math.max(...losses) - Math.min(...losses);
console.log(`  loss spread across implementations: ${spread.toExponential(2)}`);
