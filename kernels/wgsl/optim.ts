/**
 * Fused optimizer kernels: one dispatch per parameter array (or per group of arrays) computes the base update (SGD with
 * momentum/Nesterov/L2, or Adam/AdamW/AMSGrad), the new buffers, and the weight-noise step
 * (`u' = u + (n_new − n_old)`, or `u − n_old` on a reset) with the noise drawn in-kernel from the
 * WGSL Philox twin, bit-identical to `fillNoise`, and, where the parameter is at hand and the
 * bindings allow, the parameter plus its update (`apply`), so that `applyUpdates` costs no dispatch.
 * One thread handles one Philox block (4 elements).
 *
 * The semantics are those of `src/optim/fused_ops.ts` (`OptimKernels`); arithmetic is float32.
 *
 * Uniforms: n, k0, k1, c1, c2, the array's first thread (a kernel over several arrays), scale (f32),
 * pad, then the optimizer's f32 constants from
 * word 8: SGD lr, momentum, 1 − dampening, wd; Adam b1, 1 − b1, b2, 1 − b2, eps,
 * lr/(1 − b1^t), √(1 − b2^t), wd, lr·wd (decoupled); addScaled alpha; 20 words per array, then the
 * logarithm table of the gaussian and laplace laws (`withLogTable`). The law itself is compiled in.
 *
 * @module
 */
import { main1d, storage, uniformBlock } from "./common.ts";
import type { NoiseLaw } from "../../src/types.ts";
import { lawIndex, loadLogTable, RANDOM_WGSL } from "./random.ts";

/** Where the logarithm table of the noise laws starts in the optimizer kernels' uniforms. */
export const OPTIM_TABLE_BASE = 20;
/** Uniform words of the optimizer kernels over one parameter array (the table included). */
export const OPTIM_WORDS = OPTIM_TABLE_BASE + 64;

/** The weight-noise stage of a fused kernel. */
export interface NoiseVariant {
  /** Draw new noise (not a reset, scale ≠ 0): binds an `NOut` output. */
  draw: boolean;
  /** An old noise exists: binds an `NOld` input. */
  nOld: boolean;
  /** Write the drawn noise to `NOut` (default true; perturb does not keep it). */
  store?: boolean;
  /** The law of the draws (required when `draw`). */
  law?: NoiseLaw;
}

/** A fused elementwise kernel: per-element body computing `var u`, plus the noise stage. */
export interface FusedKernel {
  /** Read bindings (f32 arrays), in binding order after the uniforms. */
  reads: readonly string[];
  /** Write bindings (f32 arrays), after the reads; `Uo` (the update) is added automatically. */
  writes: readonly string[];
  /** WGSL run for element `i`; must declare `var u: f32`. */
  body: string;
  /** The noise stage. */
  noise: NoiseVariant;
  /**
   * Also apply the update: `PNew[i] = Pp[i] + u` after the noise stage, the parameter plus its final
   * update (what `applyUpdates` computes), reading the parameter `Pp` (bound once if the body reads it).
   */
  apply?: boolean;
}

/** Bindings of a fused kernel in order: reads (the body's, Pp, NOld), then writes (Uo, the named writes, NOut, PNew). */
export function fusedBindings(k: FusedKernel): { reads: string[]; writes: string[] } {
  const reads = [
    ...k.reads,
    ...(k.apply && !k.reads.includes("Pp") ? ["Pp"] : []),
    ...(k.noise.nOld ? ["NOld"] : []),
  ];
  const writes = [
    "Uo",
    ...k.writes,
    ...(k.noise.draw && k.noise.store !== false ? ["NOut"] : []),
    ...(k.apply ? ["PNew"] : []),
  ];
  return { reads, writes };
}

/** Uniform words of one parameter array in a fused kernel (the table follows the last array's). */
export const OPTIM_LEAF_WORDS = OPTIM_TABLE_BASE;

/**
 * Uniform words of a fused kernel over `leaves` parameter arrays: {@linkcode OPTIM_LEAF_WORDS} per
 * array, then the logarithm table.
 */
export function optimWords(leaves: number): number {
  return OPTIM_LEAF_WORDS * leaves + 64;
}

