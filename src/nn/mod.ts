/**
 * Neural-network building blocks: initializers, layers (the `nn` namespace), stateful models and
 * model builders.
 *
 * @module
 */
export * from "./init.ts";
export * from "./models.ts";
export * as nn from "./nn.ts";
export type { ApplyContext, Layer, LayerOutput } from "./layer.ts";
export * from "./stateful.ts";
export * from "./resnet.ts";
export * from "./vgg.ts";
