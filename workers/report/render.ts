/**
 * report.html: one self-contained page per job, drawn from its metrics.json and curves.json. No scripts, no fonts,
 * no network: the CSS is inline, the charts are SVG rendered here, and a Content-Security-Policy forbids the rest.
 */
import type { Curves, Metrics } from '../../models/engine/index.js';
import { slowdownText } from '../../models/engine/index.js';
import { VERDICT_THRESHOLDS } from '../../models/engine/index.js';
import {
  attackChart,
  attackerLabel,
  deepChart,
  deepDistributions,
  kappaStepsChart,
  PAPER_TABLE1_HOUSE_PRICE,
  spectraChart,
  summaryChart,
  type Figure,
} from './charts.js';
import { esc, fmt, resetChartIds } from './svg.js';

export interface ReportOptions {
  /** Show the paper's Table 1 row for House Price beside ours. Only the House Price demo should set it. */
  paperRow?: boolean;
  /** A heading for the page, e.g. the dataset names. */
  title?: string;
  jobId?: string;
}

/** Deep-mode jobs add their per-draw results under `deep`; see deepDistributions for the accepted shapes. */
export type ReportMetrics = Metrics & { deep?: unknown };

export const REPORT_CONTENT_TYPE = 'text/html; charset=utf-8';

export function renderReport(metrics: ReportMetrics, curves: Curves, opts: ReportOptions = {}): string {
  resetChartIds();
  const paperRow = opts.paperRow === true;
  const heading = opts.title ? `Immunization report: ${opts.title}` : 'Immunization report';
  const sections = [
    summarySection(metrics, paperRow),
    section(
      'conditioning',
      'Conditioning',
      "Left, the Hessians' eigenvalues, largest first: κ is the ratio of the largest to the smallest one that counts, so immunization " +
        'should stretch the harmful spectrum and compress the benign one. Right, κ(H_P) should fall (or hold) while κ(H_H) rises.',
      [
        ['spectra', spectraChart(curves?.spectra, metrics.dim)],
        ['kappa', kappaStepsChart(metrics, curves?.kappaSteps)],
      ],
    ),
    attacksSection(metrics, curves),
    deepSection(metrics.deep),
    detailsSection(metrics),
  ];
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>${esc(heading)}</title>
<style>${CSS}</style>
</head>
<body data-verdict="${esc(metrics.verdict)}" data-dim="${esc(metrics.dim)}" data-paper-row="${paperRow}">
<header>
<h1>${esc(heading)}</h1>
<p class="meta">${esc(describeJob(metrics, opts))}</p>
<nav><a href="#summary">Summary</a><a href="#spectra">Spectra</a><a href="#kappa">κ</a><a href="#attacks">Attacks</a>${deepDistributions(metrics.deep).length ? '<a href="#deep">Deep mode</a>' : ''}<a href="#details">Details</a></nav>
</header>
<main>
${sections.filter(Boolean).join('\n')}
</main>
<footer>Drawn from metrics.json and curves.json by immunize. This file is self-contained and loads nothing.</footer>
</body>
</html>
`;
}

function describeJob(m: Metrics, opts: ReportOptions): string {
  const rows = m.rows
    ? `benign ${m.rows.benign} rows, harmful ${m.rows.harmful} rows${m.rows.benignTest ? `, benign test ${m.rows.benignTest} rows` : ''}`
    : '';
  return [opts.jobId ? `job ${opts.jobId}` : '', `method ${m.method}`, m.task ? `task ${m.task}` : 'no benign labels', `D = ${m.dim}`, rows]
    .filter(Boolean)
    .join(' · ');
}

function figure(f: Figure, id?: string): string {
  const legend = f.legend.length
    ? `<ul class="legend">${f.legend.map((l) => `<li><span class="sw ${l.kind}" style="color:${esc(l.color)}"></span>${esc(l.label)}</li>`).join('')}</ul>`
    : '';
  return `<figure${id ? ` id="${id}"` : ''}><h3 class="fig-title">${esc(f.heading)}</h3>${f.svg}${legend}<figcaption>${esc(f.caption)}</figcaption></figure>`;
}

function section(id: string, title: string, intro: string, figures: Array<[string | undefined, Figure]>): string {
  return `<section id="${id}"><h2>${esc(title)}</h2><p class="intro">${esc(intro)}</p><div class="cards">${figures.map(([fid, f]) => figure(f, fid)).join('')}</div></section>`;
}

/**
 * A column of a report table: its header and how its cells line up. Numbers (and the ≤/≥ targets, steps and
 * slowdowns beside them) are right-aligned, so their digits stack; words are left-aligned. The header takes its
 * column's alignment, so it always stands over its cells.
 */
type Column = [head: string, align: 'num' | 'text'];

function table(cols: Column[], rows: string[][], cls = ''): string {
  const attr = (i: number) => (cols[i]?.[1] === 'num' ? ' class="num"' : '');
  return (
    `<div class="table-wrap"><table${cls ? ` class="${cls}"` : ''}><thead><tr>${cols.map(([h], i) => `<th scope="col"${attr(i)}>${h}</th>`).join('')}</tr></thead>` +
    `<tbody>${rows.map((r) => `<tr>${r.map((c, i) => (i === 0 ? `<th scope="row"${attr(i)}>${c}</th>` : `<td${attr(i)}>${c}</td>`)).join('')}</tr>`).join('')}</tbody></table></div>`
  );
}

function verdictBlock(m: Metrics): string {
  const t = VERDICT_THRESHOLDS;
  const reasons = m.verdictReasons ?? [];
  const explain =
    reasons.length > 0
      ? `<ul class="reasons">${reasons.map((r) => `<li>${esc(r)}</li>`).join('')}</ul>`
      : `<p>All checks pass: harmful κ ratio ≥ ${t.harmfulRatio}, benign κ ratio ≤ ${t.benignRatio}, and every first-order attacker (gradient descent, exact line search and Adam, on raw and on z-scored features) was measured and is slowed ≥ ${t.harmfulSlowdown}× on the harmful data and at most ${t.benignSlowdown}× on the benign data.</p>`;
  const notes = (m.verdictNotes ?? []).map((n) => `<p class="note">${esc(n)}</p>`).join('');
  return `<div class="verdict v-${esc(m.verdict)}"><span class="badge">${esc(String(m.verdict).toUpperCase())}</span>${explain}${notes}</div>`;
}

function summarySection(m: Metrics, paperRow: boolean): string {
  const k = m.kappa;
  const pc = m.paperConvention;
  const kappaTable = table(
    [
      ['', 'text'],
      ['κ before', 'num'],
      ['κ after', 'num'],
      ['ratio after / before', 'num'],
      ['wanted', 'num'],
    ],
    [
      ['benign, H_P', fmt(k?.benign?.before), fmt(k?.benign?.after), `<b>${fmt(m.benignRatio)}</b>`, `≤ ${VERDICT_THRESHOLDS.benignRatio}`],
      ['harmful, H_H', fmt(k?.harmful?.before), fmt(k?.harmful?.after), `<b>${fmt(m.harmfulRatio)}</b>`, `≥ ${VERDICT_THRESHOLDS.harmfulRatio}`],
    ],
  );
  const rows = [
    ['ours (rank-aware κ)', fmt(m.harmfulRatio), fmt(m.benignRatio), fmt(m.rir)],
    ["ours, paper's κ rule (+10⁻⁶·I)", fmt(pc?.harmfulRatio), fmt(pc?.benignRatio), fmt(pc?.rir)],
  ];
  if (paperRow) {
    const p = PAPER_TABLE1_HOUSE_PRICE;
    rows.push(['paper, Table 1 (House Price)', fmt(p.harmfulRatio), fmt(p.benignRatio), fmt(p.rir)]);
  }
  const compare = table(
    [
      ['', 'text'],
      ['harmful ratio ↑', 'num'],
      ['benign ratio ↓', 'num'],
      ['RIR ↑', 'num'],
    ],
    rows,
    paperRow ? 'compare with-paper' : 'compare',
  );
  const q = m.benignQuality;
  const ownHead = heldOutAccuracy((m as ReportMetrics).deep);
  const quality = ownHead
    ? `${fmt(ownHead.before)} → ${fmt(ownHead.after)} <span class="hint">the model's own head on ${ownHead.rows} held-out images${ownHead.heldOut === 'benignTest' ? ' (--benign-test)' : ownHead.heldOut ? ` (${esc(ownHead.heldOut)})` : ''}</span>`
    : q?.metric
      ? `${fmt(q.before)} → ${fmt(q.after)} <span class="hint">the best linear probe on the benign training rows</span>` +
        (q.test != null ? `; ${fmt(q.test)} <span class="hint">on the held-out benign test rows, after θ</span>` : '')
      : 'not scored (no benign labels)';
  const key = table(
    [
      ['quantity', 'text'],
      ['value', 'text'],
    ],
    [
      ['RIR', fmt(m.rir)],
      m.warnings.some((w) => w.field === 'rirBound')
        ? [
            'RIR* (a reference)',
            `${fmt(m.rirBound)} <span class="hint">κ(M)·κ(K_P)/κ(K_H), M = K_P^{-1/2}K_HK_P^{-1/2}; K_P is rank-deficient, so this is not a bound: RIR can exceed it</span>`,
          ]
        : [
            'RIR* (bound)',
            `${fmt(m.rirBound)} <span class="hint">κ(M)·κ(K_P)/κ(K_H): the most RIR any invertible linear θ can reach here (≤ 1: immunization is impossible)</span>`,
          ],
      ['κ(θ)', `${fmt(m.thetaCondition)} <span class="hint">budget ${fmt(m.kappaBudget)}</span>`],
      [`benign quality${q?.metric ? ` (${esc(q.metric)})` : ''}, before → after`, quality],
      ['compensated head, max deviation', fmt(q?.headMaxDeviation)],
    ],
    'key',
  );
  const chart = summaryChart(m, paperRow);
  return `<section id="summary"><h2>Summary</h2>${verdictBlock(m)}<div class="cards">
<div class="panel"><h3>Condition numbers</h3>${kappaTable}<h3>Ratios${paperRow ? " beside the paper's" : ''}</h3>${compare}<h3>Key figures</h3>${key}</div>
${figure(chart)}</div></section>`;
}

