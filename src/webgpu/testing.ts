/**
 * Test support for the WebGPU suites: acquires the backend, or explains why it cannot. Used by
 * `tests/webgpu_*_test.ts`; without an adapter the suites are skipped with a visible message,
 * except under CI, where the suites register a failing test instead.
 *
 * @module
 */
import { initWebGPUBackend, type InitWebGPUOptions } from "./mod.ts";
import { NoWebGPUError } from "./device.ts";
import type { WebGPUBackend } from "./backend.ts";

/** What {@linkcode acquireTestGpu} found. */
export interface TestGpu {
  /** The backend, or null without an adapter. */
  gpu: WebGPUBackend | null;
  /** Why there is no backend ("" when there is one). */
  reason: string;
}

/**
 * Initialises WebGPU for a test file. Without an adapter: under CI returns the reason (the caller
 * registers a failing test); elsewhere prints a visible skip notice naming `suite`.
 */
export async function acquireTestGpu(
  suite: string,
  ci: boolean,
  options: InitWebGPUOptions = {},
): Promise<TestGpu> {
  try {
    return { gpu: await initWebGPUBackend(options), reason: "" };
  } catch (e) {
    if (!(e instanceof NoWebGPUError)) throw e;
    if (!ci) {
      console.warn(
        `%c${suite}: SKIPPED, no WebGPU adapter. ${e.message.replace(/^WebGPU is not available: /, "")}`,
        "color: orange; font-weight: bold",
      );
    }
    return { gpu: null, reason: e.message };
  }
}

/** A seeded generator of uniform numbers in [0, 1) (mulberry32), for reproducible test data. */
export function testRng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