/**
 * The WGSL of `k` for array `l` of a kernel over several: its uniform words start at
 * `OPTIM_LEAF_WORDS·l` (`U(8u)` becomes `U(${8 + base}u)`) and its bindings carry the suffix `_l`.
 */
function forLeaf(code: string, names: readonly string[], l: number, leaves: number): string {
  if (leaves === 1) return code;
  const base = OPTIM_LEAF_WORDS * l;
  let out = code.replace(/\b(UF?)\((\d+)u\)/g, (_, f: string, w: string) => `${f}(${base + Number(w)}u)`);
  for (const name of names) out = out.replace(new RegExp(`\\b${name}\\[`, "g"), `${name}_${l}[`);
  return out;
}

/**
 * WGSL of a fused kernel, over one parameter array or several at once (`leaves`, one dispatch for
 * all of them: the optimizer step of a whole model where the storage bindings allow).
 *
 * With several arrays, thread t (one Philox block of 4 elements) belongs to the array whose block
 * range holds it: word 5 of each array's uniforms is its first block (the arrays' ranges follow each
 * other), and the array's own block index `t − first` is what a kernel over that array alone would
 * see, so the noise and every result are those of one dispatch per array.
 */
export function fusedKernel(k: FusedKernel, leaves = 1): string {
  if (!Number.isInteger(leaves) || leaves < 1) {
    throw new RangeError(`fusedKernel: leaves must be an integer >= 1, got ${leaves}`);
  }
  const { reads, writes } = fusedBindings(k);
  const names = [...reads, ...writes];
  const suffix = (name: string, l: number) => (leaves === 1 ? name : `${name}_${l}`);
  let decl = "";
  for (let l = 0; l < leaves; l++) {
    const b0 = 1 + names.length * l;
    reads.forEach((r, i) => (decl += storage(b0 + i, suffix(r, l), "f32")));
    writes.forEach((w, i) => (decl += storage(b0 + reads.length + i, suffix(w, l), "f32", true)));
  }
  if (k.noise.draw && !k.noise.law) throw new TypeError("fusedKernel: a drawing noise stage needs its law");
  const stage = k.noise.draw
    ? `let nn = z[l]; ${k.noise.store !== false ? "NOut[i] = nn; " : ""}u = u + (nn - ${
      k.noise.nOld ? "NOld[i]" : "0.0"
    });`
    : k.noise.nOld
    ? "u = u - NOld[i];"
    : "";
  const apply = k.apply ? " PNew[i] = Pp[i] + u;" : "";
  // One array's work for its block index `blk`.
  const array = `{
  let n = U(0u);
  let base = 4u * blk;
  if (base >= n) { return; }
  ${
    k.noise.draw
      ? `let z = noise_block(philox(U(1u), U(2u), vec4<u32>(blk, U(3u), U(4u), 0u)), ${
        lawIndex(k.noise.law!)
      }u, UF(6u));`
      : ""
  }
  if (base + 3u < n) {
    ${
    [0, 1, 2, 3].map((l) =>
      `{
    const l = ${l}u;
    let i = base + l;
    ${k.body}
    ${stage}
    Uo[i] = u;${apply}
    }`
    ).join("\n    ")
  }
    return;
  }
  for (var l = 0u; l < 4u; l++) {
    let i = base + l;
    if (i >= n) { break; }
    ${k.body}
    ${stage}
    Uo[i] = u;${apply}
  }
  }`;
  let dispatch = "";
  for (let l = 0; l < leaves; l++) {
    const code = forLeaf(array, names, l, leaves).replace(
      /^\{/,
      `{\n  let blk = i - U(${OPTIM_LEAF_WORDS * l + 5}u);`,
    );
    dispatch += l === leaves - 1
      ? (l === 0 ? code : ` else ${code}`)
      : `${l === 0 ? "" : " else "}if (i < U(${OPTIM_LEAF_WORDS * (l + 1) + 5}u)) ${code}`;
  }
  return `${uniformBlock(optimWords(leaves))}${decl}${k.noise.draw ? RANDOM_WGSL : ""}
${main1d()}
  ${k.noise.draw ? loadLogTable(k.noise.law!, OPTIM_LEAF_WORDS * leaves) : ""}
  ${dispatch}
}`;
}

/** Flags of the SGD kernel. */
export interface SgdVariant {
  /** L2 weight decay (reads Pp). */
  wd: boolean;
  /** Momentum: none, first step (buffer = d), or later steps (reads Buf). */
  momentum: "none" | "first" | "later";
  /** Nesterov momentum. */
  nesterov: boolean;
  /** Noise stage. */
  noise: NoiseVariant;
}

/** The fused SGD/VSGD kernel (torch.optim.SGD, then the noise stage). */
export function sgdKernel(v: SgdVariant): FusedKernel {
  const reads = ["G", ...(v.wd ? ["Pp"] : []), ...(v.momentum === "later" ? ["Buf"] : [])];
  const writes = v.momentum === "none" ? [] : ["BufO"];
  let body = `var d = G[i];${v.wd ? " d = d + UF(11u) * Pp[i];" : ""}`;
  if (v.momentum !== "none") {
    body += v.momentum === "first" ? " let b = d;" : " let b = UF(9u) * Buf[i] + UF(10u) * d;";
    body += ` BufO[i] = b; d = ${v.nesterov ? "d + UF(9u) * b" : "b"};`;
  }
  body += " var u = -UF(8u) * d;";
  return { reads, writes, body, noise: v.noise };
}

/** Flags of the Adam kernel. */
export interface AdamVariant {
  /** L2 decay added to the gradient (reads Pp). */
  coupledWd: boolean;
  /** Decoupled (AdamW) decay (reads Pp). */
  decoupledWd: boolean;
  /** First moment exists (reads M). */
  hasM: boolean;
  /** Second moment exists (reads V). */
  hasV: boolean;
  /** AMSGrad (writes VmO; reads Vm when it exists). */
  amsgrad: boolean;
  /** AMSGrad maximum exists. */
  hasVmax: boolean;
  /** Noise stage. */
  noise: NoiseVariant;
}

/** The fused Adam/VAdam kernel (torch.optim.Adam/AdamW, then the noise stage). */
export function adamKernel(v: AdamVariant): FusedKernel {
  const reads = [
    "G",
    ...(v.coupledWd || v.decoupledWd ? ["Pp"] : []),
    ...(v.hasM ? ["M"] : []),
    ...(v.hasV ? ["V"] : []),
    ...(v.amsgrad && v.hasVmax ? ["Vm"] : []),
  ];
  const writes = ["MO", "VO", ...(v.amsgrad ? ["VmO"] : [])];
  let body = `var g = G[i];${v.coupledWd ? " g = g + UF(15u) * Pp[i];" : ""}
    let m = UF(8u) * ${v.hasM ? "M[i]" : "0.0"} + UF(9u) * g; MO[i] = m;
    let v = UF(10u) * ${v.hasV ? "V[i]" : "0.0"} + UF(11u) * g * g; VO[i] = v;
    var vh = v;`;
  if (v.amsgrad) body += ` vh = max(${v.hasVmax ? "Vm[i]" : "0.0"}, v); VmO[i] = vh;`;
  body += `
    let s = UF(13u) * m / (sqrt(vh) / UF(14u) + UF(12u));
    var u = ${v.decoupledWd ? "-(UF(16u) * Pp[i]) - s" : "-s"};`;
  return { reads, writes, body, noise: v.noise };
}

/** The weight-noise step alone on an update U. */
export function noiseStepKernel(noise: NoiseVariant): FusedKernel {
  return { reads: ["Ui"], writes: [], body: "var u = Ui[i];", noise };
}

/** θ + n (exact mode's perturb): the noise stage with nothing to remove. */
export function perturbKernel(law: NoiseLaw): FusedKernel {
  return {
    reads: ["Pp"],
    writes: [],
    body: "var u = Pp[i];",
    noise: { draw: true, nOld: false, store: false, law },
  };
}

/** a + alpha·b (alpha in word 8; exact for alpha = ±1). */
export function addScaledKernel(alpha: 1 | -1 | 0): FusedKernel {
  const expr = alpha === 1 ? "A[i] + B[i]" : alpha === -1 ? "A[i] - B[i]" : "A[i] + UF(8u) * B[i]";
  return { reads: ["A", "B"], writes: [], body: `var u = ${expr};`, noise: { draw: false, nOld: false } };
}
