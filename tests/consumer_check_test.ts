/**
 * The library type-checks in a consumer's project with Deno's default compiler options: a fresh
 * project (a deno.json with only "imports" for `@nvrm/core`, `@nvrm/core/optim` and
 * `@nvrm/core/data`, pointing at this checkout) runs `deno check` on the README's TypeScript blocks
 * and on every TypeScript block of the JSDoc of every module the three entry points reach, the
 * `ignore` ones included (they are type-checked, not run) but for the fragments listed in
 * `FRAGMENTS`.
 */
import assert from "node:assert/strict";
import { ENTRY_POINTS, needRun, writeConsumerConfig } from "./_examples.ts";

const root = new URL("..", import.meta.url);
const CODE = new Set(["ts", "typescript", "js", "javascript"]);
/**
 * `ts ignore` blocks that are fragments of a program, not programs, so not type-checked: the file
 * and the block's first line. Each must still be there (a stale entry fails the test).
 */
const FRAGMENTS = [
  {
    file: "src/train/loop.ts",
    firstLine: "const { value, grads } = valueAndGrad(loss)(optimizer.perturb(params, state), x, y);",
  },
];

/** A fenced code block: where it is, its language and its code. */
interface CodeBlock {
  file: string;
  line: number;
  lang: string;
  /** What follows the language on the fence line (`ignore`, …). */
  attrs: string;
  code: string;
}

/** The fenced blocks of Markdown text (`lineOf` maps a line of `text` to one of the file). */
function fencedBlocks(file: string, text: string, lineOf: (i: number) => number): CodeBlock[] {
  const blocks: CodeBlock[] = [];
  for (const m of text.matchAll(/^```([^\n]*)\n([\s\S]*?)^```/gm)) {
    const line = text.slice(0, m.index).split("\n").length;
    const [lang, ...attrs] = m[1].trim().split(/\s+/);
    blocks.push({ file, line: lineOf(line), lang, attrs: attrs.join(" "), code: m[2] });
  }
  return blocks;
}

/** The fenced blocks inside the JSDoc comments of a TypeScript source. */
export function jsdocBlocks(file: string, source: string): CodeBlock[] {
  const blocks: CodeBlock[] = [];
  for (const c of source.matchAll(/\/\*\*[\s\S]*?\*\//g)) {
    const startLine = source.slice(0, c.index).split("\n").length;
    const text = c[0].split("\n").map((l) => l.replace(/^\s*(\/\*\*|\*\/|\*(?: |$))/, "")).join("\n");
    blocks.push(...fencedBlocks(file, text, (i) => startLine + i - 1));
  }
  return blocks;
}

/** The repository's own modules that `entry` reaches (paths relative to the root). */
async function localModules(entry: string): Promise<string[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: root.pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as { modules: { specifier: string }[] };
  return info.modules.map((m) => m.specifier).filter((s) => s.startsWith(root.href) && /\.ts$/.test(s))
    .map((s) => s.slice(root.href.length));
}

/** `code` with its relative imports made absolute (they are relative to `file`). */
function absoluteImports(code: string, file: string): string {
  return code.replace(
    /(\bfrom\s*|\bimport\s*\(?\s*)(["'])(\.\.?\/[^"']+)\2/g,
    (_, pre, q, spec) => `${pre}${q}${new URL(spec, new URL(file, root)).href}${q}`,
  );
}

Deno.test("README and every JSDoc example of the entry points type-check with default compiler options", async () => {
  await needRun();
  const modules = new Set<string>();
  for (const entry of Object.values(ENTRY_POINTS)) for (const m of await localModules(entry)) modules.add(m);
  assert.ok(modules.size > 30, `expected the entry points to reach > 30 modules, got ${modules.size}`);

  const blocks: CodeBlock[] = [];
  const readme = Deno.readTextFileSync(new URL("README.md", root));
  blocks.push(...fencedBlocks("README.md", readme, (i) => i).filter((b) => CODE.has(b.lang)));
  assert.ok(blocks.length >= 1, "README.md: no ```ts block (the Usage snippet)");
  for (const m of [...modules].sort()) {
    const found = jsdocBlocks(m, Deno.readTextFileSync(new URL(m, root)));
    const unlabelled = found.filter((b) => b.lang === "");
    assert.deepEqual(
      unlabelled.map((b) => `${b.file}:${b.line}`),
      [],
      "JSDoc code blocks without a language",
    );
    blocks.push(...found.filter((b) => CODE.has(b.lang)));
  }
  for (const f of FRAGMENTS) {
    const at = blocks.findIndex((b) => b.file === f.file && b.code.split("\n")[0] === f.firstLine);
    assert.ok(at >= 0, `FRAGMENTS: no block of ${f.file} starts with ${f.firstLine}`);
    assert.equal(
      blocks[at].attrs,
      "ignore",
      `${f.file}:${blocks[at].line}: a fragment must be \`ts ignore\``,
    );
    blocks.splice(at, 1);
  }
  assert.ok(blocks.length > 40, `expected > 40 TypeScript blocks, found ${blocks.length}`);

  const dir = await Deno.makeTempDir({ prefix: "nvrm_consumer_" });
  try {
    await writeConsumerConfig(dir);
    const files = blocks.map((b) => {
      const name = `${b.file.replaceAll(/[/.]/g, "_")}_L${b.line}.${b.lang.startsWith("j") ? "js" : "ts"}`;
      Deno.writeTextFileSync(`${dir}/${name}`, `${absoluteImports(b.code, b.file)}\nexport {};\n`);
      return name;
    });
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["check", "--no-lock", "--quiet", ...files],
      cwd: dir,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    assert.equal(
      out.code,
      0,
      `deno check of ${files.length} blocks in a consumer project failed:\n${dec.decode(out.stdout)}${
        dec.decode(out.stderr)
      }`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
