// Builds optimizer-state files (the format of src/optim/serialize.ts) around any header text, with a
// correct length, padding and CRC-32, so that tests can reach deserialize's checks past the checksum.

const MAGIC = [0x4e, 0x56, 0x52, 0x4d, 0x4f, 0x50, 0x54, 0x00]; // "NVRMOPT\0"

let table: Uint32Array | undefined;

/** CRC-32 (IEEE), as the format stores it. */
export function crc32(bytes: Uint8Array): number {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = table[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * A state file with `header` (UTF-8 text or raw bytes) and `data` (length `dataBytes`); the CRC is
 * computed over everything before it, so only the header's content can be wrong.
 */
export function sealState(
  header: string | Uint8Array,
  data: Uint8Array = new Uint8Array(0),
  version = 1,
): Uint8Array {
  const h = typeof header === "string" ? new TextEncoder().encode(header) : header;
  const dataStart = Math.ceil((16 + h.length) / 8) * 8;
  const total = dataStart + data.length + 4;
  const out = new Uint8Array(total);
  out.set(MAGIC, 0);
  const dv = new DataView(out.buffer);
  dv.setUint32(8, version, true);
  dv.setUint32(12, h.length, true);
  out.set(h, 16);
  out.set(data, dataStart);
  dv.setUint32(total - 4, crc32(out.subarray(0, total - 4)), true);
  return out;
}

/** The header text and the data section of a state file (no checks: for well-formed files). */
export function splitState(bytes: Uint8Array): { header: string; data: Uint8Array } {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const h = dv.getUint32(12, true);
  const dataStart = Math.ceil((16 + h) / 8) * 8;
  return {
    header: new TextDecoder().decode(bytes.subarray(16, 16 + h)),
    data: bytes.slice(dataStart, bytes.length - 4),
  };
}
