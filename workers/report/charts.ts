/** The report's charts, drawn server-side as SVG with d3's scales and line generator. */
import { extent, max, min, quantileSorted } from 'd3-array';
import { scaleBand, scaleLinear, scaleLog, scalePoint, scaleSymlog, type ScaleLogarithmic } from 'd3-scale';
import { line } from 'd3-shape';
import type { Curves, Metrics } from '../../models/engine/index.js';
import { slowdownText } from '../../models/engine/index.js';
import { chartSvg, COLORS, dotsPath, esc, fmt, FRAME, logYAxis, marksPath, powerOfTen, seriesPath, stride, text, xAxis, type Frame } from './svg.js';

export interface LegendItem {
  label: string;
  color: string;
  kind: 'line' | 'dashed' | 'dot' | 'bar';
}

export interface Figure {
  heading: string;
  svg: string;
  caption: string;
  legend: LegendItem[];
}

/** Eigenvalues at or below λ_max·1e-18 of their own series are rounding noise; they are drawn at that floor. */
export const SPECTRUM_FLOOR = 1e-18;
/** Relative suboptimality starts at 1; below float64's resolution of that start it is drawn at this floor. */
export const SUBOPTIMALITY_FLOOR = 1e-16;
/** κ over the steps: at most this many steps are drawn per series (evenly strided, first and last kept). */
export const MAX_STEP_POINTS = 500;
/** An attack curve longer than this (curves.json keeps ≤ 500) is strided down to it. */
export const MAX_ATTACK_POINTS = 1000;

type Pt = [number, number];

const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

function drawLine(points: Pt[], x: (v: number) => number, y: (v: number) => number): string {
  return (
    line<Pt>()
      .x((p) => x(p[0]))
      .y((p) => y(p[1]))
      .digits(1)(points) ?? ''
  );
}

/** A log scale over the given positive values, widened to whole decades. */
function logScale(values: number[], range: [number, number], fallback: [number, number] = [0.1, 10]) {
  let [lo, hi] = extent(values) as [number | undefined, number | undefined];
  if (lo === undefined || hi === undefined) [lo, hi] = fallback;
  if (lo === hi) [lo, hi] = [lo / 10, hi * 10];
  return scaleLog().domain([lo, hi]).range(range).nice();
}

const plural = (n: number, one: string, many = one + 's') => `${n} ${n === 1 ? one : many}`;

// ---------------------------------------------------------------------------------------------- spectra

export function spectraChart(spectra: Curves['spectra'] | undefined, dim: number): Figure {
  const f = FRAME;
  const defs = [
    { name: 'H_P before (K_P)', values: spectra?.benign?.before, color: COLORS.benign, dash: true },
    { name: 'H_P after', values: spectra?.benign?.after, color: COLORS.benign, dash: false },
    { name: 'H_H before (K_H)', values: spectra?.harmful?.before, color: COLORS.harmful, dash: true },
    { name: 'H_H after', values: spectra?.harmful?.after, color: COLORS.harmful, dash: false },
  ];
  let clamped = 0;
  let missing = 0;
  const series = defs.map((d) => {
    const raw = (d.values ?? []) as Array<number | null>;
    const top = max(raw.filter(finite)) ?? 0;
    // With no positive eigenvalue at all there is no scale to take a floor from; 1 keeps the axis finite.
    const floor = top > 0 ? top * SPECTRUM_FLOOR : 1;
    const shown = raw
      .map((v) => {
        if (!finite(v)) missing++;
        else if (v <= floor) clamped++;
        return finite(v) && v > floor ? v : floor;
      })
      .sort((a, b) => b - a);
    return { ...d, shown };
  });
  const length = Math.max(1, ...series.map((s) => s.shown.length));
  const x = scaleLinear()
    .domain(length > 1 ? [1, length] : [0.5, 1.5])
    .range([f.left, f.width - f.right]);
  const y = logScale(
    series.flatMap((s) => s.shown),
    [f.height - f.bottom, f.top],
  );
  const parts = [
    logYAxis(y, { label: 'eigenvalue' }),
    xAxis(
      x,
      x
        .ticks(6)
        .filter(Number.isInteger)
        .map((t) => [t, String(t)]),
      { label: 'rank (largest first)' },
    ),
  ];
  let points = 0;
  for (const s of series) {
    const pts = s.shown.map((v, i): Pt => [i + 1, v]);
    points += pts.length;
    parts.push(seriesPath(drawLine(pts, x, y), pts.length, s.color, { name: s.name, dash: s.dash }));
  }
  const notes = [`${series.length} spectra of ${dim} eigenvalues each: ${points} points.`];
  if (clamped > 0) {
    notes.push(
      `A log axis has no room for zero or negative values: ${plural(clamped, 'eigenvalue')} at or below λ_max·10⁻¹⁸ of ` +
        `${clamped === 1 ? 'its' : 'their'} spectrum (non-positive rounding noise, mostly) ${clamped === 1 ? 'is' : 'are'} drawn at that floor, ` +
        'the flat tail at the bottom right.',
    );
  }
  if (missing > 0) notes.push(`${plural(missing, 'eigenvalue')} missing from curves.json (not finite) ${missing === 1 ? 'is' : 'are'} drawn at the floor too.`);
  notes.push('κ counts only eigenvalues above rtol·λ_max, so the floor never enters it.');
  return {
    heading: 'Eigenvalue spectra, before and after θ',
    svg: chartSvg({ family: 'spectra', points, title: 'Eigenvalue spectra of H_P and H_H before and after θ', body: parts.join('') }),
    caption: notes.join(' '),
    legend: series.map((s) => ({ label: s.name, color: s.color, kind: s.dash ? 'dashed' : 'line' })),
  };
}

