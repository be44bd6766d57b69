/**
 * 2-D convolution (NCHW, OIHW weights) as implicit GEMM on the tiled matmul of `matmul.ts`: the
 * loaders below compute im2col addresses on the fly, so no column matrix is materialized.
 *
 * - forward, per image: y[O, OH·OW] = w[O, C·kh·kw] · cols[C·kh·kw, OH·OW]
 * - input gradient, per image: gx[C, H·W] = Σ over (o, ki, kj) of w · gy at the output position
 *   that reads (h, w) through tap (ki, kj) (zero where the stride skips it)
 * - weight gradient: gw[O, C·kh·kw] = gy[O, (n, p)] · cols[(n, p), C·kh·kw], split along K
 *
 * Geometry uniforms (after the matmul's 20 words): C, H, W, kh, kw, sh, sw, ph, pw, OH, OW, O.
 *
 * @module
 */

/** Index of the first geometry word in the matmul uniforms. */
export const CONV_GEO = 20;

const G = (i: number) => `U(${CONV_GEO + i}u)`;
const [C, H, W, KH, KW, SH, SW, PH, PW, OH, OW, O] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11].map(G);

/** Loader of the im2col matrix of input x (rows (c, ki, kj), cols (oh, ow)) for the forward pass. */
export const CONV_FWD_LOAD_B = `fn loadB(off: u32, k: u32, n: u32) -> f32 {
  let kk = ${KH} * ${KW};
  let c = k / kk; let r = k % kk; let ki = r / ${KW}; let kj = r % ${KW};
  let oh = n / ${OW}; let ow = n % ${OW};
  let ih = i32(oh * ${SH} + ki) - i32(${PH}); let iw = i32(ow * ${SW} + kj) - i32(${PW});
  if (ih < 0 || iw < 0 || ih >= i32(${H}) || iw >= i32(${W})) { return 0.0; }
  return B[off + (c * ${H} + u32(ih)) * ${W} + u32(iw)];
}
`;

/** Loader of the weights as a [C, O·kh·kw] matrix for the input gradient. */
export const CONV_DX_LOAD_A = `fn loadA(off: u32, m: u32, k: u32) -> f32 {
  let kk = ${KH} * ${KW};
  let o = k / kk; let r = k % kk;
  return A[off + (o * ${C} + m) * kk + r];
}
`;

/** Loader of gy as a [O·kh·kw, H·W] matrix for the input gradient (zero off the stride grid). */
export const CONV_DX_LOAD_B = `fn loadB(off: u32, k: u32, n: u32) -> f32 {
  let kk = ${KH} * ${KW};
  let o = k / kk; let r = k % kk; let ki = r / ${KW}; let kj = r % ${KW};
  let h = n / ${W}; let w = n % ${W};
  let th = i32(h + ${PH}) - i32(ki); let tw = i32(w + ${PW}) - i32(kj);
  if (th < 0 || tw < 0) { return 0.0; }
  let oh = u32(th) / ${SH}; let ow = u32(tw) / ${SW};
  if (oh * ${SH} != u32(th) || ow * ${SW} != u32(tw) || oh >= ${OH} || ow >= ${OW}) { return 0.0; }
  return B[off + (o * ${OH} + oh) * ${OW} + ow];
}
`;

/** Loader of gy as a [O, N·OH·OW] matrix for the weight gradient. */
export const CONV_DW_LOAD_A = `fn loadA(off: u32, m: u32, k: u32) -> f32 {
  let hw = ${OH} * ${OW};
  let n = k / hw; let p = k % hw;
  return A[(n * ${O} + m) * hw + p];
}
`;

/** Loader of the im2col matrix as [(n, oh, ow), (c, ki, kj)] for the weight gradient. */
export const CONV_DW_LOAD_B = `fn loadB(off: u32, k: u32, j: u32) -> f32 {
  let hw = ${OH} * ${OW};
  let n = k / hw; let p = k % hw; let oh = p / ${OW}; let ow = p % ${OW};
  let kk = ${KH} * ${KW};
  let c = j / kk; let r = j % kk; let ki = r / ${KW}; let kj = r % ${KW};
  let ih = i32(oh * ${SH} + ki) - i32(${PH}); let iw = i32(ow * ${SW} + kj) - i32(${PW});
  if (ih < 0 || iw < 0 || ih >= i32(${H}) || iw >= i32(${W})) { return 0.0; }
  return B[((n * ${C} + c) * ${H} + u32(ih)) * ${W} + u32(iw)];
}
`;
