/**
 * 2-D convolution (NCHW, OIHW weights) as implicit GEMM on the tiled matmul of `matmul.ts` (or the
 * 8×8 one of `matmul_wide.ts`, the same loaders): the loaders below compute im2col addresses on the
 * fly, so no column matrix is materialized. The GEMM
 * columns span the whole batch, so that a late layer's small images (4×4: 16 pixels) fill the tiles:
 *
 * - forward: y[O, (n, oh, ow)] = w[O, (c, ki, kj)] · cols[(c, ki, kj), (n, oh, ow)], stored NCHW
 * - input gradient, one product per stride phase (rh, rw) = ((h + ph) mod sh, (w + pw) mod sw), all
 *   in one dispatch (z = phase): gx[C, (n, hq, wq)] = w[C, (th, tw, o)] · gy[(th, tw, o), (n, hq, wq)]
 *   where h = h0 + hq·sh and the taps are only those that hit the stride grid, ki = rh + th·sh
 *   (a stride-2 3×3 layer does 9/4 taps per pixel on average instead of 9, a stride-2 1×1 one 1/4)
 * - weight gradient: gw[O, (c, ki, kj)] = gy[O, (n, p)] · cols[(n, p), (c, ki, kj)], split along K;
 *   with a bias, cols gets one more column of ones, whose column of the product is the bias
 *   gradient Σ over (n, p) of gy, and {@linkcode convGradWeightSumKernel} sums the split parts into
 *   both gradients
 *
 * The forward's bias and ReLU run in the matmul's epilogue (`MatmulFusion.biasRows`, `relu`); the
 * gradients through that ReLU multiply gy by step(y) as they load it (`ConvGradOptions.masked`).
 *
 * The geometry is compiled into the WGSL (the pipeline key names it): every division by a size is a
 * division by a constant, which the shader compiler turns into a multiply and a shift. Only the batch
 * travels in the uniforms (N = batch × pixels in U(1)).
 *
 * @module
 */
import { storage, uniformBlock } from "./common.ts";

/** The shape of a convolution, compiled into its kernels. */
export interface ConvShape {
  /** Input channels. */
  c: number;
  /** Input height. */
  h: number;
  /** Input width. */
  w: number;
  /** Output channels. */
  o: number;
  /** Kernel height. */
  kh: number;
  /** Kernel width. */
  kw: number;
  /** Vertical stride. */
  sh: number;
  /** Horizontal stride. */
  sw: number;
  /** Top (and bottom) padding. */
  ph: number;
  /** Left (and right) padding. */
  pw: number;
  /** Output height. */
  oh: number;
  /** Output width. */
  ow: number;
}

/** The pipeline-key part of a convolution shape (every field that changes the WGSL). */
export function convShapeKey(s: ConvShape): string {
  return `c${s.c}h${s.h}w${s.w}o${s.o}k${s.kh}x${s.kw}s${s.sh}x${s.sw}p${s.ph}x${s.pw}`;
}

const u = (x: number) => `${x}u`;

/** Whether the forward stores vec4s: four consecutive columns are one image's consecutive pixels. */
export function convForwardVecStore(s: ConvShape): boolean {
  return (s.oh * s.ow) % 4 === 0;
}

/** Whether the input gradient stores vec4s (stride 1, one phase, whose columns are the pixels). */
export function convGradInputVecStore(s: ConvShape): boolean {
  return s.sh === 1 && s.sw === 1 && (s.h * s.w) % 4 === 0;
}

/**
 * Forward: B is the im2col matrix of x (rows (c, ki, kj), columns (n, oh, ow)), read through a
 * per-column gather (`col-n`: the column's image offset and window corner are computed once per
 * thread); C is stored NCHW.
 */
