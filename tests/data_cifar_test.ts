import assert from "node:assert/strict";
import { CIFAR10_MEAN, CIFAR10_RECORD_BYTES, CIFAR10_STD, loadCifar10 } from "../src/data/mod.ts";

const FILES = [
  "data_batch_1.bin",
  "data_batch_2.bin",
  "data_batch_3.bin",
  "data_batch_4.bin",
  "data_batch_5.bin",
];

/** Records whose label is (file*10 + i) % 10 and whose pixel k of channel c is (i + c*7 + k) % 256. */
function records(n: number, fileIndex: number): Uint8Array {
  const out = new Uint8Array(n * CIFAR10_RECORD_BYTES);
  for (let i = 0; i < n; i++) {
    const r = i * CIFAR10_RECORD_BYTES;
    out[r] = (fileIndex * 3 + i) % 10;
    for (let c = 0; c < 3; c++) {
      for (let k = 0; k < 1024; k++) out[r + 1 + c * 1024 + k] = (i + c * 7 + k) % 256;
    }
  }
  return out;
}

async function writeFolder(dir: string, n = 4): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  for (let f = 0; f < 5; f++) await Deno.writeFile(`${dir}/${FILES[f]}`, records(n, f));
  await Deno.writeFile(`${dir}/test_batch.bin`, records(n, 5));
}

Deno.test("loadCifar10: reads the binary format (labels, NCHW pixels, normalization)", async () => {
  const root = await Deno.makeTempDir({ prefix: "nvrm_cifar_" });
  try {
    const dir = `${root}/cifar-10-batches-bin`;
    await writeFolder(dir, 3);
    for (const where of [dir, root]) { // the folder itself or its parent
      const { train, test } = await loadCifar10(where, { recordsPerFile: 3 });
      assert.equal(train.y.length, 15);
      assert.equal(test.y.length, 3);
      assert.deepEqual(train.inputShape, [3, 32, 32]);
      assert.equal(train.numClasses, 10);
      assert.deepEqual(Array.from(train.y.subarray(0, 6)), [0, 1, 2, 3, 4, 5]); // file 0 then file 1 (starts at 3)
      assert.deepEqual(Array.from(test.y), [5, 6, 7]);
      // Example 4 = file 1, record 1: channel 2, pixel 5 → value (1 + 14 + 5) = 20.
      const v = train.x[4 * 3072 + 2 * 1024 + 5];
      assert.ok(Math.abs(v - (20 / 255 - CIFAR10_MEAN[2]) / CIFAR10_STD[2]) < 1e-6);
    }
    const raw = await loadCifar10(dir, { normalize: false, layout: "flat" });
    assert.deepEqual(raw.train.inputShape, [3072]);
    assert.equal(raw.train.x[1], Math.fround(1 / 255)); // example 0, red pixel 1 = 1
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("loadCifar10: missing folder says how to obtain the data", async () => {
  const dir = await Deno.makeTempDir({ prefix: "nvrm_cifar_" });
  try {
    await assert.rejects(loadCifar10(dir), (e: Error) => {
      assert.match(e.message, /^loadCifar10: no CIFAR-10 binary files in /);
      assert.ok(e.message.includes(dir));
      assert.match(e.message, /https:\/\/www\.cs\.toronto\.edu\/~kriz\/cifar-10-binary\.tar\.gz/);
      assert.match(e.message, /tar xzf/);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadCifar10: truncated file, wrong record count, bad label, missing test batch", async () => {
  const dir = await Deno.makeTempDir({ prefix: "nvrm_cifar_" });
  try {
    await writeFolder(dir, 2);
    await Deno.writeFile(`${dir}/data_batch_3.bin`, records(2, 2).subarray(0, 5000));
    await assert.rejects(
      loadCifar10(dir),
      (e: Error) =>
        e.message.startsWith(`${dir}/data_batch_3.bin: 5000 bytes, expected a positive multiple of 3073`) &&
        /truncated/.test(e.message),
    );
    await writeFolder(dir, 2);
    await assert.rejects(
      loadCifar10(dir, { recordsPerFile: 10000 }),
      (e: Error) =>
        e.message.startsWith(`${dir}/data_batch_1.bin: 2 records, expected 10000 (30730000 bytes)`),
    );
    const bad = records(2, 0);
    bad[CIFAR10_RECORD_BYTES] = 12;
    await Deno.writeFile(`${dir}/test_batch.bin`, bad);
    await assert.rejects(
      loadCifar10(dir),
      /test_batch\.bin: record 1 \(byte offset 3073\) has label 12, expected a class 0…9/,
    );
    await Deno.remove(`${dir}/test_batch.bin`);
    await assert.rejects(
      loadCifar10(dir),
      (e: Error) => e.message.startsWith(`loadCifar10: ${dir}/test_batch.bin not found`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