function attacksSection(m: Metrics, curves: Curves): string {
  const list = curves?.attacks ?? [];
  const outcome = (a: string, d: string) => (m.attacks ?? []).find((o) => o.attacker === a && o.data === d);
  const attackers = [...new Set(list.map((c) => c.attacker))];
  const blocks = attackers.map((a) => {
    const charts = list.filter((c) => c.attacker === a).map((c) => figure(attackChart(c, outcome(c.attacker, c.data))));
    return `<h3>${esc(attackerLabel(a))} <code>${esc(a)}</code></h3><div class="cards">${charts.join('')}</div>`;
  });
  const steps = table(
    [
      ['attacker', 'text'],
      ['data', 'text'],
      ['target', 'num'],
      ['steps raw', 'num'],
      ['steps immunized', 'num'],
      ['slowdown', 'num'],
      ['status', 'text'],
    ],
    (m.attacks ?? []).map((o) => [
      esc(attackerLabel(o.attacker)),
      esc(o.data),
      fmt(o.target),
      String(o.stepsRaw ?? '—'),
      `${o.stepsImmunized ?? '—'}${o.capped ? ' (cap)' : ''}`,
      esc(slowdownText(o)),
      esc(o.status ?? '—'),
    ]),
  );
  const intro =
    'Each attacker fits a linear probe on the raw and on the immunized features. The target is what it reaches on the raw ones in 1,000 steps (at least 10⁻⁶); ' +
    "the slowdown is how many more steps it needs on the immunized ones. A run stopped at its cap gives a lower bound (≥); a run whose cap could not show the verdict's threshold (and any capped benign run) is unmeasured, and an unmeasured attacker never counts as a pass. Newton ignores κ altogether: it is the honest limit of condition-number immunization.";
  const body = list.length ? blocks.join('') : '<p class="empty">This job has no attack curves.</p>';
  return `<section id="attacks"><h2>Attacks: suboptimality against the step</h2><p class="intro">${esc(intro)}</p>${steps}${body}</section>`;
}

