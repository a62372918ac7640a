/** Small building blocks shared by the report's charts: escaping, number formatting, frames, axes and marks. */
import type { ScaleContinuousNumeric } from 'd3-scale';

export type ChartFamily = 'summary' | 'spectra' | 'kappa-steps' | 'attacks';

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function esc(text: unknown): string {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

const SUPERSCRIPT: Record<string, string> = { '-': '⁻', '0': '⁰', '1': '¹', '2': '²', '3': '³', '4': '⁴', '5': '⁵', '6': '⁶', '7': '⁷', '8': '⁸', '9': '⁹' };

export function powerOfTen(exponent: number): string {
  if (exponent === 0) return '1';
  if (exponent === 1) return '10';
  return '10' + String(exponent).replace(/[-0-9]/g, (c) => SUPERSCRIPT[c]);
}

/** A number as people read it in a table: four significant digits, exponent form when very large or small. */
export function fmt(x: number | null | undefined, digits = 4): string {
  if (x === null || x === undefined || Number.isNaN(x)) return '—';
  if (!Number.isFinite(x)) return x > 0 ? '∞' : '−∞';
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 1e4 || a < 1e-3)
    return x
      .toExponential(digits - 1)
      .replace(/\.?0+e/, 'e')
      .replace('e+', 'e');
  return Number(x.toPrecision(digits)).toString();
}

export interface Frame {
  width: number;
  height: number;
  top: number;
  right: number;
  bottom: number;
  left: number;
}

export const FRAME: Frame = { width: 560, height: 330, top: 14, right: 22, bottom: 46, left: 62 };

export const COLORS = {
  benign: '#1f6fb4',
  harmful: '#d0590b',
  paper: '#6b6b6b',
  ours: '#1f6fb4',
  oursPaperRule: '#7a9cc6',
  bound: '#2e8b57',
};

let chartCounter = 0;

export interface ChartSpec {
  family: ChartFamily;
  points: number;
  title: string;
  body: string;
  frame?: Frame;
  /** Extra data-* attributes, e.g. which attacker a chart shows. */
  data?: Record<string, string>;
}

/** The contract: every chart is an <svg> with data-chart naming its family and data-points counting what it plots. */
export function chartSvg(spec: ChartSpec): string {
  const f = spec.frame ?? FRAME;
  const id = `chart-${++chartCounter}`;
  const extra = Object.entries(spec.data ?? {})
    .map(([k, v]) => ` data-${k}="${esc(v)}"`)
    .join('');
  return (
    `<svg class="chart" data-chart="${spec.family}" data-points="${spec.points}"${extra} viewBox="0 0 ${f.width} ${f.height}" ` +
    `role="img" aria-labelledby="${id}"><title id="${id}">${esc(spec.title)}</title>${spec.body}</svg>`
  );
}

export function resetChartIds(): void {
  chartCounter = 0;
}

const r1 = (v: number) => Math.round(v * 10) / 10;

export function text(x: number, y: number, content: string, attrs = ''): string {
  return `<text x="${r1(x)}" y="${r1(y)}"${attrs ? ' ' + attrs : ''}>${content}</text>`;
}

/** Decade ticks for a log axis, thinned so that at most `max` carry a label. */
export function logTicks(lo: number, hi: number, max = 7): number[] {
  const a = Math.floor(Math.log10(lo) + 1e-9);
  const b = Math.ceil(Math.log10(hi) - 1e-9);
  const stride = Math.max(1, Math.ceil((b - a + 1) / max));
  const out: number[] = [];
  for (let e = b; e >= a; e -= stride) out.push(e);
  return out.reverse();
}

interface AxisOptions {
  frame?: Frame;
  label: string;
  grid?: boolean;
}

/** A log y axis with decade labels and light gridlines. */
export function logYAxis(y: ScaleContinuousNumeric<number, number>, opts: AxisOptions): string {
  const f = opts.frame ?? FRAME;
  const [lo, hi] = y.domain();
  const parts: string[] = [];
  for (const e of logTicks(lo, hi)) {
    const py = y(10 ** e);
    if (opts.grid !== false) parts.push(`<line class="grid" x1="${f.left}" x2="${f.width - f.right}" y1="${r1(py)}" y2="${r1(py)}"/>`);
    parts.push(text(f.left - 6, py + 4, powerOfTen(e), 'class="tick" text-anchor="end"'));
  }
  parts.push(`<line class="axis" x1="${f.left}" x2="${f.left}" y1="${f.top}" y2="${f.height - f.bottom}"/>`);
  parts.push(
    text(
      14,
      (f.top + f.height - f.bottom) / 2,
      esc(opts.label),
      `class="label" text-anchor="middle" transform="rotate(-90 14 ${r1((f.top + f.height - f.bottom) / 2)})"`,
    ),
  );
  return parts.join('');
}

/** A horizontal axis at the bottom, from given tick values and labels. */
export function xAxis(x: (v: number) => number, ticks: Array<[number, string]>, opts: AxisOptions): string {
  const f = opts.frame ?? FRAME;
  const base = f.height - f.bottom;
  const parts = [`<line class="axis" x1="${f.left}" x2="${f.width - f.right}" y1="${base}" y2="${base}"/>`];
  for (const [v, label] of ticks) {
    const px = x(v);
    if (opts.grid) parts.push(`<line class="grid" x1="${r1(px)}" x2="${r1(px)}" y1="${f.top}" y2="${base}"/>`);
    parts.push(`<line class="axis" x1="${r1(px)}" x2="${r1(px)}" y1="${base}" y2="${base + 4}"/>`);
    parts.push(text(px, base + 17, label, 'class="tick" text-anchor="middle"'));
  }
  parts.push(text((f.left + f.width - f.right) / 2, f.height - 8, esc(opts.label), 'class="label" text-anchor="middle"'));
  return parts.join('');
}

/** Dots as one path of circles: each dot is its own subpath (one "M"), so the path's subpaths count the points. */
export function dotsPath(points: Array<[number, number]>, radius: number): string {
  const r = r1(radius);
  return points.map(([x, y]) => `M${r1(x - r)},${r1(y)}a${r},${r} 0 1,0 ${2 * r},0a${r},${r} 0 1,0 ${-2 * r},0`).join('');
}

/** A line series; `points` (the number of vertices) is written on it so that a reader can check the chart's total. */
export function seriesPath(d: string, points: number, stroke: string, attrs: { dash?: boolean; name: string; width?: number }): string {
  return (
    `<path class="series" data-series="${esc(attrs.name)}" data-n="${points}" d="${d}" fill="none" stroke="${stroke}" ` +
    `stroke-width="${attrs.width ?? 1.8}"${attrs.dash ? ' stroke-dasharray="5 3"' : ''} stroke-linejoin="round"><title>${esc(attrs.name)}</title></path>`
  );
}

export function marksPath(d: string, points: number, fill: string, name: string, stroke?: string): string {
  return (
    `<path class="series marks" data-series="${esc(name)}" data-n="${points}" d="${d}" fill="${fill}"` +
    `${stroke ? ` stroke="${stroke}" stroke-width="1.2"` : ''}><title>${esc(name)}</title></path>`
  );
}

/** Keeps at most `limit` evenly strided items, always the first and the last. */
export function stride<T>(items: T[], limit: number): T[] {
  if (items.length <= limit) return items;
  const out: T[] = [];
  const step = (items.length - 1) / (limit - 1);
  for (let k = 0; k < limit; k++) out.push(items[Math.round(k * step)]);
  return out;
}
