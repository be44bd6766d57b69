/**
 * Whole training steps on WebGPU against the CPU, in the same run: `valueAndGrad` at
 * `perturb(params)`, `update` and `applyUpdates`, for sgd/vsgd and adam/vadam (official mode), on
 * three models: the label-noise MLP 784-256-256-10 (batch 128), a wide MLP 3072-2048-2048-10 on
 * CIFAR-size inputs (batch 256) and LeNet on 3×32×32 (batch 128). Every round times `--steps`
 * steps per optimizer (the GPU is waited for once, at the end of the round; nothing is read back
 * in between, as in `fit`), rounds interleave the optimizers, and the table gives medians:
 * ms/step, examples/s, vsgd/sgd and vadam/adam on each device, and webgpu/cpu speed-ups. GPU rows
 * also give the dispatches per step and the host microseconds per dispatch spent encoding and
 * submitting (`webgpuStats().encodeMicros`, `.submitMicros`), which bound small models on a fast
 * GPU (on lavapipe a submit runs the work itself, so only the encoding figure is overhead there),
 * and the host milliseconds per step (the JavaScript of the step and its encoding, submits
 * excluded; on a GPU a submit is host work too, its µs per dispatch are printed beside): a GPU row
 * whose ms/step is close to its host plus submit time is bound by the host, not the GPU.
 *
 * Each GPU round ends with one wait for the GPU, and in Deno every wait or read-back takes at least
 * ~10 ms (its WebGPU polls the device, then sleeps 10 ms, before a wait resolves): the table starts
 * with that floor as measured, and a round's floor is spread over its steps, so `--steps` must be
 * large enough for it to vanish (e.g. 50 steps: 0.2 ms per step; `fit` waits once per epoch).
 *
 *   deno run -A bench/webgpu_train_bench.ts [--models mlp,wide,lenet] [--devices cpu,webgpu]
 *     [--rounds 5] [--steps 10] [--cpu-rounds R] [--cpu-steps S] [--json FILE]
 *     [--cache-bind-groups | --no-cache-bind-groups] [--merge-arrays | --no-merge-arrays]
 *
 * `--cpu-rounds`/`--cpu-steps` (default: `--rounds`/`--steps`) shorten the CPU rows, which take
 * most of the time on a GPU machine. `--json FILE` also writes one JSON line per row (`{"model",
 * "device", "optimizer", "batch", "ms_per_step", …}`, the device kit's input for its ratios against
 * PyTorch's `tools/torch_train_bench.py`). The bind-group cache follows the adapter
 * (`InitWebGPUOptions.cacheBindGroups`: on for hardware, off for software adapters) unless one of
 * the two flags forces it; so do the merged per-array dispatches (`InitWebGPUOptions.mergeArrays`:
 * the optimizer's step over several parameter arrays in one dispatch).
 *
 * On a software adapter (lavapipe) the GPU rows check that the path runs; their speed means nothing.
 * Under `deno bench` (the `bench` task) it registers only the MLP's GPU steps, one case per optimizer.
 */
import { parseArgs } from "node:util";
import {
  crossEntropy,
  type Device,
  lenet,
  mlp,
  type Model,
  randn,
  type Tensor,
  type TensorTree,
  valueAndGrad,
} from "../mod.ts";
import { adam, applyUpdates, type Optimizer, sgd, vadam, vsgd } from "../src/optim/mod.ts";
import { dispose } from "../src/memory.ts";
import { initWebGPUBackend, NoWebGPUError, syncWebGPU, webgpuStats } from "../src/webgpu/mod.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    models: { type: "string", default: "mlp,wide,lenet" },
    devices: { type: "string", default: "cpu,webgpu" },
    rounds: { type: "string", default: "5" },
    steps: { type: "string", default: "10" },
    "cpu-rounds": { type: "string" },
    "cpu-steps": { type: "string" },
    "cache-bind-groups": { type: "boolean", default: false },
    "no-cache-bind-groups": { type: "boolean", default: false },
    "merge-arrays": { type: "boolean", default: false },
    "no-merge-arrays": { type: "boolean", default: false },
    json: { type: "string" },
  },
});
const ROUNDS = Number(args.values.rounds), STEPS = Number(args.values.steps);
const CPU_ROUNDS = Number(args.values["cpu-rounds"] ?? ROUNDS),
  CPU_STEPS = Number(args.values["cpu-steps"] ?? STEPS);