export function convForwardLoaders(s: ConvShape): string {
  const HW = s.oh * s.ow, KK = s.kh * s.kw;
  return `struct Col { base: u32, ih: i32, iw: i32 }
fn colB(n: u32) -> Col {
  let img = n / ${u(HW)}; let p = n % ${u(HW)};
  return Col(img * ${u(s.c * s.h * s.w)}, i32((p / ${u(s.ow)}) * ${u(s.sh)}) - ${s.ph}, i32((p % ${
    u(s.ow)
  }) * ${u(s.sw)}) - ${s.pw});
}
fn loadCol(col: Col, k: u32) -> f32 {
  let c = k / ${u(KK)}; let r = k % ${u(KK)};
  let ih = col.ih + i32(r / ${u(s.kw)}); let iw = col.iw + i32(r % ${u(s.kw)});
  if (ih < 0 || iw < 0 || ih >= ${s.h} || iw >= ${s.w}) { return 0.0; }
  return B[col.base + (c * ${u(s.h)} + u32(ih)) * ${u(s.w)} + u32(iw)];
}
${
    convForwardVecStore(s)
      ? `fn cStore4(m: u32, n: u32, v: vec4<f32>) {
  C[((n / ${u(HW)} * ${u(s.o)} + m) * ${u(HW)} + n % ${u(HW)}) / 4u] = v;
}
`
      : `fn cStore(m: u32, n: u32, v: f32) {
  C[(n / ${u(HW)} * ${u(s.o)} + m) * ${u(HW)} + n % ${u(HW)}] = v;
}
`
  }`;
}

/** The stride phases of the input gradient: one product (one z of the dispatch) each. */
export function convGradInputPhases(s: ConvShape): number {
  return s.sh * s.sw;
}

/**
 * The columns of each phase's product per image: the stride grid ⌈h/sh⌉ × ⌈w/sw⌉ (a phase whose
 * grid is one row or column shorter skips the extra positions when storing).
 */
export function convGradInputColumns(s: ConvShape): number {
  return Math.ceil(s.h / s.sh) * Math.ceil(s.w / s.sw);
}

/**
 * The taps of the input-gradient phases: K of phase (rh, rw) is o · ⌈(kh − rh)/sh⌉ · ⌈(kw − rw)/sw⌉.
 * With a stride, the loaders split a tap index t into (th, tw) as (t · ⌈2¹⁶/tw⌉) >> 16 (tw varies
 * by phase), exact while kh · kw² < 2¹⁶ (kernels up to 40×40).
 */
export function convGradInputMaxK(s: ConvShape): number {
  return s.o * Math.ceil(s.kh / s.sh) * Math.ceil(s.kw / s.sw);
}

/**
 * How the gradient kernels read gy: `masked` multiplies each value by step(y) = 1 where y > 0, else
 * 0 (NaN: 0), y being the forward's ReLU output, laid out as gy and bound as the matmul fusion's
 * mask (`MaskA` for the weight gradient, `MaskB` for the input gradient): the gradient through the
 * ReLU, the values of `reluGrad(y, gy)`.
 */
export interface ConvGradOptions {
  /** Multiply gy by the step of the ReLU output it is masked with. */
  masked?: boolean;
}

/**
 * WGSL: gy at index `i` of array `arr`, times the step of `mask` at `i` when `masked` (`step1`: the
 * matmul kernel includes it with the fusion's `maskA`/`maskB`, which the masked products set).
 */
function readGy(arr: string, mask: string, i: string, masked: boolean | undefined): string {
  return masked ? `${arr}[${i}] * step1(${mask}[${i}])` : `${arr}[${i}]`;
}

/**
 * Input gradient: the phase setup (per workgroup, from `wid.z`), A = the weights as [C, (th, tw, o)]
 * for the phase's taps, B = gy as [(th, tw, o), (n, hq, wq)] through a per-column gather (masked:
 * {@linkcode ConvGradOptions}), C stored NCHW at (h0 + hq·sh, w0 + wq·sw) when inside the image.
 * `setup` defines the phase's K (`phaseK`).
 */
