/**
 * Training checkpoints: one safetensors file per checkpoint holding everything a run needs to
 * continue bit for bit — the params (in the optimizer's representation: in official mode they
 * still carry the weight noise), the model state (running statistics of stateful layers; `{}` for a
 * stateless model), the
 * optimizer state, the epoch and step counters, the run's configuration and the metrics so far.
 *
 * Layout of the file (a plain safetensors file, readable by `safetensors.safe_open` in Python):
 *
 * - tensors `params.<path>` and `model_state.<path>`: the trees' leaves under their dotted paths;
 * - tensors `optimizer.<path>`: every tensor of the optimizer state under its place in the state
 *   (`optimizer.inner.0.leaves.layers.0.w.buffers.momentum`);
 * - metadata `format` = `"pt"` and `nvrm.checkpoint` = a JSON document `{ version, epoch, step,
 *   config, loop, history, optimizer }` where `optimizer` is the state with each tensor replaced
 *   by `{ "$tensor": name }` (counters, hyperparameters, seed, mode…), and every non-finite number
 *   or −0 anywhere is `{ "$num": "NaN" | "Infinity" | "-Infinity" | "-0" }`.
 *
 * The optimizer's tensors are stored as tensors (rather than as the bytes of `serialize`) so that
 * the file stays one standard safetensors file whose every array another tool can read. Loading
 * checks the params against a template tree (paths, shapes, dtypes), the optimizer state against
 * `optimizer.init(params)` (kinds, options, every buffer's shape and dtype) and, given the
 * optimizer, its configuration: the seed, noise law, mode and options recorded in the state, and
 * the hyperparameters at the checkpoint's step, which a one-element probe update recomputes.
 *
 * Writes are atomic (a temporary file in the target folder, then a rename); in a checkpoint
 * folder the `latest` file names the newest checkpoint and is itself replaced atomically after the
 * checkpoint is complete, so a run killed at any moment leaves a loadable last checkpoint.
 *
 * One file (about 640 lines) because it is one format: the writer, the folder's `latest` pointer,
 * the reader and its checks (template, optimizer configuration, resume) all read and write the
 * same `nvrm.checkpoint` document; split, its layout would have to be exported to every part.
 *
 * @module
 */
import { type Device, Tensor } from "../tensor.ts";
import { type TensorTree, treeLeaves } from "../tree.ts";
import { fmtShape, sameShape } from "../tensor.ts";
import { zeros } from "../creation.ts";
import { fmtValue } from "../optim/hyper.ts";
import { tensorsIn } from "../memory.ts";
import { toDevice } from "../webgpu/mod.ts";
import { checkStateLike } from "../optim/serialize.ts";
import { loadSafetensors, saveSafetensors, writeTextFileAtomicSync } from "../io/files.ts";
import type { EpochMetrics, LoopOptimizer } from "./loop.ts";

/** The version of the `nvrm.checkpoint` metadata document. */
const CHECKPOINT_VERSION = 1;
/** The metadata key of the checkpoint document. */
const META_KEY = "nvrm.checkpoint";
/** The pointer file of a checkpoint folder. */
const LATEST = "latest";

/** Everything one checkpoint holds. */
export interface Checkpoint<P extends TensorTree = TensorTree, S = unknown> {
  /** The params in the optimizer's representation (what continues training; `optimizer.clean` gives the noise-free weights). */
  params: P;
  /** The optimizer state that pairs with `params`. */
  optimizerState: S;
  /** The model's own state (running statistics of stateful layers); `{}` when it has none. */
  modelState?: TensorTree;
  /** Epochs completed. */
  epoch: number;
  /** Optimizer steps taken. */
  step: number;
  /** The run's configuration: any JSON value (numbers may be non-finite). */
  config?: unknown;
  /** What the loop recorded to check a resume against (`fit`: seed, batch size, training-set size…). */
  loop?: Readonly<Record<string, number | boolean>>;
  /** The metrics of every epoch so far. */
  history?: readonly EpochMetrics[];
}

