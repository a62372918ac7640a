/**
 * report.html's tables in a real browser (Debian's chromium driven by playwright-core) at 1280×800: no cell is cut
 * off or spills out of its panel, and every header stands over its column with the column's alignment (numbers
 * right-aligned, words left-aligned, in the header and in the cells alike). The reports are real: the House Price
 * demo written by the CLI, a gradient-method House Price job with deep-mode draws, and a weak job on random features.
 * A screenshot of the demo's report goes to /tmp/report-1280.png.
 *
 * Without /usr/bin/chromium this file fails (it never skips): run scripts/ensure-chromium.sh.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, requireChromium } from '../helpers/chromium.js';
import { immunize } from '../../models/engine/immunize.js';
import { loadHousePrice } from '../../models/io/housePrice.js';
import type { Mat } from '../../models/linalg/types.js';
import { renderReport, type ReportMetrics } from '../../workers/report/render.js';

requireChromium();

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const CLI = join(ROOT, 'dist', 'services', 'cli', 'main.js');
const HOUSE = join(ROOT, 'data', 'house_price');
const SCREENSHOT = '/tmp/report-1280.png';
const VIEWPORT = { width: 1280, height: 800 };

interface Box {
  left: number;
  right: number;
  top: number;
  bottom: number;
}

interface Cell {
  tag: string;
  text: string;
  /** Its column, counting colspans. */
  col: number;
  head: boolean;
  align: string;
  scrollWidth: number;
  clientWidth: number;
  box: Box;
  /** Where its content is drawn; null when it is empty. */
  ink: Box | null;
}

interface TableLayout {
  where: string;
  /** The .table-wrap around the table (the scroll container), and the panel or section that holds it. */
  wrap: Box & { scrollWidth: number; clientWidth: number };
  panel: Box;
  cells: Cell[];
}

/** Every report table, measured in the page. */
async function measure(page: Page): Promise<TableLayout[]> {
  return page.evaluate(() => {
    const box = (r: DOMRect) => ({ left: r.left, right: r.right, top: r.top, bottom: r.bottom });
    const direction = (el: Element) => getComputedStyle(el).direction;
    // 'start' and 'end' as the page reads them, so that a header and a cell compare equal however they were styled.
    const align = (el: Element) => {
      const a = getComputedStyle(el).textAlign;
      const rtl = direction(el) === 'rtl';
      if (a === 'start' || a === '-webkit-auto') return rtl ? 'right' : 'left';
      if (a === 'end') return rtl ? 'left' : 'right';
      return a.replace(/^-webkit-/, '');
    };
    return [...document.querySelectorAll('table')].map((table, t) => {
      const wrapEl = table.closest('.table-wrap') ?? table.parentElement!;
      const panelEl = table.closest('.panel') ?? table.closest('section') ?? document.body;
      const section = table.closest('section')?.id ?? '?';
      const title = wrapEl.previousElementSibling?.tagName === 'H3' ? wrapEl.previousElementSibling.textContent : '';
      const caption = title ? ` ("${title}")` : '';
      const cells: Array<{
        tag: string;
        text: string;
        col: number;
        head: boolean;
        align: string;
        scrollWidth: number;
        clientWidth: number;
        box: ReturnType<typeof box>;
        ink: ReturnType<typeof box> | null;
      }> = [];
      for (const row of table.rows) {
        let col = 0;
        for (const cell of row.cells) {
          const range = document.createRange();
          range.selectNodeContents(cell);
          const rects = [...range.getClientRects()].filter((r) => r.width > 0 && r.height > 0);
          const ink = rects.length
            ? {
                left: Math.min(...rects.map((r) => r.left)),
                right: Math.max(...rects.map((r) => r.right)),
                top: Math.min(...rects.map((r) => r.top)),
                bottom: Math.max(...rects.map((r) => r.bottom)),
              }
            : null;
          cells.push({
            tag: cell.tagName.toLowerCase(),
            text: (cell.textContent ?? '').replace(/\s+/g, ' ').trim(),
            col,
            head: row.parentElement?.tagName === 'THEAD',
            align: align(cell),
            scrollWidth: cell.scrollWidth,
            clientWidth: cell.clientWidth,
            box: box(cell.getBoundingClientRect()),
            ink,
          });
          col += cell.colSpan;
        }
      }
      return {
        where: `table ${t} in #${section}${caption}`,
        wrap: { ...box(wrapEl.getBoundingClientRect()), scrollWidth: wrapEl.scrollWidth, clientWidth: wrapEl.clientWidth },
        panel: box(panelEl.getBoundingClientRect()),
        cells,
      };
    });
  });
}

const within = (inner: Box, outer: Box, slack = 1) =>
  inner.left >= outer.left - slack && inner.right <= outer.right + slack && inner.top >= outer.top - slack && inner.bottom <= outer.bottom + slack;

