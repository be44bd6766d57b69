/**
 * Bad input gets a clear error naming the op, the argument and the offending shapes or values.
 */
import assert from "node:assert/strict";
import {
  add,
  arange,
  avgPool2d,
  broadcastTo,
  concat,
  conv2d,
  crossEntropy,
  full,
  grad,
  matmul,
  matmulTransposed,
  max,
  maximum,
  maxPool2d,
  mean,
  mul,
  ones,
  pow,
  rand,
  randn,
  reshape,
  slice,
  softmax,
  sub,
  sum,
  type Tensor,
  tensor,
  transpose,
  valueAndGrad,
  zeros,
} from "../mod.ts";

const f64 = { dtype: "float64" } as const;

Deno.test("errors: data length must equal the product of the shape", () => {
  assert.throws(() => tensor([1, 2, 3], [2, 2]), /tensor: data has 3 elements but shape \[2, 2\] needs 4/);
  assert.throws(
    () => tensor(new Float32Array(5), [2, 3]),
    /tensor: data has 5 elements but shape \[2, 3\] needs 6/,
  );
  assert.throws(() => tensor([[1, 2], [3, 4]], [3]), /tensor: data has 4 elements but shape \[3\] needs 3/);
  assert.throws(() => tensor(1, [2]), /tensor: data has 1 elements but shape \[2\] needs 2/);
  assert.throws(
    () => tensor([[1, 2], [3]]),
    /tensor: ragged nested array: expected length 2 at depth 1, got 1/,
  );
  assert.throws(
    () => tensor("abc" as never),
    /tensor: data must be a number, an array or a typed array, got string/,
  );
});

Deno.test("errors: negative or fractional dims name the creator, the index and the value", () => {
  assert.throws(
    () => tensor([1, 2, 3, 4], [2, -2]),
    /tensor: shape\[1\] must be a non-negative integer, got -2/,
  );
  assert.throws(
    () => tensor([1, 2, 3, 4], [2, 2.5]),
    /tensor: shape\[1\] must be a non-negative integer, got 2\.5/,
  );
  assert.throws(() => zeros([2, -1]), /full: shape\[1\] must be a non-negative integer, got -1/);
  assert.throws(() => ones([1.5]), /full: shape\[0\] must be a non-negative integer, got 1\.5/);
  assert.throws(() => full([NaN], 0), /full: shape\[0\] must be a non-negative integer, got NaN/);
  assert.throws(() => randn([3, -3]), /randn: shape\[1\] must be a non-negative integer, got -3/);
  assert.throws(() => rand([2.2]), /rand: shape\[0\] must be a non-negative integer, got 2\.2/);
  assert.throws(() => zeros(3 as never), /full: shape must be an array of integers, got 3/);
  assert.throws(
    () => reshape(zeros([6]), [2, -3]),
    /reshape: shape\[1\] must be a non-negative integer, got -3/,
  );
  assert.throws(
    () => reshape(zeros([6]), [2, 1.5]),
    /reshape: shape\[1\] must be a non-negative integer, got 1\.5/,
  );
  assert.throws(() => reshape(zeros([6]), 6 as never), /reshape: shape must be an array of integers, got 6/);
});

Deno.test("errors: other creation arguments", () => {
  for (
    const [f, who] of [
      [() => tensor([1], [1], { dtype: "int32" as never }), "tensor"],
      [() => zeros([2], { dtype: "int32" as never }), "full"],
      [() => full([2], 1, { dtype: "float16" as never }), "full"],
      [() => arange(3, undefined, 1, { dtype: "uint8" as never }), "arange"],
      [() => randn([2], { dtype: "int8" as never }), "randn"],
      [() => rand([2], { dtype: "bf16" as never }), "rand"],
    ] as [() => unknown, string][]
  ) {
    assert.throws(f, new RegExp(`^TypeError: ${who}: dtype must be "float32" or "float64", got "\\w+"`));
  }
  assert.throws(() => arange(0, 1, 0), /arange: .*step non-zero, got 0, 1, 0/);
  assert.throws(() => rand([2], { low: 1, high: 1 }), /rand: high must be > low, got low=1, high=1/);
  assert.throws(
    () => rand([2], { high: Infinity }),
    /rand: low and high must be finite numbers, got low=0, high=Infinity/,
  );
  assert.throws(
    () => randn([2], { std: -1 }),
    /randn: std must be a finite number >= 0 .*got std -1, mean 0/,
  );
  assert.throws(() => randn([2], { mean: NaN }), /randn: .*got std 1, mean NaN/);
  assert.throws(() => zeros([2]).item(), /Tensor\.item: tensor has shape \[2\] \(2 elements\), expected 1/);
});

