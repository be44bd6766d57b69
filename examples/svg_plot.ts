/**
 * Hand-written SVG line charts for the label-noise experiment (no dependency): the learning curves
 * of several optimizers, like Figure 1 of Xie et al. (2021) — accuracy per epoch on the left
 * (test solid, train on noisy labels dashed), the fate of the flipped training examples on the right
 * (memorized: predicted as the noisy label, solid; predicted as the true label, dashed).
 *
 * @module
 */

/** The per-epoch curves of one optimizer (NaN entries are left out of the lines). */
export interface CurveSeries {
  /** Legend name, e.g. "vsgd". */
  name: string;
  /** Epoch numbers (x). */
  epochs: number[];
  /** Test accuracy (clean labels). */
  testAccuracy: number[];
  /** Training accuracy against the noisy labels. */
  trainAccuracy: number[];
  /** Fraction of flipped examples predicted as their noisy label. */
  memorization: number[];
  /** Fraction of flipped examples predicted as their true label. */
  flippedCorrect: number[];
}

const PALETTE = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

/** Escapes text for SVG/XML. */
export function escapeXml(s: string): string {
  return s.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;" })[c]!,
  );
}

interface Panel {
  title: string;
  solid: keyof CurveSeries;
  dashed: keyof CurveSeries;
  solidLabel: string;
  dashedLabel: string;
}

/**
 * An SVG document with two panels of learning curves for `series` (one color per optimizer).
 * `title` goes on top; `subtitle` (e.g. the command's settings) below it.
 */
export function learningCurvesSvg(series: readonly CurveSeries[], title: string, subtitle = ""): string {
  const W = 1000, H = 490, top = 70, bottom = 100, left = 60, gap = 70, right = 20;
  const panelW = (W - left - right - gap) / 2, panelH = H - top - bottom;
  const maxEpoch = Math.max(1, ...series.flatMap((s) => s.epochs));
  const minEpoch = Math.min(maxEpoch, ...series.flatMap((s) => s.epochs));
  const x0 = minEpoch === maxEpoch ? minEpoch - 1 : minEpoch;
  const panels: Panel[] = [
    {
      title: "Accuracy",
      solid: "testAccuracy",
      dashed: "trainAccuracy",
      solidLabel: "test (clean labels)",
      dashedLabel: "train (noisy labels)",
    },
    {
      title: "Flipped training examples",
      solid: "memorization",
      dashed: "flippedCorrect",
      solidLabel: "memorized (= noisy label)",
      dashedLabel: "predicted as true label",
    },
  ];
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
      `font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${
      escapeXml(title)
    }</text>`,
  );
  if (subtitle) {
    out.push(`<text x="${W / 2}" y="44" text-anchor="middle" fill="#555">${escapeXml(subtitle)}</text>`);
  }
  panels.forEach((p, pi) => {
    const px = left + pi * (panelW + gap), py = top;
    const sx = (e: number) => px + ((e - x0) / (maxEpoch - x0)) * panelW;
    const sy = (v: number) => py + (1 - v) * panelH;
    out.push(`<g>`);
    out.push(
      `<text x="${px + panelW / 2}" y="${py - 8}" text-anchor="middle" font-weight="bold">${
        escapeXml(p.title)
      }</text>`,
    );
    // Grid and y ticks.
    for (let k = 0; k <= 5; k++) {
      const v = k / 5, y = sy(v).toFixed(1);
      out.push(`<line x1="${px}" y1="${y}" x2="${px + panelW}" y2="${y}" stroke="#e5e5e5"/>`);
      out.push(
        `<text x="${px - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${v.toFixed(1)}</text>`,
      );
    }
    // x ticks: about 8.
    const step = niceStep((maxEpoch - x0) / 8);
    for (let e = Math.ceil(x0 / step) * step; e <= maxEpoch + 1e-9; e += step) {
      const x = sx(e).toFixed(1);
      out.push(`<line x1="${x}" y1="${py + panelH}" x2="${x}" y2="${py + panelH + 4}" stroke="#333"/>`);
      out.push(`<text x="${x}" y="${py + panelH + 17}" text-anchor="middle">${+e.toFixed(6)}</text>`);
    }
    out.push(`<rect x="${px}" y="${py}" width="${panelW}" height="${panelH}" fill="none" stroke="#333"/>`);
    out.push(`<text x="${px + panelW / 2}" y="${py + panelH + 36}" text-anchor="middle">epoch</text>`);
    series.forEach((s, si) => {
      const color = PALETTE[si % PALETTE.length];
      for (const [key, dash] of [[p.solid, ""], [p.dashed, ` stroke-dasharray="6 4"`]] as const) {
        const ys = s[key] as number[];
        const pts: string[] = [];
        s.epochs.forEach((e, i) => {
          if (Number.isFinite(ys[i])) {
            pts.push(`${sx(e).toFixed(1)},${sy(Math.min(1, Math.max(0, ys[i]))).toFixed(1)}`);
          }
        });
        if (pts.length > 1) {
          out.push(
            `<polyline points="${pts.join(" ")}" fill="none" stroke="${color}" stroke-width="2"${dash}/>`,
          );
        } else if (pts.length === 1) {
          const [cx, cy] = pts[0].split(",");
          out.push(`<circle cx="${cx}" cy="${cy}" r="3" fill="${color}"/>`);
        }
      }
    });
    // Legend below the panel, outside the plot area: optimizers (colors) on one row, line styles on the next.
    let lx = px, ly = py + panelH + 56;
    const item = (stroke: string, dash: string, label: string) => {
      out.push(
        `<line x1="${lx}" y1="${ly}" x2="${
          lx + 22
        }" y2="${ly}" stroke="${stroke}" stroke-width="2.5"${dash}/>`,
      );
      out.push(`<text x="${lx + 27}" y="${ly}" dominant-baseline="middle">${escapeXml(label)}</text>`);
      lx += 27 + 6.5 * label.length + 18;
    };
    series.forEach((s, si) => item(PALETTE[si % PALETTE.length], "", s.name));
    lx = px;
    ly += 18;
    item("#333", "", p.solidLabel);
    item("#333", ` stroke-dasharray="6 4"`, p.dashedLabel);
    out.push(`</g>`);
  });
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}

function niceStep(raw: number): number {
  if (!(raw > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return Math.max(1, m * p);
  return Math.max(1, 10 * p);
}
