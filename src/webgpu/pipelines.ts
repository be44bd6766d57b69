/**
 * Compute pipelines, cached by kernel key (kernel name plus the "shape class": variant flags that
 * change the generated WGSL; sizes travel in uniforms, except a convolution's geometry, which
 * `kernels/wgsl/conv.ts` compiles in: one pipeline set per convolution shape, the batch in uniforms),
 * and the command encoder that batches dispatches and their uniforms.
 *
 * Uniforms live in one arena buffer per batch of dispatches: each dispatch appends its words at an
 * aligned offset of a host copy, and the whole arena is written with one `queue.writeBuffer` just
 * before the batch is submitted. Because queue operations execute in order, the next batch can
 * reuse the same arena buffer without waiting for the GPU.
 *
 * With `cacheBindGroups` (the default on hardware adapters, `InitWebGPUOptions`) the uniform
 * binding takes a dynamic offset, so that a bind group depends only on the pipeline and the storage
 * buffers: bind groups are then cached by those (a training loop gets the same pooled buffers step
 * after step), which saves a `createBindGroup` per dispatch — the largest host-side cost of a small
 * dispatch in Deno. The encoder counts dispatches and the host time spent encoding and submitting.
 *
 * @module
 */
import { uniformWords } from "../../kernels/wgsl/common.ts";
import type { GpuContext } from "./device.ts";

/** How a kernel binds a storage buffer. */
export type BindingKind = "read" | "write";

/** A kernel: its WGSL, its storage bindings (after the uniform at binding 0) and its uniform size. */
export interface KernelSpec {
  /** Cache key: unique per distinct WGSL text. */
  key: string;
  /** Produces the WGSL source (called once per key). */
  code: () => string;
  /** Storage bindings 1…n, in order. */
  bindings: readonly BindingKind[];
  /** Number of 32-bit uniform words (binding 0); a multiple of 4. */
  uniformWords: number;
}

/** The spec of kernel `key`: `words` uniform words (rounded up as the layout needs), `bindings`, `code`. */
export function kernelSpec(
  key: string,
  words: number,
  bindings: readonly BindingKind[],
  code: () => string,
): KernelSpec {
  return { key, code, bindings, uniformWords: uniformWords(words) };
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);
/** The bit pattern of `v` as a float32 (how float uniforms travel in the uint32 words). */
export function f32bits(v: number): number {
  f32Scratch[0] = v;
  return u32Scratch[0];
}

/** A compiled kernel. */
export interface Pipeline {
  /** The spec it was built from. */
  spec: KernelSpec;
  /** The compute pipeline. */
  pipeline: GPUComputePipeline;
  /** Its bind group layout. */
  layout: GPUBindGroupLayout;
}

const GPU_STAGE_COMPUTE = 4;

/** Compiles kernels on first use and keeps them. */
export class PipelineCache {
  readonly #ctx: GpuContext;
  readonly #cache = new Map<string, Pipeline>();
  readonly #dynamicUniform: boolean;

  /** A cache for the device of `ctx`; `dynamicUniform`: the uniform binding takes a dynamic offset. */
  constructor(ctx: GpuContext, dynamicUniform = false) {
    this.#ctx = ctx;
    this.#dynamicUniform = dynamicUniform;
  }

  /** Number of compiled pipelines. */
  get size(): number {
    return this.#cache.size;
  }

  /** The pipeline of `spec`, compiled on first use. */
  get(spec: KernelSpec): Pipeline {
    const hit = this.#cache.get(spec.key);
    if (hit) return hit;
    const device = this.#ctx.device;
    const entries: GPUBindGroupLayoutEntry[] = [
      {
        binding: 0,
        visibility: GPU_STAGE_COMPUTE,
        buffer: { type: "uniform", hasDynamicOffset: this.#dynamicUniform },
      },
    ];
    spec.bindings.forEach((k, i) =>
      entries.push({
        binding: i + 1,
        visibility: GPU_STAGE_COMPUTE,
        buffer: { type: k === "read" ? "read-only-storage" : "storage" },
      })
    );
    const layout = device.createBindGroupLayout({ label: spec.key, entries });
    const code = spec.code();
    const module = device.createShaderModule({ label: spec.key, code });
    const pipeline = device.createComputePipeline({
      label: spec.key,
      layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: "main" },
    });
    const p = { spec, pipeline, layout };
    this.#cache.set(spec.key, p);
    return p;
  }
}

