/**
 * The WebGPU implementation of {@linkcode Backend}: float32 tensors in pooled storage buffers,
 * kernels from `kernels/wgsl/`, dispatches batched into command buffers, and reference-counted storage
 * (reshape views share a buffer) released by memory scopes (`valueAndGrad`, `tidy`, `fit`), or, as
 * a backstop, when a tensor object is garbage collected.
 *
 * Nothing here waits on the GPU except {@linkcode WebGPUBackend.read}: ops only encode work.
 *
 * The matrix products and convolutions (`matmul_ops.ts`), the fused linear layer (`linear_ops.ts`), the pooling ops (`pool_ops.ts`), batch
 * normalization and the dropout mask (`norm_ops.ts`) live in their own modules; the methods here
 * delegate to them. The rest stays one file because it is one class: the storage bookkeeping (reference counts, release tokens, staging buffers) is private
 * state that the elementwise, reduction, layout and softmax ops use directly, and each of those
 * ops is a few lines of uniforms around one dispatch.
 *
 * @module
 */
import type {
  Activation,
  Backend,
  BatchNormStats,
  BinaryOp,
  Conv2dGeometry,
  DropoutMaskSpec,
  FiniteKernels,
  LinearNeeds,
  Pool2dGeometry,
  ReduceOp,
  UnaryOp,
} from "../backend.ts";
import type { OptimKernels } from "../optim/fused_ops.ts";
import { type DType, fmtShape, shapeSize, stridesOf, Tensor, type TypedArray } from "../tensor.ts";
import { WG1D } from "../../kernels/wgsl/common.ts";
import {
  addReluKernel,
  axpbyKernel,
  BINARY_WORDS,
  binaryKernel,
  type BinaryMode,
  COPY_WORDS,
  copyKernel,
  FILL_WORDS,
  fillKernel,
  MAX_RANK,
  reluGradKernel,
  UNARY_WORDS,
  unaryKernel,
} from "../../kernels/wgsl/elementwise.ts";
import { REDUCE_WG, REDUCE_WORDS, reduceKernel } from "../../kernels/wgsl/reduce.ts";
import {
  CE_GRAD_WORDS,
  CE_MEAN_MAX_ELEMENTS,
  crossEntropyGradKernel,
  crossEntropyMeanKernel,
  SOFTMAX_WG,
  SOFTMAX_WORDS,
  softmaxKernel,
} from "../../kernels/wgsl/softmax.ts";
import { checkContext, type GpuContext, throwPendingError } from "./device.ts";
import { BufferPool, type PoolStats } from "./buffer_pool.ts";
import {
  Encoder,
  type EncoderStats,
  f32bits,
  type KernelSpec,
  kernelSpec,
  PipelineCache,
} from "./pipelines.ts";
import { broadcastStrides, coalesce } from "./layout.ts";
import {
  conv2d,
  conv2dGradInput,
  conv2dGradWeight,
  fusedConv2d,
  fusedConv2dGrad,
  matmul,
} from "./matmul_ops.ts";
import { linear, linearGrad } from "./linear_ops.ts";
import { avgPool2d, avgPool2dGrad, maxPool2d, maxPool2dGrad } from "./pool_ops.ts";
import { batchNormBackward, batchNormForward, dropoutMask } from "./norm_ops.ts";
import { webgpuFiniteKernels } from "./finite.ts";

export { f32bits } from "./pipelines.ts";

/** GPU storage of one or more tensors (reshape views share it): a pooled buffer and a count. */
export class GpuStorage {
  readonly #buffer: GPUBuffer;
  /** The backend that owns the buffer. */
  readonly owner: WebGPUBackend;
  /** Number of live tensors using this storage; the buffer returns to the pool at 0. */
  refs = 1;
  /**
   * The value of a one-element fill not encoded yet (`fill` of a scalar): a binary op reads it from
   * its uniforms instead, and any other use of {@linkcode GpuStorage.buffer} encodes the fill first.
   */
  pendingValue: number | null = null;

  /** Wraps a pooled buffer. Internal. */
  constructor(buffer: GPUBuffer, owner: WebGPUBackend) {
    this.#buffer = buffer;
    this.owner = owner;
  }