for (
  const [name, v] of [
    ["--rounds", ROUNDS],
    ["--steps", STEPS],
    ["--cpu-rounds", CPU_ROUNDS],
    ["--cpu-steps", CPU_STEPS],
  ] as const
) {
  if (!Number.isInteger(v) || v < 1) {
    console.error(`webgpu_train_bench: ${name} must be a positive integer, got ${v}`);
    Deno.exit(2);
  }
}
/** An on/off flag pair from the command line (undefined: the adapter's default). */
function flagPair(on: string, off: string): boolean | undefined {
  const v = args.values as Record<string, unknown>;
  if (v[on] && v[off]) {
    console.error(`webgpu_train_bench: give --${on} or --${off}, not both`);
    Deno.exit(2);
  }
  return v[on] ? true : v[off] ? false : undefined;
}
/** The bind-group cache and the merged per-array dispatches asked for. */
const CACHE = flagPair("cache-bind-groups", "no-cache-bind-groups");
const MERGE = flagPair("merge-arrays", "no-merge-arrays");

/** A model as a function of any parameter tree (the bench treats all models alike). */
const erase = <P>(m: Model<P>) => m as unknown as Model<TensorTree>;

interface Workload {
  label: string;
  batch: number;
  make: (device: Device) => { model: Model<TensorTree>; x: Tensor };
}
const WORKLOADS: Record<string, Workload> = {
  mlp: {
    label: "MLP 784-256-256-10, batch 128",
    batch: 128,
    make: (device) => ({
      model: erase(mlp([784, 256, 256, 10], { seed: 0, device })),
      x: randn([128, 784], { seed: 1, device }),
    }),
  },
  wide: {
    label: "MLP 3072-2048-2048-10, batch 256",
    batch: 256,
    make: (device) => ({
      model: erase(mlp([3072, 2048, 2048, 10], { seed: 0, device })),
      x: randn([256, 3072], { seed: 1, device }),
    }),
  },
  lenet: {
    label: "LeNet on 3×32×32, batch 128",
    batch: 128,
    make: (device) => ({
      model: erase(lenet({ inputShape: [3, 32, 32], seed: 0, device })),
      x: randn([128, 3, 32, 32], { seed: 1, device }),
    }),
  },
};
const models = args.values.models.split(",");
for (const m of models) {
  if (!(m in WORKLOADS)) {
    throw new RangeError(
      `--models: unknown model ${JSON.stringify(m)}, expected some of ${Object.keys(WORKLOADS)}`,
    );
  }
}
let devices = args.values.devices.split(",") as Device[];
for (const d of devices) {
  if (d !== "cpu" && d !== "webgpu") throw new RangeError(`--devices: expected cpu and/or webgpu, got ${d}`);
}
if (devices.includes("webgpu")) {
  try {
    const b = await initWebGPUBackend({ cacheBindGroups: CACHE, mergeArrays: MERGE });
    const s = b.stats();
    const dflt = (v: boolean | undefined) => (v === undefined ? " (the adapter's default)" : "");
    console.log(
      `adapter: ${b.ctx.description}${b.ctx.software ? " (software)" : ""}; bind-group cache ${
        s.bindGroupCache ? "on" : "off"
      }${dflt(CACHE)}; merged arrays ${s.mergeArrays ? "on" : "off"}${dflt(MERGE)}`,
    );
  } catch (e) {
    if (!(e instanceof NoWebGPUError)) throw e;
    console.warn(`webgpu_train_bench: no WebGPU adapter (${e.message}); CPU rows only`);
    devices = devices.filter((d) => d !== "webgpu");
  }
}

