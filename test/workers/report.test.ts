/** report.html: drawn from a job's real metrics and curves, self-contained, honest about what each chart plots. */
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ATTACKERS } from '../../models/engine/attacks.js';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, type HTMLElement } from 'node-html-parser';
import { immunize, type Curves, type Metrics } from '../../models/engine/immunize.js';
import { loadHousePrice } from '../../models/io/housePrice.js';
import { writeNpy } from '../../models/io/npy.js';
import type { Mat } from '../../models/linalg/types.js';
import { renderReport, type ReportMetrics } from '../../workers/report/render.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const CLI = join(ROOT, 'dist', 'services', 'cli', 'main.js');
const DATA = join(ROOT, 'data', 'house_price');
const FAMILIES = ['summary', 'spectra', 'kappa-steps', 'attacks'];

const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

function charts(doc: HTMLElement, family?: string): HTMLElement[] {
  return doc.querySelectorAll(family ? `svg[data-chart="${family}"]` : 'svg[data-chart]');
}

const points = (svg: HTMLElement) => Number(svg.getAttribute('data-points'));
const captionOf = (svg: HTMLElement) => svg.parentNode!.querySelector('figcaption')!.text;

/** Counts the vertices actually drawn: a line's M and L commands, one subpath (M) per dot or bar. */
function drawnVertices(svg: HTMLElement): number {
  let n = 0;
  for (const path of svg.querySelectorAll('path.series')) {
    const d = path.getAttribute('d') ?? '';
    n += (d.match(path.classList.contains('marks') ? /M/g : /[ML]/g) ?? []).length;
  }
  return n;
}

/** What the summary chart can put on a log axis: the positive, defined ratios. */
function expectedBars(m: Metrics, paperRow: boolean): number {
  const values = [m.harmfulRatio, m.benignRatio, m.rir, m.rirBound, m.paperConvention.harmfulRatio, m.paperConvention.benignRatio, m.paperConvention.rir];
  return values.filter((v) => finite(v) && v > 0).length + (paperRow ? 3 : 0);
}

function checkContract(html: string, metrics: Metrics, curves: Curves, paperRow: boolean, kappaPoints?: number): HTMLElement {
  const doc = parse(html);
  for (const f of FAMILIES) assert.ok(charts(doc, f).length > 0, `no ${f} chart`);
  for (const svg of charts(doc)) {
    assert.ok(FAMILIES.includes(svg.getAttribute('data-chart')!), `unknown family ${svg.getAttribute('data-chart')}`);
    assert.match(svg.getAttribute('viewBox') ?? '', /^0 0 \d+ \d+$/);
    assert.equal(
      drawnVertices(svg),
      points(svg),
      `${svg.getAttribute('data-chart')} ${svg.getAttribute('data-attacker') ?? ''}: data-points vs what its paths draw`,
    );
    for (const path of svg.querySelectorAll('path.series')) assert.ok((path.getAttribute('d') ?? '').length > 0, 'an empty series path');
  }
  assert.equal(points(charts(doc, 'spectra')[0]), 4 * metrics.dim);
  const steps = curves.kappaSteps;
  const expectedKappa = steps.length
    ? steps.filter((s) => finite(s.benign) && s.benign > 0).length + steps.filter((s) => finite(s.harmful) && s.harmful > 0).length
    : [metrics.kappa.benign.before, metrics.kappa.benign.after, metrics.kappa.harmful.before, metrics.kappa.harmful.after].filter((v) => finite(v) && v > 0)
        .length;
  assert.equal(points(charts(doc, 'kappa-steps')[0]), kappaPoints ?? expectedKappa);
  const attackCharts = charts(doc, 'attacks');
  assert.equal(attackCharts.length, curves.attacks.length);
  for (const c of curves.attacks) {
    const svg = attackCharts.find((s) => s.getAttribute('data-attacker') === c.attacker && s.getAttribute('data-data') === c.data);
    assert.ok(svg, `no chart for ${c.attacker} on ${c.data}`);
    const expected = [...c.raw, ...c.immunized].filter(([s, v]) => finite(s) && finite(v)).length;
    assert.equal(points(svg), expected, `${c.attacker} ${c.data}`);
  }
  const summary = charts(doc, 'summary').find((s) => !s.getAttribute('data-series'));
  assert.ok(summary);
  assert.equal(points(summary), expectedBars(metrics, paperRow));
  return doc;
}

