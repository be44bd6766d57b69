/**
 * The fused ReLU gradient (`Backend.reluGrad`): on the CPU, the same bits as the two passes it
 * replaces (`mul(g, step(x))`), NaN, ±0, ±Infinity and subnormals included, in both dtypes and on
 * pooled (recycled, not zeroed) output arrays; through autodiff, `relu`'s gradient; on WebGPU (when
 * an adapter exists), the CPU's values.
 */
import assert from "node:assert/strict";
import { type Backend, getBackend } from "../src/backend.ts";
import "../src/cpu/backend.ts";
import type { DType, Tensor, TypedArray } from "../src/tensor.ts";
import { mul, relu } from "../src/ops/elementwise.ts";
import { valueAndGrad } from "../src/autodiff.ts";
import { dispose, sum, tensor } from "../mod.ts";
import { POOL_MIN_ELEMENTS } from "../src/cpu/storage_pool.ts";
import { testRng } from "../src/webgpu/testing.ts";
import { webgpuSuite } from "./_webgpu.ts";

const cpu: Backend = getBackend("cpu");

/** Values whose products with 0 and 1 differ in sign, NaN-ness or rounding. */
const SPECIAL = [NaN, -NaN, 0, -0, 1, -1, 2.5, -3.75, Infinity, -Infinity, 1e-45, -1e-45, 3.4e38, -3.4e38];

/** Every (x, g) pair of SPECIAL, then `extra` random pairs: x and g of one length. */
function operands(extra: number, seed: number): { x: number[]; g: number[] } {
  const rng = testRng(seed);
  const x: number[] = [], g: number[] = [];
  for (const a of SPECIAL) for (const b of SPECIAL) x.push(a), g.push(b);
  for (let i = 0; i < extra; i++) x.push(rng() * 2 - 1), g.push((rng() * 2 - 1) * 1e3);
  return { x, g };
}

/** The bit patterns of `a` (each NaN as itself: the two paths must agree on its sign and payload too). */
function bits(a: TypedArray): number[] {
  if (a instanceof Float32Array) return Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
  const u = new Uint32Array(a.buffer, a.byteOffset, 2 * a.length);
  return Array.from(u);
}

function assertSameBits(who: string, got: TypedArray, want: TypedArray): void {
  assert.equal(got.length, want.length, `${who}: length`);
  const g = bits(got), w = bits(want);
  for (let i = 0; i < g.length; i++) {
    if (g[i] !== w[i]) {
      const e = got instanceof Float32Array ? i : i >> 1;
      assert.fail(`${who}: element ${e}: got ${got[e]} (bits ${g[i]}), want ${want[e]} (bits ${w[i]})`);
    }
  }
}

async function fusedAndComposed(x: Tensor, g: Tensor): Promise<[TypedArray, TypedArray]> {
  const fused = cpu.reluGrad(x, g);
  const mask = cpu.unary("step", x);
  const composed = cpu.binary("mul", g, mask, g.shape);
  const r: [TypedArray, TypedArray] = [await fused.data(), await composed.data()];
  dispose([fused, mask, composed]);
  return r;
}

for (const dtype of ["float32", "float64"] as DType[]) {
  Deno.test(`cpu reluGrad (${dtype}): the bits of mul(g, step(x)) on special values and random ones`, async () => {
    const { x, g } = operands(1000, 7);
    const xt = tensor(x, [x.length], { dtype }), gt = tensor(g, [g.length], { dtype });
    const [fused, composed] = await fusedAndComposed(xt, gt);
    assertSameBits(`reluGrad ${dtype}`, fused, composed);
    // the contract spelled out on a few cases: g where x > 0, else ±0 (g's sign) or NaN
    const idx = (v: number) => SPECIAL.findIndex((s) => Object.is(s, v));
    const at = (xv: number, gv: number) => fused[idx(xv) * SPECIAL.length + idx(gv)];
    assert.ok(Object.is(at(1, -3.75), -3.75));
    assert.ok(Object.is(at(-1, -3.75), -0));
    assert.ok(Object.is(at(0, 2.5), 0));
    assert.ok(Object.is(at(NaN, 2.5), 0), "a NaN x masks (step(NaN) = 0)");
    assert.ok(Number.isNaN(at(-1, Infinity)), "Infinity·0 is NaN");
    assert.ok(Number.isNaN(at(1, NaN)));
    dispose([xt, gt]);
  });
}

Deno.test("cpu reluGrad: a pooled output array (old values, not zeroed) is overwritten everywhere", async () => {
  const n = 2 * POOL_MIN_ELEMENTS + 3;
  const rng = testRng(3);
  const x = new Float32Array(n), g = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = rng() - 0.5, g[i] = rng() * 4 - 2;
  const xt = tensor(x, [n]), gt = tensor(g, [n]);
  for (let round = 0; round < 3; round++) {
    // an array of the output's length full of garbage, returned to the pool before each call
    const junk = cpu.fill([n], 12345, "float32");
    dispose(junk);
    const [fused, composed] = await fusedAndComposed(xt, gt);
    assertSameBits(`round ${round}`, fused, composed);
  }
  dispose([xt, gt]);
});

Deno.test("relu: the gradient through autodiff is g·step(x), NaN and −0 included", async () => {
  const { x, g } = operands(200, 11);
  const xt = tensor(x), w = tensor(g);
  // d/dx Σ relu(x)·w = w · step(x)
  const f = (p: { x: Tensor }) => sum(mul(relu(p.x), w));
  const { value, grads } = valueAndGrad(f)({ x: xt });
  const mask = cpu.unary("step", xt);
  const want = cpu.binary("mul", w, mask, w.shape);
  assertSameBits("grad", await grads.x.data(), await want.data());
  dispose([value, grads.x, mask, want, xt, w]);
});

