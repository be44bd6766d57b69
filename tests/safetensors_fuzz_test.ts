/**
 * Fuzz test of the safetensors parser (fixed seed): thousands of mutated, truncated and extended
 * files built from valid ones (ours and PyTorch's). Every outcome must be either an error that names
 * the file (`decodeSafetensors: <name>: …`, never an engine error such as a TypeError from inside
 * the parser) or a tree equal to what an independent reference reader finds in the file; no decode
 * may take 100 ms or more; a failed decode creates no tensor (everything is validated before
 * anything is allocated) and a successful one allocates exactly the tensors the header describes,
 * within the file size for F32/F64 data (2× for F16/BF16, 8× for 1-byte integers, widened).
 */
import assert from "node:assert/strict";
import { decodeSafetensors, encodeSafetensors, mlp, randn, tensor } from "../mod.ts";
import { observeTensorCreation, type Tensor } from "../src/tensor.ts";
import { testRng as rng } from "../src/webgpu/testing.ts";

const FIX = new URL("./fixtures/safetensors/", import.meta.url);

const SIZE: Record<string, number> = {
  F32: 4,
  F64: 8,
  F16: 2,
  BF16: 2,
  BOOL: 1,
  U8: 1,
  I8: 1,
  I16: 2,
  U16: 2,
  I32: 4,
  U32: 4,
  I64: 8,
  U64: 8,
};

/** Element i of a tensor as the reference reads it (plain formulas, no shared code with the parser). */
function refValue(v: DataView, dtype: string, i: number): number {
  switch (dtype) {
    case "F32":
      return v.getFloat32(4 * i, true);
    case "F64":
      return v.getFloat64(8 * i, true);
    case "F16": {
      const h = v.getUint16(2 * i, true), s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, m = h & 1023;
      return e === 0
        ? s * m * 2 ** -24
        : e === 31
        ? (m ? NaN : s * Infinity)
        : s * (1 + m / 1024) * 2 ** (e - 15);
    }
    case "BF16": {
      const f = new Float32Array(1);
      new Uint32Array(f.buffer)[0] = v.getUint16(2 * i, true) * 65536;
      return f[0];
    }
    case "BOOL":
    case "U8":
      return v.getUint8(i);
    case "I8":
      return v.getInt8(i);
    case "I16":
      return v.getInt16(2 * i, true);
    case "U16":
      return v.getUint16(2 * i, true);
    case "I32":
      return v.getInt32(4 * i, true);
    case "U32":
      return v.getUint32(4 * i, true);
    case "I64":
      return Number(v.getBigInt64(8 * i, true));
    default:
      return Number(v.getBigUint64(8 * i, true));
  }
}

