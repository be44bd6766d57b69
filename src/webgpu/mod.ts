/**
 * WebGPU for `@nvrm/core`: initialisation, the default device and moving tensors between devices
 * (memory scopes, `tidy` and `dispose`, are device-neutral: `src/memory.ts`).
 *
 * @example
 * ```ts ignore
 * import { matmul, setDefaultDevice, tensor, toDevice } from "@nvrm/core";
 * await setDefaultDevice("auto");             // WebGPU when an adapter exists, else the CPU
 * const a = tensor([[1, 2], [3, 4]]);          // on the default device
 * const c = matmul(a, a);
 * console.log(await c.data());                 // the one place that waits for the GPU
 * const onCpu = await toDevice(c, "cpu");
 * ```
 *
 * @module
 */
import { getBackend, registerBackend, setDefaultDeviceSync } from "../backend.ts";
import { type Device, Tensor, type TypedArray } from "../tensor.ts";
import { tensorsIn } from "../memory.ts";
import type { TensorTree } from "../tree.ts";
import {
  adapterInfo,
  chooseBindGroupCache,
  chooseMergeArrays,
  createGpuContext,
  type GpuLimits,
  NoWebGPUError,
} from "./device.ts";
import { WebGPUBackend, type WebGPUStats } from "./backend.ts";
import { webgpuOptimKernels } from "./optim.ts";

export { type GpuLimits, NoWebGPUError } from "./device.ts";
export type { WebGPUBackend, WebGPUStats } from "./backend.ts";
export type { PoolStats } from "./buffer_pool.ts";
export type { EncoderStats } from "./pipelines.ts";

let current: WebGPUBackend | null = null;
let pending: Promise<WebGPUBackend> | null = null;

/** Options of {@linkcode initWebGPU}. */
export interface InitWebGPUOptions {
  /** Passed to `navigator.gpu.requestAdapter` (default "high-performance"). */
  powerPreference?: "low-power" | "high-performance";
  /** Create a new device even when one is already initialised (the old one's tensors become invalid). */
  force?: boolean;
  /**
   * Reuse bind groups across dispatches (uniforms at a dynamic offset), saving the host a
   * `createBindGroup` per dispatch (13–22 µs in Deno on our machine). The default depends on the
   * adapter: on for a hardware GPU (the MLP training step at batch 128 got 1.5× faster with it on an
   * H200), off for a software adapter — one flagged `isFallbackAdapter`, or named lavapipe,
   * llvmpipe, softpipe, SwiftShader or WARP in its `GPUAdapterInfo` — where the queue submissions
   * got slower by more than it saves. An explicit `true` or `false` wins; `webgpuStats()
   * .bindGroupCache` says which was chosen.
   */
  cacheBindGroups?: boolean;
  /**
   * Merge the per-array work of a training step into one dispatch over several arrays: the
   * optimizer's step of each parameter array (an MLP's SGD step: 1 dispatch instead of 6; up to 8
   * arrays per dispatch, as the device's storage bindings allow) and `fit`'s non-finite marks. The
   * results are the same bits either way. The default depends on the adapter like
   * `cacheBindGroups`: on for a hardware GPU, where each dispatch costs the host tens of
   * microseconds, off for a software adapter, where the merged kernel measured slower. An explicit
   * `true` or `false` wins when the device is created (a call that finds the backend initialised
   * keeps it unless `force`); `webgpuStats().mergeArrays` says which was chosen.
   */
  mergeArrays?: boolean;
}

/** What {@linkcode initWebGPU} found: the adapter and the limits the device was created with. */
export interface WebGPUInfo {
  /** The adapter's description (e.g. "NVIDIA H100 …", "llvmpipe (LLVM …)" for software Vulkan). */
  adapter: string;
  /** The device limits (the adapter's own limits are requested). */
  limits: GpuLimits;
}

/**
 * Initialises the WebGPU backend (adapter, device with the adapter's limits, buffer pool, pipeline
 * cache, optimizer kernels) and registers it for the device "webgpu". Idempotent; a lost device is
 * replaced. Throws {@linkcode NoWebGPUError} with an explanation when no adapter exists.
 *
 * @example
 * ```ts ignore
 * import { initWebGPU, tensor } from "@nvrm/core";
 * const { adapter } = await initWebGPU();
 * const x = tensor([1, 2, 3], undefined, { device: "webgpu" });
 * ```
 */
export async function initWebGPU(options: InitWebGPUOptions = {}): Promise<WebGPUInfo> {
  const b = await initWebGPUBackend(options);
  return { adapter: b.ctx.description, limits: { ...b.ctx.limits } };
}

/** Like {@linkcode initWebGPU}, returning the backend object itself. Internal (tests, benches). */
export async function initWebGPUBackend(options: InitWebGPUOptions = {}): Promise<WebGPUBackend> {
  if (current && current.ctx.lostReason === null && !options.force) return current;
  if (pending && !options.force) return await pending;
  pending = (async () => {
    const ctx = await createGpuContext(options);
    const cacheBindGroups = chooseBindGroupCache(adapterInfo(ctx.adapter), options.cacheBindGroups);
    const mergeArrays = chooseMergeArrays(adapterInfo(ctx.adapter), options.mergeArrays);
    const b = new WebGPUBackend(ctx, { cacheBindGroups, mergeArrays });
    b.optim = webgpuOptimKernels(b);
    registerBackend(b);
    current = b;
    return b;
  })();
  try {
    return await pending;
  } finally {
    pending = null;
  }
}