Deno.test("relu: the gradient of a scalar relu (the backward pass's seed) is step(x)", () => {
  const f = (p: { x: Tensor }) => relu(p.x);
  for (const [v, want] of [[2, 1], [-2, 0], [0, 0]]) {
    const { value, grads } = valueAndGrad(f)({ x: tensor(v) });
    assert.equal(grads.x.item(), want, `x = ${v}`);
    dispose([value, grads.x]);
  }
});

const { gpu, ignore } = await webgpuSuite("cpu_elementwise_test", "webgpu reluGrad");
Deno.test({
  name: "webgpu reluGrad: the CPU's values (finite operands, ±0 included)",
  ignore,
  fn: async () => {
    const G = gpu as Backend;
    const rng = testRng(5);
    const n = 1000;
    const x = Float32Array.from({ length: n }, (_, i) => (i % 7 === 0 ? 0 : rng() * 2 - 1));
    const g = Float32Array.from({ length: n }, () => rng() * 2 - 1);
    const [xc, gc] = [cpu.fromArray(x, [10, 100], "float32"), cpu.fromArray(g, [10, 100], "float32")];
    const [xg, gg] = [G.fromArray(x, [10, 100], "float32"), G.fromArray(g, [10, 100], "float32")];
    const want = await cpu.reluGrad(xc, gc).data();
    const got = await G.read(G.reluGrad(xg, gg));
    for (let i = 0; i < n; i++) {
      assert.ok(Math.abs(got[i] - want[i]) === 0, `element ${i}: ${got[i]} vs ${want[i]}`);
    }
  },
});

for (const dtype of ["float32", "float64"] as DType[]) {
  Deno.test(`cpu axpby (${dtype}): the bits of add(mul(x, a), mul(y, b)), special values included`, async () => {
    const { x, g: y } = operands(500, 11);
    const [xt, yt] = [
      cpu.fromArray(Float64Array.from(x), [x.length], dtype),
      cpu.fromArray(Float64Array.from(y), [y.length], dtype),
    ];
    for (const [a, b] of [[0.9, 0.1], [1 - 0.1, (0.1 * 256) / 255], [0, 1], [-2.5, 1e-30]]) {
      const fused = cpu.axpby(a, xt, b, yt);
      const sa = cpu.fill([], a, dtype), sb = cpu.fill([], b, dtype);
      const composed = cpu.binary(
        "add",
        cpu.binary("mul", xt, sa, xt.shape),
        cpu.binary("mul", yt, sb, yt.shape),
        xt.shape,
      );
      // The same bits, except a NaN's sign and payload (JavaScript does not fix them for float64).
      const [f, c] = [await fused.data(), await composed.data()];
      for (let i = 0; i < c.length; i++) if (Number.isNaN(c[i]) && Number.isNaN(f[i])) f[i] = c[i];
      assertSameBits(`axpby(${a}, x, ${b}, y)`, f, c);
    }
  });
}

Deno.test({
  name: "webgpu reluGrad and axpby: the CPU's values, NaN, ±Infinity and ±0 included",
  ignore,
  fn: async () => {
    const G = gpu as Backend;
    const { x, g } = operands(300, 12);
    const n = x.length;
    const [xc, gc] = [
      cpu.fromArray(Float32Array.from(x), [n], "float32"),
      cpu.fromArray(Float32Array.from(g), [n], "float32"),
    ];
    const [xg, gg] = [
      G.fromArray(Float32Array.from(x), [n], "float32"),
      G.fromArray(Float32Array.from(g), [n], "float32"),
    ];
    const same = (who: string, got: ArrayLike<number>, want: ArrayLike<number>, rel: number) => {
      for (let i = 0; i < n; i++) {
        const ok = Object.is(got[i], want[i]) || (Number.isNaN(got[i]) && Number.isNaN(want[i])) ||
          Math.abs(got[i] - want[i]) <= rel * Math.abs(want[i]);
        if (!ok) assert.fail(`${who} element ${i} (x ${x[i]}, g ${g[i]}): gpu ${got[i]}, cpu ${want[i]}`);
      }
    };
    same("reluGrad", await G.read(G.reluGrad(xg, gg)), await cpu.reluGrad(xc, gc).data() as Float32Array, 0);
    // A driver may contract a·x + b·y into one fma: an ulp or so apart (relative 2^-23).
    same(
      "axpby",
      await G.read(G.axpby(0.9, xg, 0.1, gg)),
      await cpu.axpby(0.9, xc, 0.1, gc).data() as Float32Array,
      2.4e-7,
    );
    // Operands of different sizes: an error naming both (the kernel would read past the shorter one).
    const short = G.fromArray(Float32Array.of(1, 2), [2], "float32");
    assert.throws(() => G.axpby(1, xg, 1, short), /axpby: x \[\d+\] and y \[2\] must have the same number/);
    assert.throws(() => G.reluGrad(short, gg), /reluGrad: x \[2\] and g \[\d+\] must have the same number/);
  },
});

Deno.test("cpu axpby: operands of different sizes are an error naming both", () => {
  const x = cpu.fromArray(Float32Array.of(1, 2, 3), [3], "float32");
  const y = cpu.fromArray(Float32Array.of(1, 2), [2], "float32");
  assert.throws(
    () => cpu.axpby(1, x, 1, y),
    /axpby: x \[3\] float32 and y \[2\] float32 must have the same size/,
  );
});
