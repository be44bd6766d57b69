/**
 * Shared helpers of the WebGPU benches: the backend (or a skip notice without an adapter), a
 * calibrated "encode R times, then wait once" timing loop (every GPU wait costs ~10 ms in Deno, so
 * each timed iteration holds ~200 ms of GPU work), and a throughput table printed when the run
 * ends. Not a bench file itself (no `_bench` suffix).
 */
import { initWebGPUBackend, NoWebGPUError, type WebGPUBackend } from "../src/webgpu/mod.ts";

/** The WebGPU backend, or null (with a notice) when no adapter exists. */
export async function benchGpu(file: string): Promise<WebGPUBackend | null> {
  try {
    const b = await initWebGPUBackend();
    console.log(`${file}: ${b.ctx.description}`);
    return b;
  } catch (e) {
    if (!(e instanceof NoWebGPUError)) throw e;
    console.warn(`${file}: SKIPPED, no WebGPU adapter (${e.message})`);
    return null;
  }
}

interface Row {
  name: string;
  work: number;
  unit: "GFLOP/s" | "GB/s";
  reps: number;
  ms: number[];
}
const rows: Row[] = [];

/** Median of a list. */
export function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
}

/** Encodes `encode` until ≥ `targetMs` of GPU time per timed iteration; returns the repetitions. */
export async function calibrate(b: WebGPUBackend, encode: () => void, targetMs = 200): Promise<number> {
  encode();
  await b.sync(); // compile and warm up
  let reps = 1;
  for (;;) {
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) encode();
    await b.sync();
    const ms = performance.now() - t0;
    if (ms >= targetMs || reps >= 4096) return reps;
    reps = Math.min(4096, Math.max(reps * 2, Math.ceil((reps * targetMs) / Math.max(ms - 10, 1))));
  }
}

/**
 * Registers a `deno bench` case that encodes `encode` R times and waits once; `work` is the FLOPs
 * or bytes of one `encode`. Throughput (median) goes to the table printed at the end.
 */
export function gpuBench(
  b: WebGPUBackend | null,
  name: string,
  work: number,
  unit: "GFLOP/s" | "GB/s",
  encode: () => void,
): Row | null {
  if (!b) return null;
  const row: Row = { name, work, unit, reps: 0, ms: [] };
  rows.push(row);
  Deno.bench({ name, n: 8, warmup: 1 }, async () => {
    if (row.reps === 0) row.reps = await calibrate(b, encode);
    const t0 = performance.now();
    for (let i = 0; i < row.reps; i++) encode();
    await b.sync();
    row.ms.push(performance.now() - t0);
  });
  return row;
}

/** Throughput of a row: work per second (median), in its unit. */
export function throughput(r: Row): number {
  const perRepMs = median(r.ms) / r.reps;
  return r.work / (perRepMs / 1000) / 1e9;
}

/** Milliseconds per repetition (median). */
export function perRepMs(r: Row): number {
  return median(r.ms) / r.reps;
}

globalThis.addEventListener("unload", () => {
  const done = rows.filter((r) => r.ms.length > 0);
  if (done.length === 0) return;
  console.log("\nWebGPU throughput (median, GPU wait amortised over R repetitions):");
  for (const r of done) {
    console.log(
      `  ${r.name.padEnd(44)} ${throughput(r).toFixed(1).padStart(9)} ${r.unit}  ` +
        `(${perRepMs(r).toFixed(3)} ms/rep, R=${r.reps})`,
    );
  }
});
