import assert from "node:assert/strict";
import {
  crossEntropy,
  lenet,
  type LeNetParams,
  mlp,
  type MlpParams,
  mul,
  randn,
  sub,
  type Tensor,
  tensor,
  type TensorTree,
  treeLeaves,
  valueAndGrad,
} from "../mod.ts";
import { zipTrees } from "../src/tree.ts";

/** Whole-network check: every coordinate of every leaf against central differences (float64). */
function checkNetworkGradient<P extends TensorTree>(loss: (p: P) => Tensor, params: P, maxCoords = 40): void {
  const { grads } = valueAndGrad(loss)(params);
  const gl = new Map(treeLeaves(grads).map((l) => [l.path, l.tensor.dataSync()]));
  const h = 1e-6;
  for (const { path, tensor: t } of treeLeaves(params)) {
    const data = t.storage as Float64Array;
    const stride = Math.max(1, Math.floor(t.size / maxCoords));
    for (let i = 0; i < t.size; i += stride) {
      const orig = data[i];
      data[i] = orig + h;
      const up = loss(params).item();
      data[i] = orig - h;
      const down = loss(params).item();
      data[i] = orig;
      const fd = (up - down) / (2 * h);
      const an = gl.get(path)![i];
      const err = Math.abs(fd - an) / Math.max(1e-3, Math.abs(fd) + Math.abs(an));
      assert.ok(err < 1e-6, `${path}[${i}]: analytic ${an} vs finite difference ${fd} (rel err ${err})`);
    }
  }
}

function sgdStep<P extends TensorTree>(params: P, grads: P, lr: number): P {
  return zipTrees<P>([params, grads], ([p, g]) => sub(p, mul(g, lr)));
}

Deno.test("mlp: whole-network gradient check in float64", () => {
  const net = mlp([6, 7, 5, 3], { seed: 3, dtype: "float64" });
  const x = randn([4, 6], { seed: 9, dtype: "float64" });
  const y = [0, 2, 1, 2];
  checkNetworkGradient((p: MlpParams) => crossEntropy(net.forward(p, x), y), net.params);
});

Deno.test("lenet: whole-network gradient check in float64", () => {
  const net = lenet({ inputShape: [2, 12, 12], numClasses: 4, seed: 5, dtype: "float64" });
  const x = randn([2, 2, 12, 12], { seed: 1, dtype: "float64" });
  checkNetworkGradient((p: LeNetParams) => crossEntropy(net.forward(p, x), [3, 1]), net.params, 12);
});

/** Three Gaussian blobs in 2-D. */
function blobs(n: number): { x: Tensor; y: number[] } {
  const noise = randn([n, 2], { seed: 11, std: 0.3 }).dataSync();
  const centers = [[2, 0], [-1, 1.7], [-1, -1.7]];
  const data = new Float32Array(n * 2), y: number[] = [];
  for (let i = 0; i < n; i++) {
    const c = i % 3;
    y.push(c);
    data[2 * i] = centers[c][0] + noise[2 * i];
    data[2 * i + 1] = centers[c][1] + noise[2 * i + 1];
  }
  return { x: tensor(data, [n, 2]), y };
}

Deno.test("mlp: a few hundred SGD steps drive the training loss to near zero", () => {
  const net = mlp([2, 32, 3], { seed: 0 });
  const { x, y } = blobs(96);
  const step = valueAndGrad((p: MlpParams) => crossEntropy(net.forward(p, x), y));
  let params = net.params, first = 0, last = 0;
  for (let i = 0; i < 300; i++) {
    const { value, grads } = step(params);
    if (i === 0) first = value.item();
    last = value.item();
    params = sgdStep(params, grads, 0.5);
  }
  assert.ok(first > 0.5, `initial loss ${first} should be near ln 3`);
  assert.ok(last < 0.05, `final loss ${last} should be near zero`);
});

Deno.test("lenet: SGD steps drive the training loss to near zero on a tiny image task", () => {
  // Class 0: bright top half; class 1: bright bottom half; plus noise.
  const n = 16, hw = 12;
  const noise = randn([n, 1, hw, hw], { seed: 4, std: 0.2 }).dataSync();
  const data = new Float32Array(n * hw * hw), y: number[] = [];
  for (let i = 0; i < n; i++) {
    const c = i % 2;
    y.push(c);
    for (let r = 0; r < hw; r++) {
      for (let col = 0; col < hw; col++) {
        const k = i * hw * hw + r * hw + col;
        data[k] = ((r < hw / 2) === (c === 0) ? 1 : 0) + noise[k];
      }
    }
  }
  const x = tensor(data, [n, 1, hw, hw]);
  const net = lenet({ inputShape: [1, hw, hw], numClasses: 2, seed: 2 });
  const step = valueAndGrad((p: LeNetParams) => crossEntropy(net.forward(p, x), y));
  let params = net.params, last = Infinity;
  for (let i = 0; i < 200; i++) {
    const { value, grads } = step(params);
    last = value.item();
    params = sgdStep(params, grads, 0.1);
  }
  assert.ok(last < 0.05, `final loss ${last} should be near zero`);
});

