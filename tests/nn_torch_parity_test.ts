/**
 * Layer parity with real PyTorch, against fixtures computed by PyTorch (tools/fixtures/
 * make_layer_fixtures.py) from weights of OUR initialization (tools/fixtures/layer_inputs.ts, files
 * ours_*_in, loaded there with a strict load_state_dict): BatchNorm2d/1d in training and evaluation
 * mode, the original BasicBlock with a projection shortcut, a reduced-width ResNet-18 (logits, loss,
 * every parameter gradient, then 3 SGD steps: parameters, running statistics, eval logits), and
 * the parameter counts and state_dict shapes of the full ResNet-18/34, ResNet-20 and VGG-11/16.
 * Tolerance: max |ours − torch| ≤ 1e-4 · max |torch| per tensor. No Python needed.
 */
import assert from "node:assert/strict";
import {
  crossEntropy,
  decodeSafetensors,
  fromTorchStateDict,
  mul,
  nn,
  reshape,
  resnet18,
  resnet20,
  resnet34,
  sub,
  sum,
  type Tensor,
  type TensorTree,
  toTorchStateDict,
  treeLeaves,
  valueAndGrad,
  vgg,
} from "../mod.ts";
import type { ApplyContext, Layer } from "../src/nn/layer.ts";
import { zipTrees } from "../src/tree.ts";
import { BLOCK, layerInputs, RESNET, RESNET_LR, STEPS } from "../tools/fixtures/layer_inputs.ts";

const DIR = new URL("./fixtures/layers/", import.meta.url);
const read = (name: string) => decodeSafetensors(Deno.readFileSync(new URL(name, DIR)), { name });
const TOL = 1e-4;

/** Asserts max |a − b| ≤ TOL · max |b| (b is PyTorch's), naming the quantity and the error. */
function close(what: string, ours: Tensor, torch: Tensor): number {
  assert.deepEqual(ours.shape, torch.shape, `${what}: shape ${ours.shape} vs torch ${torch.shape}`);
  const a = ours.dataSync(), b = torch.dataSync();
  let scale = 0, err = 0;
  for (let i = 0; i < b.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]));
    err = Math.max(err, Math.abs(a[i] - b[i]));
  }
  assert.ok(scale > 0 || err === 0, `${what}: torch's tensor is all zeros`);
  const rel = err / (scale || 1);
  assert.ok(
    rel <= TOL,
    `${what}: max |ours − torch| = ${err} is ${rel.toExponential(2)} of max |torch| ${scale}`,
  );
  return rel;
}

/** Every entry of `sd` (ours, torch names) against torch's `ref[prefix + name]`; all of torch's must be covered. */
function closeAll(
  what: string,
  sd: Record<string, Tensor>,
  ref: Record<string, Tensor>,
  prefix: string,
): number {
  const want = Object.keys(ref).filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length)).sort();
  assert.deepEqual(Object.keys(sd).sort(), want, `${what}: names differ from torch's`);
  return Math.max(...want.map((k) => close(`${what} ${k}`, sd[k], ref[prefix + k])));
}

function pick(tensors: Record<string, Tensor>, prefix: string): Record<string, Tensor> {
  return Object.fromEntries(
    Object.entries(tensors).filter(([k]) => k.startsWith(prefix)).map((
      [k, v],
    ) => [k.slice(prefix.length), v]),
  );
}

const ctx = (training: boolean, path = ""): ApplyContext => ({ training, step: 0, seed: 0, path });

/** A layer's output, loss sum(y·g) and its gradients w.r.t. the params and x, plus the next state. */
function run<P extends TensorTree, S extends TensorTree>(
  layer: Layer<P, S>,
  params: P,
  state: S,
  x: Tensor,
  g: Tensor,
  training: boolean,
) {
  let y: Tensor | undefined, next: S | undefined;
  const { grads } = valueAndGrad((t: { p: P; x: Tensor }) => {
    const r = layer.apply(t.p, state, t.x, ctx(training));
    y = r.y;
    next = r.state;
    return sum(mul(r.y, g));
  })({ p: params, x });
  return { y: y!, state: next!, grads };
}

Deno.test("layer fixtures: the committed ours_*_in files are byte for byte what our init writes now", () => {
  for (const [name, bytes] of Object.entries(layerInputs())) {
    const committed = Deno.readFileSync(new URL(name, DIR));
    assert.ok(
      committed.length === bytes.length && committed.every((v, i) => v === bytes[i]),
      `${name} differs from tools/fixtures/layer_inputs.ts's output; regenerate both (see make_layer_fixtures.py)`,
    );
  }
});

Deno.test("torch parity: BatchNorm2d in training mode (3 steps) and evaluation mode", () => {
  const inp = read("ours_bn_in.safetensors").tree, ref = read("torch_bn.safetensors").tree;
  const bn = nn.batchNorm(3);
  const init = bn.init(0, "");
  const { params, state } = fromTorchStateDict("layers", pick(inp, "bn."), init.params, init.state);
  const r = run(bn, params, state, inp["x.0"], inp.g, true);
  close("train y", r.y, ref["train.y"]);
  close("train dx", r.grads.x, ref["train.dx"]);
  close("train dweight", r.grads.p.w, ref["train.dweight"]);
  close("train dbias", r.grads.p.b, ref["train.dbias"]);
  closeAll("step 1", toTorchStateDict("layers", r.state), ref, "step1.");
  // Running statistics after 3 steps on 3 batches (the unbiased variance moves them).
  let s = state;
  for (let i = 0; i < STEPS; i++) s = bn.apply(params, s, inp[`x.${i}`], ctx(true)).state;
  closeAll("step 3", toTorchStateDict("layers", s), ref, "step3.");
  const e = run(bn, params, state, inp["x.0"], inp.g, false);
  assert.equal(e.state, state, "evaluation returns the state unchanged");
  close("eval y", e.y, ref["eval.y"]);
  close("eval dx", e.grads.x, ref["eval.dx"]);
  close("eval dweight", e.grads.p.w, ref["eval.dweight"]);
  close("eval dbias", e.grads.p.b, ref["eval.dbias"]);
});

