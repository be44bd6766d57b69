/**
 * The safetensors format (https://github.com/huggingface/safetensors), at the bytes level: no file
 * access, so it runs in browsers too (`src/io/files.ts` adds the Deno file helpers).
 *
 * A file is `N` (u64, little-endian) · an `N`-byte UTF-8 JSON header · the data. The header maps each
 * tensor name to `{"dtype", "shape", "data_offsets": [begin, end]}` (byte offsets into the data,
 * row-major, little-endian) and may hold `"__metadata__"`, an object of strings. Names are the dotted
 * paths of the tree (`layers.0.w`, see `treeLeaves`).
 *
 * Writing follows the Python `safetensors` library byte for byte (checked against files it wrote):
 * compact JSON with `__metadata__` first, then the tensors in data order — by dtype, widest first
 * (F64 before F32), then by name (UTF-8 byte order) — and the header padded with spaces to a multiple
 * of 8 bytes. The one difference: Python writes metadata keys in hash order (it varies between runs
 * when there are two or more), we sort them.
 *
 * @module
 */
import { type DType, fmtShape, sameShape, Tensor, type TypedArray } from "../tensor.ts";
import type { TensorTree } from "../tree.ts";
import {
  checkReadable,
  defaultDType,
  describe,
  type Entry,
  LITTLE_ENDIAN,
  parseHeader,
  readTensor,
  setOwn,
} from "./safetensors_format.ts";

export { SAFETENSORS_MAX_HEADER } from "./safetensors_format.ts";

/** What {@linkcode decodeSafetensors} and `loadSafetensors` return. */
export interface DecodedSafetensors<T extends TensorTree = Record<string, Tensor>> {
  /**
   * The tensors: a tree shaped like the template when one was given (each tensor on its template
   * leaf's device), else a flat object keyed by tensor name (CPU tensors).
   */
  tree: T;
  /** The header's `__metadata__` strings (`{}` when the file has none). */
  metadata: Record<string, string>;
}

/** Options of {@linkcode decodeSafetensors}. */
export interface DecodeSafetensorsOptions<T extends TensorTree = TensorTree> {
  /**
   * The expected tree (for example a model's initial params): the file must hold exactly its
   * leaves, by dotted path, with the same shapes and a dtype that reads into the leaf's dtype (see
   * {@linkcode decodeSafetensors}); the result takes its structure.
   */
  template?: T;
  /** The file name shown in errors (default `"<bytes>"`). */
  name?: string;
}

const utf8 = new TextEncoder();

// ---------------------------------------------------------------------------------------------
// Encoding

/** The leaves of a tree as (name, tensor); plain objects, arrays and dotted keys all flatten to names. */
function namedLeaves(who: string, tree: TensorTree): { name: string; tensor: Tensor }[] {
  if (tree instanceof Tensor) {
    throw new TypeError(
      `${who}: tree is a bare tensor, which has no name in a safetensors file; wrap it: { x: tensor }`,
    );
  }
  const out: { name: string; tensor: Tensor }[] = [];
  const seen = new Set<string>();
  const walk = (node: unknown, path: string, depth: number) => {
    if (depth > 100) throw new RangeError(`${who}: the tree nests deeper than 100 levels at "${path}"`);
    if (node instanceof Tensor) {
      if (seen.has(path)) {
        throw new Error(
          `${who}: two leaves have the name "${path}" (a key with a dot collides with a nested path)`,
        );
      }
      if (path === "__metadata__") {
        throw new Error(`${who}: "__metadata__" is reserved by the format and cannot name a tensor`);
      }
      seen.add(path);
      out.push({ name: path, tensor: node });
    } else if (Array.isArray(node)) {
      node.forEach((c, i) => walk(c, path === "" ? String(i) : `${path}.${i}`, depth + 1));
    } else if (
      node !== null && typeof node === "object" && Object.getPrototypeOf(node) === Object.prototype
    ) {
      for (const k of Object.keys(node)) {
        walk((node as Record<string, unknown>)[k], path === "" ? k : `${path}.${k}`, depth + 1);
      }
    } else {
      throw new TypeError(
        `${who}: leaf at path "${path}" must be a Tensor, an array or a plain object, got ${
          node === null ? "null" : typeof node
        }`,
      );
    }
  };
  walk(tree, "", 0);
  return out;
}

function checkMetadata(who: string, metadata: unknown): Record<string, string> | undefined {
  if (metadata === undefined) return undefined;
  if (metadata === null || typeof metadata !== "object" || Array.isArray(metadata)) {
    throw new TypeError(`${who}: metadata must be an object of strings, got ${describe(metadata)}`);
  }
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== "string") {
      throw new TypeError(
        `${who}: metadata["${k}"] must be a string (the format stores strings only), got ${describe(v)}` +
          `; use JSON.stringify for other values`,
      );
    }
  }
  return metadata as Record<string, string>;
}

