/**
 * Elementwise ops with NumPy broadcasting, each with its vector-Jacobian product beside it.
 *
 * @module
 */
import type { BinaryOp, UnaryOp } from "../backend.ts";
import { fmtShape, type Tensor } from "../tensor.ts";
import { record } from "../tape.ts";
import { sumTo } from "./broadcast.ts";
import { backendFor, broadcastShapes, checkTensor, scalarLike, type TensorLike } from "./dispatch.ts";

function unaryRaw(op: UnaryOp, x: Tensor, name = op): Tensor {
  checkTensor(name, "x", x);
  return backendFor(name, { x }).unary(op, x);
}

function binaryRaw(op: BinaryOp, a: TensorLike, b: TensorLike, name: string): [Tensor, Tensor, Tensor] {
  if (typeof a === "number" && typeof b === "number") {
    throw new TypeError(`${name}: at least one argument must be a Tensor, got two numbers`);
  }
  if (typeof a === "number") checkTensor(name, "b", b);
  const ta = typeof a === "number" ? scalarLike(a, b as Tensor) : a;
  const tb = typeof b === "number" ? scalarLike(b, ta) : b;
  const be = backendFor(name, { a: ta, b: tb });
  const shape = broadcastShapes(name, ta.shape, tb.shape);
  return [be.binary(op, ta, tb, shape), ta, tb];
}

/**
 * The two input gradients of a binary op, computing only those that are needed (a constant or a
 * plain number as one operand gets none).
 */
function grads2(
  needs: readonly boolean[],
  da: () => Tensor,
  db: () => Tensor,
): [Tensor | null, Tensor | null] {
  return [needs[0] ? da() : null, needs[1] ? db() : null];
}

/** a + b, broadcasting. d/da = 1, d/db = 1. */
export function add(a: TensorLike, b: TensorLike): Tensor {
  const [y, ta, tb] = binaryRaw("add", a, b, "add");
  return record(y, [ta, tb], (g, n) => grads2(n, () => sumTo(g, ta.shape), () => sumTo(g, tb.shape)));
}

/** a − b, broadcasting. d/da = 1, d/db = −1. */
export function sub(a: TensorLike, b: TensorLike): Tensor {
  const [y, ta, tb] = binaryRaw("sub", a, b, "sub");
  return record(y, [ta, tb], (g, n) => grads2(n, () => sumTo(g, ta.shape), () => sumTo(neg(g), tb.shape)));
}

/** a · b elementwise, broadcasting. d/da = b, d/db = a. */
export function mul(a: TensorLike, b: TensorLike): Tensor {
  const [y, ta, tb] = binaryRaw("mul", a, b, "mul");
  return record(
    y,
    [ta, tb],
    (g, n) => grads2(n, () => sumTo(mul(g, tb), ta.shape), () => sumTo(mul(g, ta), tb.shape)),
  );
}

/** a / b elementwise, broadcasting. d/da = 1/b, d/db = −a/b². */
export function div(a: TensorLike, b: TensorLike): Tensor {
  const [y, ta, tb] = binaryRaw("div", a, b, "div");
  return record(y, [ta, tb], (g, n) =>
    grads2(
      n,
      () => sumTo(div(g, tb), ta.shape),
      () => sumTo(neg(div(mul(g, y), tb)), tb.shape),
    ));
}

/** a ^ b elementwise, broadcasting. d/da = b·a^(b−1), d/db = ln(a)·a^b. */
export function pow(a: TensorLike, b: TensorLike): Tensor {
  const [y, ta, tb] = binaryRaw("pow", a, b, "pow");
  return record(y, [ta, tb], (g, n) =>
    grads2(
      n,
      () => sumTo(mul(g, mul(tb, pow(ta, sub(tb, 1)))), ta.shape),
      () => sumTo(mul(g, mul(log(ta), y)), tb.shape),
    ));
}

/** max(a, b) elementwise; ties send the gradient to a. */
export function maximum(a: TensorLike, b: TensorLike): Tensor {
  const [y, ta, tb] = binaryRaw("maximum", a, b, "maximum");
  return record(y, [ta, tb], (g, n) => {
    const m = ge(ta, tb);
    return grads2(n, () => sumTo(mul(g, m), ta.shape), () => sumTo(mul(g, sub(1, m)), tb.shape));
  });
}

