/**
 * What the worker pools over shared WebAssembly memory have in common (`gemm_threads.ts`
 * for the GEMM, `noise_threads.ts` for the noise): whether workers can be used here,
 * starting them, their bootstrap, waking some of them for a job, and stopping them. Each pool
 * keeps its own control words and scheduling; every worker sleeps on its own wake-up word, so a
 * job of k participants wakes workers 1 … k − 1 only (see `thread_choice.ts` for how k is chosen).
 *
 * Deno, Node and Bun get `node:worker_threads` workers that are `unref`-ed, so they never keep a
 * process alive; browsers get Web Workers (only where `Atomics.wait` is allowed on the calling
 * thread, i.e. inside a worker of a cross-origin-isolated page).
 *
 * @module
 */

/** Which worker API a pool uses. */
export type WorkerKind = "node" | "web";

/** Whether and how workers can be used here. */
export interface ThreadSupport {
  /** Workers usable. */
  ok: boolean;
  /** Participants: the calling thread plus workers (hardware threads, at most 16). */
  participants: number;
  /** The worker API used. */
  kind?: WorkerKind;
  /** Why workers are unavailable. */
  reason?: string;
}

/** A started worker, as far as the pools need it. */
export interface PoolWorker {
  /** Stops the worker. */
  terminate(): unknown;
}

type NodeWorkerCtor = new (
  src: string,
  opts: { eval: boolean; env: Record<string, string> },
) => PoolWorker & {
  postMessage(m: unknown): void;
  unref(): void;
};

function nodeWorkerCtor(): NodeWorkerCtor | undefined {
  try {
    const proc = (globalThis as { process?: { getBuiltinModule?: (n: string) => any } }).process;
    return proc?.getBuiltinModule?.("node:worker_threads")?.Worker;
  } catch {
    return undefined;
  }
}

function canBlock(): boolean {
  try {
    return Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0) === "not-equal";
  } catch {
    return false;
  }
}

/** Detects worker support; `prefer` picks Web Workers even where `node:worker_threads` exists. */
export function threadSupport(prefer?: WorkerKind): ThreadSupport {
  const hc = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency;
  const participants = Math.max(1, Math.min(16, Math.floor(hc ?? 1)));
  if (participants < 2) return { ok: false, participants: 1, reason: "a single hardware thread" };
  if (typeof SharedArrayBuffer !== "function") {
    return { ok: false, participants: 1, reason: "no SharedArrayBuffer" };
  }
  if (!canBlock()) {
    return { ok: false, participants: 1, reason: "Atomics.wait is not allowed on this thread" };
  }
  if (prefer !== "web" && nodeWorkerCtor()) return { ok: true, participants, kind: "node" };
  if (typeof Worker === "function") return { ok: true, participants, kind: "web" };
  return { ok: false, participants: 1, reason: "no Worker API" };
}

/**
 * A worker's whole source from `body` (plain JavaScript defining `const main = (data) => …`): adds
 * the bootstrap that hands `main` the first message, as CommonJS under `node:worker_threads` or as
 * a Web Worker module.
 */
export function workerSource(body: string): string {
  return `${body}
if (typeof require === "function") require("node:worker_threads").parentPort.once("message", main);
else self.onmessage = (e) => main(e.data);
`;
}

/**
 * Starts `n` workers running `source` (see {@linkcode workerSource}) and posts `message(id)` to
 * worker `id` (1 … n). `"node"`: unreferenced `node:worker_threads` workers (Web Workers where that
 * module is missing); `"web"`: module Web Workers from one blob URL.
 */
export function startWorkers(
  source: string,
  kind: WorkerKind,
  n: number,
  message: (id: number) => unknown,
): PoolWorker[] {
  const workers: PoolWorker[] = [];
  let url: string | undefined;
  for (let id = 1; id <= n; id++) {
    const msg = message(id);
    const Ctor = kind === "node" ? nodeWorkerCtor() : undefined;
    if (Ctor) {
      // `env: {}`: the default copies process.env, which asks Deno for env access (a prompt at a
      // terminal, a silent denial without one); the workers need no environment.
      const w = new Ctor(source, { eval: true, env: {} });
      w.unref();
      w.postMessage(msg);
      workers.push(w);
    } else {
      url ??= URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
      const w = new Worker(url, { type: "module" });
      w.postMessage(msg);
      workers.push(w);
    }
  }
  return workers;
}

/**
 * Wakes workers `1 … participants − 1` of a pool for a job: bumps and notifies each one's own
 * wake-up word `ctl[wake + id]`, so the workers past them stay asleep. A worker still claiming
 * chunks of the previous job may see the new one: each pool also publishes the job's participant
 * count before its end word, and a worker loads it after the end word and claims nothing unless
 * its id is below it.
 */
export function wakeWorkers(ctl: Int32Array, wake: number, participants: number): void {
  for (let id = 1; id < participants; id++) {
    Atomics.add(ctl, wake + id, 1);
    Atomics.notify(ctl, wake + id, 1);
  }
}

/**
 * Stops a pool's workers: sets the control word `stop` of `ctl`, bumps and notifies every worker's
 * wake-up word `ctl[wake + id]` (sleeping workers see the stop and return), then terminates them
 * and empties `workers`.
 */
export function stopWorkers(ctl: Int32Array, stop: number, wake: number, workers: PoolWorker[]): void {
  Atomics.store(ctl, stop, 1);
  for (let id = 1; id <= workers.length; id++) {
    Atomics.add(ctl, wake + id, 1);
    Atomics.notify(ctl, wake + id);
  }
  for (const w of workers) w.terminate();
  workers.length = 0;
}
