/**
 * A tiny WebAssembly binary emitter: just enough to generate the GEMM kernels at run time (no
 * toolchain, no committed `.wasm`). Functions are written in stack style through {@linkcode Fn};
 * {@linkcode buildModule} assembles the sections.
 *
 * @module
 */

/** Value types. */
export const I32 = 0x7f, F32 = 0x7d, F64 = 0x7c, V128 = 0x7b;

/** Appends `n` as unsigned LEB128. */
function uleb(n: number, out: number[]): void {
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
}

/** Appends `n` (an int32) as signed LEB128. */
function sleb(n: number, out: number[]): void {
  n |= 0;
  while (true) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return;
    }
    out.push(byte | 0x80);
  }
}

/** Plain opcodes (no immediates). SIMD ones carry the 0xfd prefix and LEB128 sub-opcode. */
export const OPS = {
  "i32.eqz": [0x45],
  "i32.eq": [0x46],
  "i32.ne": [0x47],
  "i32.lt_s": [0x48],
  "i32.lt_u": [0x49],
  "i32.gt_s": [0x4a],
  "i32.le_s": [0x4c],
  "i32.ge_s": [0x4e],
  "i32.add": [0x6a],
  "i32.sub": [0x6b],
  "i32.mul": [0x6c],
  "i32.and": [0x71],
  "i32.shl": [0x74],
  "f32.add": [0x92],
  "f32.mul": [0x94],
  "f64.add": [0xa0],
  "f64.sub": [0xa1],
  "f64.mul": [0xa2],
  "f32.demote_f64": [0xb6],
  "f64.promote_f32": [0xbb],
  "select": [0x1b],
  "drop": [0x1a],
  "return": [0x0f],
  "f32x4.splat": [0xfd, 0x13],
  "f32x4.add": [0xfd, 0xe4, 0x01],
  "f32x4.sub": [0xfd, 0xe5, 0x01],
  "f32x4.neg": [0xfd, 0xe1, 0x01],
  "f32x4.mul": [0xfd, 0xe6, 0x01],
  "f32x4.relaxed_madd": [0xfd, 0x85, 0x02],
} as const;

/** Opcode names accepted by {@linkcode Fn.op}. */
export type OpName = keyof typeof OPS;

/** Memory-access opcodes: [prefix bytes, natural alignment log2]. */
export const MEM_OPS = {
  "i32.load": [[0x28], 2],
  "f32.load": [[0x2a], 2],
  "i32.store": [[0x36], 2],
  "f32.store": [[0x38], 2],
  "v128.load": [[0xfd, 0x00], 4],
  "v128.load32_splat": [[0xfd, 0x09], 2],
  "v128.store": [[0xfd, 0x0b], 4],
} as const;

/** Memory-access opcode names accepted by {@linkcode Fn.mem}. */
export type MemOpName = keyof typeof MEM_OPS;

/** A function under construction: parameters, locals and a stack-style body. */
export class Fn {
  /** Body bytes (without locals and the final `end`). */
  readonly body: number[] = [];
  private readonly localTypes: number[] = [];

  /** Starts an empty function body. */
  constructor(
    /** Export name. */
    readonly name: string,
    /** Parameter types. */
    readonly params: number[],
    /** Result types. */
    readonly results: number[] = [],
  ) {}

  /** Declares a local; returns its index. */
  local(type: number): number {
    this.localTypes.push(type);
    return this.params.length + this.localTypes.length - 1;
  }

