/**
 * A job's end that its record write missed, as when Redis goes away at that moment. The faults are injected at the
 * worker's record writes.
 *
 * - A job that ran to its end and committed its artifacts, but whose completion could not be written: it is never
 *   recorded as failed and never run again. A retry records the completion from the committed manifest, and so does
 *   the queue's final failure when no attempt is left.
 * - A failure the queue decided that never reached the record: the record would say "queued" for good. The sweep of
 *   the queue's failed set records it.
 */
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { Records } from '../../services/records.js';
import type { RunningServer } from '../../services/server.js';
import {
  ALICE,
  cleanup,
  eventually,
  randomNpy,
  requireRedis,
  start,
  type TestEnv,
  testEnv,
  startLoggedWorker,
  uploadAs,
  type LogLine,
} from '../helpers/service.js';

// Without a Redis this file fails (it never skips).
await requireRedis();

interface Doc {
  status: string;
  attempts: number;
  lastError?: unknown;
  error?: { code: string; message: string };
  artifacts: Array<{ name: string; size: number; sha256: string }>;
}

let t: TestEnv;
let api: RunningServer;
let worker: RunningServer;
let data: { benign: string; harmful: string };
let logs: LogLine[];

before(async () => {
  t = await testEnv({ IMMUNIZE_JOB_ATTEMPTS: '2' });
  api = await start('api', t);
  ({ worker, logs } = await startLoggedWorker(t));
  data = { benign: await uploadAs(api, 'b.npy', randomNpy(50, 8, 5)), harmful: await uploadAs(api, 'h.npy', randomNpy(50, 8, 6)) };
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

async function jobDoc(id: string): Promise<Doc> {
  return (await api.api!.inject({ url: `/v1/jobs/${id}`, headers: ALICE })).json() as Doc;
}

async function finished(id: string): Promise<Doc> {
  return eventually(`job ${id} to finish`, async () => {
    const d = await jobDoc(id);
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

describe('the sweep of failed jobs', () => {
  it('records a failure the queue decided while the record could not be written', async () => {
    const records = worker.services.records;
    const proto = Object.getPrototypeOf(records) as Records;
    // No attempt can start and no failure can be written: the queue fails the job (both attempts) on its own.
    records.startAttempt = () => Promise.reject(new Error('Connection is closed.'));
    records.fail = () => Promise.reject(new Error('Connection is closed.'));
    let id: string;
    try {
      id = await submit(31);
      await eventually('the failure the queue decided, not recorded', async () =>
        logs.some((l) => l.jobId === id && l.msg === 'could not record a failure decided by the queue') ? true : undefined,
      );
    } finally {
      records.startAttempt = proto.startAttempt;
      records.fail = proto.fail;
    }
    assert.equal((await jobDoc(id)).status, 'queued', 'the record still says queued');

    assert.equal(await worker.worker!.sweepQueueFailures(), 1);
    const d = await jobDoc(id);
    assert.equal(d.status, 'failed', JSON.stringify(d));
    assert.equal(d.error?.code, 'internal');
    assert.match(d.error!.message, /Connection is closed/);
    assert.equal(await worker.worker!.sweepQueueFailures(), 0, 'a recorded failure is not recorded again');
  });

  it('leaves completed jobs alone', async () => {
    const id = await submit(32);
    assert.equal((await finished(id)).status, 'completed');
    assert.equal(await worker.worker!.sweepQueueFailures(), 0);
    assert.equal((await jobDoc(id)).status, 'completed');
  });
});
