/**
 * CPU benchmarks: square float32 matmul (256, 512, 1024) and one training step of an MLP
 * 784-256-256-10 at batch 128 (valueAndGrad + a plain SGD update written with ops).
 *
 *     deno bench --allow-read --allow-env bench/cpu_bench.ts
 *
 * Besides Deno's table, prints the median throughput of each case (GFLOP/s, examples/s) when the
 * run ends.
 */
import {
  add,
  crossEntropy,
  matmul,
  mul,
  randn,
  relu,
  sub,
  type Tensor,
  valueAndGrad,
  zeros,
  zipTrees,
} from "../mod.ts";
import { timed as timedIn } from "./_timing.ts";

const timed = (name: string, figure: (ms: number) => string, fn: () => void) =>
  timedIn("cpu_bench", name, figure, fn);

// ---------------------------------------------------------------- matmul

for (const [n, iters] of [[256, 20], [512, 6], [1024, 3]]) {
  const a = randn([n, n], { seed: 1 }), b = randn([n, n], { seed: 2 });
  const flops = 2 * n * n * n;
  Deno.bench({
    name: `matmul ${n}x${n} float32`,
    group: "matmul",
    n: iters,
    warmup: 1,
    fn: timed(`matmul ${n}`, (ms) => `${(flops / ms / 1e6).toFixed(2)} GFLOP/s`, () => {
      matmul(a, b);
    }),
  });
}

// ---------------------------------------------------------------- MLP training step

type Mlp = { w1: Tensor; b1: Tensor; w2: Tensor; b2: Tensor; w3: Tensor; b3: Tensor };
const sizes = [784, 256, 256, 10];
const batch = 128;
let params: Mlp = {
  w1: randn([784, 256], { seed: 3, std: Math.sqrt(2 / 784) }),
  b1: zeros([256]),
  w2: randn([256, 256], { seed: 4, std: Math.sqrt(2 / 256) }),
  b2: zeros([256]),
  w3: randn([256, 10], { seed: 5, std: Math.sqrt(1 / 256) }),
  b3: zeros([10]),
};
const x = randn([batch, 784], { seed: 6 });
const y = Int32Array.from({ length: batch }, (_, i) => (i * 7) % 10);
const loss = (p: Mlp, xb: Tensor, yb: Int32Array) => {
  const h1 = relu(add(matmul(xb, p.w1), p.b1));
  const h2 = relu(add(matmul(h1, p.w2), p.b2));
  return crossEntropy(add(matmul(h2, p.w3), p.b3), yb);
};
const step = valueAndGrad(loss);
const lr = 0.01;
// Forward 2·B·Σ(in·out) FLOPs, backward twice that (dX and dW products).
let macs = 0;
for (let i = 0; i + 1 < sizes.length; i++) macs += sizes[i] * sizes[i + 1];
const stepFlops = 3 * 2 * batch * macs;

Deno.bench({
  name: `MLP 784-256-256-10 train step, batch ${batch}, float32`,
  group: "mlp",
  n: 10,
  warmup: 2,
  fn: timed(
    "mlp step",
    (ms) =>
      `${(batch / ms * 1000).toFixed(0)} examples/s, ${
        (stepFlops / ms / 1e6).toFixed(2)
      } GFLOP/s (matmul FLOPs)`,
    () => {
      const { grads } = step(params, x, y);
      params = zipTrees<Mlp>([params, grads], ([p, g]) => sub(p, mul(g, lr)), "sgd");
    },
  ),
});
