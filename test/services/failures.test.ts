/**
 * Failure handling end to end: transient failures are retried with backoff, bad input fails at once, a running
 * job can be purged, finished jobs expire after the retention period, and SSE ends with failed or cancelled.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { sweepOnce } from '../../services/retention.js';
import { StagingSink } from '../../workers/staging.js';
import type { RunningServer } from '../../services/server.js';
import { ALICE, cleanup, eventually, multipart, randomNpy, requireRedis, start, type TestEnv, testEnv } from '../helpers/service.js';

// Without a Redis this file fails (it never skips).
await requireRedis();

interface Doc {
  id: string;
  status: string;
  attempts: number;
  progress: number;
  stage: { phase?: string; step?: number };
  error?: { code: string; message: string };
  lastError?: { code: string; message: string };
  artifacts: unknown[];
}

let t: TestEnv;
let api: RunningServer;
let worker: RunningServer | null = null;
let app: FastifyInstance;
let small: { benign: string; harmful: string };

async function upload(name: string, bytes: Buffer): Promise<string> {
  const body = multipart(name, bytes);
  const r = await app.inject({ method: 'POST', url: '/v1/datasets', headers: { ...ALICE, ...body.headers }, payload: body.payload });
  assert.equal(r.statusCode, 201, r.body);
  return r.json().id;
}

async function submit(spec: unknown): Promise<string> {
  const r = await app.inject({ method: 'POST', url: '/v1/jobs', headers: ALICE, payload: spec as object });
  assert.equal(r.statusCode, 202, r.body);
  return r.json().id;
}

async function doc(id: string): Promise<Doc> {
  return (await app.inject({ url: `/v1/jobs/${id}`, headers: ALICE })).json() as Doc;
}

function until(id: string, test: (d: Doc) => boolean, what: string, timeoutMs = 30_000): Promise<Doc> {
  return eventually(
    `job ${id}: ${what}`,
    async () => {
      const d = await doc(id);
      return test(d) ? d : undefined;
    },
    timeoutMs,
  );
}

before(async () => {
  t = await testEnv({ IMMUNIZE_JOB_ATTEMPTS: '3' });
  // The API alone first: jobs wait in the queue until a worker starts.
  api = await start('api', t);
  app = api.api!;
  small = { benign: await upload('b.npy', randomNpy(50, 8, 1)), harmful: await upload('h.npy', randomNpy(50, 8, 2)) };
});

after(async () => {
  await worker?.close();
  await api?.close();
  if (t) await cleanup(t);
});

describe('failures', () => {
  it('retries a transient failure with backoff, then completes', async () => {
    const id = await submit({ benign: { dataset: small.benign }, harmful: { dataset: small.harmful }, method: 'closed-form' });
    // Something in the way of the job's directory: the attempt cannot write its artifacts.
    const obstacle = join(t.dataDir, 'jobs', id);
    await writeFile(obstacle, 'not a directory');
    worker = await start('worker', t);
    const retrying = await until(id, (d) => d.attempts >= 1 && d.lastError !== undefined, 'a failed first attempt');
    assert.equal(retrying.lastError!.code, 'internal');
    assert.notEqual(retrying.status, 'failed', 'a transient failure is not final');
    await rm(obstacle);
    const done = await until(id, (d) => d.status === 'completed' || d.status === 'failed', 'the retry');
    assert.equal(done.status, 'completed', JSON.stringify(done));
    assert.equal(done.attempts, 2);
    assert.equal(done.lastError, undefined);
  });

  it('fails bad input at once, without retrying, and SSE says failed', async () => {
    const doomed = await upload('doomed.npy', randomNpy(50, 8, 3));
    await worker!.close();
    worker = null;
    const id = await submit({ benign: { dataset: small.benign }, harmful: { dataset: doomed }, method: 'closed-form' });
    // The dataset is deleted before the job runs: retrying cannot help.
    const del = await app.inject({ method: 'DELETE', url: `/v1/datasets/${doomed}`, headers: ALICE });
    assert.equal(del.statusCode, 204);
    worker = await start('worker', t);
    const failed = await until(id, (x) => x.status === 'failed' || x.status === 'completed', 'a permanent failure');
    assert.equal(failed.status, 'failed');
    assert.equal(failed.attempts, 1, 'no retry for bad input');
    assert.equal(failed.error!.code, 'not_found');
    assert.match(failed.error!.message, /harmful\.dataset: dataset d\w+ does not exist/);
    assert.ok(!failed.error!.message.includes(t.dataDir), 'no server path in the message');
    const sse = await app.inject({ url: `/v1/jobs/${id}/events`, headers: ALICE });
    assert.match(sse.body, /event: failed\ndata: \{.*"status":"failed"/);
  });

  it('purges a running job once it stops: record and bytes', async () => {
    const b = await upload('lb.npy', randomNpy(200, 32, 5));
    const h = await upload('lh.npy', randomNpy(200, 32, 6));
    const id = await submit({ benign: { dataset: b }, harmful: { dataset: h }, method: 'paper', steps: 200_000 });
    await until(id, (d) => d.status === 'running' && (d.stage.step ?? 0) > 0, 'optimizing');
    const r = await app.inject({ method: 'DELETE', url: `/v1/jobs/${id}?purge=true`, headers: ALICE });
    assert.equal(r.statusCode, 202, r.body);
    assert.equal(r.json().status, 'running');
    await eventually('the purge', async () => ((await app.inject({ url: `/v1/jobs/${id}`, headers: ALICE })).statusCode === 404 ? true : undefined), 20_000);
    await eventually('the job directory to go', async () => (existsSync(join(t.dataDir, 'jobs', id)) ? undefined : true));
  });

  it('streams cancelled for a cancelled job', async () => {
    await worker!.close();
    worker = null;
    const id = await submit({ benign: { dataset: small.benign }, harmful: { dataset: small.harmful }, method: 'closed-form' });
    const r = await app.inject({ method: 'DELETE', url: `/v1/jobs/${id}`, headers: ALICE });
    assert.deepEqual(r.json(), { id, status: 'cancelled' });
    const sse = await app.inject({ url: `/v1/jobs/${id}/events`, headers: ALICE });
    assert.equal(sse.headers['content-type'], 'text/event-stream; charset=utf-8');
    assert.match(sse.body, /event: cancelled\ndata: \{.*"status":"cancelled"/);
  });

  it('records the result of an attempt that committed its artifacts but died before recording them', async () => {
    await worker?.close();
    worker = null;
    const id = await submit({ benign: { dataset: small.benign }, harmful: { dataset: small.harmful }, method: 'closed-form', seed: 7 });
    // What a worker killed between the commit and the record update leaves behind.
    const store = api.services.store;
    const sink = new StagingSink(await store.stagingDir(id, '1-0badc0de'));
    await sink.put('metrics.json', Buffer.from('{"verdict":"immunized"}'), 'application/json');
    assert.equal(await store.commit(id, '1-0badc0de', { metrics: { verdict: 'immunized' }, artifacts: sink.artifacts }), true);
    worker = await start('worker', t);
    const d = await until(id, (x) => x.status === 'completed' || x.status === 'failed', 'completion');
    assert.equal(d.status, 'completed');
    assert.equal(d.attempts, 0, 'the engine did not run again');
    assert.deepEqual(
      d.artifacts.map((a) => (a as { name: string }).name),
      ['metrics.json'],
    );
    const dl = await app.inject({ url: `/v1/jobs/${id}/artifacts/metrics.json`, headers: ALICE });
    assert.equal(dl.body, '{"verdict":"immunized"}');
  });

  it('records the failure of a job that stalled too often, which the queue decides without a processor', async () => {
    await worker?.close();
    worker = null;
    const id = await submit({ benign: { dataset: small.benign }, harmful: { dataset: small.harmful }, method: 'closed-form', seed: 9 });
    // What a worker killed mid-job leaves once BullMQ's stalled-job check has run past the limit: the record still
    // says running, and the queue's job carries a deferred failure that the next worker to take it acts on.
    await api.services.records.startAttempt(id, 'a-worker-that-died');
    await api.services.redis.hset(`${t.prefix}:q:${t.env.IMMUNIZE_QUEUE}:${id}`, 'defa', 'job stalled more than allowable limit');
    worker = await start('worker', t);
    const d = await until(id, (x) => x.status === 'failed' || x.status === 'completed', 'the failure');
    assert.equal(d.status, 'failed', JSON.stringify(d));
    assert.equal(d.error!.code, 'stalled');
    assert.match(d.error!.message, /stalled more than allowable limit/);
    assert.equal(d.attempts, 1, 'no processor ran it again');
  });

  it('purges finished jobs after the retention period', async () => {
    const id = await submit({ benign: { dataset: small.benign }, harmful: { dataset: small.harmful }, method: 'closed-form', seed: 5 });
    await until(id, (d) => d.status === 'completed', 'completed');
    const s = api.services;
    assert.equal(await sweepOnce(s.redis, s.records, s.jobs, 30), 0, 'nothing is 30 days old yet');
    assert.ok(existsSync(join(t.dataDir, 'jobs', id)));
    const purged = await sweepOnce(s.redis, s.records, s.jobs, 30, Date.now() + 31 * 86_400_000);
    assert.ok(purged >= 1);
    assert.equal((await app.inject({ url: `/v1/jobs/${id}`, headers: ALICE })).statusCode, 404);
    assert.ok(!existsSync(join(t.dataDir, 'jobs', id)));
  });
});
