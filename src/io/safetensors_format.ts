/**
 * The safetensors format itself: dtypes, header parsing and validation, and reading tensor data
 * (F32/F64 as they are, F16/BF16 widened exactly, integers when exact). Internal to
 * `safetensors.ts`, which holds the public API; no file access (browser-safe).
 *
 * @module
 */
import { allocTensorArray } from "../alloc.ts";
import { tensor } from "../creation.ts";
import { type DType, fmtShape, Tensor, type TypedArray } from "../tensor.ts";

/** The most header bytes accepted (the Python library's limit): 100 MB. */
export const SAFETENSORS_MAX_HEADER = 100_000_000;

/** Element sizes of the dtypes the format defines, in bytes. */
export const DTYPE_SIZE: Readonly<Record<string, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
};

/** How each readable dtype is read: natively, as a half float, or as exact integers. */
export const INTEGER_DTYPES = new Set(["BOOL", "U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64"]);
const HALF_DTYPES = new Set(["F16", "BF16"]);

/** True on little-endian hosts (all current ones): typed arrays then copy as they are. */
export const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** One tensor of a parsed header. */
export interface Entry {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

/** The dtype a file dtype reads into without a template. */
export function defaultDType(code: string): DType {
  return code === "F64" || INTEGER_DTYPES.has(code) ? "float64" : "float32";
}

/** `o[k] = v` as an own property, even for `k` = "__proto__" (names come from untrusted files). */
export function setOwn(o: Record<string, unknown>, k: string, v: unknown): void {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

/** A value described for error messages. */
export function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "object") return `a ${(v as object).constructor?.name ?? "object"}`;
  return `${typeof v} ${String(v)}`;
}

/** Parses and validates the header; allocates nothing but the header's own JSON. */
export function parseHeader(
  who: string,
  bytes: Uint8Array,
): { entries: Entry[]; metadata: Record<string, string>; dataStart: number } {
  if (bytes.length < 8) {
    throw new Error(`${who}: the file is ${bytes.length} bytes, too short for the 8-byte header length`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lo = view.getUint32(0, true), hi = view.getUint32(4, true);
  const n = hi * 2 ** 32 + lo;
  if (n > SAFETENSORS_MAX_HEADER) {
    throw new Error(
      `${who}: the header length is ${hi === 0 ? n : `≥ ${2 ** 32}`} bytes, more than the ` +
        `${SAFETENSORS_MAX_HEADER} allowed (not a safetensors file, or a corrupt one)`,
    );
  }
  if (8 + n > bytes.length) {
    throw new Error(
      `${who}: the header length is ${n} bytes, past the end of the ${bytes.length}-byte file (truncated?)`,
    );
  }
  if (n < 2 || bytes[8] !== 0x7b /* { */) {
    throw new Error(`${who}: the header must be a JSON object starting with "{" (not a safetensors file?)`);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + n));
  } catch {
    throw new Error(`${who}: the header is not valid UTF-8`);
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    throw new Error(`${who}: the header is not valid JSON (${(e as Error).message})`);
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) {
    throw new Error(`${who}: the header must be a JSON object, got ${describe(header)}`);
  }
  const metadata: Record<string, string> = {};
  const entries: Entry[] = [];
  for (const [name, info] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (info === null) continue;
      if (typeof info !== "object" || Array.isArray(info)) {
        throw new Error(`${who}: "__metadata__" must be an object of strings, got ${describe(info)}`);
      }
      for (const [k, v] of Object.entries(info as Record<string, unknown>)) {
        if (typeof v !== "string") {
          throw new Error(`${who}: "__metadata__"["${k}"] must be a string, got ${describe(v)}`);
        }
        setOwn(metadata, k, v);
      }
      continue;
    }
    entries.push(checkEntry(who, name, info));
  }
  // Byte ranges in order: from 0, contiguous, to the end of the file.
  const dataStart = 8 + n, dataLen = bytes.length - dataStart;
  const sorted = entries.slice().sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  for (const e of sorted) {
    if (e.begin !== pos) {
      throw new Error(
        `${who}: tensor "${e.name}" starts at data byte ${e.begin}, expected ${pos} ` +
          (e.begin < pos ? "(it overlaps the tensor before it)" : "(a gap before it)"),
      );
    }
    if (e.end > dataLen) {
      throw new Error(
        `${who}: tensor "${e.name}" ends at data byte ${e.end}, past the end of the ${dataLen}-byte ` +
          `data section (truncated file?)`,
      );
    }
    pos = e.end;
  }
  if (pos !== dataLen) {
    throw new Error(
      `${who}: the tensors cover ${pos} bytes of data but the file has ${dataLen} after the header ` +
        `(the format requires the data to end the file exactly)`,
    );
  }
  return { entries, metadata, dataStart };
}

const isCount = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