/** Checks a successful decode against the reference reading of the same bytes; returns bytes allocated. */
function checkTree(bytes: Uint8Array, tree: Record<string, Tensor>, label: string): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  const names = Object.keys(header).filter((k) => k !== "__metadata__");
  assert.deepEqual(Object.keys(tree).sort(), names.sort(), label);
  // The file the parser accepted must be valid by the format's rules, checked independently here.
  const meta = header.__metadata__;
  if (meta !== undefined && meta !== null) {
    assert.ok(
      Object.values(meta).every((v) => typeof v === "string"),
      `${label}: accepted non-string metadata`,
    );
  }
  const ranges: [number, number][] = [];
  for (const name of names) {
    const info = header[name];
    assert.deepEqual(
      Object.keys(info).sort(),
      ["data_offsets", "dtype", "shape"],
      `${label}: ${name} fields`,
    );
    assert.ok(info.dtype in SIZE, `${label}: ${name}: accepted dtype ${info.dtype}`);
    assert.ok(
      info.shape.every((d: unknown) => Number.isSafeInteger(d) && (d as number) >= 0),
      `${label}: ${name}: accepted shape ${info.shape}`,
    );
    const [b, e] = info.data_offsets;
    assert.equal(
      e - b,
      info.shape.reduce((x: number, y: number) => x * y, 1) * SIZE[info.dtype],
      `${label}: ${name}: size`,
    );
    ranges.push([b, e]);
  }
  ranges.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  let pos = 0;
  for (const [b, e] of ranges) {
    assert.equal(b, pos, `${label}: accepted a gap or overlap`);
    pos = e;
  }
  assert.equal(8 + n + pos, bytes.length, `${label}: accepted data not ending the file`);
  let allocated = 0;
  for (const name of names) {
    const { dtype, shape, data_offsets: [b, e] } = header[name];
    const t = tree[name];
    assert.deepEqual(t.shape, shape, `${label}: ${name}`);
    const data = t.dataSync();
    allocated += data.byteLength;
    const count = (e - b) / SIZE[dtype];
    assert.equal(data.length, count, `${label}: ${name}`);
    const v = new DataView(bytes.buffer, bytes.byteOffset + 8 + n + b, e - b);
    for (let i = 0; i < count; i++) {
      const want = refValue(v, dtype, i);
      const got = data[i];
      if (!(Object.is(got, want) || (Number.isNaN(got) && Number.isNaN(want)))) {
        assert.fail(`${label}: ${name}[${i}] = ${got}, the file holds ${want} (${dtype})`);
      }
    }
  }
  return allocated;
}

/** Valid seed files: ours (F32 + F64, metadata) and PyTorch's (every dtype, nested names). */
function seeds(): Uint8Array[] {
  const net = mlp([3, 4, 2], { seed: 9 });
  return [
    encodeSafetensors({ net: net.params, d: randn([3], { dtype: "float64", seed: 1 }), s: tensor(2) }, {
      epoch: "4",
      config: '{"lr":0.1}',
    }),
    encodeSafetensors({ a: tensor([1, 2, 3, 4, 5, 6], [2, 3]), e: tensor(new Float32Array(0), [0]) }),
    Deno.readFileSync(new URL("torch_dtypes.safetensors", FIX)),
    Deno.readFileSync(new URL("torch_f32_f64.safetensors", FIX)),
    Deno.readFileSync(new URL("ours_vsgd_optim.safetensors", FIX)),
  ];
}

