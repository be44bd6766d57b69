/**
 * The types of the optimizer API: gradient transformations, optimizers, hyperparameters and the
 * plain-data optimizer state.
 *
 * @module
 */
import type { Device, DType, Tensor } from "../tensor.ts";
import type { TensorTree } from "../tree.ts";

/**
 * A schedule: the value of a hyperparameter as a function of the step. `step` is the 0-based index
 * of the update being taken (the first `update` evaluates the schedule at 0), which is also the
 * number of updates already applied (`state.step`).
 */
export type Schedule = (step: number) => number;

/** A numeric hyperparameter: a constant or a {@linkcode Schedule}. */
export type HyperParam = number | Schedule;

/** The result of {@linkcode GradientTransformation.update}. */
export interface UpdateResult<T extends TensorTree = TensorTree, S = unknown> {
  /** The updates, a tree of the same shape as the gradients; add them with `applyUpdates`. */
  updates: T;
  /** The new state; the old one is left as it was. */
  state: S;
}

/**
 * A gradient transformation (optax style): a pure `init`/`update` pair. `update` maps
 * (gradients, state, params) to (updates, new state) and never mutates any of its inputs.
 */
export interface GradientTransformation<S = unknown> {
  /** The initial state for a tree of parameters. */
  init(params: TensorTree): S;
  /**
   * One step: transforms `grads` (a tree shaped like the params) into updates and returns the new
   * state. `params` is needed by transformations that read the weights (weight decay).
   */
  update<T extends TensorTree>(grads: T, state: S, params?: TensorTree): UpdateResult<T, S>;
}

/**
 * A complete optimizer: a {@linkcode GradientTransformation} that also says which weights the
 * model must be evaluated at. In the official mode of the variable optimizers the noise lives
 * inside the params (`perturb` is the identity, `clean` subtracts the stored noise); in exact mode
 * the params stay exact (`perturb` adds the noise of the step about to be taken, `clean` is the
 * identity). Optimizers without noise return the params unchanged from both.
 */
export interface Optimizer<S = unknown> extends GradientTransformation<S> {
  /** The weights at which to compute the gradient of the next step. */
  perturb<T extends TensorTree>(params: T, state: S): T;
  /** The noise-free weights (for evaluation), at any step. */
  clean<T extends TensorTree>(params: T, state: S): T;
}

/** Per-parameter state of a built-in transformation: what the parameter looked like, and buffers. */
export interface LeafState {
  /** Shape of the parameter (grads and params are checked against it). */
  readonly shape: readonly number[];
  /** Element type of the parameter. */
  readonly dtype: DType;
  /** Device of the parameter. */
  readonly device: Device;
  /** Named buffers (momentum, moments, noise); `null` stands for "all zeros / not yet created". */
  readonly buffers: Readonly<Record<string, Tensor | null>>;
}

/** Plain-data state of one built-in transformation (`sgd`, `adam`, `weightNoise`). */
export interface TransformState {
  /** Which transformation made it: "sgd", "adam" or "weightNoise". */
  readonly kind: string;
  /** Number of updates applied so far (one counter for the whole tree). */
  readonly step: number;
  /**
   * The hyperparameter values the most recent update used (after `init`: those the first update
   * will use). Read them with `hyperparams(state)`.
   */
  readonly hparams: Readonly<Record<string, number>>;
  /** Configuration that must match between the state and the optimizer (seed, mode, noise law…). */
  readonly meta: Readonly<Record<string, string | number | boolean>>;
  /** Per-parameter state, keyed by dotted parameter path. */
  readonly leaves: Readonly<Record<string, LeafState>>;
}

/** State of a {@linkcode chain}: the states of its members, in order. */
export interface ChainState {
  /** Always "chain". */
  readonly kind: "chain";
  /** The members' states. */
  readonly inner: readonly unknown[];
}

/**
 * State of a {@linkcode masked} transformation: the paths it applies to (in tree order) and the
 * state of the wrapped transformation, made for the sub-tree of those paths only.
 */
export interface MaskedState {
  /** Always "masked". */
  readonly kind: "masked";
  /** The parameter paths the mask selected at `init`; later updates must select the same. */
  readonly paths: readonly string[];
  /** The wrapped transformation's state. */
  readonly inner: unknown;
}
