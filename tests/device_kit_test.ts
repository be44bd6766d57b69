/**
 * The device kit's join of our training-step rows with PyTorch's (`tools/device/train_ratios.ts`):
 * only WebGPU rows that PyTorch also timed (same model, optimizer and batch) give a line, the ratio
 * is PyTorch's time over ours, and log lines that are not rows are skipped.
 */
import assert from "node:assert/strict";
import { ratioLines, rows } from "../tools/device/train_ratios.ts";

const OURS = [
  { model: "mlp", device: "cpu", optimizer: "sgd", batch: 128, ms_per_step: 8 },
  {
    model: "mlp",
    device: "webgpu",
    optimizer: "sgd",
    batch: 128,
    ms_per_step: 0.8,
    host_ms_per_step: 0.5,
    submit_ms_per_step: 0.125,
  },
  { model: "mlp", device: "webgpu", optimizer: "adam", batch: 128, ms_per_step: 1 },
  { model: "lenet", device: "webgpu", optimizer: "sgd", batch: 128, ms_per_step: 4 },
].map((r) => JSON.stringify(r)).join("\n");
const TORCH = [
  "/usr/lib/python3/dist-packages/torch/cuda: a warning line",
  JSON.stringify({ model: "mlp", optimizer: "sgd", batch: 128, device: "NVIDIA H200", ms_per_step: 1 }),
  JSON.stringify({ model: "lenet", optimizer: "sgd", batch: 64, device: "NVIDIA H200", ms_per_step: 2 }),
  "{not json",
].join("\n");

Deno.test("device kit: ours/PyTorch lines join WebGPU rows with PyTorch's by model, optimizer and batch", () => {
  const lines = ratioLines(rows(OURS), rows(TORCH));
  assert.deepEqual(lines, [
    "mlp sgd batch 128 step: ours (WebGPU) 0.800 ms (host 0.50 ms + submit 0.13 ms), PyTorch NVIDIA H200 1.000 ms; " +
    "ours/PyTorch speed 1.25x",
  ]);
});

Deno.test("device kit: rows skips lines that are not training-step rows", () => {
  assert.equal(rows(TORCH).length, 2);
  assert.equal(rows('{"model": "mlp"}\n\n{"ms_per_step": 1}').length, 0);
});
