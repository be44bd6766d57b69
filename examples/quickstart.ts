/**
 * Quickstart: a small MLP (784-128-10) trained with VSGD for 3 epochs on 10,000 MNIST examples,
 * with its test accuracy at the noise-free weights after each epoch (a few seconds on a laptop).
 * It imports only the package's public entry points, as a project that depends on `@nvrm/core`
 * would; in this repository they resolve to the checkout itself.
 *
 *   deno task quickstart        (= deno run --allow-read examples/quickstart.ts)
 *
 * @module
 */
import { crossEntropy, evaluate, mlp, type MlpParams, type Tensor, tensor, valueAndGrad } from "@nvrm/core";
import { applyUpdates, vsgd } from "@nvrm/core/optim";
import { batchIndices, gather, loadMnist } from "@nvrm/core/data";

const trainSize = 10_000, epochs = 3, batchSize = 128;
const { train, test } = await loadMnist({ trainLimit: trainSize }); // needs --allow-read
const net = mlp([784, 128, 10], { seed: 0 });
const loss = (p: MlpParams, x: Tensor, y: Int32Array) => crossEntropy(net.forward(p, x), y);
// numIters is the noise reset period: every numIters steps (here one epoch) the noise is removed.
const opt = vsgd({ lr: 0.1, variability: 0.05, numIters: Math.ceil(trainSize / batchSize), seed: 0 });

let params = net.params, state = opt.init(params);
for (let epoch = 0; epoch < epochs; epoch++) {
  for (const idx of batchIndices(trainSize, batchSize, { seed: 0, epoch })) {
    const b = gather(train, idx);
    const x = tensor(b.x, [idx.length, 784]);
    // The gradient is taken at the perturbed weights θ + noise; update moves θ and redraws the noise.
    const { grads } = valueAndGrad(loss)(opt.perturb(params, state), x, b.y);
    const step = opt.update(grads, state, params); // pure: returns new updates and state
    params = applyUpdates(params, step.updates);
    state = step.state;
  }
  const { accuracy } = await evaluate(net.forward, opt.clean(params, state), test);
  console.log(
    `epoch ${epoch + 1}/${epochs}: test accuracy ${accuracy.toFixed(4)} (${test.y.length} examples)`,
  );
}
