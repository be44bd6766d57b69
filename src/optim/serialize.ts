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
  const walk = (v: unknown): void => {
    if (v instanceof Tensor) {
      if (v.device !== "cpu" && !reads.has(v)) reads.set(v, v.data());
    } else if (v !== null && typeof v === "object" && !ArrayBuffer.isView(v)) {
      for (const x of Object.values(v)) walk(x);
    }
  };
  walk(state);
  const host = new Map<Tensor, AnyArray>();
  await Promise.all([...reads].map(async ([t, p]) => host.set(t, await p)));
  return assemble(state, host);
}

function bad(msg: string): never {
  throw new Error(`deserialize: ${msg}`);
}

/**
 * Restores a state written by {@linkcode serialize} (tensors come back on the CPU). Throws on
 * anything but intact data of a known format version; with `template` (for example
 * `opt.init(params)`), also throws — naming the place — unless the restored state has the same
 * structure: the same kinds, options, parameter paths, shapes and dtypes. Nothing is returned
 * half-loaded.
 */
export function deserialize<S = unknown>(bytes: Uint8Array, template?: S): S {
  checkHost("deserialize");
  if (!(bytes instanceof Uint8Array)) bad(`expected a Uint8Array, got ${fmtValue(bytes)}`);
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
  let header: { dataBytes: number; state: unknown };
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(16, 16 + headerLen)));
  } catch (e) {
    bad(`corrupted header (${(e as Error).message})`);
  }
  const dataStart = Math.ceil((16 + headerLen) / 8) * 8;
  const dataBytes = header?.dataBytes;
  if (!Number.isInteger(dataBytes) || dataBytes < 0) {
    bad(`corrupted header (dataBytes ${fmtValue(dataBytes)})`);
  }
  const total = dataStart + dataBytes + 4;
  if (bytes.length < total) bad(`data is truncated (${bytes.length} bytes, expected ${total})`);
  if (bytes.length > total) bad(`unexpected trailing data (${bytes.length} bytes, expected ${total})`);
  const stored = dv.getUint32(total - 4, true);
  if (crc32(bytes.subarray(0, total - 4)) !== stored) bad("checksum mismatch (the data is corrupted)");

  const slice = (offset: unknown, byteLength: number, where: string): ArrayBuffer => {
    if (!Number.isInteger(offset) || (offset as number) < 0 || (offset as number) + byteLength > dataBytes) {
      bad(`array at ${where} lies outside the data (offset ${fmtValue(offset)}, ${byteLength} bytes)`);
    }
    const start = bytes.byteOffset + dataStart + (offset as number);
    return bytes.buffer.slice(start, start + byteLength) as ArrayBuffer;
  };
  const walk = (v: unknown, path: (string | number)[]): unknown => {
    if (v === null || typeof v !== "object") return v;
    if (Array.isArray(v)) return Object.freeze(v.map((x, i) => walk(x, [...path, i])));
    const o = v as Record<string, any>;
    const where = pathStr(path);
    if ("$num" in o) {
      const m: Record<string, number> = {
        "Infinity": Infinity,
        "-Infinity": -Infinity,
        "NaN": NaN,
        "-0": -0,
      };
      if (!(o.$num in m)) bad(`bad number ${fmtValue(o.$num)} at ${where}`);
      return m[o.$num];
    }
    if ("$tensor" in o) {
      const { dtype, shape, offset } = o.$tensor ?? {};
      if (dtype !== "float32" && dtype !== "float64") bad(`bad dtype ${fmtValue(dtype)} at ${where}`);
      if (!Array.isArray(shape) || shape.some((d: unknown) => !Number.isInteger(d) || (d as number) < 0)) {
        bad(`bad shape ${fmtValue(shape)} at ${where}`);
      }
      const n = shapeSize(shape);
      const C = dtype === "float64" ? Float64Array : Float32Array;
      return new Tensor(new C(slice(offset, n * C.BYTES_PER_ELEMENT, where)), shape, dtype as DType, "cpu");
    }
    if ("$array" in o) {
      const { type, offset, length } = o.$array ?? {};
      const C = ARRAY_TYPES[type];
      if (!C || !Number.isInteger(length) || length < 0) bad(`bad array ${fmtValue(type)} at ${where}`);
      return new C(slice(offset, length * C.BYTES_PER_ELEMENT, where));
    }
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(o)) out[k] = walk(o[k], [...path, k]);
    return Object.freeze(out);
  };
  const state = walk(header.state, []);
  if (template !== undefined) checkLike(state, template, []);
  return state as S;
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
  }
}
