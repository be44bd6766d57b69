/**
 * Inverted dropout with a counter-based mask: a pure function of (seed, path, step), identical on
 * every device, so a run is reproducible and a resumed run draws the same masks.
 *
 * @module
 */
import type { DropoutMaskSpec } from "../backend.ts";
import type { Tensor } from "../tensor.ts";
import { hashString } from "../random/philox.ts";
import { isTracked } from "../tape.ts";
import { backendFor } from "./dispatch.ts";
import { mul } from "./elementwise.ts";

/** The key of a dropout mask: one mask per (seed, layer path, step). */
export interface DropoutKey {
  /** The run's seed (an integer; its low 32 bits key the generator). */
  seed: number;
  /** The training step, an integer in [0, 2^32). */
  step: number;
  /** The layer's path in the model (e.g. `"features.3"`), hashed into the key. */
  path: string;
}

/**
 * Counter word 2 of every dropout draw ("drop" in ASCII): keeps dropout masks apart from the weight
 * noise, whose streams use the same key layout with counter word 2 = 0.
 */
export const DROPOUT_STREAM = 0x64726f70;

/**
 * The mask parameters of {@linkcode dropout}: keep when u ≥ rate, where u = (w >>> 8)·2^-24 is the
 * 24-bit uniform of the element's Philox word w; exactly when w >>> 8 ≥ ⌈rate·2^24⌉ (both sides are
 * integers times 2^-24), which devices test in integers.
 */
export function dropoutMaskSpec(
  rate: number,
  key: DropoutKey,
  round: (v: number) => number = Math.fround,
): DropoutMaskSpec {
  return {
    k0: key.seed >>> 0,
    k1: hashString(key.path),
    c1: key.step >>> 0,
    c2: DROPOUT_STREAM,
    threshold: Math.ceil(rate * 16777216),
    scale: rate >= 1 ? 0 : round(1 / (1 - rate)),
  };
}

function checkKey(key: DropoutKey): void {
  if (key === null || typeof key !== "object") {
    throw new TypeError(
      `dropout: key must be { seed, step, path }, got ${key === null ? "null" : typeof key}`,
    );
  }
  if (!Number.isInteger(key.seed)) {
    throw new RangeError(`dropout: key.seed must be an integer, got ${String(key.seed)}`);
  }
  if (!Number.isInteger(key.step) || key.step < 0 || key.step > 0xffffffff) {
    throw new RangeError(`dropout: key.step must be an integer in [0, 2^32), got ${String(key.step)}`);
  }
  if (typeof key.path !== "string") {
    throw new TypeError(`dropout: key.path must be a string, got ${typeof key.path}`);
  }
}

/**
 * Inverted dropout: y = x · mask / (1 − rate), each element kept with probability 1 − rate. The
 * mask is drawn from Philox4x32-10 with key (seed, hashString(path)) and counter (⌊i/4⌋, step,
 * {@linkcode DROPOUT_STREAM}, 0), lane i mod 4: element i is kept when the top 24 bits of its word,
 * as a uniform u in [0, 1), satisfy u ≥ rate. The same key gives the same mask on the CPU and on
 * WebGPU, bit for bit. rate 0 returns `x` itself; rate 1 gives zeros. VJP: g · mask / (1 − rate).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { dropout, ones } from "@nvrm/core";
 * const y = dropout(ones([1000]), 0.5, { seed: 0, step: 3, path: "block.drop" });
 * const kept = [...y.dataSync()].filter((v) => v !== 0);
 * assert.ok(kept.every((v) => v === 2)); // kept values scaled by 1/(1 − 0.5)
 * assert.ok(kept.length > 400 && kept.length < 600);
 * ```
 */
export function dropout(x: Tensor, rate: number, key: DropoutKey): Tensor {
  const b = backendFor("dropout", { x });
  if (typeof rate !== "number" || !(rate >= 0 && rate <= 1)) {
    throw new RangeError(`dropout: rate must be a number in [0, 1], got ${String(rate)}`);
  }
  checkKey(key);
  if (rate === 0) return x;
  const round = x.dtype === "float64" ? (v: number) => v : Math.fround;
  const mask = b.dropoutMask(x.shape, x.dtype, dropoutMaskSpec(rate, key, round));
  const y = mul(x, mask);
  if (!isTracked([x])) b.release(mask); // only the backward pass reads it
  return y;
}
