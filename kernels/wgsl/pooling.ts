/**
 * 2-D max and average pooling (NCHW) and their gradients. Max pooling records the winner's offset
 * inside its window (ky·kw + kx, the first maximum), like the CPU backend. The gradients gather
 * (one thread per input element, visiting the windows that cover it in ascending order), so they
 * need no atomics and are deterministic.
 *
 * Uniforms: n (threads), H, W, OH, OW, kh, kw, sh, sw, ph, pw, inv (f32: 1/(kh·kw)).
 *
 * @module
 */
import { main1d, NEG_INF, storage, uniformBlock } from "./common.ts";

/** Uniform words of the pooling kernels. */
export const POOL_WORDS = 12;

const GEO = `let H = U(1); let W = U(2); let OH = U(3); let OW = U(4); let kh = U(5); let kw = U(6);
  let sh = U(7); let sw = U(8); let ph = i32(U(9)); let pw = i32(U(10));`;

/**
 * Pooling forward: one thread per output. Bindings: x (read), y (write), and for max an argmax
 * (write).
 */
export function poolKernel(kind: "max" | "avg"): string {
  const max = kind === "max";
  return `${uniformBlock(POOL_WORDS)}${storage(1, "X", "f32")}${storage(2, "Y", "f32", true)}${
    max ? storage(3, "Am", "f32", true) : ""
  }
${main1d()}
  if (i >= U(0)) { return; }
  ${GEO}
  let plane = i / (OH * OW); let q = i % (OH * OW); let oy = q / OW; let ox = q % OW;
  let xb = plane * H * W;
  var best = ${NEG_INF}; var bestK = 0u; var acc = 0.0;
  for (var ky = 0u; ky < kh; ky++) {
    let iy = i32(oy * sh + ky) - ph;
    if (iy < 0 || iy >= i32(H)) { continue; }
    for (var kx = 0u; kx < kw; kx++) {
      let ix = i32(ox * sw + kx) - pw;
      if (ix < 0 || ix >= i32(W)) { continue; }
      let v = X[xb + u32(iy) * W + u32(ix)];
      if (v > best) { best = v; bestK = ky * kw + kx; }
      acc += v;
    }
  }
  ${max ? "Y[i] = best; Am[i] = f32(bestK);" : "Y[i] = acc * UF(11u);"}
}`;
}

/**
 * Pooling gradient: one thread per input element, summing over the windows that cover it.
 * Bindings: gy (read), [argmax (read) for max], gx (write).
 */
export function poolGradKernel(kind: "max" | "avg"): string {
  const max = kind === "max";
  return `${uniformBlock(POOL_WORDS)}${storage(1, "Gy", "f32")}${
    max ? `${storage(2, "Am", "f32")}${storage(3, "Gx", "f32", true)}` : storage(2, "Gx", "f32", true)
  }
${main1d()}
  if (i >= U(0)) { return; }
  ${GEO}
  let plane = i / (H * W); let q = i % (H * W); let iy = i32(q / W); let ix = i32(q % W);
  let ob = plane * OH * OW;
  // Windows oy with oy·sh − ph ≤ iy < oy·sh − ph + kh.
  let ty = iy + ph; let tx = ix + pw;
  let oy0 = u32(max(0, (ty - i32(kh) + i32(sh)) / i32(sh)));
  let ox0 = u32(max(0, (tx - i32(kw) + i32(sw)) / i32(sw)));
  var acc = 0.0;
  if (ty >= 0 && tx >= 0) {
    let oy1 = min(OH, u32(ty) / sh + 1u);
    let ox1 = min(OW, u32(tx) / sw + 1u);
    for (var oy = oy0; oy < oy1; oy++) {
      for (var ox = ox0; ox < ox1; ox++) {
        let o = ob + oy * OW + ox;
        ${
    max
      ? `let ky = u32(ty) - oy * sh; let kx = u32(tx) - ox * sw;
        if (u32(Am[o]) == ky * kw + kx) { acc += Gy[o]; }`
      : "acc += Gy[o] * UF(11u);"
  }
      }
    }
  }
  Gx[i] = acc;
}`;
}
