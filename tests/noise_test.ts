// The noise paths of src/random/noise.ts — WebAssembly SIMD and plain JavaScript (noise_js.ts) —
// against the definition (philox4x32 + transformBlock of fixed_point.ts, the arithmetic the WGSL twin
// copies) and each other: whole streams at any offset and length, float32 and float64 outputs,
// every 24-bit lane value.
import assert from "node:assert/strict";
import {
  type CpuNoiseImpl,
  fillNoise,
  getNoiseImpl,
  noiseWasmAvailable,
  setNoiseImpl,
  transformBlocks,
} from "../src/random/noise.ts";
import { transformBlock } from "../src/random/fixed_point.ts";
import { NOISE_LAWS, type NoiseLaw, type StreamKey } from "../src/random/laws.ts";
import { philox4x32 } from "../src/random/philox.ts";

const HAS_WASM = noiseWasmAvailable();
const IMPLS: ("wasm" | "js")[] = HAS_WASM ? ["wasm", "js"] : ["js"];

/** Runs `fn` with fillNoise forced onto `impl`, restoring the default afterwards. */
function withImpl<T>(impl: CpuNoiseImpl, fn: () => T): T {
  setNoiseImpl(impl);
  try {
    return fn();
  } finally {
    setNoiseImpl("auto");
  }
}

/** The definition: element start + j from Philox block ⌊i/4⌋ (counter wrapping mod 2^32), lane i mod 4. */
function reference(n: number, law: NoiseLaw, scale: number, key: StreamKey, start: number): Float64Array {
  const out = new Float64Array(n), block = new Uint32Array(4), vals = new Float64Array(4);
  for (let j = 0; j < n;) {
    const i = start + j, b = Math.floor(i / 4);
    philox4x32(key.k0, key.k1, b, key.c1, key.c2, 0, block);
    transformBlock(block, law, scale, vals);
    for (let lane = i - 4 * b; lane < 4 && j < n; lane++, j++) out[j] = vals[lane];
  }
  return out;
}

/** Index of the first element whose bits differ (−0 ≠ +0), or −1. */
function firstDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return i;
  return -1;
}

function assertSame(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  const i = firstDiff(got, want);
  assert.equal(i, -1, `${what}: element ${i} is ${got[i]}, want ${want[i]}`);
}

const KEYS: StreamKey[] = [
  { k0: 0, k1: 0, c1: 0, c2: 0 },
  { k0: 42, k1: 0xdeadbeef, c1: 7, c2: 3 },
  { k0: 0xffffffff, k1: 123456789, c1: 0xfffffffe, c2: 1 },
];

Deno.test("noise: the WebAssembly path is available here (Deno has WebAssembly SIMD)", () => {
  assert.ok(HAS_WASM, "noiseWasmAvailable() is false: the tests below only cover the JavaScript path");
  assert.equal(getNoiseImpl(), "wasm");
  assert.equal(withImpl("js", () => getNoiseImpl()), "js");
  assert.throws(
    () => setNoiseImpl("gpu" as CpuNoiseImpl),
    /setNoiseImpl: impl must be "auto", "wasm" or "js", got "gpu"/,
  );
});

Deno.test("noise: fillNoise equals philox4x32 + transformBlock at any offset and length, both paths, float32 and float64", () => {
  // odd lengths, offsets inside a block, spans across the WebAssembly path's 16384-element batches,
  // and block counters that wrap past 2^32
  const cases: [number, number][] = [
    [0, 1],
    [0, 3],
    [1, 1],
    [2, 5],
    [3, 4],
    [5, 37],
    [0, 1000],
    [1001, 999],
    [7, 16384],
    [16383, 3],
    [3, 40001],
    [4 * 0xfffffff0 - 7, 4099],
    [2 ** 40 + 2, 777],
  ];
  for (const impl of IMPLS) {
    withImpl(impl, () => {
      for (const law of NOISE_LAWS) {
        for (const [c, [start, n]] of cases.entries()) {
          const key = KEYS[c % KEYS.length], scale = [0.05, 1, 3e-5, 0.7][c % 4];
          const want = reference(n, law, scale, key, start);
          const f32 = new Float32Array(n), f64 = new Float64Array(n);
          fillNoise(f32, law, scale, key, start);
          fillNoise(f64, law, scale, key, start);
          assertSame(f64, want, `${impl} ${law} float64 start ${start} n ${n}`);
          assertSame(f32, want, `${impl} ${law} float32 start ${start} n ${n}`);
        }
      }
    });
  }
});

Deno.test("noise: the WebAssembly and JavaScript paths agree on long streams (2^18 draws per law and key)", () => {
  if (!HAS_WASM) return;
  const n = 1 << 18;
  for (const law of NOISE_LAWS) {
    for (const [k, key] of KEYS.entries()) {
      const w = new Float32Array(n), j = new Float32Array(n);
      withImpl("wasm", () => fillNoise(w, law, 0.01, key, 5 * k));
      withImpl("js", () => fillNoise(j, law, 0.01, key, 5 * k));
      assertSame(w, j, `${law} key ${k}`);
    }
  }
});

