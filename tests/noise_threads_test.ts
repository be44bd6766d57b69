// The multi-threaded and streaming noise paths of src/random/noise.ts (streamNoise, the worker pool
// of noise_threads.ts) against the single-threaded fillNoise: the same bits for any thread count,
// length, offset, law and output dtype; every element handed over exactly once; failures in a
// consumer leave the pool usable; nested streams; a script using the workers still exits by itself.
import assert from "node:assert/strict";
import { denoEval } from "./_examples.ts";
import {
  fillNoise,
  getNoiseThreads,
  NOISE_LAWS,
  NOISE_THREAD_MIN,
  type NoiseLaw,
  noiseThreadStats,
  noiseWasmAvailable,
  setNoiseImpl,
  setNoiseThreads,
  type StreamKey,
  streamNoise,
} from "../src/random/noise.ts";
import { threadSupport } from "../kernels/wasm/noise_threads.ts";

const THREADS_OK = noiseWasmAvailable() && threadSupport().ok;

/** Runs `fn` with `threads` noise threads (and optionally the JS path), restoring the defaults. */
function withThreads<T>(threads: number | "auto", fn: () => T, impl: "auto" | "js" = "auto"): T {
  setNoiseThreads(threads);
  setNoiseImpl(impl);
  try {
    return fn();
  } finally {
    setNoiseThreads("auto");
    setNoiseImpl("auto");
  }
}

/** The single-threaded reference: fillNoise on the calling thread. */
function reference(n: number, law: NoiseLaw, scale: number, key: StreamKey, start: number): Float32Array {
  return withThreads(1, () => {
    const out = new Float32Array(n);
    fillNoise(out, law, scale, key, start);
    return out;
  });
}

/** streamNoise collected into an array, checking that every element arrives exactly once. */
function collect(n: number, law: NoiseLaw, scale: number, key: StreamKey, start: number): Float32Array {
  const out = new Float32Array(n), seen = new Uint8Array(n);
  streamNoise(n, law, scale, key, start, (lo, hi, draws, off) => {
    assert.ok(0 <= lo && lo < hi && hi <= n, `chunk [${lo}, ${hi}) of ${n}`);
    for (let i = lo; i < hi; i++) {
      assert.equal(seen[i], 0, `element ${i} handed over twice`);
      seen[i] = 1;
      out[i] = draws[off + i];
    }
  });
  assert.equal(seen.indexOf(0), -1, "an element was never handed over");
  return out;
}

function assertSame(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < got.length; i++) {
    if (!Object.is(got[i], want[i])) assert.fail(`${what}: element ${i} is ${got[i]}, want ${want[i]}`);
  }
}

/** A small deterministic generator for the random cases. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Lengths and offsets: tiny, odd, unaligned, across chunk and round boundaries, past 2^32 blocks. */
function cases(): [number, number][] {
  const r = rng(7);
  const out: [number, number][] = [
    [1, 0],
    [3, 1],
    [5, 2],
    [37, 3],
    [4097, 5],
    [8193, 0],
    [NOISE_THREAD_MIN - 1, 1],
    [NOISE_THREAD_MIN + 3, 2],
    [200_003, 3],
    [(1 << 19) + 5, 1], // more than one threaded round (2^17 blocks)
    [9001, 4 * 0xfffffff0 - 7], // block counters wrap past 2^32
    [777, 2 ** 40 + 2],
  ];
  for (let i = 0; i < 6; i++) out.push([1 + Math.floor(r() * 90_000), Math.floor(r() * 1e6)]);
  return out;
}

const KEY: StreamKey = { k0: 42, k1: 0xdeadbeef, c1: 7, c2: 3 };