  /** The buffer (from the pool; at least 4·size bytes), after encoding a pending fill. */
  get buffer(): GPUBuffer {
    if (this.pendingValue !== null) {
      const v = this.pendingValue;
      this.pendingValue = null;
      this.owner.fillBuffer(this.#buffer, 1, v);
    }
    return this.#buffer;
  }

  /** The buffer as it is, a pending fill left pending (binding it unread, or returning it to the pool). */
  get rawBuffer(): GPUBuffer {
    return this.#buffer;
  }
}

interface Token {
  storage: GpuStorage;
  done: boolean;
}

/**
 * Statistics of the WebGPU backend: the buffer pool's (live buffers include cached label uploads),
 * the encoder's, and the number of compiled pipelines.
 */
export interface WebGPUStats extends PoolStats, EncoderStats {
  /** Compiled pipelines. */
  pipelines: number;
  /** Whether per-array work is merged into one dispatch (`InitWebGPUOptions.mergeArrays`). */
  mergeArrays: boolean;
}

/** The WebGPU backend of one device. Create it with `initWebGPU()`. */
export class WebGPUBackend implements Backend {
  /** Always "webgpu". */
  readonly device = "webgpu" as const;
  /** The device context. */
  readonly ctx: GpuContext;
  /** The buffer pool. */
  readonly pool: BufferPool;
  /** The pipeline cache. */
  readonly pipelines: PipelineCache;
  /** The fused optimizer kernels (set by `initWebGPU`). */
  optim?: OptimKernels;
  /** The non-finite guard kernels of `fit` (`src/webgpu/finite.ts`). */
  readonly finite: FiniteKernels = webgpuFiniteKernels(this);
  /** The dispatch encoder. */
  readonly encoder: Encoder;
  /**
   * Merge the per-array work of a step (optimizer steps, non-finite marks) into one dispatch over
   * several arrays (`InitWebGPUOptions.mergeArrays`).
   */
  readonly mergeArrays: boolean;
  readonly #tokens = new WeakMap<Tensor, Token>();
  readonly #registry: FinalizationRegistry<Token>;
  readonly #labels = new Map<Int32Array, { copy: Int32Array; buf: GPUBuffer }>();
  readonly #staging = new Map<number, GPUBuffer[]>();
  /**
   * A one-element storage holding 1, shared (like a reshape view) by every one-element
   * `fill(shape, 1)`: the seed gradient of each backward pass, which then costs no dispatch.
   * The backend holds one reference, so it never returns to the pool (one live buffer from the start).
   */
  readonly #one: GpuStorage;

  /** A backend on the device of `ctx` (see `InitWebGPUOptions.cacheBindGroups` and `.mergeArrays`). */
  constructor(ctx: GpuContext, options: { cacheBindGroups?: boolean; mergeArrays?: boolean } = {}) {
    this.ctx = ctx;
    this.mergeArrays = options.mergeArrays ?? false;
    this.pool = new BufferPool(ctx);
    const cache = options.cacheBindGroups ?? false;
    this.pipelines = new PipelineCache(ctx, cache);
    this.encoder = new Encoder(ctx, cache);
    this.#one = new GpuStorage(this.pool.acquire(4, "the constant 1"), this);
    this.upload(this.#one.buffer, Float32Array.of(1));
    this.#registry = new FinalizationRegistry((tok) => {
      if (!tok.done) {
        tok.done = true;
        this.#unref(tok.storage);
      }
    });
  }

  // ------------------------------------------------------------------------------------------
  // Storage and tensors

  /** A new tensor on a fresh pooled buffer of `shape`. `who` names the op for limit errors. */
  alloc(shape: readonly number[], who: string): Tensor {
    this.check(who);
    const buf = this.pool.acquire(
      shapeSize(shape) * 4,
      `${who}: a float32 tensor of shape ${fmtShape(shape)}`,
    );
    return this.#wrap(new GpuStorage(buf, this), shape);
  }

