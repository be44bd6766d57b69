/**
 * One ResNet training step — forward in training mode (batch statistics, running statistics
 * updated), backward, SGD with momentum 0.9 — on 3×32×32 random images, for ResNet-20 and
 * ResNet-18 (the original code's `model/resnet.py`), and the same step in PyTorch on the CPU with
 * the same thread count (`tools/torch_resnet_bench.py`) when a Python with torch is available:
 * prints images/s of both (medians over rounds) and the ratio ours / PyTorch. On `--device
 * webgpu` it also checks the first step's loss against the CPU's (on a software adapter such as
 * lavapipe the speed means nothing).
 *
 *   deno run -A bench/resnet_bench.ts [--models resnet20,resnet18] [--batches 32,128]
 *     [--rounds 5] [--steps 3] [--device cpu|webgpu] [--python PATH] [--no-torch]
 *     [--conv-threads auto|single|threads|ab] [--winograd on|off|ab] [--interleave N]
 *     [--relu-grad fused|composed|ab] [--pool large|all|adaptive|ab] [--merge-arrays on|off|ab]
 *     [--matmul-kernel 4x4|8x8|ab]
 *     [--max-threads 2,16,1] [--warmup 6] [--settle 300]
 *
 * `--max-threads L1,L2,…` (CPU) is a same-process A/B of the thread limit (`setThreadLimit`: the most
 * participants every CPU worker pool — GEMM, convolution, noise — may use, even past the hardware
 * threads): rounds rotate through the limits; at each switch the pools restart (their self-tuning
 * starts again) and `--warmup` untimed steps (with a `--settle` ms pause after the first, for the
 * new workers to start) let it settle before the timed steps. Prints each limit's images/s, its speed
 * ratio to the first limit (the median of the rounds' ratios, with their range), and how many of
 * the jobs the GEMM and convolution worker pools ran in the timed steps had more than 2
 * participants, of those with 2 or more. `--max-threads 2,16` on a 2-core machine is the harsh test
 * of the self-tuning: 16 must not be more than a few % slower than 2; on a 16-core machine, 16
 * should be the faster.
 *
 * `--conv-threads` sets how the CPU's direct convolution kernels use the worker threads
 * (`setConvThreads`; default auto). `ab` is a same-process A/B that a busy machine disturbs less than
 * two runs: after a warm-up step in each mode, rounds rotate between one thread (`single`), the
 * workers (`threads`) and the self-tuning default (`auto`) on the same model and data, and it
 * prints the median of each and their ratios to `single` (the results are the same bits in every
 * mode).
 *
 * `--winograd` turns the Winograd F(2×2, 3×3) path of the 3×3 convolutions' forward pass and input
 * gradient on (default) or off (`setWinogradEnabled`); `ab` is the same-process A/B of the two,
 * rounds alternating (medians), printing both and their ratio.
 *
 * `--relu-grad` sets how the CPU computes ReLU's gradient: in one pass (`fused`, default) or as the
 * step mask then the product (`composed`, `setFusedReluGrad`); `ab` is the same-process A/B of the
 * two, rounds alternating (medians; the same bits either way).
 *
 * `--merge-arrays` (WebGPU) sets whether the optimizer's step of several parameter arrays goes out as
 * one dispatch (`InitWebGPUOptions.mergeArrays`; default: the adapter's choice, on for a GPU); `ab` is
 * the same-process A/B of the two (rounds alternating, the GPU waited for around each; the same bits).
 *
 * `--matmul-kernel` (WebGPU) sets the kernel of the matrix products, the convolutions' included
 * (`setMatmulKernel`: `4x4`, or the register-blocked `8x8`; default the backend's `auto`); `ab` is the
 * same-process A/B of the two on the whole training step (rounds alternating; the same bits).
 *
 * `--pool` sets which released arrays the CPU storage pool keeps: those of 16 MiB or more
 * (`large`), all those of 256 KiB or more (`all`), or all of them until a 16 MiB one finds no room,
 * then the large ones only (`adaptive`, `setCpuStoragePoolAdaptive`); `ab` is the same-process A/B
 * of the three, the pool emptied and one untimed step made at each switch.
 *
 * `--interleave N` (CPU, with PyTorch) alternates the two N times per model and batch — one PyTorch
 * process timing one round, then one round of ours — and prints the median of the per-pair ratios
 * with their range: on a shared machine whose speed drifts, pairs taken moments apart compare like
 * with like better than all of PyTorch's rounds followed by all of ours.
 *
 * The Python is `--python`, else `$PY`, else `python3` (any Python with PyTorch). Torch's thread count is set to ours: `navigator.hardwareConcurrency`.
 */