function assertSelfContained(html: string): void {
  assert.doesNotMatch(html, /https?:\/\//i, 'a network address in the page');
  assert.doesNotMatch(html, /<script\b/i);
  assert.doesNotMatch(html, /<link\b/i);
  assert.doesNotMatch(html, /<(img|iframe|object|embed|audio|video|source)\b/i);
  assert.doesNotMatch(html, /@import|url\(/i);
  const doc = parse(html);
  for (const el of doc.querySelectorAll('[src], [href]')) {
    const ref = el.getAttribute('src') ?? el.getAttribute('href') ?? '';
    assert.match(ref, /^#/, `${el.tagName} points outside the page: ${ref}`);
  }
  assert.match(html, /Content-Security-Policy" content="default-src 'none'/);
  assert.match(html, /<meta name="viewport" content="width=device-width/);
}

const cli = (args: string[]) =>
  new Promise<{ code: number; stderr: string }>((done) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 120_000 }, (err, _stdout, stderr) =>
      done({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stderr }),
    );
  });

/** Deterministic pseudo-random numbers in [0, 1). */
function lcg(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 16807) % 2147483647;
    return s / 2147483647;
  };
}

describe('report.html of the House Price demo', () => {
  let metrics: Metrics;
  let curves: Curves;
  let closed: { metrics: Metrics; curves: Curves };

  before(async () => {
    const hp = await loadHousePrice(DATA);
    const input = { benign: hp.benign, harmful: hp.harmful, benignTest: hp.benignTest };
    // Through JSON, as the service would read the stored artifacts back.
    const roundTrip = <T>(v: T): T => JSON.parse(JSON.stringify(v));
    const gradient = immunize(input, { method: 'gradient', kappaBudget: 1e4, seed: 0 });
    metrics = roundTrip(gradient.metrics);
    curves = roundTrip(gradient.curves);
    const cf = immunize(input, { method: 'closed-form', kappaBudget: 1e4, seed: 0 });
    closed = { metrics: roundTrip(cf.metrics), curves: roundTrip(cf.curves) };
  });

  it('draws all four families, each data-points what it plots, with the paper row', () => {
    assert.ok(curves.kappaSteps.length > 0);
    const html = renderReport(metrics, curves, { paperRow: true, title: 'House Price demo' });
    const doc = checkContract(html, metrics, curves, true);
    assert.equal(points(charts(doc, 'spectra')[0]), 4 * 79);
    assert.equal(charts(doc, 'attacks').length, ATTACKERS.length * 2);
    assertSelfContained(html);
    const compare = doc.querySelector('table.with-paper');
    assert.ok(compare, 'no comparison table with the paper');
    const paper = compare.querySelectorAll('tbody tr').find((tr) => /paper, Table 1/.test(tr.text));
    assert.ok(paper);
    assert.deepEqual(
      paper.querySelectorAll('td').map((td) => td.text),
      ['18.92', '0.053', '356.2'],
    );
    assert.equal(doc.querySelector('body')!.getAttribute('data-paper-row'), 'true');
    assert.match(doc.querySelector('.verdict .badge')!.text, new RegExp(metrics.verdict, 'i'));
  });

  it('leaves the paper row out unless asked', () => {
    const html = renderReport(metrics, curves);
    const doc = checkContract(html, metrics, curves, false);
    assert.doesNotMatch(html, /Table 1/);
    assert.equal(doc.querySelector('table.with-paper'), null);
  });

  it('shows the summary table: κ before and after, ratios, RIR, RIR*, κ(θ), benign quality', () => {
    const doc = parse(renderReport(metrics, curves, { paperRow: true }));
    const text = doc.querySelector('#summary')!.text;
    for (const label of ['κ before', 'κ after', 'benign, H_P', 'harmful, H_H', 'RIR*', 'κ(θ)', 'benign quality (mse)', 'harmful ratio', 'benign ratio']) {
      assert.ok(text.includes(label), `summary lacks ${label}`);
    }
    assert.ok(doc.querySelectorAll('.table-wrap > table').length >= 3);
  });

  it('prints each attacker with its status: a capped run as a lower bound ≥ ×N, a speed-up as faster, an unmeasured one as such', () => {
    const rows = (doc: ReturnType<typeof parse>) =>
      doc.querySelectorAll('#attacks table tbody tr').map((tr) => tr.querySelectorAll('th, td').map((c) => c.text.trim()));
    const doc = parse(renderReport(metrics, curves));
    const table = rows(doc);
    assert.equal(table.length, metrics.attacks.length);
    for (const [i, a] of metrics.attacks.entries()) {
      const [, , , , , slowdown, status] = table[i];
      assert.equal(status, a.status);
      if (a.status === 'capped') assert.match(slowdown, /^≥ ×\d/);
      else if (a.slowdown! < 1) assert.match(slowdown, /^×[\d.]+ \(faster\)$/);
      else assert.match(slowdown, /^×\d/);
    }
    const unmeasured = { ...metrics, attacks: metrics.attacks.map((a, i) => (i === 0 ? { ...a, status: 'unmeasured' as const, slowdown: null } : a)) };
    assert.equal(rows(parse(renderReport(unmeasured, curves)))[0][5], 'unmeasured');
    // RIR* says in one line what it is.
    assert.match(doc.querySelector('#summary')!.text, /RIR\*[^]*κ\(M\)·κ\(K_P\)\/κ\(K_H\)/);
  });

  it('clamps the non-positive eigenvalues to a floor and says so', () => {
    const negatives = Object.values(curves.spectra)
      .flatMap((s) => [...s.before, ...s.after])
      .filter((v) => !(v > 0)).length;
    assert.ok(negatives > 0, 'the House Price spectra have rounding-noise eigenvalues ≤ 0');
    const doc = parse(renderReport(metrics, curves));
    const caption = captionOf(charts(doc, 'spectra')[0]);
    assert.match(caption, /drawn at that floor/);
    assert.match(caption, /λ_max·10⁻¹⁸/);
  });

  it('draws a closed-form job, which has no steps, as κ before and after', () => {
    assert.equal(closed.curves.kappaSteps.length, 0);
    const doc = checkContract(renderReport(closed.metrics, closed.curves, { paperRow: true }), closed.metrics, closed.curves, true);
    const kappa = charts(doc, 'kappa-steps')[0];
    assert.equal(points(kappa), 4);
    assert.match(captionOf(kappa), /no optimisation steps/);
  });

  it('names the model’s own head on held-out images for a last-block job, and the best probe otherwise', () => {
    const linear = parse(renderReport(metrics, curves)).text;
    assert.match(linear, /the best linear probe on the benign training rows/);
    const deep = { benignAccuracy: { before: 0.96, after: 0.959, rows: 1000, heldOut: 'benignTest' } };
    const text = parse(renderReport({ ...metrics, deep } as ReportMetrics, curves)).text;
    assert.match(text, /0\.96 → 0\.959 the model's own head on 1000 held-out images \(--benign-test\)/);
    assert.doesNotMatch(text, /best linear probe/);
  });

  it('skips the deep-mode section when there is none and draws it when there is', () => {
    assert.equal(parse(renderReport(metrics, curves)).querySelector('#deep'), null);
    const rnd = lcg(7);
    const deep = { draws: Array.from({ length: 20 }, () => ({ rir: 10 ** (2 + 2 * rnd()), harmfulRatio: 5 + 50 * rnd(), benignRatio: 0.1 + 0.5 * rnd() })) };
    const doc = parse(renderReport({ ...metrics, deep } as ReportMetrics, curves));
    const dists = doc.querySelectorAll('#deep svg[data-chart="summary"]');
    assert.deepEqual(
      dists.map((s) => s.getAttribute('data-series')),
      ['deep:rir', 'deep:harmfulRatio', 'deep:benignRatio'],
    );
    for (const svg of dists) {
      assert.equal(points(svg), 20);
      assert.equal(drawnVertices(svg), 20);
    }
  });

  it('renders a job whose numbers are all undefined without failing', () => {
    const nulls = JSON.parse(JSON.stringify(metrics, (k, v) => (typeof v === 'number' && k !== 'dim' && k !== 'kappaBudget' ? null : v)));
    const empty: Curves = { spectra: { benign: { before: [], after: [] }, harmful: { before: [], after: [] } }, kappaSteps: [], attacks: [] };
    const doc = parse(renderReport(nulls, empty));
    for (const svg of charts(doc)) assert.equal(points(svg), drawnVertices(svg));
    assert.equal(points(charts(doc, 'summary')[0]), 0);
    assert.equal(points(charts(doc, 'spectra')[0]), 0);
  });

  it('draws zero spectra, undefined κ steps and curves with holes without NaN coordinates', () => {
    const zeros = new Array(79).fill(0);
    const odd: Curves = {
      spectra: { benign: { before: zeros, after: zeros }, harmful: { before: zeros, after: [...zeros.slice(1), 5] } },
      kappaSteps: [
        { step: 1, benign: 10, harmful: null as unknown as number, seconds: 0 },
        { step: 2, benign: 8, harmful: 100, seconds: 0 },
      ],
      attacks: [
        {
          attacker: 'gd',
          data: 'benign',
          raw: [
            [0, 1],
            [1, 0],
            [2, null as unknown as number],
          ],
          immunized: [
            [0, 1],
            [1, 0.5],
          ],
        },
      ],
    };
    const html = renderReport(metrics, odd);
    assert.doesNotMatch(html, /NaN|Infinity/);
    const doc = parse(html);
    for (const svg of charts(doc)) assert.equal(points(svg), drawnVertices(svg));
    assert.equal(points(charts(doc, 'spectra')[0]), 4 * 79);
    assert.equal(points(charts(doc, 'kappa-steps')[0]), 3);
    assert.equal(points(charts(doc, 'attacks')[0]), 4);
    assert.match(captionOf(charts(doc, 'attacks')[0]), /1 point with no finite value is left out/);
  });

  it('escapes what it prints', () => {
    const html = renderReport({ ...metrics, verdictReasons: ['<b>bold</b> & "quoted"'], verdict: 'weak' }, curves, { title: '<script>x</script>' });
    assert.doesNotMatch(html, /<script>|<b>bold/);
    assert.match(html, /&lt;b&gt;bold&lt;\/b&gt; &amp; &quot;quoted&quot;/);
  });
});

describe('report.html of a 768-dimensional job', () => {
  it('stays under 2 MB at the largest curves.json allows', (t) => {
    const D = 768;
    const rnd = lcg(11);
    const spectrum = (scale: number) => Array.from({ length: D }, (_, i) => (i < 40 ? (rnd() - 0.5) * 1e-12 : scale * 10 ** (-8 * rnd())));
    const decay = (rate: number, last: number): Array<[number, number]> =>
      Array.from({ length: 500 }, (_, k) => {
        const step = Math.round(Math.expm1((Math.log1p(last) * k) / 499));
        return [step, Math.exp(-rate * step) * (1 + 0.01 * rnd())];
      });
    const curves: Curves = {
      spectra: { benign: { before: spectrum(1e3), after: spectrum(1e2) }, harmful: { before: spectrum(1e3), after: spectrum(1e7) } },
      kappaSteps: Array.from({ length: 5000 }, (_, i) => ({ step: i + 1, benign: 1e4 / (1 + i * rnd()), harmful: 1e5 * (1 + i), seconds: i * 0.05 })),
      attacks: ['gd', 'gd-exact', 'gd-exact-standardized', 'adam', 'newton'].flatMap((attacker) =>
        (['benign', 'harmful'] as const).map((data) => ({ attacker, data, raw: decay(0.01, 1000), immunized: decay(1e-4, 100_000) })),
      ),
    };
    const metrics = syntheticMetrics(D, curves);
    const deep = { draws: Array.from({ length: 20 }, () => ({ rir: 1e3 * (1 + rnd()), harmfulRatio: 10 + rnd(), benignRatio: rnd() })) };
    const started = performance.now();
    const html = renderReport({ ...metrics, deep } as ReportMetrics, curves);
    const ms = performance.now() - started;
    const bytes = Buffer.byteLength(html);
    assert.ok(bytes < 2 * 1024 * 1024, `${bytes} bytes`);
    // κ over 5,000 steps is strided to 500 a series.
    const doc = checkContract(html, metrics, curves, false, 2 * 500);
    assert.equal(points(charts(doc, 'spectra')[0]), 4 * D);
    assertSelfContained(html);
    t.diagnostic(`synthetic 768-d report: ${bytes} bytes, rendered in ${ms.toFixed(0)} ms`);
  });

  it('renders a real 768-d engine run', (t) => {
    const D = 768;
    const rnd = lcg(3);
    const X = (rows: number, tilt: number): Mat => ({
      rows,
      cols: D,
      data: Float64Array.from({ length: rows * D }, (_, i) => (rnd() - 0.5) * (1 + ((i % D) % tilt))),
    });
    const r = immunize({ benign: { X: X(800, 5) }, harmful: { X: X(800, 9) } }, { method: 'gradient', kappaBudget: 1e4, seed: 0, steps: 10 });
    const metrics: Metrics = JSON.parse(JSON.stringify(r.metrics));
    const curves: Curves = JSON.parse(JSON.stringify(r.curves));
    const html = renderReport(metrics, curves);
    checkContract(html, metrics, curves, false);
    assertSelfContained(html);
    assert.ok(Buffer.byteLength(html) < 2 * 1024 * 1024);
    t.diagnostic(`engine 768-d report: ${Buffer.byteLength(html)} bytes`);
  });
});

function syntheticMetrics(D: number, curves: Curves): Metrics {
  const attacks = curves.attacks.map((c) => ({
    attacker: c.attacker as Metrics['attacks'][number]['attacker'],
    data: c.data as 'benign' | 'harmful',
    target: 1e-4,
    stepsRaw: 1000,
    stepsImmunized: 100_000,
    capped: true,
    slowdown: 100,
    status: 'capped' as const,
    cap: 100_000,
  }));
  const kappa = { benign: { before: 1e4, after: 1e2 }, harmful: { before: 1e5, after: 1e9 } };
  return {
    method: 'gradient',
    task: 'regression',
    dim: D,
    rows: { benign: 2000, harmful: 2000, benignTest: null },
    rir: 1e6,
    benignRatio: 0.01,
    harmfulRatio: 1e4,
    rirBound: 1e8,
    thetaCondition: 500,
    kappaBudget: 1e4,
    kappa,
    paperConvention: { rir: 1e3, benignRatio: 0.5, harmfulRatio: 500, kappa },
    benignQuality: { metric: 'mse', before: 0.2, after: 0.2, headMaxDeviation: 1e-14 },
    attacks,
    verdict: 'immunized',
    verdictReasons: [],
    kappaCriterion: 'tested',
    verdictNotes: [],
    optimizer: { steps: 5000, stopReason: 'steps', details: {} },
    timings: { engineSeconds: 60, solveSeconds: 40, metricsSeconds: 1, attackSeconds: 19 },
    warnings: [],
    openblasCore: 'SkylakeX',
  };
}

describe('the CLI writes report.html', () => {
  it('immunize demo: with the paper row', async () => {
    const out = await mkdtemp(join(tmpdir(), 'immunize-report-'));
    const r = await cli(['demo', 'house-price', '--out', out]);
    assert.ok(r.code === 0 || r.code === 3, r.stderr);
    const html = await readFile(join(out, 'report.html'), 'utf8');
    const metrics = JSON.parse(await readFile(join(out, 'metrics.json'), 'utf8'));
    const curves = JSON.parse(await readFile(join(out, 'curves.json'), 'utf8'));
    checkContract(html, metrics, curves, true);
    assertSelfContained(html);
    assert.match(html, /paper, Table 1/);
  });

  it('immunize run: without it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'immunize-report-'));
    const rnd = lcg(5);
    const npy = (rows: number, cols: number) => ({
      shape: [rows, cols],
      data: Float64Array.from({ length: rows * cols }, (_, i) => (rnd() - 0.5) * (1 + (i % cols))),
    });
    await writeNpy(join(dir, 'benign.npy'), npy(60, 6));
    await writeNpy(join(dir, 'harmful.npy'), npy(60, 6));
    const out = join(dir, 'out');
    const r = await cli(['run', '--benign', join(dir, 'benign.npy'), '--harmful', join(dir, 'harmful.npy'), '--method', 'closed-form', '--out', out]);
    assert.ok(r.code === 0 || r.code === 3, r.stderr);
    const html = await readFile(join(out, 'report.html'), 'utf8');
    const metrics = JSON.parse(await readFile(join(out, 'metrics.json'), 'utf8'));
    const curves = JSON.parse(await readFile(join(out, 'curves.json'), 'utf8'));
    checkContract(html, metrics, curves, false);
    assertSelfContained(html);
    assert.doesNotMatch(html, /Table 1/);
  });
});
