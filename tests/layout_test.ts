// The layout rules of docs/architecture.md: device code under kernels/ imports nothing from src/
// but the shared types module, and no source file grows past ~500 lines without saying why.
import assert from "node:assert/strict";

const root = new URL("../", import.meta.url);

async function* tsFiles(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(new URL(dir, root))) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) yield* tsFiles(path);
    else if (e.name.endsWith(".ts")) yield path;
  }
}

Deno.test("layout: kernels/ imports from src/ only src/types.ts", async () => {
  const bad: string[] = [];
  for await (const f of tsFiles("kernels")) {
    const text = await Deno.readTextFile(new URL(f, root));
    for (const m of text.matchAll(/(?:from|import)\s*["']([^"']+)["']/g)) {
      if (m[1].includes("/src/") && !m[1].endsWith("/src/types.ts")) bad.push(`${f}: ${m[1]}`);
    }
  }
  assert.deepEqual(bad, []);
});

Deno.test("layout: files under src/ and kernels/ above 500 lines state why at their top", async () => {
  const bad: string[] = [];
  for (const dir of ["src", "kernels"]) {
    for await (const f of tsFiles(dir)) {
      const text = await Deno.readTextFile(new URL(f, root));
      const lines = text.split("\n").length;
      const head = text.slice(0, text.indexOf("*/") + 2);
      if (lines > 520 && !/one file|one module|single file|stays? (?:in )?one/i.test(head)) {
        bad.push(`${f} (${lines} lines)`);
      }
    }
  }
  assert.deepEqual(bad, []);
});
