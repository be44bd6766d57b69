/**
 * Whole training steps on WebGPU against the CPU, in the same run: `valueAndGrad` at
 * `perturb(params)`, `update` and `applyUpdates`, for sgd/vsgd and adam/vadam (official mode), on
 * three models: the label-noise MLP 784-256-256-10 (batch 128), a wide MLP 3072-2048-2048-10 on
 * CIFAR-size inputs (batch 256) and LeNet on 3×32×32 (batch 128). Every round times `--steps`
 * steps per optimizer (the GPU is waited for once, at the end of the round; nothing is read back
 * in between, as in `fit`), rounds interleave the optimizers, and the table gives medians:
 * ms/step, examples/s, vsgd/sgd and vadam/adam on each device, and webgpu/cpu speed-ups.
 *
 *   deno run -A bench/webgpu_train_bench.ts [--models mlp,wide,lenet] [--devices cpu,webgpu]
 *                                           [--rounds 5] [--steps 10] [--cache-bind-groups]
 *
 * `--cache-bind-groups` turns on the experimental bind-group cache (`InitWebGPUOptions`).
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
import { initWebGPUBackend, NoWebGPUError, syncWebGPU } from "../src/webgpu/mod.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    models: { type: "string", default: "mlp,wide,lenet" },
    devices: { type: "string", default: "cpu,webgpu" },
    rounds: { type: "string", default: "5" },
    steps: { type: "string", default: "10" },
    "cache-bind-groups": { type: "boolean", default: false },
  },
});
const ROUNDS = Number(args.values.rounds), STEPS = Number(args.values.steps);
for (const [name, v] of [["--rounds", ROUNDS], ["--steps", STEPS]] as const) {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${v}`);
}

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
    const b = await initWebGPUBackend({ cacheBindGroups: args.values["cache-bind-groups"] });
    console.log(
      `adapter: ${b.ctx.description}; bind-group cache ${args.values["cache-bind-groups"] ? "on" : "off"}`,
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

/** Milliseconds per step of `steps` steps (after 2 warm-up steps), waiting for the GPU at the end. */
async function timeSteps(model: Model<TensorTree>, x: Tensor, y: Int32Array, opt: Optimizer<unknown>) {
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
  const t0 = performance.now();
  for (let i = 0; i < STEPS; i++) step();
  await sync();
  const ms = (performance.now() - t0) / STEPS;
  dispose([params === model.params ? null : params, state], [model.params]);
  return ms;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

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
      async () => void (await timeSteps(model, x, y, make())),
    );
  }
}

/** The whole comparison (`deno run`): every model on every device, the table and the ratios. */
async function table(): Promise<void> {
  console.log(`${ROUNDS} rounds × ${STEPS} steps per optimizer (medians)`);
  for (const m of models) {
    const w = WORKLOADS[m];
    const y = Int32Array.from({ length: w.batch }, (_, i) => i % 10);
    const med: Record<string, number> = {};
    for (const device of devices) {
      const { model, x } = w.make(device);
      const times: Record<string, number[]> = {};
      for (let r = 0; r < ROUNDS; r++) {
        for (const [name, make] of Object.entries(OPTIMIZERS)) {
          (times[name] ??= []).push(await timeSteps(model, x, y, make()));
        }
      }
      for (const name of Object.keys(OPTIMIZERS)) med[`${device} ${name}`] = median(times[name]);
      dispose([model.params, x]);
    }
    console.log(`\n${w.label}`);
    for (const [row, ms] of Object.entries(med)) {
      console.log(
        `  ${row.padEnd(14)} ${ms.toFixed(2).padStart(9)} ms/step ${
          (w.batch / ms * 1000).toFixed(0).padStart(9)
        } ex/s`,
      );
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
}