/** Statistics of the encoder. */
export interface EncoderStats {
  /** Compute dispatches encoded since the start (one `dispatchWorkgroups` each). */
  dispatches: number;
  /** Command buffers submitted since the start. */
  submits: number;
  /**
   * Host time spent encoding since the start, in microseconds: for each dispatch its uniforms, bind
   * group and pass commands, and the copies and clears. Divided by the dispatches of the same
   * interval, it is the host cost per dispatch that bounds small models on a fast GPU.
   */
  encodeMicros: number;
  /**
   * Host time spent submitting since the start, in microseconds: the uniform arena's
   * `writeBuffer`, `finish` and `queue.submit`. On a software adapter (lavapipe) a submit may run
   * the work itself on the CPU, so this is the GPU's time there, not overhead.
   */
  submitMicros: number;
  /** Whether bind groups are cached (`InitWebGPUOptions.cacheBindGroups`, chosen by adapter). */
  bindGroupCache: boolean;
  /** Dispatches that reused a cached bind group. */
  bindGroupHits: number;
  /** Bind groups currently cached. */
  bindGroups: number;
}

/** Cached bind groups at most; the cache is emptied when it would grow past this. */
const MAX_BIND_GROUPS = 4096;

/** Batches dispatches into command buffers; see the module documentation for uniforms. */
export class Encoder {
  readonly #ctx: GpuContext;
  readonly #arenaBytes: number;
  readonly #align: number;
  readonly #arena: ArrayBuffer;
  readonly #arenaU32: Uint32Array;
  readonly #arenaBuf: GPUBuffer;
  #offset = 0;
  #enc: GPUCommandEncoder | null = null;
  #pass: GPUComputePassEncoder | null = null;
  #pending = 0;
  #dispatches = 0;
  #submits = 0;
  #encodeMs = 0;
  #submitMs = 0;
  #bindGroupHits = 0;
  readonly #bindGroups = new Map<string, GPUBindGroup>();
  readonly #bufferIds = new WeakMap<GPUBuffer, number>();
  #nextBufferId = 1;
  readonly #cacheBindGroups: boolean;
  #deferred: (() => void) | null = null;
  readonly #dynamicOffset = new Uint32Array(1);
  /** Dispatches per command buffer before an automatic submit. */
  maxBatch = 64;

