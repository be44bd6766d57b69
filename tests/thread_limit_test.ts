// The thread limit of kernels/wasm/workers.ts (setThreadLimit, the environment variable
// NVRM_THREADS): validated; the GEMM, convolution and noise pools follow it, past the hardware
// threads too (16 participants on this machine: the same bits as one), and go back with "auto".
import assert from "node:assert/strict";
import { getThreadLimit, MAX_PARTICIPANTS, setThreadLimit, threadSupport } from "../kernels/wasm/workers.ts";
import { gemm, gemmCapabilities, gemmThreadStats, setGemmThreads } from "../kernels/wasm/gemm.ts";
import { convThreadParticipants } from "../kernels/wasm/conv_wasm.ts";
import { getNoiseThreads } from "../src/random/noise.ts";
import { hasWasmSimd } from "../kernels/wasm/gemm_wasm.ts";
import { until } from "./_until.ts";

const support = threadSupport();
const POOLS_OK = hasWasmSimd && support.ok && typeof SharedArrayBuffer === "function";

function filled(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) a[i] = ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff) - 0.5;
  return a;
}

Deno.test("setThreadLimit: validates its argument and names it", () => {
  assert.equal(getThreadLimit(), "auto");
  for (const bad of [0, -1, 2.5, NaN, MAX_PARTICIPANTS + 1, "4", "all", undefined]) {
    assert.throws(
      () => setThreadLimit(bad as number),
      new RegExp(
        `setThreadLimit: participants must be "auto" or an integer in \\[1, ${MAX_PARTICIPANTS}\\] .*got `,
      ),
      String(bad),
    );
  }
  assert.equal(getThreadLimit(), "auto", "a refused value changed the limit");
});

Deno.test("setThreadLimit: threadSupport and the GEMM, convolution and noise pools follow it", () => {
  const hc = Math.min(MAX_PARTICIPANTS, navigator.hardwareConcurrency ?? 1);
  try {
    assert.equal(setThreadLimit(1), "auto");
    assert.equal(threadSupport().ok, false);
    assert.match(threadSupport().reason!, /thread limit is 1/);
    assert.equal(gemmCapabilities().threads, 1);
    assert.equal(convThreadParticipants(), 1);
    assert.equal(getNoiseThreads(), 1);
    if (!POOLS_OK) return;
    setThreadLimit(5);
    assert.equal(threadSupport().participants, 5);
    assert.equal(gemmCapabilities().threads, 5);
    assert.equal(convThreadParticipants(), 5);
    assert.equal(getNoiseThreads(), 5);
    setGemmThreads(5);
    assert.equal(setThreadLimit(MAX_PARTICIPANTS), 5);
    assert.equal(gemmCapabilities().threads, MAX_PARTICIPANTS, "past the hardware threads too");
    assert.equal(convThreadParticipants(), MAX_PARTICIPANTS);
    assert.equal(getNoiseThreads(), 8, "noise: at most 8 in auto mode");
    setThreadLimit(3);
    assert.equal(setGemmThreads("auto"), "auto", "a fixed count past the new limit fell back to auto");
  } finally {
    setThreadLimit("auto");
  }
  assert.equal(threadSupport().participants, POOLS_OK ? hc : 1);
  assert.equal(gemmCapabilities().threads, POOLS_OK ? hc : 1);
});

Deno.test({
  name: "setThreadLimit(16): 15 GEMM workers start on this machine and give the bits of one thread",
  ignore: !POOLS_OK,
  fn: async () => {
    const M = 200, N = 130, K = 300, a = filled(M * K, 1), b = filled(K * N, 2);
    const product = () => {
      const c = new Float32Array(M * N);
      gemm({ M, N, K, a, b, c });
      return new Uint32Array(c.buffer);
    };
    try {
      setThreadLimit(1);
      const one = product();
      setThreadLimit(16);
      setGemmThreads(16);
      await until(
        () => assert.deepEqual(product(), one),
        () => gemmThreadStats().workerChunks > 0,
        "workers compute",
      );
      assert.equal(gemmThreadStats().workers, 15);
      for (let i = 0; i < 20; i++) assert.deepEqual(product(), one);
      setThreadLimit(2);
      assert.equal(gemmThreadStats().workers, 0, "the 15 workers were stopped");
      assert.deepEqual(product(), one);
    } finally {
      setGemmThreads("auto");
      setThreadLimit("auto");
    }
  },
});

/** Runs the script `file` in a new Deno with `env`, without prompts; its stdout, stderr and exit code. */
async function denoRun(file: string, env: Record<string, string>, allowEnv: boolean) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", "--allow-read", ...(allowEnv ? ["--allow-env"] : []), file],
    env: { ...env, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b).trim();
  return { stdout: text(out.stdout), stderr: text(out.stderr), code: out.code };
}

Deno.test("NVRM_THREADS: read once at start where env access is granted, validated", async () => {
  const url = new URL("../kernels/wasm/workers.ts", import.meta.url).href;
  const file = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(
      file,
      `import { getThreadLimit, threadSupport } from "${url}";
console.log(getThreadLimit(), threadSupport().participants);\n`,
    );
    const three = await denoRun(file, { NVRM_THREADS: "3" }, true);
    assert.equal(three.stdout, support.ok ? "3 3" : "3 1", three.stderr);
    const ignored = await denoRun(file, { NVRM_THREADS: "3" }, false); // no env access: no prompt, "auto"
    assert.match(ignored.stdout, /^auto \d+$/, ignored.stderr);
    const bad = await denoRun(file, { NVRM_THREADS: "17" }, true);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /NVRM_THREADS must be "auto" or an integer in \[1, 16\].*got "17"/);
  } finally {
    await Deno.remove(file);
  }
});