Deno.test("torch parity: BatchNorm1d in training and evaluation mode", () => {
  const inp = read("ours_bn_in.safetensors").tree, ref = read("torch_bn.safetensors").tree;
  const bn = nn.batchNorm(4);
  const init = bn.init(0, "");
  const sd = pick(inp, "bn1d.");
  delete sd.x;
  delete sd.g;
  const { params, state } = fromTorchStateDict("layers", sd, init.params, init.state);
  for (const mode of ["train", "eval"] as const) {
    const r = run(bn, params, state, inp["bn1d.x"], inp["bn1d.g"], mode === "train");
    close(`bn1d ${mode} y`, r.y, ref[`bn1d.${mode}.y`]);
    close(`bn1d ${mode} dx`, r.grads.x, ref[`bn1d.${mode}.dx`]);
    close(`bn1d ${mode} dweight`, r.grads.p.w, ref[`bn1d.${mode}.dweight`]);
    close(`bn1d ${mode} dbias`, r.grads.p.b, ref[`bn1d.${mode}.dbias`]);
    const st = toTorchStateDict("layers", r.state);
    for (const k of ["running_mean", "running_var"]) {
      close(`bn1d ${mode} ${k}`, st[k], ref[`bn1d.${mode}.${k}`]);
    }
  }
});

Deno.test("torch parity: BasicBlock with a projection shortcut (output, every gradient, running statistics)", () => {
  const inp = read("ours_block_in.safetensors").tree, ref = read("torch_block.safetensors").tree;
  const block = nn.basicBlock(BLOCK.inPlanes, BLOCK.planes, BLOCK.stride);
  const init = block.init(7, "");
  const { params, state } = fromTorchStateDict("layers", pick(inp, "block."), init.params, init.state);
  const r = run(block, params, state, inp.x, inp.g, true);
  close("block y", r.y, ref["train.y"]);
  close("block dx", r.grads.x, ref["train.dx"]);
  closeAll("block grad", toTorchStateDict("layers", r.grads.p), ref, "grad.");
  closeAll("block state", toTorchStateDict("layers", r.state), ref, "state.");
  close("block eval y", block.apply(params, r.state, inp.x, ctx(false)).y, ref["eval.y"]);
});

Deno.test("torch parity: reduced-width ResNet-18: logits, loss, every gradient; 3 SGD steps: weights, running statistics", () => {
  const inp = read("ours_resnet_in.safetensors"), ref = read("torch_resnet.safetensors").tree;
  assert.equal(inp.metadata.labels, RESNET.labels.join(","));
  const net = resnet18({ widths: RESNET.widths, seed: RESNET.seed });
  let { params, state } = fromTorchStateDict("layers", pick(inp.tree, "resnet."), net.params, net.state);
  const x = inp.tree.x, labels = [...RESNET.labels];
  const rels: number[] = [];
  for (let step = 0; step < STEPS; step++) {
    let logits: Tensor | undefined, next = state;
    const { value, grads } = valueAndGrad((p: typeof params) => {
      const r = net.apply(p, state, x, { training: true, step });
      logits = r.y;
      next = r.state;
      return crossEntropy(r.y, labels);
    })(params);
    if (step === 0) {
      rels.push(close("logits", logits!, ref.logits));
      rels.push(close("loss", reshape(value, [1]), ref.loss));
      rels.push(closeAll("grad", toTorchStateDict("layers", grads), ref, "grad."));
    }
    params = zipTrees([params, grads], ([p, g]) => sub(p, mul(g, RESNET_LR)));
    state = next;
  }
  const after = toTorchStateDict("layers", params, state);
  rels.push(
    closeAll(
      "after 3 steps",
      { ...after, eval_logits: net.apply(params, state, x, { training: false }).y },
      ref,
      "after.",
    ),
  );
  // The running statistics moved away from their initial 0 and 1.
  assert.ok(after["bn1.running_mean"].dataSync().some((v) => Math.abs(v) > 1e-3), "running mean still 0");
  console.log(
    `ResNet-18 (widths ${RESNET.widths}) worst relative error vs PyTorch: ${
      Math.max(...rels).toExponential(2)
    }`,
  );
});

Deno.test("torch parity: parameter counts and state_dict names/shapes of the full models equal PyTorch's", async () => {
  const ref = JSON.parse(await Deno.readTextFile(new URL("torch_counts.json", DIR)));
  const models = {
    resnet18: () => resnet18(),
    resnet34: () => resnet34(),
    resnet20: () => resnet20(),
    vgg11: () => vgg("vgg11"),
    vgg16: () => vgg("VGG16"),
  };
  assert.equal(ref.resnet18.params, 11_173_962, "the issue's figure for ResNet-18 with 10 classes");
  for (const [name, make] of Object.entries(models)) {
    const m = make();
    const count = treeLeaves(m.params).reduce((s, l) => s + l.tensor.size, 0);
    assert.equal(count, ref[name].params, `${name}: ${count} parameters, PyTorch ${ref[name].params}`);
    const sd = toTorchStateDict("layers", m.params, m.state);
    const shapes = Object.fromEntries(Object.entries(sd).map(([k, t]) => [k, t.shape]));
    assert.deepEqual(
      shapes,
      ref[name].state_dict,
      `${name}: state_dict names or shapes differ from PyTorch's`,
    );
  }
});
