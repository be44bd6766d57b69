/**
 * The WebGPU optimizer kernels (`OptimKernels` of `src/optim/fused_ops.ts`): fused SGD/VSGD and
 * Adam/VAdam steps, the weight-noise step, perturb and addScaled, with the noise drawn in the kernel
 * (bit-identical to `fillNoise`). Registered for the device "webgpu" by `initWebGPU()`.
 *
 * The optimizers call these kernels array by array; with `mergeArrays` (the default on hardware
 * adapters: `InitWebGPUOptions.mergeArrays`) consecutive calls of the same kernel wait and become
 * one dispatch over all their arrays (as many as the device's storage bindings allow, at most
 * {@linkcode MAX_ARRAYS_PER_DISPATCH}), with the same results as one dispatch per array: a whole
 * model's SGD step is then one dispatch instead of one per parameter array, which matters where the
 * host's cost per dispatch, not the GPU, bounds a small model's step. A waiting group is encoded
 * before any other GPU command, submit, read-back or counter read (`Encoder.defer`), and earlier
 * when the next call would write a buffer the group binds or read one the group writes.
 *
 * A fused SGD or Adam step given the parameter (`update(grads, state, params)` passes it) also
 * writes the parameter plus its update, when the device's storage bindings allow (SGD always under
 * the default 8, Adam without AMSGrad and noise); `applyUpdates` on that same parameter and update
 * then returns it instead of dispatching `addScaled`, so applying the update costs no dispatch. Used
 * any other way (a chain that transforms the update further, params other than those the update
 * saw) the extra sum is released with the step's other tensors.
 *
 * @module
 */
import type {
  AdamKernelArgs,
  KernelResult,
  NoiseStage,
  OptimKernels,
  SgdKernelArgs,
} from "../optim/fused_ops.ts";
import type { NoiseLaw, StreamKey } from "../random/noise.ts";
import type { Tensor } from "../tensor.ts";
import { WG1D } from "../../kernels/wgsl/common.ts";
import {
  adamKernel,
  addScaledKernel,
  fusedBindings,
  type FusedKernel,
  fusedKernel,
  noiseStepKernel,
  type NoiseVariant,
  OPTIM_LEAF_WORDS,
  optimWords,
  perturbKernel,
  sgdKernel,
} from "../../kernels/wgsl/optim.ts";
import { lawIndex, withLogTable } from "../../kernels/wgsl/random.ts";
import type { GpuStorage, WebGPUBackend } from "./backend.ts";
import { f32bits } from "./pipelines.ts";

interface StageWords {
  variant: NoiseVariant;
  words: number[];
}

function keyWords(key: StreamKey): number[] {
  return [key.k0 >>> 0, key.k1 >>> 0, key.c1 >>> 0, key.c2 >>> 0];
}

/** Parameter arrays in one dispatch at most (the kernel's WGSL grows with each). */
export const MAX_ARRAYS_PER_DISPATCH = 8;

/** One parameter array's call of a fused kernel, waiting to be encoded. */
interface PendingArray {
  /** Its uniform words (n, the noise stage, the optimizer's constants). */
  words: number[];
  /** Its storage buffers, in binding order. */
  buffers: GPUBuffer[];
}

/** Calls of one fused kernel, to be encoded as one dispatch. */
interface PendingGroup {
  key: string;
  k: FusedKernel;
  /** Arrays the dispatch may hold (storage bindings per array against the device's limit). */
  capacity: number;
  arrays: PendingArray[];
  /** Every buffer the group binds, and those it writes. */
  touched: Set<GPUBuffer>;
  written: Set<GPUBuffer>;
}

/**
 * Creates the WebGPU optimizer kernels of `b`. A fused step that would bind more storage buffers
 * than `maxBindings` (the device limit unless given) runs its noise stage as a second dispatch.
 * Consecutive calls of one kernel (the parameter arrays of an update) are merged into one dispatch
 * where `maxBindings` allows when `coalesce` (default: the backend's `mergeArrays`).
 */
