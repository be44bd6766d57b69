/**
 * The input check shared by the image models built from layers (internal): a batch `[N, C, H, W]`
 * matching the model's input shape, or the flat layout `[N, C·H·W]` reshaped; anything else is a
 * RangeError naming the model, its first layer and the fix.
 *
 * @module
 */
import { reshape } from "../ops/shape.ts";
import { fmtShape, shapeSize, Tensor } from "../tensor.ts";

/** `x` as images of shape `chw` for the model `name` whose first layer is `first` (path and kind). */
export function imageInput(
  name: string,
  first: string,
  chw: readonly [number, number, number],
  x: Tensor,
): Tensor {
  if (!(x instanceof Tensor)) {
    throw new TypeError(`${name}: x must be a Tensor, got ${x === null ? "null" : typeof x}`);
  }
  const [c, h, w] = chw;
  if (x.rank === 4 && x.shape[1] === c && x.shape[2] === h && x.shape[3] === w) return x;
  if (x.rank === 2 && x.shape[1] === c * h * w) return reshape(x, [x.shape[0], c, h, w]);
  const what = x.rank === 4 && x.shape[1] !== c
    ? `its first layer ${first} takes ${c} input channels, got ${x.shape[1]} (build it with { inChannels: ${
      x.shape[1]
    } })`
    : x.rank === 4
    ? `it was built for ${h}×${w} inputs, got ${x.shape[2]}×${
      x.shape[3]
    } (build it with { inputShape: [${c}, ${x.shape[2]}, ${x.shape[3]}] } where that size is supported)`
    : x.rank === 2
    ? `${x.shape[1]} numbers per example, expected ${c * h * w} = ${c}·${h}·${w}`
    : `${x.rank < 2 ? "add the batch axis" : `${shapeSize(x.shape.slice(1))} numbers per example`}`;
  throw new RangeError(
    `${name}: x must be [N, ${c}, ${h}, ${w}] (image layout) or [N, ${c * h * w}] (flat layout), got ${
      fmtShape(x.shape)
    }: ${what}`,
  );
}

/** Checks an `inputShape` option: three positive integers. */
export function checkInputShape(name: string, chw: readonly number[]): [number, number, number] {
  if (!Array.isArray(chw) || chw.length !== 3 || chw.some((d) => !Number.isInteger(d) || d < 1)) {
    throw new RangeError(
      `${name}: inputShape must be [C, H, W] of positive integers, got ${JSON.stringify(chw)}`,
    );
  }
  return [chw[0], chw[1], chw[2]];
}
