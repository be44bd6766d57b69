/**
 * Prints the `XDG_RUNTIME_DIR` for `deno task test` and `deno task bench`: the caller's when it is
 * set to an absolute path, otherwise a private directory (mode 700) under the temp directory,
 * created when missing. Without one, the Wayland client of the Vulkan stack behind WebGPU on Linux
 * prints `error: XDG_RUNTIME_DIR is invalid or not set in the environment.` in every process that
 * asks for an adapter, on runs that pass. Elsewhere (macOS, Windows) it prints the variable as is.
 *
 *   deno run --allow-env --allow-read --allow-write --allow-sys=uid tests/_runtime_dir.ts
 *
 * @module
 */
import { tmpdir } from "node:os";

/** The runtime directory to use: `current` when absolute, else a private one of this user's. */
export function runtimeDir(current: string | undefined): string {
  if (Deno.build.os === "windows" || Deno.build.os === "darwin") return current ?? "";
  if (current?.startsWith("/")) return current;
  const dir = `${tmpdir()}/nvrm-xdg-${Deno.uid()}`;
  Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const info = Deno.lstatSync(dir);
  // A directory of that name that is not ours (or not a directory): use a fresh one instead.
  if (!info.isDirectory || info.uid !== Deno.uid() || (info.mode! & 0o077) !== 0) {
    return Deno.makeTempDirSync({ prefix: "nvrm-xdg-" });
  }
  return dir;
}

if (import.meta.main) console.log(runtimeDir(Deno.env.get("XDG_RUNTIME_DIR")));
