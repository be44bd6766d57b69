/**
 * The non-finite guard of {@linkcode fit}: the error it throws when training diverges, and the
 * per-device check of each step's loss and updates.
 *
 * On the CPU every step is scanned as it is taken (the arrays are on the host already), so a
 * divergent step is known at once. On WebGPU the loop never waits on the device inside an epoch:
 * each step's updates and loss are checked by a kernel that marks a guard word on the device
 * (`FiniteKernels` of `src/backend.ts`), and the epoch's guard is read back together with the
 * epoch's loss, in the same single wait.
 *
 * @module
 */
import { type FiniteKernels, getBackend } from "../backend.ts";
import { zeros } from "../creation.ts";
import { dispose } from "../memory.ts";
import { firstNonFinite } from "../cpu/finite.ts";
import { type Device, Tensor } from "../tensor.ts";
import { type TensorTree, treeLeaves } from "../tree.ts";
import type { EpochMetrics } from "./loop.ts";

/**
 * What {@linkcode fit} does when a step's loss or updates hold a NaN or an infinity:
 *
 * - `"stop"` (default): throw a {@linkcode NonFiniteError} carrying the last finite params, state
 *   and history;
 * - `"skip-step"`: drop that step (params and optimizer state keep their previous values) and count
 *   it in `EpochMetrics.skippedSteps`;
 * - `"ignore"`: no check (the weights become NaN and stay so).
 */
export type OnNonFinite = "stop" | "skip-step" | "ignore";

/** Constructor fields of {@linkcode NonFiniteError}. */
export interface NonFiniteErrorInit<P, S> {
  /** 1-based epoch of the first non-finite step. */
  epoch: number;
  /** 1-based number (since the start of training) of the first non-finite step. */
  step: number;
  /** 1-based position of that step inside its epoch. */
  stepInEpoch: number;
  /** Steps per epoch. */
  stepsPerEpoch: number;
  /** Dotted path of the first non-finite update (tree order), or `"loss"` when only the loss was. */
  path: string;
  /** The step after which `params`, `rawParams` and `state` were taken (0: the initial ones). */
  lastFiniteStep: number;
  /** The last finite noise-free weights (`optimizer.clean(rawParams, state)`). */
  params: P;
  /** The last finite params in the optimizer's representation (pairs with `state`). */
  rawParams: P;
  /** The optimizer state that pairs with `rawParams`. */
  state: S;
  /**
   * The model's non-trainable state (a `StatefulModel`'s running statistics) that pairs with
   * `rawParams`; undefined for a plain forward.
   */
  modelState?: unknown;
  /** The metrics of the epochs completed before the divergence. */
  history: EpochMetrics[];
}

/**
 * Thrown by {@linkcode fit} (with the default `onNonFinite: "stop"`) when a step's loss or updates
 * hold a NaN or an infinity. Its one-line message names the epoch, the step and the path of the
 * first non-finite update; its fields keep the last finite weights, state and history, so nothing
 * trained before the divergence is lost.
 *
 * On the CPU the kept weights are those just before the divergent step (`lastFiniteStep = step −
 * 1`). On WebGPU the check is read back once per epoch, so they are those of the start of the
 * epoch (`fit` keeps that copy alive during each epoch in this mode).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fit, matmul, NonFiniteError, zeros } from "@nvrm/core";
 * import { sgd } from "@nvrm/core/optim";
 * import { makeDataset } from "@nvrm/core/data";
 * // inputs of 1e30 and lr 1e10: the first update is about 5e39, past float32's range
 * const data = makeDataset(new Float32Array([1e30, 0, 0, 1e30]), new Int32Array([0, 1]), [2], 2);
 * try {
 *   await fit({
 *     params: { w: zeros([2, 2]) }, optimizer: sgd({ lr: 1e10 }), forward: (p, x) => matmul(x, p.w),
 *     train: data, epochs: 3, batchSize: 1, logger: null,
 *   });
 *   assert.fail("expected a NonFiniteError");
 * } catch (e) {
 *   assert.ok(e instanceof NonFiniteError);
 *   assert.match(e.message, /^fit: non-finite .* at step \d+ \(epoch 1, step \d+ of 2\)/);
 *   assert.equal(e.lastFiniteStep, e.step - 1); // on the CPU: the weights just before it
 * }
 * ```
 */
