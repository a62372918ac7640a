/**
 * The dashboard in a real browser: Debian's chromium driven by playwright-core. Sign in with an API key, upload
 * the House Price CSVs through the form, watch the job finish in the live list, open its report and check that
 * every chart drew data, at a desktop and a phone size, with no console errors. The House Price demo's report shows
 * the paper's Table 1 row; a 768-dimensional report stays under 2 MB. Screenshots go to test-artifacts/dashboard/.
 *
 * Without /usr/bin/chromium this file fails (it never skips): run scripts/ensure-chromium.sh.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { immunize } from '../../models/engine/immunize.js';
import type { Mat } from '../../models/linalg/types.js';
import { renderReport } from '../../workers/report/render.js';
import type { RunningServer } from '../../services/server.js';
import { ADMIN_KEY, ALICE_KEY, cleanup, requireRedis, start, type TestEnv, testEnv } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
if (!existsSync(CHROMIUM)) {
  throw new Error(
    `${CHROMIUM} is missing: the browser tests drive Debian's chromium package. ` +
      'Install it with scripts/ensure-chromium.sh (as root: apt-get install chromium).',
  );
}
// Without a Redis this file fails too.
await requireRedis();

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const HOUSE = join(ROOT, 'data', 'house_price');
const SHOTS = join(ROOT, 'test-artifacts', 'dashboard');
const FAMILIES = ['summary', 'spectra', 'kappa-steps', 'attacks'];
const VIEWPORTS = [
  { width: 1280, height: 800 },
  { width: 390, height: 844 },
];
// The machine has no network, and chromium would otherwise try to reach out on its own.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

let t: TestEnv;
let srv: RunningServer;
let base: string;
let userDataDir: string;
let context: BrowserContext;

/** Console errors and uncaught page errors, of every page the test opens while `problems` is this list. */
let problems: string[] = [];
/** Requests for anything off the API's origin (there must be none), and those the browser blocked itself. */
const outside: string[] = [];
const blocked = new Set<string>();