/** Compares strings by their UTF-8 bytes (Rust's `String` order, which the Python library sorts by). */
function compareUtf8(a: string, b: string): number {
  if (a === b) return 0;
  const x = utf8.encode(a), y = utf8.encode(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/** A tensor's host data, named, ready to write. */
interface HostLeaf {
  name: string;
  dtype: DType;
  shape: readonly number[];
  data: TypedArray;
}

/** The file bytes for host leaves (the shared back end of the sync and async encoders). */
export function encodeHostLeaves(
  leaves: HostLeaf[],
  metadata: Record<string, string> | undefined,
): Uint8Array {
  const code = (d: DType) => (d === "float64" ? "F64" : "F32");
  // Widest dtype first (F64 before F32), then by name: the Python library's order.
  const sorted = leaves.slice().sort((a, b) =>
    a.dtype === b.dtype ? compareUtf8(a.name, b.name) : a.dtype === "float64" ? -1 : 1
  );
  const parts: string[] = [];
  if (metadata !== undefined) {
    const keys = Object.keys(metadata).sort(compareUtf8);
    parts.push(
      `"__metadata__":{${keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`).join(",")}}`,
    );
  }
  let offset = 0;
  for (const l of sorted) {
    const n = l.data.byteLength;
    parts.push(
      `${JSON.stringify(l.name)}:{"dtype":"${code(l.dtype)}","shape":[${l.shape.join(",")}],` +
        `"data_offsets":[${offset},${offset + n}]}`,
    );
    offset += n;
  }
  const json = utf8.encode(`{${parts.join(",")}}`);
  const headerLen = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + headerLen + offset);
  const view = new DataView(out.buffer);
  view.setUint32(0, headerLen, true);
  view.setUint32(4, Math.floor(headerLen / 2 ** 32), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLen);
  let pos = 8 + headerLen;
  for (const l of sorted) {
    if (LITTLE_ENDIAN) {
      out.set(new Uint8Array(l.data.buffer, l.data.byteOffset, l.data.byteLength), pos);
    } else {
      const size = l.dtype === "float64" ? 8 : 4;
      for (let i = 0; i < l.data.length; i++) {
        if (size === 8) view.setFloat64(pos + 8 * i, l.data[i], true);
        else view.setFloat32(pos + 4 * i, l.data[i], true);
      }
    }
    pos += l.data.byteLength;
  }
  return out;
}

/**
 * Encodes a tree of CPU tensors as a safetensors file. Each leaf is stored under its dotted tree
 * path (`{ layers: [{ w }] }` → `"layers.0.w"`; keys that already contain dots are kept as they are,
 * so a flat `{ "0.weight": t }` state dict round-trips), float32 as `F32` and float64 as `F64`,
 * little-endian and row-major. `metadata` values must be strings. The bytes are deterministic and
 * equal to what Python's `safetensors.torch.save` writes for the same tensors (metadata keys
 * sorted). Tensors on WebGPU: use `saveSafetensors`, or `toDevice(tree, "cpu")` first.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeSafetensors, encodeSafetensors, tensor } from "@nvrm/core";
 *
 * const bytes = encodeSafetensors({ layers: [{ w: tensor([1, 2, 3, 4], [2, 2]) }] }, { epoch: "3" });
 * const { tree, metadata } = decodeSafetensors(bytes);
 * assert.deepEqual(Object.keys(tree), ["layers.0.w"]);
 * assert.deepEqual(tree["layers.0.w"].shape, [2, 2]);
 * assert.equal(metadata.epoch, "3");
 * ```
 */
export function encodeSafetensors(tree: TensorTree, metadata?: Record<string, string>): Uint8Array {
  const who = "encodeSafetensors";
  const meta = checkMetadata(who, metadata);
  const leaves = namedLeaves(who, tree).map(({ name, tensor: t }) => {
    if (t.device !== "cpu") {
      throw new TypeError(
        `${who}: tensor "${name}" is on ${t.device}; use saveSafetensors (reads any device) or ` +
          `toDevice(tree, "cpu") first`,
      );
    }
    return { name, dtype: t.dtype, shape: t.shape, data: t.storage as TypedArray };
  });
  return encodeHostLeaves(leaves, meta);
}

/**
 * {@linkcode encodeSafetensors} for tensors on any device: reads each tensor back with
 * `Tensor.data()` first. Internal (`saveSafetensors` uses it).
 */
export async function encodeSafetensorsAsync(
  tree: TensorTree,
  metadata: Record<string, string> | undefined,
  who: string,
): Promise<Uint8Array> {
  const meta = checkMetadata(who, metadata);
  const named = namedLeaves(who, tree);
  const leaves: HostLeaf[] = [];
  for (const { name, tensor: t } of named) {
    leaves.push({ name, dtype: t.dtype, shape: t.shape, data: await t.data() });
  }
  return encodeHostLeaves(leaves, meta);
}

// ---------------------------------------------------------------------------------------------
// Decoding

/**
 * Decodes a safetensors file. Everything is validated before any tensor is allocated, and every
 * error names the file (`options.name`) and, where there is one, the tensor:
 *
 * - the 8-byte header length fits in the file and is at most {@linkcode SAFETENSORS_MAX_HEADER};
 * - the header is UTF-8 JSON starting with `{`, an object whose `__metadata__` (optional) holds only
 *   strings and whose every other entry has exactly `dtype` (a dtype of the format), `shape`
 *   (non-negative integers) and `data_offsets` (`[begin, end]`, begin ≤ end);
 * - `end − begin` is the shape's element count times the dtype's size;
 * - the tensors' byte ranges, in order, start at 0, do not overlap, leave no gap and end exactly at
 *   the end of the file (the format's rule);
 * - with a template: the file has exactly the template's leaves (by dotted path), with the same
 *   shapes and readable dtypes.
 *
 * Dtypes: `F32` reads into float32 and `F64` into float64 (a template leaf must have that dtype);
 * `F16` and `BF16` read into float32 (or a float64 template leaf), exactly; the integer dtypes
 * (`BOOL`, `U8`…`I64`, `U64`) read into float64 (or the template leaf's dtype) when every value is
 * exactly representable there, an error otherwise. FP8 dtypes are refused. The data section is only
 * read, never trusted for sizes, so no allocation exceeds what the validated header describes, which
 * lies within the file: at most 2× the data section (F16/BF16 widened to float32) or 8× for 1-byte
 * integers.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeSafetensors, encodeSafetensors, mlp } from "@nvrm/core";
 *
 * const net = mlp([4, 3, 2], { seed: 0 });
 * const bytes = encodeSafetensors(net.params);
 * // With a template the result has the params' structure (and every shape is checked).
 * const { tree } = decodeSafetensors(bytes, { template: mlp([4, 3, 2], { seed: 1 }).params });
 * assert.deepEqual(tree.layers[1].w.dataSync(), net.params.layers[1].w.dataSync());
 * assert.throws(() => decodeSafetensors(bytes.subarray(0, 20), { name: "bad.safetensors" }), /bad\.safetensors/);
 * ```
 */
export function decodeSafetensors<T extends TensorTree = Record<string, Tensor>>(
  bytes: Uint8Array,
  options: DecodeSafetensorsOptions<T> = {},
): DecodedSafetensors<T> {
  const file = options.name ?? "<bytes>";
  const who = `decodeSafetensors: ${file}`;
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError(`decodeSafetensors: bytes must be a Uint8Array, got ${describe(bytes)}`);
  }
  const { entries, metadata, dataStart } = parseHeader(who, bytes);
  const byName = new Map(entries.map((e) => [e.name, e]));
  if (options.template === undefined) {
    for (const e of entries) checkReadable(who, bytes, dataStart, e, defaultDType(e.dtype));
    const out: Record<string, Tensor> = {};
    for (const e of entries) {
      setOwn(out, e.name, readTensor(who, bytes, dataStart, e, defaultDType(e.dtype), "cpu"));
    }
    return { tree: out as unknown as T, metadata };
  }
  // Template: check names, shapes and dtypes of everything first, then read.
  const tmpl = namedLeaves(`${who}: template`, options.template);
  const wanted = new Map(tmpl.map((l) => [l.name, l.tensor]));
  for (const { name, tensor: t } of tmpl) {
    const e = byName.get(name);
    if (e === undefined) {
      throw new Error(
        `${who}: no tensor "${name}", which the template has (the file has ${listNames(entries)})`,
      );
    }
    if (!sameShape(e.shape, t.shape)) {
      throw new RangeError(
        `${who}: tensor "${name}" has shape ${fmtShape(e.shape)}, the template expects ${fmtShape(t.shape)}`,
      );
    }
    if ((e.dtype === "F32" && t.dtype !== "float32") || (e.dtype === "F64" && t.dtype !== "float64")) {
      throw new TypeError(
        `${who}: tensor "${name}" is ${e.dtype} (${defaultDType(e.dtype)}), the template expects ${t.dtype}`,
      );
    }
  }
  for (const e of entries) {
    if (!wanted.has(e.name)) {
      throw new Error(`${who}: tensor "${e.name}" is not in the template (extra tensor in the file)`);
    }
  }
  for (const { name, tensor: t } of tmpl) checkReadable(who, bytes, dataStart, byName.get(name)!, t.dtype);
  const read = new Map<string, Tensor>();
  for (const { name, tensor: t } of tmpl) {
    read.set(name, readTensor(who, bytes, dataStart, byName.get(name)!, t.dtype, t.device));
  }
  return { tree: rebuild(options.template, read), metadata };
}

function listNames(entries: Entry[]): string {
  if (entries.length === 0) return "no tensors";
  const names = entries.slice(0, 8).map((e) => `"${e.name}"`).join(", ");
  return entries.length > 8 ? `${names}, … (${entries.length} tensors)` : names;
}

/** The template's structure with the tensors read for each dotted name. */
function rebuild<T extends TensorTree>(template: T, read: Map<string, Tensor>): T {
  const walk = (node: unknown, path: string): unknown => {
    if (node instanceof Tensor) return read.get(path)!;
    if (Array.isArray(node)) return node.map((c, i) => walk(c, path === "" ? String(i) : `${path}.${i}`));
    const o: Record<string, unknown> = {};
    for (const k of Object.keys(node as object)) {
      setOwn(o, k, walk((node as Record<string, unknown>)[k], path === "" ? k : `${path}.${k}`));
    }
    return o;
  };
  return walk(template, "") as T;
}
