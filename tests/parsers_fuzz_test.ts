// Fuzzes the three binary parsers with a fixed seed: the IDX parser (parseIdx), the CIFAR-10 record
// decoder (cifar10FromRecords) and the optimizer-state reader (deserialize). Thousands of mutations of
// small valid inputs (bit flips, truncations, extensions, header fields overwritten with extreme
// values, and for states also headers rewritten and re-sealed with a correct checksum) must each end
// in either
//   - a clear error: exactly `Error`, its message starting with the file's name (or "deserialize:"),
//     never a TypeError/RangeError from inside the parser or from a typed-array constructor, or
//   - a consistent result: shapes, lengths and contents that agree with the input,
// within 100 ms, and without allocating more than the input's size (times the decoding's widening:
// float32 pixels are 4 bytes per input byte) — sizes are validated before anything is allocated.
import assert from "node:assert/strict";
import { tensor } from "../mod.ts";
import {
  CIFAR10_RECORD_BYTES,
  cifar10FromRecords,
  encodeIdx,
  type IdxExpectation,
  type IdxType,
  parseIdx,
} from "../src/data/mod.ts";
import { deserialize, type Optimizer, serialize, sgd, vadam, vsgd } from "../src/optim/mod.ts";
import { Tensor } from "../src/tensor.ts";
import { philox4x32 } from "../src/random/philox.ts";
import { sealState, splitState } from "./_state_bytes.ts";

