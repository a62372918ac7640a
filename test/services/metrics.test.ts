/**
 * A worker's own /metrics port (IMMUNIZE_WORKER_METRICS_PORT) takes the admin key only, like the API's /metrics;
 * its /healthz stays open for container health checks.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { RunningServer } from '../../services/server.js';
import { ADMIN, ALICE, cleanup, requireRedis, start, type TestEnv, testEnv } from '../helpers/service.js';
import { freePort } from '../../scripts/privateRedis.js';

// Without a Redis this file fails (it never skips).
await requireRedis();

/** A port that was free a moment ago (the worker's metrics port cannot be 0: 0 turns it off). */
let t: TestEnv;
let worker: RunningServer;
let base: string;

before(async () => {
  const port = await freePort();
  t = await testEnv({ IMMUNIZE_WORKER_METRICS_PORT: String(port) });
  worker = await start('worker', t);
  base = `http://127.0.0.1:${port}`;
});

after(async () => {
  await worker?.close();
  if (t) await cleanup(t);
});

describe("a worker's metrics port", () => {
  it('answers /metrics to the admin key only: 401 without a key or with a wrong one, 403 with a tenant key', async () => {
    const anon = await fetch(`${base}/metrics`);
    assert.equal(anon.status, 401);
    assert.equal(anon.headers.get('www-authenticate'), 'Bearer');
    assert.equal(((await anon.json()) as { error: { code: string } }).error.code, 'unauthorized');
    const wrong = await fetch(`${base}/metrics`, { headers: { authorization: 'Bearer not-a-key-0123456789' } });
    assert.equal(wrong.status, 401);
    await wrong.body?.cancel();
    const tenant = await fetch(`${base}/metrics`, { headers: ALICE });
    assert.equal(tenant.status, 403);
    const body = await tenant.text();
    assert.equal((JSON.parse(body) as { error: { code: string } }).error.code, 'forbidden');
    assert.doesNotMatch(body, /immunize_/);
    const admin = await fetch(`${base}/metrics?x=1`, { headers: ADMIN });
    assert.equal(admin.status, 200);
    assert.match(String(admin.headers.get('content-type')), /^text\/plain/);
    assert.match(await admin.text(), /immunize_jobs_total|immunize_job_duration_seconds/);
  });

  it('keeps /healthz open', async () => {
    const r = await fetch(`${base}/healthz`);
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { status: 'ok' });
  });
});