/** A last-block job scores the model's own head, before and after its block was trained, on held-out images. */
function heldOutAccuracy(deep: unknown): { before: number | null; after: number | null; rows: number; heldOut: string | null } | null {
  const a = (deep as { benignAccuracy?: { before: number | null; after: number | null; rows: number; heldOut: string | null } } | undefined)?.benignAccuracy;
  return a && typeof a.rows === 'number' ? a : null;
}

function deepSection(deep: unknown): string {
  const dists = deepDistributions(deep);
  if (dists.length === 0) return '';
  return section(
    'deep',
    'Deep mode: distributions over the draws',
    'Each dot is one draw; the box spans the quartiles and the bar marks the median.',
    dists.map(([name, values]) => [undefined, deepChart(name, values)]),
  );
}

function detailsSection(m: Metrics): string {
  const opt = m.optimizer;
  const t = m.timings;
  const rows: string[][] = [
    [
      'optimiser',
      opt
        ? `${esc(opt.stopReason)} after ${opt.steps ?? '—'} steps${
            Object.keys(opt.details ?? {}).length
              ? ' (' +
                Object.entries(opt.details)
                  .map(([k, v]) => `${esc(k)} ${fmt(v)}`)
                  .join(', ') +
                ')'
              : ''
          }`
        : '—',
    ],
    ['engine time', t ? `${fmt(t.engineSeconds)} s (θ ${fmt(t.solveSeconds)} s, metrics ${fmt(t.metricsSeconds)} s, attacks ${fmt(t.attackSeconds)} s)` : '—'],
    ['OpenBLAS core', esc(m.openblasCore ?? '—')],
  ];
  const warnings = m.warnings ?? [];
  const warn = warnings.length
    ? `<details><summary>${warnings.length} warning${warnings.length === 1 ? '' : 's'}</summary><ul>${warnings.map((w) => `<li><code>${esc(w.field)}</code>: ${esc(w.reason)}</li>`).join('')}</ul></details>`
    : '<p>No warnings.</p>';
  return `<section id="details"><h2>Details</h2>${table(
    [
      ['item', 'text'],
      ['value', 'text'],
    ],
    rows,
    'key',
  )}${warn}</section>`;
}