import { parseArgs } from "node:util";
import {
  crossEntropy,
  dispose,
  randn,
  resnet18,
  resnet20,
  type StatefulModel,
  syncWebGPU,
  type Tensor,
  tidy,
  toDevice,
} from "../mod.ts";
import { applyUpdates, sgd } from "../src/optim/mod.ts";
import { valueAndGradWithAux } from "../src/autodiff.ts";
import { initWebGPU, initWebGPUBackend } from "../src/webgpu/mod.ts";
import { webgpuOptimKernels } from "../src/webgpu/optim.ts";
import { setMatmulKernel } from "../src/webgpu/matmul_ops.ts";
import { median } from "./_timing.ts";
import { type ConvThreads, convThreadStats, setConvThreads } from "../kernels/wasm/conv_wasm.ts";
import { gemmThreadStats } from "../kernels/wasm/gemm.ts";
import { setThreadLimit } from "../kernels/wasm/workers.ts";
import { setWinogradEnabled } from "../kernels/wasm/winograd.ts";
import { setFusedReluGrad } from "../src/cpu/backend.ts";
import {
  POOL_MIN_ELEMENTS,
  resetCpuStoragePool,
  setCpuStoragePoolAdaptive,
  setCpuStoragePoolMinElements,
} from "../src/cpu/storage_pool.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    models: { type: "string", default: "resnet20,resnet18" },
    batches: { type: "string", default: "32" },
    rounds: { type: "string", default: "5" },
    steps: { type: "string", default: "3" },
    device: { type: "string", default: "cpu" },
    python: { type: "string" },
    "no-torch": { type: "boolean" },
    "conv-threads": { type: "string", default: "auto" },
    winograd: { type: "string", default: "on" },
    interleave: { type: "string" },
    "relu-grad": { type: "string", default: "fused" },
    pool: { type: "string" },
    "merge-arrays": { type: "string" },
    "matmul-kernel": { type: "string" },
    "max-threads": { type: "string" },
    warmup: { type: "string", default: "6" },
    settle: { type: "string", default: "300" },
  },
}).values;
const CONV_THREADS = args["conv-threads"]!;
if (!["auto", "single", "threads", "ab"].includes(CONV_THREADS)) {
  console.error(`--conv-threads must be auto, single, threads or ab, got ${CONV_THREADS}`);
  Deno.exit(2);
}
if (CONV_THREADS !== "ab") setConvThreads(CONV_THREADS as ConvThreads);
const WINOGRAD = args.winograd!;
if (!["on", "off", "ab"].includes(WINOGRAD)) {
  console.error(`--winograd must be on, off or ab, got ${WINOGRAD}`);
  Deno.exit(2);
}
setWinogradEnabled(WINOGRAD !== "off");
const RELU_GRAD = args["relu-grad"]!;
if (!["fused", "composed", "ab"].includes(RELU_GRAD)) {
  console.error(`--relu-grad must be fused, composed or ab, got ${RELU_GRAD}`);
  Deno.exit(2);
}
setFusedReluGrad(RELU_GRAD !== "composed");
const POOL_RULES = {
  large: () => usePoolRule(4 * 1024 * 1024, false),
  all: () => usePoolRule(POOL_MIN_ELEMENTS, false),
  adaptive: () => usePoolRule(4 * 1024 * 1024, true),
};
/** Empties the CPU storage pool and sets its shortest kept array and its adaptive rule. */
function usePoolRule(minElements: number, adaptive: boolean): void {
  resetCpuStoragePool();
  setCpuStoragePoolMinElements(minElements);
  setCpuStoragePoolAdaptive(adaptive);
}
const MERGE = args["merge-arrays"];
if (MERGE !== undefined && !["on", "off", "ab"].includes(MERGE)) {
  console.error(`--merge-arrays must be on, off or ab, got ${MERGE}`);
  Deno.exit(2);
}
const MATMUL_KERNEL = args["matmul-kernel"];
if (MATMUL_KERNEL !== undefined) {
  if (!["4x4", "8x8", "ab"].includes(MATMUL_KERNEL)) {
    console.error(`--matmul-kernel must be 4x4, 8x8 or ab, got ${MATMUL_KERNEL}`);
    Deno.exit(2);
  }
  if (MATMUL_KERNEL !== "ab") setMatmulKernel(MATMUL_KERNEL as "4x4" | "8x8");
}
const POOL = args.pool;
if (POOL !== undefined) {
  if (POOL !== "ab" && !(POOL in POOL_RULES)) {
    console.error(`--pool must be large, all, adaptive or ab, got ${POOL}`);
    Deno.exit(2);
  }
  if (POOL !== "ab") POOL_RULES[POOL as keyof typeof POOL_RULES]();
}
const MODELS = args.models!.split(",");
const BATCHES = args.batches!.split(",").map(Number);
const ROUNDS = Number(args.rounds), STEPS = Number(args.steps);
const DEVICE = args.device as "cpu" | "webgpu";
const THREADS = Math.max(1, navigator.hardwareConcurrency ?? 1);
if (DEVICE === "webgpu") {
  await initWebGPU({ mergeArrays: MERGE === "on" ? true : MERGE === "off" ? false : undefined });
}

