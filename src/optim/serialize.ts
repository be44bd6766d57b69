/**
 * Saving and restoring optimizer states, bit-exactly.
 *
 * Layout (little-endian):
 *
 *     0   8 bytes  magic "NVRMOPT\0"
 *     8   u32      format version (1)
 *     12  u32      header length H
 *     16  H bytes  header: UTF-8 JSON { dataBytes, state } — the state with every tensor replaced
 *                  by { "$tensor": { dtype, shape, offset } }, every typed array by
 *                  { "$array": { type, offset, length } } and every non-finite number or −0 by
 *                  { "$num": "Infinity" | "-Infinity" | "NaN" | "-0" }
 *     …   zero padding to a multiple of 8
 *     …   dataBytes bytes of array data (each array 8-byte aligned)
 *     end u32      CRC-32 of every byte before it
 *
 * Buffers are stored under their parameter path (`state.inner[0].leaves["layers.0.w"]…`), so a
 * state can be inspected or checked against a parameter tree. Deserializing checks the magic, the
 * version, the lengths, the checksum and every array's bounds before it builds anything: a
 * truncated or corrupted input is an error, never a half-loaded state.
 *
 * @module
 */
import { type DType, fmtShape, sameShape, shapeSize, Tensor } from "../tensor.ts";
import { fmtValue } from "./hyper.ts";

/** The current serialization format version. */
export const STATE_FORMAT_VERSION = 1;

/**
 * The deepest nesting of objects and arrays a state may have (an optimizer state nests about ten
 * levels). `serialize` refuses deeper states and `deserialize` deeper headers, with an error naming
 * the path, instead of overflowing the stack.
 */
const MAX_DEPTH = 100;

/** `state.a.b…` cut to its first levels, for errors about very deep paths. */
const deepPath = (path: readonly (string | number)[]) =>
  pathStr(path.slice(0, 6)) + (path.length > 6 ? `… (${path.length} levels)` : "");

const MAGIC = [0x4e, 0x56, 0x52, 0x4d, 0x4f, 0x50, 0x54, 0x00]; // "NVRMOPT\0"

type ArrayCtor =
  | Float32ArrayConstructor
  | Float64ArrayConstructor
  | Int32ArrayConstructor
  | Uint32ArrayConstructor
  | Uint8ArrayConstructor;
const ARRAY_TYPES: Record<string, ArrayCtor> = {
  Float32Array,
  Float64Array,
  Int32Array,
  Uint32Array,
  Uint8Array,
};
type AnyArray = Float32Array | Float64Array | Int32Array | Uint32Array | Uint8Array;