// ---------------------------------------------------------------------------------------------- κ over steps

export function kappaStepsChart(metrics: Metrics, steps: Curves['kappaSteps'] | undefined): Figure {
  const history = steps ?? [];
  const legend: LegendItem[] = [
    { label: 'κ(H_P), benign', color: COLORS.benign, kind: history.length ? 'line' : 'dot' },
    { label: 'κ(H_H), harmful', color: COLORS.harmful, kind: history.length ? 'line' : 'dot' },
  ];
  return history.length === 0 ? kappaBeforeAfterChart(metrics, legend) : kappaHistoryChart(history, legend);
}

/** The four κ's (benign and harmful, before and after θ), keeping only those a log axis can show. */
function kappaBeforeAfterPairs(metrics: Metrics) {
  const k = metrics.kappa;
  return [
    {
      name: 'κ(H_P), benign',
      color: COLORS.benign,
      pts: [
        ['before', k?.benign?.before],
        ['after', k?.benign?.after],
      ] as Array<[string, unknown]>,
    },
    {
      name: 'κ(H_H), harmful',
      color: COLORS.harmful,
      pts: [
        ['before', k?.harmful?.before],
        ['after', k?.harmful?.after],
      ] as Array<[string, unknown]>,
    },
  ].map((s) => ({ ...s, pts: s.pts.filter((p): p is [string, number] => finite(p[1]) && p[1] > 0) }));
}

/** With no optimisation steps (closed form, or an evaluated θ) the chart is κ before and after only. */
function kappaBeforeAfterChart(metrics: Metrics, legend: LegendItem[]): Figure {
  const f = FRAME;
  const x = scalePoint<string>()
    .domain(['before', 'after'])
    .range([f.left, f.width - f.right])
    .padding(0.5);
  const pairs = kappaBeforeAfterPairs(metrics);
  const y = logScale(
    pairs.flatMap((s) => s.pts.map((p) => p[1])),
    [f.height - f.bottom, f.top],
  );
  const parts = [logYAxis(y, { label: 'condition number κ' })];
  const base = f.height - f.bottom;
  parts.push(`<line class="axis" x1="${f.left}" x2="${f.width - f.right}" y1="${base}" y2="${base}"/>`);
  for (const c of x.domain()) parts.push(text(x(c)!, base + 17, c, 'class="tick" text-anchor="middle"'));
  let points = 0;
  for (const s of pairs) {
    const xy = s.pts.map(([c, v]): Pt => [x(c)!, y(v)]);
    if (xy.length === 2)
      parts.push(`<path class="guide" d="M${xy[0][0].toFixed(1)},${xy[0][1].toFixed(1)}L${xy[1][0].toFixed(1)},${xy[1][1].toFixed(1)}" stroke="${s.color}"/>`);
    parts.push(marksPath(dotsPath(xy, 5), xy.length, s.color, s.name));
    s.pts.forEach(([, v], i) => parts.push(text(xy[i][0] + 9, xy[i][1] + 4, esc(fmt(v)), 'class="value"')));
    points += xy.length;
  }
  const why = metrics.method === 'evaluate' ? 'This θ was evaluated, not optimised here' : 'The closed form computes θ in one go';
  return {
    heading: 'κ before and after θ',
    svg: chartSvg({ family: 'kappa-steps', points, title: 'κ(H_P) and κ(H_H) before and after θ (no optimisation steps)', body: parts.join('') }),
    caption:
      `${why}: there are no optimisation steps, so the chart shows κ before and after only (${points} points).` +
      (points < 4 ? ` ${4 - points} of the four κ's are undefined and not drawn.` : ''),
    legend,
  };
}