  #wrap(s: GpuStorage, shape: readonly number[]): Tensor {
    const t = new Tensor(s, shape, "float32", "webgpu");
    const tok: Token = { storage: s, done: false };
    this.#tokens.set(t, tok);
    this.#registry.register(t, tok, tok);
    return t;
  }

  #unref(s: GpuStorage): void {
    if (--s.refs === 0 && s.owner === this) this.pool.release(s.rawBuffer);
  }

  /** A raw pooled buffer for a temporary (return it with `pool.release`). */
  temp(bytes: number, who: string): GPUBuffer {
    return this.pool.acquire(bytes, `${who}: a temporary of ${bytes / 4} float32 values`);
  }

  /** Throws when the device is lost. */
  check(who: string): void {
    checkContext(this.ctx, who);
  }

  /**
   * The buffer of `t`, after checking that `t` is a live float32 tensor of this device; `who` and
   * `arg` name the op and argument in errors.
   */
  buffer(t: Tensor, who: string, arg: string): GPUBuffer {
    if (!(t instanceof Tensor)) throw new TypeError(`${who}: ${arg} must be a Tensor, got ${typeof t}`);
    if (t.device !== "webgpu") {
      throw new Error(
        `${who}: cannot mix devices: ${arg} is on ${t.device}, expected webgpu (move it with toDevice(t, "webgpu"))`,
      );
    }
    if (t.dtype !== "float32") {
      throw new TypeError(`${who}: ${arg} has dtype ${t.dtype}, WebGPU supports float32`);
    }
    const s = t.storage;
    if (!(s instanceof GpuStorage)) throw new TypeError(`${who}: ${arg} has no WebGPU storage`);
    if (s.owner !== this) {
      throw new Error(
        `${who}: ${arg} belongs to an earlier WebGPU device (lost or replaced by initWebGPU()); recreate it`,
      );
    }
    this.check(who);
    if (s.refs <= 0 || this.#tokens.get(t)?.done) {
      throw new Error(`${who}: ${arg} ${fmtShape(t.shape)} was released; its GPU buffer is gone`);
    }
    return s.buffer;
  }

  /** Releases `t`'s reference to its storage (idempotent; views keep the buffer alive). */
  release(t: Tensor): void {
    const tok = this.#tokens.get(t);
    if (!tok || tok.done) return;
    tok.done = true;
    this.#registry.unregister(tok);
    this.#unref(tok.storage);
  }

  /** True when `t` was released (or collected). */
  isReleased(t: Tensor): boolean {
    const tok = this.#tokens.get(t);
    return tok ? tok.done : (t.storage as GpuStorage).refs <= 0;
  }

  /** Memory and dispatch statistics. */
  stats(): WebGPUStats {
    return {
      ...this.pool.stats(),
      pipelines: this.pipelines.size,
      mergeArrays: this.mergeArrays,
      ...this.encoder.stats(),
    };
  }

  /** Submits all encoded work to the GPU (does not wait). */
  flush(): void {
    this.encoder.flush();
  }

  /** Submits all encoded work and waits until the GPU has finished it (~10 ms in Deno). */
  async sync(): Promise<void> {
    this.check("sync");
    this.encoder.flush();
    await Promise.race([this.ctx.device.queue.onSubmittedWorkDone(), this.#lostError("sync")]);
    throwPendingError(this.ctx, "sync");
  }

  #lostError(who: string): Promise<never> {
    return this.ctx.lost.then((reason) => {
      throw new Error(`${who}: the WebGPU device was lost (${reason}); call await initWebGPU() again`);
    });
  }

  /** Writes host data into a pooled buffer (flushing first so earlier reads of it run before). */
  upload(buf: GPUBuffer, data: Float32Array | Int32Array): void {
    if (data.byteLength === 0) return;
    this.encoder.flush();
    const { buffer, byteOffset, byteLength } = data;
    // Deno types `writeBuffer`'s data as ArrayBuffer-backed only: a view on shared memory is copied.
    if (buffer instanceof ArrayBuffer) {
      this.ctx.device.queue.writeBuffer(buf, 0, buffer, byteOffset, byteLength);
    } else this.ctx.device.queue.writeBuffer(buf, 0, data.slice().buffer);
  }

  // ------------------------------------------------------------------------------------------
  // Dispatch helpers

  /** Encodes one dispatch. */
  run(
    spec: KernelSpec,
    uniforms: ArrayLike<number>,
    buffers: readonly GPUBuffer[],
    groups: readonly [number, number, number],
  ): void {
    const max = this.ctx.limits.maxComputeWorkgroupsPerDimension;
    if (groups[0] > max || groups[1] > max || groups[2] > max) {
      throw new RangeError(
        `webgpu: ${spec.key} needs a dispatch of [${groups}] workgroups, over the device limit ` +
          `maxComputeWorkgroupsPerDimension = ${max}`,
      );
    }
    const u = uniforms instanceof Uint32Array ? uniforms : Uint32Array.from(uniforms, (v) => v >>> 0);
    this.encoder.dispatch(this.pipelines.get(spec), u, buffers, groups);
  }

  /** A grid of `n` workgroups along x, folded into y past the per-dimension limit. */
  grid(n: number): [number, number, number] {
    const max = this.ctx.limits.maxComputeWorkgroupsPerDimension;
    if (n <= max) return [n, 1, 1];
    return [max, Math.ceil(n / max), 1];
  }

  // ------------------------------------------------------------------------------------------
  // Backend: creation, transfer

  fromArray(data: TypedArray, shape: readonly number[], dtype: DType): Tensor {
    if (dtype !== "float32") {
      throw new TypeError(`webgpu: dtype ${dtype} is not supported on webgpu (float32 only)`);
    }
    const t = this.alloc(shape, "tensor");
    const f = data instanceof Float32Array ? data : Float32Array.from(data);
    this.upload((t.storage as GpuStorage).buffer, f);
    return t;
  }

  fill(shape: readonly number[], value: number, dtype: DType): Tensor {
    if (dtype !== "float32") {
      throw new TypeError(`fill: dtype ${dtype} is not supported on webgpu (float32 only)`);
    }
    if (value === 1 && shapeSize(shape) === 1) {
      this.check("fill");
      this.#one.refs++;
      return this.#wrap(this.#one, shape);
    }
    const t = this.alloc(shape, "fill");
    // One element (a number operand made a tensor): no dispatch unless something else than a binary
    // op reads it (GpuStorage.pendingValue).
    if (t.size === 1) (t.storage as GpuStorage).pendingValue = value;
    else this.fillBuffer((t.storage as GpuStorage).buffer, t.size, value);
    return t;
  }

  /** Fills the first `n` floats of `buf` with `value`. */
  fillBuffer(buf: GPUBuffer, n: number, value: number): void {
    if (n === 0) return;
    if (Object.is(value, 0)) {
      this.encoder.clear(buf, n * 4);
      return;
    }
    const spec = kernelSpec("fill", FILL_WORDS, ["write"], fillKernel);
    this.run(spec, [n, f32bits(value)], [buf], this.grid(Math.ceil(n / WG1D)));
  }

  async read(t: Tensor): Promise<Float32Array> {
    const buf = this.buffer(t, "read", "tensor");
    const bytes = t.size * 4;
    if (bytes === 0) return new Float32Array(0);
    const size = Math.ceil(bytes / 256) * 256;
    const staging = this.#staging.get(size)?.pop() ??
      this.ctx.device.createBuffer({ size, usage: 0x01 /* MAP_READ */ | 0x08 /* COPY_DST */ });
    this.encoder.copy(buf, 0, staging, 0, bytes);
    this.encoder.flush();
    try {
      await Promise.race([staging.mapAsync(0x01, /* READ */ 0, bytes), this.#lostError("read")]);
    } catch (e) {
      throwPendingError(this.ctx, "read");
      throw e;
    }
    const out = new Float32Array(staging.getMappedRange(0, bytes).slice(0));
    staging.unmap();
    let list = this.#staging.get(size);
    if (!list) this.#staging.set(size, list = []);
    if (list.length < 4) list.push(staging);
    else staging.destroy();
    throwPendingError(this.ctx, "read");
    return out;
  }

  reshape(x: Tensor, shape: readonly number[]): Tensor {
    this.buffer(x, "reshape", "x");
    const s = x.storage as GpuStorage;
    s.refs++;
    return this.#wrap(s, shape);
  }

  cast(x: Tensor, dtype: DType): Tensor {
    if (dtype !== "float32") {
      throw new TypeError(`cast: dtype ${dtype} is not supported on webgpu (float32 only)`);
    }
    return this.reshape(x, x.shape);
  }

  // ------------------------------------------------------------------------------------------
  // Elementwise

  unary(op: UnaryOp, x: Tensor): Tensor {
    const xb = this.buffer(x, op, "x");
    const y = this.alloc(x.shape, op);
    if (x.size > 0) {
      const spec = kernelSpec(`unary/${op}`, UNARY_WORDS, ["read", "write"], () => unaryKernel(op));
      this.run(spec, [x.size], [xb, (y.storage as GpuStorage).buffer], this.grid(Math.ceil(x.size / WG1D)));
    }
    return y;
  }

  /** ReLU's gradient `g · step(x)` in one kernel (the same values as `mul(g, step(x))`). */
  reluGrad(x: Tensor, g: Tensor): Tensor {
    return this.#pairwise("reluGrad", reluGradKernel, ["x", x], ["g", g], []);
  }

  /** relu(a + b) in one kernel (the same values as `relu(add(a, b))`). */
  addRelu(a: Tensor, b: Tensor): Tensor {
    return this.#pairwise("addRelu", addReluKernel, ["a", a], ["b", b], []);
  }

  axpby(a: number, x: Tensor, b: number, y: Tensor): Tensor {
    return this.#pairwise("axpby", axpbyKernel, ["x", x], ["y", y], [f32bits(a), f32bits(b)]);
  }

  /**
   * One elementwise kernel over two tensors of the same size (`reluGrad`, `addRelu`, `axpby`): the result has
   * the second one's shape; `words` follow n in the uniforms.
   */
  #pairwise(
    who: string,
    kernel: () => string,
    [xName, x]: [string, Tensor],
    [zName, z]: [string, Tensor],
    words: number[],
  ): Tensor {
    const xb = this.buffer(x, who, xName), zb = this.buffer(z, who, zName);
    if (x.size !== z.size) {
      throw new RangeError(
        `${who}: ${xName} ${fmtShape(x.shape)} and ${zName} ${
          fmtShape(z.shape)
        } must have the same number of elements`,
      );
    }
    const out = this.alloc(z.shape, who);
    if (out.size === 0) return out;
    const spec = kernelSpec(who, BINARY_WORDS, ["read", "read", "write"], kernel);
    this.run(
      spec,
      [out.size, ...words],
      [xb, zb, (out.storage as GpuStorage).buffer],
      this.grid(Math.ceil(out.size / WG1D)),
    );
    return out;
  }

  binary(op: BinaryOp, a: Tensor, b: Tensor, outShape: readonly number[]): Tensor {
    // A one-element constant not yet filled (a number operand) travels in the uniforms instead.
    const constOf = (t: Tensor, other: Tensor) => {
      const s = t.storage;
      return s instanceof GpuStorage && s.pendingValue !== null && !this.isReleased(t) &&
          shapeSize(outShape) === other.size && other.size > 0 &&
          !(other.storage instanceof GpuStorage && other.storage.pendingValue !== null)
        ? s.pendingValue
        : null;
    };
    const ca = constOf(a, b), cb = ca === null ? constOf(b, a) : null;
    const ab = ca === null ? this.buffer(a, op, "a") : this.#constBuffer(a, op, "a");
    const bb = cb === null ? this.buffer(b, op, "b") : this.#constBuffer(b, op, "b");
    const y = this.alloc(outShape, op);
    const n = y.size;
    if (n === 0) return y;
    const out = (y.storage as GpuStorage).buffer;
    if (ca !== null || cb !== null) {
      const mode: BinaryMode = ca !== null ? "constA" : "constB";
      const spec = kernelSpec(
        `binary/${op}/${mode}`,
        BINARY_WORDS,
        ["read", "read", "write"],
        () => binaryKernel(op, mode),
      );
      this.run(spec, [n, 1, f32bits((ca ?? cb)!), 0], [ab, bb, out], this.grid(Math.ceil(n / WG1D)));
      return y;
    }
    this.binaryBuffers(op, ab, a.shape, bb, b.shape, out, outShape);
    return y;
  }

  /** The unfilled buffer of a pending one-element constant (checked like {@linkcode buffer}). */
  #constBuffer(t: Tensor, who: string, arg: string): GPUBuffer {
    const s = t.storage as GpuStorage;
    const v = s.pendingValue;
    s.pendingValue = null; // buffer() would encode the fill
    try {
      this.buffer(t, who, arg);
    } finally {
      s.pendingValue = v;
    }
    return s.rawBuffer;
  }

  /** Encodes out = op(a, b) with broadcasting on raw buffers. */
  binaryBuffers(
    op: BinaryOp,
    ab: GPUBuffer,
    aShape: readonly number[],
    bb: GPUBuffer,
    bShape: readonly number[],
    out: GPUBuffer,
    outShape: readonly number[],
  ): void {
    const n = shapeSize(outShape), na = shapeSize(aShape), nb = shapeSize(bShape);
    let mode: BinaryMode;
    let u: number[] = [n, 1];
    if (na === n && nb === n) mode = "same";
    else if (na === 1 && nb === n) mode = "scalarA";
    else if (nb === 1 && na === n) mode = "scalarB";
    else {
      mode = "general";
      const c = coalesce(outShape, [broadcastStrides(aShape, outShape), broadcastStrides(bShape, outShape)]);
      if (c.shape.length > MAX_RANK) {
        throw new RangeError(
          `${op}: broadcasting over more than ${MAX_RANK} dims is not supported on webgpu`,
        );
      }
      u = [n, c.shape.length, 0, 0, ...pad(c.shape), ...pad(c.strides[0]), ...pad(c.strides[1])];
    }
    const spec = kernelSpec(
      `binary/${op}/${mode}`,
      BINARY_WORDS,
      ["read", "read", "write"],
      () => binaryKernel(op, mode),
    );
    this.run(spec, u, [ab, bb, out], this.grid(Math.ceil(n / WG1D)));
  }

  // ------------------------------------------------------------------------------------------
  // Reductions

  reduce(op: ReduceOp, x: Tensor, axes: readonly number[], keepDims: boolean): Tensor {
    const xb = this.buffer(x, op, "x");
    const kept = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
    const shape = keepDims ? kept : x.shape.filter((_, i) => !axes.includes(i));
    const y = this.alloc(shape, op);
    this.reduceBuffers(op, xb, x.shape, axes, 1, (y.storage as GpuStorage).buffer);
    return y;
  }

  /**
   * Encodes a reduction of the tensor of `shape` in `xb` over `axes` into `out` (kept dims in
   * order, contiguous), multiplying sums by `scale`.
   */
  reduceBuffers(
    op: ReduceOp,
    xb: GPUBuffer,
    shape: readonly number[],
    axes: readonly number[],
    scale: number,
    out: GPUBuffer,
  ): void {
    const strides = stridesOf(shape);
    const keptDims = shape.map((_, i) => i).filter((i) => !axes.includes(i));
    const redDims = axes.slice();
    const nOut = shapeSize(keptDims.map((i) => shape[i]));
    const R = shapeSize(redDims.map((i) => shape[i]));
    if (nOut === 0) return;
    if (R === 0) {
      this.fillBuffer(out, nOut, op === "sum" ? 0 : -Infinity);
      return;
    }
    const k = coalesce(keptDims.map((i) => shape[i]), [keptDims.map((i) => strides[i])]);
    const r = coalesce(redDims.map((i) => shape[i]), [redDims.map((i) => strides[i])]);
    if (k.shape.length > MAX_RANK || r.shape.length > MAX_RANK) {
      throw new RangeError(`${op}: reductions over more than ${MAX_RANK} coalesced dims are not supported`);
    }
    const contiguous = r.shape.length === 1 && r.strides[0][0] === 1;
    // Split long reductions of few outputs into chunks reduced in a second pass.
    let nChunks = 1;
    if (nOut < 1024 && R > 16384) nChunks = Math.min(1024, Math.ceil(R / 8192));
    const chunk = Math.ceil(R / nChunks);
    const perGroup = chunk > 32;
    const uni = (s: number) => [
      nOut,
      R,
      k.shape.length,
      r.shape.length,
      chunk,
      nChunks,
      f32bits(s),
      0,
      ...pad(k.shape),
      ...pad(k.strides[0]),
      ...pad(r.shape),
      ...pad(r.strides[0]),
    ];
    const spec = kernelSpec(
      `reduce/${op}/${perGroup ? "group" : "thread"}/${contiguous ? "contig" : "strided"}`,
      REDUCE_WORDS,
      ["read", "write"],
      () => reduceKernel(op, perGroup, contiguous),
    );
    const groups = (units: number) => this.grid(perGroup ? units : Math.ceil(units / REDUCE_WG));
    if (nChunks === 1) {
      this.run(spec, uni(scale), [xb, out], groups(nOut));
      return;
    }
    const part = this.temp(nOut * nChunks * 4, op);
    this.run(spec, uni(1), [xb, part], groups(nOut * nChunks));
    this.reduceBuffers(op, part, [nOut, nChunks], [1], scale, out);
    this.pool.release(part);
  }

  // ------------------------------------------------------------------------------------------
  // Matmul and convolutions (implicit GEMM): see matmul_ops.ts

  matmul(a: Tensor, b: Tensor, transA: boolean, transB: boolean, outShape: readonly number[]): Tensor {
    return matmul(this, a, b, transA, transB, outShape);
  }

  linear(x: Tensor, w: Tensor, b: Tensor | null, activation: Activation): Tensor {
    return linear(this, x, w, b, activation);
  }

  linearGrad(
    x: Tensor,
    w: Tensor,
    y: Tensor | null,
    g: Tensor,
    needs: LinearNeeds,
  ): { gx: Tensor | null; gw: Tensor | null; gb: Tensor | null } {
    return linearGrad(this, x, w, y, g, needs);
  }

  conv2d(x: Tensor, w: Tensor, geo: Conv2dGeometry): Tensor {
    return conv2d(this, x, w, geo);
  }

  conv2dGradInput(gy: Tensor, w: Tensor, xShape: readonly number[], geo: Conv2dGeometry): Tensor {
    return conv2dGradInput(this, gy, w, xShape, geo);
  }

  conv2dGradWeight(x: Tensor, gy: Tensor, wShape: readonly number[], geo: Conv2dGeometry): Tensor {
    return conv2dGradWeight(this, x, gy, wShape, geo);
  }

  fusedConv2d(
    x: Tensor,
    w: Tensor,
    b: Tensor | null,
    geo: Conv2dGeometry,
    activation: Activation,
  ): Tensor {
    return fusedConv2d(this, x, w, b, geo, activation);
  }

  fusedConv2dGrad(
    x: Tensor,
    w: Tensor,
    y: Tensor | null,
    g: Tensor,
    geo: Conv2dGeometry,
    needs: LinearNeeds,
  ): { gx: Tensor | null; gw: Tensor | null; gb: Tensor | null } {
    return fusedConv2dGrad(this, x, w, y, g, geo, needs);
  }

  // ------------------------------------------------------------------------------------------
  // Layout: transpose, slice, concat

  /** Encodes a strided copy (see kernels/elementwise.ts). */
  copyStrided(
    src: GPUBuffer,
    srcOffset: number,
    srcStrides: readonly number[],
    dst: GPUBuffer,
    dstOffset: number,
    dstStrides: readonly number[],
    shape: readonly number[],
    who: string,
  ): void {
    const n = shapeSize(shape);
    if (n === 0) return;
    const c = coalesce(shape, [srcStrides, dstStrides]);
    if (c.shape.length > MAX_RANK) {
      throw new RangeError(`${who}: more than ${MAX_RANK} dims are not supported on webgpu`);
    }
    const spec = kernelSpec("copy", COPY_WORDS, ["read", "write"], copyKernel);
    this.run(
      spec,
      [n, c.shape.length, srcOffset, dstOffset, ...pad(c.shape), ...pad(c.strides[0]), ...pad(c.strides[1])],
      [src, dst],
      this.grid(Math.ceil(n / WG1D)),
    );
  }

  transpose(x: Tensor, perm: readonly number[]): Tensor {
    const xb = this.buffer(x, "transpose", "x");
    const shape = perm.map((p) => x.shape[p]);
    const y = this.alloc(shape, "transpose");
    const st = stridesOf(x.shape);
    this.copyStrided(
      xb,
      0,
      perm.map((p) => st[p]),
      (y.storage as GpuStorage).buffer,
      0,
      stridesOf(shape),
      shape,
      "transpose",
    );
    return y;
  }

  slice(x: Tensor, begin: readonly number[], end: readonly number[], step: readonly number[]): Tensor {
    const xb = this.buffer(x, "slice", "x");
    const shape = begin.map((b, i) => Math.max(0, Math.ceil((end[i] - b) / step[i])));
    const y = this.alloc(shape, "slice");
    const st = stridesOf(x.shape);
    const off = begin.reduce((s, b, i) => s + b * st[i], 0);
    this.copyStrided(
      xb,
      off,
      st.map((s, i) => s * step[i]),
      (y.storage as GpuStorage).buffer,
      0,
      stridesOf(shape),
      shape,
      "slice",
    );
    return y;
  }

  sliceGrad(x: Tensor, shape: readonly number[], begin: readonly number[], step: readonly number[]): Tensor {
    const xb = this.buffer(x, "sliceGrad", "x");
    const y = this.alloc(shape, "sliceGrad");
    const yb = (y.storage as GpuStorage).buffer;
    this.encoder.clear(yb, y.size * 4);
    const st = stridesOf(shape);
    const off = begin.reduce((s, b, i) => s + b * st[i], 0);
    this.copyStrided(
      xb,
      0,
      stridesOf(x.shape),
      yb,
      off,
      st.map((s, i) => s * step[i]),
      x.shape,
      "sliceGrad",
    );
    return y;
  }

  concat(xs: readonly Tensor[], axis: number): Tensor {
    const bufs = xs.map((t, i) => this.buffer(t, "concat", `xs[${i}]`));
    const shape = xs[0].shape.slice();
    shape[axis] = xs.reduce((s, t) => s + t.shape[axis], 0);
    const y = this.alloc(shape, "concat");
    const yb = (y.storage as GpuStorage).buffer;
    const st = stridesOf(shape);
    let at = 0;
    xs.forEach((t, i) => {
      this.copyStrided(bufs[i], 0, stridesOf(t.shape), yb, at * st[axis], st, t.shape, "concat");
      at += t.shape[axis];
    });
    return y;
  }

  // ------------------------------------------------------------------------------------------
  // Softmax and cross-entropy

  #softmax(kind: "softmax" | "logSoftmax", x: Tensor): Tensor {
    const xb = this.buffer(x, kind, "x");
    const y = this.alloc(x.shape, kind);
    const C = x.shape[x.rank - 1] ?? 1;
    const rows = C === 0 ? 0 : x.size / C;
    if (rows === 0) return y;
    const perGroup = C > 64;
    const spec = kernelSpec(
      `${kind}/${perGroup ? "group" : "thread"}`,
      SOFTMAX_WORDS,
      ["read", "write"],
      () => softmaxKernel(kind, perGroup),
    );
    this.run(
      spec,
      [rows, C, 0, 0],
      [xb, (y.storage as GpuStorage).buffer],
      this.grid(perGroup ? rows : Math.ceil(rows / SOFTMAX_WG)),
    );
    return y;
  }

  softmax(x: Tensor): Tensor {
    return this.#softmax("softmax", x);
  }

  logSoftmax(x: Tensor): Tensor {
    return this.#softmax("logSoftmax", x);
  }

  /** The labels as a GPU buffer (cached by array identity, re-uploaded when the content changed). */
  #labelBuffer(labels: Int32Array, who: string): GPUBuffer {
    const hit = this.#labels.get(labels);
    if (hit && hit.copy.length === labels.length && hit.copy.every((v, i) => v === labels[i])) {
      this.#labels.delete(labels);
      this.#labels.set(labels, hit); // most recently used last
      return hit.buf;
    }
    if (hit) {
      this.#labels.delete(labels);
      this.pool.release(hit.buf);
    }
    const buf = this.pool.acquire(Math.max(4, labels.byteLength), `${who}: labels (${labels.length})`);
    this.upload(buf, labels);
    this.#labels.set(labels, { copy: labels.slice(), buf });
    while (this.#labels.size > 8) {
      const [k, v] = this.#labels.entries().next().value!;
      this.#labels.delete(k);
      this.pool.release(v.buf);
    }
    return buf;
  }

  crossEntropy(logits: Tensor, labels: Int32Array): { loss: Tensor; probs: Tensor } {
    const lb = this.buffer(logits, "crossEntropy", "logits");
    const [n, c] = logits.shape;
    const probs = this.alloc(logits.shape, "crossEntropy");
    const loss = this.alloc([], "crossEntropy");
    const lossb = (loss.storage as GpuStorage).buffer;
    if (n === 0) {
      this.fillBuffer(lossb, 1, 0);
      return { loss, probs };
    }
    const lab = this.#labelBuffer(labels, "crossEntropy");
    if (n * c <= CE_MEAN_MAX_ELEMENTS) {
      // A training batch: probabilities and mean loss in one dispatch (no per-row loss buffer to sum).
      const spec = kernelSpec(
        "crossEntropyMean",
        SOFTMAX_WORDS,
        ["read", "read", "write", "write"],
        crossEntropyMeanKernel,
      );
      this.run(spec, [n, c, f32bits(1 / n), 0], [lb, lab, (probs.storage as GpuStorage).buffer, lossb], [
        1,
        1,
        1,
      ]);
      return { loss, probs };
    }
    const rowLoss = this.temp(n * 4, "crossEntropy");
    const perGroup = c > 64;
    const spec = kernelSpec(
      `crossEntropy/${perGroup ? "group" : "thread"}`,
      SOFTMAX_WORDS,
      ["read", "read", "write", "write"],
      () => softmaxKernel("crossEntropy", perGroup),
    );
    this.run(
      spec,
      [n, c, 0, 0],
      [lb, lab, (probs.storage as GpuStorage).buffer, rowLoss],
      this.grid(perGroup ? n : Math.ceil(n / SOFTMAX_WG)),
    );
    this.reduceBuffers("sum", rowLoss, [n], [0], 1 / n, lossb);
    this.pool.release(rowLoss);
    return { loss, probs };
  }

  crossEntropyGrad(probs: Tensor, labels: Int32Array, g: Tensor): Tensor {
    const pb = this.buffer(probs, "crossEntropyGrad", "probs"), gb = this.buffer(g, "crossEntropyGrad", "g");
    const [n, c] = probs.shape;
    const y = this.alloc(probs.shape, "crossEntropyGrad");
    if (y.size === 0) return y;
    const lab = this.#labelBuffer(labels, "crossEntropyGrad");
    const spec = kernelSpec(
      "crossEntropyGrad",
      CE_GRAD_WORDS,
      ["read", "read", "read", "write"],
      crossEntropyGradKernel,
    );
    this.run(
      spec,
      [n * c, c, f32bits(1 / n), 0],
      [pb, lab, gb, (y.storage as GpuStorage).buffer],
      this.grid(Math.ceil((n * c) / WG1D)),
    );
    return y;
  }

  // ------------------------------------------------------------------------------------------
  // Pooling: see pool_ops.ts

  maxPool2d(x: Tensor, geo: Pool2dGeometry): { y: Tensor; argmax: Tensor } {
    return maxPool2d(this, x, geo);
  }

  maxPool2dGrad(gy: Tensor, argmax: Tensor, xShape: readonly number[], geo: Pool2dGeometry): Tensor {
    return maxPool2dGrad(this, gy, argmax, xShape, geo);
  }

  avgPool2d(x: Tensor, geo: Pool2dGeometry): Tensor {
    return avgPool2d(this, x, geo);
  }

  avgPool2dGrad(gy: Tensor, xShape: readonly number[], geo: Pool2dGeometry): Tensor {
    return avgPool2dGrad(this, gy, xShape, geo);
  }

  // ------------------------------------------------------------------------------------------
  // Batch normalization and the dropout mask: see norm_ops.ts

  batchNormForward(
    x: Tensor,
    gamma: Tensor,
    beta: Tensor,
    eps: number,
    activation: Activation = "none",
  ): BatchNormStats & { y: Tensor } {
    return batchNormForward(this, x, gamma, beta, eps, activation);
  }

  batchNormBackward(
    x: Tensor,
    gamma: Tensor,
    stats: BatchNormStats,
    gy: Tensor,
    eps: number,
    y: Tensor | null = null,
  ): { gx: Tensor; gGamma: Tensor; gBeta: Tensor } {
    return batchNormBackward(this, x, gamma, stats, gy, eps, y);
  }

  dropoutMask(shape: readonly number[], dtype: DType, spec: DropoutMaskSpec): Tensor {
    if (dtype !== "float32") {
      throw new TypeError(`dropout: dtype ${dtype} is not supported on webgpu (float32 only)`);
    }
    return dropoutMask(this, shape, spec);
  }

  /** Releases pooled free buffers and staging buffers (live tensors are untouched). */
  trim(): void {
    this.encoder.flush();
    this.encoder.clearBindGroups();
    this.pool.trim();
    for (const list of this.#staging.values()) for (const b of list) b.destroy();
    this.#staging.clear();
  }
}

/** Pads a list to `MAX_RANK` entries with zeros. */
function pad(xs: readonly number[]): number[] {
  const out = xs.slice();
  while (out.length < MAX_RANK) out.push(0);
  return out;
}