let crcTable: Uint32Array | undefined;
function crc32(bytes: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  const t = crcTable;
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = t[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function checkHost(who: string): void {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
    throw new Error(`${who}: big-endian hosts are not supported`);
  }
}

const pathStr = (path: readonly (string | number)[]) =>
  path.length === 0
    ? "state"
    : "state" + path.map((k) => (typeof k === "number" ? `[${k}]` : `.${k}`)).join("");

/** Encodes a state into the JSON header and a list of arrays to store. */
function encode(
  state: unknown,
  host: Map<Tensor, AnyArray>,
): { json: unknown; chunks: { data: AnyArray; offset: number }[]; dataBytes: number } {
  const chunks: { data: AnyArray; offset: number }[] = [];
  let offset = 0;
  const put = (data: AnyArray) => {
    const at = offset;
    chunks.push({ data, offset: at });
    offset += Math.ceil(data.byteLength / 8) * 8;
    return at;
  };
  const seen = new Set<unknown>();
  const walk = (v: unknown, path: (string | number)[]): unknown => {
    if (v === null || typeof v === "string" || typeof v === "boolean") return v;
    if (typeof v === "number") {
      if (Number.isFinite(v) && !Object.is(v, -0)) return v;
      return { $num: Object.is(v, -0) ? "-0" : String(v) };
    }
    if (v instanceof Tensor) {
      let data = host.get(v);
      if (!data) {
        if (v.device !== "cpu") {
          throw new Error(
            `serialize: the tensor at ${pathStr(path)} is on ${v.device}; use await serializeAsync(state)`,
          );
        }
        data = v.storage as AnyArray;
      }
      return { $tensor: { dtype: v.dtype, shape: v.shape.slice(), offset: put(data) } };
    }
    if (ArrayBuffer.isView(v)) {
      const type = v.constructor.name;
      if (!(type in ARRAY_TYPES)) {
        throw new TypeError(`serialize: unsupported array type ${type} at ${pathStr(path)}`);
      }
      const a = v as AnyArray;
      return { $array: { type, offset: put(a), length: a.length } };
    }
    if (typeof v === "object") {
      if (seen.has(v)) throw new TypeError(`serialize: the state has a cycle at ${pathStr(path)}`);
      if (path.length >= MAX_DEPTH) {
        throw new RangeError(
          `serialize: the state nests deeper than ${MAX_DEPTH} levels at ${deepPath(path)}; ` +
            `an optimizer state nests about ten (is a parameter tree nested by mistake?)`,
        );
      }
      seen.add(v);
      let out: unknown;
      if (Array.isArray(v)) out = v.map((x, i) => walk(x, [...path, i]));
      else if (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null) {
        const o: Record<string, unknown> = {};
        for (const k of Object.keys(v)) {
          if (k === "$num" || k === "$tensor" || k === "$array") {
            throw new TypeError(`serialize: key ${JSON.stringify(k)} at ${pathStr(path)} is reserved`);
          }
          o[k] = walk((v as Record<string, unknown>)[k], [...path, k]);
        }
        out = o;
      } else {
        throw new TypeError(`serialize: unsupported value at ${pathStr(path)}: ${fmtValue(v)}`);
      }
      seen.delete(v);
      return out;
    }
    throw new TypeError(`serialize: unsupported value at ${pathStr(path)}: ${fmtValue(v)}`);
  };
  const json = walk(state, []);
  return { json, chunks, dataBytes: offset };
}

function assemble(state: unknown, host: Map<Tensor, AnyArray>): Uint8Array {
  checkHost("serialize");
  const { json, chunks, dataBytes } = encode(state, host);
  const header = new TextEncoder().encode(JSON.stringify({ dataBytes, state: json }));
  const headerEnd = 16 + header.length;
  const dataStart = Math.ceil(headerEnd / 8) * 8;
  const total = dataStart + dataBytes + 4;
  const out = new Uint8Array(total);
  out.set(MAGIC, 0);
  const dv = new DataView(out.buffer);
  dv.setUint32(8, STATE_FORMAT_VERSION, true);
  dv.setUint32(12, header.length, true);
  out.set(header, 16);
  for (const c of chunks) {
    out.set(new Uint8Array(c.data.buffer, c.data.byteOffset, c.data.byteLength), dataStart + c.offset);
  }
  dv.setUint32(total - 4, crc32(out.subarray(0, total - 4)), true);
  return out;
}

/**
 * Serializes an optimizer state (CPU tensors) to bytes. Every buffer, the step counters, the seed
 * and the recorded hyperparameters are kept bit for bit; `deserialize` gives back a state that
 * continues exactly as the original would.
 *
 * @example
 * ```ts
 * import { tensor } from "@nvrm/core";
 * import { deserialize, serialize, vsgd } from "@nvrm/core/optim";
 * const opt = vsgd({ lr: 0.1, momentum: 0.9, seed: 7 });
 * const state = opt.init({ w: tensor([1, 2, 3]) });
 * const bytes = serialize(state);
 * const back = deserialize(bytes, state); // checked against a template state
 * console.log(bytes.length, back.kind);
 * ```
 */
export function serialize(state: unknown): Uint8Array {
  return assemble(state, new Map());
}

/** Like {@linkcode serialize}, reading tensors from any device (GPU buffers are read back). */
export async function serializeAsync(state: unknown): Promise<Uint8Array> {
  // Every read is started before any is awaited: one wait for the device, not one per tensor.
  const reads = new Map<Tensor, Promise<AnyArray>>();
  const seen = new Set<unknown>(); // cycles and too deep states are reported by assemble below
  const walk = (v: unknown, depth: number): void => {
    if (v instanceof Tensor) {
      if (v.device !== "cpu" && !reads.has(v)) reads.set(v, v.data());
    } else if (v !== null && typeof v === "object" && !ArrayBuffer.isView(v)) {
      if (seen.has(v) || depth > MAX_DEPTH) return;
      seen.add(v);
      for (const x of Object.values(v)) walk(x, depth + 1);
    }
  };
  walk(state, 0);
  const host = new Map<Tensor, AnyArray>();
  await Promise.all([...reads].map(async ([t, p]) => host.set(t, await p)));
  return assemble(state, host);
}

/**
 * A value read from a header, for an error message: like `fmtValue`, but an array that is long or
 * holds arrays or objects is only counted (a corrupted header may nest or repeat without bound).
 */
function brief(v: unknown): string {
  if (!Array.isArray(v)) return fmtValue(v);
  if (v.length <= 16 && v.every((x) => x === null || typeof x !== "object")) return fmtValue(v);
  return `an array of ${v.length}`;
}

/**
 * Rejects a header whose brackets nest far deeper than any state's before it is parsed (parsing a
 * million nested arrays takes a tenth of a second): a scan of the UTF-8 bytes, skipping strings.
 */
function checkNesting(header: Uint8Array): void {
  // JSON depth of a container at state path length p is p + 2; a tensor's shape adds two more.
  const limit = MAX_DEPTH + 4;
  let depth = 0, inString = false;
  for (let i = 0; i < header.length; i++) {
    const c = header[i];
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped byte
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > limit) {
        bad(
          `the state nests deeper than ${MAX_DEPTH} levels (header byte ${i}; corrupted or not from serialize)`,
        );
      }
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
}

function bad(msg: string): never {
  throw new Error(`deserialize: ${msg}`);
}

/**
 * Restores a state written by {@linkcode serialize} (tensors come back on the CPU). Throws on
 * anything but intact data of a known format version; with `template` (for example
 * `opt.init(params)`), also throws — naming the place — unless the restored state has the same
 * structure: the same kinds, options, parameter paths, shapes and dtypes, and every buffer
 * (momentum, moments, noise) of its parameter's shape and dtype. Nothing is returned half-loaded.
 */
export function deserialize<S = unknown>(bytes: Uint8Array, template?: S): S {
  checkHost("deserialize");
  if (!(bytes instanceof Uint8Array)) bad(`expected a Uint8Array, got ${brief(bytes)}`);
  if (bytes.length < 20) bad(`data is truncated (${bytes.length} bytes; an optimizer state has at least 20)`);
  for (let i = 0; i < 8; i++) if (bytes[i] !== MAGIC[i]) bad("not an optimizer state (bad magic bytes)");
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = dv.getUint32(8, true);
  if (version !== STATE_FORMAT_VERSION) {
    bad(`unsupported format version ${version} (this library reads version ${STATE_FORMAT_VERSION})`);
  }
  const headerLen = dv.getUint32(12, true);
  if (16 + headerLen + 4 > bytes.length) {
    bad(`data is truncated (header of ${headerLen} bytes, ${bytes.length} in all)`);
  }
  checkNesting(bytes.subarray(16, 16 + headerLen));
  let header: { dataBytes: number; state: unknown } | null;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(16, 16 + headerLen)));
  } catch (e) {
    bad(`corrupted header (${(e as Error).message})`);
  }
  const dataStart = Math.ceil((16 + headerLen) / 8) * 8;
  const dataBytes = header?.dataBytes as number;
  if (!Number.isSafeInteger(dataBytes) || dataBytes < 0) {
    bad(`corrupted header (dataBytes ${brief(dataBytes)}, expected a byte count)`);
  }
  const total = dataStart + dataBytes + 4;
  if (bytes.length < total) bad(`data is truncated (${bytes.length} bytes, expected ${total})`);
  if (bytes.length > total) bad(`unexpected trailing data (${bytes.length} bytes, expected ${total})`);
  const stored = dv.getUint32(total - 4, true);
  if (crc32(bytes.subarray(0, total - 4)) !== stored) bad("checksum mismatch (the data is corrupted)");
  if (header === null || typeof header !== "object" || !Object.hasOwn(header, "state")) {
    bad(`corrupted header (no "state" entry)`);
  }

  // serialize writes the arrays one after another in the order of this walk: each must start at or
  // after the end of the previous one, so the arrays built never exceed the data read.
  let dataEnd = 0;
  const slice = (offset: unknown, byteLength: number, where: string): ArrayBuffer => {
    if (
      !Number.isSafeInteger(offset) || (offset as number) < 0 || (offset as number) + byteLength > dataBytes
    ) {
      bad(
        `array at ${where} lies outside the data (offset ${brief(offset)}, ${byteLength} bytes; ` +
          `the data holds ${dataBytes})`,
      );
    }
    if ((offset as number) < dataEnd) {
      bad(`array at ${where} overlaps the previous array (offset ${offset}, previous ends at ${dataEnd})`);
    }
    dataEnd = (offset as number) + byteLength;
    const start = bytes.byteOffset + dataStart + (offset as number);
    return bytes.buffer.slice(start, start + byteLength) as ArrayBuffer;
  };
  const NUMS: Record<string, number> = { "Infinity": Infinity, "-Infinity": -Infinity, "NaN": NaN, "-0": -0 };
  const walk = (v: unknown, path: (string | number)[]): unknown => {
    if (v === null || typeof v !== "object") return v;
    const tooDeep = () =>
      bad(
        `the state nests deeper than ${MAX_DEPTH} levels at ${
          deepPath(path)
        } (corrupted or not from serialize)`,
      );
    if (Array.isArray(v)) {
      if (path.length >= MAX_DEPTH) tooDeep();
      return Object.freeze(v.map((x, i) => walk(x, [...path, i])));
    }
    const o = v as Record<string, any>;
    const where = pathStr(path);
    if (Object.hasOwn(o, "$num")) {
      if (typeof o.$num !== "string" || !Object.hasOwn(NUMS, o.$num)) {
        bad(`bad number ${brief(o.$num)} at ${where} (expected "Infinity", "-Infinity", "NaN" or "-0")`);
      }
      return NUMS[o.$num];
    }
    if (Object.hasOwn(o, "$tensor")) {
      const { dtype, shape, offset } = o.$tensor !== null && typeof o.$tensor === "object" ? o.$tensor : {};
      if (dtype !== "float32" && dtype !== "float64") bad(`bad dtype ${brief(dtype)} at ${where}`);
      if (
        !Array.isArray(shape) || shape.some((d: unknown) => !Number.isSafeInteger(d) || (d as number) < 0)
      ) {
        bad(`bad shape ${brief(shape)} at ${where} (expected non-negative integers)`);
      }
      const n = shapeSize(shape);
      const C = dtype === "float64" ? Float64Array : Float32Array;
      return new Tensor(new C(slice(offset, n * C.BYTES_PER_ELEMENT, where)), shape, dtype as DType, "cpu");
    }
    if (Object.hasOwn(o, "$array")) {
      const { type, offset, length } = o.$array !== null && typeof o.$array === "object" ? o.$array : {};
      if (typeof type !== "string" || !Object.hasOwn(ARRAY_TYPES, type)) {
        bad(
          `bad array type ${brief(type)} at ${where} (expected one of ${
            Object.keys(ARRAY_TYPES).join(", ")
          })`,
        );
      }
      if (!Number.isSafeInteger(length) || length < 0) {
        bad(`bad array length ${brief(length)} at ${where}`);
      }
      const C = ARRAY_TYPES[type];
      return new C(slice(offset, length * C.BYTES_PER_ELEMENT, where));
    }
    if (path.length >= MAX_DEPTH) tooDeep();
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(o)) {
      // defineProperty: a key "__proto__" stays a key, never the object's prototype
      Object.defineProperty(out, k, { value: walk(o[k], [...path, k]), enumerable: true, writable: true });
    }
    return Object.freeze(out);
  };
  const state = walk(header.state, []);
  if (template !== undefined) checkLike(state, template, []);
  return state as S;
}

