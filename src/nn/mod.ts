/**
 * Neural-network building blocks: initializers and model builders.
 *
 * @module
 */
export * from "./init.ts";
export * from "./models.ts";
