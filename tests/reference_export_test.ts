import assert from "node:assert/strict";
import { npy } from "../tools/reference/export_run_inputs.ts";

/** Parses a NumPy format 1.0 file the way `np.load` does: magic, version, header dict, data. */
function parseNpy(bytes: Uint8Array): { descr: string; shape: number[]; dataOffset: number } {
  assert.deepEqual(Array.from(bytes.subarray(0, 8)), [0x93, 78, 85, 77, 80, 89, 1, 0]);
  const len = new DataView(bytes.buffer, bytes.byteOffset).getUint16(8, true);
  const header = new TextDecoder().decode(bytes.subarray(10, 10 + len));
  assert.equal((10 + len) % 64, 0, "data must start on a 64-byte boundary");
  assert.ok(header.endsWith("\n"));
  const descr = /'descr': '([^']+)'/.exec(header)![1];
  assert.match(header, /'fortran_order': False/);
  const shape = /'shape': \(([^)]*)\)/.exec(header)![1].split(",").map((s) => s.trim()).filter((s) => s)
    .map(Number);
  return { descr, shape, dataOffset: 10 + len };
}

Deno.test("npy: float32, int32 and uint8 arrays with their shapes and bytes", () => {
  const cases = [
    { a: Float32Array.from([1.5, -2, 3.25, 0, 7, 8]), shape: [2, 3], descr: "<f4" },
    { a: Int32Array.from([5, -1, 70000]), shape: [3], descr: "<i4" },
    { a: Uint8Array.from([0, 1, 1, 0]), shape: [2, 1, 2], descr: "|u1" },
  ];
  for (const { a, shape, descr } of cases) {
    const bytes = npy(a, shape);
    const h = parseNpy(bytes);
    assert.equal(h.descr, descr);
    assert.deepEqual(h.shape, shape);
    assert.equal(bytes.length, h.dataOffset + a.byteLength);
    assert.deepEqual(bytes.subarray(h.dataOffset), new Uint8Array(a.buffer));
  }
  // A 1-D shape is written as a one-element tuple, "(3,)", as NumPy requires.
  assert.match(new TextDecoder().decode(npy(Int32Array.from([1, 2, 3]), [3])), /'shape': \(3,\)/);
});

Deno.test("npy: a shape that does not hold the array's values is an error naming both", () => {
  assert.throws(() => npy(new Float32Array(6), [4, 2]), /shape \[4, 2\] holds 8 values, the array 6/);
});
