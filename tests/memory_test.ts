/**
 * Memory: valueAndGrad releases everything it created once it returns, so a training loop stays
 * flat. Needs `--v8-flags=--expose-gc` (the `deno task test` command passes it); without it the
 * heap tests are skipped locally and fail under CI=true.
 */
import assert from "node:assert/strict";
import {
  add,
  crossEntropy,
  matmul,
  mul,
  popTensorObserver,
  pushTensorObserver,
  randn,
  relu,
  sub,
  type Tensor,
  treeLeaves,
  valueAndGrad,
  zeros,
  zipTrees,
} from "../mod.ts";
import { activeTape, type Tape } from "../src/tape.ts";

const gc = (globalThis as { gc?: () => void }).gc;
const hasGc = typeof gc === "function";

function envCI(): boolean {
  try {
    return Deno.env.get("CI") === "true";
  } catch {
    return false; // no --allow-env: not CI as far as we can tell
  }
}

Deno.test("memory: gc is exposed (required under CI, where the memory tests must run)", () => {
  if (envCI()) {
    assert.ok(
      hasGc,
      "globalThis.gc is missing: run deno test with --v8-flags=--expose-gc (deno task test does)",
    );
  } else if (!hasGc) console.warn("memory tests skipped: run with --v8-flags=--expose-gc");
});

type Mlp = { w1: Tensor; b1: Tensor; w2: Tensor; b2: Tensor };

function initMlp(seed: number, nIn = 64, nHidden = 32, nOut = 10): Mlp {
  return {
    w1: randn([nIn, nHidden], { seed, stream: "w1", std: Math.sqrt(2 / nIn) }),
    b1: zeros([nHidden]),
    w2: randn([nHidden, nOut], { seed, stream: "w2", std: Math.sqrt(1 / nHidden) }),
    b2: zeros([nOut]),
  };
}

const mlpLoss = (p: Mlp, x: Tensor, y: Int32Array) =>
  crossEntropy(add(matmul(relu(add(matmul(x, p.w1), p.b1)), p.w2), p.b2), y);

/** Fully collects garbage: leaves the current job (so WeakRef targets may die), then gc twice. */
async function collect(): Promise<void> {
  await new Promise((r) => setTimeout(r, 0));
  gc!();
  await new Promise((r) => setTimeout(r, 0));
  gc!();
}

/**
 * Runs one valueAndGrad call of the MLP loss and returns the tensors created during it that are
 * still reachable after garbage collection, apart from the value and the gradients. `stash`
 * receives the loss's logits (to check that the probe does see a tensor the caller keeps).
 */
async function survivors(
  stash?: (t: Tensor) => void,
): Promise<{ alive: Tensor[]; created: number; tape: boolean }> {
  const params = initMlp(1);
  const x = randn([16, 64], { seed: 2 });
  const y = Int32Array.from({ length: 16 }, (_, i) => i % 10);
  // Observe every tensor created during the call (WeakRefs only: observing must not retain them).
  const refs: WeakRef<Tensor>[] = [];
  let tapeRef: WeakRef<Tape> | null = null;
  let entries = 0;
  pushTensorObserver({ created: (t) => refs.push(new WeakRef(t)) });
  let out: { value: Tensor; grads: Mlp };
  try {
    out = valueAndGrad((p: Mlp, xb: Tensor, yb: Int32Array) => {
      const tape = activeTape()!;
      tapeRef = new WeakRef(tape);
      const logits = add(matmul(relu(add(matmul(xb, p.w1), p.b1)), p.w2), p.b2);
      stash?.(logits);
      const l = crossEntropy(logits, yb);
      entries = tape.entries.length;
      return l;
    })(params, x, y);
  } finally {
    popTensorObserver();
  }
  assert.equal(activeTape(), null, "no tape active after the call");
  assert.equal(entries, 6, "matmul, add, relu, matmul, add, crossEntropy");
  const keep = new Set<number>([out.value.id, ...treeLeaves(out.grads).map((l) => l.tensor.id)]);
  await collect();
  const alive = refs.map((r) => r.deref()).filter((t): t is Tensor => t !== undefined && !keep.has(t.id));
  // What the call returned is still intact.
  assert.ok(Number.isFinite(out.value.item()));
  assert.deepEqual(out.grads.w1.shape, [64, 32]);
  return { alive, created: refs.length, tape: tapeRef!.deref() !== undefined };
}

Deno.test({
  name: "memory: nothing a valueAndGrad call created survives it except the value and the grads",
  ignore: !hasGc,
  async fn() {
    const { alive, created, tape } = await survivors();
    assert.ok(created > 6, `the call created tensors (${created})`);
    assert.deepEqual(
      alive.map((t) => t.toString()),
      [],
      `${alive.length} of ${created} tensors created during the call are still reachable`,
    );
    assert.equal(tape, false, "the tape itself was collected");
    // Control: a tensor the caller keeps a reference to is seen as alive (the probe works).
    const kept: Tensor[] = [];
    const ctl = await survivors((t) => kept.push(t));
    assert.deepEqual(ctl.alive.map((t) => t.id), kept.map((t) => t.id));
  },
});

Deno.test({
  name: "memory: 2,000 valueAndGrad + SGD steps of a 64-32-10 MLP keep the heap flat",
  ignore: !hasGc,
  async fn() {
    let params = initMlp(3);
    const batch = 32;
    const x = randn([batch, 64], { seed: 4 });
    const y = Int32Array.from({ length: batch }, (_, i) => (i * 7) % 10);
    const step = valueAndGrad(mlpLoss);
    const lr = 0.05;
    let firstLoss = NaN, lastLoss = NaN;
    let at200: Deno.MemoryUsage | null = null;
    for (let i = 1; i <= 2000; i++) {
      const { value, grads } = step(params, x, y);
      params = zipTrees<Mlp>([params, grads], ([p, g]) => sub(p, mul(g, lr)), "sgd");
      if (i === 1) firstLoss = value.item();
      if (i === 2000) lastLoss = value.item();
      if (i === 200) {
        await collect();
        at200 = Deno.memoryUsage();
      }
    }
    await collect();
    const at2000 = Deno.memoryUsage();
    const mb = (b: number) => (b / 2 ** 20).toFixed(2);
    const dHeap = at2000.heapUsed - at200!.heapUsed;
    const dExt = at2000.external - at200!.external;
    console.log(
      `heapUsed ${mb(at200!.heapUsed)} -> ${mb(at2000.heapUsed)} MB (Δ ${mb(dHeap)}), external ${
        mb(at200!.external)
      } -> ${mb(at2000.external)} MB (Δ ${mb(dExt)}); loss ${firstLoss.toFixed(4)} -> ${lastLoss.toFixed(4)}`,
    );
    assert.ok(dHeap < 5 * 2 ** 20, `heapUsed grew by ${mb(dHeap)} MB between steps 200 and 2000`);
    assert.ok(dExt < 5 * 2 ** 20, `external memory grew by ${mb(dExt)} MB between steps 200 and 2000`);
    assert.ok(lastLoss < firstLoss * 0.5, `training made progress (${firstLoss} -> ${lastLoss})`);
    assert.equal(activeTape(), null);
  },
});
