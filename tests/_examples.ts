/**
 * Subprocess helpers of the tests: runs an example script (or a `deno eval` snippet) as a
 * subprocess, checks the permissions that needs, and asserts the form of the examples' usage errors.
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
