/**
 * All tensor ops.
 *
 * @module
 */
export * from "./elementwise.ts";
export * from "./broadcast.ts";
export * from "./reduce.ts";
export * from "./matmul.ts";
export * from "./shape.ts";
export * from "./softmax.ts";
export * from "./conv.ts";
export * from "./norm.ts";
export * from "./dropout.ts";
export * from "./linear.ts";
