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
  /** Labels of `xTicks`, one per tick (default: the values), e.g. "1k" at log10(1000) on a log axis. */
  xTickLabels?: readonly string[];
  /** Dotted vertical lines, e.g. task boundaries. */
  vLines?: number[];
}

/** Where a panel of {@linkcode plotPanel} goes and what it shows. */
interface PanelBox {
  left: number;
  top: number;
  width: number;
  height: number;
  /** Panel title above the box (small multiples). */
  title?: string;
  xLabel?: string;
  yLabel?: string;
  yRange: [number, number];
  xTicks?: number[];
  /** Labels of `xTicks` (default: the values). */
  xTickLabels?: readonly string[];
  vLines?: number[];
  /** Marker radius at the points (0: none); markers are drawn only for up to 30 points. */
  marker: number;
  /** y ticks (default 5 intervals). */
  yIntervals?: number;
}

const fmt1 = (v: number) => v.toFixed(1);

/** The SVG elements of one panel: grid, axes, ticks, labels and the series' lines. */
function plotPanel(series: readonly LineSeries[], b: PanelBox): string[] {
  const { left, top, width: pw, height: ph } = b;
  const xs = series.flatMap((s) => s.x).filter(Number.isFinite);
  let xMin = Math.min(...xs, ...(b.xTicks ?? [])), xMax = Math.max(...xs, ...(b.xTicks ?? []));
  if (!Number.isFinite(xMin) || !Number.isFinite(xMax)) [xMin, xMax] = [0, 1];
  if (xMin === xMax) [xMin, xMax] = [xMin - 1, xMax + 1];
  const [y0, y1] = b.yRange;
  const sx = (x: number) => left + ((x - xMin) / (xMax - xMin)) * pw;
  const sy = (y: number) => top + (1 - (Math.min(y1, Math.max(y0, y)) - y0) / (y1 - y0)) * ph;
  const f = fmt1;
  const out: string[] = [];
  if (b.title) {
    out.push(
      `<text x="${f(left + pw / 2)}" y="${f(top - 8)}" text-anchor="middle" font-weight="bold">${
        escapeXml(b.title)
      }</text>`,
    );
  }
  const intervals = b.yIntervals ?? 5;
  for (let k = 0; k <= intervals; k++) {
    const v = y0 + (k / intervals) * (y1 - y0), y = f(sy(v));
    out.push(`<line x1="${left}" y1="${y}" x2="${f(left + pw)}" y2="${y}" stroke="#e5e5e5"/>`);
    out.push(
      `<text x="${left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${+v.toFixed(3)}</text>`,
    );
  }
  let ticks = b.xTicks;
  if (ticks === undefined) {
    // Whole-number x values (epochs, steps) get whole-number ticks.
    const step = niceStep((xMax - xMin) / (pw < 300 ? 4 : 8), xs.every(Number.isInteger) ? 1 : 0);
    ticks = [];
    for (let x = Math.ceil(xMin / step) * step; x <= xMax + 1e-9 * step; x += step) ticks.push(x);
  }
  ticks.forEach((t, i) => {
    const x = f(sx(t));
    const label = b.xTicks !== undefined && b.xTickLabels?.[i] !== undefined
      ? escapeXml(b.xTickLabels[i])
      : String(+t.toPrecision(6));
    out.push(`<line x1="${x}" y1="${f(top + ph)}" x2="${x}" y2="${f(top + ph + 4)}" stroke="#333"/>`);
    out.push(`<text x="${x}" y="${f(top + ph + 17)}" text-anchor="middle">${label}</text>`);
  });
  for (const v of b.vLines ?? []) {
    const x = f(sx(v));
    out.push(
      `<line x1="${x}" y1="${top}" x2="${x}" y2="${f(top + ph)}" stroke="#999" stroke-dasharray="2 3"/>`,
    );
  }
  out.push(`<rect x="${left}" y="${top}" width="${f(pw)}" height="${f(ph)}" fill="none" stroke="#333"/>`);
  if (b.xLabel) {
    out.push(
      `<text x="${f(left + pw / 2)}" y="${f(top + ph + 36)}" text-anchor="middle">${
        escapeXml(b.xLabel)
      }</text>`,
    );
  }
  if (b.yLabel) {
    const cx = left - 52, cy = f(top + ph / 2);
    out.push(
      `<text x="${cx}" y="${cy}" text-anchor="middle" transform="rotate(-90 ${cx} ${cy})">${
        escapeXml(b.yLabel)
      }</text>`,
    );
  }
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
        `<polyline points="${pts.map(([x, y]) => `${f(x)},${f(y)}`).join(" ")}" fill="none" ` +
          `stroke="${color}" stroke-width="2"${dash}/>`,
      );
    }
    if (b.marker > 0 && pts.length <= 30) {
      for (const [x, y] of pts) {
        out.push(`<circle cx="${f(x)}" cy="${f(y)}" r="${b.marker}" fill="${color}"/>`);
      }
    }
  });
  return out;
}

