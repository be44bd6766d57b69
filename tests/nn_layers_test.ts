/**
 * The layer library: PyTorch-default initialization, container layouts (params and state as
 * separate records at PyTorch's paths), a float64 whole-network gradient check in training mode,
 * dropout keyed by (seed, step, path), evaluation with running statistics, errors that name the
 * layer path, the models' shapes and a small ResNet trained to near-zero loss.
 */
import assert from "node:assert/strict";
import {
  crossEntropy,
  fromTorchStateDict,
  mul,
  nn,
  ones,
  randn,
  resnet18,
  resnet20,
  statefulModel,
  sub,
  sum,
  type Tensor,
  tensor,
  type TensorTree,
  toTorchStateDict,
  treeLeaves,
  valueAndGrad,
  vgg,
  zeros,
} from "../mod.ts";
import type { ApplyContext } from "../src/nn/layer.ts";
import { zipTrees } from "../src/tree.ts";
import { valueAndGradWithAux } from "../src/autodiff.ts";
import { toDevice } from "../src/webgpu/mod.ts";
import { webgpuSuite } from "./_webgpu.ts";

const ctx = (training: boolean, path = "", step = 0, seed = 0): ApplyContext => ({
  training,
  step,
  seed,
  path,
});

function stats(t: Tensor): { min: number; max: number; mean: number; variance: number } {
  const d = t.dataSync();
  let min = Infinity, max = -Infinity, s = 0, s2 = 0;
  for (const v of d) {
    min = Math.min(min, v);
    max = Math.max(max, v);
    s += v;
    s2 += v * v;
  }
  const mean = s / d.length;
  return { min, max, mean, variance: s2 / d.length - mean * mean };
}

Deno.test("init: PyTorch defaults (kaiming_uniform(a=√5) = U(±1/√fan_in), BN 1/0, running 0/1)", () => {
  const conv = nn.conv2d(16, 32, 3, { bias: true }).init(1, "c").params;
  const bound = 1 / Math.sqrt(16 * 9);
  for (const t of [conv.w, conv.b!]) {
    const s = stats(t);
    assert.ok(s.min >= -bound && s.max < bound, `conv init outside ±${bound}: [${s.min}, ${s.max}]`);
  }
  const w = stats(conv.w); // 4608 draws of U(±b): variance b²/3
  assert.ok(Math.abs(w.variance / (bound * bound / 3) - 1) < 0.08, `variance ${w.variance}`);
  assert.ok(Math.abs(w.mean) < 0.05 * bound);
  assert.equal(nn.conv2d(3, 4, 3, { bias: false }).init(0, "c").params.b, undefined);
  const lin = nn.linear(50, 20).init(0, "fc").params;
  assert.deepEqual(lin.w.shape, [50, 20]);
  assert.ok(stats(lin.b!).max < 1 / Math.sqrt(50));
  const bn = nn.batchNorm(5).init(0, "bn");
  assert.deepEqual([...bn.params.w.dataSync()], [1, 1, 1, 1, 1]);
  assert.deepEqual([...bn.params.b.dataSync()], [0, 0, 0, 0, 0]);
  assert.deepEqual([...bn.state.runningMean.dataSync()], [0, 0, 0, 0, 0]);
  assert.deepEqual([...bn.state.runningVar.dataSync()], [1, 1, 1, 1, 1]);
  // Draws depend on the seed and the path only.
  const a = nn.conv2d(2, 2, 3).init(4, "x.y").params.w.dataSync();
  assert.deepEqual(nn.conv2d(2, 2, 3).init(4, "x.y").params.w.dataSync(), a);
  assert.notDeepEqual(nn.conv2d(2, 2, 3).init(4, "x.z").params.w.dataSync(), a);
  assert.notDeepEqual(nn.conv2d(2, 2, 3).init(5, "x.y").params.w.dataSync(), a);
});

