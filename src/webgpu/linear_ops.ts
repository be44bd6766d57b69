/**
 * The WebGPU fully connected layer (`Backend.linear`/`linearGrad`): the forward is one tiled matmul
 * with the bias and the ReLU in its epilogue; the backward is at most two, the input gradient
 * gz·wᵀ and, together, the weight gradient xᵀ·gz and the bias gradient (a row of ones appended to
 * xᵀ), with gz = g·step(y) applied as g is loaded (`MatmulFusion`, `kernels/wgsl/matmul.ts`).
 *
 * @module
 */
import type { Activation, LinearNeeds } from "../backend.ts";
import type { Tensor } from "../tensor.ts";
import { type OperandMode, plainLoaders } from "../../kernels/wgsl/matmul.ts";
import type { GpuStorage, WebGPUBackend } from "./backend.ts";
import { matmulRun } from "./matmul_ops.ts";

const bufOf = (t: Tensor) => (t.storage as GpuStorage).buffer;
const NO_BATCH = { shape: [], a: [], b: [] };

/** y = act(x·w + b): one dispatch. */
export function linear(
  be: WebGPUBackend,
  x: Tensor,
  w: Tensor,
  b: Tensor | null,
  activation: Activation,
): Tensor {
  const who = "fusedLinear";
  const xb = be.buffer(x, who, "x"), wb = be.buffer(w, who, "w");
  const bb = b ? be.buffer(b, who, "b") : null;
  const [M, K] = x.shape, N = w.shape[1];
  const y = be.alloc([M, N], who);
  if (y.size === 0) return y;
  const relu = activation === "relu";
  if (K === 0) {
    // x·w = 0: y = act(b) broadcast over the rows, as the separate ops give.
    be.encoder.clear(bufOf(y), y.size * 4);
    if (!bb) return y;
    const biased = be.alloc([M, N], who);
    be.binaryBuffers("add", bufOf(y), [M, N], bb, [N], bufOf(biased), [M, N]);
    be.release(y);
    if (!relu) return biased;
    const out = be.unary("relu", biased);
    be.release(biased);
    return out;
  }
  const aMode: OperandMode = K % 4 === 0 ? "vec-k" : "fn-k";
  const bMode: OperandMode = N % 4 === 0 ? "vec-n" : "fn-n";
  matmulRun(be, {
    name: "linear",
    variant: {
      a: aMode,
      b: bMode,
      cVec: N % 4 === 0,
      splitK: false,
      loaders: plainLoaders(false, false, aMode === "fn-k", bMode === "fn-n"),
      fusion: { bias: bb !== null, relu },
    },
    M,
    N,
    K,
    z: 1,
    batch: NO_BATCH,
    extra: [],
    bufs: bb ? [xb, wb, bufOf(y), bb] : [xb, wb, bufOf(y)],
  });
  return y;
}

/** The gradients of {@linkcode linear} that `needs` asks for: one dispatch for gx, one for gw and gb. */
export function linearGrad(
  be: WebGPUBackend,
  x: Tensor,
  w: Tensor,
  y: Tensor | null,
  g: Tensor,
  needs: LinearNeeds,
): { gx: Tensor | null; gw: Tensor | null; gb: Tensor | null } {
  const who = "fusedLinear (backward)";
  const xb = be.buffer(x, who, "x"), wb = be.buffer(w, who, "w"), gb = be.buffer(g, who, "g");
  const yb = y ? be.buffer(y, who, "y") : null;
  const [rows, IN] = x.shape, OUT = w.shape[1];
  const gx = needs.x ? be.alloc(x.shape, who) : null;
  const gw = needs.w ? be.alloc(w.shape, who) : null;
  const gbias = needs.b ? be.alloc([OUT], who) : null;
  const masked = yb !== null;
  if (gx && gx.size > 0) {
    // gx [rows, IN] = gz [rows, OUT] · wᵀ (w stored [IN, OUT]).
    if (OUT === 0) be.encoder.clear(bufOf(gx), gx.size * 4);
    else {
      const aMode: OperandMode = OUT % 4 === 0 ? "vec-k" : "fn-k";
      const bMode: OperandMode = OUT % 4 === 0 ? "vec-k" : "fn-k";
      matmulRun(be, {
        name: "linearGradX",
        variant: {
          a: aMode,
          b: bMode,
          cVec: IN % 4 === 0,
          splitK: false,
          loaders: plainLoaders(false, true, aMode === "fn-k", bMode === "fn-k", { a: masked }),
          fusion: { maskA: masked },
        },
        M: rows,
        N: IN,
        K: OUT,
        z: 1,
        batch: NO_BATCH,
        extra: [],
        bufs: masked ? [gb, wb, bufOf(gx), yb!] : [gb, wb, bufOf(gx)],
      });
    }
  }
  if ((gw && gw.size > 0) || (gbias && gbias.size > 0)) {
    // gw [IN, OUT] = xᵀ · gz, and with a row of ones under xᵀ, gb [OUT] = Σ_rows gz in the same pass.
    // Without gw the product has no rows of x (M = 0): only the ones row runs.
    const M = gw ? IN : 0;
    const cBuf = gw ? bufOf(gw) : be.temp(16, who);
    if (rows === 0) {
      if (gw) be.encoder.clear(cBuf, gw.size * 4);
      if (gbias) be.encoder.clear(bufOf(gbias), gbias.size * 4);
    } else {
      const aMode: OperandMode = M % 4 === 0 ? "vec-m" : "fn-m";
      const bMode: OperandMode = OUT % 4 === 0 ? "vec-n" : "fn-n";
      const bufs = [xb, gb, cBuf];
      if (masked) bufs.push(yb!);
      if (gbias) bufs.push(bufOf(gbias));
      matmulRun(be, {
        name: "linearGradW",
        variant: {
          a: aMode,
          b: bMode,
          cVec: OUT % 4 === 0,
          splitK: false,
          loaders: plainLoaders(true, false, aMode === "fn-m", bMode === "fn-n", { b: masked }),
          fusion: { maskB: masked, onesRowA: gbias !== null },
        },
        M,
        N: OUT,
        K: rows,
        z: 1,
        batch: NO_BATCH,
        extra: [],
        bufs,
      });
    }
    if (!gw) be.pool.release(cBuf);
  }
  return { gx, gw, gb: gbias };
}
