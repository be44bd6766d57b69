/**
 * The WebGPU device: adapter discovery, a device created with the adapter's own limits (the
 * defaults cap a storage binding at 128 MiB), loss and error tracking.
 *
 * @module
 */

/** The limits the backend relies on, read from the device after creation. */
export interface GpuLimits {
  /** Largest buffer, in bytes. */
  maxBufferSize: number;
  /** Largest storage-buffer binding, in bytes (the effective tensor size limit). */
  maxStorageBufferBindingSize: number;
  /** Largest uniform-buffer binding, in bytes. */
  maxUniformBufferBindingSize: number;
  /** Alignment of uniform-buffer binding offsets, in bytes. */
  minUniformBufferOffsetAlignment: number;
  /** Largest workgroup count along one dispatch dimension. */
  maxComputeWorkgroupsPerDimension: number;
  /** Workgroup memory per workgroup, in bytes. */
  maxComputeWorkgroupStorageSize: number;
  /** Storage buffers one kernel may bind. */
  maxStorageBuffersPerShaderStage: number;
}

/** A live WebGPU device and what the backend tracks about it. */
export interface GpuContext {
  /** The adapter the device came from. */
  readonly adapter: GPUAdapter;
  /** The device. */
  readonly device: GPUDevice;
  /** Its limits. */
  readonly limits: GpuLimits;
  /** A human-readable adapter name ("llvmpipe (LLVM 15…)", "NVIDIA H100 …"). */
  readonly description: string;
  /** True for a software adapter (lavapipe, llvmpipe, SwiftShader, WARP): see {@linkcode isSoftwareAdapter}. */
  readonly software: boolean;
  /** Counts devices created in this process (tensors remember the one they belong to). */
  readonly generation: number;
  /** Set when the device is lost; every later operation throws with this reason. */
  lostReason: string | null;
  /** The first uncaptured GPU error (validation, out of memory), reported at the next readback. */
  error: string | null;
  /** Resolves (never rejects) with the loss message when the device is lost. */
  readonly lost: Promise<string>;
}

let generation = 0;

/**
 * What {@linkcode isSoftwareAdapter} reads: the fields of `GPUAdapterInfo` (all optional, since
 * runtimes fill them unevenly) and the adapter's `isFallbackAdapter` flag where the runtime has one.
 */
export interface AdapterInfoLike {
  /** `GPUAdapterInfo.vendor` (Deno on Vulkan: the PCI vendor id in decimal, "65541" for Mesa). */
  vendor?: string;
  /** `GPUAdapterInfo.architecture`. */
  architecture?: string;
  /** `GPUAdapterInfo.device`. */
  device?: string;
  /** `GPUAdapterInfo.description` ("llvmpipe (LLVM 15.0.6, 256 bits)", "NVIDIA H200"). */
  description?: string;
  /** `GPUAdapterInfo.isFallbackAdapter` (newer runtimes) or `GPUAdapter.isFallbackAdapter` (older). */
  isFallbackAdapter?: boolean;
}

/** Names of CPU implementations of Vulkan, D3D12 or WebGPU, as adapters report them. */
const SOFTWARE_NAMES = /llvmpipe|lavapipe|softpipe|swiftshader|subzero|basic render driver|\bwarp\b/i;

/**
 * True when the adapter runs on the CPU: flagged as a fallback adapter, or named like one of the
 * software rasterizers (lavapipe/llvmpipe, softpipe, SwiftShader, Microsoft's WARP / Basic Render
 * Driver) in its vendor, architecture, device or description. Pure; decides the default of
 * `InitWebGPUOptions.cacheBindGroups`.
 */
export function isSoftwareAdapter(info: AdapterInfoLike): boolean {
  if (info.isFallbackAdapter === true) return true;
  return [info.vendor, info.architecture, info.device, info.description].some((s) =>
    typeof s === "string" && SOFTWARE_NAMES.test(s)
  );
}

/**
 * The default of `InitWebGPUOptions.cacheBindGroups`: an explicit `requested` value wins; otherwise
 * on for hardware adapters (a bind group per dispatch is the largest host cost of a small step; the
 * cache made the MLP step 1.5× faster on an H200) and off for software adapters (on lavapipe the
 * queue submissions got slower by more than the cache saves).
 */
export function chooseBindGroupCache(info: AdapterInfoLike, requested?: boolean): boolean {
  return requested ?? !isSoftwareAdapter(info);
}

/**
 * The default of `InitWebGPUOptions.mergeArrays`: an explicit `requested` value wins; otherwise on
 * for hardware adapters (where the host's cost per dispatch bounds a small model's step) and off for
 * software adapters (on lavapipe the merged kernel ran 1.2–2.2× slower than one dispatch per array
 * for arrays of 65k–200k elements: there the "GPU" is the same CPU, and a dispatch costs little).
 */