/** One mutation of a valid file. */
function mutate(src: Uint8Array, r: () => number): Uint8Array {
  const int = (k: number) => Math.floor(r() * k);
  const n = new DataView(src.buffer, src.byteOffset).getUint32(0, true);
  let b = src.slice();
  const kind = int(9);
  switch (kind) {
    case 0: // truncate anywhere
      return b.subarray(0, int(b.length));
    case 1: // extend with junk
      return Uint8Array.from([...b, ...Array.from({ length: 1 + int(16) }, () => int(256))]);
    case 2: { // flip 1–4 random bytes anywhere (header length included)
      for (let k = 0; k <= int(4); k++) b[int(b.length)] ^= 1 << int(8);
      return b;
    }
    case 3: { // flip one byte of the header text
      b[8 + int(n)] = int(128);
      return b;
    }
    case 4: { // rewrite the header length
      const v = new DataView(b.buffer);
      const choices = [0, 1, 7, n - 1, n + 1, n + 8, b.length, 2 ** 32 - 1];
      v.setUint32(0, choices[int(choices.length)] >>> 0, true);
      if (r() < 0.2) v.setUint32(4, 1 + int(1000), true);
      return b;
    }
    default: { // edit the JSON: a number, a dtype, a name, or structure
      let text = new TextDecoder().decode(b.subarray(8, 8 + n));
      const numbers = [...text.matchAll(/\d+/g)];
      const dtypes = ["F32", "F64", "F16", "BF16", "I64", "U8", "BOOL", "F8_E5M2", "X", ""];
      const nums = [0, 1, 2, 3, 4, 8, 16, 2 ** 31, 2 ** 53, 1e300, -1, 0.5];
      if (kind === 5 && numbers.length > 0) {
        const m = numbers[int(numbers.length)];
        const by = String(r() < 0.5 ? nums[int(nums.length)] : Number(m[0]) + int(9) - 4);
        text = text.slice(0, m.index!) + by + text.slice(m.index! + m[0].length);
      } else if (kind === 6) {
        text = text.replace(/"(F32|F64|F16|BF16|I64|I32|U8|BOOL)"/, `"${dtypes[int(dtypes.length)]}"`);
      } else if (kind === 7) {
        const edits = [
          (t: string) => t.replace(/"shape":\[[^\]]*\]/, '"shape":[' + int(5) + "," + int(5) + "]"),
          (t: string) =>
            t.replace(/"data_offsets":\[\d+,\d+\]/, '"data_offsets":[' + int(64) + "," + int(64) + "]"),
          (t: string) => t.replace(/"shape":/, '"shape":[[1]],"x":'),
          (t: string) => t.replace(/,"data_offsets":\[\d+,\d+\]/, ""),
          (t: string) => t.replace(/\{"dtype"/, '{"__proto__":1,"dtype"'),
          (t: string) => t.replace(/"__metadata__":\{/, '"__metadata__":{"n":5,'),
          (t: string) => t.replace(/"[^"]+":\{"dtype"/, '"a":{"dtype"'), // duplicate or renamed names
          (t: string) => t.replace(/\}\s*$/, ',"z":null}'),
          (t: string) => "[" + t.slice(1),
        ];
        text = edits[int(edits.length)](text);
      } else {
        const at = int(text.length);
        text = text.slice(0, at) + ['"', "{", "}", "[", ",", ":", "\\", "\u00e9"][int(8)] +
          text.slice(at + 1);
      }
      const json = new TextEncoder().encode(text);
      const out = new Uint8Array(8 + json.length + (b.length - 8 - n));
      new DataView(out.buffer).setUint32(0, json.length, true);
      out.set(json, 8);
      out.set(b.subarray(8 + n), 8 + json.length);
      b = out;
      return b;
    }
  }
}

Deno.test("safetensors fuzz: 6000 mutated files, each a clear error or a correct tree, < 100 ms, no early allocation", () => {
  const r = rng(20240611);
  const files = seeds();
  let created: Tensor[] = [];
  const stop = observeTensorCreation((t) => created.push(t));
  const stats = { errors: 0, trees: 0, slowest: 0 };
  const messages = new Map<string, number>();
  try {
    for (let i = 0; i < 6000; i++) {
      const src = files[i % files.length];
      const bytes = mutate(src, r);
      const name = `fuzz-${i}.safetensors`;
      created = [];
      const t0 = performance.now();
      let result: { tree: Record<string, Tensor> } | undefined;
      try {
        result = decodeSafetensors(bytes, { name });
      } catch (e) {
        const ms = performance.now() - t0;
        stats.slowest = Math.max(stats.slowest, ms);
        assert.ok(ms < 100, `${name}: the error took ${ms.toFixed(1)} ms`);
        assert.ok(e instanceof Error, `${name}: threw a non-Error ${e}`);
        assert.ok(
          e.message.startsWith(`decodeSafetensors: ${name}: `),
          `${name}: the error does not name the file: ${e.constructor.name}: ${e.message}`,
        );
        assert.equal(created.length, 0, `${name}: ${created.length} tensors were allocated before the error`);
        const rule = e.message.slice(`decodeSafetensors: ${name}: `.length).replace(/"[^"]*"|\d+/g, "#")
          .slice(0, 40);
        messages.set(rule, (messages.get(rule) ?? 0) + 1);
        stats.errors++;
        continue;
      }
      const ms = performance.now() - t0;
      stats.slowest = Math.max(stats.slowest, ms);
      assert.ok(ms < 100, `${name}: the decode took ${ms.toFixed(1)} ms`);
      const allocated = checkTree(bytes, result.tree, name);
      assert.equal(created.length, Object.keys(result.tree).length, `${name}: tensors created`);
      assert.ok(
        allocated <= 8 * bytes.length,
        `${name}: ${allocated} bytes allocated for a ${bytes.length}-byte file`,
      );
      const widened = Object.values(result.tree).length > 0 && bytes.length < allocated;
      if (widened) {
        const text = new TextDecoder().decode(
          bytes.subarray(8, 8 + new DataView(bytes.buffer).getUint32(0, true)),
        );
        assert.match(
          text,
          /"(F16|BF16|BOOL|U8|I8|I16|U16|I32|U32)"/,
          `${name}: more bytes than the file without a widening dtype`,
        );
      }
      stats.trees++;
    }
  } finally {
    stop();
  }
  // The mutations reach both outcomes and many distinct rules.
  assert.ok(stats.trees > 300, `only ${stats.trees} mutated files decoded`);
  assert.ok(stats.errors > 3000, `only ${stats.errors} mutated files were rejected`);
  assert.ok(messages.size > 15, `only ${messages.size} distinct errors: ${[...messages.keys()].join(" | ")}`);
  console.log(
    `fuzz: ${stats.errors} errors (${messages.size} kinds), ${stats.trees} trees, slowest ${
      stats.slowest.toFixed(2)
    } ms`,
  );
});

