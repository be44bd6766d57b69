/**
 * safetensors: files written by PyTorch's `safetensors` load bit for bit (F32, F64, F16, BF16,
 * integers, a scalar, an empty tensor, metadata); our bytes equal the Python library's for the same
 * tensors; round trips; every validation rule gives an error naming the file and the tensor; file
 * writes are atomic.
 */
import assert from "node:assert/strict";
import {
  decodeSafetensors,
  encodeSafetensors,
  loadSafetensors,
  mlp,
  randn,
  saveSafetensors,
  type Tensor,
  tensor,
} from "../mod.ts";
import { halfToFloatBits } from "../src/io/safetensors_format.ts";

const FIX = new URL("./fixtures/safetensors/", import.meta.url);
const fixture = (name: string) => Deno.readFileSync(new URL(name, FIX));

function bitsOf(t: Tensor): Uint8Array {
  const d = t.dataSync();
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

/** A file from a header object and a data section (the header padded to 8 bytes as the writers do). */
function craft(header: unknown, data: Uint8Array | number = 0, rawHeader?: string): Uint8Array {
  const json = new TextEncoder().encode(rawHeader ?? JSON.stringify(header));
  const n = Math.ceil(json.length / 8) * 8;
  const bytes = typeof data === "number" ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + n + bytes.length).fill(0x20, 8, 8 + n);
  new DataView(out.buffer).setUint32(0, n, true);
  out.set(json, 8);
  out.set(bytes, 8 + n);
  return out;
}

Deno.test("torch_dtypes: every dtype PyTorch wrote loads bit for bit, names and metadata kept", () => {
  const { tree, metadata } = decodeSafetensors(fixture("torch_dtypes.safetensors"), { name: "torch_dtypes" });
  assert.deepEqual(metadata, { source: "torch" });
  assert.deepEqual(Object.keys(tree).sort(), [
    "bf16",
    "bf16_as_f32",
    "f16",
    "f16_as_f32",
    "f32",
    "f64",
    "i32",
    "i64",
    "mask",
    "nested.empty",
    "nested.scalar",
    "u8",
  ]);
  // F16/BF16 widen exactly as torch's .float() does (same float32 bits, NaN and -0 included).
  for (const h of ["f16", "bf16"]) {
    assert.equal(tree[h].dtype, "float32");
    assert.deepEqual(bitsOf(tree[h]), bitsOf(tree[`${h}_as_f32`]), h);
  }
  assert.ok(Object.is(tree.f16.dataSync()[1], -0) && Number.isNaN(tree.f16.dataSync()[9]));
  assert.equal(tree.f16.dataSync()[4], 2 ** -24); // the subnormal nearest 6e-8
  assert.deepEqual([tree.f32.dtype, tree.f32.shape], ["float32", [2, 3]]);
  assert.deepEqual([tree.f64.dtype, tree.f64.shape], ["float64", [4]]);
  assert.deepEqual(tree["nested.scalar"].shape, []);
  assert.equal(tree["nested.scalar"].dataSync()[0], 3.5);
  assert.deepEqual(tree["nested.empty"].shape, [0, 3]);
  // Integers read exactly into float64 (2^53 is exact; the generator wrote these values).
  assert.deepEqual(Array.from(tree.i64.dataSync()), [0, -5, 2 ** 40, 2 ** 53]);
  assert.deepEqual(Array.from(tree.i32.dataSync()), [-7, 2 ** 30]);
  assert.deepEqual(Array.from(tree.u8.dataSync()), [0, 255]);
  assert.deepEqual(Array.from(tree.mask.dataSync()), [1, 0, 1]);
  assert.equal(tree.i64.dtype, "float64");
});