const OPTIMIZERS: Record<string, () => Optimizer<unknown>> = {
  sgd: () => sgd({ lr: 0.01 }),
  vsgd: () => vsgd({ lr: 0.01, variability: 0.05, numIters: 469 }),
  adam: () => adam({ lr: 1e-3 }),
  vadam: () => vadam({ lr: 1e-3, variability: 0.05, numIters: 469 }),
};

/** What one timed round of steps measured. */
interface Timing {
  /** Milliseconds per step (the GPU waited for once, at the end). */
  ms: number;
  /** GPU rows: dispatches per step. */
  dispatches: number;
  /** GPU rows: host microseconds per dispatch spent encoding. */
  encodeMicros: number;
  /** GPU rows: host microseconds per dispatch spent submitting. */
  submitMicros: number;
  /** GPU rows: host milliseconds per step before the wait, submits excluded (JavaScript + encoding). */
  hostMs: number;
}

/** Times `steps` steps (after 2 warm-up steps), waiting for the GPU at the end. */
async function timeSteps(
  model: Model<TensorTree>,
  x: Tensor,
  y: Int32Array,
  opt: Optimizer<unknown>,
  steps: number,
): Promise<Timing> {
  const vg = valueAndGrad((p: TensorTree, xb: Tensor) => crossEntropy(model.forward(p, xb), y));
  let params = model.params, state = opt.init(params);
  const step = () => {
    const perturbed = opt.perturb(params, state);
    const { value, grads } = vg(perturbed, x);
    const r = opt.update(grads, state, params);
    const next = applyUpdates(params, r.updates);
    // Free everything but the new parameters and state (the model's initial parameters stay).
    dispose([params === model.params ? null : params, state, grads, r.updates, value, perturbed], [
      next,
      r.state,
      model.params,
    ]);
    params = next;
    state = r.state;
  };
  // Wait for the GPU only on its rows (an empty wait still costs ~10 ms in Deno).
  const sync = x.device === "webgpu" ? syncWebGPU : async () => {};
  for (let i = 0; i < 2; i++) step();
  await sync();
  const s0 = webgpuStats();
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) step();
  const before = webgpuStats(), tHost = performance.now(); // the steps encoded, before the wait
  await sync();
  const ms = (performance.now() - t0) / steps;
  const s1 = webgpuStats(); // after the wait: it adds no dispatch, only the last submit's time
  dispose([params === model.params ? null : params, state], [model.params]);
  if (x.device !== "webgpu" || !s0 || !s1 || !before) {
    return { ms, dispatches: 0, encodeMicros: 0, submitMicros: 0, hostMs: 0 };
  }
  const dispatches = s1.dispatches - s0.dispatches, per = Math.max(1, dispatches);
  const submitBefore = (before.submitMicros - s0.submitMicros) / 1000;
  return {
    ms,
    dispatches: dispatches / steps,
    encodeMicros: (s1.encodeMicros - s0.encodeMicros) / per,
    submitMicros: (s1.submitMicros - s0.submitMicros) / per,
    hostMs: (tHost - t0 - submitBefore) / steps,
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

/** The median time of 5 waits for an idle GPU: what every round's one wait costs at least. */
async function syncFloorMs(): Promise<number> {
  const t: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    await syncWebGPU();
    t.push(performance.now() - t0);
  }
  return median(t);
}

if (import.meta.main) await table();
else registerBenches();

/** Under `deno bench` (the `bench` task): the label-noise MLP's GPU training step per optimizer. */
function registerBenches(): void {
  if (!devices.includes("webgpu")) return;
  const w = WORKLOADS.mlp;
  const { model, x } = w.make("webgpu");
  const y = Int32Array.from({ length: w.batch }, (_, i) => i % 10);
  for (const [name, make] of Object.entries(OPTIMIZERS)) {
    Deno.bench(
      {
        name: `webgpu ${w.label}, ${name} (${STEPS} steps)`,
        group: "webgpu train",
        baseline: name === "sgd",
        n: 5,
      },
      async () => void (await timeSteps(model, x, y, make(), STEPS)),
    );
  }
}

