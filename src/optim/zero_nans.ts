/**
 * `zeroNans`: replace the non-finite entries of the gradients by 0 and count them in the state;
 * `nonFiniteCounts` reads the counts back.
 *
 * On the CPU one pass over the typed array counts and replaces. On other devices the step needs no
 * read-back: `u` is the backend's unary `zeroNonFinite` (x where finite, else +0, as on the CPU; no
 * arithmetic can do it, since every op on a NaN gives NaN), and `count = Σ(1 − m)` with the finite
 * mask `m = (|g| ≤ F32_MAX)` (0 for NaN and ±Infinity).
 *
 * @module
 */
import { abs, add, ge, sub, sum } from "../ops/mod.ts";
import { getBackend } from "../backend.ts";
import { Tensor } from "../tensor.ts";
import type { TypedArray } from "../types.ts";
import { makeLeafwise } from "./leafwise.ts";
import type { ChainState, GradientTransformation, MaskedState, TransformState } from "./types.ts";

/** The non-finite counts of one parameter in a {@linkcode ZeroNansState}. */
export interface NonFiniteCount {
  /** Entries replaced by the most recent update (a scalar tensor; `null` for none). */
  readonly nonFinite: Tensor | null;
  /** Entries replaced since `init` (a scalar tensor; `null` for none). */
  readonly nonFiniteTotal: Tensor | null;
}

/** State of {@linkcode zeroNans}: the built-in layout plus the counts by parameter path. */
export interface ZeroNansState extends TransformState {
  /** The non-finite counts, by parameter path. */
  readonly counts: Readonly<Record<string, NonFiniteCount>>;
}

/** The largest finite float32. */
const F32_MAX = 3.4028234663852886e38;

const scalar = (v: number, like: Tensor): Tensor =>
  new Tensor(like.dtype === "float64" ? new Float64Array([v]) : new Float32Array([v]), [], like.dtype, "cpu");

/** CPU: one pass; the input itself when every entry is finite. */
function zeroCpu(g: Tensor): { u: Tensor; count: number } {
  const a = g.storage as TypedArray;
  let n = 0;
  for (let i = 0; i < a.length; i++) {
    const v = a[i];
    if (v - v !== 0) n++; // v − v is 0 for a finite v, NaN otherwise
  }
  if (n === 0) return { u: g, count: 0 };
  const out = a instanceof Float64Array ? new Float64Array(a.length) : new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) {
    const v = a[i];
    out[i] = v - v === 0 ? v : 0;
  }
  return { u: new Tensor(out, g.shape, g.dtype, "cpu"), count: n };
}

/** Any device, from ops (see the module comment). */
function zeroOps(g: Tensor): { u: Tensor; count: Tensor } {
  const m = ge(F32_MAX, abs(g));
  return { u: getBackend(g.device).unary("zeroNonFinite", g), count: sum(sub(1, m)) };
}

/**
 * Replaces every NaN, +Infinity and −Infinity entry of the gradients by 0 (optax's `zero_nans`,
 * which also covers infinities here) and counts them:
 *
 *     updates[i] = isFinite(g[i]) ? g[i] : 0
 *
 * Per parameter path, `state.counts` keeps `nonFinite`, the number of entries replaced by the most
 * recent update, and `nonFiniteTotal`, the number since `init` (scalar tensors of the parameter's
 * dtype and device, `null` for none; float32 counts are exact up to 2^24). Read them with
 * {@linkcode nonFiniteCounts}. Put it first in a chain, before clipping and the base optimizer:
 * `chain(zeroNans(), clipByGlobalNorm(1), vsgd({ lr: 0.1 }))`. It is for rare bad entries: the
 * gradient of a diverged model is non-finite everywhere, and zeroing it stops the weights instead
 * of repairing anything, so watch the counts (and the loss).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tensor } from "@nvrm/core";
 * import { nonFiniteCounts, zeroNans } from "@nvrm/core/optim";
 * const z = zeroNans();
 * const g = { w: tensor([1, NaN, -Infinity, 2], [4], { dtype: "float64" }) };
 * const { updates, state } = z.update(g, z.init(g));
 * assert.deepEqual([...updates.w.dataSync()], [1, 0, 0, 2]);
 * assert.deepEqual(await nonFiniteCounts(state), { last: 2, total: 2, paths: ["w"] });
 * ```
 */
