/**
 * GET /v1/jobs/:id renders a job once per change of its record (JobViews): a kept rendering is served only for the
 * very record it was made from, and only to whom may see that record.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { newId } from '../../services/ids.js';
import { jobDoc } from '../../services/jobs.js';
import { JobViews } from '../../services/jobViews.js';
import type { Records } from '../../services/records.js';
import type { RunningServer } from '../../services/server.js';
import { ADMIN, ALICE, BOB, cleanup, requireRedis, start, type TestEnv, testEnv } from '../helpers/service.js';

await requireRedis();

describe('JobViews', () => {
  it('gives a rendering back for the same record text only', () => {
    const views = new JobViews();
    views.set('j1', '{"status":"queued"}', 'alice', 'doc 1');
    assert.deepEqual(views.get('j1', '{"status":"queued"}'), { recordText: '{"status":"queued"}', tenant: 'alice', view: 'doc 1' });
    assert.equal(views.get('j1', '{"status":"running"}'), undefined);
    assert.equal(views.get('j2', '{"status":"queued"}'), undefined);
    views.set('j1', '{"status":"running"}', 'alice', 'doc 2');
    assert.equal(views.get('j1', '{"status":"queued"}'), undefined);
    assert.equal(views.get('j1', '{"status":"running"}')?.view, 'doc 2');
    assert.equal(views.size, 1);
  });

  it('keeps at most its capacity, dropping the rendering stored first', () => {
    const views = new JobViews(2);
    views.set('a', 'ta', 't', 'A');
    views.set('b', 'tb', 't', 'B');
    views.set('a', 'ta2', 't', 'A2'); // a stored again: now the newest
    views.set('c', 'tc', 't', 'C');
    assert.equal(views.size, 2);
    assert.equal(views.get('b', 'tb'), undefined);
    assert.equal(views.get('a', 'ta2')?.view, 'A2');
    assert.equal(views.get('c', 'tc')?.view, 'C');
    assert.throws(() => new JobViews(0), /capacity/);
  });
});

describe('GET /v1/jobs/:id with kept renderings', () => {
  let t: TestEnv;
  let srv: RunningServer;
  let api: FastifyInstance;
  let records: Records;
  before(async () => {
    t = await testEnv();
    srv = await start('api', t);
    api = srv.api!;
    records = srv.services.records;
  });
  after(async () => {
    await srv?.close();
    if (t) await cleanup(t);
  });

  const get = (id: string, headers: Record<string, string>) => api.inject({ method: 'GET', url: `/v1/jobs/${id}`, headers });

  /** The document as jobDoc makes it from a fresh read of the record, through JSON (as a client reads it). */
  async function expected(id: string): Promise<unknown> {
    const r = await records.getJob(id);
    assert.ok(r);
    return JSON.parse(JSON.stringify(jobDoc(r)));
  }

  it('answers each change of the record, the same bytes for an unchanged one, and 404 to another tenant', async () => {
    const id = newId('job');
    await records.createJob({ id, tenant: 'alice', name: 'immunize', spec: { method: 'closed-form', kappaBudget: 100 }, createdAt: Date.now() });

    const first = await get(id, ALICE);
    assert.equal(first.statusCode, 200, first.body);
    assert.match(String(first.headers['content-type']), /^application\/json; charset=utf-8$/);
    assert.deepEqual(first.json(), await expected(id));
    assert.equal((first.json() as { status: string }).status, 'queued');
    const again = await get(id, ALICE);
    assert.equal(again.body, first.body);

    // Kept for alice, it is still not found for bob; the admin key sees it.
    assert.equal((await get(id, BOB)).statusCode, 404);
    assert.equal((await get(id, ADMIN)).body, first.body);

    await records.startAttempt(id, 'w1');
    await records.progress(id, { fraction: 0.25, phase: 'optimise', step: 3, of: 12 });
    const running = await get(id, ALICE);
    assert.deepEqual(running.json(), await expected(id));
    assert.deepEqual([(running.json() as { status: string }).status, (running.json() as { progress: number }).progress], ['running', 0.25]);

    // One field changed by hand, outside the service's writes: it shows at once.
    await srv.services.redis.hset(records.jobKey(id), 'attempts', '7');
    assert.equal((await get(id, ALICE)).json().attempts, 7);

    await records.deleteJob(id, 'alice');
    assert.equal((await get(id, ALICE)).statusCode, 404);
    assert.equal((await get(id, ADMIN)).statusCode, 404);
  });

  it('answers 404 for an id that is not a job id and for a key that is not a job', async () => {
    assert.equal((await get('not-an-id', ALICE)).statusCode, 404);
    const id = newId('job');
    await srv.services.redis.hset(records.jobKey(id), 'unrelated', 'x');
    assert.equal((await get(id, ALICE)).statusCode, 404);
  });
});
