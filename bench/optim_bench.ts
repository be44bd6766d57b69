// One optimizer step (perturb → update → applyUpdates) over a ~1M-parameter float32 tree, for
// sgd, vsgd, adam, vadam, in both modes.
//
//   deno bench bench/optim_bench.ts                 Deno's harness (avg, p75, p99; baseline ratios)
//   deno run bench/optim_bench.ts [--rounds 40]     interleaved rounds, medians and the ratios
//                                                   vsgd/sgd and vadam/adam (the issue's target ≤ 1.3)
//   … [--noise-threads auto|1|2…]                    the noise thread setting (default "auto": the
//                                                   calling thread plus workers where they pay)
import { Tensor } from "../src/tensor.ts";
import type { TensorTree } from "../src/tree.ts";
import { fillNoise, getNoiseThreads, setNoiseThreads } from "../src/random/noise.ts";
import { adam, applyUpdates, type Optimizer, sgd, vadam, vsgd } from "../src/optim/mod.ts";
import { perturbRange } from "../src/cpu/optim.ts";

/** An MLP-shaped tree of 1,000,849 float32 parameters. */
const SHAPES: Record<string, Record<string, number[]>> = {
  l1: { w: [784, 1200], b: [1200] },
  l2: { w: [1200, 49], b: [49] },
};

function tree(seed: number): TensorTree {
  const out: Record<string, Record<string, Tensor>> = {};
  for (const [layer, leaves] of Object.entries(SHAPES)) {
    out[layer] = {};
    for (const [name, shape] of Object.entries(leaves)) {
      const n = shape.reduce((a, b) => a * b, 1);
      const a = new Float32Array(n);
      for (let i = 0; i < n; i++) a[i] = 0.01 * Math.sin(i * 0.618 + seed);
      out[layer][name] = new Tensor(a, shape, "float32", "cpu");
    }
  }
  return out;
}

const grads = tree(1);

/** A closure that takes one full optimizer step per call, threading params and state along. */
function stepper(opt: Optimizer<any>) {
  let params = tree(0);
  let state = opt.init(params);
  return {
    step() {
      opt.perturb(params, state); // the weights the forward/backward pass would use
      const r = opt.update(grads, state, params);
      params = applyUpdates(params, r.updates);
      state = r.state;
    },
    parts() {
      const t0 = performance.now();
      opt.perturb(params, state);
      const t1 = performance.now();
      const r = opt.update(grads, state, params);
      const t2 = performance.now();
      params = applyUpdates(params, r.updates);
      state = r.state;
      const t3 = performance.now();
      return [t1 - t0, t2 - t1, t3 - t2];
    },
  };
}

const nz = { variability: 0.01, numIters: 1000, seed: 0 };
const CASES: [string, string, () => Optimizer<any>][] = [
  ["sgd", "sgd", () => sgd({ lr: 0.01 })],
  ["sgd", "vsgd official", () => vsgd({ lr: 0.01, ...nz })],
  ["sgd", "vsgd exact", () => vsgd({ lr: 0.01, ...nz, mode: "exact" })],
  ["sgd", "vsgd laplace", () => vsgd({ lr: 0.01, ...nz, noise: "laplace" })],
  ["sgd", "vsgd uniform", () => vsgd({ lr: 0.01, ...nz, noise: "uniform" })],
  ["adam", "adam", () => adam({ lr: 1e-3 })],
  ["adam", "vadam official", () => vadam({ lr: 1e-3, ...nz })],
  ["adam", "vadam exact", () => vadam({ lr: 1e-3, ...nz, mode: "exact" })],
];

if (!import.meta.main) {
  for (const [group, name, make] of CASES) {
    const s = stepper(make());
    Deno.bench({ name: `${name} step (1M float32)`, group, baseline: name === group, fn: () => s.step() });
  }
} else {
  const i = Deno.args.indexOf("--rounds");
  const rounds = i >= 0 ? Number(Deno.args[i + 1]) : 40;
  const t = Deno.args.indexOf("--noise-threads");
  if (t >= 0) setNoiseThreads(Deno.args[t + 1] === "auto" ? "auto" : Number(Deno.args[t + 1]));
  const steppers = CASES.map(([, name, make]) => ({ name, s: stepper(make()), t: [] as number[][] }));
  for (let w = 0; w < 3; w++) for (const x of steppers) x.s.step(); // warm-up
  for (let r = 0; r < rounds; r++) for (const x of steppers) x.t.push(x.s.parts());
  const median = (a: number[]) => {
    const b = a.slice().sort((x, y) => x - y);
    return b.length % 2 ? b[(b.length - 1) / 2] : (b[b.length / 2 - 1] + b[b.length / 2]) / 2;
  };
  const med: Record<string, number> = {};
  console.log(
    `medians over ${rounds} interleaved rounds, ms (1,000,849 float32 parameters; noise threads: ${
      t >= 0 ? Deno.args[t + 1] : "auto"
    }, ${getNoiseThreads()} participants)`,
  );
  console.log("optimizer          step    perturb  update   apply");
  for (const x of steppers) {
    const total = median(x.t.map((p) => p[0] + p[1] + p[2]));
    med[x.name] = total;
    const [p, u, a] = [0, 1, 2].map((k) => median(x.t.map((q) => q[k])));
    console.log(
      `${x.name.padEnd(16)} ${total.toFixed(2).padStart(7)} ${p.toFixed(2).padStart(8)} ${
        u.toFixed(2).padStart(8)
      } ${a.toFixed(2).padStart(7)}`,
    );
  }
  // the noise alone: fillNoise (noise.ts) against the fused loops' bit-identical evaluation
  const n = 1 << 20, out = new Float32Array(n), zero = new Float32Array(n);
  const key = { k0: 0, k1: 1, c1: 2, c2: 0 };
  const tf: number[] = [], tk: number[] = [];
  for (let r = 0; r < 7; r++) {
    let t = performance.now();
    fillNoise(out, "gaussian", 0.01, key);
    tf.push(performance.now() - t);
    t = performance.now();
    perturbRange(0, n, zero, out, "gaussian", 0.01, key);
    tk.push(performance.now() - t);
  }
  console.log(
    `noise alone, 2^20 gaussian draws: fillNoise ${median(tf).toFixed(1)} ms, fused-loop evaluation ${
      median(tk).toFixed(1)
    } ms`,
  );
  for (const m of ["official", "exact"]) {
    console.log(
      `ratio ${m.padEnd(8)}  vsgd/sgd ${(med[`vsgd ${m}`] / med.sgd).toFixed(2)}   vadam/adam ${
        (med[`vadam ${m}`] / med.adam).toFixed(2)
      }   (target <= 1.3)`,
    );
  }
}
