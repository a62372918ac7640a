/**
 * A job that ran to its end and committed its artifacts, but whose completion could not be written to its record (as
 * when Redis goes away at that moment): it is never recorded as failed and never run again. A retry records the
 * completion from the committed manifest, and so does the queue's final failure when no attempt is left. The fault
 * is injected at the worker's record write.
 */
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { startServer, type RunningServer } from '../../services/server.js';
import { ALICE, cleanup, eventually, randomNpy, requireRedis, start, multipart, type TestEnv, testEnv } from '../helpers/service.js';

// Without a Redis this file fails (it never skips).
await requireRedis();

interface Doc {
  status: string;
  attempts: number;
  lastError?: unknown;
  artifacts: Array<{ name: string; size: number; sha256: string }>;
}

let t: TestEnv;
let api: RunningServer;
let worker: RunningServer;
let data: { benign: string; harmful: string };
const logs: Array<{ msg: string; jobId?: string }> = [];

before(async () => {
  t = await testEnv({ IMMUNIZE_JOB_ATTEMPTS: '2' });
  api = await start('api', t);
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) logs.push(JSON.parse(line) as (typeof logs)[number]);
      done();
    },
  });
  worker = await startServer('worker', t.env, pino({ level: 'info' }, sink));
  const upload = async (name: string, bytes: Buffer) => {
    const body = multipart(name, bytes);
    const r = await api.api!.inject({ method: 'POST', url: '/v1/datasets', headers: { ...ALICE, ...body.headers }, payload: body.payload });
    assert.equal(r.statusCode, 201, r.body);
    return r.json().id as string;
  };
  data = { benign: await upload('b.npy', randomNpy(50, 8, 5)), harmful: await upload('h.npy', randomNpy(50, 8, 6)) };
});

const realComplete = () => Object.getPrototypeOf(worker.services.records).complete as RunningServer['services']['records']['complete'];

afterEach(() => {
  worker.services.records.complete = realComplete();
});

after(async () => {
  await worker?.close();
  await api?.close();
  if (t) await cleanup(t);
});

/** The worker's record write of a completion fails the first `times` times, as it does while Redis is away. */
function completionsFail(times: number): () => number {
  let calls = 0;
  const real = realComplete();
  worker.services.records.complete = function (...args) {
    if (calls++ < times) return Promise.reject(new Error('Connection is closed.'));
    return real.apply(this, args);
  };
  return () => calls;
}

async function submit(seed: number): Promise<string> {
  const spec = { benign: { dataset: data.benign }, harmful: { dataset: data.harmful }, method: 'closed-form', seed };
  const r = await api.api!.inject({ method: 'POST', url: '/v1/jobs', headers: ALICE, payload: spec });
  assert.equal(r.statusCode, 202, r.body);
  return r.json().id as string;
}

async function finished(id: string): Promise<Doc> {
  return eventually(`job ${id} to finish`, async () => {
    const d = (await api.api!.inject({ url: `/v1/jobs/${id}`, headers: ALICE })).json() as Doc;
    return d.status === 'completed' || d.status === 'failed' ? d : undefined;
  });
}

const said = (id: string, msg: RegExp) => logs.filter((l) => l.jobId === id && msg.test(l.msg)).length;

async function assertWholeArtifacts(id: string, d: Doc): Promise<void> {
  assert.ok(d.artifacts.length >= 4, JSON.stringify(d.artifacts));
  for (const a of d.artifacts) {
    const dl = await api.api!.inject({ url: `/v1/jobs/${id}/artifacts/${a.name}`, headers: ALICE });
    assert.equal(dl.statusCode, 200, a.name);
    assert.equal(createHash('sha256').update(dl.rawPayload).digest('hex'), a.sha256, `${a.name}: its recorded sha256`);
  }
}

describe('a completion that could not be recorded', () => {
  it('is recorded by the retry, without running the job again or recording a failure', async () => {
    const calls = completionsFail(1);
    const id = await submit(21);
    const d = await finished(id);
    assert.equal(d.status, 'completed', JSON.stringify(d));
    assert.equal(calls(), 2, 'the failed write, then the one by the retry');
    assert.equal(d.attempts, 1, 'the engine ran once');
    assert.equal(said(id, /^job started$/), 1);
    assert.equal(d.lastError, undefined, 'no failure was recorded on the way');
    assert.equal(said(id, /^job failed/), 0);
    assert.equal(said(id, /^job ran to its end and its artifacts are committed, but its completion could not be recorded/), 1);
    assert.equal(said(id, /^job completed by an earlier attempt; recorded now$/), 1);
    await assertWholeArtifacts(id, d);
  });

  it('is recorded when the queue fails the job for good, with no attempt left to record it', async () => {
    // The committing attempt's write and the retry's (the last attempt) both fail: the queue then fails the job.
    const calls = completionsFail(2);
    const id = await submit(22);
    const d = await finished(id);
    assert.equal(d.status, 'completed', JSON.stringify(d));
    assert.equal(calls(), 3);
    assert.equal(d.attempts, 1, 'the engine ran once');
    assert.equal(said(id, /^job failed/), 0);
    assert.equal(said(id, /^job completed by an earlier attempt; recorded now$/), 1);
    await assertWholeArtifacts(id, d);
  });
});
