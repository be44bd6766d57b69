/**
 * Soak test (a script, not part of CI): many optimizer steps and many epochs of `fit`, sampling
 * the JavaScript heap (and, on WebGPU, the live buffers of the pool) as they run, to show that
 * memory stays flat. For each phase it prints the samples' start, end and maximum and the slope of
 * a least-squares line through the samples after the first (in bytes per 1000 steps, and buffers
 * per 1000 steps); a leak of one small tensor per step shows as a slope of tens of kB.
 *
 *   deno run -A --v8-flags=--expose-gc bench/soak.ts                   # defaults, about 3 minutes
 *   deno run -A --v8-flags=--expose-gc bench/soak.ts --steps 1000000 --epochs 100 --gpu-steps 100000
 *
 * Phases: (1) `--steps` vsgd steps (update + applyUpdates in a `tidy`, the previous params and
 * state disposed) on a small tree on the CPU; (2) `--epochs` epochs of `fit` (an MLP 16-64-10 on
 * 4096 synthetic examples, batch 32, vsgd); (3) and (4) the same on WebGPU when an adapter is
 * present (`--gpu-steps` steps, `--gpu-epochs` epochs; `--no-gpu` skips them). With `--expose-gc` the heap is
 * sampled after a full collection (what is really retained); without it the samples are noisier.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { dispose, fit, initWebGPU, randn, setDefaultDevice, tidy, webgpuStats } from "../mod.ts";
import { syncWebGPU } from "../src/webgpu/mod.ts";
import { applyUpdates, vsgd } from "../src/optim/mod.ts";
import { mlp } from "../src/nn/mod.ts";
import { makeDataset } from "../src/data/mod.ts";
import type { Device } from "../src/types.ts";
import { runtimeDir } from "../tests/_runtime_dir.ts";

const { values: a } = parseArgs({
  args: Deno.args,
  options: {
    steps: { type: "string", default: "100000" },
    epochs: { type: "string", default: "20" },
    "gpu-steps": { type: "string", default: "100000" },
    "gpu-epochs": { type: "string" },
    samples: { type: "string", default: "20" },
    "no-gpu": { type: "boolean", default: false },
  },
});
const int = (name: string, v: string | undefined): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) {
    throw new RangeError(`soak: --${name} must be a positive integer, got ${v}`);
  }
  return n;
};
const STEPS = int("steps", a.steps), EPOCHS = int("epochs", a.epochs);
const GPU_STEPS = int("gpu-steps", a["gpu-steps"]),
  GPU_EPOCHS = int("gpu-epochs", a["gpu-epochs"] ?? a.epochs);
const SAMPLES = int("samples", a.samples);
const gc = (globalThis as { gc?: () => void }).gc;

interface Sample {
  at: number; // step
  heap: number; // bytes
  buffers: number; // live GPU buffers (NaN on the CPU)
}

async function sample(at: number, device: Device): Promise<Sample> {
  if (device === "webgpu") await syncWebGPU();
  gc?.();
  return {
    at,
    heap: Deno.memoryUsage().heapUsed,
    buffers: device === "webgpu" ? webgpuStats()!.liveBuffers : NaN,
  };
}

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length, mx = xs.reduce((s, v) => s + v, 0) / n, my = ys.reduce((s, v) => s + v, 0) / n;
  let num = 0, den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return den > 0 ? num / den : NaN;
}

const MB = (b: number) => `${(b / 2 ** 20).toFixed(2)} MB`;

function report(name: string, s: Sample[], seconds: number): void {
  // The first sample is before any warm-up (pipelines, pools, JIT): the slope starts at the second.
  const rest = s.slice(1);
  const heaps = s.map((x) => x.heap);
  const hs = slope(rest.map((x) => x.at), rest.map((x) => x.heap)) * 1000;
  let line = `${name}: ${s.at(-1)!.at} steps in ${seconds.toFixed(1)} s; heap start ${MB(heaps[0])}, ` +
    `end ${MB(heaps.at(-1)!)}, max ${MB(Math.max(...heaps))}, slope ${(hs / 1024).toFixed(2)} kB/1000 steps`;
  if (!Number.isNaN(s[0].buffers)) {
    const bs = s.map((x) => x.buffers);
    const bslope = slope(rest.map((x) => x.at), rest.map((x) => x.buffers)) * 1000;
    line += `; live GPU buffers start ${bs[0]}, end ${bs.at(-1)}, max ${Math.max(...bs)}, ` +
      `slope ${bslope.toFixed(3)}/1000 steps`;
  }
  console.log(line);
}

/** `steps` vsgd steps on a small tree (about 2.2k parameters). */
async function optimizerSoak(device: Device, steps: number): Promise<void> {
  await setDefaultDevice(device);
  let params = {
    w: randn([32, 64], { seed: 1 }),
    b: randn([64], { seed: 2 }),
    v: randn([64, 2], { seed: 3 }),
  };
  const grads = {
    w: randn([32, 64], { seed: 4 }),
    b: randn([64], { seed: 5 }),
    v: randn([64, 2], { seed: 6 }),
  };
  const opt = vsgd({ lr: 1e-4, momentum: 0.9, variability: 0.01, numIters: 1000, seed: 7 });
  let state = opt.init(params);
  const every = Math.max(1, Math.floor(steps / SAMPLES));
  const samples = [await sample(0, device)];
  const t0 = performance.now();
  for (let i = 1; i <= steps; i++) {
    const next = tidy(() => {
      const r = opt.update(grads, state, params);
      return { params: applyUpdates(params, r.updates), state: r.state };
    });
    dispose([params, state], next);
    ({ params, state } = next);
    if (i % every === 0 || i === steps) samples.push(await sample(i, device));
  }
  report(`${steps} vsgd steps (${device})`, samples, (performance.now() - t0) / 1000);
  dispose([params, state, grads]);
}

