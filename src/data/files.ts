/**
 * File helpers shared by the data loaders (Deno only: they use `Deno.readFile`/`Deno.stat`).
 *
 * @module
 */

/** A folder path or URL as a `URL` ending in `/`; relative paths are taken from the working directory. */
export function toDirUrl(dir: string | URL, who: string): URL {
  if (dir instanceof URL) return dir.href.endsWith("/") ? dir : new URL(dir.href + "/");
  if (typeof dir !== "string" || dir === "") {
    throw new TypeError(`${who}: dir must be a folder path or URL, got ${JSON.stringify(dir)}`);
  }
  const withSlash = dir.endsWith("/") ? dir : dir + "/";
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(withSlash)) return new URL(withSlash);
  const abs = withSlash.startsWith("/") ? withSlash : `${Deno.cwd()}/${withSlash}`;
  return new URL(`file://${abs.split("/").map(encodeURIComponent).join("/")}`);
}

/** A file URL shown as a path; other URLs as they are. */
export function displayPath(url: URL): string {
  return url.protocol === "file:" ? decodeURIComponent(url.pathname) : url.href;
}

/**
 * Reads a whole file; a missing file or a missing read permission becomes an error that names the
 * file, prefixed by `who`, with `missingHint` saying what was expected there.
 */
export async function readBinary(url: URL, who: string, missingHint: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(url);
  } catch (e) {
    throw fileError(e, url, who, missingHint);
  }
}

/**
 * True when a file exists at `url`; false when nothing is there (or a parent is not a folder).
 * A folder where the file should be, and permission problems, are reported, not hidden.
 */
export async function fileExists(url: URL, who: string): Promise<boolean> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(url);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return false;
    throw fileError(e, url, who, "");
  }
  if (info.isDirectory) throw new Error(`${who}: ${displayPath(url)} is a folder, not a file`);
  return true;
}

/**
 * Throws unless `url` names a folder (or, with `missingOk`, nothing at all: the caller then reports
 * the files it misses): the error names the path, what is there instead, and `what` (what the folder
 * should hold).
 */
export async function checkDir(url: URL, who: string, what: string, missingOk = false): Promise<void> {
  // Without the trailing slash, so that a file there is reported as such (not as NotADirectory).
  const bare = url.pathname.length > 1 && url.href.endsWith("/") ? new URL(url.href.slice(0, -1)) : url;
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(bare);
  } catch (e) {
    if (missingOk && e instanceof Deno.errors.NotFound) return;
    throw fileError(e, url, who, `expected a folder holding ${what}`);
  }
  if (!info.isDirectory) {
    throw new Error(`${who}: ${displayPath(bare)} is a file, expected a folder holding ${what}`);
  }
}

/**
 * The error of a failed read or stat of `url`, naming the path, prefixed by `who`: not found (with
 * `missingHint`), a folder where a file was expected or the reverse, a missing read permission, or
 * any other failure with the system's message.
 */
function fileError(e: unknown, url: URL, who: string, missingHint: string): unknown {
  const path = displayPath(url);
  const hint = missingHint ? `; ${missingHint}` : "";
  if (e instanceof Deno.errors.NotFound) return new Error(`${who}: ${path} not found${hint}`, { cause: e });
  if (e instanceof Deno.errors.IsADirectory) {
    return new Error(`${who}: ${path} is a folder, not a file${hint}`, { cause: e });
  }
  if (e instanceof Deno.errors.NotADirectory) {
    return new Error(`${who}: ${path}: a part of this path is a file, not a folder${hint}`, { cause: e });
  }
  if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
    return new Error(`${who}: cannot read ${path}: run with --allow-read (${(e as Error).message})`, {
      cause: e,
    });
  }
  return new Error(`${who}: cannot read ${path}: ${(e as Error)?.message ?? String(e)}`, { cause: e });
}