/** The initialised WebGPU backend, or null. */
export function webgpuBackend(): WebGPUBackend | null {
  return current;
}

/** True when a WebGPU adapter can be obtained (initialises the backend as a side effect). */
export async function hasWebGPU(): Promise<boolean> {
  try {
    await initWebGPU();
    return true;
  } catch (e) {
    if (e instanceof NoWebGPUError) return false;
    throw e;
  }
}

/** The choices of {@linkcode setDefaultDevice}. */
export type DeviceChoice = Device | "auto";

/**
 * Sets the device that new tensors are created on: "cpu", "webgpu" (initialising it; throws a
 * clear error when no adapter exists) or "auto" (WebGPU when available, else the CPU with a
 * one-line notice on stderr). Returns the device chosen.
 *
 * @example
 * ```ts ignore
 * import { setDefaultDevice } from "@nvrm/core";
 * const device = await setDefaultDevice("auto"); // "webgpu" or "cpu"
 * ```
 */
export async function setDefaultDevice(device: DeviceChoice): Promise<Device> {
  if (device === "cpu") {
    setDefaultDeviceSync("cpu");
    return "cpu";
  }
  if (device === "webgpu") {
    try {
      await initWebGPU();
    } catch (e) {
      if (e instanceof NoWebGPUError) {
        throw new NoWebGPUError(`setDefaultDevice("webgpu"): ${e.message}`);
      }
      throw e;
    }
    setDefaultDeviceSync("webgpu");
    return "webgpu";
  }
  if (device === "auto") {
    try {
      await initWebGPU();
      setDefaultDeviceSync("webgpu");
      return "webgpu";
    } catch (e) {
      if (!(e instanceof NoWebGPUError)) throw e;
      console.warn(
        `nvrm: WebGPU unavailable (${e.message.replace(/^WebGPU is not available: /, "")}); using the CPU`,
      );
      setDefaultDeviceSync("cpu");
      return "cpu";
    }
  }
  throw new RangeError(
    `setDefaultDevice: device must be "cpu", "webgpu" or "auto", got ${JSON.stringify(device)}`,
  );
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return x !== null && typeof x === "object" && Object.getPrototypeOf(x) === Object.prototype;
}

function rebuild(x: unknown, map: Map<Tensor, Tensor>): unknown {
  if (x instanceof Tensor) return map.get(x)!;
  if (Array.isArray(x)) return x.map((c) => rebuild(c, map));
  if (isPlainObject(x)) {
    const o: Record<string, unknown> = {};
    for (const k of Object.keys(x)) o[k] = rebuild(x[k], map);
    return o;
  }
  return x;
}

/**
 * Copies a tensor, or every tensor of a tree, to `device` ("cpu" or "webgpu"). Tensors already
 * there are returned as they are. Reading from the GPU waits for it, so call this outside the
 * training loop (at epoch ends).
 *
 * @example
 * ```ts ignore
 * import { tensor, toDevice } from "@nvrm/core";
 * const g = await toDevice(tensor([1, 2, 3]), "webgpu");
 * const back = await toDevice(g, "cpu");
 * ```
 */
export async function toDevice<T extends TensorTree>(x: T, device: Device): Promise<T> {
  if (device !== "cpu" && device !== "webgpu") {
    throw new RangeError(`toDevice: device must be "cpu" or "webgpu", got ${JSON.stringify(device)}`);
  }
  const leaves = tensorsIn(x);
  if (leaves.length === 0 && !(x instanceof Tensor)) {
    throw new TypeError(`toDevice: x must be a Tensor or a tree of tensors, got ${typeof x}`);
  }
  const moved = await Promise.all(leaves.map(async (t) => {
    if (t.device === device) return t;
    if (device === "cpu") {
      const data = await getBackend(t.device).read(t);
      return getBackend("cpu").fromArray(data, t.shape, t.dtype);
    }
    if (t.dtype !== "float32") {
      throw new TypeError(
        `toDevice: a ${t.dtype} tensor ${t} cannot move to ${device} (float32 only; cast it first)`,
      );
    }
    // A CPU tensor's storage is never mutated and fromArray copies it: no host copy first.
    const data = t.device === "cpu" ? t.storage as TypedArray : await t.data();
    return getBackend(device).fromArray(data, t.shape, t.dtype);
  }));
  const map = new Map<Tensor, Tensor>();
  leaves.forEach((t, i) => map.set(t, moved[i]));
  return rebuild(x, map) as T;
}

/**
 * Memory and dispatch statistics of the WebGPU backend (live and pooled buffers, pipelines,
 * dispatches, submits, host microseconds spent encoding and submitting, the bind-group cache), or
 * null when it is not initialised. Counters run from initialisation: take differences around the
 * work to measure (e.g. dispatches per training step).
 */
export function webgpuStats(): WebGPUStats | null {
  return current ? current.stats() : null;
}

/**
 * Waits until the GPU has finished all work submitted so far (about 10 ms per call in Deno).
 * Only for timing and tests: reading a tensor with `await t.data()` already waits.
 */
export async function syncWebGPU(): Promise<void> {
  if (current) await current.sync();
}