Deno.test("containers: params and state are separate records at PyTorch's module paths", () => {
  const net = statefulModel(nn.basicBlock(2, 4, 2));
  assert.deepEqual(Object.keys(net.params), ["conv1", "bn1", "conv2", "bn2", "shortcut"]);
  assert.deepEqual(Object.keys(net.state), ["bn1", "bn2", "shortcut"]);
  assert.deepEqual(Object.keys(net.state.shortcut as object), ["1"]);
  assert.deepEqual(Object.keys(net.params.shortcut as object), ["0", "1"]);
  const same = nn.basicBlock(4, 4, 1).init(0, "");
  assert.ok(!("shortcut" in same.params), "identity shortcut has no params");
  const r18 = resnet18({ widths: [2, 2, 2, 2] });
  const paths = treeLeaves(r18.params).map((l) => l.path);
  for (
    const p of ["conv1.w", "bn1.w", "layer1.0.conv1.w", "layer2.0.shortcut.0.w", "layer4.1.bn2.b", "linear.w"]
  ) {
    assert.ok(paths.includes(p), `missing ${p}`);
  }
  assert.ok(
    !paths.some((p) => p.startsWith("relu") || p.startsWith("pool")),
    "parameter-free layers hold nothing",
  );
  assert.ok(!paths.includes("layer1.0.shortcut.0.w"), "layer1 keeps the identity shortcut");
  // The "layers" torch layout round-trips, num_batches_tracked ignored on the way back.
  const sd = toTorchStateDict("layers", r18.params, r18.state);
  assert.deepEqual(sd["linear.weight"].shape, [10, 2]);
  assert.ok("layer3.0.shortcut.1.running_var" in sd);
  const back = fromTorchStateDict(
    "layers",
    { ...sd, "bn1.num_batches_tracked": tensor([3]) },
    r18.params,
    r18.state,
  );
  assert.deepEqual(
    (back.params.linear as { w: Tensor }).w.dataSync(),
    (r18.params.linear as { w: Tensor }).w.dataSync(),
  );
});

Deno.test("gradient check: a residual network with BatchNorm in training mode, float64", () => {
  const net = statefulModel(
    nn.sequential({
      conv1: nn.conv2d(2, 3, 3, { padding: 1, bias: false }),
      bn1: nn.batchNorm(3),
      relu: nn.relu(),
      block: nn.basicBlock(3, 4, 2),
      pool: nn.globalAvgPool(),
      fc: nn.linear(4, 3),
      bn: nn.batchNorm(3),
    }),
    { seed: 2, dtype: "float64" },
  );
  const x = randn([3, 2, 5, 5], { seed: 3, dtype: "float64" });
  const y = [0, 2, 1];
  const loss = (p: typeof net.params) => crossEntropy(net.apply(p, net.state, x, { training: true }).y, y);
  const { grads } = valueAndGrad(loss)(net.params);
  const gl = new Map(treeLeaves(grads).map((l) => [l.path, l.tensor.dataSync()]));
  const h = 1e-6;
  let checked = 0;
  for (const { path, tensor: t } of treeLeaves(net.params)) {
    const data = t.storage as Float64Array;
    for (let i = 0; i < t.size; i += Math.max(1, Math.floor(t.size / 6))) {
      const orig = data[i];
      data[i] = orig + h;
      const up = loss(net.params).item();
      data[i] = orig - h;
      const down = loss(net.params).item();
      data[i] = orig;
      const fd = (up - down) / (2 * h), an = gl.get(path)![i];
      const err = Math.abs(fd - an) / Math.max(1e-4, Math.abs(fd) + Math.abs(an));
      assert.ok(err < 1e-5, `${path}[${i}]: analytic ${an} vs finite difference ${fd} (rel err ${err})`);
      checked++;
    }
  }
  assert.ok(checked > 60, `checked ${checked} coordinates`);
});

Deno.test("batchNorm: running statistics use the unbiased batch variance; evaluation uses them", () => {
  const bn = nn.batchNorm(1, { momentum: 0.5 });
  const { params, state } = bn.init(0, "bn");
  const x = tensor([[1], [2], [3], [6]]); // mean 3, biased var 3.5, unbiased 14/3
  const r = bn.apply(params, state, x, ctx(true, "bn"));
  assert.ok(Math.abs(r.state.runningMean.item() - 1.5) < 1e-6);
  assert.ok(Math.abs(r.state.runningVar.item() - (0.5 + 0.5 * 14 / 3)) < 1e-6);
  const yTrain = r.y.dataSync();
  assert.ok(
    Math.abs(yTrain[0] - (1 - 3) / Math.sqrt(3.5 + 1e-5)) < 1e-5,
    "normalized by the biased variance",
  );
  const e = bn.apply(params, r.state, tensor([[1.5]]), ctx(false, "bn"));
  assert.ok(Math.abs(e.y.item()) < 1e-6, "eval: (x − running mean)/…");
  assert.equal(e.state, r.state);
});

