/**
 * The dashboard in a real browser: Debian's chromium driven by playwright-core. Sign in with an API key, upload
 * the House Price CSVs through the form, watch the job finish in the live list, open its report and check that
 * every chart drew data, at a desktop and a phone size, with no console errors. A backbone job goes through the
 * form too (a small generated ResNet, images as an .npy with a labels file and as a .tar with class folders), with
 * upload progress per file and its phases on the card, and its immunized.onnx is downloaded and checked. The House
 * Price demo's report shows the paper's Table 1 row; a 768-dimensional report stays under 2 MB. Screenshots go to
 * test-artifacts/dashboard/.
 *
 * Without /usr/bin/chromium this file fails (it never skips): run scripts/ensure-chromium.sh.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { JobSpec } from '../../workers/jobSpec.js';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, requireChromium } from '../helpers/chromium.js';
import sharp from 'sharp';
import { immunize } from '../../models/engine/immunize.js';
import { encodeNpy } from '../../models/io/npy.js';
import type { Mat } from '../../models/linalg/types.js';
import { renderReport } from '../../workers/report/render.js';
import { resnetFixture } from '../../scripts/fixtures/onnxResnet.js';
import type { RunningServer } from '../../services/server.js';
import { inspectOnnx } from '../../services/storage/onnx.js';
import { tarOf } from '../helpers/backbones.js';
import { ADMIN_KEY, ALICE_KEY, cleanup, requireRedis, start, type TestEnv, testEnv } from '../helpers/service.js';

requireChromium();
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
  for (const family of FAMILIES)
    assert.ok(
      list.some((c) => c.family === family),
      `${where}: no ${family} chart`,
    );
  list.forEach((c, i) => {
    const what = `${where}: chart ${i} (${c.family})`;
    assert.ok(c.paths.length > 0, `${what} has no series path`);
    assert.ok(
      c.paths.every((n) => n > 0),
      `${what} has an empty series path`,
    );
    assert.ok(c.points > 0, `${what} plots no points`);
    assert.ok(c.width > 0, `${what} is not laid out`);
  });
}

const FIXTURE_SIZE = 32;

interface JobDoc {
  spec: JobSpec;
  metrics?: Record<string, unknown>;
  artifacts: Array<{ name: string; sha256: string; size: number }>;
}

/** The job's record, read with the browser's session cookie. */
async function jobDoc(id: string): Promise<JobDoc> {
  const r = await context.request.get(`${base}/v1/jobs/${id}`);
  assert.equal(r.status(), 200);
  const doc = (await r.json()) as JobDoc;
  await r.dispose();
  return doc;
}

/**
 * The backbone job's files: a small generated ResNet (32×32 input, 48 features), 16 benign images as a float32
 * .npy with a labels .npy, and 12 harmful PNGs (40×40, so resized and cropped) in two class folders of a .tar.
 */