export function convGradInputLoaders(
  s: ConvShape,
  options: ConvGradOptions = {},
): { loaders: string; setup: string } {
  const HC = Math.ceil(s.h / s.sh), WC = Math.ceil(s.w / s.sw), HWC = HC * WC;
  const strided = s.sh > 1 || s.sw > 1;
  if (strided && s.kh * s.kw * s.kw >= 1 << 16) {
    throw new RangeError(`conv2dGradInput: kernel ${s.kh}×${s.kw} is too large (at most 40×40 taps)`);
  }
  // The phase's values: the tap residues rh, rw, the taps along w, the first row and column of the
  // phase and the output row and column its first position reads through tap 0. Literals for stride 1
  // (one phase), else private variables that the setup computes from the phase z once per workgroup.
  const axis = (r: string, k: number, st: number, p: number) => ({
    taps: `select((${u(k + st - 1)} - ${r}) / ${u(st)}, 0u, ${r} >= ${u(k)})`,
    first: `(${r} + ${u(st - (p % st))}) % ${u(st)}`,
    q: `((${r} + ${u(st - (p % st))}) % ${u(st)} + ${u(p)} - ${r}) / ${u(st)}`,
  });
  const ah = axis("pRh", s.kh, s.sh, s.ph), aw = axis("pRw", s.kw, s.sw, s.pw);
  // The phase's K from lets of wid.z alone: it bounds the loop that holds the workgroup barriers, and
  // the uniformity analysis of WGSL (Tint's) does not take private variables as uniform.
  const kh = axis("zRh", s.kh, s.sh, s.ph), kw = axis("zRw", s.kw, s.sw, s.pw);
  const [RH, RW, TW, H0, W0, QH, QW] = strided
    ? ["pRh", "pRw", "pTw", "pH0", "pW0", "pQh", "pQw"]
    : ["0u", "0u", u(s.kw), "0u", "0u", u(s.ph), u(s.pw)];
  const setup = strided
    ? `let zRh = z / ${u(s.sw)}; let zRw = z % ${u(s.sw)};
  pRh = zRh; pRw = zRw; pTw = ${aw.taps}; pDivTw = (65536u + pTw - 1u) / max(pTw, 1u);
  pH0 = ${ah.first}; pW0 = ${aw.first}; pQh = ${ah.q}; pQw = ${aw.q};
  let phaseK = ${u(s.o)} * ${kh.taps} * ${kw.taps};`
    : `let phaseK = ${u(s.o * s.kh * s.kw)};`;
  const privates = strided
    ? `var<private> pRh: u32; var<private> pRw: u32; var<private> pTw: u32; var<private> pDivTw: u32;
var<private> pH0: u32; var<private> pW0: u32; var<private> pQh: u32; var<private> pQw: u32;
`
    : "";
  const cStore4 = !convGradInputVecStore(s) ? "" : `fn cStore4(m: u32, n: u32, v: vec4<f32>) {
  C[((n / ${u(HWC)} * ${u(s.c)} + m) * ${u(HWC)} + n % ${u(HWC)}) / 4u] = v;
}
`;
  const loaders = `${privates}fn tapOf(k: u32) -> vec3<u32> {
  let t = k / ${u(s.o)}; let th = ${strided ? "(t * pDivTw) >> 16u" : `t / ${TW}`};
  return vec3<u32>(k % ${u(s.o)}, th, t - th * ${TW});
}
fn loadA(off: u32, m: u32, k: u32) -> f32 {
  let t = tapOf(k);
  return A[((t.x * ${u(s.c)} + m) * ${u(s.kh)} + ${RH} + t.y * ${u(s.sh)}) * ${u(s.kw)} + ${RW} + t.z * ${
    u(s.sw)
  }];
}
struct Col { base: u32, oh: i32, ow: i32 }
fn colB(n: u32) -> Col {
  let img = n / ${u(HWC)}; let p = n % ${u(HWC)};
  return Col(img * ${u(s.o * s.oh * s.ow)}, i32(${QH} + p / ${u(WC)}), i32(${QW} + p % ${u(WC)}));
}
fn loadCol(col: Col, k: u32) -> f32 {
  let t = tapOf(k);
  let oh = col.oh - i32(t.y); let ow = col.ow - i32(t.z);
  if (oh < 0 || ow < 0 || oh >= ${s.oh} || ow >= ${s.ow}) { return 0.0; }
  let i = col.base + (t.x * ${u(s.oh)} + u32(oh)) * ${u(s.ow)} + u32(ow);
  return ${readGy("B", "MaskB", "i", options.masked)};
}
${
    cStore4 || `fn cStore(m: u32, n: u32, v: f32) {
  let img = n / ${u(HWC)}; let p = n % ${u(HWC)};
  let h = ${H0} + (p / ${u(WC)}) * ${u(s.sh)}; let w = ${W0} + (p % ${u(WC)}) * ${u(s.sw)};
  if (h < ${u(s.h)} && w < ${u(s.w)}) { C[((img * ${u(s.c)} + m) * ${u(s.h)} + h) * ${u(s.w)} + w] = v; }
}
`
  }`;
  return { loaders, setup };
}