Deno.test("torch_dtypes: F32/F64 data equal the file's bytes; a template takes the nested structure", () => {
  const bytes = fixture("torch_dtypes.safetensors");
  const n = new DataView(bytes.buffer).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  const { tree } = decodeSafetensors(bytes);
  for (const name of ["f32", "f64", "f16_as_f32", "bf16_as_f32", "nested.scalar"]) {
    const [b, e] = header[name].data_offsets;
    assert.deepEqual(bitsOf(tree[name]), bytes.subarray(8 + n + b, 8 + n + e), name);
  }
  // With a template: float64 leaves take F16 exactly, float32 leaves take small integers exactly.
  const template = {
    f16: tensor(new Float64Array(16), [16], { dtype: "float64" }),
    u8: tensor([0, 0]),
    i64: tensor([0, 0, 0, 0], [4], { dtype: "float64" }),
    nested: { scalar: tensor(0), empty: tensor(new Float32Array(0), [0, 3]) },
  };
  const extra = ["bf16", "bf16_as_f32", "f16_as_f32", "f32", "f64", "i32", "mask"];
  const subset = encodeLike(bytes, extra);
  const got = decodeSafetensors(subset, { template }).tree;
  assert.deepEqual(Array.from(got.f16.dataSync()), Array.from(tree.f16.dataSync()));
  assert.equal(got.f16.dtype, "float64");
  assert.deepEqual(Array.from(got.u8.dataSync()), [0, 255]);
  assert.equal(got.u8.dtype, "float32");
  assert.deepEqual(got.nested.scalar.shape, []);
});

/** The file without some tensors (rebuilt by hand: header entries dropped, data re-packed). */
function encodeLike(bytes: Uint8Array, drop: string[]): Uint8Array {
  const n = new DataView(bytes.buffer).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  const out: Record<string, unknown> = {};
  const parts: Uint8Array[] = [];
  let pos = 0;
  const names = Object.keys(header).filter((k) => k !== "__metadata__" && !drop.includes(k))
    .sort((a, b) => header[a].data_offsets[0] - header[b].data_offsets[0]);
  for (const k of names) {
    const [b, e] = header[k].data_offsets;
    parts.push(bytes.subarray(8 + n + b, 8 + n + e));
    out[k] = { ...header[k], data_offsets: [pos, pos + e - b] };
    pos += e - b;
  }
  const data = new Uint8Array(pos);
  let at = 0;
  for (const p of parts) {
    data.set(p, at);
    at += p.length;
  }
  return craft(out, data);
}

Deno.test("our bytes equal the Python library's for the same tensors (torch_f32_f64 and torch_mlp)", () => {
  for (const name of ["torch_f32_f64.safetensors", "torch_mlp.safetensors", "torch_lenet.safetensors"]) {
    const file = fixture(name);
    const { tree, metadata } = decodeSafetensors(file, { name });
    const ours = encodeSafetensors(tree, Object.keys(metadata).length ? metadata : undefined);
    assert.equal(ours.length, file.length, name);
    assert.deepEqual(ours, file, name);
  }
  // And from a nested tree (insertion order is irrelevant): same bytes.
  const flat = decodeSafetensors(fixture("torch_f32_f64.safetensors")).tree;
  const nested = {
    scalar: flat.scalar,
    layers: [{ b: flat["layers.0.b"], w: flat["layers.0.w"] }],
    z64: flat.z64,
    empty: flat.empty,
    a64: flat.a64,
  };
  assert.deepEqual(encodeSafetensors(nested, { epoch: "3" }), fixture("torch_f32_f64.safetensors"));
});

