/**
 * Hand-written SVG line charts for the example scripts (no dependency): the learning curves of the
 * label-noise experiment for several optimizers, like Figure 1 of Xie et al. (2021) — accuracy per
 * epoch on the left (test solid, train on noisy labels dashed), the fate of the flipped training
 * examples on the right (memorized: predicted as the noisy label, solid; predicted as the true
 * label, dashed) — and a plain one-panel {@linkcode lineChartSvg} for the other experiments.
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

/** A round step (1, 2 or 5 times a power of ten) of at least `raw` and at least `min`. */
function niceStep(raw: number, min = 1): number {
  if (!(raw > 0)) return Math.max(min, 1);
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return Math.max(min, m * p);
  return Math.max(min, 10 * p);
}

/** One line of {@linkcode lineChartSvg} (NaN points are left out). */
export interface LineSeries {
  /** Legend name. */
  name: string;
  /** x values, increasing. */
  x: number[];
  /** y values. */
  y: number[];
  /** Optional ± error bar half-heights (e.g. sd over seeds); NaN or 0 draws none. */
  yErr?: number[];
  /** Dashed line. */
  dashed?: boolean;
  /** Palette index (default: the series' position). */
  color?: number;
}

/** Options of {@linkcode lineChartSvg}. */
export interface LineChartOptions {
  /** Title on top. */
  title: string;
  /** Smaller line below the title. */
  subtitle?: string;
  /** x-axis label. */
  xLabel: string;
  /** y-axis label. */
  yLabel: string;
  /** y range (default [0, 1]); values outside are clamped. */
  yRange?: [number, number];
  /** x tick positions (default: about 8 round numbers). */
  xTicks?: number[];
  /** Dotted vertical lines, e.g. task boundaries. */
  vLines?: number[];
}

/**
 * An SVG document with one panel of lines (one color per series, markers at the points, optional
 * error bars), e.g. accuracy against the weight-perturbation scale.
 */
export function lineChartSvg(series: readonly LineSeries[], o: LineChartOptions): string {
  const W = 760, H = 500, top = 70, bottom = 95, left = 70, right = 25;
  const pw = W - left - right, ph = H - top - bottom;
  const xs = series.flatMap((s) => s.x).filter(Number.isFinite);
  let xMin = Math.min(...xs, ...(o.xTicks ?? [])), xMax = Math.max(...xs, ...(o.xTicks ?? []));
  if (!Number.isFinite(xMin) || !Number.isFinite(xMax)) [xMin, xMax] = [0, 1];
  if (xMin === xMax) [xMin, xMax] = [xMin - 1, xMax + 1];
  const [y0, y1] = o.yRange ?? [0, 1];
  const sx = (x: number) => left + ((x - xMin) / (xMax - xMin)) * pw;
  const sy = (y: number) => top + (1 - (Math.min(y1, Math.max(y0, y)) - y0) / (y1 - y0)) * ph;
  const f = (v: number) => v.toFixed(1);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
    `font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${
      escapeXml(o.title)
    }</text>`,
  ];
  if (o.subtitle) {
    out.push(`<text x="${W / 2}" y="44" text-anchor="middle" fill="#555">${escapeXml(o.subtitle)}</text>`);
  }
  for (let k = 0; k <= 5; k++) {
    const v = y0 + (k / 5) * (y1 - y0), y = f(sy(v));
    out.push(`<line x1="${left}" y1="${y}" x2="${left + pw}" y2="${y}" stroke="#e5e5e5"/>`);
    out.push(
      `<text x="${left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${+v.toFixed(3)}</text>`,
    );
  }
  let ticks = o.xTicks;
  if (ticks === undefined) {
    const step = niceStep((xMax - xMin) / 8, 0);
    ticks = [];
    for (let x = Math.ceil(xMin / step) * step; x <= xMax + 1e-9 * step; x += step) ticks.push(x);
  }
  for (const t of ticks) {
    const x = f(sx(t));
    out.push(`<line x1="${x}" y1="${top + ph}" x2="${x}" y2="${top + ph + 4}" stroke="#333"/>`);
    out.push(`<text x="${x}" y="${top + ph + 17}" text-anchor="middle">${+t.toPrecision(6)}</text>`);
  }
  for (const v of o.vLines ?? []) {
    const x = f(sx(v));
    out.push(`<line x1="${x}" y1="${top}" x2="${x}" y2="${top + ph}" stroke="#999" stroke-dasharray="2 3"/>`);
  }
  out.push(`<rect x="${left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(
    `<text x="${left + pw / 2}" y="${top + ph + 36}" text-anchor="middle">${escapeXml(o.xLabel)}</text>`,
  );
  out.push(
    `<text x="18" y="${top + ph / 2}" text-anchor="middle" transform="rotate(-90 18 ${top + ph / 2})">${
      escapeXml(o.yLabel)
    }</text>`,
  );
  series.forEach((s, si) => {
    const color = PALETTE[(s.color ?? si) % PALETTE.length];
    const dash = s.dashed ? ` stroke-dasharray="6 4"` : "";
    const pts: [number, number][] = [];
    s.x.forEach((x, i) => {
      if (Number.isFinite(x) && Number.isFinite(s.y[i])) pts.push([sx(x), sy(s.y[i])]);
      const e = s.yErr?.[i];
      if (e !== undefined && Number.isFinite(e) && e > 0 && Number.isFinite(x) && Number.isFinite(s.y[i])) {
        const X = f(sx(x));
        out.push(
          `<line x1="${X}" y1="${f(sy(s.y[i] - e))}" x2="${X}" y2="${f(sy(s.y[i] + e))}" stroke="${color}"/>`,
        );
      }
    });
    if (pts.length > 1) {
      out.push(
        `<polyline points="${
          pts.map(([x, y]) => `${f(x)},${f(y)}`).join(" ")
        }" fill="none" stroke="${color}" ` +
          `stroke-width="2"${dash}/>`,
      );
    }
    if (pts.length <= 30) {
      for (const [x, y] of pts) out.push(`<circle cx="${f(x)}" cy="${f(y)}" r="3" fill="${color}"/>`);
    }
  });
  let lx = left, ly = top + ph + 60;
  series.forEach((s, si) => {
    const color = PALETTE[(s.color ?? si) % PALETTE.length];
    const dash = s.dashed ? ` stroke-dasharray="6 4"` : "";
    const w = 27 + 6.5 * s.name.length + 18;
    if (lx + w > W - right && lx > left) {
      lx = left;
      ly += 18;
    }
    out.push(
      `<line x1="${lx}" y1="${ly}" x2="${lx + 22}" y2="${ly}" stroke="${color}" stroke-width="2.5"${dash}/>`,
    );
    out.push(`<text x="${lx + 27}" y="${ly}" dominant-baseline="middle">${escapeXml(s.name)}</text>`);
    lx += w;
  });
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}