Deno.test("errors: incompatible broadcast names the op, both shapes and the axis", () => {
  const a = zeros([2, 3]);
  assert.throws(
    () => add(a, zeros([2])),
    /add: shapes \[2, 3\] and \[2\] cannot broadcast \(axis -1: 3 vs 2\)/,
  );
  assert.throws(
    () => sub(zeros([4]), a),
    /sub: shapes \[4\] and \[2, 3\] cannot broadcast \(axis -1: 4 vs 3\)/,
  );
  assert.throws(
    () => mul(zeros([2, 3, 4]), zeros([3, 1, 5])),
    /mul: shapes \[2, 3, 4\] and \[3, 1, 5\] cannot broadcast \(axis -1: 4 vs 5\)/,
  );
  assert.throws(
    () => mul(zeros([2, 3, 4]), zeros([5, 4])),
    /mul: .*\[2, 3, 4\] and \[5, 4\].*axis -2: 3 vs 5/,
  );
  assert.throws(() => pow(a, zeros([4])), /pow: shapes \[2, 3\] and \[4\]/);
  assert.throws(() => maximum(a, zeros([3, 3])), /maximum: shapes \[2, 3\] and \[3, 3\].*axis -2: 2 vs 3/);
  assert.throws(() => broadcastTo(a, [3]), /broadcastTo: cannot broadcast \[2, 3\] to \[3\]/);
  assert.throws(() => broadcastTo(a, [4, 3, 3]), /broadcastTo: .*\[2, 3\] and \[4, 3, 3\].*axis -2: 2 vs 3/);
});

Deno.test("errors: matmul inner dims, ranks and batch dims", () => {
  assert.throws(
    () => matmul(zeros([2, 3]), zeros([2, 3])),
    /matmul: inner dimensions differ: a \[2, 3\] has 3 columns, b \[2, 3\] has 2 rows/,
  );
  assert.throws(
    () => matmul(zeros([5, 2, 4]), zeros([3, 2])),
    /matmul: inner dimensions differ: a \[5, 2, 4\] has 4 columns, b \[3, 2\] has 3 rows/,
  );
  assert.throws(
    () => matmulTransposed(zeros([2, 3]), zeros([2, 4])),
    /matmulTransposed: inner dimensions differ: a \[2, 3\] has 3 columns, b \[2, 4\] has 2 rows/,
  );
  assert.deepEqual(matmulTransposed(zeros([2, 3]), zeros([2, 3]), { transposeB: true }).shape, [2, 2]);
  // Flags change which dims are inner: aᵀ [3, 2] · b [2, 3] is fine, aᵀ · bᵀ is not.
  assert.deepEqual(matmulTransposed(zeros([2, 3]), zeros([2, 3]), { transposeA: true }).shape, [3, 3]);
  assert.throws(
    () => matmulTransposed(zeros([2, 3]), zeros([2, 3]), { transposeA: true, transposeB: true }),
    /matmulTransposed: inner dimensions differ: a \[2, 3\] has 2 columns, b \[2, 3\] has 3 rows/,
  );
  assert.throws(
    () => matmul(zeros([3]), zeros([3, 2])),
    /matmul: both arguments need rank ≥ 2, got a \[3\] and b \[3, 2\]/,
  );
  assert.throws(
    () => matmul(zeros([2, 2, 3]), zeros([3, 3, 2])),
    /matmul \(batch dims\): shapes \[2\] and \[3\] cannot broadcast \(axis -1: 2 vs 3\)/,
  );
});