Deno.test("noise: a stream split into slices at arbitrary offsets is the whole stream", () => {
  for (const impl of IMPLS) {
    withImpl(impl, () => {
      for (const law of NOISE_LAWS) {
        const key = KEYS[1], n = 30011;
        const whole = new Float64Array(n);
        fillNoise(whole, law, 0.3, key);
        const parts = new Float64Array(n);
        for (const [lo, hi] of [[0, 1], [1, 6], [6, 2049], [2049, 2050], [2050, 18435], [18435, n]]) {
          fillNoise(parts.subarray(lo, hi), law, 0.3, key, lo);
        }
        assertSame(parts, whole, `${impl} ${law}`);
      }
    });
  }
});

Deno.test("noise: scale edge cases (0, −0, negative, tiny) give the same bits on both paths", () => {
  if (!HAS_WASM) return;
  for (const law of NOISE_LAWS) {
    for (const scale of [0, -0, -0.05, 1e-30, 1e30]) {
      const want = reference(101, law, scale, KEYS[2], 9);
      for (const impl of IMPLS) {
        const got = new Float32Array(101);
        withImpl(impl, () => fillNoise(got, law, scale, KEYS[2], 9));
        assertSame(got, Float32Array.from(want), `${impl} ${law} scale ${scale}`);
      }
    }
  }
});

Deno.test("noise: an unknown law is a clear error on every entry point", () => {
  const bad = "cauchy" as NoiseLaw;
  assert.throws(
    () => fillNoise(new Float32Array(4), bad, 1, KEYS[0]),
    /fillNoise: law must be one of gaussian, laplace, uniform, got "cauchy"/,
  );
  assert.throws(
    () => transformBlocks(new Uint32Array(4), bad, 1, new Float32Array(4)),
    /transformBlocks: law must be one of gaussian, laplace, uniform, got "cauchy"/,
  );
  assert.throws(
    () => transformBlocks(new Uint32Array(6), "uniform", 1, new Float32Array(6)),
    /transformBlocks: words.length must be a multiple of 4/,
  );
});

/** The 24-bit lane values worth a direct check: a stride through all of them plus branch edges. */
function edgeLaneValues(): number[] {
  const ms = new Set<number>();
  for (let m = 0; m < 1 << 24; m += 61) ms.add(m);
  for (let k = 0; k <= 24; k++) for (let d = -3; d <= 3; d++) ms.add((1 << k) + d); // log reduction
  for (let k = 19; k <= 24; k++) for (let d = -3; d <= 3; d++) ms.add(63 * (1 << (k - 6)) + d); // j = 31
  for (let q = 0; q <= 8; q++) for (let d = -3; d <= 3; d++) ms.add(q * (1 << 21) + d); // octants
  for (let m = (1 << 24) - 40000; m < 1 << 24; m++) ms.add(m);
  return [...ms].filter((m) => m >= 0 && m < 1 << 24);
}

Deno.test("noise: both paths' transforms equal transformBlock on edge and sampled lane values", () => {
  const ms = edgeLaneValues();
  const words = new Uint32Array(4 * ms.length);
  ms.forEach((m, i) => {
    const x = ((m << 8) | (m & 0xff)) >>> 0;
    words.set([x, x, (~x) >>> 0, (x ^ 0x00aaaa00) >>> 0], 4 * i); // each value as radius and angle
  });
  const want = new Float64Array(words.length), vals = new Float64Array(4);
  for (const law of NOISE_LAWS) {
    for (const scale of [0.05, 1]) {
      for (let b = 0; b < words.length; b += 4) {
        transformBlock(words.subarray(b, b + 4), law, scale, vals);
        want.set(vals, b);
      }
      for (const impl of IMPLS) {
        const got = new Float64Array(words.length);
        transformBlocks(words, law, scale, got, impl);
        assertSame(got, want, `${impl} ${law} scale ${scale}`);
      }
    }
  }
});

Deno.test("noise: both paths' transforms equal transformBlock on every 24-bit lane value, in every role", () => {
  // word i carries m = (g · 0x9e3779b1) mod 2^24 with g = i or i ^ 1: a bijection per pass, and the
  // two passes swap the radius (even) and angle (odd) lanes of the Box–Muller pairs
  const N = 1 << 24, B = 1 << 20;
  const words = new Uint32Array(B), want = new Float32Array(B), got = new Float32Array(B);
  const vals = new Float64Array(4);
  for (const law of NOISE_LAWS) {
    for (const pass of law === "gaussian" ? [0, 1] : [0]) {
      for (let base = 0; base < N; base += B) {
        for (let i = 0; i < B; i++) {
          const g = (base + i) ^ pass;
          words[i] = (((Math.imul(g, 0x9e3779b1) & 0xffffff) << 8) | (g & 0xff)) >>> 0;
        }
        for (let b = 0; b < B; b += 4) {
          transformBlock(words.subarray(b, b + 4), law, 0.05, vals);
          want.set(vals, b);
        }
        for (const impl of IMPLS) {
          transformBlocks(words, law, 0.05, got, impl);
          assertSame(got, want, `${impl} ${law} pass ${pass} words ${base}..${base + B}`);
        }
      }
    }
  }
});