export class NonFiniteError<P = any, S = any> extends Error {
  /** 1-based epoch of the first non-finite step. */
  readonly epoch: number;
  /** 1-based number (since the start of training) of the first non-finite step. */
  readonly step: number;
  /** 1-based position of that step inside its epoch. */
  readonly stepInEpoch: number;
  /** Dotted path of the first non-finite update (tree order), or `"loss"` when only the loss was. */
  readonly path: string;
  /** The step after which `params`, `rawParams` and `state` were taken (0: the initial ones). */
  readonly lastFiniteStep: number;
  /** The last finite noise-free weights. */
  readonly params: P;
  /** The last finite params in the optimizer's representation (with `state`, to resume). */
  readonly rawParams: P;
  /** The optimizer state that pairs with `rawParams`. */
  readonly state: S;
  /**
   * The model's non-trainable state (a `StatefulModel`'s running statistics, e.g. batch-norm means
   * and variances) that pairs with `rawParams`; undefined for a plain forward.
   */
  readonly modelState: unknown;
  /** The metrics of the epochs completed before the divergence. */
  readonly history: EpochMetrics[];

  /** An error for the divergence described by `init`. */
  constructor(init: NonFiniteErrorInit<P, S>) {
    const what = init.path === "loss" ? "loss" : `update of ${JSON.stringify(init.path)}`;
    super(
      `fit: non-finite ${what} at step ${init.step} (epoch ${init.epoch}, step ${init.stepInEpoch} of ` +
        `${init.stepsPerEpoch}); stopped, the weights after step ${init.lastFiniteStep} are kept in the ` +
        `error's params (lower the learning rate, clip the gradients or pass onNonFinite: "skip-step")`,
    );
    this.name = "NonFiniteError";
    this.epoch = init.epoch;
    this.step = init.step;
    this.stepInEpoch = init.stepInEpoch;
    this.path = init.path;
    this.lastFiniteStep = init.lastFiniteStep;
    this.params = init.params;
    this.rawParams = init.rawParams;
    this.state = init.state;
    this.modelState = init.modelState;
    this.history = init.history;
  }
}

/** The path reported when only the loss is non-finite. */
const LOSS = "loss";

/** What the epoch's guard says once read back. */
export interface GuardReport {
  /** The first non-finite step of the epoch (0-based inside it) and its path; null when none. */
  first: { stepInEpoch: number; path: string } | null;
  /** Steps marked non-finite (in "skip-step" mode: the steps skipped). */
  count: number;
}

/**
 * The per-step check of {@linkcode fit}. Leaves are coded in tree order (the order of `treeLeaves`),
 * the loss last; on a device the code of leaf k at step b of an epoch is b·(L + 1) + k, so the
 * smallest code marked is the first step's first leaf.
 */
export class StepGuard {
  readonly mode: OnNonFinite;
  readonly device: Device;
  /** The device's guard kernels; null on the CPU (or a device without them: epoch-level only). */
  readonly kernels: FiniteKernels | null;
  #paths: string[] = [];
  #epoch: Tensor | null = null;

  /** A guard for steps on `device`. */
  constructor(mode: OnNonFinite, device: Device) {
    if (mode !== "stop" && mode !== "skip-step" && mode !== "ignore") {
      throw new RangeError(
        `fit: onNonFinite must be "stop", "skip-step" or "ignore", got ${JSON.stringify(mode)}`,
      );
    }
    this.mode = mode;
    this.device = device;
    this.kernels = mode === "ignore" || device === "cpu" ? null : getBackend(device).finite ?? null;
  }