Deno.test("safetensors fuzz: adversarial headers fail fast without allocating", () => {
  const big = (header: unknown, data = 0) => {
    const json = new TextEncoder().encode(JSON.stringify(header));
    const out = new Uint8Array(8 + json.length + data);
    new DataView(out.buffer).setUint32(0, json.length, true);
    out.set(json, 8);
    return out;
  };
  const cases: Uint8Array[] = [
    // A shape of 2^60 elements claiming the whole (tiny) data section.
    big({ a: { dtype: "F32", shape: [2 ** 30, 2 ** 30], data_offsets: [0, 2 ** 62] } }, 8),
    // Offsets far beyond the file with a consistent size.
    big({ a: { dtype: "U8", shape: [2 ** 40], data_offsets: [0, 2 ** 40] } }, 8),
    // 10 000 zero-size tensors (a valid file; nothing large).
    big(
      Object.fromEntries(
        Array.from(
          { length: 10_000 },
          (_, i) => [`t${i}`, { dtype: "F32", shape: [0], data_offsets: [0, 0] }],
        ),
      ),
    ),
    // Deeply nested JSON in the header.
    (() => {
      const text = `{"a":${"[".repeat(50_000)}${"]".repeat(50_000)}}`;
      const json = new TextEncoder().encode(text);
      const out = new Uint8Array(8 + json.length);
      new DataView(out.buffer).setUint32(0, json.length, true);
      out.set(json, 8);
      return out;
    })(),
  ];
  let created = 0;
  const stop = observeTensorCreation(() => created++);
  try {
    cases.forEach((bytes, i) => {
      created = 0;
      const t0 = performance.now();
      try {
        const { tree } = decodeSafetensors(bytes, { name: `adv-${i}` });
        assert.equal(Object.keys(tree).length, 10_000, `adv-${i} decoded`);
      } catch (e) {
        assert.match((e as Error).message, new RegExp(`^decodeSafetensors: adv-${i}: `));
        assert.equal(created, 0, `adv-${i}: allocated before failing`);
      }
      const ms = performance.now() - t0;
      // Cases 0 and 1 must fail at once; the 10 000-tensor header (600 KB of JSON, 10 000 tensors)
      // and the 100 KB deeply nested one are bounded by JSON.parse, so they get more time.
      assert.ok(ms < (i < 2 ? 100 : 2000), `adv-${i}: ${ms.toFixed(1)} ms`);
    });
  } finally {
    stop();
  }
});