export function zeroNans(): GradientTransformation<ZeroNansState> {
  const none: NonFiniteCount = Object.freeze({ nonFinite: null, nonFiniteTotal: null });
  return makeLeafwise({
    kind: "zeroNans",
    hparams: () => ({}),
    initExtra: (paths) => ({ counts: Object.freeze(Object.fromEntries(paths.map((p) => [p, none]))) }),
    apply({ grads, state }) {
      const old = (state as ZeroNansState).counts;
      const updates = new Map<string, Tensor>();
      const counts: Record<string, NonFiniteCount> = {};
      for (const [path, g] of grads) {
        const prev = old?.[path]?.nonFiniteTotal ?? null;
        if (g.device === "cpu") {
          const r = zeroCpu(g);
          updates.set(path, r.u);
          const total = r.count === 0
            ? prev
            : scalar(r.count + (prev ? (prev.storage as TypedArray)[0] : 0), g);
          counts[path] = Object.freeze({
            nonFinite: r.count === 0 ? null : scalar(r.count, g),
            nonFiniteTotal: total,
          });
        } else {
          const r = zeroOps(g);
          updates.set(path, r.u);
          counts[path] = Object.freeze({
            nonFinite: r.count,
            nonFiniteTotal: prev ? add(prev, r.count) : r.count,
          });
        }
      }
      return { updates, extra: { counts: Object.freeze(counts) } };
    },
  }) as GradientTransformation<ZeroNansState>;
}

/**
 * The counts of non-finite gradient entries that the {@linkcode zeroNans} transformations in an
 * optimizer state replaced: `last`, in the most recent update; `total`, since `init`; `paths`, the
 * parameters that had some in the most recent update. Walks chains and masked states; reads GPU
 * counts back (one wait for all).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tensor } from "@nvrm/core";
 * import { chain, nonFiniteCounts, sgd, zeroNans } from "@nvrm/core/optim";
 * const opt = chain(zeroNans(), sgd({ lr: 0.1 }));
 * const params = { w: tensor([1, 2]) };
 * const { state } = opt.update({ w: tensor([NaN, 1]) }, opt.init(params), params);
 * assert.deepEqual(await nonFiniteCounts(state), { last: 1, total: 1, paths: ["w"] });
 * ```
 */
export async function nonFiniteCounts(
  state: unknown,
): Promise<{ last: number; total: number; paths: string[] }> {
  const reads: Promise<{ path: string; last: number; total: number }>[] = [];
  const value = async (t: Tensor | null | undefined) => (t ? (await t.data())[0] : 0);
  const walk = (s: unknown) => {
    if (s === null || typeof s !== "object") return;
    const k = (s as { kind?: unknown }).kind;
    if (k === "chain") (s as ChainState).inner.forEach(walk);
    else if (k === "masked") walk((s as MaskedState).inner);
    else if (k === "zeroNans") {
      for (const [path, c] of Object.entries((s as ZeroNansState).counts ?? {})) {
        reads.push(
          Promise.all([value(c.nonFinite), value(c.nonFiniteTotal)]).then((
            [last, total],
          ) => ({
            path,
            last,
            total,
          })),
        );
      }
    }
  };
  walk(state);
  const all = await Promise.all(reads);
  return {
    last: all.reduce((a, r) => a + r.last, 0),
    total: all.reduce((a, r) => a + r.total, 0),
    paths: all.filter((r) => r.last > 0).map((r) => r.path),
  };
}