Deno.test("dropout: inverted, keyed by (seed, step, path); identity in evaluation", () => {
  const d = nn.dropout(0.25);
  const x = ones([4, 500]);
  const y = (step: number, path: string, seed = 1) =>
    d.apply({}, {}, x, ctx(true, path, step, seed)).y.dataSync();
  const a = y(3, "drop");
  assert.ok(a.every((v) => v === 0 || Math.abs(v - 4 / 3) < 1e-6));
  const kept = a.filter((v) => v !== 0).length / a.length;
  assert.ok(Math.abs(kept - 0.75) < 0.04, `kept ${kept}`);
  assert.deepEqual(y(3, "drop"), a, "same key, same mask");
  assert.notDeepEqual(y(4, "drop"), a, "another step");
  assert.notDeepEqual(y(3, "other"), a, "another path");
  assert.notDeepEqual(y(3, "drop", 2), a, "another seed");
  assert.equal(d.apply({}, {}, x, ctx(false, "drop", 3)).y, x, "evaluation: the identity");
  assert.throws(() => nn.dropout(1), /nn\.dropout: rate must be a number in \[0, 1\), got 1/);
});

Deno.test("errors name the model and the layer path", () => {
  const net = resnet18({ widths: [2, 2, 4, 4] });
  assert.throws(
    () => net.forward(net.params, zeros([1, 1, 32, 32])),
    /resnet18: x must be \[N, 3, 32, 32\].*first layer "conv1" \(conv2d 3→2, 3×3\) takes 3 input channels, got 1/,
  );
  assert.throws(
    () => net.forward(net.params, zeros([1, 3, 64, 64])),
    /resnet18: .*built for 32×32 inputs, got 64×64/,
  );
  assert.throws(() => resnet18({ inputShape: [3, 64, 64] }), /resnet18: input 64×64 leaves a 8×8 map/);
  // Params of another network: the first mismatch names its path.
  const wide = resnet18({ widths: [2, 2, 8, 4] });
  assert.throws(
    () => net.forward(wide.params, zeros([1, 3, 32, 32])),
    /resnet18: layer "layer3.0.conv1" \(conv2d 2→4, 3×3, stride 2\): "layer3.0.conv1.w" has shape \[8, 2, 3, 3\], expected \[4, 2, 3, 3\]/,
  );
  // A state tree that does not match.
  const { bn1: _drop, ...noBn1 } = net.state;
  assert.throws(
    () => net.apply(net.params, noBn1, zeros([2, 3, 32, 32]), { training: true }),
    /resnet18: layer "bn1" \(batchNorm 2\): the state tree does not match the network: expected its state \(an object\) at "bn1", got nothing/,
  );
  const layer1 = net.state.layer1 as Record<string, Record<string, unknown>>;
  const broken = { ...net.state, layer1: { ...layer1, 0: { ...layer1[0], bn2: {} } } };
  assert.throws(
    () => net.apply(net.params, broken as typeof net.state, zeros([2, 3, 32, 32]), { training: false }),
    /resnet18: layer "layer1.0.bn2" \(batchNorm 2\): evaluation needs the running statistics/,
  );
  assert.throws(
    () => net.apply(net.params, { ...net.state, extra: {} }, zeros([2, 3, 32, 32]), { training: false }),
    /the state tree does not match the network: unexpected "extra"/,
  );
  // Layer-level input checks.
  const conv = nn.conv2d(3, 4, 3);
  const p = conv.init(0, "features.0").params;
  assert.throws(
    () => conv.apply(p, {}, zeros([1, 2, 8, 8]), ctx(true, "features.0")),
    /layer "features.0" \(conv2d 3→4, 3×3\): expects 3 input channels, got x \[1, 2, 8, 8\] with 2/,
  );
  assert.throws(
    () => conv.apply(p, {}, zeros([1, 3, 2, 2]), ctx(true, "features.0")),
    /layer "features.0" .*spatial size 2×2/,
  );
  assert.throws(
    () => nn.linear(8, 2).apply(nn.linear(8, 2).init(0, "fc").params, {}, zeros([2, 16]), ctx(false, "fc")),
    /layer "fc" \(linear 8→2\): expects x \[N, 8\], got \[2, 16\]/,
  );
  assert.throws(
    () =>
      nn.batchNorm(2).apply(
        nn.batchNorm(2).init(0, "bn").params,
        nn.batchNorm(2).init(0, "bn").state,
        zeros([1, 2]),
        ctx(true, "bn"),
      ),
    /layer "bn" \(batchNorm 2\): training needs more than 1 value per channel/,
  );
  assert.throws(
    () => vgg("vgg16", { inputShape: [1, 28, 28] }),
    /vgg16: the max-pool at features.43 .* gets a 1×1 map/,
  );
  assert.throws(() => vgg("vgg17"), /vgg: config must be one of vgg11, vgg13, vgg16, vgg19/);
});

