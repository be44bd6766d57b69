/**
 * The constants of the fixed-point noise transforms (Q25: the integer x stands for x / 2^25),
 * shared by every implementation that must draw the same bits: the reference and fast JS paths in
 * `src/random/`, the generated WebAssembly in `kernels/wasm/noise_wasm.ts` (which receives them as
 * arguments) and the WGSL in `kernels/wgsl/random.ts`. Plain data, no imports.
 *
 * @module
 */

/** One in Q25 (2^25). */
export const ONE_Q25 = 33554432;
/** 2^-25, exact: `⌊a·b / 2^25⌋` is `Math.floor(a * b * INV_ONE_Q25)` for a·b < 2^53. */
export const INV_ONE_Q25 = 1 / ONE_Q25;
/** round(ln 2 · 2^25). */
export const LN2_Q25 = 23258160;
/** round(π/2 · 2^25). */
export const HALF_PI_Q25 = 52707179;
/**
 * `LOG_RECIP[j]` = ⌊2^25 · 32 / (33 + j)⌋: the reciprocal of the upper end of the j-th of 32
 * sub-intervals of [1, 2), for the table-driven logarithm.
 */
export const LOG_RECIP: readonly number[] = [
  32537631,
  31580641,
  30678337,
  29826161,
  29020049,
  28256363,
  27531841,
  26843545,
  26188824,
  25565281,
  24970740,
  24403223,
  23860929,
  23342213,
  22845570,
  22369621,
  21913098,
  21474836,
  21053761,
  20648881,
  20259279,
  19884107,
  19522578,
  19173961,
  18837575,
  18512790,
  18199013,
  17895697,
  17602324,
  17318416,
  17043521,
  16777216,
];
/** `LOG_OFFSET[j]` = round(ln(2^25 / LOG_RECIP[j]) · 2^25). */
export const LOG_OFFSET: readonly number[] = [
  1032526,
  2034226,
  3006886,
  3952144,
  4871500,
  5766339,
  6637931,
  7487456,
  8316003,
  9124582,
  9914134,
  10685534,
  11439599,
  12177089,
  12898717,
  13605152,
  14297021,
  14974911,
  15639377,
  16290939,
  16930092,
  17557296,
  18172990,
  18777590,
  19371491,
  19955059,
  20528655,
  21092607,
  21647240,
  22192851,
  22729733,
  23258160,
];