/** `epochs` epochs of fit on an MLP 16-64-10 over 4096 synthetic examples. */
async function fitSoak(device: Device, epochs: number): Promise<void> {
  await setDefaultDevice(device);
  const n = 4096, d = 16, C = 10;
  const x = (await randn([n, d], { seed: 11, device: "cpu" }).data()) as Float32Array;
  const y = new Int32Array(n);
  // The class is the largest of the first C coordinates: learnable, not trivial at the start.
  for (let i = 0; i < n; i++) {
    for (let j = 1; j < C; j++) if (x[i * d + j] > x[i * d + y[i]]) y[i] = j;
  }
  const train = makeDataset(x, y, [d], C);
  const net = mlp([d, 64, C], { seed: 3 });
  const stepsPerEpoch = Math.ceil(n / 32);
  const samples = [await sample(0, device)];
  const t0 = performance.now();
  const r = await fit({
    params: net.params,
    forward: net.forward,
    optimizer: vsgd({ lr: 0.05, variability: 0.01, numIters: 1000, seed: 1 }),
    train,
    epochs,
    batchSize: 32,
    evalBatchSize: 1024,
    logger: null,
    onEpoch: async (m) => {
      samples.push(await sample(m.epoch * stepsPerEpoch, device));
    },
  });
  report(
    `${epochs} epochs of fit, ${epochs * stepsPerEpoch} steps (${device}; final train acc ${
      r.history.at(-1)!.trainAccuracy.toFixed(3)
    })`,
    samples,
    (performance.now() - t0) / 1000,
  );
  dispose([r.params, r.rawParams, r.state, net.params]);
}

console.log(
  `soak: Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores, gc ${
    gc ? "forced" : "not exposed"
  }`,
);
await optimizerSoak("cpu", STEPS);
await fitSoak("cpu", EPOCHS);
if (!a["no-gpu"]) {
  if (!Deno.env.get("XDG_RUNTIME_DIR")) Deno.env.set("XDG_RUNTIME_DIR", runtimeDir(undefined));
  let info;
  try {
    info = await initWebGPU();
  } catch (e) {
    console.log(`webgpu: skipped (${(e as Error).message.split("\n")[0]})`);
  }
  if (info) {
    console.log(`webgpu: ${info.adapter}`);
    await optimizerSoak("webgpu", GPU_STEPS);
    await fitSoak("webgpu", GPU_EPOCHS);
  }
}