/** What {@linkcode loadCheckpoint} checks the file against. */
export interface CheckpointTemplate<P extends TensorTree = TensorTree, S = unknown> {
  /** Params of the expected paths, shapes and dtypes (their values are not used). */
  params: P;
  /**
   * The optimizer: the state must match `optimizer.init(params)` and the optimizer's
   * configuration (seed, law, mode, hyperparameters at the checkpoint's step).
   */
  optimizer?: LoopOptimizer<S>;
  /** The expected model state (paths, shapes, dtypes); default: the file's, unchecked. */
  modelState?: TensorTree;
}

// ---------------------------------------------------------------------------------------------
// JSON with non-finite numbers.

function toJson(v: unknown, where: string, tensors?: (t: Tensor, path: string[]) => string): unknown {
  const seen = new Set<unknown>();
  const walk = (x: unknown, path: string[]): unknown => {
    if (x === null || typeof x === "string" || typeof x === "boolean") return x;
    if (x === undefined) return null;
    if (typeof x === "number") {
      return Number.isFinite(x) && !Object.is(x, -0) ? x : { $num: Object.is(x, -0) ? "-0" : String(x) };
    }
    if (x instanceof Tensor) {
      if (!tensors) throw new TypeError(`saveCheckpoint: ${where} holds a tensor at ${path.join(".")}`);
      return { $tensor: tensors(x, path) };
    }
    if (typeof x === "object") {
      if (ArrayBuffer.isView(x)) {
        throw new TypeError(
          `saveCheckpoint: ${where} holds a ${x.constructor.name} at ${path.join(".")}; only tensors, ` +
            `numbers, strings, booleans, arrays and plain objects are stored`,
        );
      }
      if (seen.has(x)) throw new TypeError(`saveCheckpoint: ${where} has a cycle at ${path.join(".")}`);
      seen.add(x);
      let out: unknown;
      if (Array.isArray(x)) out = x.map((c, i) => walk(c, [...path, String(i)]));
      else {
        const o: Record<string, unknown> = {};
        for (const k of Object.keys(x)) {
          if (k === "$num" || k === "$tensor") {
            throw new TypeError(`saveCheckpoint: key ${JSON.stringify(k)} in ${where} is reserved`);
          }
          o[k] = walk((x as Record<string, unknown>)[k], [...path, k]);
        }
        out = o;
      }
      seen.delete(x);
      return out;
    }
    throw new TypeError(`saveCheckpoint: ${where} holds ${fmtValue(x)} at ${path.join(".")}`);
  };
  return walk(v, []);
}

const NUMS: Record<string, number> = { NaN: NaN, Infinity: Infinity, "-Infinity": -Infinity, "-0": -0 };

function fromJson(v: unknown, bad: (msg: string) => never, tensor?: (name: string) => Tensor): unknown {
  const walk = (x: unknown): unknown => {
    if (x === null || typeof x !== "object") return x;
    if (Array.isArray(x)) return Object.freeze(x.map(walk));
    const o = x as Record<string, unknown>;
    if ("$num" in o) {
      if (typeof o.$num !== "string" || !(o.$num in NUMS)) bad(`bad number ${fmtValue(o.$num)}`);
      return NUMS[o.$num as string];
    }
    if ("$tensor" in o) {
      if (!tensor || typeof o.$tensor !== "string") bad(`bad tensor reference ${fmtValue(o.$tensor)}`);
      return tensor(o.$tensor as string);
    }
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(o)) out[k] = walk(o[k]);
    return Object.freeze(out);
  };
  return walk(v);
}

// ---------------------------------------------------------------------------------------------
// Encoding.

/** Nests `name → tensor` into objects split at the dots (names must not be prefixes of others). */
function nest(flat: Map<string, Tensor>): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const [name, t] of flat) {
    const parts = name.split(".");
    let node = root;
    for (let i = 0; i < parts.length - 1; i++) {
      const next = node[parts[i]];
      if (next instanceof Tensor) throw new Error(`saveCheckpoint: tensor names collide at ${name}`);
      node = (node[parts[i]] ??= {}) as Record<string, unknown>;
    }
    const last = parts[parts.length - 1];
    if (last in node) throw new Error(`saveCheckpoint: tensor names collide at ${name}`);
    node[last] = t;
  }
  return root;
}

