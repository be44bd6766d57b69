/**
 * The IDX file format of MNIST (LeCun et al.): a 4-byte magic number `0x00 0x00 <type> <rank>`,
 * `rank` big-endian uint32 dimensions, then the elements in row-major order (big-endian for the
 * multi-byte types). {@linkcode parseIdx} checks the magic number, the dimensions and the length,
 * and names the file in every error.
 *
 * @module
 */

/** Element types of the IDX format, by their type byte. */
export type IdxType = "uint8" | "int8" | "int16" | "int32" | "float32" | "float64";

const TYPE_BY_CODE: Record<number, IdxType> = {
  0x08: "uint8",
  0x09: "int8",
  0x0b: "int16",
  0x0c: "int32",
  0x0d: "float32",
  0x0e: "float64",
};
const CODE_BY_TYPE: Record<IdxType, number> = {
  uint8: 0x08,
  int8: 0x09,
  int16: 0x0b,
  int32: 0x0c,
  float32: 0x0d,
  float64: 0x0e,
};
const BYTES: Record<IdxType, number> = { uint8: 1, int8: 1, int16: 2, int32: 4, float32: 4, float64: 8 };

/** A parsed IDX file. */
export interface IdxArray {
  /** Element type from the magic number. */
  type: IdxType;
  /** Dimensions, outermost first. */
  shape: number[];
  /**
   * The elements in row-major order: a `Uint8Array` view of the input (no copy) for `uint8`,
   * otherwise a typed array of the matching kind, converted to the host's byte order.
   */
  data: Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;
}

/** What {@linkcode parseIdx} should insist on. */
export interface IdxExpectation {
  /** Name used in error messages (usually the file path). Default `"IDX data"`. */
  name?: string;
  /** Required element type. */
  type?: IdxType;
  /**
   * Required dimensions; `-1` (or `undefined`) leaves one free. The rank must match exactly when
   * given.
   */
  shape?: readonly (number | undefined)[];
}

/**
 * Parses an IDX file held in `bytes`, checking the magic number, the rank, the dimensions against
 * `expect.shape`, and that the length is exactly header + elements. Throws an error naming
 * `expect.name` and what was expected.
 *
 * @example
 * ```ts
 * import { encodeIdx, parseIdx } from "@nvrm/core/data";
 * const bytes = encodeIdx(new Uint8Array([1, 2, 3, 4, 5, 6]), [2, 3]);
 * const { shape, data } = parseIdx(bytes, { name: "demo", type: "uint8", shape: [-1, 3] });
 * console.log(shape, data[5]); // [2, 3] 6
 * ```
 */
