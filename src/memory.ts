/**
 * Memory: one scope mechanism for the whole library. A scope records the tensors created while a
 * synchronous function runs and, when it returns, releases every one of them that its result does
 * not hold; `valueAndGrad`, {@linkcode tidy}, `evaluate` and `fit` are all built on it.
 * {@linkcode dispose} releases the tensors of a tree, and `using t = …` releases one tensor at the
 * end of a block (`Tensor[Symbol.dispose]`).
 *
 * Releasing returns a GPU buffer to the pool at once instead of when the tensor is garbage
 * collected. On the CPU it returns large typed arrays to the storage pool once no other tensor
 * shares them (`src/cpu/storage_pool.ts`), and leaves small ones to the garbage collector, so code
 * written for the GPU runs unchanged on the CPU. A released tensor must not be used afterwards on
 * either device (reading one whose storage was released to a pool throws).
 *
 * Scopes nest: what an inner scope keeps belongs to the enclosing scope, which releases it in turn
 * unless its own result holds it. Inside a function being differentiated (a tape is recording) a
 * scope releases nothing: the backward pass may still need the tensors, and `valueAndGrad` releases
 * them once it is done.
 *
 * @module
 */
import { getBackend } from "./backend.ts";
import { activeTape } from "./tape.ts";
import { observeTensorCreation, Tensor } from "./tensor.ts";

/** The open scopes, innermost last; each lists the tensors created while it was innermost. */
const scopes: Tensor[][] = [];
let stopObserving: (() => void) | null = null;

function openScope(): Tensor[] {
  const created: Tensor[] = [];
  scopes.push(created);
  stopObserving ??= observeTensorCreation((t) => scopes[scopes.length - 1].push(t));
  return created;
}

function closeScope(): void {
  scopes.pop();
  if (scopes.length === 0 && stopObserving !== null) {
    stopObserving();
    stopObserving = null;
  }
}

/** Releases `t`'s device storage (idempotent; on the CPU only large arrays are recycled). */
function release(t: Tensor): void {
  getBackend(t.device).release(t);
}

/**
 * The tensors found in `x`: a tensor, or arrays and plain objects containing tensors at any depth
 * (optimizer states included). Other values (numbers, strings, null, class instances) are skipped,
 * so results like `{ loss, step: 3 }` work. Each tensor is listed once. Internal.
 */
export function tensorsIn(x: unknown): Tensor[] {
  const out = new Set<Tensor>();
  const seen = new Set<object>();
  const walk = (node: unknown): void => {
    if (node instanceof Tensor) {
      out.add(node);
      return;
    }
    if (node === null || typeof node !== "object" || seen.has(node)) return;
    seen.add(node);
    if (Array.isArray(node)) {
      for (const c of node) walk(c);
      return;
    }
    const proto = Object.getPrototypeOf(node);
    if (proto === Object.prototype || proto === null) {
      for (const k of Object.keys(node)) walk((node as Record<string, unknown>)[k]);
    }
  };
  walk(x);
  return [...out];
}

/**
 * Runs `fn` in a scope and returns its result: every tensor created while `fn` runs that the
 * result does not hold (see {@linkcode tensorsIn}) is released; what the result holds passes to
 * the enclosing scope, if any. When `fn` throws, everything it created is released. `who` names
 * the caller in errors. The one scope implementation of the library. Internal.
 */
export function withScope<T>(fn: () => T, who: string): T {
  const created = openScope();
  let out: T;
  try {
    out = fn();
  } catch (e) {
    closeScope();
    settle(created, new Set());
    throw e;
  }
  closeScope();
  if (out instanceof Promise) {
    // The function goes on after its first await, outside the scope, possibly with the tensors
    // it made so far: release nothing (they are garbage collected) and say what to do.
    out.catch(() => {}); // the TypeError below is the error to report
    throw new TypeError(
      `${who}: the function must be synchronous (it returned a Promise); await outside ${who}`,
    );
  }
  settle(created, new Set(tensorsIn(out)));
  return out;
}

/**
 * Ends a scope: releases the tensors it created that are not in `keep` and hands the others to the
 * enclosing scope. Inside a function being differentiated (a tape is recording) nothing is
 * released: the backward pass may need every tensor, so all of them go to the enclosing scope
 * (the one of `valueAndGrad`, which releases them once the gradients are computed).
 */
function settle(created: readonly Tensor[], keep: ReadonlySet<Tensor>): void {
  const parent = scopes.length > 0 ? scopes[scopes.length - 1] : null;
  const recording = activeTape() !== null;
  for (const t of created) {
    if (recording || keep.has(t)) parent?.push(t);
    else release(t);
  }
}

/**
 * Runs `fn` and releases every tensor it created except those in its result (a tensor, or arrays
 * and plain objects containing tensors; other values pass through). Use it around code outside
 * `valueAndGrad` that runs many ops, such as evaluation, so that GPU memory is returned at once
 * rather than when the garbage collector runs. `fn` must be synchronous. On the CPU releasing
 * recycles large arrays (small ones are left to the garbage collector), so the same code runs on
 * both devices. When `fn` throws, everything it created is
 * released. Scopes nest: an inner `tidy`'s result belongs to the outer one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { matmul, relu, tensor, tidy } from "@nvrm/core";
 * const x = tensor([[1, -2]]), w1 = tensor([[1, 0], [0, 1]]), w2 = tensor([[2], [3]]);
 * const { y, n } = tidy(() => ({ y: matmul(relu(matmul(x, w1)), w2), n: 1 })); // the hidden layer is released
 * assert.deepEqual([...y.dataSync()], [2]);
 * assert.equal(n, 1);
 * ```
 */
export function tidy<T>(fn: () => T): T {
  if (typeof fn !== "function") throw new TypeError(`tidy: fn must be a function, got ${typeof fn}`);
  return withScope(fn, "tidy");
}

/**
 * Releases the device storage of every tensor found in `x` (a tensor, or arrays and plain objects
 * containing tensors, optimizer states included) except those also found in `keep`; on the CPU
 * large arrays go back to the storage pool and small ones are left to the garbage collector.
 * Idempotent. Released tensors must not be used afterwards (a released GPU tensor, or a CPU tensor
 * whose large array was released, throws when read). Rarely needed:
 * `valueAndGrad`, {@linkcode tidy} and `fit` release what they create, and tensors that are
 * garbage collected return their buffers too. A hand-written training loop on the GPU that wants
 * memory flat without waiting for the garbage collector releases the previous step's params and
 * state once the step has made the next ones.
 *
 * @example
 * ```ts
 * import { applyUpdates, sgd } from "@nvrm/core/optim";
 * import { dispose, mul, sum, tensor, valueAndGrad } from "@nvrm/core";
 * const opt = sgd({ lr: 0.1 });
 * let params = { w: tensor([1, 2]) }, state = opt.init(params);
 * const loss = (p: typeof params) => sum(mul(p.w, p.w));
 * for (let i = 0; i < 3; i++) {
 *   const { grads } = valueAndGrad(loss)(params);
 *   const r = opt.update(grads, state, params);
 *   const next = applyUpdates(params, r.updates);
 *   dispose([params, state, grads, r.updates], [next, r.state]);
 *   params = next;
 *   state = r.state;
 * }
 * ```
 */
export function dispose(x: unknown, keep?: unknown): void {
  const kept = keep === undefined ? null : new Set(tensorsIn(keep));
  for (const t of tensorsIn(x)) if (kept === null || !kept.has(t)) release(t);
}