const builders: Record<string, () => StatefulModel> = {
  resnet20: () => resnet20({ seed: 0 }),
  resnet18: () => resnet18({ seed: 0 }),
};

/** A training step of `model` on `device`; returns the function and the first loss. */
async function stepper(name: string, batch: number, device: "cpu" | "webgpu") {
  const model = builders[name]();
  let params = await toDevice(model.params, device), ms = await toDevice(model.state, device);
  const x = await toDevice(randn([batch, 3, 32, 32], { seed: 1 }), device);
  const y = Int32Array.from({ length: batch }, (_, i) => i % 10);
  const opt = sgd({ lr: 0.01, momentum: 0.9 });
  let state = opt.init(params);
  const vg = valueAndGradWithAux((p: typeof params, s: typeof ms, xb: Tensor, k: number) => {
    const r = model.apply(p, s, xb, { training: true, step: k });
    return { value: crossEntropy(r.y, y), aux: r.state };
  });
  let k = 0;
  const step = (): Tensor => {
    const next = tidy(() => {
      const { value, grads, aux } = vg(params, ms, x, k++);
      const r = opt.update(grads, state, params);
      return { params: applyUpdates(params, r.updates), state: r.state, ms: aux, value };
    });
    dispose([params, state, ms], next);
    ({ params, state, ms } = next);
    return next.value;
  };
  return { step, sync: () => (device === "webgpu" ? syncWebGPU() : Promise.resolve()) };
}

async function oursImagesPerSecond(name: string, batch: number): Promise<{ ips: number; loss: number }> {
  const { step, sync } = await stepper(name, batch, DEVICE);
  const first = step();
  const loss = (await first.data())[0];
  dispose(first);
  dispose(step());
  await sync();
  const ms: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = performance.now();
    for (let s = 0; s < STEPS; s++) dispose(step());
    await sync();
    ms.push((performance.now() - t0) / STEPS);
  }
  return { ips: batch * 1000 / median(ms), loss };
}

/**
 * The same-process A/B of `--conv-threads ab`: images/s with the direct convolutions on one thread
 * and on the workers, rounds alternating (medians of `ROUNDS` each).
 */
async function convThreadsAB(name: string, batch: number): Promise<Record<ConvThreads, number>> {
  const { step } = await stepper(name, batch, "cpu");
  const modes: ConvThreads[] = ["single", "threads", "auto"];
  const ms: Record<ConvThreads, number[]> = { single: [], threads: [], auto: [] };
  for (const mode of modes) {
    setConvThreads(mode);
    dispose(step()); // warm-up (starts the workers)
  }
  for (let r = 0; r < ROUNDS; r++) {
    // Rotate the order so that no mode always follows the same one.
    for (let i = 0; i < modes.length; i++) {
      const mode = modes[(i + r) % modes.length];
      setConvThreads(mode);
      const t0 = performance.now();
      for (let s = 0; s < STEPS; s++) dispose(step());
      ms[mode].push((performance.now() - t0) / STEPS);
    }
  }
  setConvThreads("auto");
  const ips = (m: ConvThreads) => batch * 1000 / median(ms[m]);
  return { single: ips("single"), threads: ips("threads"), auto: ips("auto") };
}

/**
 * Jobs of the GEMM and convolution worker pools (those that exist now) so far: `[more than 2
 * participants, 2 or more]`.
 */
