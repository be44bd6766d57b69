/**
 * CPU benchmarks of the LeNet-like CNN (`lenet()`): one training step at batch 128 on random
 * MNIST-shaped data (valueAndGrad of the cross-entropy + a plain SGD update written with ops), and
 * the float32 conv2d kernels (forward, grad input, grad weight) at the two LeNet conv shapes.
 *
 *     deno bench --allow-read --allow-env bench/cnn_bench.ts
 *
 * Besides Deno's table, prints the median of each case (examples/s, GFLOP/s) when the run ends.
 */
import {
  crossEntropy,
  lenet,
  type LeNetParams,
  mul,
  rand,
  sub,
  type Tensor,
  valueAndGrad,
  zipTrees,
} from "../mod.ts";
import {
  conv2dForward,
  conv2dGradInput,
  conv2dGradWeight,
  type ConvDims,
  convOutSize,
} from "../kernels/wasm/conv.ts";
import { timed as timedIn } from "./_timing.ts";

const timed = (name: string, figure: (ms: number) => string, fn: () => void) =>
  timedIn("cnn_bench", name, figure, fn);

const batch = 128;

// ---------------------------------------------------------------- LeNet training step

const net = lenet({ seed: 0 });
let params: LeNetParams = net.params;
const x = rand([batch, 1, 28, 28], { seed: 1 });
const y = Int32Array.from({ length: batch }, (_, i) => (i * 7) % 10);
const step = valueAndGrad((p: LeNetParams, xb: Tensor, yb: Int32Array) =>
  crossEntropy(net.forward(p, xb), yb)
);
const lr = 0.01;

Deno.bench({
  name: `LeNet train step, batch ${batch}, float32`,
  group: "lenet",
  n: 20,
  warmup: 3,
  fn: timed("lenet step", (ms) => `${(batch / ms * 1000).toFixed(0)} examples/s`, () => {
    const { grads } = step(params, x, y);
    params = zipTrees<LeNetParams>([params, grads], ([p, g]) => sub(p, mul(g, lr)), "sgd");
  }),
});

// ---------------------------------------------------------------- conv2d kernels

function randomArray(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 32 - 0.5;
  }
  return a;
}

const shapes: [string, ConvDims][] = [
  ["conv1 1→6 28×28 pad 2", { N: batch, C: 1, H: 28, W: 28, O: 6, kh: 5, kw: 5, sh: 1, sw: 1, ph: 2, pw: 2 }],
  ["conv2 6→16 14×14", { N: batch, C: 6, H: 14, W: 14, O: 16, kh: 5, kw: 5, sh: 1, sw: 1, ph: 0, pw: 0 }],
];
for (const [label, d] of shapes) {
  const { Ho, Wo } = convOutSize(d);
  const xs = randomArray(d.N * d.C * d.H * d.W, 1), ws = randomArray(d.O * d.C * d.kh * d.kw, 2);
  const gy = randomArray(d.N * d.O * Ho * Wo, 3);
  const flops = 2 * d.N * d.O * Ho * Wo * d.C * d.kh * d.kw;
  const gflops = (ms: number) => `${(flops / ms / 1e6).toFixed(2)} GFLOP/s`;
  const cases: [string, () => void][] = [
    ["forward", () => conv2dForward(xs, ws, d)],
    ["grad input", () => conv2dGradInput(gy, ws, d)],
    ["grad weight", () => conv2dGradWeight(xs, gy, d)],
  ];
  for (const [what, fn] of cases) {
    Deno.bench({
      name: `${label} ${what}, batch ${batch}`,
      group: "conv2d",
      n: 20,
      warmup: 2,
      fn: timed(`${label} ${what}`, gflops, fn),
    });
  }
}