function checkCounter(v: unknown, name: string): number {
  if (!Number.isInteger(v) || (v as number) < 0) {
    throw new RangeError(`saveCheckpoint: ${name} must be a non-negative integer, got ${fmtValue(v)}`);
  }
  return v as number;
}

/** The tensors and metadata of a checkpoint (any device: the writer reads the GPU back). */
function checkpointContents(
  c: Checkpoint,
): { tree: Record<string, unknown>; metadata: Record<string, string> } {
  const flat = new Map<string, Tensor>();
  const add = (name: string, t: Tensor) => {
    if (flat.has(name)) throw new Error(`saveCheckpoint: two tensors are named ${name}`);
    flat.set(name, t);
  };
  for (const l of treeLeaves(c.params, "saveCheckpoint (params)")) add(`params.${l.path}`, l.tensor);
  for (const l of treeLeaves(c.modelState ?? {}, "saveCheckpoint (modelState)")) {
    add(`model_state.${l.path}`, l.tensor);
  }
  const optimizer = toJson(c.optimizerState, "the optimizer state", (t, path) => {
    const name = ["optimizer", ...path].join(".");
    add(name, t);
    return name;
  });
  const doc = {
    version: CHECKPOINT_VERSION,
    epoch: checkCounter(c.epoch, "epoch"),
    step: checkCounter(c.step, "step"),
    config: toJson(c.config ?? null, "the config"),
    loop: toJson(c.loop ?? {}, "loop"),
    history: toJson(c.history ?? [], "the history"),
    optimizer,
  };
  return { tree: nest(flat), metadata: { format: "pt", [META_KEY]: JSON.stringify(doc) } };
}

/**
 * Writes one checkpoint to the file `path` atomically (a temporary file in the same folder, then
 * a rename): a reader sees the previous file or the complete new one, never a partial one.
 * Tensors may live on any device (GPU tensors are read back).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadCheckpoint, saveCheckpoint, tensor } from "@nvrm/core";
 * import { vsgd } from "@nvrm/core/optim";
 * const optimizer = vsgd({ lr: 0.1, momentum: 0.9, seed: 1 });
 * const params = { w: tensor([1, 2, 3]) };
 * const dir = await Deno.makeTempDir();
 * await saveCheckpoint(`${dir}/run.safetensors`, {
 *   params,
 *   optimizerState: optimizer.init(params),
 *   epoch: 0,
 *   step: 0,
 *   config: { lr: 0.1 },
 * });
 * const ck = await loadCheckpoint(`${dir}/run.safetensors`, { params, optimizer });
 * assert.deepEqual([...ck.params.w.dataSync()], [1, 2, 3]);
 * assert.deepEqual(ck.config, { lr: 0.1 });
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function saveCheckpoint(
  path: string,
  checkpoint: Checkpoint<TensorTree, unknown>,
): Promise<void> {
  const { tree, metadata } = checkpointContents(checkpoint);
  await saveSafetensors(path, tree as TensorTree, metadata);
}

// ---------------------------------------------------------------------------------------------
// Checkpoint folders.

/** The file name of the checkpoint of `epoch` in a checkpoint folder. */
export function checkpointFileName(epoch: number): string {
  return `epoch-${String(epoch).padStart(4, "0")}.safetensors`;
}

const FILE_RE = /^epoch-(\d+)\.safetensors$/;

/**
 * Writes `checkpoint` into the folder `dir` as `epoch-NNNN.safetensors`, then points `dir/latest`
 * at it (both atomically), then removes the older checkpoints beyond the `keep` newest (default:
 * none removed). Returns the file's path.
 */
