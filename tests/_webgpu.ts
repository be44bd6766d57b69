/**
 * The preamble of the WebGPU suites: acquires the backend; without an adapter the suite's tests are
 * ignored (with a visible notice), except under CI=true, where a failing test says why.
 *
 * @module
 */
import type { WebGPUBackend } from "../src/webgpu/backend.ts";
import { acquireTestGpu } from "../src/webgpu/testing.ts";
import type { InitWebGPUOptions } from "../src/webgpu/mod.ts";

/**
 * The backend for the suite `suite` (a file name, for the skip notice) and whether its tests must
 * be ignored; under CI=true without an adapter, registers `"<title>: a WebGPU adapter is required
 * under CI=true"`, which fails.
 */
export async function webgpuSuite(
  suite: string,
  title: string,
  options: InitWebGPUOptions = {},
): Promise<{ gpu: WebGPUBackend | null; ignore: boolean }> {
  const ci = Deno.env.get("CI") === "true";
  const { gpu, reason } = await acquireTestGpu(suite, ci, options);
  if (gpu === null && ci) {
    Deno.test(`${title}: a WebGPU adapter is required under CI=true`, () => {
      throw new Error(`no WebGPU adapter: ${reason}`);
    });
  }
  return { gpu, ignore: gpu === null };
}