function poolJobs(): [number, number] {
  let past = 0, all = 0;
  for (const jobs of [gemmThreadStats().jobsByParticipants, convThreadStats().jobsByParticipants]) {
    jobs.forEach((n, k) => [past, all] = [past + (k > 2 ? n : 0), all + (k > 1 ? n : 0)]);
  }
  return [past, all];
}

/**
 * The same-process A/B of `--max-threads`: images/s under each thread limit, rounds rotating (medians
 * of `ROUNDS`, each after `warmup` untimed steps), and the pool jobs of the timed steps
 * ({@linkcode poolJobs}) per limit.
 */
async function maxThreadsAB(
  name: string,
  batch: number,
  limits: number[],
  warmup: number,
): Promise<{ ips: number[]; ratios: number[][]; jobs: [number, number][] }> {
  const { step } = await stepper(name, batch, "cpu");
  const ms = limits.map(() => [] as number[]), jobs = limits.map((): [number, number] => [0, 0]);
  for (let r = 0; r < ROUNDS; r++) {
    for (let i = 0; i < limits.length; i++) {
      const j = (i + r) % limits.length;
      setThreadLimit(limits[j]);
      for (let s = 0; s < warmup; s++) {
        if (s === 1) await new Promise((res) => setTimeout(res, Number(args.settle)));
        dispose(step());
      }
      const jobs0 = poolJobs(), t0 = performance.now();
      for (let s = 0; s < STEPS; s++) dispose(step());
      ms[j].push((performance.now() - t0) / STEPS);
      const jobs1 = poolJobs();
      jobs[j] = [jobs[j][0] + jobs1[0] - jobs0[0], jobs[j][1] + jobs1[1] - jobs0[1]];
    }
  }
  setThreadLimit("auto");
  const ratios = ms.map((m) => m.map((t, r) => ms[0][r] / t));
  return { ips: ms.map((m) => batch * 1000 / median(m)), ratios, jobs };
}

/**
 * The same-process A/B of `--winograd ab`: images/s with the Winograd path off and on, rounds
 * alternating (medians of `ROUNDS` each).
 */
async function winogradAB(name: string, batch: number): Promise<{ off: number; on: number }> {
  const { step } = await stepper(name, batch, "cpu");
  const ms = { off: [] as number[], on: [] as number[] };
  for (const on of [false, true]) {
    setWinogradEnabled(on);
    dispose(step()); // warm-up
  }
  for (let r = 0; r < ROUNDS; r++) {
    for (const on of r % 2 === 0 ? [false, true] : [true, false]) {
      setWinogradEnabled(on);
      const t0 = performance.now();
      for (let s = 0; s < STEPS; s++) dispose(step());
      ms[on ? "on" : "off"].push((performance.now() - t0) / STEPS);
    }
  }
  setWinogradEnabled(true);
  return { off: batch * 1000 / median(ms.off), on: batch * 1000 / median(ms.on) };
}

/**
 * A same-process A/B of settings (each a function that applies it) on `device`: after a warm-up step under
 * each, rounds rotate through them (medians of `ROUNDS` rounds of `STEPS` steps each, after
 * `untimed` steps at each switch); images/s by setting. The first setting is applied again at the
 * end.
 */
async function settingsAB<K extends string>(
  name: string,
  batch: number,
  settings: Record<K, () => void>,
  untimed = 0,
  device: "cpu" | "webgpu" = "cpu",
): Promise<Record<K, number>> {
  const { step, sync } = await stepper(name, batch, device);
  const keys = Object.keys(settings) as K[];
  const ms = Object.fromEntries(keys.map((k) => [k, [] as number[]])) as Record<K, number[]>;
  for (const k of keys) {
    settings[k]();
    dispose(step()); // warm-up
  }
  for (let r = 0; r < ROUNDS; r++) {
    for (let i = 0; i < keys.length; i++) {
      const k = keys[(i + r) % keys.length];
      settings[k]();
      for (let s = 0; s < untimed; s++) dispose(step());
      await sync();
      const t0 = performance.now();
      for (let s = 0; s < STEPS; s++) dispose(step());
      await sync();
      ms[k].push((performance.now() - t0) / STEPS);
    }
  }
  settings[keys[0]]();
  return Object.fromEntries(keys.map((k) => [k, batch * 1000 / median(ms[k])])) as Record<K, number>;
}

