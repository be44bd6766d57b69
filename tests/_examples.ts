/**
 * Subprocess helpers of the tests: runs an example script (or a `deno eval` snippet) as a
 * subprocess, checks the permissions that needs, asserts the form of the examples' usage errors,
 * and runs a command at a pseudo-terminal, as a person would type it.
 *
 * @module
 */
import assert from "node:assert/strict";

/** What a script run printed and its exit code. */
export interface ScriptRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** A runner for `examples/<name>.ts` (`deno run --no-check --allow-read --allow-write`). */
export function scriptRunner(name: string): (args: string[]) => Promise<ScriptRun> {
  const script = new URL(`../examples/${name}.ts`, import.meta.url).pathname;
  return async (args) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-check", "--allow-read", "--allow-write", script, ...args],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  };
}

/**
 * Runs `code` with `deno eval` in a subprocess, killed after `timeoutMs` (a script that does not
 * exit by itself then fails with a non-zero code instead of hanging the suite).
 */
export async function denoEval(code: string, timeoutMs = 30_000): Promise<ScriptRun> {
  const child = new Deno.Command(Deno.execPath(), { args: ["eval", code], stdout: "piped", stderr: "piped" })
    .spawn();
  const timer = setTimeout(() => child.kill(), timeoutMs);
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Throws unless the tests run with --allow-run (they run the scripts as subprocesses). */
export async function needRun(): Promise<void> {
  if ((await Deno.permissions.query({ name: "run" })).state !== "granted") {
    throw new Error("this test runs the script as a subprocess: run the tests with --allow-run");
  }
}

/** Whether `path` exists. */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Asserts that each run failed as a usage error: exit code 2, nothing on stdout, and exactly one
 * stderr line that matches `prefix` (the script's name and form) and the case's own pattern.
 */
export function assertUsageErrors(
  runs: readonly ScriptRun[],
  cases: readonly (readonly [readonly string[], RegExp])[],
  prefix: RegExp,
): void {
  assert.equal(runs.length, cases.length, "one run per case");
  runs.forEach((r, i) => {
    const what = JSON.stringify(cases[i][0]);
    assert.equal(r.code, 2, `${what}: exit code ${r.code}, stderr ${r.stderr}`);
    const lines = r.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, `${what}: expected one line, got ${JSON.stringify(r.stderr)}`);
    assert.match(lines[0], prefix, what);
    assert.match(lines[0], cases[i][1], what);
    assert.equal(r.stdout, "", what);
  });
}

/** `s` quoted for a POSIX shell. */
export function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** What a command printed at a pseudo-terminal (stdout and stderr together, ANSI codes removed). */
export interface TerminalRun {
  code: number;
  output: string;
}

/**
 * Runs the shell command `command` in the repository root at a pseudo-terminal, as a person at a
 * terminal would (util-linux `script`), with stdin from /dev/null, killed after `timeoutSeconds`
 * (exit code 124 or 137 then). A permission prompt therefore shows in `output` and makes the run
 * time out instead of hanging the suite. Linux only.
 */
export async function runAtTerminal(command: string, timeoutSeconds: number): Promise<TerminalRun> {
  if (!(await exists("/usr/bin/script")) && !(await exists("/bin/script"))) {
    throw new Error("runAtTerminal: util-linux `script` is missing: apt-get install -y bsdutils");
  }
  const out = await new Deno.Command("timeout", {
    args: ["-k", "5", String(timeoutSeconds), "script", "-qec", command, "/dev/null"],
    cwd: new URL("..", import.meta.url).pathname,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  // deno-lint-ignore no-control-regex -- ANSI escape sequences of the terminal output
  const plain = (dec.decode(out.stdout) + dec.decode(out.stderr)).replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "");
  return { code: out.code, output: plain.replaceAll("\r\n", "\n") };
}

/** The package's entry points by import name, as paths relative to the repository root. */
export const ENTRY_POINTS: Readonly<Record<string, string>> = {
  "@nvrm/core": "mod.ts",
  "@nvrm/core/optim": "src/optim/mod.ts",
  "@nvrm/core/data": "src/data/mod.ts",
};

/**
 * Writes `dir/deno.json` of a consumer's project: only "imports", mapping the entry points to this
 * checkout (so Deno's default compiler options apply).
 */
export async function writeConsumerConfig(dir: string): Promise<void> {
  const root = new URL("..", import.meta.url);
  const imports = Object.fromEntries(
    Object.entries(ENTRY_POINTS).map(([name, path]) => [name, new URL(path, root).pathname]),
  );
  await Deno.writeTextFile(`${dir}/deno.json`, JSON.stringify({ imports }, null, 2) + "\n");
}
