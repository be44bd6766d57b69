/**
 * Convolution and pooling on NCHW tensors (OIHW weights), with their VJPs.
 *
 * @module
 */
import type { Conv2dGeometry, Pool2dGeometry } from "../backend.ts";
import { fmtShape, type Tensor } from "../tensor.ts";
import { isTracked, record } from "../tape.ts";
import { backendFor } from "./dispatch.ts";
import { add } from "./elementwise.ts";
import { reshape } from "./shape.ts";

/** A size given as one number (both axes) or a [height, width] pair. */
export type Size2 = number | readonly [number, number];

function pair(op: string, name: string, v: Size2, min: number): [number, number] {
  const p: [number, number] = typeof v === "number" ? [v, v] : [v[0], v[1]];
  for (const x of p) {
    if (!Number.isInteger(x) || x < min) {
      throw new RangeError(
        `${op}: ${name} must be an integer ≥ ${min} (or a pair of them), got ${JSON.stringify(v)}`,
      );
    }
  }
  return p;
}

/** Options of {@linkcode conv2d}. */
export interface Conv2dOptions {
  /** Bias `[O]`, added per output channel. */
  bias?: Tensor;
  /** Stride (default 1). */
  stride?: Size2;
  /** Zero padding on each side (default 0). */
  padding?: Size2;
}

/**
 * 2-D convolution (cross-correlation, as PyTorch) of `x` `[N, C, H, W]` with `w` `[O, C, kh, kw]`.
 *
 * @example
 * ```ts
 * import { conv2d, ones } from "@nvrm/core";
 * const y = conv2d(ones([1, 1, 4, 4]), ones([1, 1, 3, 3]), { padding: 1 });
 * console.log(y.shape); // [1, 1, 4, 4]
 * ```
 */
export function conv2d(x: Tensor, w: Tensor, options: Conv2dOptions = {}): Tensor {
  const b = backendFor("conv2d", options.bias ? { x, w, bias: options.bias } : { x, w });
  if (x.rank !== 4) throw new RangeError(`conv2d: x must be [N, C, H, W], got ${fmtShape(x.shape)}`);
  if (w.rank !== 4) throw new RangeError(`conv2d: w must be [O, C, kh, kw], got ${fmtShape(w.shape)}`);
  if (w.shape[1] !== x.shape[1]) {
    throw new RangeError(
      `conv2d: channel mismatch: x ${fmtShape(x.shape)} has ${x.shape[1]} channels, w ${
        fmtShape(w.shape)
      } expects ${w.shape[1]}`,
    );
  }
  const geo: Conv2dGeometry = {
    stride: pair("conv2d", "stride", options.stride ?? 1, 1),
    padding: pair("conv2d", "padding", options.padding ?? 0, 0),
  };
  for (let i = 0; i < 2; i++) {
    if (x.shape[2 + i] + 2 * geo.padding[i] < w.shape[2 + i]) {
      throw new RangeError(
        `conv2d: kernel ${fmtShape(w.shape.slice(2))} is larger than the padded input ${
          fmtShape(x.shape.slice(2))
        }`,
      );
    }
  }
  const y = b.conv2d(x, w, geo);
  const out = record(y, [x, w], (g, needs) => [
    needs[0] ? b.conv2dGradInput(g, w, x.shape, geo) : null, // skipped for the input batch
    needs[1] ? b.conv2dGradWeight(x, g, w.shape, geo) : null,
  ]);
  if (!options.bias) return out;
  if (options.bias.rank !== 1 || options.bias.shape[0] !== w.shape[0]) {
    throw new RangeError(`conv2d: bias must be [${w.shape[0]}], got ${fmtShape(options.bias.shape)}`);
  }
  return add(out, reshape(options.bias, [1, w.shape[0], 1, 1]));
}

/** Options of the pooling ops. */
export interface Pool2dOptions {
  /** Window size. */
  kernel: Size2;
  /** Stride (default: the window size). */
  stride?: Size2;
  /** Zero padding on each side (default 0; at most half the window). */
  padding?: Size2;
}

function poolGeometry(op: string, x: Tensor, o: Pool2dOptions): Pool2dGeometry {
  if (x.rank !== 4) throw new RangeError(`${op}: x must be [N, C, H, W], got ${fmtShape(x.shape)}`);
  if (!o || o.kernel === undefined) throw new TypeError(`${op}: options.kernel is required`);
  const kernel = pair(op, "kernel", o.kernel, 1);
  const geo = {
    kernel,
    stride: pair(op, "stride", o.stride ?? kernel, 1),
    padding: pair(op, "padding", o.padding ?? 0, 0),
  };
  for (let i = 0; i < 2; i++) {
    if (geo.padding[i] * 2 > kernel[i]) {
      throw new RangeError(`${op}: padding ${geo.padding[i]} must be at most half the kernel ${kernel[i]}`);
    }
    if (x.shape[2 + i] + 2 * geo.padding[i] < kernel[i]) {
      throw new RangeError(
        `${op}: kernel ${fmtShape(kernel)} is larger than the padded input ${fmtShape(x.shape)}`,
      );
    }
  }
  return geo;
}

/** Max pooling over windows of `x` `[N, C, H, W]`; the gradient goes to each window's maximum. */
export function maxPool2d(x: Tensor, options: Pool2dOptions): Tensor {
  const b = backendFor("maxPool2d", { x });
  const geo = poolGeometry("maxPool2d", x, options);
  const { y, argmax } = b.maxPool2d(x, geo);
  if (!isTracked([x])) {
    b.release(argmax); // only the backward pass reads it
    return y;
  }
  return record(y, [x], (g) => [b.maxPool2dGrad(g, argmax, x.shape, geo)]);
}

/** Average pooling over windows of `x` `[N, C, H, W]` (padding counts in the divisor). */
export function avgPool2d(x: Tensor, options: Pool2dOptions): Tensor {
  const b = backendFor("avgPool2d", { x });
  const geo = poolGeometry("avgPool2d", x, options);
  const y = b.avgPool2d(x, geo);
  return record(y, [x], (g) => [b.avgPool2dGrad(g, x.shape, geo)]);
}
