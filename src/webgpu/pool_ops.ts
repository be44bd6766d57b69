/**
 * The WebGPU pooling ops (max with argmax, average, and their gradients): one thread per output
 * (forward) or per input (gradient) element, `kernels/wgsl/pooling.ts`. Methods of
 * {@linkcode WebGPUBackend} delegate here.
 *
 * @module
 */
import type { Pool2dGeometry } from "../backend.ts";
import type { Tensor } from "../tensor.ts";
import { WG1D } from "../../kernels/wgsl/common.ts";
import { POOL_WORDS, poolGradKernel, poolKernel } from "../../kernels/wgsl/pooling.ts";
import type { GpuStorage, WebGPUBackend } from "./backend.ts";
import { f32bits, kernelSpec } from "./pipelines.ts";

/** Output size of a window along one axis. */
export function pooledSize(size: number, k: number, s: number, p: number): number {
  return Math.floor((size + 2 * p - k) / s) + 1;
}

/** The uniforms of a pooling dispatch over `n` elements. */
function poolUniforms(n: number, xShape: readonly number[], geo: Pool2dGeometry): number[] {
  const [, , h, w] = xShape;
  const [kh, kw] = geo.kernel, [sh, sw] = geo.stride, [ph, pw] = geo.padding;
  const ho = pooledSize(h, kh, sh, ph), wo = pooledSize(w, kw, sw, pw);
  return [n, h, w, ho, wo, kh, kw, sh, sw, ph, pw, f32bits(1 / (kh * kw))];
}

/** The output shape of pooling `xShape` (NCHW). */
function pooledShape(xShape: readonly number[], geo: Pool2dGeometry): number[] {
  const [n, c, h, w] = xShape;
  return [
    n,
    c,
    pooledSize(h, geo.kernel[0], geo.stride[0], geo.padding[0]),
    pooledSize(w, geo.kernel[1], geo.stride[1], geo.padding[1]),
  ];
}

/** Max pooling: the maxima and their window offsets (argmax, as float32). */
export function maxPool2d(be: WebGPUBackend, x: Tensor, geo: Pool2dGeometry): { y: Tensor; argmax: Tensor } {
  const xb = be.buffer(x, "maxPool2d", "x");
  const shape = pooledShape(x.shape, geo);
  const y = be.alloc(shape, "maxPool2d"), am = be.alloc(shape, "maxPool2d");
  if (y.size > 0) {
    const spec = kernelSpec("maxPool2d", POOL_WORDS, ["read", "write", "write"], () => poolKernel("max"));
    be.run(
      spec,
      poolUniforms(y.size, x.shape, geo),
      [xb, (y.storage as GpuStorage).buffer, (am.storage as GpuStorage).buffer],
      be.grid(Math.ceil(y.size / WG1D)),
    );
  }
  return { y, argmax: am };
}

/** The gradient of max pooling: `gy` to each window's argmax. */
export function maxPool2dGrad(
  be: WebGPUBackend,
  gy: Tensor,
  argmax: Tensor,
  xShape: readonly number[],
  geo: Pool2dGeometry,
): Tensor {
  const gb = be.buffer(gy, "maxPool2dGrad", "gy"), ab = be.buffer(argmax, "maxPool2dGrad", "argmax");
  const gx = be.alloc(xShape, "maxPool2dGrad");
  if (gx.size > 0) {
    const spec = kernelSpec(
      "maxPool2dGrad",
      POOL_WORDS,
      ["read", "read", "write"],
      () => poolGradKernel("max"),
    );
    be.run(
      spec,
      poolUniforms(gx.size, xShape, geo),
      [gb, ab, (gx.storage as GpuStorage).buffer],
      be.grid(Math.ceil(gx.size / WG1D)),
    );
  }
  return gx;
}

/** Average pooling (the padding counts in the divisor). */
export function avgPool2d(be: WebGPUBackend, x: Tensor, geo: Pool2dGeometry): Tensor {
  const xb = be.buffer(x, "avgPool2d", "x");
  const shape = pooledShape(x.shape, geo);
  const y = be.alloc(shape, "avgPool2d");
  if (y.size > 0) {
    const spec = kernelSpec("avgPool2d", POOL_WORDS, ["read", "write"], () => poolKernel("avg"));
    be.run(
      spec,
      poolUniforms(y.size, x.shape, geo),
      [xb, (y.storage as GpuStorage).buffer],
      be.grid(Math.ceil(y.size / WG1D)),
    );
  }
  return y;
}

/** The gradient of average pooling. */
export function avgPool2dGrad(
  be: WebGPUBackend,
  gy: Tensor,
  xShape: readonly number[],
  geo: Pool2dGeometry,
): Tensor {
  const gb = be.buffer(gy, "avgPool2dGrad", "gy");
  const gx = be.alloc(xShape, "avgPool2dGrad");
  if (gx.size > 0) {
    const spec = kernelSpec("avgPool2dGrad", POOL_WORDS, ["read", "write"], () => poolGradKernel("avg"));
    be.run(
      spec,
      poolUniforms(gx.size, xShape, geo),
      [gb, (gx.storage as GpuStorage).buffer],
      be.grid(Math.ceil(gx.size / WG1D)),
    );
  }
  return gx;
}