Deno.test("lenet: a flat batch [N, C·H·W] gives the image batch's logits and gradients", () => {
  const net = lenet({ inputShape: [2, 12, 12], numClasses: 4, seed: 5, dtype: "float64" });
  const img = randn([3, 2, 12, 12], { seed: 1, dtype: "float64" });
  const flat = tensor(img.dataSync(), [3, 288], { dtype: "float64" });
  assert.deepEqual(net.forward(net.params, flat).dataSync(), net.forward(net.params, img).dataSync());
  const y = [3, 1, 0];
  const g = (x: Tensor) => valueAndGrad((p: LeNetParams) => crossEntropy(net.forward(p, x), y))(net.params);
  const a = g(flat), b = g(img);
  assert.equal(a.value.item(), b.value.item());
  for (const [la, lb] of treeLeaves(a.grads).map((l, i) => [l, treeLeaves(b.grads)[i]] as const)) {
    assert.equal(la.path, lb.path);
    assert.deepEqual(la.tensor.dataSync(), lb.tensor.dataSync(), la.path);
  }
  checkNetworkGradient((p: LeNetParams) => crossEntropy(net.forward(p, flat), y), net.params, 12);
  // MNIST's default (flat) layout with the default inputShape [1, 28, 28].
  const mnist = lenet({ seed: 0 });
  assert.deepEqual(mnist.forward(mnist.params, randn([2, 784])).shape, [2, 10]);
});

Deno.test("mlp: an image batch [N, C, H, W] is flattened when it holds sizes[0] numbers per example", () => {
  const net = mlp([12, 5, 3], { seed: 2, dtype: "float64" });
  const img = randn([4, 3, 2, 2], { seed: 3, dtype: "float64" });
  const flat = tensor(img.dataSync(), [4, 12], { dtype: "float64" });
  assert.deepEqual(net.forward(net.params, img).dataSync(), net.forward(net.params, flat).dataSync());
  checkNetworkGradient((p: MlpParams) => crossEntropy(net.forward(p, img), [0, 2, 1, 1]), net.params);
  const mnist = mlp([784, 16, 10], { seed: 0 });
  assert.deepEqual(mnist.forward(mnist.params, randn([2, 1, 28, 28])).shape, [2, 10]);
});

Deno.test("lenet and mlp: an input of neither layout is an error naming the model, the layouts, the shape and the fix", () => {
  const net = lenet({ seed: 0 });
  const cases: [number[], RegExp][] = [
    // CIFAR-10 data into the MNIST model: a different size per example.
    [
      [2, 3072],
      /^RangeError: lenet: x must be \[N, 1, 28, 28\] \(image layout\) or \[N, 784\] \(flat layout, reshaped\), got \[2, 3072\]; build the model with the inputShape \[C, H, W\] of the data \(3072 numbers per example, not 784\)$/,
    ],
    [[2, 3, 32, 32], /got \[2, 3, 32, 32\]; build the model with the inputShape/],
    // The right numbers in neither layout: say how to get images.
    [
      [2, 28, 28],
      /^RangeError: lenet: x must be \[N, 1, 28, 28\] .*got \[2, 28, 28\]; give images as \[N, 1, 28, 28\] \(loadMnist\(\{ layout: "image" \}\), .*reshapeInputs\(dataset, \[1, 28, 28\]\)/,
    ],
    [[2, 28, 28, 1], /got \[2, 28, 28, 1\]; .*channels-last images need a transpose first/],
    [[784], /got \[784\]; add the batch axis \(one example is \[1, 1, 28, 28\]\)/],
  ];
  for (const [shape, re] of cases) {
    assert.throws(() => net.forward(net.params, randn(shape)), re, `lenet on ${JSON.stringify(shape)}`);
  }
  const m = mlp([784, 16, 10], { seed: 0 });
  assert.throws(
    () => m.forward(m.params, randn([2, 3, 32, 32])),
    /^RangeError: mlp\(\[784, 16, 10\]\): x must be \[N, 784\] \(flat layout\) or \[N, …\] with 784 numbers per example \(image layout such as \[N, C, H, W\], flattened\), got \[2, 3, 32, 32\]; build the model for 3072 inputs per example/,
  );
  assert.throws(() => m.forward(m.params, randn([2, 100])), /mlp\(\[784, 16, 10\]\): .*got \[2, 100\]/);
  assert.throws(
    () => m.forward(m.params, randn([784])),
    /got \[784\]; add the batch axis \(one example is \[1, 784\]\)/,
  );
});