  /** Emits plain opcodes. */
  op(...names: OpName[]): this {
    for (const n of names) this.body.push(...OPS[n]);
    return this;
  }
  /** `local.get`. */
  get(l: number): this {
    this.body.push(0x20);
    uleb(l, this.body);
    return this;
  }
  /** `local.set`. */
  set(l: number): this {
    this.body.push(0x21);
    uleb(l, this.body);
    return this;
  }
  /** `local.tee`. */
  tee(l: number): this {
    this.body.push(0x22);
    uleb(l, this.body);
    return this;
  }
  /** `i32.const`. */
  i32(v: number): this {
    this.body.push(0x41);
    sleb(v, this.body);
    return this;
  }
  /** `f32.const`. */
  f32(v: number): this {
    this.body.push(0x43, ...new Uint8Array(new Float32Array([v]).buffer));
    return this;
  }
  /** `v128.const` of four zero lanes. */
  v128Zero(): this {
    this.body.push(0xfd, 0x0c, ...new Array(16).fill(0));
    return this;
  }
  /**
   * `i8x16.shuffle` of the two vectors on the stack, by float lanes: `lanes[i]` (0–3 the first
   * vector's, 4–7 the second's) becomes lane `i`.
   */
  shuffle32(lanes: readonly [number, number, number, number]): this {
    this.body.push(0xfd, 0x0d);
    for (const l of lanes) this.body.push(4 * l, 4 * l + 1, 4 * l + 2, 4 * l + 3);
    return this;
  }
  /** A load or store with a constant byte offset. */
  mem(name: MemOpName, offset = 0): this {
    const [code, align] = MEM_OPS[name];
    this.body.push(...code, align);
    uleb(offset, this.body);
    return this;
  }
  /** `call` of the function with index `idx`. */
  call(idx: number): this {
    this.body.push(0x10);
    uleb(idx, this.body);
    return this;
  }
  /** `local += v` (i32) where `v` is a constant or emitted by a callback. */
  addTo(l: number, v: number | (() => void)): this {
    this.get(l);
    if (typeof v === "number") this.i32(v);
    else v();
    return this.op("i32.add").set(l);
  }
  /** `if (cond) then else otherwise` with no result; `cond` pushes an i32. */
  if(cond: () => void, then: () => void, otherwise?: () => void): this {
    cond();
    this.body.push(0x04, 0x40);
    then();
    if (otherwise) {
      this.body.push(0x05);
      otherwise();
    }
    this.body.push(0x0b);
    return this;
  }
  /**
   * `for (i = start; i < end; i += step) body` (signed compare). `start`, `end` and `step` are
   * constants, locals (as `{ l }`) or callbacks that push an i32.
   */
  for(i: number, start: Operand, end: Operand, step: Operand, body: () => void): this {
    this.push(start).set(i);
    this.body.push(0x02, 0x40, 0x03, 0x40); // block loop
    this.get(i).push(end).op("i32.ge_s");
    this.body.push(0x0d, 1); // br_if to block end
    body();
    this.get(i).push(step).op("i32.add").set(i);
    this.body.push(0x0c, 0, 0x0b, 0x0b); // br loop; end; end
    return this;
  }
  /** `do body while (cond)`; `cond` pushes an i32. */
  doWhile(body: () => void, cond: () => void): this {
    this.body.push(0x03, 0x40);
    body();
    cond();
    this.body.push(0x0d, 0, 0x0b);
    return this;
  }
  /** Pushes an operand. */
  push(v: Operand): this {
    if (typeof v === "number") this.i32(v);
    else if (typeof v === "function") v();
    else this.get(v.l);
    return this;
  }
  /** Pushes min(a, b) (signed). */
  min(a: Operand, b: Operand): this {
    return this.push(a).push(b).push(a).push(b).op("i32.lt_s", "select");
  }

  /** The encoded function body: local declarations, code, `end`. */
  encode(): number[] {
    const out: number[] = [];
    const groups: [number, number][] = [];
    for (const t of this.localTypes) {
      const last = groups[groups.length - 1];
      if (last && last[1] === t) last[0]++;
      else groups.push([1, t]);
    }
    uleb(groups.length, out);
    for (const [n, t] of groups) {
      uleb(n, out);
      out.push(t);
    }
    out.push(...this.body, 0x0b);
    const sized: number[] = [];
    uleb(out.length, sized);
    return sized.concat(out);
  }
}

/** An i32 operand: a constant, a local `{ l: index }`, or a callback that pushes the value. */
export type Operand = number | { l: number } | (() => void);

/** Imported linear memory limits (pages of 64 KiB). */
export interface MemoryImport {
  /** Initial pages. */
  initial: number;
  /** Maximum pages (required when shared). */
  maximum?: number;
  /** Shared memory (threads). */
  shared: boolean;
}

function section(id: number, content: number[], out: number[]): void {
  out.push(id);
  uleb(content.length, out);
  for (const b of content) out.push(b);
}

function name(s: string, out: number[]): void {
  const bytes = new TextEncoder().encode(s);
  uleb(bytes.length, out);
  out.push(...bytes);
}

/**
 * Assembles a module that imports its memory as `env.mem` and exports every function under its
 * name. Function indices follow the order of `fns` (so `call` targets are known in advance).
 */
export function buildModule(mem: MemoryImport, fns: Fn[]): Uint8Array {
  const out = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  const sigs: string[] = [];
  const typeOf: number[] = [];
  const types: number[] = [];
  for (const f of fns) {
    const key = `${f.params.join(",")}:${f.results.join(",")}`;
    let idx = sigs.indexOf(key);
    if (idx < 0) {
      idx = sigs.length;
      sigs.push(key);
      types.push(0x60);
      uleb(f.params.length, types);
      types.push(...f.params);
      uleb(f.results.length, types);
      types.push(...f.results);
    }
    typeOf.push(idx);
  }
  const typeSec: number[] = [];
  uleb(sigs.length, typeSec);
  section(1, typeSec.concat(types), out);

  const imp: number[] = [1];
  name("env", imp);
  name("mem", imp);
  imp.push(0x02, (mem.shared ? 0x02 : 0) | (mem.maximum !== undefined ? 0x01 : 0));
  uleb(mem.initial, imp);
  if (mem.maximum !== undefined) uleb(mem.maximum, imp);
  section(2, imp, out);

  const funcSec: number[] = [];
  uleb(fns.length, funcSec);
  for (const t of typeOf) uleb(t, funcSec);
  section(3, funcSec, out);

  const exp: number[] = [];
  uleb(fns.length, exp);
  fns.forEach((f, i) => {
    name(f.name, exp);
    exp.push(0x00);
    uleb(i, exp);
  });
  section(7, exp, out);

  const code: number[] = [];
  uleb(fns.length, code);
  for (const f of fns) code.push(...f.encode());
  section(10, code, out);
  return new Uint8Array(out);
}
