import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSafetensors, encodeSafetensors } from '../../models/io/safetensors.js';
import { writeNpy } from '../../models/io/npy.js';
import { loadHousePrice } from '../../models/io/housePrice.js';
import { ATTACKERS } from '../../models/engine/attacks.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const CLI = join(ROOT, 'dist', 'services', 'cli', 'main.js');
const DATA = join(ROOT, 'data', 'house_price');

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      done({ code, stdout, stderr });
    });
  });
}

const tmp = () => mkdtemp(join(tmpdir(), 'immunize-cli-'));

function assertAllFinite(value: unknown, path = ''): void {
  if (typeof value === 'number') assert.ok(Number.isFinite(value), `${path} is not finite`);
  else if (Array.isArray(value)) value.forEach((v, i) => assertAllFinite(v, `${path}[${i}]`));
  else if (value && typeof value === 'object') for (const [k, v] of Object.entries(value)) assertAllFinite(v, `${path}.${k}`);
}

test('demo house-price writes the three artifacts and exits 0 when immunized', async () => {
  const out = await tmp();
  const r = await cli(['demo', 'house-price', '--out', out]);
  const metrics = JSON.parse(await readFile(join(out, 'metrics.json'), 'utf8'));
  assert.equal(r.code, metrics.verdict === 'immunized' ? 0 : 3, r.stderr);
  assert.match(r.stdout, /paper Table 1\s+18\.920\s+0\.053\s+356\.200/);
  for (const key of ['rir', 'benignRatio', 'harmfulRatio', 'rirBound', 'thetaCondition', 'openblasCore', 'verdict']) {
    assert.ok(key in metrics, `metrics.json lacks ${key}`);
  }
  assert.equal(metrics.attacks.length, ATTACKERS.length * 2);
  assertAllFinite(JSON.parse(JSON.stringify(metrics, (_k, v) => (v === null ? 0 : v))));
  const tensors = await readSafetensors(join(out, 'theta.safetensors'));
  assert.deepEqual(tensors.theta.shape, [79, 79]);
  assert.deepEqual(tensors.head.shape, [79, 1]);
  const curves = JSON.parse(await readFile(join(out, 'curves.json'), 'utf8'));
  assert.equal(curves.spectra.benign.before.length, 79);
  for (const a of curves.attacks) assert.ok(a.raw.length <= 500 && a.immunized.length <= 500);
});

test('--json prints JSON lines ending with the result', async () => {
  const out = await tmp();
  const r = await cli(['demo', 'house-price', '--json', '--out', out]);
  const lines = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const last = lines[lines.length - 1];
  assert.equal(last.type, 'result');
  assert.ok(lines.some((l) => l.type === 'progress' && l.phase === 'optimize'));
  assert.deepEqual(last.artifacts.map((a: { name: string }) => a.name).sort(), ['curves.json', 'metrics.json', 'report.html', 'theta.safetensors']);
});

test('evaluate refuses the degenerate θ that only shrinks the benign-zero columns', async () => {
  const hp = await loadHousePrice(DATA);
  const D = hp.benign.X.cols;
  const dir = await tmp();
  const zeroColumns: number[] = [];
  for (let j = 0; j < D; j++) {
    let allZero = true;
    for (let i = 0; i < hp.benign.X.rows; i++) if (hp.benign.X.data[i * D + j] !== 0) allZero = false;
    if (allZero) zeroColumns.push(j);
  }
  assert.equal(zeroColumns.length, 3);
  const theta = new Float64Array(D * D);
  for (let j = 0; j < D; j++) theta[j * D + j] = zeroColumns.includes(j) ? 1e-4 : 1;
  await writeFile(join(dir, 'theta.safetensors'), encodeSafetensors({ theta: { shape: [D, D], data: theta } }));
  for (const [name, split] of [
    ['benign', hp.benign],
    ['harmful', hp.harmful],
  ] as const) {
    await writeNpy(join(dir, `${name}.npy`), split.X);
    await writeNpy(join(dir, `${name}-y.npy`), { shape: [split.y!.length], data: split.y! });
  }
  const out = join(dir, 'out');
  const r = await cli([
    'evaluate',
    '--benign',
    join(dir, 'benign.npy'),
    '--benign-labels',
    join(dir, 'benign-y.npy'),
    '--harmful',
    join(dir, 'harmful.npy'),
    '--harmful-labels',
    join(dir, 'harmful-y.npy'),
    '--theta',
    join(dir, 'theta.safetensors'),
    '--out',
    out,
  ]);
  const metrics = JSON.parse(await readFile(join(out, 'metrics.json'), 'utf8'));
  assert.ok(metrics.harmfulRatio > 1e3, `harmful ratio ${metrics.harmfulRatio}`);
  assert.ok(metrics.benignRatio <= 1 + 1e-6);
  const std = metrics.attacks.find((a: { attacker: string; data: string }) => a.attacker === 'gd-exact-standardized' && a.data === 'harmful');
  assert.ok(std.slowdown < 2, `standardized slowdown ${std.slowdown}`);
  assert.notEqual(metrics.verdict, 'immunized');
  assert.equal(r.code, 3);
  assert.match(r.stderr, /WARNING: verdict is/);
});