const show = (b: Box) => `[${b.left.toFixed(1)}, ${b.right.toFixed(1)}]`;

/**
 * What a cell holds, as a reader sorts it: a number (κ, a ratio, a step count, a slowdown, a ≥ or ≤ target), a
 * placeholder (— for nothing, ∞, unmeasured), or words. Remarks in parentheses, "(cap)" or "(faster)", go with
 * their number.
 */
function kind(text: string): 'number' | 'placeholder' | 'words' {
  if (text === '' || /^(—|∞|−∞|unmeasured)$/.test(text)) return 'placeholder';
  const bare = text.replace(/\([^()]*\)/g, '').trim();
  return /^[≤≥<>]?\s*×?\s*[-−]?\d[\d,]*(\.\d+)?(e[-+−]?\d+)?$/.test(bare) ? 'number' : 'words';
}

/** Numbers are right-aligned, words left-aligned: a column is numeric when most of what it holds is numbers. */
function expectedAlign(body: Cell[]): 'right' | 'left' {
  const kinds = body.map((c) => kind(c.text)).filter((k) => k !== 'placeholder');
  const numbers = kinds.filter((k) => k === 'number').length;
  return numbers > 0 && numbers * 2 > kinds.length ? 'right' : 'left';
}

function assertNothingClipped(tables: TableLayout[], where: string): void {
  assert.ok(tables.length > 0, `${where}: no tables`);
  for (const t of tables) {
    const at = `${where}, ${t.where}`;
    assert.ok(t.wrap.scrollWidth <= t.wrap.clientWidth + 1, `${at}: the table is ${t.wrap.scrollWidth}px wide in a ${t.wrap.clientWidth}px scroll container`);
    assert.ok(within(t.wrap, t.panel), `${at}: its scroll container ${show(t.wrap)} leaves the panel ${show(t.panel)}`);
    for (const c of t.cells) {
      const what = `${at}: ${c.tag} "${c.text}"`;
      assert.ok(c.scrollWidth <= c.clientWidth + 1, `${what} is cut: ${c.scrollWidth}px of content in ${c.clientWidth}px`);
      assert.ok(within(c.box, t.wrap), `${what} ${show(c.box)} lies outside its scroll container ${show(t.wrap)}`);
      assert.ok(within(c.box, t.panel), `${what} ${show(c.box)} lies outside its panel ${show(t.panel)}`);
      if (c.ink) assert.ok(within(c.ink, c.box), `${what}: its text ${show(c.ink)} spills out of the cell ${show(c.box)}`);
    }
  }
}

function assertHeadersAligned(tables: TableLayout[], where: string): void {
  for (const t of tables) {
    const heads = t.cells.filter((c) => c.head);
    assert.ok(heads.length > 0, `${where}, ${t.where}: no header row`);
    for (const h of heads) {
      const at = `${where}, ${t.where}, column ${h.col} "${h.text}"`;
      const body = t.cells.filter((c) => !c.head && c.col === h.col);
      assert.ok(body.length > 0, `${at}: no cells under the header`);
      const want = expectedAlign(body);
      assert.equal(h.align, want, `${at}: the header is ${h.align}-aligned over a ${want === 'right' ? 'numeric' : 'text'} column`);
      for (const c of body) {
        const what = `${at}: cell "${c.text}"`;
        assert.equal(c.align, h.align, `${what} is ${c.align}-aligned under a ${h.align}-aligned header`);
        assert.ok(
          Math.abs(c.box.left - h.box.left) <= 0.5 && Math.abs(c.box.right - h.box.right) <= 0.5,
          `${what} ${show(c.box)} is not under its header ${show(h.box)}`,
        );
        // The text itself lines up on the aligned side: the header's first (or last) letter over the cells'.
        if (c.ink && h.ink) {
          const side = (x: Cell) => (want === 'right' ? x.box.right - x.ink!.right : x.ink!.left - x.box.left);
          assert.ok(
            Math.abs(side(c) - side(h)) <= 1,
            `${what}: its text sits ${side(c).toFixed(1)}px from the ${want} edge, the header's ${side(h).toFixed(1)}px`,
          );
        }
      }
    }
  }
}

