/**
 * CIFAR-10 from its binary distribution (`cifar-10-binary.tar.gz`, folder `cifar-10-batches-bin`):
 * `data_batch_1.bin` … `data_batch_5.bin` (training) and `test_batch.bin`, each a sequence of
 * 3073-byte records — one label byte (0…9) and 3072 pixel bytes (1024 red, 1024 green, 1024 blue,
 * rows of 32). The dataset is not on npm; the user downloads it once and points the loader at it.
 * Reading uses `Deno.readFile` (`--allow-read`).
 *
 * @module
 */
import { type Dataset, makeDataset } from "./dataset.ts";
import { checkDir, displayPath, fileExists, readBinary, toDirUrl } from "./files.ts";

/** Bytes of one record: 1 label byte + 3 × 32 × 32 pixel bytes. */
export const CIFAR10_RECORD_BYTES = 3073;
/** Per-channel mean of the CIFAR-10 training pixels scaled to [0, 1] (R, G, B). */
export const CIFAR10_MEAN: readonly number[] = [0.4914, 0.4822, 0.4465];
/** Per-channel std of the CIFAR-10 training pixels scaled to [0, 1] (R, G, B). */
export const CIFAR10_STD: readonly number[] = [0.2470, 0.2435, 0.2616];
/** The class names, by label. */
export const CIFAR10_CLASSES: readonly string[] = [
  "airplane",
  "automobile",
  "bird",
  "cat",
  "deer",
  "dog",
  "frog",
  "horse",
  "ship",
  "truck",
];
/** Where to get the binary distribution. */
export const CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";

const TRAIN_FILES = [
  "data_batch_1.bin",
  "data_batch_2.bin",
  "data_batch_3.bin",
  "data_batch_4.bin",
  "data_batch_5.bin",
];
const TEST_FILE = "test_batch.bin";
const OBTAIN = `obtain them with \`curl -LO ${CIFAR10_URL} && tar xzf cifar-10-binary.tar.gz\` and pass ` +
  `the extracted cifar-10-batches-bin folder`;

/** Options of {@linkcode loadCifar10}. */
export interface Cifar10Options {
  /**
   * Records each file must hold (10 000 in the real distribution). Default: any positive number
   * of whole records.
   */
  recordsPerFile?: number;
  /** Normalize per channel with {@linkcode CIFAR10_MEAN} / {@linkcode CIFAR10_STD} after scaling to [0, 1]. Default true. */
  normalize?: boolean;
  /** `"image"` gives examples of shape `[3, 32, 32]` (NCHW), `"flat"` `[3072]`. Default `"image"`. */
  layout?: "image" | "flat";
}

/** CIFAR-10's two splits. */
export interface Cifar10 {
  /** The five training batches in order (50 000 examples in the real distribution). */
  train: Dataset;
  /** The test batch (10 000 examples). */
  test: Dataset;
}

/**
 * Loads CIFAR-10 from a local copy of the binary distribution: `dir` is the extracted
 * `cifar-10-batches-bin` folder (or its parent). When the files are missing the error says how to
 * obtain them.
 *
 * @example
 * ```ts ignore
 * import { loadCifar10 } from "@nvrm/core/data";
 * const { train, test } = await loadCifar10("./data/cifar-10-batches-bin");
 * console.log(train.y.length, test.inputShape); // 50000 [3, 32, 32]
 * ```
 */
export async function loadCifar10(dir: string | URL, options: Cifar10Options = {}): Promise<Cifar10> {
  checkOptions(options, "loadCifar10");
  if (
    options.recordsPerFile !== undefined &&
    (!Number.isInteger(options.recordsPerFile) || options.recordsPerFile < 1)
  ) {
    throw new RangeError(
      `loadCifar10: recordsPerFile must be a positive integer, got ${options.recordsPerFile}`,
    );
  }
  const root = toDirUrl(dir, "loadCifar10");
  await checkDir(
    root,
    "loadCifar10",
    `CIFAR-10's binary batches (${TRAIN_FILES[0]} …, ${TEST_FILE}); ${OBTAIN}`,
    true,
  );
  const base = await findBatchesDir(root);
  const trainUrls = TRAIN_FILES.map((f) => new URL(f, base)), testUrl = new URL(TEST_FILE, base);
  // Read and checked in order, so that the first bad file is the one reported; each file is decoded
  // under its own name, so an error names the file and the byte offset inside it.
  const trainParts: Uint8Array[] = [];
  for (const url of trainUrls) trainParts.push(await readBatch(url, options));
  const testBytes = await readBatch(testUrl, options);
  return {
    train: decodeRecords(trainParts, trainUrls.map(displayPath), options),
    test: decodeRecords([testBytes], [displayPath(testUrl)], options),
  };
}

/**
 * Decodes CIFAR-10 binary records (whole 3073-byte records) into a {@linkcode Dataset}. `name`
 * appears in error messages.
 */