function watch(page: Page): void {
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console error on ${page.url()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error on ${page.url()}: ${e.message}`));
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

async function overflow(page: Page): Promise<{ scrollWidth: number; innerWidth: number }> {
  return page.evaluate(() => ({ scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth }));
}

interface ChartInfo {
  family: string | null;
  points: number;
  width: number;
  paths: number[];
}

function charts(page: Page): Promise<ChartInfo[]> {
  return page.evaluate(() =>
    Array.from(document.querySelectorAll('svg[data-chart]')).map((svg) => ({
      family: svg.getAttribute('data-chart'),
      points: Number(svg.getAttribute('data-points')),
      width: svg.getBoundingClientRect().width,
      paths: Array.from(svg.querySelectorAll('path.series')).map((p) => (p.getAttribute('d') ?? '').trim().length),
    })),
  );
}

function assertChartsDrawn(list: ChartInfo[], where: string): void {
  assert.ok(list.length > 0, `${where}: no svg[data-chart]`);
  for (const family of FAMILIES) assert.ok(list.some((c) => c.family === family), `${where}: no ${family} chart`);
  list.forEach((c, i) => {
    const what = `${where}: chart ${i} (${c.family})`;
    assert.ok(c.paths.length > 0, `${what} has no series path`);
    assert.ok(c.paths.every((n) => n > 0), `${what} has an empty series path`);
    assert.ok(c.points > 0, `${what} plots no points`);
    assert.ok(c.width > 0, `${what} is not laid out`);
  });
}

before(async () => {
  await mkdir(SHOTS, { recursive: true });
  t = await testEnv();
  srv = await start('all', t);
  base = srv.url!;
  userDataDir = await mkdtemp(join(tmpdir(), 'immunize-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: VIEWPORTS[0],
    acceptDownloads: false,
  });
  context.setDefaultTimeout(15_000);
  context.on('page', watch);
  for (const p of context.pages()) watch(p);
  context.on('request', (r) => {
    const u = new URL(r.url());
    if (u.protocol === 'data:' || u.protocol === 'about:' || u.protocol === 'file:') return;
    if (u.origin !== base) outside.push(r.url());
  });
  context.on('requestfailed', (r) => {
    if (/ERR_BLOCKED_BY_(CSP|CLIENT)/.test(r.failure()?.errorText ?? '')) blocked.add(r.url());
  });
});

after(async () => {
  await context?.close().catch(() => undefined);
  if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
  await srv?.close();
  if (t) await cleanup(t);
});

describe('the dashboard in chromium', () => {
  let page: Page;
  let jobId: string;

  it('signs in, submits the House Price job from uploaded files and sees it complete live', { timeout: 60_000 }, async () => {
    page = context.pages()[0] ?? (await context.newPage());
    const events: string[] = [];
    page.on('request', (r) => {
      if (/\/v1\/jobs\/[^/]+\/events$/.test(new URL(r.url()).pathname)) events.push(r.url());
    });

    await page.goto(`${base}/`);
    await page.locator('#sign-in').waitFor({ state: 'visible' });
    await shot(page, 'sign-in-1280x800');
    await page.fill('#api-key', ALICE_KEY);
    await page.click('#sign-in-form button[type=submit]');
    await page.locator('#app').waitFor({ state: 'visible' });
    assert.equal(await page.textContent('#who-name'), 'alice');
    const cookies = await context.cookies(base);
    const session = cookies.find((c) => c.name === 'immunize_session');
    assert.ok(session, 'the session cookie was set');
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Strict');
    assert.equal(await page.evaluate(() => document.cookie), '', 'the page script cannot read the session cookie');

    await page.setInputFiles('#benign-file', join(HOUSE, 'D1.csv'));
    await page.fill('#benign-label', 'LotArea');
    await page.fill('#benign-drop', 'SalePrice');
    await page.setInputFiles('#harmful-file', join(HOUSE, 'D2.csv'));
    await page.fill('#harmful-label', 'SalePrice');
    await page.fill('#harmful-drop', 'LotArea');
    await page.selectOption('#method', 'gradient');
    await page.fill('#row-limit', '200');

    // Every state the job's card goes through, as the page draws it.
    await page.evaluate(() => {
      const seen: Array<[string, string, number]> = [];
      (window as unknown as { seen: typeof seen }).seen = seen;
      new MutationObserver(() => {
        for (const li of Array.from(document.querySelectorAll<HTMLElement>('li.job'))) {
          seen.push([li.dataset.jobId ?? '', li.dataset.status ?? '', li.querySelector('progress')?.value ?? -1]);
        }
      }).observe(document.getElementById('job-list')!, { childList: true, subtree: true, attributes: true });
    });
    await page.click('#submit-job');
    const card = page.locator('li.job').first();
    await card.waitFor({ state: 'attached' });
    jobId = (await card.getAttribute('data-job-id'))!;
    assert.match(jobId, /^j[0-9a-z]{25}$/);
    await page.locator(`li.job[data-job-id="${jobId}"]:is([data-status=completed],[data-status=failed],[data-status=cancelled])`).waitFor({ timeout: 50_000 });
    const final = page.locator(`li.job[data-job-id="${jobId}"]`);
    assert.equal(await final.getAttribute('data-status'), 'completed', (await final.locator('.error').allTextContents()).join(' '));
    assert.equal(await final.locator('progress').evaluate((p) => (p as HTMLProgressElement).value), 1);
    assert.match((await final.locator('.summary').textContent()) ?? '', /verdict \w+/);

    const seen = (await page.evaluate(() => (window as unknown as { seen: Array<[string, string, number]> }).seen)).filter(([id]) => id === jobId);
    const statuses = [...new Set(seen.map(([, s]) => s))];
    assert.ok(statuses[0] === 'queued' || statuses[0] === 'running', `the card started as ${statuses[0]}`);
    assert.equal(statuses[statuses.length - 1], 'completed');
    assert.ok(events.length >= 1, 'the page followed the job over SSE');
    const fractions = seen.map(([, , f]) => f);
    for (let i = 1; i < fractions.length; i++) assert.ok(fractions[i] >= fractions[i - 1], `progress went back: ${fractions.join(', ')}`);
    await shot(page, 'dashboard-completed-1280x800');

    const names = await final.locator('a.artifact').allTextContents();
    for (const n of ['metrics.json', 'curves.json', 'theta.safetensors']) assert.ok(names.includes(n), `no link to ${n} in ${names.join(', ')}`);
    assert.ok(!names.includes('report.html'), `report.html shows as the Report link only, not as a download too: ${names.join(', ')}`);
    assert.equal(await final.locator('a.report').count(), 1, 'one Report link per job');
    // The links download with the session cookie alone (the context's request client shares the browser's cookies).
    for (const href of await final.locator('a.artifact').evaluateAll((links) => links.map((a) => (a as HTMLAnchorElement).href))) {
      const r = await page.request.get(href);
      assert.equal(r.status(), 200, `${href}: ${await r.text()}`);
      await r.dispose();
    }
  });

  it("opens the job's report with every chart drawn", { timeout: 20_000 }, async () => {
    const [report] = await Promise.all([context.waitForEvent('page'), page.click(`li.job[data-job-id="${jobId}"] a.report`)]);
    await report.waitForLoadState('load');
    assert.equal(new URL(report.url()).pathname, `/v1/jobs/${jobId}/report`);
    assert.match(await report.title(), /Immunization report/);
    const list = await charts(report);
    assertChartsDrawn(list, 'House Price report');
    const head = await page.request.get(report.url());
    assert.equal(head.headers()['content-security-policy'], "default-src 'none'; style-src 'unsafe-inline'");
    assert.equal(head.headers()['content-type'], 'text/html; charset=utf-8');
    await head.dispose();
    for (const v of VIEWPORTS) {
      await report.setViewportSize(v);
      const o = await overflow(report);
      assert.ok(o.scrollWidth <= o.innerWidth + 1, `the report overflows at ${v.width}×${v.height}: ${o.scrollWidth} > ${o.innerWidth}`);
      await shot(report, `report-${v.width}x${v.height}`);
    }
    await report.close();
  });

  it('fits 1280×800 and 390×844 without horizontal scrolling', { timeout: 20_000 }, async () => {
    for (const v of VIEWPORTS) {
      await page.setViewportSize(v);
      const o = await overflow(page);
      assert.ok(o.scrollWidth <= o.innerWidth + 1, `the dashboard overflows at ${v.width}×${v.height}: ${o.scrollWidth} > ${o.innerWidth}`);
      assert.ok(await page.locator('#submit-job').isVisible());
      assert.ok(await page.locator(`li.job[data-job-id="${jobId}"] a.report`).isVisible());
      await shot(page, `dashboard-${v.width}x${v.height}`);
    }
    await page.setViewportSize(VIEWPORTS[0]);
  });

  it('signs out: the page asks for a key again and the cookie no longer works', { timeout: 15_000 }, async () => {
    await page.click('#sign-out');
    await page.locator('#sign-in').waitFor({ state: 'visible' });
    assert.equal(await page.locator('li.job').count(), 0);
    const r = await page.request.get(`${base}/v1/jobs`);
    assert.equal(r.status(), 401);
    await r.dispose();
    await page.reload();
    await page.locator('#sign-in').waitFor({ state: 'visible' });
  });

  it('had no console errors, no page errors and no request off this origin', () => {
    assert.deepEqual(problems, []);
    assert.deepEqual(outside, []);
  });

  it('lets the admin key open bull-board from the dashboard', { timeout: 20_000 }, async (tc) => {
    // bull-board is a third-party page: its console is reported, not judged.
    const mine = problems;
    problems = [];
    const before = outside.length;
    try {
      await page.fill('#api-key', ADMIN_KEY);
      await page.click('#sign-in-form button[type=submit]');
      await page.locator('#queues-link').waitFor({ state: 'visible' });
      assert.ok(await page.locator('#new-job').isHidden(), 'the admin key cannot submit, so the form is hidden');
      await page.click('#queues-link');
      await page.waitForURL(`${base}/admin/queues`);
      await page.getByText(t.env.IMMUNIZE_QUEUE).first().click();
      await page.waitForURL(/\/admin\/queues\/queue\//);
      await page.getByText(jobId).first().waitFor({ state: 'visible' });
      await shot(page, 'admin-queues-1280x800');
      const escaped = outside.slice(before).filter((u) => !blocked.has(u));
      assert.deepEqual(escaped, [], 'bull-board fetched something from off this origin');
    } finally {
      for (const p of problems) tc.diagnostic(`bull-board: ${p}`);
      problems = mine;
    }
  });
});

describe('a 768-dimensional report', () => {
  it('is under 2 MB and draws every chart', { timeout: 45_000 }, async (tc) => {
    const D = 768;
    let s = 12345;
    const rnd = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
    const X = (rows: number, tilt: number): Mat => ({ rows, cols: D, data: Float64Array.from({ length: rows * D }, (_, i) => (rnd() - 0.5) * (1 + ((i % D) % tilt))) });
    const r = immunize({ benign: { X: X(1000, 5) }, harmful: { X: X(1000, 9) } }, { method: 'gradient', kappaBudget: 1e4, seed: 0, steps: 3 });
    const html = renderReport(r.metrics, r.curves, { title: 'random 768-d features' });
    const bytes = Buffer.byteLength(html);
    assert.ok(bytes < 2 * 1024 * 1024, `${bytes} bytes`);
    const dir = await mkdtemp(join(tmpdir(), 'immunize-report-'));
    try {
      const file = join(dir, 'report.html');
      await writeFile(file, html);
      const page = await context.newPage();
      try {
        await page.setViewportSize(VIEWPORTS[0]);
        await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
        // Time from the start of the navigation to the first frame drawn after the load event.
        const ms = await page.evaluate(() => new Promise<number>((ok) => requestAnimationFrame(() => requestAnimationFrame(() => ok(performance.now())))));
        tc.diagnostic(`768-d report: ${bytes} bytes, drawn ${ms.toFixed(0)} ms after the navigation started`);
        const list = await charts(page);
        assertChartsDrawn(list, '768-d report');
        assert.equal(list.find((c) => c.family === 'spectra')?.points, 4 * D);
        await shot(page, 'report-768d-1280x800');
        assert.deepEqual(problems, []);
      } finally {
        await page.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("the House Price demo's report", () => {
  it("draws all four chart families and sets our figures beside the paper's Table 1", { timeout: 60_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'immunize-demo-'));
    try {
      const cli = join(ROOT, 'dist', 'services', 'cli', 'main.js');
      const run = spawnSync(process.execPath, [cli, 'demo', 'house-price', '--out', dir], { encoding: 'utf8' });
      assert.equal(run.status, 0, run.stderr);
      const page = await context.newPage();
      try {
        for (const v of VIEWPORTS) {
          await page.setViewportSize(v);
          await page.goto(pathToFileURL(join(dir, 'report.html')).href, { waitUntil: 'load' });
          assertChartsDrawn(await charts(page), `demo report at ${v.width}×${v.height}`);
          const rows = await page.locator('table.with-paper tbody tr').allTextContents();
          assert.ok(rows.some((r) => /paper, Table 1/.test(r) && /18\.92/.test(r) && /356\.2/.test(r)), `paper row missing: ${rows.join(' | ')}`);
          assert.ok(rows.some((r) => /ours/.test(r)), `our row missing: ${rows.join(' | ')}`);
          const o = await overflow(page);
          assert.ok(o.scrollWidth <= o.innerWidth + 1, `the demo report overflows at ${v.width}×${v.height}`);
          await shot(page, `demo-report-${v.width}x${v.height}`);
        }
        assert.deepEqual(problems, []);
      } finally {
        await page.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