function checkEntry(who: string, name: string, info: unknown): Entry {
  const at = `${who}: tensor "${name}"`;
  if (info === null || typeof info !== "object" || Array.isArray(info)) {
    throw new Error(
      `${at}: its header entry must be an object {dtype, shape, data_offsets}, got ${describe(info)}`,
    );
  }
  const o = info as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (k !== "dtype" && k !== "shape" && k !== "data_offsets") {
      throw new Error(`${at}: unknown header field "${k}" (expected dtype, shape, data_offsets)`);
    }
  }
  const { dtype, shape, data_offsets: offsets } = o;
  if (typeof dtype !== "string" || !Object.hasOwn(DTYPE_SIZE, dtype)) {
    throw new Error(
      `${at}: dtype ${JSON.stringify(dtype) ?? "missing"} is not a safetensors dtype (${
        Object.keys(DTYPE_SIZE).join(", ")
      })`,
    );
  }
  if (!Array.isArray(shape) || !shape.every(isCount)) {
    throw new Error(`${at}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1]) {
    throw new Error(
      `${at}: data_offsets must be [begin, end] with 0 ≤ begin ≤ end, got ${JSON.stringify(offsets)}`,
    );
  }
  let count = 1;
  for (const d of shape) count *= d;
  const nbytes = count * DTYPE_SIZE[dtype];
  if (!Number.isSafeInteger(nbytes)) {
    throw new RangeError(`${at}: shape ${fmtShape(shape)} of ${dtype} is too large (overflow)`);
  }
  if (offsets[1] - offsets[0] !== nbytes) {
    throw new Error(
      `${at}: data_offsets ${JSON.stringify(offsets)} span ${offsets[1] - offsets[0]} bytes, but ` +
        `${dtype} ${fmtShape(shape)} needs ${nbytes}`,
    );
  }
  return { name, dtype, shape: shape.slice(), begin: offsets[0], end: offsets[1] };
}

/**
 * Throws unless every value of a validated tensor reads exactly into `dtype` (FP8 never; integers
 * when representable). Runs over the whole file before anything is allocated.
 */
export function checkReadable(
  who: string,
  bytes: Uint8Array,
  dataStart: number,
  e: Entry,
  dtype: DType,
): void {
  const at = `${who}: tensor "${e.name}"`;
  if (e.dtype.startsWith("F8_")) {
    throw new TypeError(`${at}: dtype ${e.dtype} (FP8) is not supported; convert it to F16, F32 or F64`);
  }
  if (!INTEGER_DTYPES.has(e.dtype)) return;
  const view = new DataView(bytes.buffer, bytes.byteOffset + dataStart + e.begin, e.end - e.begin);
  const n = (e.end - e.begin) / DTYPE_SIZE[e.dtype];
  for (let i = 0; i < n; i++) integerAt(at, view, e.dtype, i, dtype === "float32");
}

/** Reads one validated, checked tensor into a new `dtype` array on `device`. */
export function readTensor(
  who: string,
  bytes: Uint8Array,
  dataStart: number,
  e: Entry,
  dtype: DType,
  device: Tensor["device"],
): Tensor {
  const at = `${who}: tensor "${e.name}"`;
  const arr = allocTensorArray(dtype, e.shape, at);
  const count = arr.length;
  if (count > 0) {
    const view = new DataView(bytes.buffer, bytes.byteOffset + dataStart + e.begin, e.end - e.begin);
    if ((e.dtype === "F32" || e.dtype === "F64") && LITTLE_ENDIAN) {
      new Uint8Array(arr.buffer).set(bytes.subarray(dataStart + e.begin, dataStart + e.end));
    } else if (e.dtype === "F32") {
      for (let i = 0; i < count; i++) arr[i] = view.getFloat32(4 * i, true);
    } else if (e.dtype === "F64") {
      for (let i = 0; i < count; i++) arr[i] = view.getFloat64(8 * i, true);
    } else if (HALF_DTYPES.has(e.dtype)) {
      readHalf(view, e.dtype === "BF16", arr);
    } else {
      for (let i = 0; i < count; i++) arr[i] = integerAt(at, view, e.dtype, i, false);
    }
  }
  if (device === "cpu") return new Tensor(arr, e.shape, dtype, "cpu");
  return tensor(arr, e.shape, { dtype, device });
}

/** F16/BF16 → float32 bits exactly (NaN payloads kept), or to float64 through float32. */
function readHalf(view: DataView, bf16: boolean, out: TypedArray): void {
  const n = out.length;
  const bits = out instanceof Float32Array
    ? new Uint32Array(out.buffer, out.byteOffset, n)
    : new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const h = view.getUint16(2 * i, true);
    bits[i] = bf16 ? h << 16 >>> 0 : halfToFloatBits(h);
  }
  if (out instanceof Float64Array) {
    const f = new Float32Array(bits.buffer);
    for (let i = 0; i < n; i++) out[i] = f[i];
  }
}

/** The float32 bit pattern of an IEEE half (exact: every half is a float32). */
export function halfToFloatBits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0; // inf, NaN (payload kept)
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0; // normal: 127 − 15 = 112
  if (mant === 0) return sign >>> 0; // ±0
  // Subnormal half: normalize into a float32 normal.
  let e = 113;
  while ((mant & 0x400) === 0) {
    mant <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((mant & 0x3ff) << 13)) >>> 0;
}

/** Element `i` of an integer tensor; throws unless it is exact in float64 (and float32 when `f32`). */
function integerAt(at: string, view: DataView, code: string, i: number, f32: boolean): number {
  let v: number;
  switch (code) {
    case "BOOL": {
      v = view.getUint8(i);
      if (v > 1) throw new Error(`${at}: BOOL element ${i} is byte ${v}, expected 0 or 1`);
      break;
    }
    case "U8":
      v = view.getUint8(i);
      break;
    case "I8":
      v = view.getInt8(i);
      break;
    case "I16":
      v = view.getInt16(2 * i, true);
      break;
    case "U16":
      v = view.getUint16(2 * i, true);
      break;
    case "I32":
      v = view.getInt32(4 * i, true);
      break;
    case "U32":
      v = view.getUint32(4 * i, true);
      break;
    default: {
      const big = code === "I64" ? view.getBigInt64(8 * i, true) : view.getBigUint64(8 * i, true);
      v = Number(big);
      if (BigInt(v) !== big) {
        throw new RangeError(
          `${at}: ${code} element ${i} is ${big}, beyond the integers float64 holds exactly`,
        );
      }
    }
  }
  if (f32 && Math.fround(v) !== v) {
    throw new RangeError(`${at}: ${code} element ${i} is ${v}, which float32 cannot hold exactly`);
  }
  return v;
}
