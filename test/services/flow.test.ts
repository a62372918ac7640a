/**
 * The full flow over real HTTP, as a client sees it: upload the House Price CSVs, submit, follow the SSE stream
 * to completion, download metrics.json and theta.safetensors, and check them against the engine run directly.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseSafetensors } from '../../models/io/safetensors.js';
import { DirectorySink } from '../../workers/artifacts.js';
import { runJob } from '../../workers/modes.js';
import { parseJobSpec } from '../../workers/jobSpec.js';
import type { RunningServer } from '../../services/server.js';
import { ALICE, cleanup, readSse, requireRedis, start, type TestEnv, testEnv } from '../helpers/service.js';

// Without a Redis this file fails (it never skips).
await requireRedis();

const HOUSE = fileURLToPath(new URL('../../../data/house_price/', import.meta.url));
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

let t: TestEnv;
let srv: RunningServer;
let direct: string;

before(async () => {
  t = await testEnv();
  srv = await start('all', t);
  direct = await mkdtemp(join(tmpdir(), 'immunize-direct-'));
});

after(async () => {
  await srv?.close();
  if (t) await cleanup(t);
  if (direct) await rm(direct, { recursive: true, force: true });
});

async function uploadFile(path: string, name: string): Promise<{ id: string; sha256: string; format: string; rows: number; cols: number }> {
  const bytes = await readFile(path);
  const form = new FormData();
  form.append('file', new Blob([new Uint8Array(bytes)]), name);
  const res = await fetch(`${srv.url}/v1/datasets`, { method: 'POST', headers: ALICE, body: form });
  assert.equal(res.status, 201, await res.clone().text());
  const body = (await res.json()) as { id: string; sha256: string; format: string; rows: number; cols: number };
  assert.equal(body.sha256, sha(bytes));
  return body;
}

function close(a: number | null, b: number | null, what: string): void {
  if (a === null || b === null) {
    assert.equal(a, b, what);
    return;
  }
  assert.ok(Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b)), `${what}: ${a} vs ${b}`);
}

describe('House Price over HTTP', () => {
  it('upload → submit → SSE → download matches the engine run directly', async () => {
    const d1 = await uploadFile(join(HOUSE, 'D1.csv'), 'D1.csv');
    const d2 = await uploadFile(join(HOUSE, 'D2.csv'), 'D2.csv');
    assert.equal(d1.format, 'csv');
    assert.equal(d1.cols, 81);
    const sides = {
      benign: { labelColumn: 'LotArea', dropColumns: ['SalePrice'], rowLimit: 200 },
      harmful: { labelColumn: 'SalePrice', dropColumns: ['LotArea'], rowLimit: 200 },
    };
    const spec = { benign: { dataset: d1.id, ...sides.benign }, harmful: { dataset: d2.id, ...sides.harmful }, method: 'gradient' };
    const submitted = await fetch(`${srv.url}/v1/jobs`, {
      method: 'POST',
      headers: { ...ALICE, 'content-type': 'application/json', 'idempotency-key': 'house-price-1' },
      body: JSON.stringify(spec),
    });
    assert.equal(submitted.status, 202, await submitted.clone().text());
    const { id, status } = (await submitted.json()) as { id: string; status: string };
    assert.equal(status, 'queued');

    const events = await readSse(`${srv.url}/v1/jobs/${id}/events`, ALICE, (e) => e.event !== 'progress');
    const last = events[events.length - 1];
    assert.equal(last.event, 'completed', JSON.stringify(last.data));
    const progress = events.filter((e) => e.event === 'progress').map((e) => (e.data as { progress: number }).progress);
    assert.ok(progress.length >= 1, 'at least one progress event');
    for (let i = 1; i < progress.length; i++) assert.ok(progress[i] >= progress[i - 1], `progress went back: ${progress.join(', ')}`);
    assert.ok(events.every((e) => ['progress', 'completed'].includes(e.event)));
    const doc = last.data as {
      id: string;
      status: string;
      progress: number;
      attempts: number;
      artifacts: Array<{ name: string; size: number; sha256: string }>;
    };
    assert.equal(doc.id, id);
    assert.equal(doc.progress, 1);
    assert.equal(doc.attempts, 1);

    const download = async (name: string) => {
      const res = await fetch(`${srv.url}/v1/jobs/${id}/artifacts/${name}`, { headers: ALICE });
      assert.equal(res.status, 200);
      const bytes = new Uint8Array(await res.arrayBuffer());
      const listed = doc.artifacts.find((a) => a.name === name)!;
      assert.equal(sha(bytes), listed.sha256, `${name} sha256`);
      assert.equal(bytes.length, listed.size);
      return { bytes, type: res.headers.get('content-type') };
    };
    const metricsFile = await download('metrics.json');
    assert.equal(metricsFile.type, 'application/json');
    const thetaFile = await download('theta.safetensors');

    // The same job, run in this process the way the CLI runs it.
    const local = await runJob(
      parseJobSpec({
        benign: { dataset: join(HOUSE, 'D1.csv'), ...sides.benign },
        harmful: { dataset: join(HOUSE, 'D2.csv'), ...sides.harmful },
        method: 'gradient',
      }),
      { sink: new DirectorySink(direct) },
    );
    const served = JSON.parse(Buffer.from(metricsFile.bytes).toString('utf8'));
    const m = local.metrics;
    assert.equal(served.verdict, m.verdict);
    assert.deepEqual(served.verdictReasons, m.verdictReasons);
    assert.equal(served.dim, 79);
    assert.deepEqual(served.rows, m.rows);
    for (const k of ['rir', 'benignRatio', 'harmfulRatio', 'rirBound', 'thetaCondition'] as const) close(served[k], m[k], k);
    for (const side of ['benign', 'harmful'] as const) {
      for (const when of ['before', 'after'] as const) close(served.kappa[side][when], m.kappa[side][when], `kappa.${side}.${when}`);
    }
    close(served.paperConvention.rir, m.paperConvention.rir, 'paperConvention.rir');
    assert.equal(served.attacks.length, m.attacks.length);
    for (let i = 0; i < m.attacks.length; i++) {
      const a = served.attacks[i];
      const b = m.attacks[i] as unknown as Record<string, unknown>;
      assert.equal(a.attacker, b.attacker);
      assert.equal(a.data, b.data);
      assert.equal(a.stepsRaw, b.stepsRaw, `${a.attacker}/${a.data} raw steps`);
      assert.equal(a.stepsImmunized, b.stepsImmunized, `${a.attacker}/${a.data} immunized steps`);
    }
    assert.deepEqual(served.optimizer, m.optimizer);

    const servedTheta = parseSafetensors(Buffer.from(thetaFile.bytes), 'served').tensors;
    const localTheta = parseSafetensors(await readFile(join(direct, 'theta.safetensors')), 'local').tensors;
    assert.deepEqual(Object.keys(servedTheta).sort(), Object.keys(localTheta).sort());
    for (const name of Object.keys(localTheta)) {
      assert.deepEqual(servedTheta[name].shape, localTheta[name].shape);
      const a = servedTheta[name].data;
      const b = localTheta[name].data;
      let worst = 0;
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / Math.max(1, Math.abs(b[i])));
      assert.ok(worst <= 1e-9, `${name} differs by ${worst}`);
    }

    // Same key, same body: the same job, over HTTP too.
    const again = await fetch(`${srv.url}/v1/jobs`, {
      method: 'POST',
      headers: { ...ALICE, 'content-type': 'application/json', 'idempotency-key': 'house-price-1' },
      body: JSON.stringify(spec),
    });
    assert.deepEqual(await again.json(), { id, status: 'completed' });

    // A finished job's stream answers its final event at once.
    const replay = await readSse(`${srv.url}/v1/jobs/${id}/events`, ALICE);
    assert.deepEqual(
      replay.map((e) => e.event),
      ['completed'],
    );
  });
});
