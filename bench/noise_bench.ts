// The cost of the optimizers' noise on the CPU, per law and per path (WebAssembly SIMD, plain
// JavaScript), in ns per element, with its parts: Philox alone (fillNoise minus the transform of
// given blocks) and the transform alone (transformBlocks on given blocks).
//
//   deno bench bench/noise_bench.ts              Deno's harness (2^20 draws per call)
//   deno run bench/noise_bench.ts [--rounds 21]  interleaved rounds, medians in ns/element
import {
  fillNoise,
  NOISE_LAWS,
  noiseWasmAvailable,
  setNoiseImpl,
  transformBlocks,
} from "../src/random/noise.ts";
import { philox4x32 } from "../src/random/philox.ts";

const N = 1 << 20;
const KEY = { k0: 7, k1: 0x5eed, c1: 3, c2: 0 };
const out = new Float32Array(N);
const words = new Uint32Array(N);
{
  const b = new Uint32Array(4);
  for (let i = 0; i < N; i += 4) {
    philox4x32(KEY.k0, KEY.k1, i / 4, KEY.c1, KEY.c2, 0, b);
    words.set(b, i);
  }
}
const impls = noiseWasmAvailable() ? ["wasm", "js"] as const : ["js"] as const;

type Case = { name: string; run: () => void };
const cases: Case[] = [];
for (const impl of impls) {
  for (const law of NOISE_LAWS) {
    cases.push({
      name: `${impl} fillNoise ${law}`,
      run: () => {
        setNoiseImpl(impl);
        fillNoise(out, law, 0.01, KEY);
      },
    });
    cases.push({ name: `${impl} transform ${law}`, run: () => transformBlocks(words, law, 0.01, out, impl) });
  }
}
const src = new Float32Array(N).map((_, i) => Math.sin(i)), dst = new Float32Array(N);
cases.push({ name: "copy loop (read + write)", run: () => dst.set(src) });
cases.push({
  name: "sgd loop u = -lr*g",
  run: () => {
    for (let i = 0; i < N; i++) dst[i] = -0.01 * src[i];
  },
});

if (!import.meta.main) {
  for (const c of cases) Deno.bench({ name: `${c.name} (2^20)`, fn: c.run });
} else {
  const i = Deno.args.indexOf("--rounds");
  const rounds = i >= 0 ? Number(Deno.args[i + 1]) : 21;
  const times = cases.map(() => [] as number[]);
  for (const c of cases) c.run(); // warm-up (and tier-up of the WebAssembly functions)
  for (let r = 0; r < rounds; r++) {
    cases.forEach((c, k) => {
      const t = performance.now();
      c.run();
      times[k].push(performance.now() - t);
    });
  }
  setNoiseImpl("auto");
  const median = (a: number[]) => a.slice().sort((x, y) => x - y)[a.length >> 1];
  const ns = (k: number) => (median(times[k]) * 1e6) / N;
  console.log(`ns per element, medians over ${rounds} interleaved rounds of 2^20 draws`);
  console.log("path  law        fillNoise  transform  philox (= fill − transform)");
  for (const impl of impls) {
    for (const law of NOISE_LAWS) {
      const f = cases.findIndex((c) => c.name === `${impl} fillNoise ${law}`);
      const t = cases.findIndex((c) => c.name === `${impl} transform ${law}`);
      console.log(
        `${impl.padEnd(5)} ${law.padEnd(9)} ${ns(f).toFixed(2).padStart(9)} ${
          ns(t).toFixed(2).padStart(10)
        } ${(ns(f) - ns(t)).toFixed(2).padStart(10)}`,
      );
    }
  }
  for (const name of ["copy loop (read + write)", "sgd loop u = -lr*g"]) {
    console.log(`${name.padEnd(26)} ${ns(cases.findIndex((c) => c.name === name)).toFixed(2)}`);
  }
}