  /** True when the check runs on the host, at once (the CPU). */
  get immediate(): boolean {
    return this.mode !== "ignore" && this.kernels === null;
  }

  /** Starts an epoch: a zeroed guard on the device (none on the host). */
  beginEpoch(): void {
    if (this.kernels) this.#epoch = zeros([2], { device: this.device });
  }

  /**
   * Host check of one step: the path of the first non-finite update (tree order), `"loss"` when
   * only the loss is non-finite, null when all is finite. Reads the arrays: CPU tensors only.
   */
  checkNow(loss: Tensor, updates: TensorTree): string | null {
    for (const { path, tensor } of treeLeaves(updates, "fit")) {
      if (tensor.device === "cpu" && firstNonFinite(tensor.storage as ArrayLike<number>) >= 0) {
        return path === "" ? "(root)" : path;
      }
    }
    return loss.device === "cpu" && !Number.isFinite(loss.item()) ? LOSS : null;
  }

  /**
   * Device check of step `b` (0-based inside the epoch), encoded without waiting. "stop": marks the
   * epoch guard and returns null. "skip-step": marks a new step guard, folds it into the epoch's
   * and returns it, for {@linkcode StepGuard.select}.
   */
  mark(loss: Tensor, updates: TensorTree, b: number): Tensor | null {
    const k = this.kernels!;
    const leaves = treeLeaves(updates, "fit");
    if (b === 0 || this.#paths.length !== leaves.length) {
      this.#paths = leaves.map((l) => (l.path === "" ? "(root)" : l.path));
    }
    const L1 = leaves.length + 1;
    if (this.mode === "stop") {
      leaves.forEach((l, i) => k.mark(l.tensor, this.#epoch!, b * L1 + i));
      k.mark(loss, this.#epoch!, b * L1 + leaves.length);
      return null;
    }
    const flag = zeros([1], { device: this.device });
    leaves.forEach((l, i) => k.mark(l.tensor, flag, i));
    k.mark(loss, flag, leaves.length);
    k.fold(flag, this.#epoch!, b * L1);
    return flag;
  }

  /**
   * `flag ? prev : next` over a pair of trees of the same structure (params, optimizer states:
   * tensors are selected on the device; other values, such as step counters, are `next`'s; a
   * null buffer of `prev` stands for zeros).
   */
  select<T>(flag: Tensor, prev: T, next: T): T {
    const k = this.kernels!;
    const walk = (a: unknown, n: unknown): unknown => {
      if (n instanceof Tensor) {
        const p = a instanceof Tensor ? a : zeros(n.shape, { device: n.device, dtype: n.dtype });
        return p === n ? n : k.select(flag, p, n);
      }
      if (Array.isArray(n)) return n.map((c, i) => walk(Array.isArray(a) ? a[i] : undefined, c));
      if (n !== null && typeof n === "object" && Object.getPrototypeOf(n) === Object.prototype) {
        const src = (a !== null && typeof a === "object" ? a : {}) as Record<string, unknown>;
        const out: Record<string, unknown> = {};
        for (const [key, c] of Object.entries(n)) out[key] = walk(src[key], c);
        return out;
      }
      return n;
    };
    return walk(prev, next) as T;
  }

  /** The epoch guard to read back with the epoch's loss (null on the host). */
  get epochGuard(): Tensor | null {
    return this.#epoch;
  }

  /** Decodes the epoch guard's words (as read back: float32 whose bits are u32) and releases it. */
  endEpoch(words: Float32Array | null): GuardReport {
    dispose(this.#epoch);
    this.#epoch = null;
    if (words === null) return { first: null, count: 0 };
    const u = new Uint32Array(words.buffer, words.byteOffset, 2);
    const count = u[1];
    if (u[0] === 0) return { first: null, count };
    const code = 0xffffffff - u[0];
    const L1 = this.#paths.length + 1;
    const k = code % L1;
    return {
      first: { stepInEpoch: Math.floor(code / L1), path: k < this.#paths.length ? this.#paths[k] : LOSS },
      count,
    };
  }
}
