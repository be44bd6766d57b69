import assert from "node:assert/strict";
import { cifar10FromRecords, encodeIdx, loadMnist, mnistFromBytes, parseIdx } from "../src/data/mod.ts";

Deno.test("parseIdx: round trip of every element type, big-endian", () => {
  const cases: [ArrayLike<number>, string][] = [
    [new Uint8Array([0, 1, 255, 7, 8, 9]), "uint8"],
    [new Int8Array([-128, 1, 127, 0, -1, 5]), "int8"],
    [new Int16Array([-32768, 1, 32767, 0, -1, 300]), "int16"],
    [new Int32Array([-2147483648, 1, 2147483647, 0, -1, 70000]), "int32"],
    [new Float32Array([0.5, -1.25, 3e20, 0, -0, 1 / 3]), "float32"],
    [new Float64Array([0.5, -1.25, 3e200, 0, -0, 1 / 3]), "float64"],
  ];
  for (const [data, type] of cases) {
    const bytes = encodeIdx(data, [2, 3]);
    const r = parseIdx(bytes, { name: type, type: type as never, shape: [2, 3] });
    assert.equal(r.type, type);
    assert.deepEqual(r.shape, [2, 3]);
    assert.deepEqual(Array.from(r.data), Array.from(data));
  }
  // Big-endian header: 0x00000803 then dims.
  const b = encodeIdx(new Uint8Array(6), [1, 2, 3]);
  assert.deepEqual(Array.from(b.subarray(0, 16)), [0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]);
  // int32 is big-endian in the file.
  const i = encodeIdx(new Int32Array([0x01020304]), [1]);
  assert.deepEqual(Array.from(i.subarray(8)), [1, 2, 3, 4]);
});

Deno.test("parseIdx: free dimensions and a view without copy for uint8", () => {
  const bytes = encodeIdx(new Uint8Array([1, 2, 3, 4, 5, 6]), [3, 2]);
  const r = parseIdx(bytes, { shape: [-1, 2] });
  assert.deepEqual(r.shape, [3, 2]);
  assert.equal(r.data.buffer, bytes.buffer);
});

Deno.test("parseIdx: wrong magic number names the file and the expected magic", () => {
  const bytes = encodeIdx(new Uint8Array(4), [4]);
  bytes[0] = 0x1f; // a gzip file starts 1f 8b
  bytes[1] = 0x8b;
  assert.throws(() => parseIdx(bytes, { name: "/x/labels.gz", type: "uint8" }), (e: Error) => {
    assert.match(e.message, /^\/x\/labels\.gz: bad IDX magic number 0x1f8b0801, expected 0x0000TTRR/);
    assert.match(e.message, /0x000008/);
    return true;
  });
  const bad = encodeIdx(new Uint8Array(4), [4]);
  bad[2] = 0x0a; // not a type code
  assert.throws(() => parseIdx(bad, { name: "f" }), /f: bad IDX magic number 0x00000a01/);
});

Deno.test("parseIdx: wrong type, rank, dimension or count give clear errors", () => {
  const imgs = encodeIdx(new Uint8Array(2 * 28 * 28), [2, 28, 28]);
  assert.throws(
    () => parseIdx(imgs, { name: "imgs", type: "int32" }),
    /^Error: imgs: IDX element type is uint8 \(magic 0x00000803\), expected int32 \(magic 0x00000c\.\.\)/,
  );
  assert.throws(
    () => parseIdx(imgs, { name: "imgs", shape: [2] }),
    /imgs: IDX rank is 3 .*expected 1 \(dimensions \[2\]\)/,
  );
  assert.throws(
    () => parseIdx(imgs, { name: "imgs", shape: [60000, 28, 28] }),
    /imgs: IDX dimension 0 is 2 \(shape \[2, 28, 28\]\), expected 60000 \(shape \[60000, 28, 28\]\)/,
  );
});

