/**
 * immunize submit | status | watch | download against a running service, as a user's terminal runs them.
 */
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RunningServer } from '../../services/server.js';
import { ALICE_KEY, BOB_KEY, cleanup, requireRedis, start, type TestEnv, testEnv } from '../helpers/service.js';

await requireRedis();

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const CLI = join(ROOT, 'dist', 'services', 'cli', 'main.js');
const HOUSE = join(ROOT, 'data', 'house_price');

let t: TestEnv;
let srv: RunningServer;
let out: string;

before(async () => {
  t = await testEnv();
  srv = await start('all', t);
  out = await mkdtemp(join(tmpdir(), 'immunize-remote-'));
});

after(async () => {
  await srv?.close();
  if (t) await cleanup(t);
  if (out) await rm(out, { recursive: true, force: true });
});

function cli(args: string[], key = ALICE_KEY): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { timeout: 120_000, env: { ...process.env, IMMUNIZE_URL: String(srv.url), IMMUNIZE_API_KEY: key } },
      (err, stdout, stderr) => {
        done({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
      },
    );
  });
}

it('submits local files, watches to the verdict, and downloads verified artifacts', async () => {
  const submit = await cli([
    'submit',
    '--benign',
    join(HOUSE, 'D1.csv'),
    '--benign-label-column',
    'LotArea',
    '--harmful',
    join(HOUSE, 'D2.csv'),
    '--harmful-label-column',
    'SalePrice',
    '--drop-columns',
    'LotArea,SalePrice',
    '--idempotency-key',
    'cli-remote-1',
    '--watch',
    '--json',
  ]);
  const lines = submit.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const submitted = lines.find((l) => l.type === 'submitted');
  const result = lines[lines.length - 1];
  assert.ok(submitted?.id, submit.stderr);
  assert.equal(result.type, 'result');
  assert.equal(result.status, 'completed');
  assert.equal(submit.code, result.metrics.verdict === 'immunized' ? 0 : 3);
  assert.ok(lines.some((l) => l.type === 'event'));

  const status = await cli(['status', submitted.id, '--json']);
  assert.equal(status.code, 0);
  assert.equal(JSON.parse(status.stdout).status, 'completed');

  const dir = join(out, 'downloaded');
  const dl = await cli(['download', submitted.id, '--out', dir]);
  assert.equal(dl.code, 0, dl.stderr);
  const names = (await readdir(dir)).sort();
  assert.ok(names.includes('metrics.json') && names.includes('theta.safetensors'), names.join(','));
  for (const a of result.artifacts as Array<{ name: string; sha256: string }>) {
    const bytes = await readFile(join(dir, a.name));
    assert.equal(createHash('sha256').update(bytes).digest('hex'), a.sha256, a.name);
  }
  const metrics = JSON.parse(await readFile(join(dir, 'metrics.json'), 'utf8'));
  assert.equal(metrics.verdict, result.metrics.verdict);

  // Without --json: the same summary a local run prints, and a download that says the hashes matched.
  const plain = await cli(['status', submitted.id]);
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(plain.stdout, /attack steps to target/);
  for (const attacker of ['gd-exact-standardized', 'adam-standardized']) assert.match(plain.stdout, new RegExp(`${attacker}\\s+harmful`));
  assert.match(plain.stdout, /verdict: (IMMUNIZED|WEAK|INFEASIBLE)/);
  assert.match(plain.stdout, /RIR\* \S+: /);
  if (result.metrics.verdict !== 'immunized') assert.match(plain.stderr, /^WARNING: verdict is/m);
  const dl2 = await cli(['download', submitted.id, '--name', 'metrics.json', '--out', join(out, 'again')]);
  assert.match(dl2.stdout, /metrics\.json\s+\d+ bytes\s+sha256 [0-9a-f]{64}\s+matches the job record/);

  const again = await cli(['status', submitted.id], BOB_KEY);
  assert.equal(again.code, 1, 'another tenant cannot see the job');
  assert.match(again.stderr, /no job with id/);
});

it('gives clear errors without a key or for an unknown job', async () => {
  const noKey = await new Promise<{ code: number; stderr: string }>((done) => {
    const env: NodeJS.ProcessEnv = { ...process.env, IMMUNIZE_URL: String(srv.url) };
    delete env.IMMUNIZE_API_KEY;
    execFile(process.execPath, [CLI, 'status', 'job_x'], { env }, (err, _o, stderr) => done({ code: err ? Number(err.code) : 0, stderr }));
  });
  assert.equal(noKey.code, 1);
  assert.match(noKey.stderr, /API key/);
  assert.equal(noKey.stderr.trim().split('\n').length, 1, `one line, not the whole usage: ${noKey.stderr}`);
  const unknown = await cli(['status', 'no-such-job']);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /no job with id "no-such-job"/);
});

it('refuses to submit a folder of images and says how to pack it', async () => {
  const folder = await mkdtemp(join(tmpdir(), 'immunize-images-'));
  try {
    const r = await cli(['submit', '--backbone', join(HOUSE, 'D1.csv'), '--benign', folder, '--harmful', folder]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /is a folder; the service takes files: pack it as an uncompressed archive \(tar -cf images\.tar/);
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
});

it('names the address and what to do when the service cannot be reached', async () => {
  const down = await new Promise<{ code: number; stderr: string }>((done) => {
    execFile(process.execPath, [CLI, 'status', 'job_x', '--url', 'http://127.0.0.1:9', '--api-key', ALICE_KEY], (err, _o, stderr) =>
      done({ code: err ? Number(err.code) : 0, stderr }),
    );
  });
  assert.equal(down.code, 1);
  assert.match(down.stderr, /cannot reach the service at http:\/\/127\.0\.0\.1:9/);
  assert.match(down.stderr, /npm run serve/);
  assert.doesNotMatch(down.stderr, /fetch failed/);
});