Deno.test("round trip: nested trees, float32/float64, metadata (sorted keys, unicode), empty tree", () => {
  const net = mlp([5, 4, 3], { seed: 1 });
  const tree = { net: net.params, extra: [randn([2, 2], { dtype: "float64", seed: 2 }), tensor(1.5)] };
  const meta = { "é": "1", z: 'line\nbreak "quoted"', a: "" };
  const bytes = encodeSafetensors(tree, meta);
  assert.equal((8 + new DataView(bytes.buffer).getUint32(0, true)) % 8, 0, "data starts 8-aligned");
  const back = decodeSafetensors(bytes, { template: tree });
  assert.deepEqual(back.metadata, meta);
  assert.deepEqual(back.tree.net.layers[1].w.dataSync(), net.params.layers[1].w.dataSync());
  assert.deepEqual(back.tree.extra[0].dataSync(), tree.extra[0].dataSync());
  assert.equal(back.tree.extra[0].dtype, "float64");
  // Metadata keys come out sorted in the header whatever the insertion order.
  const again = encodeSafetensors(tree, { a: "", z: meta.z, "é": "1" });
  assert.deepEqual(again, bytes);
  // Empty tree, no metadata: Python's bytes for {} are `{}` padded to 8.
  assert.deepEqual(Array.from(encodeSafetensors({})), [
    8,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    123,
    125,
    32,
    32,
    32,
    32,
    32,
    32,
  ]);
  assert.deepEqual(decodeSafetensors(encodeSafetensors({})).tree, {});
});

Deno.test("halfToFloatBits: every half value against the closed form", () => {
  const f = new Float32Array(1), u = new Uint32Array(f.buffer);
  for (let h = 0; h < 0x10000; h++) {
    u[0] = halfToFloatBits(h);
    const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, m = h & 1023;
    const want = e === 0
      ? s * m * 2 ** -24
      : e === 31
      ? (m ? NaN : s * Infinity)
      : s * (1 + m / 1024) * 2 ** (e - 15);
    assert.ok(Object.is(f[0], want), `half 0x${h.toString(16)}: got ${f[0]}, want ${want}`);
  }
});