/** Options of {@linkcode convGradWeightLoaders}. */
export interface ConvGradWeightOptions extends ConvGradOptions {
  /**
   * B gets one more column, column c·kh·kw, of ones: that column of the product is Σ over (n, p)
   * of gy, the bias gradient (the product's N is then c·kh·kw + 1).
   */
  onesColumn?: boolean;
}

/**
 * Weight gradient: A = gy as [O, (n, p)] (masked: {@linkcode ConvGradOptions}), B = the im2col
 * matrix as [(n, oh, ow), (c, ki, kj)], with a column of ones after it when `onesColumn`.
 */
export function convGradWeightLoaders(s: ConvShape, options: ConvGradWeightOptions = {}): string {
  const HW = s.oh * s.ow, KK = s.kh * s.kw;
  return `fn loadA(off: u32, m: u32, k: u32) -> f32 {
  let i = (k / ${u(HW)} * ${u(s.o)} + m) * ${u(HW)} + k % ${u(HW)};
  return ${readGy("A", "MaskA", "i", options.masked)};
}
fn loadB(off: u32, k: u32, j: u32) -> f32 {
  ${
    options.onesColumn
      ? `if (j == ${u(s.c * KK)}) { return 1.0; }
  `
      : ""
  }let img = k / ${u(HW)}; let p = k % ${u(HW)};
  let c = j / ${u(KK)}; let r = j % ${u(KK)};
  let ih = i32((p / ${u(s.ow)}) * ${u(s.sh)} + r / ${u(s.kw)}) - ${s.ph};
  let iw = i32((p % ${u(s.ow)}) * ${u(s.sw)} + r % ${u(s.kw)}) - ${s.pw};
  if (ih < 0 || iw < 0 || ih >= ${s.h} || iw >= ${s.w}) { return 0.0; }
  return B[((img * ${u(s.c)} + c) * ${u(s.h)} + u32(ih)) * ${u(s.w)} + u32(iw)];
}
`;
}

/** Uniform words of {@linkcode convGradWeightSumKernel}: the parts S, the rows M, the columns N. */
export const CONV_GRAD_SUM_WORDS = 4;

/** Outputs per workgroup of {@linkcode convGradWeightSumKernel} (each summed by 16 lanes). */
export const CONV_GRAD_SUM_OUTPUTS = 16;

/**
 * The weight gradient's parts summed into the weight and bias gradients, one dispatch: `Part` holds
 * S products [M, N + 1] (M = o, N = c·kh·kw, the last column the bias gradient's, as
 * {@linkcode convGradWeightLoaders} with `onesColumn` gives them); column j < N of the sum goes to
 * `GW` [M, N], column N to `GB` [M]. Each workgroup sums 16 consecutive outputs, 16 lanes each
 * over every 16th part, then the lanes in order (a fixed order: the same bits every run). Bindings:
 * Part (read), GW, GB (write); grid: ⌈M·(N + 1)/16⌉ workgroups, folded into y past the limit.
 */
export function convGradWeightSumKernel(): string {
  const T = CONV_GRAD_SUM_OUTPUTS;
  return `${uniformBlock(CONV_GRAD_SUM_WORDS)}${storage(1, "Part", "f32")}${storage(2, "GW", "f32", true)}${
    storage(3, "GB", "f32", true)
  }
var<workgroup> lanes: array<f32, ${T * 16}>;

@compute @workgroup_size(${T}, 16, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let S = U(0); let N = U(2); let cols = N + 1u; let total = U(1) * cols;
  let i = (wid.x + wid.y * nwg.x) * ${T}u + lid.x;
  var acc = 0.0;
  if (i < total) {
    for (var s = lid.y; s < S; s += 16u) { acc += Part[s * total + i]; }
  }
  lanes[lid.y * ${T}u + lid.x] = acc;
  workgroupBarrier();
  if (lid.y == 0u && i < total) {
    var sum = 0.0;
    for (var l = 0u; l < 16u; l++) { sum += lanes[l * ${T}u + lid.x]; }
    let m = i / cols; let j = i % cols;
    if (j < N) { GW[m * N + j] = sum; } else { GB[m] = sum; }
  }
}`;
}
