/**
 * Waiting for worker threads in tests: they start asynchronously and, on a loaded machine, may
 * take a while to be scheduled.
 *
 * @module
 */
import assert from "node:assert/strict";

/**
 * Repeats `step` (awaiting 5 ms between) until `done()`, failing with "`what`: never happened"
 * after `ms` (30 s by default: a healthy pool is done within milliseconds, a loaded 2-core machine
 * once took more than 10 s to schedule a fourth worker).
 */
export async function until(step: () => void, done: () => boolean, what: string, ms = 30_000): Promise<void> {
  const t0 = Date.now();
  while (!done() && Date.now() - t0 < ms) {
    step();
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.ok(done(), `${what}: never happened`);
}