Deno.test("errors: conv2d channel mismatch and geometry; pooling geometry", () => {
  assert.throws(
    () => conv2d(zeros([1, 3, 5, 5]), zeros([2, 2, 3, 3])),
    /conv2d: channel mismatch: x \[1, 3, 5, 5\] has 3 channels, w \[2, 2, 3, 3\] expects 2/,
  );
  assert.throws(
    () => conv2d(zeros([1, 3, 5]), zeros([2, 3, 3, 3])),
    /conv2d: x must be \[N, C, H, W\], got \[1, 3, 5\]/,
  );
  assert.throws(
    () => conv2d(zeros([1, 3, 5, 5]), zeros([3, 3, 3])),
    /conv2d: w must be \[O, C, kh, kw\], got \[3, 3, 3\]/,
  );
  assert.throws(
    () => conv2d(zeros([1, 3, 2, 2]), zeros([2, 3, 3, 3])),
    /conv2d: kernel \[3, 3\] is larger than the padded input \[2, 2\]/,
  );
  assert.throws(
    () => conv2d(zeros([1, 3, 5, 5]), zeros([2, 3, 3, 3]), { stride: 0 }),
    /conv2d: stride .* got 0/,
  );
  assert.throws(
    () => conv2d(zeros([1, 3, 5, 5]), zeros([2, 3, 3, 3]), { padding: -1 }),
    /conv2d: padding .* got -1/,
  );
  assert.throws(
    () => conv2d(zeros([1, 3, 5, 5]), zeros([2, 3, 3, 3]), { bias: zeros([3]) }),
    /conv2d: bias must be \[2\], got \[3\]/,
  );
  assert.throws(
    () => maxPool2d(zeros([1, 3, 5, 5]), { kernel: 2, padding: 2 }),
    /maxPool2d: padding 2 .*kernel 2/,
  );
  assert.throws(
    () => avgPool2d(zeros([1, 3, 1, 1]), { kernel: 2 }),
    /avgPool2d: kernel \[2, 2\] is larger .*\[1, 3, 1, 1\]/,
  );
  assert.throws(
    () => maxPool2d(zeros([1, 1, 4, 4]), { kernel: 2, stride: [1, 0] }),
    /maxPool2d: stride .* got \[1,0\]/,
  );
  assert.throws(
    () => avgPool2d(zeros([4, 4]), { kernel: 2 }),
    /avgPool2d: x must be \[N, C, H, W\], got \[4, 4\]/,
  );
  assert.throws(() => maxPool2d(zeros([1, 1, 4, 4]), {} as never), /maxPool2d: options.kernel is required/);
});

Deno.test("errors: crossEntropy labels out of range, wrong count, wrong logits rank", () => {
  const logits = zeros([2, 3]);
  assert.throws(
    () => crossEntropy(logits, [0, 3]),
    /crossEntropy: labels\[1\] = 3 is out of range for 3 classes \(expected an integer in \[0, 3\)\)/,
  );
  assert.throws(
    () => crossEntropy(logits, [-1, 0]),
    /crossEntropy: labels\[0\] = -1 is out of range for 3 classes/,
  );
  assert.throws(
    () => crossEntropy(logits, new Int32Array([0, 7])),
    /crossEntropy: labels\[1\] = 7 .* 3 classes/,
  );
  assert.throws(() => crossEntropy(logits, [0, 1.5]), /crossEntropy: labels\[1\] = 1\.5 is out of range/);
  assert.throws(() => crossEntropy(logits, tensor([2, 3])), /crossEntropy: labels\[1\] = 3 is out of range/);
  assert.throws(() => crossEntropy(logits, [0]), /crossEntropy: got 1 labels for 2 rows of logits/);
  assert.throws(() => crossEntropy(zeros([3]), [0]), /crossEntropy: logits must be \[N, C\], got \[3\]/);
  assert.throws(() => crossEntropy(logits, "01" as never), /crossEntropy: labels must be .* got string/);
});

Deno.test("errors: mixing float32 and float64 names the op, the arguments, dtypes and shapes", () => {
  const a = zeros([2, 3]), b = zeros([2, 3], f64);
  assert.throws(
    () => add(a, b),
    /^TypeError: add: cannot mix dtypes: a is float32 \[2, 3\], b is float64 \[2, 3\]/,
  );
  assert.throws(() => mul(b, a), /mul: cannot mix dtypes: a is float64 \[2, 3\], b is float32 \[2, 3\]/);
  assert.throws(
    () => matmul(zeros([2, 2]), zeros([2, 4], f64)),
    /matmul: cannot mix dtypes: a is float32 \[2, 2\], b is float64 \[2, 4\]/,
  );
  assert.throws(
    () => conv2d(zeros([1, 1, 3, 3]), zeros([1, 1, 3, 3], f64)),
    /conv2d: cannot mix dtypes: x is float32 \[1, 1, 3, 3\], w is float64 \[1, 1, 3, 3\]/,
  );
  assert.throws(
    () => conv2d(zeros([1, 1, 3, 3]), zeros([2, 1, 3, 3]), { bias: zeros([2], f64) }),
    /conv2d: cannot mix dtypes: x is float32 \[1, 1, 3, 3\], bias is float64 \[2\]/,
  );
  assert.throws(
    () => concat([zeros([2]), zeros([3]), zeros([2], f64)]),
    /concat: cannot mix dtypes: xs\[0\] is float32 \[2\], xs\[2\] is float64 \[2\]/,
  );
  assert.throws(
    () => maximum(b, zeros([1])),
    /maximum: cannot mix dtypes: a is float64 \[2, 3\], b is float32 \[1\]/,
  );
});