Deno.test("models: shapes, MNIST channels, flat layout, training vs evaluation", () => {
  const r18 = resnet18({ widths: [2, 4, 4, 8], inChannels: 1, inputShape: [1, 28, 28], numClasses: 5 });
  const x = randn([2, 1, 28, 28], { seed: 1 });
  assert.deepEqual(r18.forward(r18.params, x).shape, [2, 5]);
  assert.deepEqual(r18.forward(r18.params, randn([2, 784])).shape, [2, 5], "flat layout reshaped");
  const t = r18.apply(r18.params, r18.state, x, { training: true });
  assert.notDeepEqual(t.y.dataSync(), r18.forward(r18.params, x).dataSync(), "batch vs running statistics");
  const v = vgg([4, "M", 8, "M"], { inputShape: [3, 8, 8], numClasses: 3 });
  assert.deepEqual(Object.keys(v.params.features as object), ["0", "1", "4", "5"]);
  assert.deepEqual((v.params.classifier as { w: Tensor }).w.shape, [32, 3]);
});

Deno.test("resnet20 (reduced width) trains to near-zero loss on a tiny set", () => {
  const net = resnet20({ widths: [4, 8, 8], inputShape: [3, 8, 8], numClasses: 4, seed: 1 });
  const x = randn([8, 3, 8, 8], { seed: 5 });
  const y = [0, 1, 2, 3, 0, 1, 2, 3];
  let params = net.params, state = net.state, first = 0, last = 0;
  for (let step = 0; step < 60; step++) {
    let next = state;
    const { value, grads } = valueAndGrad((p: typeof params) => {
      const r = net.apply(p, state, x, { training: true, step });
      next = r.state;
      return crossEntropy(r.y, y);
    })(params);
    if (step === 0) first = value.item();
    last = value.item();
    params = zipTrees<TensorTree>([params, grads], ([p, g]) => sub(p, mul(g, 0.1))) as typeof params;
    state = next;
  }
  assert.ok(first > 1, `initial loss ${first}`);
  assert.ok(last < 0.05, `loss after 60 steps ${last} (from ${first})`);
  const evalLoss = sum(crossEntropy(net.apply(params, state, x, { training: false }).y, y)).item();
  assert.ok(Number.isFinite(evalLoss));
});

const { gpu, ignore } = await webgpuSuite("nn_layers_test", "nn layers on WebGPU");

Deno.test({
  name:
    "WebGPU: a residual network's training step (loss, logits, gradients, running statistics, dropout) equals the CPU's",
  ignore,
}, async () => {
  assert.ok(gpu);
  const layers = nn.sequential([
    nn.conv2d(3, 4, 3, { padding: 1, bias: false }),
    nn.batchNorm(4),
    nn.relu(),
    nn.basicBlock(4, 8, 2),
    nn.basicBlock(8, 8, 1),
    nn.dropout(0.3),
    nn.globalAvgPool(),
    nn.linear(8, 5),
  ]);
  const x = randn([3, 3, 9, 9], { seed: 4 }), labels = [1, 4, 0];
  const step = async (device: "cpu" | "webgpu") => {
    const net = statefulModel(layers, { seed: 3, device });
    const xb = await toDevice(x, device);
    return valueAndGradWithAux((p: typeof net.params) => {
      const r = net.apply(p, net.state, xb, { training: true, step: 7, seed: 11 });
      return { value: crossEntropy(r.y, labels), aux: { state: r.state, logits: r.y } };
    })(net.params);
  };
  const c = await step("cpu"), g = await step("webgpu");
  const pairs: [string, Tensor, Tensor][] = [["loss", c.value, g.value], [
    "logits",
    c.aux.logits,
    g.aux.logits,
  ]];
  for (const [label, a, b] of [["grad", c.grads, g.grads], ["state", c.aux.state, g.aux.state]] as const) {
    const gl = new Map(treeLeaves(b).map((l) => [l.path, l.tensor]));
    for (const l of treeLeaves(a)) pairs.push([`${label} ${l.path}`, l.tensor, gl.get(l.path)!]);
  }
  assert.ok(pairs.length >= 34, `${pairs.length} tensors compared`);
  for (const [what, a, b] of pairs) {
    assert.equal(b.device, "webgpu", what);
    const u = a.dataSync(), v = await b.data();
    let scale = 0, err = 0;
    for (let i = 0; i < u.length; i++) {
      scale = Math.max(scale, Math.abs(u[i]));
      err = Math.max(err, Math.abs(u[i] - v[i]));
    }
    assert.ok(err <= 1e-4 * Math.max(scale, 1e-6), `${what}: max |gpu − cpu| ${err} (scale ${scale})`);
  }
});