/** A seeded stream of uint32s from the project's Philox4x32-10 (key: seed, counter: a block index). */
class Rng {
  #block = new Uint32Array(4);
  #i = 4;
  #n = 0;
  constructor(readonly seed: number) {}
  u32(): number {
    if (this.#i === 4) {
      philox4x32(this.seed, 0x5eed, this.#n++, 0, 0, 0, this.#block);
      this.#i = 0;
    }
    return this.#block[this.#i++];
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor((this.u32() / 4294967296) * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
}

/** uint32 values that break naive size arithmetic. */
const EXTREMES = [0, 1, 2, 255, 256, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];

const TIME_LIMIT_MS = 100;

/** Engine errors that must never escape a parser. */
const ENGINE =
  /Invalid typed array length|Array buffer allocation failed|Offset is outside the bounds|out of bounds|Maximum call stack|Cannot read properties|is not a function|is not a constructor|is not iterable/;

/** Generic mutations of a byte string; `headerEnd` biases some of them towards the header. */
function mutateBytes(rng: Rng, input: Uint8Array, headerEnd: number): Uint8Array {
  const kind = rng.int(5);
  if (kind === 0) { // 1–4 bit flips, half of them in the header
    const b = input.slice();
    for (let k = 1 + rng.int(4); k > 0 && b.length > 0; k--) {
      const at = rng.int(2) === 0 ? rng.int(Math.min(headerEnd, b.length)) : rng.int(b.length);
      b[at] ^= 1 << rng.int(8);
    }
    return b;
  }
  if (kind === 1) return input.slice(0, rng.int(input.length + 1)); // truncation (possibly to nothing)
  if (kind === 2) { // extension by random bytes
    const extra = rng.bytes(1 + rng.int(rng.int(2) === 0 ? 8 : 4000));
    const b = new Uint8Array(input.length + extra.length);
    b.set(input);
    b.set(extra, input.length);
    return b;
  }
  if (kind === 3) { // random bytes over a random range
    const b = input.slice();
    const at = rng.int(b.length + 1), n = Math.min(b.length - at, 1 + rng.int(16));
    b.set(rng.bytes(n), at);
    return b;
  }
  // one aligned uint32 of the header set to an extreme value, either byte order
  const b = input.slice();
  if (b.length >= 4) {
    const at = 4 * rng.int(Math.max(1, Math.floor(Math.min(headerEnd, b.length) / 4)));
    new DataView(b.buffer).setUint32(at, rng.pick(EXTREMES), rng.int(2) === 0);
  }
  return b;
}

/**
 * Runs `f`, returning its result or error, its time and the host memory it kept (while held). A run
 * over the time limit is timed once more and the faster time kept: a slow parser is slow twice, a
 * pause of the machine (other processes, a collection) rarely is.
 */
function measure<T>(f: () => T): { value?: T; error?: unknown; ms: number; grew: number } {
  const before = Deno.memoryUsage().external;
  const t0 = performance.now();
  let value: T | undefined, error: unknown;
  try {
    value = f();
  } catch (e) {
    error = e;
  }
  let ms = performance.now() - t0;
  const grew = Deno.memoryUsage().external - before;
  if (ms >= TIME_LIMIT_MS) {
    const t1 = performance.now();
    try {
      f();
    } catch { /* the same outcome as the first run */ }
    ms = Math.min(ms, performance.now() - t1);
  }
  return { value, error, ms, grew };
}

/** An error is clear: exactly `Error`, not an engine message, and starting with `prefix`. */
function clearError(e: unknown, prefix: string): string | null {
  if (!(e instanceof Error)) return `threw a non-Error ${String(e)}`;
  if (e.constructor !== Error) return `${e.constructor.name}: ${e.message}`;
  if (ENGINE.test(e.message)) return `engine error: ${e.message}`;
  if (!e.message.startsWith(prefix)) return `message does not start with "${prefix}": ${e.message}`;
  return null;
}

const hex = (b: Uint8Array) => Array.from(b.subarray(0, 24), (x) => x.toString(16).padStart(2, "0")).join("");

interface Tally {
  cases: number;
  errors: number;
  ok: number;
  maxMs: number;
  slowest: string;
  problems: string[];
}
const tally = (): Tally => ({ cases: 0, errors: 0, ok: 0, maxMs: 0, slowest: "", problems: [] });

function report(t: Tally, what: string): void {
  console.log(
    `${what}: ${t.cases} cases, ${t.errors} clear errors, ${t.ok} consistent, slowest ${
      t.maxMs.toFixed(2)
    } ms (${t.slowest})`,
  );
  assert.deepEqual(t.problems.slice(0, 20), [], `${t.problems.length} problems`);
  assert.ok(t.maxMs < TIME_LIMIT_MS, `slowest case took ${t.maxMs} ms`);
  // both outcomes occur: the mutations reach past the first check
  assert.ok(t.errors > t.cases / 10 && t.ok > t.cases / 50, `errors ${t.errors}, ok ${t.ok} of ${t.cases}`);
}

// ---------------------------------------------------------------------------------------------

const IDX_BYTES: Record<IdxType, number> = { uint8: 1, int8: 1, int16: 2, int32: 4, float32: 4, float64: 8 };

function idxSeeds(rng: Rng): { bytes: Uint8Array; type: IdxType; shape: number[] }[] {
  const out: { bytes: Uint8Array; type: IdxType; shape: number[] }[] = [];
  const make = (type: IdxType, shape: number[]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = Array.from({ length: n }, () => (rng.u32() % 200) - (type === "uint8" ? 0 : 100));
    out.push({ bytes: encodeIdx(data, shape, type), type, shape });
  };
  make("uint8", [3, 4, 5]);
  make("uint8", [10]);
  make("uint8", []);
  make("uint8", [2, 0, 3]);
  make("int8", [5, 2]);
  make("int16", [7]);
  make("int32", [2, 3]);
  make("float32", [4, 2]);
  make("float64", [3]);
  make("uint8", [2, 28, 28]); // MNIST-like
  return out;
}

Deno.test("fuzz: parseIdx — every mutation is a clear error or a consistent array", () => {
  const rng = new Rng(20240611);
  const seeds = idxSeeds(rng);
  const t = tally();
  const name = "fuzz.idx";
  for (let c = 0; c < 4000; c++) {
    const seed = rng.pick(seeds);
    let bytes = mutateBytes(rng, seed.bytes, 4 + 4 * seed.shape.length);
    if (rng.int(4) === 0) bytes = mutateBytes(rng, bytes, 4 + 4 * seed.shape.length);
    if (rng.int(8) === 0 && bytes.length >= 4) bytes[3] = rng.pick([0, 1, 3, 4, 64, 255]); // rank byte
    if (rng.int(8) === 0 && bytes.length >= 4) bytes[2] = rng.int(256); // type byte
    const expect: IdxExpectation = { name };
    const e = rng.int(4);
    if (e === 1) expect.type = seed.type;
    if (e === 2) expect.shape = seed.shape.map((d) => (rng.int(2) ? d : -1));
    if (e === 3) Object.assign(expect, { type: seed.type, shape: seed.shape.map(() => undefined) });
    const r = measure(() => parseIdx(bytes, expect));
    t.cases++;
    if (r.ms > t.maxMs) [t.maxMs, t.slowest] = [r.ms, `case ${c}`];
    const where = `case ${c} (${hex(bytes)}…, ${bytes.length} bytes)`;
    if (r.ms >= TIME_LIMIT_MS) t.problems.push(`${where}: ${r.ms.toFixed(1)} ms`);
    // a uint8 result is a view of the input; other types at most the input's size
    if (r.grew > bytes.length + 65536) t.problems.push(`${where}: kept ${r.grew} bytes of host memory`);
    if (r.error !== undefined) {
      const why = clearError(r.error, `${name}: `);
      if (why) t.problems.push(`${where}: ${why}`);
      else t.errors++;
      continue;
    }
    const { type, shape, data } = r.value!;
    const count = shape.reduce((a, b) => a * b, 1);
    const problems: string[] = [];
    if (bytes[2] !== { uint8: 8, int8: 9, int16: 11, int32: 12, float32: 13, float64: 14 }[type]) {
      problems.push("type");
    }
    if (shape.length !== bytes[3]) problems.push("rank");
    if (data.length !== count) problems.push(`data.length ${data.length} vs ${count}`);
    if (bytes.length !== 4 + 4 * shape.length + count * IDX_BYTES[type]) problems.push("length");
    if (expect.type !== undefined && type !== expect.type) problems.push("expected type");
    expect.shape?.forEach((d, i) => {
      if (d !== undefined && d >= 0 && shape[i] !== d) problems.push(`dim ${i}`);
    });
    const dv = new DataView(bytes.buffer, bytes.byteOffset);
    shape.forEach((d, i) => {
      if (dv.getUint32(4 + 4 * i) !== d) problems.push(`dim ${i} vs header`);
    });
    if (count > 0) { // the last element decodes from the last bytes
      const at = bytes.length - IDX_BYTES[type];
      const last = {
        uint8: () => dv.getUint8(at),
        int8: () => dv.getInt8(at),
        int16: () => dv.getInt16(at),
        int32: () => dv.getInt32(at),
        float32: () => dv.getFloat32(at),
        float64: () => dv.getFloat64(at),
      }[type]();
      if (!Object.is(data[count - 1], last)) problems.push(`last element ${data[count - 1]} vs ${last}`);
    }
    if (problems.length) t.problems.push(`${where}: inconsistent (${problems.join(", ")})`);
    else t.ok++;
  }
  report(t, "parseIdx");
});

// ---------------------------------------------------------------------------------------------

function cifarSeed(rng: Rng, n: number): Uint8Array {
  const b = rng.bytes(n * CIFAR10_RECORD_BYTES);
  for (let i = 0; i < n; i++) b[i * CIFAR10_RECORD_BYTES] = rng.int(10);
  return b;
}

Deno.test("fuzz: cifar10FromRecords — every mutation is a clear error or a consistent dataset", () => {
  const rng = new Rng(7);
  const seeds = [1, 2, 3].map((n) => cifarSeed(rng, n));
  const t = tally();
  const name = "fuzz.bin";
  for (let c = 0; c < 2000; c++) {
    const seed = rng.pick(seeds);
    let bytes: Uint8Array;
    const k = rng.int(4);
    if (k === 0) { // a label byte set to an extreme or a valid value
      bytes = seed.slice();
      const rec = rng.int(bytes.length / CIFAR10_RECORD_BYTES);
      bytes[rec * CIFAR10_RECORD_BYTES] = rng.pick([0, 9, 10, 11, 127, 128, 200, 255]);
    } else if (k === 1) { // whole records added or removed, or one byte off
      const n = Math.max(0, seed.length / CIFAR10_RECORD_BYTES + rng.pick([-3, -1, 1, 2]));
      bytes = cifarSeed(rng, n).subarray(0, n * CIFAR10_RECORD_BYTES + rng.pick([-1, 0, 0, 1]));
    } else bytes = mutateBytes(rng, seed, CIFAR10_RECORD_BYTES);
    const normalize = rng.int(2) === 0;
    const layout = rng.pick(["image", "flat"] as const);
    const r = measure(() => cifar10FromRecords(bytes, { normalize, layout }, name));
    t.cases++;
    if (r.ms > t.maxMs) [t.maxMs, t.slowest] = [r.ms, `case ${c}`];
    const where = `case ${c} (${bytes.length} bytes)`;
    if (r.ms >= TIME_LIMIT_MS) t.problems.push(`${where}: ${r.ms.toFixed(1)} ms`);
    // float32 pixels: 4 bytes per input byte, plus the int32 labels and three 1 KiB lookup tables
    if (r.grew > 4 * bytes.length + 65536) t.problems.push(`${where}: kept ${r.grew} bytes of host memory`);
    if (r.error !== undefined) {
      const why = clearError(r.error, `${name}: `);
      if (why) t.problems.push(`${where}: ${why}`);
      else t.errors++;
      continue;
    }
    const ds = r.value!;
    const n = ds.y.length, problems: string[] = [];
    if (n * CIFAR10_RECORD_BYTES !== bytes.length || n === 0) {
      problems.push(`${n} records for ${bytes.length} bytes`);
    }
    if (ds.x.length !== n * 3072) problems.push("x length");
    if (ds.inputShape.reduce((a, b) => a * b, 1) !== 3072) problems.push("inputShape");
    for (let i = 0; i < n; i++) {
      const r0 = i * CIFAR10_RECORD_BYTES;
      if (ds.y[i] !== bytes[r0] || ds.y[i] > 9) problems.push(`label ${i}`);
      const k = rng.int(3072); // a pixel, channel-major as in the file
      const want = normalize ? null : Math.fround(bytes[r0 + 1 + k] / 255);
      if (want !== null && ds.x[i * 3072 + k] !== want) problems.push(`pixel ${i}/${k}`);
      if (!Number.isFinite(ds.x[i * 3072 + k])) problems.push(`pixel ${i}/${k} not finite`);
    }
    if (problems.length) t.problems.push(`${where}: inconsistent (${problems.join(", ")})`);
    else t.ok++;
  }
  report(t, "cifar10FromRecords");
});

// ---------------------------------------------------------------------------------------------

/** Valid states (with their optimizers and params) to mutate. */
function stateSeeds() {
  const params = { w: tensor([1, -2, 3, 0.5], [2, 2]), b: tensor([0.25, -1]) };
  const grads = { w: tensor([0.1, 0.2, -0.3, 0.4], [2, 2]), b: tensor([1, -1]) };
  const opts: Optimizer<unknown>[] = [
    vsgd({ lr: 0.1, momentum: 0.9, seed: 5 }),
    vadam({ lr: 1e-3, seed: 1 }),
    sgd({ lr: 0.1, momentum: 0.5 }),
  ];
  return opts.map((opt) => {
    const template = opt.init(params);
    const state = opt.update(grads, template, params).state;
    return { opt, params, grads, template, state, bytes: serialize(state) };
  });
}

/** JSON-level mutations of a header: one node replaced, removed or added, or a node nested deeply. */
function mutateHeader(rng: Rng, header: string): string {
  const root = JSON.parse(header);
  const nodes: { parent: any; key: string | number }[] = [];
  const visit = (v: any) => {
    if (v === null || typeof v !== "object") return;
    for (const k of Array.isArray(v) ? v.keys() : Object.keys(v)) {
      nodes.push({ parent: v, key: k });
      visit(v[k]);
    }
  };
  visit(root);
  const { parent, key } = rng.pick(nodes);
  const wild = [
    -1,
    0,
    1,
    3,
    7,
    8,
    16,
    0.5,
    2 ** 31,
    2 ** 32,
    2 ** 53,
    2 ** 53 + 2,
    1e300,
    -0,
    null,
    true,
    "",
    "x",
    "NaN",
    "toString",
    "__proto__",
    "float64",
    "Float64Array",
    [],
    {},
    [-1],
    [2 ** 32, 2 ** 32],
    [1e300],
    { $num: "NaN" },
    { $num: "valueOf" },
    { $tensor: null },
    { $array: [] },
    { $tensor: { dtype: "float32", shape: [1], offset: 0 } },
  ];
  const k = rng.int(6);
  if (k === 0 || k === 1) parent[key] = rng.pick(wild);
  else if (k === 2) {
    if (Array.isArray(parent)) parent.splice(key as number, 1);
    else delete parent[key];
  } else if (k === 3) { // a numeric field shifted (offsets, lengths, shapes, dataBytes)
    if (typeof parent[key] === "number") parent[key] += rng.pick([-8, -1, 1, 4, 8, 1024, 2 ** 40]);
    else parent[key] = rng.pick(wild);
  } else if (k === 4) { // nesting: the node wrapped in hundreds or a million of arrays
    const depth = rng.pick([99, 101, 500, 100000]);
    return JSON.stringify(root).replace(
      JSON.stringify(parent[key]) ?? "null",
      "[".repeat(depth) + (JSON.stringify(parent[key]) ?? "null") + "]".repeat(depth),
    );
  } else if (!Array.isArray(parent)) { // a key added (defineProperty: "__proto__" as a plain key)
    const key = rng.pick(["__proto__", "$num", "$tensor", "extra", "constructor"]);
    Object.defineProperty(parent, key, {
      value: rng.pick(wild),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return JSON.stringify(root);
}

/** Every array of a restored state: its total byte size, and whether each tensor's storage fits its shape. */
function arraysOf(v: unknown, acc = { bytes: 0, bad: [] as string[] }, path = "state") {
  if (v instanceof Tensor) {
    const s = v.storage as Float32Array;
    acc.bytes += s.byteLength;
    if (s.length !== v.shape.reduce((a, b) => a * b, 1)) acc.bad.push(`${path}: ${s.length} vs [${v.shape}]`);
  } else if (ArrayBuffer.isView(v)) acc.bytes += v.byteLength;
  else if (v !== null && typeof v === "object") {
    for (const [k, x] of Object.entries(v)) arraysOf(x, acc, `${path}.${k}`);
  }
  return acc;
}

Deno.test("fuzz: deserialize — every mutated state is a clear error or a valid state", () => {
  const rng = new Rng(99);
  const seeds = stateSeeds();
  const t = tally();
  for (let c = 0; c < 3000; c++) {
    const seed = rng.pick(seeds);
    const { header, data } = splitState(seed.bytes);
    let bytes: Uint8Array;
    const k = rng.int(10);
    if (k < 3) bytes = mutateBytes(rng, seed.bytes, 16); // raw: the checksum or a length check catches it
    else if (k < 4) { // the header text mutated, then sealed with a correct checksum
      const h = mutateBytes(rng, new TextEncoder().encode(header), 1 << 30);
      bytes = sealState(h, data);
    } else if (k < 9) bytes = sealState(mutateHeader(rng, header), data); // structure mutated, sealed
    else bytes = sealState(header, mutateBytes(rng, data, 0)); // data resized or changed, sealed
    const withTemplate = rng.int(2) === 0;
    const r = measure(() => (withTemplate ? deserialize(bytes, seed.template) : deserialize(bytes)));
    t.cases++;
    if (r.ms > t.maxMs) [t.maxMs, t.slowest] = [r.ms, `case ${c}`];
    const where = `case ${c} (kind ${k}, ${bytes.length} bytes)`;
    if (r.ms >= TIME_LIMIT_MS) t.problems.push(`${where}: ${r.ms.toFixed(1)} ms`);
    // the restored arrays are copies of the data section: never more than the input (plus small change)
    if (r.grew > bytes.length + 65536) t.problems.push(`${where}: kept ${r.grew} bytes of host memory`);
    if (r.error !== undefined) {
      const why = clearError(r.error, "deserialize: ");
      if (why) t.problems.push(`${where}: ${why}`);
      else t.errors++;
      continue;
    }
    const state = r.value;
    const arrays = arraysOf(state);
    const problems = [...arrays.bad];
    if (arrays.bytes > bytes.length) {
      problems.push(`arrays hold ${arrays.bytes} bytes, input ${bytes.length}`);
    }
    try { // a valid state writes itself back
      deserialize(serialize(state));
    } catch (e) {
      problems.push(`does not round-trip: ${(e as Error).message}`);
    }
    if (withTemplate) { // and, checked against a template, the optimizer takes it or says why
      try {
        seed.opt.update(seed.grads, state as never, seed.params);
      } catch (e) {
        if (!(e instanceof Error) || ENGINE.test(e.message) || !/^\w+/.test(e.message)) {
          problems.push(
            `update failed unclearly: ${(e as Error)?.constructor?.name} ${(e as Error)?.message}`,
          );
        }
      }
    }
    if (problems.length) t.problems.push(`${where}: ${problems.join("; ")}`);
    else t.ok++;
  }
  report(t, "deserialize");
});
