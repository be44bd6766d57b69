/**
 * The input layouts the models accept: a batch of flat examples `[N, D]` ("flat", what
 * `loadMnist()` and `loadCifar10(dir, { layout: "flat" })` give) or of images `[N, C, H, W]`
 * ("image", `layout: "image"`). A model takes the layout it computes in and converts the other one
 * when that is unambiguous (same numbers per example, row-major channel-then-row-then-column order,
 * as the loaders produce); anything else is an error that names the model, the layouts it takes,
 * the shape it got and how to fix it.
 *
 * @module
 */
import { reshape } from "../ops/shape.ts";
import { fmtShape, shapeSize, type Tensor } from "../tensor.ts";

/** The numbers per example of a batch `x` (the product of its dims after the first). */
function perExample(x: Tensor): number {
  return shapeSize(x.shape.slice(1));
}

/**
 * `x` as a batch of flat examples `[N, size]` for a model named `who`: `[N, size]` as is, any
 * `[N, …]` with `size` numbers per example (an image batch `[N, C, H, W]`) flattened. Differentiable
 * (a reshape). Throws a RangeError naming `who`, the layouts, the shape of `x` and the fix otherwise.
 */
export function flatBatch(who: string, x: Tensor, size: number): Tensor {
  if (x.rank === 2 && x.shape[1] === size) return x;
  if (x.rank > 2 && perExample(x) === size) return reshape(x, [x.shape[0], size]);
  const fix = x.rank < 2
    ? `add the batch axis (one example is [1, ${size}])`
    : `build the model for ${perExample(x)} inputs per example (its first layer size)`;
  throw new RangeError(
    `${who}: x must be [N, ${size}] (flat layout) or [N, …] with ${size} numbers per example ` +
      `(image layout such as [N, C, H, W], flattened), got ${fmtShape(x.shape)}; ${fix}`,
  );
}

/**
 * `x` as a batch of images `[N, C, H, W]` with `[C, H, W] = chw` for a model named `who`:
 * `[N, C, H, W]` as is, a flat batch `[N, C·H·W]` reshaped (channel, then row, then column, as the
 * loaders' flat layout). Differentiable (a reshape). Throws a RangeError naming `who`, both
 * layouts, the shape of `x` and the fix otherwise.
 */
export function imageBatch(who: string, x: Tensor, chw: readonly [number, number, number]): Tensor {
  const size = chw[0] * chw[1] * chw[2];
  if (x.rank === 4 && x.shape[1] === chw[0] && x.shape[2] === chw[1] && x.shape[3] === chw[2]) return x;
  if (x.rank === 2 && x.shape[1] === size) return reshape(x, [x.shape[0], ...chw]);
  const image = `[N, ${chw.join(", ")}]`;
  const fix = x.rank < 2
    ? `add the batch axis (one example is [1, ${chw.join(", ")}])`
    : perExample(x) === size
    ? `give images as ${image} (loadMnist({ layout: "image" }), loadCifar10(dir, { layout: "image" }) ` +
      `or reshapeInputs(dataset, ${fmtShape(chw)}); channels-last images need a transpose first)`
    : `build the model with the inputShape [C, H, W] of the data (${perExample(x)} numbers per ` +
      `example, not ${size})`;
  throw new RangeError(
    `${who}: x must be ${image} (image layout) or [N, ${size}] (flat layout, reshaped), got ` +
      `${fmtShape(x.shape)}; ${fix}`,
  );
}
