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

/** True when the file exists (permission problems are reported, not hidden). */
export async function fileExists(url: URL, who: string): Promise<boolean> {
  try {
    await Deno.stat(url);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw fileError(e, url, who, "");
  }
}

function fileError(e: unknown, url: URL, who: string, missingHint: string): unknown {
  if (e instanceof Deno.errors.NotFound) {
    return new Error(`${who}: ${displayPath(url)} not found; ${missingHint}`);
  }
  if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
    return new Error(
      `${who}: cannot read ${displayPath(url)}: run with --allow-read (${(e as Error).message})`,
    );
  }
  return e;
}
