/**
 * Softmax, log-softmax and the mean cross-entropy loss, with their VJPs.
 *
 * @module
 */
import { fmtShape, Tensor } from "../tensor.ts";
import { isTracked, record } from "../tape.ts";
import { backendFor, normalizeAxis } from "./dispatch.ts";
import { exp, mul, sub } from "./elementwise.ts";
import { sum } from "./reduce.ts";
import { transpose } from "./shape.ts";

/** Applies a last-axis kernel along `axis` by moving that axis last and back. */
function alongAxis(x: Tensor, axis: number, op: string, f: (t: Tensor) => Tensor): Tensor {
  const ax = normalizeAxis(op, axis, x.rank);
  if (ax === x.rank - 1) return f(x);
  const perm = x.shape.map((_, i) => i);
  perm[ax] = x.rank - 1;
  perm[x.rank - 1] = ax;
  return transpose(f(transpose(x, perm)), perm);
}

/**
 * softmax(x)ᵢ = e^{xᵢ} / Σⱼ e^{xⱼ} along `axis` (default: last). VJP: y ⊙ (g − Σ g ⊙ y).
 *
 * @example
 * ```ts
 * import { softmax, tensor } from "@nvrm/core";
 * console.log(softmax(tensor([1, 1, 1, 1])).dataSync()); // [0.25, 0.25, 0.25, 0.25]
 * ```
 */
export function softmax(x: Tensor, axis = -1): Tensor {
  const b = backendFor("softmax", { x });
  return alongAxis(x, axis, "softmax", (t) => {
    const y = b.softmax(t);
    return record(y, [t], (g) => [mul(y, sub(g, sum(mul(g, y), -1, true)))]);
  });
}

/** log softmax(x) along `axis` (default: last), computed stably. VJP: g − softmax(x) ⊙ Σ g. */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  const b = backendFor("logSoftmax", { x });
  return alongAxis(x, axis, "logSoftmax", (t) => {
    const y = b.logSoftmax(t);
    return record(y, [t], (g) => [sub(g, mul(exp(y), sum(g, -1, true)))]);
  });
}

/** Integer class labels: an Int32Array, a number array, or a CPU tensor of integral values. */
export type Labels = Int32Array | readonly number[] | Tensor;

/** Checks labels against `[n, c]` logits and returns them as an Int32Array. */
export function toLabels(op: string, labels: Labels, n: number, c: number): Int32Array {
  let arr: ArrayLike<number>;
  if (labels instanceof Tensor) {
    if (labels.device !== "cpu") {
      throw new Error(`${op}: labels must be on the CPU (host integers), got ${labels.device}`);
    }
    arr = labels.dataSync();
  } else if (labels instanceof Int32Array || Array.isArray(labels)) arr = labels as ArrayLike<number>;
  else {throw new TypeError(
      `${op}: labels must be an Int32Array, a number[] or a Tensor, got ${typeof labels}`,
    );}
  if (arr.length !== n) throw new RangeError(`${op}: got ${arr.length} labels for ${n} rows of logits`);
  for (let i = 0; i < arr.length; i++) {
    const v = arr[i];
    if (!Number.isInteger(v) || v < 0 || v >= c) {
      throw new RangeError(
        `${op}: labels[${i}] = ${v} is out of range for ${c} classes (expected an integer in [0, ${c}))`,
      );
    }
  }
  return arr instanceof Int32Array ? arr : Int32Array.from(arr);
}

/**
 * Mean cross-entropy of logits `[N, C]` against integer labels:
 * L = (1/N) Σₙ (log Σⱼ e^{x_{n j}} − x_{n, yₙ}). VJP: (softmax(x) − onehot(y)) · g / N.
 *
 * @example
 * ```ts
 * import { crossEntropy, tensor } from "@nvrm/core";
 * const loss = crossEntropy(tensor([[0, 0], [0, 0]]), [0, 1]);
 * console.log(loss.item()); // ln 2 ≈ 0.6931
 * ```
 */
export function crossEntropy(logits: Tensor, labels: Labels): Tensor {
  const b = backendFor("crossEntropy", { logits });
  if (logits.rank !== 2) {
    throw new RangeError(`crossEntropy: logits must be [N, C], got ${fmtShape(logits.shape)}`);
  }
  const [n, c] = logits.shape;
  const lab = toLabels("crossEntropy", labels, n, c);
  const { loss, probs } = b.crossEntropy(logits, lab);
  if (!isTracked([logits])) {
    b.release(probs); // only the backward pass reads it (evaluation, metrics)
    return loss;
  }
  return record(loss, [logits], (g) => [b.crossEntropyGrad(probs, lab, g)]);
}