type KappaStep = Curves['kappaSteps'][number];

function kappaHistoryChart(history: KappaStep[], legend: LegendItem[]): Figure {
  const f = FRAME;
  const shown = stride(history, MAX_STEP_POINTS);
  const seriesDefs = [
    { name: 'κ(H_P), benign', color: COLORS.benign, pick: (h: KappaStep) => h.benign },
    { name: 'κ(H_H), harmful', color: COLORS.harmful, pick: (h: KappaStep) => h.harmful },
  ];
  let skipped = 0;
  const series = seriesDefs.map((s) => {
    const pts: Pt[] = [];
    for (const h of shown) {
      const v = s.pick(h) as unknown;
      if (finite(h.step) && finite(v) && v > 0) pts.push([h.step, v]);
      else skipped++;
    }
    return { ...s, pts };
  });
  const [s0, s1] = extent(shown.map((h) => h.step).filter(finite)) as [number | undefined, number | undefined];
  const lo = s0 ?? 0;
  const hi = s1 === undefined || s1 === lo ? lo + 1 : s1;
  const x = scaleLinear()
    .domain([lo, hi])
    .range([f.left, f.width - f.right]);
  const y = logScale(
    series.flatMap((s) => s.pts.map((p) => p[1])),
    [f.height - f.bottom, f.top],
  );
  const parts = [
    logYAxis(y, { label: 'condition number κ' }),
    xAxis(
      x,
      x
        .ticks(6)
        .filter(Number.isInteger)
        .map((t) => [t, String(t)]),
      { label: 'optimisation step' },
    ),
  ];
  let points = 0;
  for (const s of series) {
    points += s.pts.length;
    parts.push(seriesPath(drawLine(s.pts, x, y), s.pts.length, s.color, { name: s.name }));
  }
  const notes = [`${plural(history.length, 'step')}, ${points} points.`];
  if (shown.length < history.length) notes.push(`The steps are evenly strided: ${shown.length} of ${history.length} drawn, the first and the last kept.`);
  if (skipped > 0) notes.push(`${plural(skipped, 'value')} with an undefined or infinite κ ${skipped === 1 ? 'is' : 'are'} left out.`);
  return {
    heading: 'κ over the optimisation steps',
    svg: chartSvg({ family: 'kappa-steps', points, title: 'κ(H_P) and κ(H_H) over the optimisation steps', body: parts.join('') }),
    caption: notes.join(' '),
    legend,
  };
}

// ---------------------------------------------------------------------------------------------- attacks

const stepLabel = (v: number) => (v >= 1e6 ? `${v / 1e6}M` : v >= 1e3 ? `${v / 1e3}k` : String(v));