Deno.test("decode errors name the file and the tensor, for every rule", () => {
  const f32 = (shape: number[], begin: number) => ({
    dtype: "F32",
    shape,
    data_offsets: [begin, begin + 4 * shape.reduce((a, b) => a * b, 1)],
  });
  const bigLen = new Uint8Array(16);
  new DataView(bigLen.buffer).setUint32(4, 1, true);
  const cases: [string, Uint8Array, RegExp][] = [
    ["short", new Uint8Array(5), /5 bytes, too short/],
    [
      "len past end",
      (() => {
        const b = craft({}, 0);
        new DataView(b.buffer).setUint32(0, 64, true);
        return b;
      })(),
      /header length is 64 bytes, past the end of the 16-byte file/,
    ],
    ["len huge", bigLen, /more than the 100000000 allowed/],
    ["not {", craft(null, 0, "[1]"), /starting with "\{"/],
    [
      "bad utf8",
      (() => {
        const b = craft(null, 0, '{"a":1}');
        b[10] = 0xff;
        return b;
      })(),
      /not valid UTF-8/,
    ],
    ["bad json", craft(null, 0, '{"a":'), /not valid JSON/],
    ["meta", craft({ __metadata__: { k: 1 } }), /"__metadata__"\["k"\] must be a string/],
    [
      "dtype",
      craft({ w: { dtype: "F42", shape: [1], data_offsets: [0, 4] } }, 4),
      /tensor "w": dtype "F42" is not/,
    ],
    ["field", craft({ w: { ...f32([1], 0), extra: 1 } }, 4), /tensor "w": unknown header field "extra"/],
    [
      "shape",
      craft({ w: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }, 4),
      /tensor "w": shape must be/,
    ],
    [
      "shape float",
      craft({ w: { dtype: "F32", shape: [1.5], data_offsets: [0, 4] } }, 4),
      /tensor "w": shape/,
    ],
    [
      "offsets",
      craft({ w: { dtype: "F32", shape: [1], data_offsets: [4, 0] } }, 4),
      /tensor "w": data_offsets/,
    ],
    [
      "size",
      craft({ w: { dtype: "F32", shape: [2], data_offsets: [0, 4] } }, 4),
      /tensor "w".*span 4 bytes.*needs 8/,
    ],
    [
      "gap",
      craft({ a: f32([1], 0), b: f32([1], 8) }, 12),
      /tensor "b" starts at data byte 8, expected 4 \(a gap/,
    ],
    [
      "overlap",
      craft({ a: f32([2], 0), b: f32([1], 4) }, 8),
      /tensor "b" starts at data byte 4, expected 8 \(it overlaps/,
    ],
    ["not at 0", craft({ a: f32([1], 4) }, 8), /tensor "a" starts at data byte 4, expected 0/],
    ["trailing", craft({ a: f32([1], 0) }, 12), /cover 4 bytes of data but the file has 12/],
    ["past end", craft({ a: f32([4], 0) }, 8), /tensor "a" ends at data byte 16, past the end of the 8-byte/],
    [
      "overflow",
      craft({ a: { dtype: "F64", shape: [2 ** 30, 2 ** 30, 2 ** 30], data_offsets: [0, 8] } }, 8),
      /tensor "a".*too large/,
    ],
    [
      "fp8",
      craft({ a: { dtype: "F8_E4M3", shape: [2], data_offsets: [0, 2] } }, 2),
      /tensor "a": dtype F8_E4M3 \(FP8\) is not supported/,
    ],
    [
      "bool",
      craft({ a: { dtype: "BOOL", shape: [2], data_offsets: [0, 2] } }, new Uint8Array([1, 2])),
      /tensor "a": BOOL element 1 is byte 2/,
    ],
    [
      "i64",
      craft(
        { a: { dtype: "I64", shape: [1], data_offsets: [0, 8] } },
        new Uint8Array([1, 0, 0, 0, 0, 0, 32, 0]),
      ),
      /tensor "a": I64 element 0 is 9007199254740993, beyond/,
    ],
    ["entry", craft({ a: [1] }), /tensor "a": its header entry must be an object/],
  ];
  for (const [label, bytes, re] of cases) {
    assert.throws(
      () => decodeSafetensors(bytes, { name: `case-${label}.safetensors` }),
      (e: Error) => {
        assert.match(e.message, new RegExp(`^decodeSafetensors: case-${label}\\.safetensors: `), label);
        assert.match(e.message, re, label);
        return true;
      },
      label,
    );
  }
  // Zero-size tensors may share an offset; "__proto__" is an ordinary name.
  const ok = decodeSafetensors(craft({ a: f32([0], 0), b: f32([0, 2], 0), ["__proto__"]: f32([1], 0) }, 4));
  assert.deepEqual(Object.keys(ok.tree).sort(), ["__proto__", "a", "b"]);
  assert.equal(Object.getPrototypeOf(ok.tree), Object.prototype);
});

Deno.test("template errors: missing, extra, shape and dtype, each naming the tensor", () => {
  const bytes = encodeSafetensors({ w: tensor([1, 2, 3, 4], [2, 2]), b: tensor([1, 2]) });
  const name = "m.safetensors";
  assert.throws(
    () =>
      decodeSafetensors(bytes, {
        name,
        template: { w: tensor([0, 0, 0, 0], [2, 2]), b: tensor([0, 0]), c: tensor(0) },
      }),
    /decodeSafetensors: m\.safetensors: no tensor "c", which the template has \(the file has "b", "w"\)/,
  );
  assert.throws(
    () => decodeSafetensors(bytes, { name, template: { w: tensor([0, 0, 0, 0], [2, 2]) } }),
    /m\.safetensors: tensor "b" is not in the template/,
  );
  assert.throws(
    () => decodeSafetensors(bytes, { name, template: { w: tensor([0, 0, 0, 0], [4]), b: tensor([0, 0]) } }),
    /m\.safetensors: tensor "w" has shape \[2, 2\], the template expects \[4\]/,
  );
  assert.throws(
    () =>
      decodeSafetensors(bytes, {
        name,
        template: { w: tensor([0, 0, 0, 0], [2, 2], { dtype: "float64" }), b: tensor([0, 0]) },
      }),
    /m\.safetensors: tensor "w" is F32 \(float32\), the template expects float64/,
  );
  const i = craft({ a: { dtype: "I32", shape: [1], data_offsets: [0, 4] } }, new Uint8Array([1, 0, 0, 1]));
  assert.throws(
    () => decodeSafetensors(i, { template: { a: tensor([0]) } }),
    /I32 element 0 is 16777217, which float32 cannot hold/,
  );
  assert.equal(decodeSafetensors(i).tree.a.dataSync()[0], 16777217);
});

Deno.test("encode errors: bare tensor, reserved and colliding names, non-string metadata, bad leaves", () => {
  assert.throws(() => encodeSafetensors(tensor([1])), /bare tensor.*wrap it/);
  assert.throws(() => encodeSafetensors({ __metadata__: tensor([1]) }), /"__metadata__" is reserved/);
  assert.throws(
    () => encodeSafetensors({ "a.b": tensor([1]), a: { b: tensor([2]) } }),
    /two leaves have the name "a\.b"/,
  );
  assert.throws(
    () => encodeSafetensors({ a: tensor([1]) }, { epoch: 3 } as unknown as Record<string, string>),
    /metadata\["epoch"\] must be a string.*JSON\.stringify/,
  );
  assert.throws(
    () => encodeSafetensors({ a: [tensor([1]), 3] } as never),
    /leaf at path "a\.1" must be a Tensor/,
  );
});

Deno.test("saveSafetensors/loadSafetensors: atomic write in the target folder, errors name the path", async () => {
  const dir = await Deno.makeTempDir({ prefix: "nvrm_st_" });
  try {
    const path = `${dir}/model.safetensors`;
    const net = mlp([4, 3, 2], { seed: 5 });
    await saveSafetensors(path, net.params, { epoch: "1" });
    const got = await loadSafetensors(path, net.params);
    assert.equal(got.metadata.epoch, "1");
    assert.deepEqual(got.tree.layers[0].w.dataSync(), net.params.layers[0].w.dataSync());
    assert.deepEqual(await Deno.readFile(path), encodeSafetensors(net.params, { epoch: "1" }));
    // Overwrite: the new content replaces the old, no temporary file is left behind.
    await saveSafetensors(new URL(`file://${path}`), { x: tensor([1, 2]) });
    assert.deepEqual(Object.keys((await loadSafetensors(path)).tree), ["x"]);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["model.safetensors"]);
    // A failing save (bad leaf) leaves the old file as it was.
    await assert.rejects(() => saveSafetensors(path, { x: "no" } as never), /must be a Tensor/);
    assert.deepEqual(Object.keys((await loadSafetensors(path)).tree), ["x"]);
    // A rename that fails (the target is a folder): error names the path, no temporary file left.
    await Deno.mkdir(`${dir}/sub.safetensors`);
    await assert.rejects(
      () => saveSafetensors(`${dir}/sub.safetensors`, { x: tensor([1]) }),
      /saveSafetensors: .*sub\.safetensors/,
    );
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
      "model.safetensors",
      "sub.safetensors",
    ]);
    await assert.rejects(
      () => saveSafetensors(`${dir}/missing/x.safetensors`, { x: tensor([1]) }),
      /saveSafetensors: .*missing\/x\.safetensors/,
    );
    await assert.rejects(
      () => loadSafetensors(`${dir}/nope.safetensors`),
      /loadSafetensors: .*nope\.safetensors not found/,
    );
    // A truncated file: the error names the file.
    await Deno.writeFile(`${dir}/cut.safetensors`, (await Deno.readFile(path)).subarray(0, 40));
    await assert.rejects(
      () => loadSafetensors(`${dir}/cut.safetensors`),
      /decodeSafetensors: .*cut\.safetensors: /,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
