/**
 * Console output for {@linkcode fit}: a one-line progress bar redrawn in place on a terminal, plain
 * one-line-per-epoch logs otherwise. Browser-safe: by default it writes to `Deno.stderr` when the
 * `Deno` global exists (a bar when stderr is a terminal) and to the console otherwise; a caller may
 * inject its own writer.
 *
 * @module
 */
import type { EpochMetrics, StepProgress, TrainLogger } from "./loop.ts";

/** Options of {@linkcode progressLogger}; all optional. */
export interface ProgressLoggerOptions {
  /**
   * Writes text as it is (no newline added). Default: stderr in Deno (synchronous writes), the
   * console elsewhere (one `console.log` per line).
   */
  write?: (text: string) => void;
  /**
   * Draw a progress bar redrawn in place (ANSI); otherwise print one plain line per epoch. Default:
   * whether stderr is a terminal when `write` is not given (`Deno.stderr.isTerminal()`, false
   * outside Deno), false when it is (say `true` when your writer goes to a terminal).
   */
  terminal?: boolean;
  /** Prefix of every line, e.g. the optimizer's name. Default none. */
  label?: string;
  /** Width of the bar in characters. Default 24. */
  barWidth?: number;
  /** Minimum milliseconds between two redraws. Default 100. */
  minIntervalMs?: number;
  /** Clock in milliseconds (tests). Default `performance.now()`. */
  now?: () => number;
}

/** The parts of `Deno.stderr` the default writer uses (looked up on `globalThis`, not required). */
interface StderrLike {
  writeSync(p: Uint8Array): number;
  isTerminal?(): boolean;
}

/** `Deno.stderr` when running in Deno, else null (browsers, other runtimes). */
function denoStderr(): StderrLike | null {
  const err = (globalThis as { Deno?: { stderr?: Partial<StderrLike> } }).Deno?.stderr;
  return err && typeof err.writeSync === "function" ? err as StderrLike : null;
}

/** The default sink: stderr in Deno (and whether it is a terminal), the console elsewhere. */
function defaultSink(): { write: (text: string) => void; terminal: boolean } {
  const err = denoStderr();
  if (err !== null) {
    let terminal = false;
    try {
      terminal = err.isTerminal?.() ?? false;
    } catch { /* not a terminal as far as we can tell */ }
    const enc = new TextEncoder();
    return {
      write: (text) => {
        let b = enc.encode(text);
        while (b.length > 0) b = b.subarray(err.writeSync(b));
      },
      terminal,
    };
  }
  let pending = "";
  return {
    write: (text) => {
      const lines = (pending + text).split("\n");
      pending = lines.pop()!;
      for (const line of lines) console.log(line);
    },
    terminal: false,
  };
}

/**
 * A {@linkcode TrainLogger} that draws `label epoch 3/20 [#####-----] 120/469 1834 ex/s ETA 1m12s
 * loss 0.8123` on a terminal and prints each epoch's metrics as one line. `fit` uses
 * `progressLogger()` when given no logger.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { progressLogger } from "@nvrm/core";
 * const lines: string[] = [];
 * const logger = progressLogger({ write: (s) => lines.push(s), label: "sgd" });
 * logger.epoch!({
 *   epoch: 1, step: 10, batchLoss: 0.5, trainLoss: 0.4, trainAccuracy: 0.9, trainTrueLabelAccuracy: NaN,
 *   memorization: NaN, flippedCorrect: NaN, testLoss: 0.45, testAccuracy: 0.88, trainSeconds: 1,
 *   evalSeconds: 0.1, wallSeconds: 1.1, examplesPerSecond: 1280, skippedSteps: 0,
 * });
 * assert.match(lines[0], /^sgd epoch 1 {2}batch_loss 0\.5000 .* test_acc 0\.8800 .*\n$/);
 * ```
 */
export function progressLogger(options: ProgressLoggerOptions = {}): TrainLogger {
  if (options === null || typeof options !== "object") {
    throw new TypeError(
      `progressLogger: options must be an object, got ${options === null ? "null" : typeof options}`,
    );
  }
  if (options.write !== undefined && typeof options.write !== "function") {
    throw new TypeError(`progressLogger: write must be a function, got ${typeof options.write}`);
  }
  const sink = options.write === undefined ? defaultSink() : null;
  const write = options.write ?? sink!.write;
  const terminal = options.terminal ?? sink?.terminal ?? false;
  const label = options.label ? `${options.label} ` : "";
  const width = options.barWidth ?? 24;
  const minInterval = options.minIntervalMs ?? 100;
  const now = options.now ?? (() => performance.now());
  let lastDraw = -Infinity;
  let drawn = false;
  return {
    progress(p: StepProgress) {
      if (!terminal) return;
      const t = now();
      if (t - lastDraw < minInterval && p.stepInEpoch !== p.stepsPerEpoch) return;
      lastDraw = t;
      const filled = Math.round((width * p.stepInEpoch) / Math.max(1, p.stepsPerEpoch));
      const bar = "#".repeat(filled) + "-".repeat(width - filled);
      const loss = Number.isFinite(p.lastLoss) ? ` loss ${p.lastLoss.toFixed(4)}` : "";
      write(
        `\r\x1b[2K${label}epoch ${p.epoch}/${p.epochs} [${bar}] ${p.stepInEpoch}/${p.stepsPerEpoch} ` +
          `${Math.round(p.examplesPerSecond)} ex/s ETA ${formatDuration(p.etaSeconds)}${loss}`,
      );
      drawn = true;
    },
    epoch(m: EpochMetrics) {
      write((drawn ? "\r\x1b[2K" : "") + formatEpoch(m, label) + "\n");
      drawn = false;
    },
  };
}

/** One line with an epoch's metrics (NaN metrics are left out; skipped steps named when any). */
export function formatEpoch(m: EpochMetrics, label = ""): string {
  const parts = [`${label}epoch ${m.epoch}`];
  const add = (name: string, v: number, digits = 4) => {
    if (Number.isFinite(v)) parts.push(`${name} ${v.toFixed(digits)}`);
  };
  add("batch_loss", m.batchLoss);
  add("train_loss", m.trainLoss);
  add("train_acc", m.trainAccuracy);
  add("test_acc", m.testAccuracy);
  add("memorized", m.memorization);
  add("flipped_correct", m.flippedCorrect);
  if (m.skippedSteps > 0) parts.push(`skipped ${m.skippedSteps} non-finite steps`);
  parts.push(
    `${Math.round(m.examplesPerSecond)} ex/s`,
    `${m.trainSeconds.toFixed(1)}+${m.evalSeconds.toFixed(1)} s`,
  );
  return parts.join("  ");
}

/** `75` → `"1m15s"`, `3700` → `"1h01m"`; `"?"` when not finite. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}