export function attackChart(curve: Curves['attacks'][number], outcome: Metrics['attacks'][number] | undefined): Figure {
  const f = FRAME;
  const color = curve.data === 'benign' ? COLORS.benign : COLORS.harmful;
  let clamped = 0;
  let missing = 0;
  let strided = 0;
  const prepare = (raw: Array<[number, number | null]> | undefined): Pt[] => {
    const pts: Pt[] = [];
    for (const [s, v] of raw ?? []) {
      if (finite(s) && finite(v)) pts.push([s, v]);
      else missing++;
    }
    strided += Math.max(0, pts.length - MAX_ATTACK_POINTS);
    return stride(pts, MAX_ATTACK_POINTS).map(([s, v]): Pt => {
      if (v <= SUBOPTIMALITY_FLOOR) clamped++;
      return [s, Math.max(v, SUBOPTIMALITY_FLOOR)];
    });
  };
  const series = [
    { name: 'raw features', pts: prepare(curve.raw as Array<[number, number | null]>), dash: true },
    { name: 'immunized features', pts: prepare(curve.immunized as Array<[number, number | null]>), dash: false },
  ];
  const lastStep = Math.max(1, ...series.flatMap((s) => s.pts.map((p) => p[0])));
  const x = scaleSymlog()
    .domain([0, lastStep])
    .range([f.left, f.width - f.right]);
  const target = outcome && finite(outcome.target) && outcome.target > 0 ? outcome.target : null;
  const yValues = series.flatMap((s) => s.pts.map((p) => p[1]));
  if (target !== null) yValues.push(target);
  const y = logScale(yValues, [f.height - f.bottom, f.top]);
  const decades: number[] = [0];
  for (let v = 1; v <= lastStep; v *= 10) decades.push(v);
  const keep = Math.max(1, Math.ceil(decades.length / 7));
  const ticks = decades.filter((_, i) => i % keep === 0).map((v): [number, string] => [v, stepLabel(v)]);
  const parts = [logYAxis(y, { label: 'relative suboptimality' }), xAxis(x, ticks, { label: 'step (log scale past 1)', grid: true })];
  if (target !== null) {
    const ty = y(target).toFixed(1);
    parts.push(`<line class="target" x1="${f.left}" x2="${f.width - f.right}" y1="${ty}" y2="${ty}"/>`);
    parts.push(text(f.left + 6, Number(ty) - 5, `target ${esc(fmt(target))}`, 'class="note"'));
  }
  let points = 0;
  for (const s of series) {
    points += s.pts.length;
    parts.push(seriesPath(drawLine(s.pts, x, y), s.pts.length, color, { name: `${curve.data}, ${s.name}`, dash: s.dash }));
  }
  const notes: string[] = [];
  if (outcome) {
    notes.push(
      `To reach the target the attacker needs ${plural(outcome.stepsRaw, 'step')} on the raw features and ${outcome.stepsImmunized}` +
        `${outcome.capped ? ' (stopped at the cap, so at least that many)' : ''} on the immunized ones: ${slowdownText(outcome)}.`,
    );
  }
  notes.push(`${points} points.`);
  if (clamped > 0)
    notes.push(
      `${plural(clamped, 'point')} at or below ${powerOfTen(-16)} (the limit of float64 relative to the start) ${clamped === 1 ? 'is' : 'are'} drawn at ${powerOfTen(-16)}.`,
    );
  if (strided > 0) notes.push(`${plural(strided, 'point')} of long curves skipped (evenly strided to ${MAX_ATTACK_POINTS} a curve).`);
  if (missing > 0) notes.push(`${plural(missing, 'point')} with no finite value ${missing === 1 ? 'is' : 'are'} left out.`);
  return {
    heading:
      `${curve.data} data` + (outcome ? `: ${outcome.stepsRaw} → ${outcome.stepsImmunized}${outcome.capped ? '+' : ''} steps, ${slowdownText(outcome)}` : ''),
    svg: chartSvg({
      family: 'attacks',
      points,
      title: `${attackerLabel(curve.attacker)} on the ${curve.data} data: raw vs immunized`,
      body: parts.join(''),
      data: { attacker: curve.attacker, data: curve.data },
    }),
    caption: notes.join(' '),
    legend: [
      { label: 'raw features', color, kind: 'dashed' },
      { label: 'immunized features', color, kind: 'line' },
    ],
  };
}

export const ATTACKER_LABELS: Record<string, string> = {
  gd: 'Gradient descent, step 1/L',
  'gd-exact': 'Gradient descent, exact line search',
  'gd-exact-standardized': 'Exact line search on z-scored features',
  adam: 'Adam (best learning rate of the grid)',
  'adam-standardized': 'Adam on z-scored features',
  newton: 'Newton / whitened gradient descent',
};

