/**
 * Reductions (sum, max) over any set of axes. The host coalesces the input into kept dims (which
 * index the output) and reduced dims; each output may be split into chunks reduced by separate
 * workgroups, and a second pass folds the chunks (so a full reduction of a large tensor still
 * spreads over the whole GPU).
 *
 * @module
 */
import type { ReduceOp } from "../../src/types.ts";
import { NEG_INF, storage, uniformBlock } from "./common.ts";
import { MAX_RANK } from "./elementwise.ts";

/**
 * Uniform words: nOut, R, keptRank, redRank, chunk, nChunks, scale (f32), pad, keptShape[8],
 * keptStrides[8], redShape[8], redStrides[8].
 */
export const REDUCE_WORDS = 8 + 4 * MAX_RANK;

/** Threads per workgroup of the workgroup-per-output variant. */
export const REDUCE_WG = 64;

/**
 * A reduction kernel. `perGroup`: one workgroup per (output, chunk), else one thread.
 * `contiguous`: the reduced elements of an output are consecutive (offset base + r).
 * Bindings: x (read), y (write): y[o·nChunks + chunk].
 */
export function reduceKernel(op: ReduceOp, perGroup: boolean, contiguous: boolean): string {
  const ident = op === "sum" ? "0.0" : NEG_INF;
  const comb = op === "sum" ? "a + b" : "max(a, b)";
  const fin = op === "sum" ? "v * UF(6u)" : "v";
  const roff = contiguous ? "fn roff(r: u32) -> u32 { return r; }" : `fn roff(r: u32) -> u32 {
  var rem = r; var off = 0u;
  for (var d = i32(U(3)) - 1; d >= 0; d--) {
    let s = U(${8 + 2 * MAX_RANK}u + u32(d));
    off += (rem % s) * U(${8 + 3 * MAX_RANK}u + u32(d));
    rem = rem / s;
  }
  return off;
}`;
  const common = `${uniformBlock(REDUCE_WORDS)}${storage(1, "X", "f32")}${storage(2, "Y", "f32", true)}
fn comb(a: f32, b: f32) -> f32 { return ${comb}; }
fn kbase(o: u32) -> u32 {
  var rem = o; var off = 0u;
  for (var d = i32(U(2)) - 1; d >= 0; d--) {
    let s = U(8u + u32(d));
    off += (rem % s) * U(${8 + MAX_RANK}u + u32(d));
    rem = rem / s;
  }
  return off;
}
${roff}
`;
  if (!perGroup) {
    return `${common}
@compute @workgroup_size(${REDUCE_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
  let g = (wid.x + wid.y * nwg.x) * ${REDUCE_WG}u + lid.x;
  if (g >= U(0) * U(5)) { return; }
  let o = g / U(5);
  let ch = g % U(5);
  let base = kbase(o);
  let r0 = ch * U(4);
  let r1 = min(U(1), r0 + U(4));
  var v = ${ident};
  for (var r = r0; r < r1; r++) { v = comb(v, X[base + roff(r)]); }
  Y[g] = ${fin};
}`;
  }
  return `${common}
var<workgroup> sh: array<f32, ${REDUCE_WG}>;
@compute @workgroup_size(${REDUCE_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
  let g = wid.x + wid.y * nwg.x;
  let live = g < U(0) * U(5);
  var v = ${ident};
  var o = 0u;
  if (live) {
    o = g / U(5);
    let ch = g % U(5);
    let base = kbase(o);
    let r0 = ch * U(4);
    let r1 = min(U(1), r0 + U(4));
    for (var r = r0 + lid.x; r < r1; r += ${REDUCE_WG}u) { v = comb(v, X[base + roff(r)]); }
  }
  sh[lid.x] = v;
  workgroupBarrier();
  for (var s = ${REDUCE_WG / 2}u; s > 0u; s = s >> 1u) {
    if (lid.x < s) { sh[lid.x] = comb(sh[lid.x], sh[lid.x + s]); }
    workgroupBarrier();
  }
  if (live && lid.x == 0u) { let v = sh[0]; Y[g] = ${fin}; }
}`;
}