export async function writeCheckpointDir(
  dir: string,
  checkpoint: Checkpoint<TensorTree, unknown>,
  keep = Infinity,
): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const name = checkpointFileName(checkpoint.epoch);
  const path = `${dir}/${name}`;
  await saveCheckpoint(path, checkpoint);
  writeTextFileAtomicSync(`${dir}/${LATEST}`, name + "\n", "writeCheckpointDir");
  if (Number.isFinite(keep)) {
    const epochs: number[] = [];
    for (const e of Deno.readDirSync(dir)) {
      const m = FILE_RE.exec(e.name);
      if (m && e.isFile && Number(m[1]) !== checkpoint.epoch) epochs.push(Number(m[1]));
    }
    epochs.sort((a, b) => b - a);
    for (const e of epochs.slice(Math.max(0, keep - 1))) {
      try {
        Deno.removeSync(`${dir}/${checkpointFileName(e)}`);
      } catch { /* removed meanwhile */ }
    }
  }
  return path;
}

/**
 * The checkpoint file `path` names: `path` itself when it is a file; for a folder, the file its
 * `latest` names (or, without `latest`, its newest `epoch-NNNN.safetensors`). Throws, naming the
 * path, when there is none.
 */
export async function resolveCheckpoint(path: string): Promise<string> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(`loadCheckpoint: ${path} does not exist`);
    throw new Error(`loadCheckpoint: cannot read ${path}: ${(e as Error).message}`);
  }
  if (!info.isDirectory) return path;
  let name: string | undefined;
  try {
    name = (await Deno.readTextFile(`${path}/${LATEST}`)).trim();
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  if (name !== undefined) {
    if (!FILE_RE.test(name)) {
      throw new Error(
        `loadCheckpoint: ${path}/${LATEST} must name an epoch-NNNN.safetensors file, got ${name}`,
      );
    }
    return `${path}/${name}`;
  }
  const epochs = [...Deno.readDirSync(path)].flatMap((e) => {
    const m = FILE_RE.exec(e.name);
    return m && e.isFile ? [Number(m[1])] : [];
  });
  if (epochs.length === 0) throw new Error(`loadCheckpoint: no checkpoint in the folder ${path}`);
  return `${path}/${checkpointFileName(Math.max(...epochs))}`;
}

// ---------------------------------------------------------------------------------------------
// Loading.

/** Leaf records `{ shape, dtype, device, buffers }` of a state, rewritten to `device`. */
function withDevice(state: unknown, device: string): unknown {
  const walk = (x: unknown): unknown => {
    if (x === null || typeof x !== "object" || x instanceof Tensor || ArrayBuffer.isView(x)) return x;
    if (Array.isArray(x)) return Object.freeze(x.map(walk));
    const o = x as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(o)) out[k] = walk(o[k]);
    if (
      Array.isArray(o.shape) && typeof o.dtype === "string" && typeof o.device === "string" && "buffers" in o
    ) {
      out.device = device;
    }
    return Object.freeze(out);
  };
  return walk(state);
}