export function chooseMergeArrays(info: AdapterInfoLike, requested?: boolean): boolean {
  return requested ?? !isSoftwareAdapter(info);
}

/** The adapter's info, merged with its `isFallbackAdapter` flag (wherever the runtime puts it). */
export function adapterInfo(adapter: GPUAdapter): AdapterInfoLike {
  const a = adapter as unknown as { info?: AdapterInfoLike; isFallbackAdapter?: boolean };
  const i = a.info ?? {};
  return {
    vendor: i.vendor,
    architecture: i.architecture,
    device: i.device,
    description: i.description,
    isFallbackAdapter: i.isFallbackAdapter ?? a.isFallbackAdapter,
  };
}

/** Adapter options accepted by {@linkcode createGpuContext}. */
export interface AdapterOptions {
  /** Passed to `requestAdapter`. */
  powerPreference?: "low-power" | "high-performance";
}

/** Thrown when no WebGPU adapter is available. */
export class NoWebGPUError extends Error {
  /** Creates the error with an explanation of why no adapter was found. */
  constructor(message: string) {
    super(message);
    this.name = "NoWebGPUError";
  }
}

const KEY_LIMITS = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxUniformBufferBindingSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
];

/** Reads the numeric limits of an adapter (all of them, or only `keys`). */
function adapterLimits(adapter: GPUAdapter, keys?: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  const lim = adapter.limits as unknown as Record<string, unknown>;
  const names: string[] = [];
  if (keys) names.push(...keys);
  else for (const k in lim) names.push(k);
  for (const k of names) {
    const v = lim[k];
    if (typeof v === "number" && Number.isFinite(v)) out[k] = v;
  }
  return out;
}

/**
 * Finds an adapter and creates a device with the adapter's limits. Throws {@linkcode NoWebGPUError}
 * with an explanation when `navigator.gpu` is missing or no adapter exists.
 */
export async function createGpuContext(opts: AdapterOptions = {}): Promise<GpuContext> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) {
    throw new NoWebGPUError(
      "WebGPU is not available: navigator.gpu is undefined (this runtime has no WebGPU; in Deno it is built in)",
    );
  }
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? "high-performance" });
  if (!adapter) {
    throw new NoWebGPUError(
      "WebGPU is not available: navigator.gpu.requestAdapter() returned null (no GPU driver; on Linux " +
        "install a Vulkan driver, e.g. Debian's mesa-vulkan-drivers for a software adapter)",
    );
  }
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredLimits: adapterLimits(adapter) });
  } catch {
    // Some runtimes list limits they do not accept back: ask only for the ones we rely on.
    device = await adapter.requestDevice({ requiredLimits: adapterLimits(adapter, KEY_LIMITS) });
  }
  const l = device.limits;
  const info = adapterInfo(adapter);
  const description = [info.description, info.vendor, info.architecture, info.device].filter((s) => s)
    .join(" / ") || "unknown adapter";
  let resolveLost!: (m: string) => void;
  const lost = new Promise<string>((r) => (resolveLost = r));
  const ctx: GpuContext = {
    adapter,
    device,
    description,
    software: isSoftwareAdapter(info),
    generation: ++generation,
    lostReason: null,
    error: null,
    lost,
    limits: {
      maxBufferSize: l.maxBufferSize,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxUniformBufferBindingSize: l.maxUniformBufferBindingSize,
      minUniformBufferOffsetAlignment: l.minUniformBufferOffsetAlignment,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
    },
  };
  device.lost.then((info) => {
    ctx.lostReason = `${info.reason ?? "unknown"}${info.message ? `: ${info.message}` : ""}`;
    resolveLost(ctx.lostReason);
  });
  device.addEventListener("uncapturederror", (ev) => {
    const e = (ev as GPUUncapturedErrorEvent).error;
    if (ctx.error === null) ctx.error = `${e.constructor?.name ?? "GPUError"}: ${e.message}`;
  });
  return ctx;
}

/** Throws when the device is lost or a GPU error was reported; `who` names the operation. */
export function checkContext(ctx: GpuContext, who: string): void {
  if (ctx.lostReason !== null) {
    throw new Error(`${who}: the WebGPU device was lost (${ctx.lostReason}); call await initWebGPU() again`);
  }
}

/** Throws the first uncaptured GPU error, if any (and clears it). */
export function throwPendingError(ctx: GpuContext, who: string): void {
  if (ctx.error !== null) {
    const e = ctx.error;
    ctx.error = null;
    throw new Error(`${who}: a GPU command failed: ${e}`);
  }
}