/** The whole comparison (`deno run`): every model on every device, the table and the ratios. */
async function table(): Promise<void> {
  const jsonLines: string[] = [];
  const cpu = CPU_ROUNDS !== ROUNDS || CPU_STEPS !== STEPS
    ? `; cpu: ${CPU_ROUNDS} rounds × ${CPU_STEPS} steps`
    : "";
  console.log(`${ROUNDS} rounds × ${STEPS} steps per optimizer (medians)${cpu}`);
  if (devices.includes("webgpu")) {
    const floor = await syncFloorMs();
    console.log(
      `an empty wait for the GPU: ${
        floor.toFixed(1)
      } ms (median of 5; Deno's floor for any wait or read-back),` +
        ` i.e. ${(floor / STEPS).toFixed(2)} ms of each GPU row's ms/step at ${STEPS} steps per round`,
    );
  }
  for (const m of models) {
    const w = WORKLOADS[m];
    const y = Int32Array.from({ length: w.batch }, (_, i) => i % 10);
    const med: Record<string, number> = {};
    const host: Record<string, Timing> = {};
    for (const device of devices) {
      const { model, x } = w.make(device);
      const times: Record<string, Timing[]> = {};
      const [rounds, steps] = device === "cpu" ? [CPU_ROUNDS, CPU_STEPS] : [ROUNDS, STEPS];
      for (let r = 0; r < rounds; r++) {
        for (const [name, make] of Object.entries(OPTIMIZERS)) {
          (times[name] ??= []).push(await timeSteps(model, x, y, make(), steps));
        }
      }
      for (const name of Object.keys(OPTIMIZERS)) {
        med[`${device} ${name}`] = median(times[name].map((t) => t.ms));
        host[`${device} ${name}`] = times[name].at(-1)!;
      }
      dispose([model.params, x]);
    }
    console.log(`\n${w.label}`);
    for (const [row, ms] of Object.entries(med)) {
      const h = host[row];
      const gpu = h.dispatches > 0
        ? `  host ${h.hostMs.toFixed(2).padStart(6)} ms/step, ${
          h.dispatches.toFixed(0).padStart(4)
        } dispatches/step, host µs/dispatch: encode ${h.encodeMicros.toFixed(1).padStart(5)}, submit ${
          h.submitMicros.toFixed(1).padStart(7)
        }`
        : "";
      console.log(
        `  ${row.padEnd(14)} ${ms.toFixed(2).padStart(9)} ms/step ${
          (w.batch / ms * 1000).toFixed(0).padStart(9)
        } ex/s${gpu}`,
      );
      if (args.values.json !== undefined) {
        const [device, optimizer] = row.split(" ");
        const [rounds, steps] = device === "cpu" ? [CPU_ROUNDS, CPU_STEPS] : [ROUNDS, STEPS];
        jsonLines.push(JSON.stringify({
          model: m,
          device,
          optimizer,
          batch: w.batch,
          rounds,
          steps,
          ms_per_step: ms,
          examples_per_s: w.batch / ms * 1000,
          ...(h.dispatches > 0
            ? {
              host_ms_per_step: h.hostMs,
              submit_ms_per_step: h.submitMicros * h.dispatches / 1000,
              dispatches_per_step: h.dispatches,
              encode_us_per_dispatch: h.encodeMicros,
            }
            : {}),
        }));
      }
    }
    for (const device of devices) {
      console.log(
        `  ${device}: vsgd/sgd ${(med[`${device} vsgd`] / med[`${device} sgd`]).toFixed(3)}, vadam/adam ${
          (med[`${device} vadam`] / med[`${device} adam`]).toFixed(3)
        }`,
      );
    }
    if (devices.length === 2) {
      const up = (o: string) => (med[`cpu ${o}`] / med[`webgpu ${o}`]).toFixed(2);
      console.log(`  webgpu speed-up over cpu: sgd ${up("sgd")}×, vsgd ${up("vsgd")}×, adam ${up("adam")}×`);
    }
  }
  if (args.values.json !== undefined) {
    await Deno.writeTextFile(args.values.json, jsonLines.map((l) => l + "\n").join(""));
    console.log(`\n${jsonLines.length} rows written to ${args.values.json}`);
  }
}