/**
 * Reads a checkpoint written by {@linkcode saveCheckpoint} (or by `fit`'s `checkpoint` option):
 * `path` is the file, or a checkpoint folder (then the file its `latest` names). Tensors come back
 * on the device of `template.params`. Throws, naming the file and the place, unless the params have exactly the paths,
 * shapes and dtypes of `template.params`; with `template.optimizer`, unless the optimizer state
 * has the structure of `optimizer.init(params)` (every buffer of its parameter's shape and dtype)
 * and was made by an optimizer of the same configuration (seed, noise law, mode, options, and the
 * hyperparameters at the checkpoint's step).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadCheckpoint, saveCheckpoint, tensor } from "@nvrm/core";
 * import { sgd } from "@nvrm/core/optim";
 * const params = { w: tensor([1, 2]) };
 * const dir = await Deno.makeTempDir();
 * await saveCheckpoint(`${dir}/a.safetensors`, {
 *   params,
 *   optimizerState: sgd({ lr: 0.1 }).init(params),
 *   epoch: 3,
 *   step: 30,
 * });
 * // Another learning rate than the checkpoint's: refused.
 * await assert.rejects(
 *   loadCheckpoint(`${dir}/a.safetensors`, { params, optimizer: sgd({ lr: 0.2 }) }),
 *   /made with lr 0\.1, this optimizer has lr 0\.2/,
 * );
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function loadCheckpoint<P extends TensorTree, S = unknown>(
  path: string,
  template: CheckpointTemplate<P, S>,
): Promise<Checkpoint<P, S> & { path: string }> {
  const file = await resolveCheckpoint(path);
  const { tree, metadata } = await loadSafetensors(file);
  const ck = decodeCheckpoint(tree as Record<string, Tensor>, metadata, template, file);
  const device = firstLeafDevice(template.params) ?? "cpu";
  if (device !== "cpu") {
    // On the template's device; a tree without tensors (a state before any buffer) stays as it is.
    const move = async <T>(x: T): Promise<T> =>
      tensorsIn(x).length ? await toDevice(x as any, device) as T : x;
    ck.params = await move(ck.params);
    ck.optimizerState = await move(ck.optimizerState);
    ck.modelState = await move(ck.modelState);
  }
  return { ...ck, path: file };
}

/** What `fit` records in its checkpoints and checks on resume. */
export interface LoopRecord {
  [key: string]: number | boolean;
  /** Seed of the batch order. */
  seed: number;
  /** Minibatch size. */
  batchSize: number;
  /** Whether the last incomplete batch is dropped. */
  dropLast: boolean;
  /** Training examples. */
  trainSize: number;
  /** Optimizer steps per epoch. */
  stepsPerEpoch: number;
}

/**
 * Loads the checkpoint `path` for `fit`'s `resume` and refuses one that disagrees with the call:
 * a `startEpoch` other than the checkpoint's epoch, a `state` at another step, another batch
 * order (seed, batch size, training-set size, `dropLast`), or (through {@linkcode loadCheckpoint})
 * other params, another model state (paths, shapes, dtypes of `o.modelState`) or another
 * optimizer configuration. Internal to `fit`.
 */
export async function loadForResume<P extends TensorTree, S>(
  path: string,
  o: { params: P; optimizer: LoopOptimizer<S>; state?: S; startEpoch?: number; modelState?: TensorTree },
  loop: LoopRecord,
): Promise<Checkpoint<P, S> & { path: string }> {
  if (typeof path !== "string" || path === "") {
    throw new TypeError(`fit: resume must be the path of a checkpoint file or folder, got ${fmtValue(path)}`);
  }
  const ck = await loadCheckpoint(path, {
    params: o.params,
    optimizer: o.optimizer,
    modelState: o.modelState,
  });
  const where = `the checkpoint ${ck.path}`;
  if (o.startEpoch !== undefined && o.startEpoch !== ck.epoch) {
    throw new RangeError(
      `fit: startEpoch ${o.startEpoch} disagrees with ${where}, which ends epoch ${ck.epoch} ` +
        `(omit startEpoch when resuming: training continues at epoch ${ck.epoch + 1})`,
    );
  }
  if (o.state !== undefined) {
    const given = membersOf(o.state)?.[0]?.step, saved = membersOf(ck.optimizerState)?.[0]?.step;
    if (given !== saved) {
      throw new RangeError(
        `fit: the state given is at step ${fmtValue(given)}, ${where} at step ${fmtValue(saved)} ` +
          `(omit state when resuming: the checkpoint's is used)`,
      );
    }
  }
  for (const [k, v] of Object.entries(loop)) {
    const saved = ck.loop?.[k];
    if (saved !== undefined && saved !== v) {
      throw new RangeError(
        `fit: ${where} was made with ${k} ${fmtValue(saved)}, this call has ${k} ${fmtValue(v)}`,
      );
    }
  }
  if (ck.step !== ck.epoch * loop.stepsPerEpoch) {
    throw new RangeError(
      `fit: ${where} is at step ${ck.step}, which is not the end of its epoch ${ck.epoch} ` +
        `(${ck.epoch} × ${loop.stepsPerEpoch} steps per epoch = ${ck.epoch * loop.stepsPerEpoch})`,
    );
  }
  return ck;
}