describe('report tables at 1280×800', () => {
  let browser: Browser;
  let page: Page;
  let dir: string;
  const problems: string[] = [];
  const reports: Record<string, string> = {};

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'immunize-report-browser-'));
    // The House Price demo as the CLI writes it: the paper's Table 1 row, and RIR* as a reference with its note.
    const demo = join(dir, 'demo');
    const run = spawnSync(process.execPath, [CLI, 'demo', 'house-price', '--out', demo], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(run.status, 0, run.stderr);
    reports.demo = join(demo, 'report.html');

    // A gradient-method job through the worker's renderer, with a job id, a long optimiser line and deep-mode draws.
    const hp = await loadHousePrice(HOUSE);
    const g = immunize({ benign: hp.benign, harmful: hp.harmful, benignTest: hp.benignTest }, { method: 'gradient', kappaBudget: 1e4, seed: 0 });
    const roundTrip = <T>(v: T): T => JSON.parse(JSON.stringify(v));
    let s = 7;
    const rnd = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
    const deep = { draws: Array.from({ length: 12 }, () => ({ rir: 10 ** (2 + 2 * rnd()), harmfulRatio: 5 + 50 * rnd(), benignRatio: 0.1 + 0.5 * rnd() })) };
    const gm: ReportMetrics = { ...roundTrip(g.metrics), deep };
    reports.gradient = join(dir, 'gradient.html');
    await writeFile(
      reports.gradient,
      renderReport(gm, roundTrip(g.curves), { title: 'house_price benign.csv · harmful.csv', jobId: '0f3c9a1e-7d4b-4c1a-9e2f-5b8d6a7c3e10' }),
    );

    // Random full-rank features: RIR* is a bound here, and the verdict is weak with its reasons listed.
    const D = 24;
    const X = (rows: number, tilt: number): Mat => ({
      rows,
      cols: D,
      data: Float64Array.from({ length: rows * D }, (_, i) => (rnd() - 0.5) * (1 + ((i % D) % tilt))),
    });
    const r = immunize({ benign: { X: X(400, 5) }, harmful: { X: X(400, 9) } }, { method: 'spectral', kappaBudget: 1e4, seed: 0 });
    reports.random = join(dir, 'random.html');
    await writeFile(reports.random, renderReport(roundTrip(r.metrics), roundTrip(r.curves), { title: 'random 24-d features' }));

    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    page = await browser.newPage({ viewport: VIEWPORT });
    page.setDefaultTimeout(15_000);
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  });

  after(async () => {
    await browser?.close().catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function open(name: string): Promise<TableLayout[]> {
    await page.goto(pathToFileURL(reports[name]).href, { waitUntil: 'load' });
    return measure(page);
  }

  it("the demo's report: no cell is cut, the RIR* note wraps inside its panel, every header over its column", { timeout: 60_000 }, async () => {
    const tables = await open('demo');
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    assertNothingClipped(tables, 'demo');
    assertHeadersAligned(tables, 'demo');

    const key = tables.find((t) => t.cells.some((c) => c.text.startsWith('RIR* (a reference)')));
    assert.ok(key, 'the demo report shows RIR* as a reference (K_P is rank-deficient)');
    const note = key.cells.find((c) => /K_P is rank-deficient, so this is not a bound: RIR can exceed it/.test(c.text));
    assert.ok(note, 'the whole RIR* note is in the key figures');
    assert.ok(note.ink && note.ink.bottom - note.ink.top > 0, 'the RIR* note is drawn');
    assert.ok(within(note.ink!, key.panel), `the RIR* note ${show(note.ink!)} leaves its panel ${show(key.panel)}`);
    const quantity = key.cells.find((c) => c.head && c.text === 'quantity')!;
    const value = key.cells.find((c) => c.head && c.text === 'value')!;
    assert.ok(quantity && value, 'the key figures have a quantity and a value header');
    const rirRow = key.cells.find((c) => c.text === 'RIR')!;
    assert.equal(quantity.col, rirRow.col, '"quantity" heads the names');
    assert.equal(value.col, note.col, '"value" heads the values');

    const attacks = tables.find((t) => t.cells.some((c) => c.head && c.text === 'attacker'));
    assert.ok(attacks, 'the attack table');
    const align = (head: string) => attacks.cells.find((c) => c.head && c.text === head)?.align;
    assert.deepEqual(['attacker', 'data', 'target', 'steps raw', 'steps immunized', 'slowdown', 'status'].map(align), [
      'left',
      'left',
      'right',
      'right',
      'right',
      'right',
      'left',
    ]);

    const html = await readFile(reports.demo, 'utf8');
    assert.match(html, /so this is not a bound: RIR can exceed it/);
    assert.deepEqual(problems, []);
  });

  it('a gradient job with deep-mode draws: no cell is cut, every header over its column', { timeout: 30_000 }, async () => {
    const tables = await open('gradient');
    assertNothingClipped(tables, 'gradient job');
    assertHeadersAligned(tables, 'gradient job');
    assert.deepEqual(problems, []);
  });

  it('a weak job on random features, RIR* a bound: no cell is cut, every header over its column', { timeout: 30_000 }, async () => {
    const tables = await open('random');
    assert.ok(
      tables.some((t) => t.cells.some((c) => c.text.startsWith('RIR* (bound)'))),
      'RIR* is shown as a bound',
    );
    assertNothingClipped(tables, 'random job');
    assertHeadersAligned(tables, 'random job');
    assert.deepEqual(problems, []);
  });
});