  /** An encoder for the device of `ctx`; `cacheBindGroups`: see the module documentation. */
  constructor(ctx: GpuContext, cacheBindGroups = false) {
    this.#ctx = ctx;
    this.#cacheBindGroups = cacheBindGroups;
    this.#arenaBytes = Math.min(65536, ctx.limits.maxUniformBufferBindingSize);
    this.#align = Math.max(16, ctx.limits.minUniformBufferOffsetAlignment);
    this.#arena = new ArrayBuffer(this.#arenaBytes);
    this.#arenaU32 = new Uint32Array(this.#arena);
    this.#arenaBuf = ctx.device.createBuffer({
      label: "uniform arena",
      size: this.#arenaBytes,
      usage: 0x40 /* UNIFORM */ | 0x08, /* COPY_DST */
    });
  }

  /**
   * Registers `encode`, work that may still grow by the next call (the optimizer's steps of several
   * parameter arrays, merged into one dispatch), to run before anything else is encoded or submitted
   * and before the counters are read, so that the GPU sees every command in the order it was asked
   * for. A different deferred work already registered runs first.
   */
  defer(encode: () => void): void {
    if (this.#deferred !== null && this.#deferred !== encode) this.#encodeDeferred();
    this.#deferred = encode;
  }

  #encodeDeferred(): void {
    const f = this.#deferred;
    if (f === null) return;
    this.#deferred = null;
    f();
  }

  #encoder(): GPUCommandEncoder {
    return this.#enc ??= this.#ctx.device.createCommandEncoder();
  }

  #endPass(): void {
    if (this.#pass) {
      this.#pass.end();
      this.#pass = null;
    }
  }

  /**
   * Encodes one dispatch of `p` with `uniforms` (u32 words, at most `p.spec.uniformWords`) and the
   * storage `buffers` bound in order.
   */
  dispatch(
    p: Pipeline,
    uniforms: Uint32Array,
    buffers: readonly GPUBuffer[],
    groups: readonly [number, number, number],
  ): void {
    this.#encodeDeferred();
    if (groups[0] === 0 || groups[1] === 0 || groups[2] === 0) return;
    const t0 = performance.now(), submitted = this.#submitMs;
    this.#dispatch(p, uniforms, buffers, groups);
    this.#encodeMs += performance.now() - t0 - (this.#submitMs - submitted);
  }

  #dispatch(
    p: Pipeline,
    uniforms: Uint32Array,
    buffers: readonly GPUBuffer[],
    groups: readonly [number, number, number],
  ): void {
    const bytes = p.spec.uniformWords * 4;
    if (this.#offset + bytes > this.#arenaBytes) this.#flush();
    this.#arenaU32.fill(0, this.#offset / 4, (this.#offset + bytes) / 4);
    this.#arenaU32.set(uniforms, this.#offset / 4);
    const offset = this.#offset;
    this.#offset = Math.ceil((this.#offset + bytes) / this.#align) * this.#align;
    if (!this.#pass) this.#pass = this.#encoder().beginComputePass();
    this.#pass.setPipeline(p.pipeline);
    if (this.#cacheBindGroups) {
      // The offset as a typed array: Deno converts a plain array through WebIDL, ~10× the cost.
      this.#dynamicOffset[0] = offset;
      this.#pass.setBindGroup(0, this.#bindGroup(p, bytes, buffers), this.#dynamicOffset, 0, 1);
    } else this.#pass.setBindGroup(0, this.#createBindGroup(p, offset, bytes, buffers));
    this.#pass.dispatchWorkgroups(groups[0], groups[1], groups[2]);
    this.#dispatches++;
    if (++this.#pending >= this.maxBatch) this.#flush();
  }

  /** The bind group of `p` over `buffers` (the uniform at a dynamic offset), cached. */
  #bindGroup(p: Pipeline, bytes: number, buffers: readonly GPUBuffer[]): GPUBindGroup {
    let key = p.spec.key;
    for (const b of buffers) {
      let id = this.#bufferIds.get(b);
      if (id === undefined) this.#bufferIds.set(b, id = this.#nextBufferId++);
      key += `|${id}`;
    }
    const hit = this.#bindGroups.get(key);
    if (hit) {
      this.#bindGroupHits++;
      return hit;
    }
    const bg = this.#createBindGroup(p, 0, bytes, buffers);
    if (this.#bindGroups.size >= MAX_BIND_GROUPS) this.#bindGroups.clear();
    this.#bindGroups.set(key, bg);
    return bg;
  }

  /** A new bind group of `p`: the uniform arena at `offset`, then `buffers`. */
  #createBindGroup(p: Pipeline, offset: number, bytes: number, buffers: readonly GPUBuffer[]): GPUBindGroup {
    const entries: GPUBindGroupEntry[] = [
      { binding: 0, resource: { buffer: this.#arenaBuf, offset, size: bytes } },
    ];
    for (let i = 0; i < buffers.length; i++) {
      entries.push({ binding: i + 1, resource: { buffer: buffers[i] } });
    }
    return this.#ctx.device.createBindGroup({ layout: p.layout, entries });
  }

  /** Forgets the cached bind groups (call before destroying buffers they may reference). */
  clearBindGroups(): void {
    this.#bindGroups.clear();
  }

  /** Encodes a buffer-to-buffer copy (sizes and offsets multiples of 4). */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    this.#encodeDeferred();
    if (bytes === 0) return;
    const t0 = performance.now();
    this.#endPass();
    this.#encoder().copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
    this.#pending++;
    this.#encodeMs += performance.now() - t0;
  }

  /** Encodes a zero fill of `bytes` bytes of `buf` (a multiple of 4). */
  clear(buf: GPUBuffer, bytes: number): void {
    this.#encodeDeferred();
    if (bytes === 0) return;
    const t0 = performance.now();
    this.#endPass();
    this.#encoder().clearBuffer(buf, 0, Math.ceil(bytes / 4) * 4);
    this.#pending++;
    this.#encodeMs += performance.now() - t0;
  }

  /** Submits everything encoded so far (writing the uniform arena first). */
  flush(): void {
    this.#encodeDeferred();
    this.#flush();
  }

  #flush(): void {
    if (!this.#enc) return;
    const t0 = performance.now();
    this.#endPass();
    const q = this.#ctx.device.queue;
    if (this.#offset > 0) q.writeBuffer(this.#arenaBuf, 0, this.#arena, 0, this.#offset);
    q.submit([this.#enc.finish()]);
    this.#enc = null;
    this.#offset = 0;
    this.#pending = 0;
    this.#submits++;
    this.#submitMs += performance.now() - t0;
  }

  /** Counters (after encoding the deferred work: see {@linkcode Encoder.defer}). */
  stats(): EncoderStats {
    this.#encodeDeferred();
    return {
      dispatches: this.#dispatches,
      submits: this.#submits,
      encodeMicros: Math.round(this.#encodeMs * 1000),
      submitMicros: Math.round(this.#submitMs * 1000),
      bindGroupCache: this.#cacheBindGroups,
      bindGroupHits: this.#bindGroupHits,
      bindGroups: this.#bindGroups.size,
    };
  }
}