/** Builds the checkpoint from the decoded tensors and metadata of `file`, checked against `template`. */
export function decodeCheckpoint<P extends TensorTree, S>(
  flat: Record<string, Tensor>,
  metadata: Record<string, string>,
  template: CheckpointTemplate<P, S>,
  file: string,
): Checkpoint<P, S> {
  const who = `loadCheckpoint: ${file}`;
  const bad = (msg: string): never => {
    throw new Error(`${who}: ${msg}`);
  };
  const text = metadata[META_KEY];
  if (text === undefined) bad(`not a checkpoint (no ${JSON.stringify(META_KEY)} metadata)`);
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    return bad(`corrupted ${META_KEY} metadata (${(e as Error).message})`);
  }
  if (doc === null || typeof doc !== "object") bad(`corrupted ${META_KEY} metadata`);
  if (doc.version !== CHECKPOINT_VERSION) {
    bad(`unsupported checkpoint version ${fmtValue(doc.version)} (this library reads ${CHECKPOINT_VERSION})`);
  }
  for (const k of ["epoch", "step"]) {
    if (!Number.isInteger(doc[k]) || (doc[k] as number) < 0) bad(`bad ${k} ${fmtValue(doc[k])}`);
  }
  const used = new Set<string>();
  const take = (name: string): Tensor => {
    const t = flat[name];
    if (!(t instanceof Tensor)) bad(`the tensor ${name} is missing`);
    used.add(name);
    return t;
  };
  // Params: exactly the template's leaves.
  const rebuild = <T extends TensorTree>(tmpl: T, prefix: string): T => {
    const walk = (node: unknown, path: string): unknown => {
      if (node instanceof Tensor) {
        const name = `${prefix}.${path}`;
        const t = take(name);
        if (!sameShape(t.shape, node.shape) || t.dtype !== node.dtype) {
          bad(`${name} is ${t.dtype} ${fmtShape(t.shape)}, expected ${node.dtype} ${fmtShape(node.shape)}`);
        }
        return t;
      }
      const join = (k: string | number) => (path === "" ? String(k) : `${path}.${k}`);
      if (Array.isArray(node)) return node.map((c, i) => walk(c, join(i)));
      const o: Record<string, unknown> = {};
      for (const k of Object.keys(node as object)) o[k] = walk((node as Record<string, unknown>)[k], join(k));
      return o;
    };
    return walk(tmpl, "") as T;
  };
  const params = rebuild(template.params, "params");
  let modelState: TensorTree;
  if (template.modelState !== undefined) modelState = rebuild(template.modelState, "model_state");
  else {
    const m = new Map<string, Tensor>();
    for (const name of Object.keys(flat)) {
      if (name.startsWith("model_state.")) m.set(name.slice("model_state.".length), take(name));
    }
    modelState = nest(m) as TensorTree;
  }
  const jsonBad = (msg: string): never => bad(`corrupted ${META_KEY} metadata: ${msg}`);
  let state = fromJson(doc.optimizer, jsonBad, take);
  for (const name of Object.keys(flat)) {
    if (!used.has(name)) {
      const kind = name.startsWith("params.") ? "a parameter the template does not have" : "unexpected";
      bad(`the tensor ${name} is ${kind}`);
    }
  }
  if (template.optimizer) {
    const device = firstLeafDevice(template.params) ?? "cpu";
    state = withDevice(state, device);
    const init = template.optimizer.init(template.params);
    try {
      checkStateLike(state, init);
    } catch (e) {
      bad(`the optimizer state ${String((e as Error).message).replace(/^deserialize: the data /, "")}`);
    }
    checkOptimizerConfig(template.optimizer, state, init, who);
  }
  return {
    params,
    optimizerState: state as S,
    modelState,
    epoch: doc.epoch as number,
    step: doc.step as number,
    config: fromJson(doc.config, jsonBad),
    loop: fromJson(doc.loop ?? {}, jsonBad) as Record<string, number | boolean>,
    history: fromJson(doc.history ?? [], jsonBad) as EpochMetrics[],
  };
}