const CSS = `
:root{--fg:#1c1e21;--muted:#5c6370;--bg:#fff;--panel:#f6f7f9;--line:#d8dbe0;--grid:#e7e9ed;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--fg:#e6e8eb;--muted:#a0a7b1;--bg:#16181b;--panel:#1f2226;--line:#363a40;--grid:#2b2f34}}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header,main,footer{max-width:1240px;margin:0 auto;padding:0 16px}
header{padding-top:12px}
h1{font-size:clamp(1.3rem,4vw,1.8rem);margin:.3em 0}
h2{font-size:1.3rem;margin:1.4em 0 .3em;border-bottom:1px solid var(--line);padding-bottom:.2em}
h3{font-size:1.05rem;margin:1em 0 .4em}
.meta,.intro,figcaption,.hint,footer{color:var(--muted)}
.intro{max-width:80ch;margin:.2em 0 .8em}
nav{display:flex;flex-wrap:wrap;gap:4px 16px;font-size:14px}
nav a{color:inherit}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,480px),1fr));gap:16px;align-items:start}
figure,.panel{margin:0;background:var(--panel);border:1px solid var(--line);border-radius:8px;padding:10px;min-width:0}
.panel h3:first-child,.fig-title{margin-top:0}
.fig-title{font-size:1rem;margin-bottom:4px}
figcaption{font-size:13px;margin-top:4px}
.chart{display:block;width:100%;height:auto}
.chart text{font-size:14px;fill:var(--fg)}
.chart .tick{fill:var(--muted);font-size:13px}
.chart .label{fill:var(--muted)}
.chart .note,.chart .value{font-size:13px}
.chart .grid{stroke:var(--grid);stroke-width:1}
.chart .axis{stroke:var(--muted);stroke-width:1}
.chart .target{stroke:var(--muted);stroke-width:1.2;stroke-dasharray:2 3}
.chart .reference{stroke:var(--fg);stroke-width:1.3}
.chart .guide{fill:none;stroke-width:1;stroke-dasharray:3 3;opacity:.7}
.chart .box{fill:rgba(31,111,180,.15);stroke:#1f6fb4;opacity:1}
.chart .median{stroke:#1f6fb4;stroke-width:2.5;stroke-dasharray:none;opacity:1}
.legend{list-style:none;display:flex;flex-wrap:wrap;gap:2px 16px;padding:0;margin:6px 0 0;font-size:13px}
.sw{display:inline-block;width:22px;margin-right:6px;vertical-align:middle}
.sw.line{border-top:3px solid currentColor}
.sw.dashed{border-top:3px dashed currentColor}
.sw.bar{height:11px;background:currentColor}
.sw.dot{width:11px;height:11px;border-radius:50%;background:currentColor}
.table-wrap{overflow-x:auto;-webkit-overflow-scrolling:touch;max-width:100%}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums;font-size:14px}
th,td{padding:4px 10px;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap;vertical-align:baseline}
th.num,td.num{text-align:right}
thead th{font-weight:600;color:var(--muted);vertical-align:bottom}
tbody th{font-weight:500}
table.key tbody th{width:1%}
table.key td{white-space:normal;overflow-wrap:break-word}
table.with-paper tbody tr:last-child{background:rgba(107,107,107,.12)}
.hint{font-size:12px;margin-left:.5em}
.verdict{display:flex;flex-wrap:wrap;align-items:baseline;gap:6px 14px;padding:10px 12px;border-radius:8px;border:1px solid var(--line);margin:.5em 0 1em}
.verdict p,.verdict ul{margin:0}
.verdict ul{padding-left:1.2em}
.badge{font-weight:700;letter-spacing:.04em;padding:2px 10px;border-radius:999px;color:#fff}
.v-immunized .badge{background:#2e7d32}.v-weak .badge{background:#b26a00}.v-infeasible .badge{background:#c62828}
code{font-size:.9em}
details{margin:.6em 0}
footer{font-size:13px;padding-top:24px;padding-bottom:24px}
@media (max-width:600px){body{font-size:14px}header,main,footer{padding:0 10px}figure,.panel{padding:6px}th,td{padding:3px 6px}table.key tbody th{white-space:normal;width:auto;min-width:8em}}
`;
