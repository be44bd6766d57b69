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
  zipTrees,
} from "../mod.ts";

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