/** Prints the result of {@linkcode settingsAB}: each setting's images/s and its ratio to the first. */
function printAB(what: string, name: string, batch: number, r: Record<string, number>): void {
  const keys = Object.keys(r), base = r[keys[0]];
  const parts = keys.map((k) => `${k} ${r[k].toFixed(1)} images/s (${(r[k] / base).toFixed(3)}×)`);
  console.log(`${name} batch ${batch}, ${what}: ${parts.join(", ")}`);
}

/**
 * PyTorch's figures by `model/batch` (for `models` and `batches`, `rounds` rounds each), or null (with
 * the reason printed) when torch is not there.
 */
async function torchImagesPerSecond(
  models = MODELS,
  batches = BATCHES,
  rounds = ROUNDS,
  quiet = false,
): Promise<Map<string, number> | null> {
  if (args["no-torch"]) return null;
  const python = args.python ?? Deno.env.get("PY") ?? "python3";
  const script = new URL("../tools/torch_resnet_bench.py", import.meta.url).pathname;
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(python, {
      args: [
        script,
        ...["--models", models.join(","), "--batches", batches.join(",")],
        ...["--threads", String(THREADS), "--rounds", String(rounds), "--steps", String(STEPS)],
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (e) {
    console.log(`PyTorch: not run (${python}: ${(e as Error).message})`);
    return null;
  }
  if (out.code !== 0) {
    const err = new TextDecoder().decode(out.stderr).trim().split("\n").at(-1);
    console.log(`PyTorch: not run (${python} exited ${out.code}: ${err}); give --python or PY`);
    return null;
  }
  const map = new Map<string, number>();
  for (const line of new TextDecoder().decode(out.stdout).trim().split("\n")) {
    const r = JSON.parse(line);
    map.set(`${r.model}/${r.batch}`, r.images_per_s);
    if (quiet) continue;
    console.log(
      `PyTorch ${r.torch}, ${r.threads} threads: ${r.model} batch ${r.batch}: ${
        r.images_per_s.toFixed(1)
      } images/s`,
    );
  }
  return map;
}

console.log(
  `ResNet training step (forward + backward + SGD momentum), 3×32×32, device ${DEVICE}, ${THREADS} threads, ` +
    `median of ${ROUNDS} rounds × ${STEPS} steps`,
);
/**
 * Runs an A/B mode (`--<flag> ab`) on every model and batch, then exits: `device` is the device it
 * needs, `each` measures and prints one model at one batch.
 */
async function abMode(
  flag: string,
  device: "cpu" | "webgpu",
  each: (name: string, batch: number) => Promise<void>,
): Promise<never> {
  if (DEVICE !== device) {
    console.error(`--${flag} ab needs --device ${device}`);
    Deno.exit(2);
  }
  for (const name of MODELS) for (const batch of BATCHES) await each(name, batch);
  Deno.exit(0);
}

if (CONV_THREADS === "ab") {
  await abMode("conv-threads", "cpu", async (name, batch) => {
    const r = await convThreadsAB(name, batch);
    console.log(
      `${name} batch ${batch}: direct convolutions on one thread ${r.single.toFixed(1)} images/s, ` +
        `on the workers ${r.threads.toFixed(1)} images/s (${(r.threads / r.single).toFixed(2)}×), ` +
        `auto ${r.auto.toFixed(1)} images/s (${(r.auto / r.single).toFixed(2)}×)`,
    );
  });
}
if (args["max-threads"] !== undefined) {
  const limits = args["max-threads"].split(",").map(Number), warmup = Number(args.warmup);
  try {
    for (const l of limits) setThreadLimit(l);
    setThreadLimit("auto");
  } catch (e) {
    console.error(`--max-threads: ${(e as Error).message}`);
    Deno.exit(2);
  }
  await abMode("max-threads", "cpu", async (name, batch) => {
    const r = await maxThreadsAB(name, batch, limits, warmup);
    const parts = limits.map((l, j) => {
      const q = r.ratios[j];
      return `@${l} ${r.ips[j].toFixed(1)} images/s (${median(q).toFixed(3)}× ` +
        `[${Math.min(...q).toFixed(2)}–${Math.max(...q).toFixed(2)}], ` +
        `${r.jobs[j].join(" of ")} pool jobs past 2 participants)`;
    });
    console.log(`${name} batch ${batch}, thread limits (${warmup} untimed steps each): ${parts.join(", ")}`);
  });
}
if (WINOGRAD === "ab") {
  await abMode("winograd", "cpu", async (name, batch) => {
    const r = await winogradAB(name, batch);
    console.log(
      `${name} batch ${batch}: Winograd off ${r.off.toFixed(1)} images/s, on ${r.on.toFixed(1)} images/s ` +
        `(${(r.on / r.off).toFixed(2)}×)`,
    );
  });
}
if (RELU_GRAD === "ab") {
  await abMode("relu-grad", "cpu", async (name, batch) => {
    const settings = { composed: () => setFusedReluGrad(false), fused: () => setFusedReluGrad(true) };
    printAB("ReLU gradient", name, batch, await settingsAB(name, batch, settings));
  });
}
if (MERGE === "ab") {
  const b = await initWebGPUBackend();
  const kernels = (coalesce: boolean) => () =>
    void (b.optim = webgpuOptimKernels(b, undefined, { coalesce }));
  await abMode("merge-arrays", "webgpu", async (name, batch) => {
    const settings = { "per array": kernels(false), merged: kernels(true) };
    printAB("optimizer dispatches", name, batch, await settingsAB(name, batch, settings, 0, "webgpu"));
  });
}
if (MATMUL_KERNEL === "ab") {
  await abMode("matmul-kernel", "webgpu", async (name, batch) => {
    const settings = { "4x4": () => void setMatmulKernel("4x4"), "8x8": () => void setMatmulKernel("8x8") };
    printAB("matmul kernel", name, batch, await settingsAB(name, batch, settings, 0, "webgpu"));
  });
}
if (POOL === "ab") {
  await abMode("pool", "cpu", async (name, batch) => {
    printAB("storage pool", name, batch, await settingsAB(name, batch, POOL_RULES, 1));
  });
}
if (args.interleave !== undefined) {
  const pairs = Number(args.interleave);
  if (!(Number.isInteger(pairs) && pairs >= 1) || DEVICE !== "cpu" || args["no-torch"]) {
    console.error(
      `--interleave takes a count of pairs (an integer ≥ 1, got ${args.interleave}), the CPU and PyTorch`,
    );
    Deno.exit(2);
  }
  for (const name of MODELS) {
    for (const batch of BATCHES) {
      const { step } = await stepper(name, batch, "cpu");
      dispose(step());
      dispose(step());
      const ours: number[] = [], theirs: number[] = [], ratios: number[] = [];
      for (let i = 0; i < pairs; i++) {
        const t = (await torchImagesPerSecond([name], [batch], 1, true))?.get(`${name}/${batch}`);
        if (t === undefined) Deno.exit(1);
        const t0 = performance.now();
        for (let s = 0; s < STEPS; s++) dispose(step());
        const o = batch * STEPS * 1000 / (performance.now() - t0);
        ours.push(o);
        theirs.push(t);
        ratios.push(o / t);
      }
      const lo = Math.min(...ratios), hi = Math.max(...ratios);
      console.log(
        `${name} batch ${batch}, ${pairs} interleaved pairs: ours ${
          median(ours).toFixed(1)
        } images/s, PyTorch ` +
          `${median(theirs).toFixed(1)} images/s (medians); ours/PyTorch median ${
            median(ratios).toFixed(2)
          }× ` +
          `(pairs ${lo.toFixed(2)}–${hi.toFixed(2)}×: ${ratios.map((r) => r.toFixed(2)).join(" ")})`,
      );
    }
  }
  Deno.exit(0);
}
// PyTorch first, alone, then ours: the two never share the cores.
const torch = DEVICE === "cpu" ? await torchImagesPerSecond() : null;
for (const name of MODELS) {
  for (const batch of BATCHES) {
    const ours = await oursImagesPerSecond(name, batch);
    let line = `${name} batch ${batch}: ours ${ours.ips.toFixed(1)} images/s (first loss ${
      ours.loss.toFixed(5)
    })`;
    const t = torch?.get(`${name}/${batch}`);
    if (t !== undefined) {
      line += `, PyTorch ${t.toFixed(1)} images/s, ours/PyTorch ${(ours.ips / t).toFixed(2)}×`;
    }
    if (DEVICE === "webgpu") {
      const cpu = await stepper(name, batch, "cpu");
      const l = cpu.step().item();
      const rel = Math.abs(l - ours.loss) / Math.abs(l);
      line += `; CPU first loss ${l.toFixed(5)} (relative difference ${rel.toExponential(1)}${
        rel < 1e-4 ? ", ok" : ", MISMATCH"
      })`;
    }
    console.log(line);
  }
}