export function parseIdx(bytes: Uint8Array, expect: IdxExpectation = {}): IdxArray {
  checkExpectation(expect);
  const name = expect.name ?? "IDX data";
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError(`parseIdx: bytes must be a Uint8Array, got ${typeName(bytes)} (${name})`);
  }
  if (bytes.length < 4) {
    throw new Error(
      `${name}: not an IDX file: ${bytes.length} bytes, expected at least a 4-byte magic number`,
    );
  }
  const magicHex = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, "0")).join("");
  const type = TYPE_BY_CODE[bytes[2]];
  if (bytes[0] !== 0 || bytes[1] !== 0 || type === undefined) {
    throw new Error(
      `${name}: bad IDX magic number 0x${magicHex}, expected 0x0000TTRR with type byte TT in ` +
        `{08, 09, 0b, 0c, 0d, 0e}` + (expect.type ? ` (0x0000${hex(CODE_BY_TYPE[expect.type])}..)` : ""),
    );
  }
  const rank = bytes[3];
  if (expect.type !== undefined && type !== expect.type) {
    throw new Error(
      `${name}: IDX element type is ${type} (magic 0x${magicHex}), expected ${expect.type} ` +
        `(magic 0x0000${hex(CODE_BY_TYPE[expect.type])}..)`,
    );
  }
  if (expect.shape !== undefined && rank !== expect.shape.length) {
    throw new Error(
      `${name}: IDX rank is ${rank} (magic 0x${magicHex}), expected ${expect.shape.length} ` +
        `(dimensions ${fmtExpected(expect.shape)})`,
    );
  }
  const header = 4 + 4 * rank;
  if (bytes.length < header) {
    throw new Error(
      `${name}: truncated IDX header: ${bytes.length} bytes, expected at least ${header} for rank ${rank}`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const shape: number[] = [];
  for (let d = 0; d < rank; d++) shape.push(view.getUint32(4 + 4 * d, false));
  if (expect.shape !== undefined) {
    expect.shape.forEach((want, d) => {
      if (want !== undefined && want >= 0 && shape[d] !== want) {
        throw new Error(
          `${name}: IDX dimension ${d} is ${shape[d]} (shape [${shape.join(", ")}]), expected ${want} ` +
            `(shape ${fmtExpected(expect.shape!)})`,
        );
      }
    });
  }
  let count = 1;
  for (const d of shape) count *= d;
  const expectedBytes = header + count * BYTES[type];
  if (bytes.length !== expectedBytes) {
    throw new Error(
      `${name}: IDX file is ${
        bytes.length < expectedBytes ? "truncated" : "too long"
      }: ${bytes.length} bytes, ` +
        `expected ${expectedBytes} (${header}-byte header + ${count} ${type} elements for shape [${
          shape.join(", ")
        }])`,
    );
  }
  const body = bytes.subarray(header);
  let data: IdxArray["data"];
  if (type === "uint8") data = body;
  else if (type === "int8") data = new Int8Array(body.buffer, body.byteOffset, count);
  else {
    const bv = new DataView(body.buffer, body.byteOffset, body.byteLength);
    if (type === "int16") {
      const a = new Int16Array(count);
      for (let i = 0; i < count; i++) a[i] = bv.getInt16(2 * i, false);
      data = a;
    } else if (type === "int32") {
      const a = new Int32Array(count);
      for (let i = 0; i < count; i++) a[i] = bv.getInt32(4 * i, false);
      data = a;
    } else if (type === "float32") {
      const a = new Float32Array(count);
      for (let i = 0; i < count; i++) a[i] = bv.getFloat32(4 * i, false);
      data = a;
    } else {
      const a = new Float64Array(count);
      for (let i = 0; i < count; i++) a[i] = bv.getFloat64(8 * i, false);
      data = a;
    }
  }
  return { type, shape, data };
}

/**
 * Encodes an array as an IDX file (the inverse of {@linkcode parseIdx}); the element type follows
 * the typed array (`Uint8Array` → uint8, `Int32Array` → int32, …) unless `type` is given.
 */
export function encodeIdx(
  data: ArrayLike<number>,
  shape: readonly number[],
  type: IdxType = typeOf(data),
): Uint8Array {
  if (data === null || typeof data !== "object" || typeof data.length !== "number") {
    throw new TypeError(`encodeIdx: data must be an array or typed array of numbers, got ${typeName(data)}`);
  }
  if (!Object.hasOwn(CODE_BY_TYPE, type)) {
    throw new RangeError(
      `encodeIdx: type must be one of ${Object.keys(CODE_BY_TYPE).join(", ")}, got ${JSON.stringify(type)}`,
    );
  }
  if (!Array.isArray(shape)) {
    throw new TypeError(`encodeIdx: shape must be an array of uint32 dimensions, got ${typeName(shape)}`);
  }
  let count = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0 || d > 0xffffffff) {
      throw new RangeError(`encodeIdx: shape must hold uint32 dimensions, got [${shape.join(", ")}]`);
    }
    count *= d;
  }
  if (shape.length > 255) throw new RangeError(`encodeIdx: rank must be ≤ 255, got ${shape.length}`);
  if (data.length !== count) {
    throw new RangeError(
      `encodeIdx: data has ${data.length} elements, expected ${count} for shape [${shape.join(", ")}]`,
    );
  }
  const header = 4 + 4 * shape.length;
  const out = new Uint8Array(header + count * BYTES[type]);
  const v = new DataView(out.buffer);
  out[2] = CODE_BY_TYPE[type];
  out[3] = shape.length;
  shape.forEach((d, i) => v.setUint32(4 + 4 * i, d, false));
  for (let i = 0; i < count; i++) {
    const x = data[i], o = header + i * BYTES[type];
    if (type === "uint8") v.setUint8(o, x);
    else if (type === "int8") v.setInt8(o, x);
    else if (type === "int16") v.setInt16(o, x, false);
    else if (type === "int32") v.setInt32(o, x, false);
    else if (type === "float32") v.setFloat32(o, x, false);
    else v.setFloat64(o, x, false);
  }
  return out;
}

/** Throws unless `expect` is an {@linkcode IdxExpectation}: a known type, dimensions that are integers ≥ −1. */
function checkExpectation(expect: IdxExpectation): void {
  if (expect === null || typeof expect !== "object") {
    throw new TypeError(`parseIdx: expect must be an object, got ${typeName(expect)}`);
  }
  if (expect.name !== undefined && typeof expect.name !== "string") {
    throw new TypeError(`parseIdx: expect.name must be a string, got ${typeName(expect.name)}`);
  }
  if (expect.type !== undefined && !Object.hasOwn(CODE_BY_TYPE, expect.type)) {
    throw new RangeError(
      `parseIdx: expect.type must be one of ${Object.keys(CODE_BY_TYPE).join(", ")}, got ${
        JSON.stringify(expect.type)
      }`,
    );
  }
  if (expect.shape !== undefined) {
    if (!Array.isArray(expect.shape)) {
      throw new TypeError(`parseIdx: expect.shape must be an array, got ${typeName(expect.shape)}`);
    }
    expect.shape.forEach((d, i) => {
      if (d !== undefined && !(Number.isInteger(d) && d >= -1 && d <= 0xffffffff)) {
        throw new RangeError(
          `parseIdx: expect.shape[${i}] must be a uint32 dimension, or -1 (or undefined) for any, got ${d}`,
        );
      }
    });
  }
}

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (typeof v === "object") return (v as object).constructor?.name ?? "object";
  return typeof v;
}

function typeOf(data: ArrayLike<number>): IdxType {
  if (data instanceof Int8Array) return "int8";
  if (data instanceof Int16Array) return "int16";
  if (data instanceof Int32Array) return "int32";
  if (data instanceof Float32Array) return "float32";
  if (data instanceof Float64Array) return "float64";
  return "uint8";
}

function hex(b: number): string {
  return b.toString(16).padStart(2, "0");
}

function fmtExpected(shape: readonly (number | undefined)[]): string {
  return `[${shape.map((d) => (d === undefined || d < 0 ? "*" : String(d))).join(", ")}]`;
}