/** min(a, b) elementwise; ties send the gradient to a. */
export function minimum(a: TensorLike, b: TensorLike): Tensor {
  const [y, ta, tb] = binaryRaw("minimum", a, b, "minimum");
  return record(y, [ta, tb], (g, n) => {
    const m = ge(tb, ta);
    return grads2(n, () => sumTo(mul(g, m), ta.shape), () => sumTo(mul(g, sub(1, m)), tb.shape));
  });
}

/** 1 where a > b else 0 (no gradient). */
export function gt(a: TensorLike, b: TensorLike): Tensor {
  return binaryRaw("gt", a, b, "gt")[0];
}
/** 1 where a ≥ b else 0 (no gradient). */
export function ge(a: TensorLike, b: TensorLike): Tensor {
  return binaryRaw("ge", a, b, "ge")[0];
}
/** 1 where a = b else 0 (no gradient). */
export function eq(a: TensorLike, b: TensorLike): Tensor {
  return binaryRaw("eq", a, b, "eq")[0];
}

/** −x. */
export function neg(x: Tensor): Tensor {
  const y = unaryRaw("neg", x);
  return record(y, [x], (g) => [neg(g)]);
}

/** eˣ. d/dx = y. */
export function exp(x: Tensor): Tensor {
  const y = unaryRaw("exp", x);
  return record(y, [x], (g) => [mul(g, y)]);
}

/** ln x. d/dx = 1/x. */
export function log(x: Tensor): Tensor {
  const y = unaryRaw("log", x);
  return record(y, [x], (g) => [div(g, x)]);
}

/** √x. d/dx = 1/(2y). */
export function sqrt(x: Tensor): Tensor {
  const y = unaryRaw("sqrt", x);
  return record(y, [x], (g) => [div(g, mul(y, 2))]);
}

/** x². d/dx = 2x. */
export function square(x: Tensor): Tensor {
  const y = unaryRaw("square", x);
  return record(y, [x], (g) => [mul(g, mul(x, 2))]);
}

/** 1/x. d/dx = −y². */
export function reciprocal(x: Tensor): Tensor {
  const y = unaryRaw("reciprocal", x);
  return record(y, [x], (g) => [neg(mul(g, square(y)))]);
}

/** |x|. d/dx = sign(x). */
export function abs(x: Tensor): Tensor {
  const y = unaryRaw("abs", x);
  return record(y, [x], (g) => [mul(g, sign(x))]);
}

/** sign(x) ∈ {−1, 0, 1} (no gradient). */
export function sign(x: Tensor): Tensor {
  return unaryRaw("sign", x);
}

/**
 * max(x, 0). d/dx = 1 where x > 0 else 0: the gradient is g·step(x), one backend pass
 * (`reluGrad`) instead of the mask and the product.
 */
export function relu(x: Tensor): Tensor {
  const y = unaryRaw("relu", x);
  return record(y, [x], (g) => [reluGradRaw(x, g)]);
}

/**
 * relu(a + b) for `a` and `b` of one shape, in one backend pass (`addRelu`): the values of
 * `relu(add(a, b))` (a residual block's output). The gradient of both is g·step(y), one pass.
 * Internal: used by `nn.residual`.
 */
export function addRelu(a: Tensor, b: Tensor): Tensor {
  const op = "addRelu";
  checkTensor(op, "a", a);
  checkTensor(op, "b", b);
  const be = backendFor(op, { a, b });
  if (a.rank !== b.rank || a.shape.some((d, i) => d !== b.shape[i])) {
    throw new RangeError(`${op}: a ${fmtShape(a.shape)} and b ${fmtShape(b.shape)} must have the same shape`);
  }
  const y = be.addRelu(a, b);
  return record(y, [a, b], (g) => {
    const gs = reluGradRaw(y, g);
    return [gs, gs];
  });
}

/** g · step(x) (g of x's shape): the values of `mul(g, step(x))`, in one backend call. */
function reluGradRaw(x: Tensor, g: Tensor): Tensor {
  const same = g.rank === x.rank && g.shape.every((d, i) => d === x.shape[i]);
  if (!same) return mul(g, unaryRaw("step", x, "relu"));
  return backendFor("relu (gradient)", { x, g }).reluGrad(x, g);
}

/** tanh x. d/dx = 1 − y². */
export function tanh(x: Tensor): Tensor {
  const y = unaryRaw("tanh", x);
  return record(y, [x], (g) => [mul(g, sub(1, square(y)))]);
}

/** 1/(1 + e^−x). d/dx = y(1 − y). */
export function sigmoid(x: Tensor): Tensor {
  const y = unaryRaw("sigmoid", x);
  return record(y, [x], (g) => [mul(g, mul(y, sub(1, y)))]);
}
