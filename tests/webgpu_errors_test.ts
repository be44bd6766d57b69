/**
 * WebGPU bad input and failure modes: buffers beyond the device limit, mixing devices, released
 * tensors, device loss (an error, not a hang), and no adapter (a clear error for an explicit
 * request, a one-line notice and the CPU for "auto").
 */
import assert from "node:assert/strict";
import { getBackend, getDefaultDevice } from "../src/backend.ts";
import { tensor, zeros } from "../src/creation.ts";
import { add, exp, matmul } from "../src/ops/mod.ts";
import { createGpuContext, NoWebGPUError } from "../src/webgpu/device.ts";
import { WebGPUBackend } from "../src/webgpu/backend.ts";
import { initWebGPU, initWebGPUBackend, setDefaultDevice, toDevice } from "../src/webgpu/mod.ts";
import { webgpuSuite } from "./_webgpu.ts";

const { gpu, ignore } = await webgpuSuite("webgpu_errors_test", "webgpu errors");

/** Rejects when `p` takes longer than `ms`: a hang becomes a test failure. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let id: ReturnType<typeof setTimeout> | undefined;
  const timer = new Promise<never>((
    _,
    rej,
  ) => (id = setTimeout(() => rej(new Error(`${what}: hung for ${ms} ms`)), ms)));
  return Promise.race([p, timer]).finally(() => clearTimeout(id));
}

Deno.test(
  { name: "webgpu errors: a buffer beyond the device limit names the size and the limit", ignore },
  () => {
    const limit = gpu!.pool.maxBytes;
    const n = Math.floor(limit / 4) + 1;
    assert.throws(
      () => zeros([n], { device: "webgpu" }),
      (e: Error) =>
        e instanceof RangeError && e.message.includes(`${n * 4} bytes`) && e.message.includes(`${limit}`) &&
        /maxStorageBufferBindingSize|maxBufferSize/.test(e.message),
    );
    // an op whose output exceeds the limit (inputs are small)
    const m = Math.ceil(Math.sqrt(limit / 4 + 1));
    const a = zeros([m, 1], { device: "webgpu" }), b = zeros([1, m], { device: "webgpu" });
    assert.throws(
      () => matmul(a, b),
      (e: Error) =>
        /matmul/.test(e.message) && e.message.includes(`${m * m * 4} bytes`) &&
        e.message.includes(`${limit}`),
    );
  },
);

Deno.test({ name: "webgpu errors: mixing devices in one op names both devices", ignore }, () => {
  const c = tensor([1, 2, 3]);
  const g = tensor([1, 2, 3], undefined, { device: "webgpu" });
  assert.throws(() => add(c, g), (e: Error) => /cpu/.test(e.message) && /webgpu/.test(e.message));
  // the backend checks too, naming the argument and its device
  assert.throws(
    () => gpu!.binary("add", g, c, [3]),
    (e: Error) =>
      /cannot mix devices/.test(e.message) && /b is on cpu/.test(e.message) && /webgpu/.test(e.message),
  );
  assert.throws(() => getBackend("webgpu").fromArray(new Float64Array(2), [2], "float64"), /float64/);
  assert.throws(() => tensor([1], undefined, { device: "webgpu", dtype: "float64" }), /float64/);
});

Deno.test({ name: "webgpu errors: toDevice round trip and argument checks", ignore }, async () => {
  const c = tensor([[1, 2], [3, 4]]);
  const moved = await toDevice({ a: c, list: [c] }, "webgpu");
  assert.equal(moved.a.device, "webgpu");
  const back = await toDevice(moved, "cpu");
  assert.deepEqual(Array.from(back.list[0].dataSync()), [1, 2, 3, 4]);
  assert.equal(await toDevice(c, "cpu"), c);
  await assert.rejects(() => toDevice(c, "tpu" as "cpu"), /device must be "cpu" or "webgpu", got "tpu"/);
  await assert.rejects(() => setDefaultDevice("gpu" as "cpu"), /got "gpu"/);
});

Deno.test({ name: "webgpu errors: a lost device gives errors, not hangs", ignore }, async () => {
  const ctx = await createGpuContext();
  const b = new WebGPUBackend(ctx);
  const t = b.fromArray(Float32Array.of(1, 2, 3), [3], "float32");
  const y = b.unary("exp", t);
  const pending = b.read(y); // in flight when the device goes away
  ctx.device.destroy();
  const outcome = await within(
    pending.then(() => "resolved", (e: Error) => e.message),
    5000,
    "read during loss",
  );
  assert.ok(outcome === "resolved" || /lost|destroyed|device/i.test(outcome), outcome);
  await within(ctx.lost, 5000, "device.lost");
  assert.throws(() => b.unary("exp", t), /WebGPU device was lost/);
  await assert.rejects(() => within(b.read(t), 5000, "read after loss"), /WebGPU device was lost/);
  // tensors of another device are refused by name
  assert.throws(() => gpu!.unary("exp", t), /earlier WebGPU device/);
});

Deno.test({
  name: "webgpu errors: no adapter: explicit requests fail clearly, auto falls back to the CPU",
  ignore,
}, async () => {
  const gpuApi = navigator.gpu as unknown as { requestAdapter: (o?: unknown) => Promise<unknown> };
  const original = gpuApi.requestAdapter;
  const backend = await initWebGPUBackend();
  backend.ctx.device.destroy(); // lose the current device so that the next init asks for an adapter
  await within(backend.ctx.lost, 5000, "device.lost");
  gpuApi.requestAdapter = () => Promise.resolve(null);
  const warnings: string[] = [];
  const warn = console.warn;
  console.warn = (...args: unknown[]) => warnings.push(args.join(" "));
  try {
    await assert.rejects(
      () => initWebGPU(),
      (e: Error) => e instanceof NoWebGPUError && /requestAdapter\(\) returned null/.test(e.message),
    );
    await assert.rejects(
      () => setDefaultDevice("webgpu"),
      (e: Error) => /setDefaultDevice\("webgpu"\)/.test(e.message),
    );
    assert.equal(await setDefaultDevice("auto"), "cpu");
    assert.equal(getDefaultDevice(), "cpu");
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /WebGPU unavailable.*using the CPU/);
    assert.ok(!warnings[0].includes("\n"), "one line");
  } finally {
    console.warn = warn;
    gpuApi.requestAdapter = original;
  }
  // recovery: a new device after the loss
  const fresh = await initWebGPUBackend();
  assert.notEqual(fresh, backend);
  assert.equal(await setDefaultDevice("auto"), "webgpu");
  const x = tensor([0, 1]);
  assert.equal(x.device, "webgpu");
  const e = await exp(x).data();
  assert.equal(e[0], 1);
  assert.ok(Math.abs(e[1] - Math.E) < 1e-6, `exp(1) = ${e[1]}`);
  await setDefaultDevice("cpu");
});