/** A legend of `series` (each name once) in rows from (`left`, `top`), wrapping before `right`. */
function legend(series: readonly LineSeries[], left: number, top: number, right: number): string[] {
  const out: string[] = [];
  let lx = left, ly = top;
  const seen = new Set<string>();
  series.forEach((s, si) => {
    if (seen.has(s.name)) return;
    seen.add(s.name);
    const color = PALETTE[(s.color ?? si) % PALETTE.length];
    const dash = s.dashed ? ` stroke-dasharray="6 4"` : "";
    const w = 27 + 6.5 * s.name.length + 18;
    if (lx + w > right && lx > left) {
      lx = left;
      ly += 18;
    }
    out.push(
      `<line x1="${lx}" y1="${ly}" x2="${lx + 22}" y2="${ly}" stroke="${color}" stroke-width="2.5"${dash}/>`,
    );
    out.push(`<text x="${lx + 27}" y="${ly}" dominant-baseline="middle">${escapeXml(s.name)}</text>`);
    lx += w;
  });
  return out;
}

/** The opening of an SVG document of `W`×`H` with a title and an optional subtitle. */
function svgHead(W: number, H: number, title: string, subtitle?: string): string[] {
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
    `font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${
      escapeXml(title)
    }</text>`,
  ];
  if (subtitle) {
    out.push(`<text x="${W / 2}" y="44" text-anchor="middle" fill="#555">${escapeXml(subtitle)}</text>`);
  }
  return out;
}

/**
 * An SVG document with one panel of lines (one color per series, markers at the points, optional
 * error bars), e.g. accuracy against the weight-perturbation scale.
 */
export function lineChartSvg(series: readonly LineSeries[], o: LineChartOptions): string {
  const W = 760, H = 500, top = 70, bottom = 95, left = 70, right = 25;
  const pw = W - left - right, ph = H - top - bottom;
  const out = svgHead(W, H, o.title, o.subtitle);
  out.push(...plotPanel(series, {
    left,
    top,
    width: pw,
    height: ph,
    xLabel: o.xLabel,
    yLabel: o.yLabel,
    yRange: o.yRange ?? [0, 1],
    xTicks: o.xTicks,
    xTickLabels: o.xTickLabels,
    vLines: o.vLines,
    marker: 3,
  }));
  out.push(...legend(series, left, top + ph + 60, W - right));
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}

/** One panel of {@linkcode smallMultiplesSvg}. */
export interface SmallMultiple {
  /** Title above the panel. */
  title: string;
  /** Its lines; a name used in several panels appears once in the shared legend. */
  series: LineSeries[];
  /** This panel's y range (default: the options' `yRange`). */
  yRange?: [number, number];
  /** x tick positions (default: about 4 round numbers). */
  xTicks?: number[];
  /** Labels of `xTicks` (by position; default the numbers). */
  xTickLabels?: readonly string[];
}

/** Options of {@linkcode smallMultiplesSvg}. */
export interface SmallMultiplesOptions {
  /** Title on top. */
  title: string;
  /** Smaller line below the title. */
  subtitle?: string;
  /** Panels per row. */
  columns: number;
  /** x-axis label (under each bottom panel). */
  xLabel: string;
  /** y range of the panels without their own (default [0, 1]). */
  yRange?: [number, number];
  /** y-axis label (left of each row's first panel). */
  yLabel?: string;
}

/**
 * An SVG document with a grid of small panels of lines sharing their axes' ranges and one legend,
 * e.g. one panel per (dataset, noise setting) of a sweep.
 */
export function smallMultiplesSvg(panels: readonly SmallMultiple[], o: SmallMultiplesOptions): string {
  const cols = Math.max(1, Math.min(o.columns, panels.length));
  const rows = Math.ceil(panels.length / cols);
  const pw = 210, ph = 160, gapX = 55, gapY = 62, right = 20, top = 88, left = o.yLabel ? 75 : 55;
  // Wide enough for the panels and for the title and subtitle (about 9 and 7 px per character).
  const W = Math.max(
    left + cols * pw + (cols - 1) * gapX + right,
    Math.ceil(Math.max(9 * o.title.length, 7 * (o.subtitle?.length ?? 0)) + 40),
  );
  const legendTop = top + rows * ph + (rows - 1) * gapY + 52;
  const all = panels.flatMap((p) => p.series);
  const out = svgHead(W, 0, o.title, o.subtitle);
  panels.forEach((p, i) => {
    const r = Math.floor(i / cols), c = i % cols;
    out.push(...plotPanel(p.series, {
      left: left + c * (pw + gapX),
      top: top + r * (ph + gapY),
      width: pw,
      height: ph,
      title: p.title,
      xLabel: r === rows - 1 ? o.xLabel : undefined,
      yLabel: c === 0 ? o.yLabel : undefined,
      yRange: p.yRange ?? o.yRange ?? [0, 1],
      xTicks: p.xTicks,
      xTickLabels: p.xTickLabels,
      marker: p.series.every((s) => s.x.length <= 8) ? 3 : 0,
    }));
  });
  const legendLines = legend(all, left, legendTop, W - right);
  out.push(...legendLines);
  const lastY = Math.max(legendTop, ...legendLines.map((l) => Number(/ y="([\d.]+)"/.exec(l)?.[1] ?? 0)));
  const H = Math.ceil(lastY + 20);
  out[0] = out[0].replace(/height="0" viewBox="0 0 (\d+) 0"/, `height="${H}" viewBox="0 0 $1 ${H}"`);
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}