function firstLeafDevice(tree: TensorTree): Device | undefined {
  return treeLeaves(tree, "loadCheckpoint (params)")[0]?.tensor.device;
}

// ---------------------------------------------------------------------------------------------
// The optimizer's configuration.

interface Member {
  kind: string;
  step: number;
  hparams: Record<string, number>;
  meta: Record<string, unknown>;
  leaves: Record<string, unknown>;
}

const isMember = (s: any): s is Member =>
  s !== null && typeof s === "object" && typeof s.kind === "string" && Number.isInteger(s.step) &&
  s.hparams !== null && typeof s.hparams === "object" && s.meta !== null && typeof s.meta === "object" &&
  s.leaves !== null && typeof s.leaves === "object";

/** The built-in members (`{ kind, step, hparams, meta, leaves }`) of a state, chains flattened; null if any is not one. */
function membersOf(state: unknown): Member[] | null {
  const s = state as any;
  if (s?.kind === "chain" && Array.isArray(s.inner)) {
    const out: Member[] = [];
    for (const m of s.inner) {
      const sub = membersOf(m);
      if (!sub) return null;
      out.push(...sub);
    }
    return out;
  }
  return isMember(s) ? [s] : null;
}

/**
 * Throws unless `state` was made by an optimizer configured as `optimizer`: the same options
 * recorded in each member's `meta` (seed, noise law, mode…) and the same hyperparameters at the
 * checkpoint's step. The hyperparameters are recomputed by one update of a one-element probe from
 * the state's counters (a schedule is evaluated exactly where the checkpointed run evaluated it).
 */
function checkOptimizerConfig(
  optimizer: LoopOptimizer<any>,
  state: unknown,
  init: unknown,
  who: string,
): void {
  const mine = membersOf(state), fresh = membersOf(init);
  if (!mine || !fresh) return; // not the built-in layout: the structural check is all we can do
  const probe = { probe: zeros([1], { device: "cpu" }) };
  const probeInit = membersOf(optimizer.init(probe))!;
  mine.forEach((m, i) => {
    const f = fresh[i];
    for (const k of new Set([...Object.keys(m.meta), ...Object.keys(f.meta)])) {
      if (!Object.is(m.meta[k], f.meta[k])) {
        throw new Error(
          `${who}: the checkpoint's optimizer (${m.kind}) was made with ${k} ${fmtValue(m.meta[k])}, ` +
            `this optimizer has ${k} ${fmtValue(f.meta[k])}`,
        );
      }
    }
  });
  // The hyperparameters the run used at the checkpoint's step, recomputed from this optimizer.
  let expected: Member[];
  if (mine.every((m) => m.step === 0)) expected = probeInit;
  else {
    let k = 0;
    const rewind = (s: any): unknown => {
      if (s?.kind === "chain") {
        return Object.freeze({ kind: "chain", inner: Object.freeze(s.inner.map(rewind)) });
      }
      const m = s as Member, p = probeInit[k++];
      return Object.freeze({ ...m, step: Math.max(0, m.step - 1), leaves: p.leaves });
    };
    const r = optimizer.update({ probe: zeros([1], { device: "cpu" }) }, rewind(state) as any, probe);
    expected = membersOf(r.state)!;
  }
  mine.forEach((m, i) => {
    const e = expected[i].hparams;
    for (const k of new Set([...Object.keys(m.hparams), ...Object.keys(e)])) {
      if (!Object.is(m.hparams[k], e[k])) {
        throw new Error(
          `${who}: the checkpoint's optimizer (${m.kind}) was made with ${k} ${fmtValue(m.hparams[k])}, ` +
            `this optimizer has ${k} ${fmtValue(e[k])} (at the checkpoint's step ${m.step})`,
        );
      }
    }
  });
}
