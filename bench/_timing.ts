/**
 * Shared `deno bench` helper: records the wall time of every measured iteration of each case and,
 * when the process ends, prints one line per case with its median and a figure derived from it
 * (GFLOP/s, examples/s …).
 */

/** Per-case wall times (ms) of every measured iteration, and how to turn one into a figure. */
const samples = new Map<string, { prefix: string; ms: number[]; figure: (ms: number) => string }>();

/** Median of a list of numbers. */
export function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * A `Deno.bench` body that times `fn` under `name`; `figure` turns the median time (ms) into the
 * printed figure. `prefix` names the bench file in the summary lines.
 */
export function timed(
  prefix: string,
  name: string,
  figure: (ms: number) => string,
  fn: () => void,
): (b: Deno.BenchContext) => void {
  const rec = { prefix, ms: [] as number[], figure };
  samples.set(name, rec);
  return (b) => {
    b.start();
    const t0 = performance.now();
    fn();
    rec.ms.push(performance.now() - t0);
    b.end();
  };
}

globalThis.addEventListener("unload", () => {
  for (const [name, { prefix, ms, figure }] of samples) {
    if (ms.length === 0) continue;
    // The first sample of each case is Deno's warm-up call; drop it when there are others.
    const m = median(ms.length > 1 ? ms.slice(1) : ms);
    console.log(`${prefix}: ${name}: median ${m.toFixed(2)} ms over ${ms.length} calls, ${figure(m)}`);
  }
});