export function attackerLabel(name: string): string {
  return ATTACKER_LABELS[name] ?? name;
}

// ---------------------------------------------------------------------------------------------- summary

export const PAPER_TABLE1_HOUSE_PRICE = { harmfulRatio: 18.92, benignRatio: 0.053, rir: 356.2 };

export function summaryChart(metrics: Metrics, paperRow: boolean): Figure {
  const sources = summarySources(metrics, paperRow);
  const groups = summaryGroups(metrics, paperRow);
  const layout = summaryLayout(groups);
  const { rows, frame } = layout;
  const plotted = rows.filter((r): r is SummaryRow & { value: number } => finite(r.value) && r.value > 0);
  const x = scaleLog()
    .domain([Math.min(1, min(plotted, (r) => r.value) ?? 1), Math.max(1, max(plotted, (r) => r.value) ?? 1) * 1.0001])
    .range([frame.left, frame.width - frame.right])
    .nice();
  const parts = summaryAxes(x, groups, layout);
  const points = summaryBars({ x, sources, plotted, layout, parts });
  const left = rows.length - plotted.length;
  return {
    heading: 'Ratios on a log scale',
    svg: chartSvg({
      family: 'summary',
      points,
      title: 'κ ratios, RIR and the RIR* bound' + (paperRow ? ", beside the paper's Table 1" : ''),
      body: parts.join(''),
      frame,
    }),
    caption:
      `${points} bars, on a log axis centred on 1 (no change): a harmful ratio should reach right, a benign ratio left.` +
      (left > 0 ? ` ${plural(left, 'value')} undefined or not positive, so not drawn.` : ''),
    legend: sources.filter((s) => plotted.some((r) => r.source === s.key)).map((s) => ({ label: s.label, color: s.color, kind: 'bar' })),
  };
}

interface SummarySource {
  key: string;
  label: string;
  color: string;
}

interface SummaryGroup {
  label: string;
  bars: Array<[string, unknown]>;
}

interface SummaryRow {
  id: string;
  group: string;
  source: string;
  value: unknown;
}

interface SummaryLayout {
  rows: SummaryRow[];
  frame: Frame;
  rowHeight: number;
  /** The top of each bar's band, by row id (`group:bar`). */
  yBand: Map<string, number>;
}

function summarySources(metrics: Metrics, paperRow: boolean): SummarySource[] {
  return [
    { key: 'ours', label: 'ours (rank-aware κ)', color: COLORS.ours },
    { key: 'rule', label: "ours, paper's κ rule", color: COLORS.oursPaperRule },
    ...(paperRow ? [{ key: 'paper', label: 'paper, Table 1', color: COLORS.paper }] : []),
    {
      key: 'bound',
      label: metrics.warnings.some((w) => w.field === 'rirBound') ? 'RIR* (a reference: K_P rank-deficient)' : 'RIR* bound',
      color: COLORS.bound,
    },
  ];
}

function summaryGroups(metrics: Metrics, paperRow: boolean): SummaryGroup[] {
  const pc = metrics.paperConvention ?? ({} as Partial<Metrics['paperConvention']>);
  return [
    {
      label: 'harmful ratio ↑',
      bars: [
        ['ours', metrics.harmfulRatio],
        ['rule', pc.harmfulRatio],
        ...(paperRow ? [['paper', PAPER_TABLE1_HOUSE_PRICE.harmfulRatio] as [string, number]] : []),
      ],
    },
    {
      label: 'benign ratio ↓',
      bars: [
        ['ours', metrics.benignRatio],
        ['rule', pc.benignRatio],
        ...(paperRow ? [['paper', PAPER_TABLE1_HOUSE_PRICE.benignRatio] as [string, number]] : []),
      ],
    },
    { label: 'RIR ↑', bars: [['ours', metrics.rir], ['rule', pc.rir], ...(paperRow ? [['paper', PAPER_TABLE1_HOUSE_PRICE.rir] as [string, number]] : [])] },
    { label: metrics.warnings.some((w) => w.field === 'rirBound') ? 'RIR* (reference)' : 'RIR* (bound)', bars: [['bound', metrics.rirBound]] },
  ];
}