/** Draws threaded streams until a worker has drawn a chunk (workers start asynchronously). */
async function assertWorkersJoin(): Promise<void> {
  const before = noiseThreadStats().workerChunks;
  const t0 = Date.now();
  while (noiseThreadStats().workerChunks === before && Date.now() - t0 < 10_000) {
    collect(1 << 17, "gaussian", 0.1, KEY, 0);
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.ok(noiseThreadStats().workers >= 1, "no worker started");
  assert.ok(noiseThreadStats().workerChunks > before, "workers never drew a chunk");
}

Deno.test({
  name: "noise threads: workers start and draw chunks (2 and 3 participants)",
  ignore: !THREADS_OK,
  fn: async () => {
    for (const t of [2, 3]) {
      setNoiseThreads(t);
      try {
        assert.equal(getNoiseThreads(), t);
        await assertWorkersJoin();
        assert.equal(noiseThreadStats().workers, t - 1);
      } finally {
        setNoiseThreads("auto");
      }
    }
  },
});

Deno.test({
  name:
    "noise threads: streamNoise and fillNoise equal the single-threaded fillNoise bit for bit (any threads, law, length, offset, dtype)",
  ignore: !noiseWasmAvailable(),
  fn: async () => {
    if (THREADS_OK) {
      setNoiseThreads(2);
      await assertWorkersJoin(); // so that the workers really take part below
    }
    for (const law of NOISE_LAWS) {
      for (const [c, [n, start]] of cases().entries()) {
        const scale = [0.05, 1, 3e-5][c % 3];
        const want = reference(n, law, scale, KEY, start);
        for (const threads of [1, 2, 3, "auto"] as const) {
          withThreads(threads, () => {
            const what = `${law} n ${n} start ${start} threads ${threads}`;
            assertSame(collect(n, law, scale, KEY, start), want, `streamNoise ${what}`);
            const f32 = new Float32Array(n), f64 = new Float64Array(n);
            fillNoise(f32, law, scale, KEY, start);
            fillNoise(f64, law, scale, KEY, start);
            assertSame(f32, want, `fillNoise float32 ${what}`);
            assertSame(f64, want, `fillNoise float64 ${what}`);
          });
        }
        if (c % 4 === 0) {
          assertSame(
            withThreads(1, () => collect(n, law, scale, KEY, start), "js"),
            want,
            `js ${law} n ${n}`,
          );
        }
      }
    }
  },
});

Deno.test({
  name: "noise threads: a throwing consumer leaves the pool usable; nested streams get the right numbers",
  ignore: !noiseWasmAvailable(),
  fn: () => {
    for (const threads of [1, 2] as const) {
      withThreads(threads, () => {
        const n = 100_001, want = reference(n, "laplace", 0.2, KEY, 1);
        let calls = 0;
        assert.throws(
          () =>
            streamNoise(n, "laplace", 0.2, KEY, 1, () => {
              if (++calls === 3) throw new Error("consumer failed");
            }),
          /consumer failed/,
        );
        assertSame(collect(n, "laplace", 0.2, KEY, 1), want, `after a failure, threads ${threads}`);
        // a stream inside a consumer (it must not reuse the buffers being read)
        const inner = reference(999, "uniform", 1, { ...KEY, c1: 8 }, 5);
        const out = new Float32Array(n);
        streamNoise(n, "laplace", 0.2, KEY, 1, (lo, hi, draws, off) => {
          if (lo === 0) assertSame(collect(999, "uniform", 1, { ...KEY, c1: 8 }, 5), inner, "nested stream");
          for (let i = lo; i < hi; i++) out[i] = draws[off + i];
        });
        assertSame(out, want, `outer stream around a nested one, threads ${threads}`);
      });
    }
  },
});

Deno.test("noise threads: setNoiseThreads validates its argument; zero-length streams call nothing", () => {
  for (const bad of [0, -1, 1.5, 65, NaN, "2"]) {
    assert.throws(
      () => setNoiseThreads(bad as number),
      /setNoiseThreads: threads must be "auto" or an integer in \[1, 64\], got/,
    );
  }
  streamNoise(0, "gaussian", 1, KEY, 0, () => assert.fail("called for an empty stream"));
  assert.throws(
    () => streamNoise(4, "cauchy" as NoiseLaw, 1, KEY, 0, () => {}),
    /streamNoise: law must be one of gaussian, laplace, uniform, got "cauchy"/,
  );
});

Deno.test({
  name: "noise threads: a script using the noise workers exits by itself",
  ignore: !THREADS_OK || Deno.permissions.querySync({ name: "run" }).state !== "granted",
  fn: async () => {
    const url = new URL("../src/random/noise.ts", import.meta.url).href;
    const code = `import { fillNoise, noiseThreadStats, setNoiseThreads } from "${url}";
      setNoiseThreads(2);
      const a = new Float32Array(1 << 18);
      for (let i = 0; i < 20; i++) fillNoise(a, "gaussian", 1, { k0: 1, k1: 2, c1: i, c2: 0 });
      await new Promise((r) => setTimeout(r, 300));
      fillNoise(a, "gaussian", 1, { k0: 1, k1: 2, c1: 0, c2: 0 });
      console.log(noiseThreadStats().workers);`;
    const out = await denoEval(code);
    assert.equal(out.code, 0, `exit code ${out.code}: ${out.stderr}`);
    assert.equal(out.stdout.trim(), "1");
  },
});
