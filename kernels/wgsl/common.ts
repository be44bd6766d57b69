/**
 * WGSL building blocks shared by the kernels: the uniform block (binding 0, read as a flat list of
 * u32 words), the flat invocation index of 1-D kernels, and small helpers.
 *
 * Every kernel module exports functions returning WGSL text, so `kernels/` loads wherever the
 * module is imported from (JSR over https included): no file reads.
 *
 * @module
 */

/** Threads per workgroup of the 1-D (elementwise) kernels. */
export const WG1D = 256;

/** Uniform words of a kernel, rounded up to whole vec4s. */
export function uniformWords(n: number): number {
  return Math.ceil(n / 4) * 4;
}

/**
 * The uniform block of `words` u32 words at binding 0, with accessors `U(i)` (u32), `UI(i)` (i32)
 * and `UF(i)` (f32 bit pattern).
 */
export function uniformBlock(words: number): string {
  return `struct Params { d: array<vec4<u32>, ${Math.max(1, Math.ceil(words / 4))}> };
@group(0) @binding(0) var<uniform> P: Params;
fn U(i: u32) -> u32 { return P.d[i >> 2u][i & 3u]; }
fn UI(i: u32) -> i32 { return bitcast<i32>(P.d[i >> 2u][i & 3u]); }
fn UF(i: u32) -> f32 { return bitcast<f32>(P.d[i >> 2u][i & 3u]); }
`;
}

/** `@compute` header of a 1-D kernel whose body starts with `let i: u32` = the flat index. */
export function main1d(): string {
  return `@compute @workgroup_size(${WG1D})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = (wid.x + wid.y * nwg.x) * ${WG1D}u + lid.x;`;
}

/** A storage binding declaration. */
export function storage(binding: number, name: string, type: string, write = false): string {
  return `@group(0) @binding(${binding}) var<storage, ${
    write ? "read_write" : "read"
  }> ${name}: array<${type}>;\n`;
}

/**
 * WGSL: `isnan_` / `isnan4_` test for NaN on the bits (WGSL lets a compiler assume comparisons never
 * see one), the ReLU of the CPU (`x > 0 || x is NaN ? x : +0`, NaN propagating) as `relu1` /
 * `max4relu`, for the unary kernel and the matmul's fused epilogue alike, and ReLU's step, the CPU's
 * `+(x > 0)` (1 for x > 0 up to +Inf, 0 for ±0, negatives and NaN) on the bits, as `step1` / `step4`:
 * the mask of every gradient through a ReLU (the gradient kernel, the products' masked loads, the
 * batch-norm kernels).
 */
export const NAN_RELU_WGSL =
  `fn isnan_(v: f32) -> bool { return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u; }
fn isnan4_(v: vec4<f32>) -> vec4<bool> {
  return (bitcast<vec4<u32>>(v) & vec4<u32>(0x7fffffffu)) > vec4<u32>(0x7f800000u);
}
fn relu1(x: f32) -> f32 { return select(0.0, x, x > 0.0 || isnan_(x)); }
fn max4relu(x: vec4<f32>) -> vec4<f32> { return select(vec4<f32>(0.0), x, x > vec4<f32>(0.0) | isnan4_(x)); }
fn step1(x: f32) -> f32 { let b = bitcast<u32>(x); return select(0.0, 1.0, b != 0u && b <= 0x7f800000u); }
fn step4(x: vec4<f32>) -> vec4<f32> {
  let b = bitcast<vec4<u32>>(x);
  return select(vec4<f32>(0.0), vec4<f32>(1.0), (b != vec4<u32>(0u)) & (b <= vec4<u32>(0x7f800000u)));
}
`;

/**
 * WGSL: `reluGrad1(x, g)` = g · step(x), ReLU's gradient rule (the binary mul with the unary step: a
 * NaN or infinite g times a zero step is NaN), with the step on the bits (`step1` of
 * {@linkcode NAN_RELU_WGSL}, included). Since step(relu(x)) = step(x) (NaN and −0 included), the
 * mask may be read from ReLU's output; the batch-norm kernels with a fused ReLU use it so.
 */
export const RELU_GRAD_WGSL = `${NAN_RELU_WGSL}fn reluGrad1(x: f32, g: f32) -> f32 { return g * step1(x); }
`;

/** WGSL for −∞ as f32. */
export const NEG_INF = "bitcast<f32>(0xff800000u)";