Deno.test("parseIdx: truncated and over-long files", () => {
  const full = encodeIdx(new Uint8Array(10), [10]);
  assert.throws(
    () => parseIdx(full.subarray(0, 15), { name: "lbl" }),
    /lbl: IDX file is truncated: 15 bytes, expected 18 \(8-byte header \+ 10 uint8 elements for shape \[10\]\)/,
  );
  const long = new Uint8Array(19);
  long.set(full);
  assert.throws(() => parseIdx(long, { name: "lbl" }), /lbl: IDX file is too long: 19 bytes, expected 18/);
  assert.throws(
    () => parseIdx(full.subarray(0, 6), { name: "lbl" }),
    /lbl: truncated IDX header: 6 bytes, expected at least 8/,
  );
  assert.throws(() => parseIdx(new Uint8Array(2), { name: "lbl" }), /lbl: not an IDX file: 2 bytes/);
});

/** Writes a fake MNIST folder with `n` test examples and a 60000-example train split. */
async function fakeMnist(
  dir: string,
  opts: { trainN?: number; truncate?: boolean; badMagic?: boolean } = {},
) {
  const trainN = opts.trainN ?? 60000;
  // Only labels are big; images for 60000 would be 47 MB, so write the real sizes lazily: small test
  // split, and a train split whose size we control (wrong sizes are what these tests check).
  const write = (name: string, data: Uint8Array) => Deno.writeFile(`${dir}/${name}`, data);
  const trainImgs = encodeIdx(new Uint8Array(trainN * 784), [trainN, 28, 28]);
  const trainLbls = encodeIdx(new Uint8Array(trainN), [trainN]);
  if (opts.badMagic) trainLbls[2] = 0x0c;
  await write(
    "train-images-idx3-ubyte",
    opts.truncate ? trainImgs.subarray(0, trainImgs.length - 100) : trainImgs,
  );
  await write("train-labels-idx1-ubyte", trainLbls);
  await write("t10k-images-idx3-ubyte", encodeIdx(new Uint8Array(10000 * 784), [10000, 28, 28]));
  await write("t10k-labels-idx1-ubyte", encodeIdx(new Uint8Array(10000), [10000]));
}

Deno.test("loadMnist: errors name the file and what was expected", async () => {
  const dir = await Deno.makeTempDir({ prefix: "nvrm_idx_" });
  try {
    await fakeMnist(dir, { trainN: 100 });
    await assert.rejects(
      loadMnist({ dir }),
      (e: Error) =>
        e.message.includes(`${dir}/train-images-idx3-ubyte: IDX dimension 0 is 100`) &&
        e.message.includes("expected 60000"),
    );
    await fakeMnist(dir, { truncate: true });
    await assert.rejects(
      loadMnist({ dir }),
      (e: Error) => e.message.startsWith(`${dir}/train-images-idx3-ubyte: IDX file is truncated`),
    );
    await fakeMnist(dir, { badMagic: true });
    await assert.rejects(
      loadMnist({ dir }),
      (e: Error) => e.message.startsWith(`${dir}/train-labels-idx1-ubyte: IDX element type is int32`),
    );
    await Deno.remove(`${dir}/t10k-labels-idx1-ubyte`);
    await assert.rejects(
      loadMnist({ dir }),
      (e: Error) => e.message.startsWith(`loadMnist: ${dir}/t10k-labels-idx1-ubyte not found; expected`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("mnistFromBytes and cifar10FromRecords reject an unknown layout, naming it", () => {
  assert.throws(
    () => mnistFromBytes(new Uint8Array(784), new Uint8Array(1), 1, { layout: "nchw" as never }),
    /mnistFromBytes: layout must be "flat" or "image", got "nchw"/,
  );
  assert.throws(
    () => cifar10FromRecords(new Uint8Array(3073), { layout: "hwc" as never }),
    /cifar10FromRecords: layout must be "image" or "flat", got "hwc"/,
  );
});
