/**
 * Convolution and pooling on NCHW tensors (OIHW weights), with their VJPs.
 *
 * @module
 */
import type { Activation, Conv2dGeometry, Pool2dGeometry } from "../backend.ts";
import { fmtShape, type Tensor } from "../tensor.ts";
import { isTracked, record } from "../tape.ts";
import { backendFor } from "./dispatch.ts";
import { checkActivation } from "./activation.ts";

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
 * With a bias it is {@linkcode fusedConv2d} without activation: on WebGPU the bias is added in the
 * convolution's kernel and its gradient comes from the weight gradient's.
 *
 * @example
 * ```ts
 * import { conv2d, ones } from "@nvrm/core";
 * const y = conv2d(ones([1, 1, 4, 4]), ones([1, 1, 3, 3]), { padding: 1 });
 * console.log(y.shape); // [1, 1, 4, 4]
 * ```
 */
export function conv2d(x: Tensor, w: Tensor, options: Conv2dOptions = {}): Tensor {
  if (options.bias) return biasedConv2d("conv2d", x, w, options.bias, "bias", options, "none");
  const b = backendFor("conv2d", { x, w });
  const geo = convGeometry("conv2d", x, w, options);
  const y = b.conv2d(x, w, geo);
  return record(y, [x, w], (g, needs) => [
    needs[0] ? b.conv2dGradInput(g, w, x.shape, geo) : null, // skipped for the input batch
    needs[1] ? b.conv2dGradWeight(x, g, w.shape, geo) : null,
  ]);
}

/** Options of {@linkcode fusedConv2d}. */
export interface FusedConv2dOptions {
  /** Stride (default 1). */
  stride?: Size2;
  /** Zero padding on each side (default 0). */
  padding?: Size2;
  /** The activation applied after the bias: "none" (default) or "relu". */
  activation?: Activation;
}

/**
 * y = act(conv2d(x, w) + b) for x `[N, C, H, W]`, w `[O, C, kh, kw]` and an optional bias b `[O]`
 * added per output channel, with act the identity or ReLU: the values of
 * `relu(add(conv2d(x, w), reshape(b, [1, O, 1, 1])))` in one op (on the CPU bit for bit; on WebGPU
 * one dispatch forward, the bias and the ReLU in the convolution's epilogue). With gz = g·step(y)
 * under ReLU (step(y) = 1 where y > 0, else 0) and gz = g otherwise: d/dx and d/dw are conv2d's
 * gradients at gz, d/db = Σ over n, oh, ow of gz (on WebGPU from the weight gradient's product).
 *
 * The layer `nn.conv2d(c, o, k, { activation: "relu" })` is built on it.
 */
export function fusedConv2d(
  x: Tensor,
  w: Tensor,
  b?: Tensor | null,
  options: FusedConv2dOptions = {},
): Tensor {
  const activation = checkActivation("fusedConv2d", options.activation);
  return biasedConv2d("fusedConv2d", x, w, b ?? null, "b", options, activation);
}

/** The fused convolution under the name `op`, its bias argument called `bName`; forward and VJP. */
function biasedConv2d(
  op: string,
  x: Tensor,
  w: Tensor,
  b: Tensor | null,
  bName: string,
  options: { stride?: Size2; padding?: Size2 },
  activation: Activation,
): Tensor {
  const be = backendFor(op, b ? { x, w, [bName]: b } : { x, w });
  const geo = convGeometry(op, x, w, options);
  if (b && (b.rank !== 1 || b.shape[0] !== w.shape[0])) {
    throw new RangeError(`${op}: ${bName} must be [${w.shape[0]}], got ${fmtShape(b.shape)}`);
  }
  const y = be.fusedConv2d(x, w, b, geo, activation);
  return record(y, b ? [x, w, b] : [x, w], (g, needs) => {
    const r = be.fusedConv2dGrad(x, w, activation === "relu" ? y : null, g, geo, {
      x: needs[0], // false for the input batch
      w: needs[1],
      b: b ? needs[2] : false,
    });
    return b ? [r.gx, r.gw, r.gb] : [r.gx, r.gw];
  });
}

/** The checked geometry of a convolution of `x` with `w`. */
function convGeometry(
  op: string,
  x: Tensor,
  w: Tensor,
  options: { stride?: Size2; padding?: Size2 },
): Conv2dGeometry {
  if (x.rank !== 4) throw new RangeError(`${op}: x must be [N, C, H, W], got ${fmtShape(x.shape)}`);
  if (w.rank !== 4) throw new RangeError(`${op}: w must be [O, C, kh, kw], got ${fmtShape(w.shape)}`);
  if (w.shape[1] !== x.shape[1]) {
    throw new RangeError(
      `${op}: channel mismatch: x ${fmtShape(x.shape)} has ${x.shape[1]} channels, w ${
        fmtShape(w.shape)
      } expects ${w.shape[1]}`,
    );
  }
  const geo: Conv2dGeometry = {
    stride: pair(op, "stride", options.stride ?? 1, 1),
    padding: pair(op, "padding", options.padding ?? 0, 0),
  };
  for (let i = 0; i < 2; i++) {
    if (x.shape[2 + i] + 2 * geo.padding[i] < w.shape[2 + i]) {
      throw new RangeError(
        `${op}: kernel ${fmtShape(w.shape.slice(2))} is larger than the padded input ${
          fmtShape(x.shape.slice(2))
        }`,
      );
    }
  }
  return geo;
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
