/**
 * What the worker pools over shared WebAssembly memory have in common (`gemm_threads.ts`
 * for the GEMM, `conv_threads.ts` for the convolutions, `noise_threads.ts` for the noise): how
 * many participants they may have (the thread limit: {@linkcode setThreadLimit}, the environment
 * variable `NVRM_THREADS`, by default the hardware threads), whether workers can be used here,
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
  /** Participants: the calling thread plus workers (the thread limit, by default the hardware threads). */
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

/** Most participants of a pool (the control words hold 15 workers' wake-up words). */
export const MAX_PARTICIPANTS = 16;

/**
 * Validates a thread limit (see {@linkcode setThreadLimit}); `what` names where it came from,
 * `fromText` accepts a number written as text (the environment). Returns a number, or `"auto"`.
 */
function parseThreadLimit(what: string, limit: unknown, fromText = false): number | "auto" {
  if (limit === "auto") return "auto";
  const n = fromText && typeof limit === "string" && /^\s*\d+\s*$/.test(limit) ? Number(limit) : limit;
  if (typeof n === "number" && Number.isInteger(n) && n >= 1 && n <= MAX_PARTICIPANTS) return n;
  throw new RangeError(
    `${what} must be "auto" or an integer in [1, ${MAX_PARTICIPANTS}] (participants: the calling ` +
      `thread plus workers), got ${typeof limit === "string" ? JSON.stringify(limit) : String(limit)}`,
  );
}

/**
 * The environment variable `NVRM_THREADS`, read once where it may be read without a prompt (Deno
 * with env access granted, Node, Bun); `"auto"` when unset or unreadable.
 */
function envThreadLimit(): number | "auto" {
  let raw: string | undefined;
  try {
    const g = globalThis as {
      Deno?: {
        env: { get(k: string): string | undefined };
        permissions: { querySync(d: { name: "env"; variable: string }): { state: string } };
      };
      process?: { env?: Record<string, string | undefined> };
    };
    if (g.Deno) {
      if (g.Deno.permissions.querySync({ name: "env", variable: "NVRM_THREADS" }).state === "granted") {
        raw = g.Deno.env.get("NVRM_THREADS");
      }
    } else raw = g.process?.env?.NVRM_THREADS;
  } catch {
    raw = undefined;
  }
  return raw === undefined || raw === "" ? "auto" : parseThreadLimit("NVRM_THREADS", raw, true);
}

let limit: number | "auto" = envThreadLimit();
const limitListeners = new Set<() => void>();

/**
 * Sets how many participants (the calling thread plus workers) every worker pool of the CPU
 * kernels (GEMM, convolution, noise) may use: `"auto"` (the default, or the environment variable
 * `NVRM_THREADS` where set) — one per hardware thread, at most {@linkcode MAX_PARTICIPANTS} — or an
 * integer in `[1, MAX_PARTICIPANTS]`: that many, even past the hardware threads (a cap for a shared
 * machine; more than the cores oversubscribes them, which the self-tuning must then avoid; tests
 * and benchmarks use it). 1 turns the workers off. The pools restart with the new count (their
 * measured choices are dropped). Every setting gives the same bits. Returns the previous setting.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { getThreadLimit, setThreadLimit } from "@nvrm/core";
 * const previous = setThreadLimit(2); // at most the calling thread and one worker per CPU call
 * assert.equal(getThreadLimit(), 2);
 * assert.throws(() => setThreadLimit(0), /integer in \[1, 16\]/);
 * setThreadLimit(previous);
 * ```
 */
export function setThreadLimit(participants: number | "auto"): number | "auto" {
  const next = parseThreadLimit("setThreadLimit: participants", participants);
  const prev = limit;
  limit = next;
  if (next !== prev) { for (const f of limitListeners) f(); }
  return prev;
}

/** The setting of {@linkcode setThreadLimit}: `"auto"` or the participants it allows (see there). */
export function getThreadLimit(): number | "auto" {
  return limit;
}

/**
 * Calls `reset` whenever {@linkcode setThreadLimit} changes the limit: a pool's owner drops its
 * workers and its measured choices, to start again from {@linkcode threadSupport}. Internal.
 */
export function onThreadLimitChange(reset: () => void): void {
  limitListeners.add(reset);
}

/**
 * Detects worker support; `prefer` picks Web Workers even where `node:worker_threads` exists. The
 * participants are the thread limit ({@linkcode setThreadLimit}), by default the hardware threads.
 */
export function threadSupport(prefer?: WorkerKind): ThreadSupport {
  const hc = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency;
  const participants = limit !== "auto"
    ? limit
    : Math.max(1, Math.min(MAX_PARTICIPANTS, Math.floor(hc ?? 1)));
  if (participants < 2) {
    const reason = limit === 1 ? "the thread limit is 1 (setThreadLimit)" : "a single hardware thread";
    return { ok: false, participants: 1, reason };
  }
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

/** Statistics of a worker pool (`gemmThreadStats`, `convThreadStats`, `noiseThreadStats`). */
export interface PoolThreadStats {
  /** Workers started. */
  workers: number;
  /** Chunks the workers computed since the pool started. */
  workerChunks: number;
  /** Those per worker: `byWorker[id − 1]` for worker `id`. */
  byWorker: number[];
  /** The pool's jobs by participant count (`jobsByParticipants[k]`). */
  jobsByParticipants: number[];
}

/** What {@linkcode poolThreadStats} reads of a pool. */
export interface PoolCounters {
  /** Workers started. */
  readonly size: number;
  /** Chunks the workers computed. */
  readonly workerChunks: number;
  /** Chunks worker `id` computed. */
  chunksOf(id: number): number;
  /** Jobs by participant count. */
  jobsByParticipants(): number[];
}

/** The statistics of `pool` (all 0 or empty before it started: `undefined`). */
export function poolThreadStats(pool: PoolCounters | undefined): PoolThreadStats {
  if (!pool) return { workers: 0, workerChunks: 0, byWorker: [], jobsByParticipants: [] };
  return {
    workers: pool.size,
    workerChunks: pool.workerChunks,
    byWorker: Array.from({ length: pool.size }, (_, i) => pool.chunksOf(i + 1)),
    jobsByParticipants: pool.jobsByParticipants(),
  };
}