export function cifar10FromRecords(
  bytes: Uint8Array,
  options: Pick<Cifar10Options, "normalize" | "layout"> = {},
  name = "CIFAR-10 records",
): Dataset {
  if (!(bytes instanceof Uint8Array)) {
    const got = bytes === null
      ? "null"
      : typeof bytes === "object"
      ? (bytes as object).constructor?.name
      : typeof bytes;
    throw new TypeError(`cifar10FromRecords: bytes must be a Uint8Array, got ${got} (${name})`);
  }
  checkOptions(options, "cifar10FromRecords");
  return decodeRecords([bytes], [name], options);
}

/**
 * Decodes the records of several files, in order, into one dataset; sizes are checked before
 * anything is allocated, and an error names the file (`names[f]`), the record and its byte offset
 * within that file.
 */
function decodeRecords(
  parts: readonly Uint8Array[],
  names: readonly string[],
  options: Pick<Cifar10Options, "normalize" | "layout">,
): Dataset {
  parts.forEach((bytes, f) => {
    if (bytes.length === 0 || bytes.length % CIFAR10_RECORD_BYTES !== 0) {
      throw new Error(
        `${names[f]}: ${bytes.length} bytes, expected a positive multiple of ${CIFAR10_RECORD_BYTES} ` +
          `(1 label byte + 3072 pixel bytes per record)`,
      );
    }
  });
  const n = parts.reduce((a, p) => a + p.length / CIFAR10_RECORD_BYTES, 0);
  const normalize = options.normalize ?? true;
  const luts = [0, 1, 2].map((c) => {
    const lut = new Float32Array(256);
    for (let v = 0; v < 256; v++) lut[v] = normalize ? (v / 255 - CIFAR10_MEAN[c]) / CIFAR10_STD[c] : v / 255;
    return lut;
  });
  const x = new Float32Array(n * 3072);
  const y = new Int32Array(n);
  let i = 0;
  parts.forEach((bytes, f) => {
    for (let r = 0; r < bytes.length; r += CIFAR10_RECORD_BYTES, i++) {
      const label = bytes[r];
      if (label > 9) {
        throw new Error(
          `${names[f]}: record ${r / CIFAR10_RECORD_BYTES} (byte offset ${r}) has label ${label}, ` +
            `expected a class 0…9 (truncated or not a CIFAR-10 binary batch?)`,
        );
      }
      y[i] = label;
      for (let c = 0; c < 3; c++) {
        const lut = luts[c], src = r + 1 + c * 1024, dst = i * 3072 + c * 1024;
        for (let k = 0; k < 1024; k++) x[dst + k] = lut[bytes[src + k]];
      }
    }
  });
  return makeDataset(x, y, options.layout === "flat" ? [3072] : [3, 32, 32], 10);
}

/** Checks the options object, `normalize` (a boolean) and `layout` before any work. */
function checkOptions(options: Pick<Cifar10Options, "normalize" | "layout">, who: string): void {
  if (options === null || typeof options !== "object") {
    throw new TypeError(
      `${who}: options must be an object, got ${options === null ? "null" : typeof options}`,
    );
  }
  if (options.layout !== undefined && options.layout !== "flat" && options.layout !== "image") {
    throw new RangeError(`${who}: layout must be "image" or "flat", got ${JSON.stringify(options.layout)}`);
  }
  if (options.normalize !== undefined && typeof options.normalize !== "boolean") {
    throw new TypeError(`${who}: normalize must be true or false, got ${JSON.stringify(options.normalize)}`);
  }
}

async function findBatchesDir(dir: URL): Promise<URL> {
  for (const cand of [dir, new URL("cifar-10-batches-bin/", dir)]) {
    if (await fileExists(new URL(TRAIN_FILES[0], cand), "loadCifar10")) return cand;
  }
  throw new Error(
    `loadCifar10: no CIFAR-10 binary files in ${
      displayPath(dir)
    } (expected data_batch_1.bin … data_batch_5.bin ` +
      `and test_batch.bin there or in ${displayPath(dir)}cifar-10-batches-bin/); ${OBTAIN}`,
  );
}

async function readBatch(url: URL, options: Cifar10Options): Promise<Uint8Array> {
  const bytes = await readBinary(
    url,
    "loadCifar10",
    `the folder must hold data_batch_1.bin … data_batch_5.bin and test_batch.bin from ${CIFAR10_URL} ` +
      `(incomplete extraction?)`,
  );
  const name = displayPath(url);
  const want = options.recordsPerFile;
  if (bytes.length % CIFAR10_RECORD_BYTES !== 0 || bytes.length === 0) {
    throw new Error(
      `${name}: ${bytes.length} bytes, expected a positive multiple of ${CIFAR10_RECORD_BYTES} ` +
        `(1 label byte + 3072 pixel bytes per record${
          want ? `; ${want * CIFAR10_RECORD_BYTES} bytes for ${want} records` : ""
        }) — truncated or not a CIFAR-10 binary batch`,
    );
  }
  if (want !== undefined && bytes.length !== want * CIFAR10_RECORD_BYTES) {
    throw new Error(
      `${name}: ${bytes.length / CIFAR10_RECORD_BYTES} records, expected ${want} ` +
        `(${want * CIFAR10_RECORD_BYTES} bytes)`,
    );
  }
  return bytes;
}