test('bad input: clear message on stderr, exit 1, no stack trace', async () => {
  const dir = await tmp();
  await writeNpy(join(dir, 'a.npy'), { shape: [10, 4], data: Float64Array.from({ length: 40 }, (_, i) => Math.sin(i)) });
  await writeNpy(join(dir, 'b.npy'), { shape: [10, 5], data: Float64Array.from({ length: 50 }, (_, i) => Math.cos(i)) });
  await writeFile(join(dir, 'trunc.npy'), (await readFile(join(dir, 'a.npy'))).subarray(0, 100));
  const cases: Array<[string[], RegExp]> = [
    [['run', '--benign', join(dir, 'a.npy'), '--harmful', join(dir, 'b.npy'), '--out', join(dir, 'o')], /D=4.*D=5|D=5.*D=4/],
    [['run', '--benign', join(dir, 'trunc.npy'), '--harmful', join(dir, 'a.npy'), '--out', join(dir, 'o')], /trunc\.npy/],
    [['run', '--benign', join(dir, 'missing.npy'), '--harmful', join(dir, 'a.npy'), '--out', join(dir, 'o')], /missing\.npy/],
    [['run', '--benign', join(dir, 'a.npy'), '--harmful', join(dir, 'a.npy'), '--method', 'magic', '--out', join(dir, 'o')], /closed-form/],
    [['run', '--benign', join(dir, 'a.npy'), '--harmful', join(dir, 'a.npy')], /--out/],
    [['run', '--benign', join(dir, 'a.npy'), '--harmful', join(dir, 'a.npy'), '--steps', 'many', '--out', join(dir, 'o')], /--steps/],
    [['frobnicate', '--out', dir], /unknown command/],
  ];
  for (const [args, message] of cases) {
    const r = await cli(args);
    assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace without --debug');
  }
  await assert.rejects(stat(join(dir, 'o', 'metrics.json')));
});

test('run --row-limit 200 reproduces the House Price demo exactly', async () => {
  const demo = await tmp();
  const run = await tmp();
  await cli(['demo', 'house-price', '--out', demo]);
  const r = await cli([
    'run',
    '--benign',
    join(DATA, 'D1.csv'),
    '--benign-label-column',
    'LotArea',
    '--harmful',
    join(DATA, 'D2.csv'),
    '--harmful-label-column',
    'SalePrice',
    '--drop-columns',
    'LotArea,SalePrice',
    '--row-limit',
    '200',
    '--out',
    run,
  ]);
  const a = JSON.parse(await readFile(join(demo, 'metrics.json'), 'utf8'));
  const b = JSON.parse(await readFile(join(run, 'metrics.json'), 'utf8'));
  assert.equal(b.rows.benign, 200, r.stderr);
  assert.equal(b.rows.harmful, 200);
  assert.equal(b.rir, a.rir);
  assert.equal(b.verdict, a.verdict);
  const bad = await cli(['run', '--benign', join(DATA, 'D1.csv'), '--harmful', join(DATA, 'D2.csv'), '--row-limit', 'many', '--out', run]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /--row-limit expects a number/);
});

test("the demo labels each ratio with its κ rule and compares with the paper under the paper's rule", async () => {
  const out = await tmp();
  const r = await cli(['demo', 'house-price', '--out', out]);
  const lines = r.stdout.split('\n');
  const paper = lines.findIndex((l) => l.startsWith('paper Table 1'));
  assert.ok(paper >= 0, r.stdout);
  assert.match(lines[paper], /the paper's κ rule/);
  assert.match(lines[paper + 1], /^ours, same rule .*the paper's κ rule/);
  assert.match(lines.find((l) => l.startsWith('ours ')) ?? '', /rank-aware κ/);
  assert.match(r.stdout, /held-out --benign-test rows/);
  assert.match(r.stdout, /RIR\* \S+: a reference value|RIR\* \S+: the largest RIR/);
});

test('a missing input file is one line that names it, not a raw ENOENT', async () => {
  const r = await cli(['run', '--benign', '/nonexistent/benign.npy', '--harmful', '/nonexistent/harmful.npy', '--out', await tmp()]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /\/nonexistent\/benign\.npy/);
  assert.doesNotMatch(r.stderr, /ENOENT/);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
});