/**
 * Throws unless `state` has the structure of `template` (the check `deserialize` makes with a
 * template: kinds, options, parameter paths, and every buffer's shape and dtype). For loaders of
 * other formats (checkpoints). Internal, not exported by the entry point.
 */
export function checkStateLike(state: unknown, template: unknown): void {
  checkLike(state, template, []);
}

/**
 * Structural comparison of a restored state with a template: same kinds and options (strings,
 * booleans), same object keys and array lengths, tensors of the same shape and dtype; numbers may
 * differ (steps, hyperparameters) and a `null` buffer may stand against a tensor (buffers are
 * created on the first update).
 */
function checkLike(v: unknown, t: unknown, path: (string | number)[]): void {
  const where = pathStr(path);
  const mismatch = (msg: string): never => {
    throw new Error(`deserialize: the data does not match the template at ${where}: ${msg}`);
  };
  if (t === null || v === null) {
    if ((t === null || t instanceof Tensor) && (v === null || v instanceof Tensor)) return;
    if (t !== v) mismatch(`expected ${fmtValue(t)}, got ${fmtValue(v)}`);
    return;
  }
  if (t instanceof Tensor) {
    if (!(v instanceof Tensor)) return mismatch(`expected a tensor, got ${fmtValue(v)}`);
    if (!sameShape(v.shape, t.shape) || v.dtype !== t.dtype) {
      mismatch(
        `expected a ${t.dtype} tensor of shape ${fmtShape(t.shape)}, got ${v.dtype} ${fmtShape(v.shape)}`,
      );
    }
    return;
  }
  if (typeof t === "number") {
    if (typeof v !== "number") mismatch(`expected a number, got ${fmtValue(v)}`);
    if (path[path.length - 2] === "shape" && v !== t) mismatch(`expected ${t}, got ${fmtValue(v)}`);
    return;
  }
  if (typeof t === "string" || typeof t === "boolean") {
    if (v !== t) mismatch(`expected ${fmtValue(t)}, got ${fmtValue(v)}`);
    return;
  }
  if (ArrayBuffer.isView(t)) {
    if (!ArrayBuffer.isView(v) || v.constructor !== t.constructor) {
      mismatch(`expected a ${t.constructor.name}`);
    }
    return;
  }
  if (Array.isArray(t)) {
    if (!Array.isArray(v) || v.length !== t.length) {
      mismatch(
        `expected an array of ${t.length}, got ${Array.isArray(v) ? `an array of ${v.length}` : fmtValue(v)}`,
      );
    }
    t.forEach((x, i) => checkLike((v as unknown[])[i], x, [...path, i]));
    return;
  }
  if (typeof t === "object") {
    if (v === null || typeof v !== "object" || Array.isArray(v) || v instanceof Tensor) {
      return mismatch(`expected an object, got ${fmtValue(v)}`);
    }
    const tk = Object.keys(t), vk = Object.keys(v as object);
    for (const k of tk) if (!(k in (v as object))) mismatch(`missing key ${JSON.stringify(k)}`);
    for (const k of vk) if (!(k in (t as object))) mismatch(`unexpected key ${JSON.stringify(k)}`);
    for (const k of tk) checkLike((v as any)[k], (t as any)[k], [...path, k]);
    checkBuffers(v as Record<string, unknown>, t as Record<string, unknown>, path);
  }
}

/**
 * Where `t` is a parameter's record (`{ shape, dtype, device, buffers }`), every buffer of `v` must
 * be a tensor of the parameter's shape and dtype, also where the template holds `null` (a state
 * from `init`, before the first update created the buffer).
 */
function checkBuffers(
  v: Record<string, unknown>,
  t: Record<string, unknown>,
  path: (string | number)[],
): void {
  const { shape, dtype, buffers } = t;
  if (!Array.isArray(shape) || typeof dtype !== "string" || buffers === null || typeof buffers !== "object") {
    return;
  }
  for (const [k, b] of Object.entries(v.buffers as Record<string, unknown>)) {
    if (b instanceof Tensor && (!sameShape(b.shape, shape) || b.dtype !== dtype)) {
      throw new Error(
        `deserialize: the data does not match the template at ${pathStr([...path, "buffers", k])}: ` +
          `expected a ${dtype} tensor of shape ${fmtShape(shape)} (the parameter's), got ${b.dtype} ${
            fmtShape(b.shape)
          }`,
      );
    }
  }
}
