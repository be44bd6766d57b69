/**
 * Console output for {@linkcode fit}: a one-line progress bar redrawn in place on a terminal, plain
 * one-line-per-epoch logs otherwise. Browser-safe: the caller injects the writer and says whether
 * it is a terminal (in Deno: `Deno.stdout.isTerminal()`).
 *
 * @module
 */
import type { EpochMetrics, StepProgress, TrainLogger } from "./loop.ts";

/** Options of {@linkcode progressLogger}. */
export interface ProgressLoggerOptions {
  /** Writes text as it is (no newline added). */
  write: (text: string) => void;
  /** Draw a progress bar redrawn in place (ANSI); otherwise print one plain line per epoch. */
  terminal: boolean;
  /** Prefix of every line, e.g. the optimizer's name. */
  label?: string;
  /** Width of the bar in characters. Default 24. */
  barWidth?: number;
  /** Minimum milliseconds between two redraws. Default 100. */
  minIntervalMs?: number;
  /** Clock in milliseconds (tests). Default `performance.now()`. */
  now?: () => number;
}

/**
 * A {@linkcode TrainLogger} that draws `label epoch 3/20 [#####-----] 120/469 1834 ex/s ETA 1m12s
 * loss 0.8123` on a terminal and prints each epoch's metrics as one line.
 *
 * @example
 * ```ts
 * import { progressLogger } from "@nvrm/core";
 * const lines: string[] = [];
 * const logger = progressLogger({ write: (s) => lines.push(s), terminal: false, label: "sgd" });
 * logger.epoch!({
 *   epoch: 1, step: 10, batchLoss: 0.5, trainLoss: 0.4, trainAccuracy: 0.9, trainCleanAccuracy: NaN,
 *   memorization: NaN, flippedCorrect: NaN, testLoss: 0.45, testAccuracy: 0.88, trainSeconds: 1,
 *   evalSeconds: 0.1, wallSeconds: 1.1, examplesPerSecond: 1280,
 * });
 * console.log(lines[0]);
 * ```
 */
export function progressLogger(options: ProgressLoggerOptions): TrainLogger {
  const { write, terminal } = options;
  if (typeof write !== "function") {
    throw new TypeError(`progressLogger: write must be a function, got ${typeof write}`);
  }
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

/** One line with an epoch's metrics (NaN metrics are left out). */
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
