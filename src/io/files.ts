/**
 * safetensors files on disk (Deno only: `Deno.open`, `Deno.rename`, `Deno.readFile`). Writes are
 * atomic: the bytes go to a temporary file in the target folder, are flushed to disk, and the file
 * is renamed over the target, so a reader (or a run killed mid-write) sees the old file or the new
 * one, never a partial file.
 *
 * @module
 */
import type { Tensor } from "../tensor.ts";
import type { TensorTree } from "../tree.ts";
import { type DecodedSafetensors, decodeSafetensors, encodeSafetensorsAsync } from "./safetensors.ts";

/** A path or file URL as shown in errors. */
function show(path: string | URL): string {
  return path instanceof URL
    ? (path.protocol === "file:" ? decodeURIComponent(path.pathname) : path.href)
    : path;
}

function checkPath(who: string, path: unknown): asserts path is string | URL {
  if (!(path instanceof URL) && (typeof path !== "string" || path === "")) {
    throw new TypeError(`${who}: path must be a file path or URL, got ${JSON.stringify(path)}`);
  }
}

/** An error from the file system, re-thrown naming `who`, the file and (for permissions) the flag. */
function fileError(who: string, e: unknown, path: string, flag: string): Error {
  if (e instanceof Deno.errors.NotFound) {
    return new Error(`${who}: ${path} not found (${(e as Error).message})`, { cause: e });
  }
  if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
    return new Error(`${who}: no permission for ${path}: run with ${flag} (${(e as Error).message})`, {
      cause: e,
    });
  }
  return new Error(`${who}: ${path}: ${(e as Error)?.message ?? String(e)}`, { cause: e });
}

/**
 * Writes `text` to `path` atomically and synchronously, as {@linkcode writeFileAtomic} does: a
 * temporary file in the same folder, flushed to disk, then renamed over `path`; on failure the
 * temporary file is removed and the error names `who` and the path. Internal (checkpoint pointers,
 * the example scripts' result files).
 */
export function writeTextFileAtomicSync(path: string, text: string, who = "writeTextFileAtomicSync"): void {
  checkPath(who, path);
  const tmp = `${path}.tmp-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
  let file: Deno.FsFile | undefined;
  try {
    file = Deno.openSync(tmp, { write: true, createNew: true });
    const bytes = new TextEncoder().encode(text);
    let off = 0;
    while (off < bytes.length) off += file.writeSync(bytes.subarray(off));
    file.syncDataSync();
    file.close();
    file = undefined;
    Deno.renameSync(tmp, path);
  } catch (e) {
    try {
      file?.close();
    } catch { /* already closed */ }
    try {
      Deno.removeSync(tmp);
    } catch { /* never created, or already renamed */ }
    throw fileError(who, e, show(path), "--allow-write");
  }
}

/**
 * Writes `bytes` to `path` atomically: to `<path>.tmp-<random>` in the same folder, flushed to disk
 * (`fsync`), then renamed over `path`. On failure the temporary file is removed and the error names
 * the file. Shared by the checkpoint writers.
 */
export async function writeFileAtomic(
  path: string | URL,
  bytes: Uint8Array,
  who = "writeFileAtomic",
): Promise<void> {
  checkPath(who, path);
  const suffix = `.tmp-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
  const tmp = path instanceof URL ? new URL(path.href + suffix) : path + suffix;
  let file: Deno.FsFile | undefined;
  try {
    file = await Deno.open(tmp, { write: true, createNew: true });
    let off = 0;
    while (off < bytes.length) off += await file.write(bytes.subarray(off));
    await file.syncData();
    file.close();
    file = undefined;
    await Deno.rename(tmp, path);
  } catch (e) {
    try {
      file?.close();
    } catch { /* already closed */ }
    try {
      await Deno.remove(tmp);
    } catch { /* never created, or already renamed */ }
    throw fileError(who, e, show(path), "--allow-write");
  }
}

/**
 * Saves a tree of tensors (on any device: each is read back first) as a safetensors file, with
 * optional string metadata, atomically (a temporary file in the target folder, flushed, then
 * renamed: never a partial file at `path`). Names, dtypes and byte layout: see
 * {@linkcode encodeSafetensors}; Python reads the file with `safetensors.torch.load_file(path)`.
 * Needs `--allow-write` (and `--allow-read` to load it back).
 *
 * @example
 * ```ts ignore
 * import { loadSafetensors, mlp, saveSafetensors } from "@nvrm/core";
 *
 * const net = mlp([784, 256, 10], { seed: 0 });
 * await saveSafetensors("mlp.safetensors", net.params, { epoch: "12" });
 * const { tree: params, metadata } = await loadSafetensors("mlp.safetensors", net.params);
 * ```
 */
export async function saveSafetensors(
  path: string | URL,
  tree: TensorTree,
  metadata?: Record<string, string>,
): Promise<void> {
  const who = "saveSafetensors";
  checkPath(who, path);
  const bytes = await encodeSafetensorsAsync(tree, metadata, `${who}: ${show(path)}`);
  await writeFileAtomic(path, bytes, who);
}

/**
 * Loads a safetensors file (written here, by Python's `safetensors`, or any conforming writer).
 * With `template` the tree comes back in the template's structure, each tensor on its template
 * leaf's device, after checking that the file holds exactly the template's leaves with the same
 * shapes and dtypes; without one, a flat object keyed by tensor name, on the CPU. The file is
 * validated before anything is allocated and every error names it (see
 * {@linkcode decodeSafetensors} for the rules and dtypes). Needs `--allow-read`.
 */
export async function loadSafetensors<T extends TensorTree = Record<string, Tensor>>(
  path: string | URL,
  template?: T,
): Promise<DecodedSafetensors<T>> {
  const who = "loadSafetensors";
  checkPath(who, path);
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw fileError(who, e, show(path), "--allow-read");
  }
  return decodeSafetensors<T>(bytes, { template, name: show(path) });
}