async function backboneFiles(): Promise<{ dir: string; model: string; benign: string; benignLabels: string; harmful: string; inputs: string[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'immunize-backbone-form-'));
  const fixture = resnetFixture({ imageSize: FIXTURE_SIZE, widths: [8, 16, 24, 48], blocks: [1, 1, 1, 1], classes: 10, head: 'gemm', seed: 18 });
  let s = 7;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  const n = 16;
  const images = Float64Array.from({ length: n * 3 * FIXTURE_SIZE * FIXTURE_SIZE }, () => next() - 0.5);
  const labels = Float64Array.from({ length: n }, (_, i) => i % 10);
  const png = (seed: number) => {
    const px = Buffer.alloc(40 * 40 * 3);
    let t = seed;
    for (let i = 0; i < px.length; i++) px[i] = (t = (Math.imul(t, 1664525) + 1013904223) >>> 0) >>> 24;
    return sharp(px, { raw: { width: 40, height: 40, channels: 3 } })
      .png()
      .toBuffer();
  };
  const entries = await Promise.all(Array.from({ length: 12 }, async (_, i) => [`${i % 2 ? 'cat' : 'dog'}/${i}.png`, await png(100 + i)] as [string, Buffer]));
  const paths = {
    model: join(dir, 'resnet.onnx'),
    benign: join(dir, 'benign.npy'),
    benignLabels: join(dir, 'benign-labels.npy'),
    harmful: join(dir, 'harmful.tar'),
  };
  await writeFile(paths.model, fixture.model.bytes);
  await writeFile(paths.benign, encodeNpy({ shape: [n, 3, FIXTURE_SIZE, FIXTURE_SIZE], data: images }, 'f4'));
  await writeFile(paths.benignLabels, encodeNpy({ shape: [n], data: labels }, 'i4'));
  await writeFile(paths.harmful, tarOf(entries));
  return { dir, ...paths, inputs: inspectOnnx(Buffer.from(fixture.model.bytes)).inputs.map((i) => i.name) };
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
    acceptDownloads: true,
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

  it('submits a backbone job from the form, shows upload progress and its phases, and downloads immunized.onnx', { timeout: 120_000 }, async (tc) => {
    const files = await backboneFiles();
    try {
      await page.check('input[name=kind][value=backbone]');
      for (const id of ['#backbone-file', '#mode', '#pre-resize', '#benign-labels-from'])
        assert.ok(await page.locator(id).isVisible(), `${id} shows for a backbone job`);
      for (const id of ['#benign-drop', '#harmful-drop', '#benign-label']) assert.ok(await page.locator(id).isHidden(), `${id} is for .csv features only`);
      // Last-block mode trains by gradient steps and is cut at a tensor; linear-head mode takes a method and a feature tensor.
      await page.selectOption('#mode', 'last-block');
      assert.ok(await page.locator('#cut-tensor').isVisible());
      assert.ok(await page.locator('#method').isHidden());
      assert.ok(await page.locator('#feature-tensor').isHidden());
      await page.selectOption('#mode', 'linear-head');
      assert.ok(await page.locator('#cut-tensor').isHidden());
      assert.ok(await page.locator('#method').isVisible());

      await page.setInputFiles('#backbone-file', files.model);
      assert.equal(await page.inputValue('#benign-labels-from'), 'folders', 'a backbone job reads labels from class folders unless told otherwise');
      await page.setInputFiles('#benign-file', files.benign);
      assert.equal(await page.inputValue('#benign-labels-from'), 'none', 'an .npy of images has no class folders');
      await page.selectOption('#benign-labels-from', 'file');
      await page.setInputFiles('#benign-labels-file', files.benignLabels);
      await page.setInputFiles('#harmful-file', files.harmful);
      assert.equal(await page.inputValue('#harmful-labels-from'), 'folders');
      await page.selectOption('#method', 'closed-form');
      await page.fill('#row-limit', '');

      await page.evaluate(() => {
        const seen: Array<[string, string, string, number]> = [];
        (window as unknown as { backboneSeen: typeof seen }).backboneSeen = seen;
        new MutationObserver(() => {
          for (const li of Array.from(document.querySelectorAll<HTMLElement>('li.job'))) {
            seen.push([li.dataset.jobId ?? '', li.dataset.status ?? '', li.dataset.phase ?? '', li.querySelector('progress')?.value ?? -1]);
          }
        }).observe(document.getElementById('job-list')!, { childList: true, subtree: true, attributes: true });
      });
      const before = new Set(await page.locator('li.job').evaluateAll((items) => items.map((li) => (li as HTMLElement).dataset.jobId)));
      await page.click('#submit-job');
      const card = page.locator('li.job').first();
      await page.waitForFunction(
        (known) => {
          const first = document.querySelector<HTMLElement>('li.job');
          return first !== null && !known.includes(first.dataset.jobId ?? '');
        },
        [...before] as string[],
      );
      const id = (await card.getAttribute('data-job-id'))!;
      assert.ok(!before.has(id));

      // One line per file, each at 100% and done, with what the service read from it.
      const uploads = await page.locator('#uploads li.upload').evaluateAll((items) =>
        items.map((li) => ({
          file: (li as HTMLElement).dataset.file,
          state: (li as HTMLElement).dataset.state,
          value: li.querySelector('progress')?.value,
          note: li.querySelector('.note')?.textContent ?? '',
        })),
      );
      assert.deepEqual(
        uploads.map((u) => [u.file, u.state, u.value]),
        [
          ['backbone', 'done', 1],
          ['benign', 'done', 1],
          ['benign labels', 'done', 1],
          ['harmful', 'done', 1],
        ],
      );
      assert.match(uploads[0].note, new RegExp(`^uploaded as b\\w+ · input "input" N×3×${FIXTURE_SIZE}×${FIXTURE_SIZE}$`));
      assert.match(uploads[1].note, /^uploaded as d\w+ · 16 images$/);
      assert.match(uploads[2].note, /^uploaded as d\w+ · 16 labels$/);
      assert.match(uploads[3].note, /^uploaded as d\w+ · 12 images · classes cat, dog$/);

      // A picture of the card while it runs, when the job is not done before the page draws a phase.
      await page
        .locator(`li.job[data-job-id="${id}"][data-status=running][data-phase]`)
        .waitFor({ timeout: 20_000 })
        .then(
          () => shot(page, 'dashboard-backbone-running-1280x800'),
          () => undefined,
        );
      await page.locator(`li.job[data-job-id="${id}"]:is([data-status=completed],[data-status=failed],[data-status=cancelled])`).waitFor({ timeout: 100_000 });
      const final = page.locator(`li.job[data-job-id="${id}"]`);
      assert.equal(await final.getAttribute('data-status'), 'completed', (await final.locator('.error').allTextContents()).join(' '));
      assert.match((await final.locator('.spec').textContent()) ?? '', /^backbone \S+ · linear head · closed-form · benign labels /);
      assert.match((await final.locator('.summary').textContent()) ?? '', /verdict \w+/);
      await shot(page, 'dashboard-backbone-1280x800');

      // The phases the card showed, in the order it showed them, never going back.
      const order = ['features', 'optimise', 'attacks', 'export'];
      const seen = (await page.evaluate(() => (window as unknown as { backboneSeen: Array<[string, string, string, number]> }).backboneSeen)).filter(
        ([j]) => j === id,
      );
      const phases = seen.filter(([, s, p]) => s === 'running' && p !== '').map(([, , p]) => p);
      for (const p of phases) assert.ok(order.includes(p), `unknown phase ${p}`);
      for (let i = 1; i < phases.length; i++) assert.ok(order.indexOf(phases[i]) >= order.indexOf(phases[i - 1]), `the phases went back: ${phases.join(', ')}`);
      assert.ok(phases.length > 0, `the card showed no phase while the job ran: ${JSON.stringify(seen)}`);
      tc.diagnostic(`phases shown: ${phases.filter((p, i) => p !== phases[i - 1]).join(' → ')}`);

      // What the form sent: the backbone, the labels file on the benign side and class folders (nothing to send) on the harmful one.
      const doc = await jobDoc(id);
      assert.equal(typeof doc.spec.backbone, 'string');
      assert.equal(doc.spec.mode, 'linear-head');
      assert.equal(doc.spec.method, 'closed-form');
      assert.equal(doc.spec.preprocess, undefined);
      assert.equal(typeof doc.spec.benign.labels, 'string');
      assert.deepEqual(Object.keys(doc.spec.harmful), ['dataset']);
      assert.equal(doc.metrics?.task, 'multiclass', 'the benign labels reached the job');

      // immunized.onnx is one of the downloads; the browser saves it with the session cookie alone.
      const listed = doc.artifacts.find((a) => a.name === 'immunized.onnx');
      assert.ok(listed, `the job lists ${doc.artifacts.map((a) => a.name).join(', ')}`);
      const link = final.locator('a.artifact', { hasText: 'immunized.onnx' });
      assert.equal(await link.count(), 1);
      const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
      assert.equal(download.suggestedFilename(), 'immunized.onnx');
      const bytes = await readFile((await download.path())!);
      assert.equal(bytes.length, listed.size);
      assert.equal(createHash('sha256').update(bytes).digest('hex'), listed.sha256);
      const onnx = inspectOnnx(bytes, 'immunized.onnx');
      assert.deepEqual(
        onnx.inputs.map((i) => i.name),
        files.inputs,
      );
      assert.ok(
        onnx.outputs.some((o) => o.name === 'features_immunized'),
        `outputs: ${onnx.outputs.map((o) => o.name).join(', ')}`,
      );
      const r = await page.request.get(`${base}/v1/jobs/${id}/artifacts/immunized.onnx`);
      assert.equal(r.status(), 200);
      await r.dispose();
    } finally {
      await rm(files.dir, { recursive: true, force: true });
    }
  });

  it('sends the preprocessing options with image archives, and refuses them for .npy images before uploading', { timeout: 90_000 }, async () => {
    const files = await backboneFiles();
    try {
      const uploads: string[] = [];
      const onRequest = (r: { method(): string; url(): string }) => {
        if (r.method() === 'POST' && /\/v1\/(datasets|backbones)$/.test(new URL(r.url()).pathname)) uploads.push(r.url());
      };
      page.on('request', onRequest);
      await page.setInputFiles('#backbone-file', files.model);
      await page.setInputFiles('#benign-file', files.benign);
      await page.selectOption('#benign-labels-from', 'file');
      await page.setInputFiles('#benign-labels-file', files.benignLabels);
      await page.setInputFiles('#harmful-file', files.harmful);
      await page.fill('#pre-resize', '36');
      await page.fill('#pre-crop', String(FIXTURE_SIZE));
      await page.fill('#pre-mean', '0.5, 0.5, 0.5');
      await page.fill('#pre-std', '0.25 0.25 0.25');
      await page.click('#submit-job');
      await page.locator('#notice.error').waitFor({ state: 'visible' });
      assert.match((await page.textContent('#notice')) ?? '', /Preprocessing applies to image files only: the benign images \(benign\.npy\) are an \.npy/);
      assert.deepEqual(uploads, [], 'nothing was uploaded');

      const before = await page.locator('li.job').count();
      await page.setInputFiles('#benign-file', files.harmful);
      await page.selectOption('#benign-labels-from', 'folders');
      await page.click('#submit-job');
      await page.waitForFunction((n) => document.querySelectorAll('li.job').length > n, before);
      page.off('request', onRequest);
      assert.equal(uploads.length, 3, `one upload per file: ${uploads.join(', ')}`);
      const id = (await page.locator('li.job').first().getAttribute('data-job-id'))!;
      await page.locator(`li.job[data-job-id="${id}"]:is([data-status=completed],[data-status=failed],[data-status=cancelled])`).waitFor({ timeout: 80_000 });
      const final = page.locator(`li.job[data-job-id="${id}"]`);
      assert.equal(await final.getAttribute('data-status'), 'completed', (await final.locator('.error').allTextContents()).join(' '));
      const doc = await jobDoc(id);
      assert.deepEqual(doc.spec.preprocess, { resize: 36, crop: FIXTURE_SIZE, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] });
      assert.deepEqual(Object.keys(doc.spec.benign), ['dataset']);
      assert.ok(doc.artifacts.some((a) => a.name === 'immunized.onnx'));
      // The form is left as the first test expects to find the page: a features job.
      await page.check('input[name=kind][value=features]');
      assert.ok(await page.locator('#backbone-file').isHidden());
      assert.ok(await page.locator('#benign-drop').isVisible());
      assert.equal(await page.inputValue('#benign-labels-from'), 'column');
    } finally {
      await rm(files.dir, { recursive: true, force: true });
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

  it('fits 1280×800 and 390×844 without horizontal scrolling, with the form for features and for a backbone', { timeout: 20_000 }, async () => {
    for (const v of VIEWPORTS) {
      await page.setViewportSize(v);
      for (const kind of ['features', 'backbone']) {
        await page.check(`input[name=kind][value=${kind}]`);
        const o = await overflow(page);
        assert.ok(o.scrollWidth <= o.innerWidth + 1, `the dashboard (${kind}) overflows at ${v.width}×${v.height}: ${o.scrollWidth} > ${o.innerWidth}`);
        assert.ok(await page.locator('#submit-job').isVisible());
        assert.ok(await page.locator(`li.job[data-job-id="${jobId}"] a.report`).isVisible());
        await shot(page, kind === 'features' ? `dashboard-${v.width}x${v.height}` : `dashboard-form-backbone-${v.width}x${v.height}`);
      }
      await page.check('input[name=kind][value=features]');
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
    const X = (rows: number, tilt: number): Mat => ({
      rows,
      cols: D,
      data: Float64Array.from({ length: rows * D }, (_, i) => (rnd() - 0.5) * (1 + ((i % D) % tilt))),
    });
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
          assert.ok(
            rows.some((r) => /paper, Table 1/.test(r) && /18\.92/.test(r) && /356\.2/.test(r)),
            `paper row missing: ${rows.join(' | ')}`,
          );
          assert.ok(
            rows.some((r) => /ours/.test(r)),
            `our row missing: ${rows.join(' | ')}`,
          );
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