/** One row per bar, stacked group by group with a gap between groups; the frame's height follows the rows. */
function summaryLayout(groups: SummaryGroup[]): SummaryLayout {
  const rows = groups.flatMap((g, gi) => g.bars.map(([source, value], bi) => ({ id: `${gi}:${bi}`, group: g.label, source, value })));
  const rowHeight = 20;
  const gap = 10;
  const frame: Frame = { width: FRAME.width, height: 0, top: 10, right: 70, bottom: 40, left: 118 };
  frame.height = frame.top + frame.bottom + rows.length * rowHeight + (groups.length - 1) * gap;
  const yBand = new Map<string, number>();
  let cursor = frame.top;
  for (const [gi, g] of groups.entries()) {
    const band = scaleBand<number>()
      .domain(g.bars.map((_, i) => i))
      .range([cursor, cursor + g.bars.length * rowHeight])
      .paddingInner(0.2);
    for (let i = 0; i < g.bars.length; i++) yBand.set(`${gi}:${i}`, band(i)!);
    cursor += g.bars.length * rowHeight + gap;
  }
  return { rows, frame, rowHeight, yBand };
}

/** The decade axis, the reference line at 1 and each group's label. */
function summaryAxes(x: ScaleLogarithmic<number, number>, groups: SummaryGroup[], { frame, rowHeight, yBand }: SummaryLayout): string[] {
  const parts: string[] = [];
  const [lo, hi] = x.domain();
  const decades: number[] = [];
  for (let e = Math.round(Math.log10(lo)); e <= Math.round(Math.log10(hi)); e++) decades.push(e);
  const keep = Math.max(1, Math.ceil(decades.length / 7));
  parts.push(
    xAxis(
      (v) => x(v),
      decades.filter((e) => e % keep === 0 || e === 0).map((e): [number, string] => [10 ** e, powerOfTen(e)]),
      { label: 'ratio (log scale; 1 = unchanged)', grid: true, frame },
    ),
  );
  const one = x(1).toFixed(1);
  parts.push(`<line class="reference" x1="${one}" x2="${one}" y1="${frame.top - 4}" y2="${frame.height - frame.bottom}"/>`);
  for (const [gi, g] of groups.entries()) {
    const top = yBand.get(`${gi}:0`)!;
    const mid = top + (g.bars.length * rowHeight) / 2 - 2;
    parts.push(text(frame.left - 8, mid + 4, esc(g.label), 'class="tick" text-anchor="end"'));
  }
  return parts;
}

/** Appends one path of bars (from 1 to the value) per source, with value labels, to parts; returns the bars drawn. */
function summaryBars(o: {
  x: ScaleLogarithmic<number, number>;
  sources: SummarySource[];
  plotted: Array<SummaryRow & { value: number }>;
  layout: SummaryLayout;
  parts: string[];
}): number {
  const { x, sources, plotted, parts } = o;
  const { rowHeight, yBand } = o.layout;
  const band = rowHeight * 0.8;
  let points = 0;
  for (const s of sources) {
    const mine = plotted.filter((r) => r.source === s.key);
    if (mine.length === 0) continue;
    const d = mine
      .map((r) => {
        const y0 = yBand.get(r.id)!;
        const a = Math.min(x(1), x(r.value));
        const b = Math.max(x(1), x(r.value), a + 1);
        return `M${a.toFixed(1)},${y0.toFixed(1)}H${b.toFixed(1)}V${(y0 + band).toFixed(1)}H${a.toFixed(1)}Z`;
      })
      .join('');
    parts.push(marksPath(d, mine.length, s.color, s.label));
    for (const r of mine) {
      const y0 = yBand.get(r.id)!;
      const right = r.value >= 1;
      parts.push(text(x(r.value) + (right ? 4 : -4), y0 + band - 4, esc(fmt(r.value)), `class="value" text-anchor="${right ? 'start' : 'end'}"`));
    }
    points += mine.length;
  }
  return points;
}

// ---------------------------------------------------------------------------------------------- deep mode

