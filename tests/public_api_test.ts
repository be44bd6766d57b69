// The public API is exactly the documented list in docs/api.md: adding or removing an export of an
// entry point without updating that list (tools/api_list.ts --write) fails here.
import assert from "node:assert/strict";
import { entryPoints, exportedSymbols, parseApiMarkdown } from "../tools/api_list.ts";

const documented = parseApiMarkdown(await Deno.readTextFile(new URL("../docs/api.md", import.meta.url)));

for (const [entry, path] of Object.entries(await entryPoints())) {
  const name = entry === "." ? "@nvrm/core" : `@nvrm/core${entry.slice(1)}`;
  Deno.test(`public API: ${name} exports exactly the symbols listed in docs/api.md`, async () => {
    const actual = (await exportedSymbols(path)).map((s) => s.name);
    const listed = documented[name];
    assert.ok(listed, `docs/api.md has no section for ${name}`);
    const added = actual.filter((s) => !listed.includes(s));
    const removed = listed.filter((s) => !actual.includes(s));
    assert.deepEqual(
      { added, removed },
      { added: [], removed: [] },
      `${name} (${path}) differs from docs/api.md; if intended, run ` +
        "`deno run --allow-read --allow-write --allow-run tools/api_list.ts --write`",
    );
  });
}

Deno.test("public API: no symbol is exported by two entry points", async () => {
  const seen = new Map<string, string>();
  const dup: string[] = [];
  for (const [entry, path] of Object.entries(await entryPoints())) {
    for (const s of await exportedSymbols(path)) {
      if (seen.has(s.name)) dup.push(`${s.name} (${seen.get(s.name)} and ${entry})`);
      else seen.set(s.name, entry);
    }
  }
  assert.deepEqual(dup, []);
});

Deno.test("public API: every exported symbol has documentation", async () => {
  const missing: string[] = [];
  for (const [entry, path] of Object.entries(await entryPoints())) {
    for (const s of await exportedSymbols(path)) if (!s.summary) missing.push(`${entry} ${s.name}`);
  }
  assert.deepEqual(missing, []);
});