export function webgpuOptimKernels(
  b: WebGPUBackend,
  maxBindings: number = b.ctx.limits.maxStorageBuffersPerShaderStage,
  options: { coalesce?: boolean } = {},
): OptimKernels {
  const coalesce = options.coalesce ?? b.mergeArrays;
  const buf = (t: Tensor, who: string, arg: string) => b.buffer(t, who, arg);
  const out = (like: Tensor, who: string) => b.alloc(like.shape, who);
  const ob = (t: Tensor) => (t.storage as GpuStorage).buffer;

  function stageOf(stage: NoiseStage | undefined, who: string): StageWords {
    if (!stage) return { variant: { draw: false, nOld: false }, words: [0, 0, 0, 0, 0, 0, 0] };
    const draw = !stage.reset && stage.scale !== 0;
    lawIndex(stage.law, who); // validates
    return {
      variant: { draw, nOld: stage.nOld !== null, law: stage.law },
      words: [...keyWords(stage.key), 0, f32bits(stage.scale), 0],
    };
  }

  /**
   * The fused steps waiting to be encoded: consecutive calls of the same kernel (the arrays of one
   * optimizer update, leaf after leaf) become one dispatch over all of them, as many as the storage
   * bindings allow (at most {@linkcode MAX_ARRAYS_PER_DISPATCH}). The group is encoded when a call of
   * another kernel comes, when it is full, when a call would write a buffer the group touches (or
   * read one it writes), and before any other GPU command, submit or counter read (`Encoder.defer`).
   */
  let pending: PendingGroup | null = null;

  function encodePending(): void {
    const g = pending;
    if (g === null) return;
    pending = null;
    const L = g.arrays.length;
    const words: number[] = [];
    const bufs: GPUBuffer[] = [];
    let blocks = 0;
    for (const a of g.arrays) {
      const w = a.words.slice();
      while (w.length < OPTIM_LEAF_WORDS) w.push(0);
      w[5] = blocks; // the array's first thread
      blocks += Math.ceil(w[0] / 4);
      words.push(...w);
      bufs.push(...a.buffers);
    }
    const { reads, writes } = fusedBindings(g.k);
    const kinds = [...reads.map(() => "read" as const), ...writes.map(() => "write" as const)];
    const u = g.k.noise.draw ? withLogTable(words, g.k.noise.law!, OPTIM_LEAF_WORDS * L) : words;
    b.run(
      {
        key: `optim/${g.key}${L > 1 ? `/x${L}` : ""}`,
        code: () => fusedKernel(g.k, L),
        bindings: Array.from({ length: L }, () => kinds).flat(),
        uniformWords: optimWords(L),
      },
      u,
      bufs,
      b.grid(Math.ceil(blocks / WG1D)),
    );
  }

  /**
   * Runs a fused kernel over n elements (`inputs`/`outputs` by binding name): queued with the
   * pending group when it is the same kernel and fits, else after encoding that group.
   */
  function run(
    key: string,
    k: FusedKernel,
    n: number,
    stageWords: number[],
    consts: number[],
    inputs: Record<string, GPUBuffer>,
    outputs: Record<string, GPUBuffer>,
  ): void {
    if (n === 0) return;
    const { reads, writes } = fusedBindings(k);
    const readBufs = reads.map((r) => inputs[r]), writeBufs = writes.map((w) => outputs[w]);
    const words = [n, ...stageWords, ...consts.map(f32bits)];
    if (words.length > OPTIM_LEAF_WORDS) {
      throw new RangeError(
        `optim/${key}: ${words.length} uniform words, more than the ${OPTIM_LEAF_WORDS} of one array`,
      );
    }
    const array: PendingArray = {
      words,
      buffers: [...readBufs, ...writeBufs],
    };
    const g = pending;
    if (
      g !== null &&
      (g.key !== key || g.arrays.length >= g.capacity || writeBufs.some((x) => g.touched.has(x)) ||
        readBufs.some((x) => g.written.has(x)))
    ) encodePending();
    if (pending === null) {
      const perArray = reads.length + writes.length;
      const capacity = coalesce
        ? Math.max(1, Math.min(MAX_ARRAYS_PER_DISPATCH, Math.floor(maxBindings / perArray)))
        : 1;
      pending = { key, k, capacity, arrays: [], touched: new Set(), written: new Set() };
    }
    pending.arrays.push(array);
    for (const x of array.buffers) pending.touched.add(x);
    for (const x of writeBufs) pending.written.add(x);
    if (pending.arrays.length >= pending.capacity) encodePending();
    else b.encoder.defer(encodePending);
  }

  const vkey = (v: NoiseVariant) => `${v.draw ? `D${v.law}` : "d"}${v.nOld ? "O" : "o"}`;

  /** The noise stage alone on an update tensor u (a second dispatch). */
  function noiseStep(u: Tensor, stage: NoiseStage): { u: Tensor; noise: Tensor | null } {
    const s = stageOf(stage, "noise");
    if (!s.variant.draw && !s.variant.nOld) return { u, noise: null };
    const uo = out(u, "noise");
    const nOut = s.variant.draw ? out(u, "noise") : null;
    const inputs: Record<string, GPUBuffer> = { Ui: buf(u, "noise", "u") };
    if (stage.nOld) inputs.NOld = buf(stage.nOld, "noise", "stage.nOld");
    const outputs: Record<string, GPUBuffer> = { Uo: ob(uo) };
    if (nOut) outputs.NOut = ob(nOut);
    run(`noise/${vkey(s.variant)}`, noiseStepKernel(s.variant), u.size, s.words, [], inputs, outputs);
    return { u: uo, noise: nOut };
  }

  const fits = (k: FusedKernel) => {
    const { reads, writes } = fusedBindings(k);
    return reads.length + writes.length <= maxBindings;
  };

  /**
   * The kernel `make` builds with the noise stage fused and, when the parameter `p` is at hand, the
   * update applied (`apply`: the kernel also writes p + u); without the apply when that would bind
   * more storage buffers than the device allows, and then without the noise stage (`split`), which
   * {@linkcode finish} runs as a second dispatch.
   */
  function fuse(
    stage: NoiseStage | undefined,
    who: string,
    p: Tensor | null,
    make: (noise: NoiseVariant) => FusedKernel,
  ): { s: StageWords; k: FusedKernel; split: boolean } {
    const s = stageOf(stage, who);
    const k = make(s.variant);
    if (p !== null && fits({ ...k, apply: true })) return { s, k: { ...k, apply: true }, split: false };
    if (fits(k)) return { s, k, split: false };
    const none = stageOf(undefined, who);
    return { s: none, k: make(none.variant), split: true };
  }

  /**
   * The parameters with their update applied by a fused step (`apply`), by update tensor: taken by
   * {@linkcode addScaled} when `applyUpdates` adds that update to that parameter, so that applying
   * costs no dispatch. An entry whose parameter sum was released (by the memory scope it was made
   * in) is skipped and the sum computed again.
   */
  const applied = new WeakMap<Tensor, { p: Tensor; next: Tensor }>();

  /** The output `PNew` of a fused step that applies its update, recorded for `addScaled`. */
  function applyOutput(k: FusedKernel, p: Tensor | null, inputs: Record<string, GPUBuffer>, who: string) {
    if (!k.apply) return null;
    inputs.Pp = buf(p!, who, "p");
    return out(p!, who);
  }

  function recordApplied(u: Tensor, p: Tensor | null, next: Tensor | null): void {
    if (next) applied.set(u, { p: p!, next });
  }

  /** The update and new noise of a base step: as fused, or after the split noise dispatch. */
  function finish(
    u: Tensor,
    nOut: Tensor | null,
    split: boolean,
    stage: NoiseStage | undefined,
  ): { u: Tensor; noise: Tensor | null | undefined } {
    if (!stage) return { u, noise: undefined };
    if (!split) return { u, noise: nOut };
    const r = noiseStep(u, stage);
    if (r.u !== u) b.release(u);
    return r;
  }

  return {
    sgd(a: SgdKernelArgs): KernelResult {
      const who = "sgd";
      const g = buf(a.g, who, "g");
      const wd = a.weightDecay !== 0;
      const momentum = !a.useMomentum ? "none" : a.buf === null ? "first" : "later";
      const { s, k, split } = fuse(
        a.noise,
        who,
        a.p,
        (noise) => sgdKernel({ wd, momentum, nesterov: a.nesterov, noise }),
      );
      const inputs: Record<string, GPUBuffer> = { G: g };
      if (wd) {
        if (!a.p) throw new TypeError(`${who}: p is required when weightDecay is ${a.weightDecay}`);
        inputs.Pp = buf(a.p, who, "p");
      }
      if (momentum === "later") inputs.Buf = buf(a.buf!, who, "buf");
      if (s.variant.nOld) inputs.NOld = buf(a.noise!.nOld!, who, "noise.nOld");
      const next = applyOutput(k, a.p, inputs, who);
      const u = out(a.g, who);
      const bufOut = momentum !== "none" ? out(a.g, who) : null;
      const nOut = s.variant.draw ? out(a.g, who) : null;
      const outputs: Record<string, GPUBuffer> = { Uo: ob(u) };
      if (bufOut) outputs.BufO = ob(bufOut);
      if (nOut) outputs.NOut = ob(nOut);
      if (next) outputs.PNew = ob(next);
      recordApplied(u, a.p, next);
      run(
        `sgd/${wd ? "wd" : ""}/${momentum}/${a.nesterov ? "nest" : ""}/${vkey(s.variant)}${
          k.apply ? "/apply" : ""
        }`,
        k,
        a.g.size,
        s.words,
        [a.lr, a.momentum, 1 - a.dampening, a.weightDecay],
        inputs,
        outputs,
      );
      const r = finish(u, nOut, split, a.noise);
      return { u: r.u, buffers: { momentum: bufOut }, noise: r.noise };
    },

    adam(a: AdamKernelArgs): KernelResult {
      const who = "adam";
      const g = buf(a.g, who, "g");
      const coupledWd = a.weightDecay !== 0 && !a.decoupled;
      const decoupledWd = a.weightDecay !== 0 && a.decoupled;
      const hasM = a.m !== null, hasV = a.v !== null, hasVmax = a.vmax !== null;
      const { s, k, split } = fuse(
        a.noise,
        who,
        a.p,
        (noise) => adamKernel({ coupledWd, decoupledWd, hasM, hasV, amsgrad: a.amsgrad, hasVmax, noise }),
      );
      const inputs: Record<string, GPUBuffer> = { G: g };
      if (coupledWd || decoupledWd) {
        if (!a.p) throw new TypeError(`${who}: p is required when weightDecay is ${a.weightDecay}`);
        inputs.Pp = buf(a.p, who, "p");
      }
      if (a.m) inputs.M = buf(a.m, who, "m");
      if (a.v) inputs.V = buf(a.v, who, "v");
      if (a.amsgrad && a.vmax) inputs.Vm = buf(a.vmax, who, "vmax");
      if (s.variant.nOld) inputs.NOld = buf(a.noise!.nOld!, who, "noise.nOld");
      const next = applyOutput(k, a.p, inputs, who);
      const u = out(a.g, who), m = out(a.g, who), v = out(a.g, who);
      const vmax = a.amsgrad ? out(a.g, who) : null;
      const nOut = s.variant.draw ? out(a.g, who) : null;
      const outputs: Record<string, GPUBuffer> = { Uo: ob(u), MO: ob(m), VO: ob(v) };
      if (vmax) outputs.VmO = ob(vmax);
      if (nOut) outputs.NOut = ob(nOut);
      if (next) outputs.PNew = ob(next);
      recordApplied(u, a.p, next);
      const sc = a.lr / (1 - a.b1 ** a.t), sb2 = Math.sqrt(1 - a.b2 ** a.t);
      run(
        `adam/${coupledWd ? "l2" : decoupledWd ? "dec" : ""}/${hasM ? "m" : ""}${hasV ? "v" : ""}/${
          a.amsgrad ? (hasVmax ? "amsV" : "ams") : ""
        }/${vkey(s.variant)}${k.apply ? "/apply" : ""}`,
        k,
        a.g.size,
        s.words,
        [a.b1, 1 - a.b1, a.b2, 1 - a.b2, a.eps, sc, sb2, a.weightDecay, a.lr * a.weightDecay],
        inputs,
        outputs,
      );
      const r = finish(u, nOut, split, a.noise);
      const buffers: Record<string, Tensor | null> = { m, v };
      if (vmax) buffers.vmax = vmax;
      return { u: r.u, buffers, noise: r.noise };
    },

    noise: noiseStep,

    perturb(p: Tensor, law: NoiseLaw, scale: number, key: StreamKey): Tensor {
      const pb = buf(p, "perturb", "p");
      const y = out(p, "perturb");
      lawIndex(law, "perturb"); // validates
      run(
        `perturb/${law}`,
        perturbKernel(law),
        p.size,
        [...keyWords(key), 0, f32bits(scale), 0],
        [],
        { Pp: pb },
        { Uo: ob(y) },
      );
      return y;
    },

    addScaled(x: Tensor, y: Tensor, alpha: number): Tensor {
      const xb = buf(x, "addScaled", "a"), yb = buf(y, "addScaled", "b");
      const done = alpha === 1 ? applied.get(y) : undefined;
      if (done && done.p === x && !b.isReleased(done.next)) {
        applied.delete(y);
        return done.next; // the fused step wrote x + y already
      }
      const o = out(x, "addScaled");
      const mode = alpha === 1 ? 1 : alpha === -1 ? -1 : 0;
      run(`addScaled/${mode}`, addScaledKernel(mode), x.size, [0, 0, 0, 0, 0, 0, 0], [alpha], {
        A: xb,
        B: yb,
      }, {
        Uo: ob(o),
      });
      return o;
    },
  };
}