Deno.test("errors: axes, permutations, slices, concat shapes", () => {
  const x = zeros([2, 3]);
  assert.throws(() => sum(x, 2), /sum: axis 2 is out of range for a tensor of rank 2/);
  assert.throws(() => mean(x, -3), /mean: axis -3 is out of range for a tensor of rank 2/);
  assert.throws(() => max(x, 1.5), /max: axis 1\.5 is out of range for a tensor of rank 2/);
  assert.throws(() => max(zeros([0])), /max: cannot reduce axis 0 of size 0 \(shape \[0\]\)/);
  assert.throws(
    () => max(zeros([2, 0, 3]), [0, 1]),
    /max: cannot reduce axis 1 of size 0 \(shape \[2, 0, 3\]\)/,
  );
  assert.throws(() => softmax(x, 2), /softmax: axis 2 is out of range for a tensor of rank 2/);
  assert.throws(() => transpose(x, [0, 0]), /transpose: perm \[0, 0\] is not a permutation of 2 axes/);
  assert.throws(() => transpose(x, [0, 2]), /transpose: axis 2 is out of range for a tensor of rank 2/);
  assert.throws(
    () => reshape(x, [4, 2]),
    /reshape: cannot reshape \[2, 3\] \(6 elements\) to \[4, 2\] \(8\)/,
  );
  assert.throws(() => reshape(x, [4, -1]), /reshape: cannot reshape \[2, 3\] \(6 elements\) to \[4, -1\]/);
  assert.throws(() => reshape(x, [-1, -1]), /reshape: at most one -1 allowed, got \[-1, -1\]/);
  assert.throws(() => slice(x, [0, 0, 0]), /slice: begin has 3 entries but the tensor has rank 2/);
  assert.throws(() => slice(x, [0, 0], [2, 2], [0, 1]), /slice: step\[0\] must be a positive integer, got 0/);
  assert.throws(
    () => slice(x, [0, 0], [2, 2], [1, -1]),
    /slice: step\[1\] must be a positive integer, got -1/,
  );
  assert.throws(() => slice(x, [0.5]), /slice: begin\/end must be integers, got begin\[0\]=0\.5/);
  assert.throws(() => slice(x, 1 as never), /slice: begin must be an array of integers, got 1/);
  assert.throws(
    () => concat([zeros([2, 2]), zeros([3, 3])], 0),
    /concat: xs\[1\] has shape \[3, 3\], incompatible with xs\[0\] \[2, 2\] along axis 0/,
  );
  assert.throws(() => concat([zeros([2, 2]), zeros([2])], 0), /concat: xs\[1\] has shape \[2\]/);
  assert.throws(() => concat([]), /concat: needs a non-empty array of tensors/);
  assert.throws(() => concat(x as never), /concat: xs must be an array of tensors/);
});

Deno.test("errors: a non-tensor argument names the op and the argument", () => {
  const x = zeros([2]);
  assert.throws(
    () => add(x, undefined as never),
    /^TypeError: add: argument b must be a Tensor, got undefined/,
  );
  assert.throws(
    () => add(1, undefined as never),
    /^TypeError: add: argument b must be a Tensor, got undefined/,
  );
  assert.throws(() => mul(1, 2 as never), /mul: at least one argument must be a Tensor, got two numbers/);
  assert.throws(() => matmul(zeros([2, 2]), "a" as never), /matmul: argument b must be a Tensor, got string/);
  assert.throws(() => sum(null as never), /sum: argument x must be a Tensor, got null/);
  assert.throws(() => mean(undefined as never), /mean: argument x must be a Tensor, got undefined/);
  assert.throws(() => reshape([1, 2] as never, [2]), /reshape: argument x must be a Tensor, got object/);
  assert.throws(() => concat([x, 3 as never]), /concat: argument xs\[1\] must be a Tensor, got number/);
});

Deno.test("errors: valueAndGrad and grad", () => {
  const x = zeros([2, 3]);
  assert.throws(
    () => valueAndGrad((p: Tensor) => p)(x),
    /valueAndGrad: the function must return a scalar \(one element\), got shape \[2, 3\]/,
  );
  assert.throws(
    () => grad((p: Tensor) => mul(p, 2))(x),
    /grad: the function must return a scalar .*got shape \[2, 3\]/,
  );
  assert.throws(
    () => valueAndGrad((_p: Tensor) => 3 as never)(x),
    /valueAndGrad: the function must return a scalar Tensor, got number/,
  );
  assert.throws(
    () => valueAndGrad((p: { a: Tensor }) => sum(p.a))({ a: x, b: 3 } as never),
    /valueAndGrad: leaf at path "b" must be a Tensor/,
  );
  assert.throws(
    () => valueAndGrad((p: Tensor[]) => sum(p[0]))([x, [x, null]] as never),
    /valueAndGrad: leaf at path "1\.1" must be a Tensor.*got null/,
  );
  assert.throws(() => valueAndGrad(3 as never), /valueAndGrad: f must be a function, got number/);
  assert.throws(() => grad("f" as never), /grad: f must be a function, got string/);
});