/**
 * Deep-mode jobs repeat the whole run over random draws. Their metrics.deep may list the draws
 * (`draws: [{rir: …, harmfulRatio: …}, …]`) or give each quantity's values (`{rir: […], …}`, optionally under
 * `distributions`); either way each numeric quantity becomes one distribution.
 */
export function deepDistributions(deep: unknown): Array<[string, number[]]> {
  if (!deep || typeof deep !== 'object') return [];
  const d = deep as Record<string, unknown>;
  const out = new Map<string, number[]>();
  if (Array.isArray(d.draws)) {
    for (const draw of d.draws) {
      if (!draw || typeof draw !== 'object') continue;
      for (const [k, v] of Object.entries(draw as Record<string, unknown>)) {
        if (finite(v)) (out.get(k) ?? out.set(k, []).get(k)!).push(v);
      }
    }
  }
  const lists = d.distributions && typeof d.distributions === 'object' ? (d.distributions as Record<string, unknown>) : d;
  for (const [k, v] of Object.entries(lists)) {
    if (Array.isArray(v) && v.length > 0 && v.every((e) => typeof e === 'number' || e === null)) {
      const values = v.filter(finite);
      if (values.length > 0 && !out.has(k)) out.set(k, values);
    }
  }
  return [...out.entries()];
}

export function deepChart(name: string, values: number[]): Figure {
  const frame: Frame = { width: FRAME.width, height: 120, top: 12, right: 20, bottom: 40, left: 20 };
  const sorted = [...values].sort((a, b) => a - b);
  const lo = sorted[0];
  const hi = sorted[sorted.length - 1];
  const useLog = lo > 0 && hi / lo > 10;
  const range: [number, number] = [frame.left, frame.width - frame.right];
  const x = useLog
    ? scaleLog().domain([lo, hi]).range(range).nice()
    : scaleLinear()
        .domain(lo === hi ? [lo - 1, hi + 1] : [lo, hi])
        .range(range)
        .nice();
  const ticks: Array<[number, string]> = useLog
    ? (() => {
        const [a, b] = x.domain().map((v) => Math.round(Math.log10(v)));
        const keep = Math.max(1, Math.ceil((b - a + 1) / 7));
        const t: Array<[number, string]> = [];
        for (let e = a; e <= b; e += keep) t.push([10 ** e, powerOfTen(e)]);
        return t;
      })()
    : x.ticks(6).map((t): [number, string] => [t, fmt(t)]);
  const mid = frame.top + (frame.height - frame.top - frame.bottom) / 2;
  const spread = (frame.height - frame.top - frame.bottom) * 0.35;
  const q1 = x(quantileSorted(sorted, 0.25)!);
  const q3 = x(quantileSorted(sorted, 0.75)!);
  const med = x(quantileSorted(sorted, 0.5)!);
  const parts = [
    xAxis((v) => x(v), ticks, { label: `${name}${useLog ? ' (log scale)' : ''}`, grid: true, frame }),
    `<path class="guide box" d="M${q1.toFixed(1)},${(mid - spread).toFixed(1)}H${q3.toFixed(1)}V${(mid + spread).toFixed(1)}H${q1.toFixed(1)}Z"/>`,
    `<path class="guide median" d="M${med.toFixed(1)},${(mid - spread).toFixed(1)}V${(mid + spread).toFixed(1)}"/>`,
  ];
  // A fixed, evenly spread vertical offset per draw keeps overlapping values visible and the output reproducible.
  const xy = values.map((v, i): Pt => [x(v), mid + (((i * 0.618034) % 1) - 0.5) * spread * 1.6]);
  parts.push(marksPath(dotsPath(xy, 3.5), xy.length, COLORS.benign, name, '#fff'));
  return {
    heading: name,
    svg: chartSvg({
      family: 'summary',
      points: xy.length,
      title: `${name} over ${values.length} draws`,
      body: parts.join(''),
      frame,
      data: { series: `deep:${name}` },
    }),
    caption: `${plural(values.length, 'draw')}: median ${fmt(quantileSorted(sorted, 0.5))}, quartiles ${fmt(quantileSorted(sorted, 0.25))} – ${fmt(quantileSorted(sorted, 0.75))}, range ${fmt(lo)} – ${fmt(hi)}.`,
    legend: [],
  };
}
