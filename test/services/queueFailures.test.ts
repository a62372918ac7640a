/**
 * A failure the queue decided that never reached the job's record (the record write failed as the queue failed the
 * job, as it does while Redis is away): the record would say "queued" for good. The sweep of the queue's failed set
 * records it. The faults are injected at the worker's record writes.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { startServer, type RunningServer } from '../../services/server.js';
import type { Records } from '../../services/records.js';
import { ALICE, cleanup, eventually, multipart, randomNpy, requireRedis, start, type TestEnv, testEnv } from '../helpers/service.js';

// Without a Redis this file fails (it never skips).
await requireRedis();

interface Doc {
  status: string;
  error?: { code: string; message: string };
}

let t: TestEnv;
let api: RunningServer;
let worker: RunningServer;
let data: { benign: string; harmful: string };
const logs: Array<{ msg: string; jobId?: string }> = [];

before(async () => {
  t = await testEnv({ IMMUNIZE_JOB_ATTEMPTS: '1' });
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
  data = { benign: await upload('b.npy', randomNpy(50, 8, 7)), harmful: await upload('h.npy', randomNpy(50, 8, 8)) };
});

after(async () => {
  await worker?.close();
  await api?.close();
  if (t) await cleanup(t);
});

async function doc(id: string): Promise<Doc> {
  return (await api.api!.inject({ url: `/v1/jobs/${id}`, headers: ALICE })).json() as Doc;
}

describe('the sweep of failed jobs', () => {
  it('records a failure the queue decided while the record could not be written', async () => {
    const records = worker.services.records;
    const proto = Object.getPrototypeOf(records) as Records;
    // The attempt cannot start and its failure cannot be written: the queue fails the job (one attempt) on its own.
    records.startAttempt = () => Promise.reject(new Error('Connection is closed.'));
    records.fail = () => Promise.reject(new Error('Connection is closed.'));
    let id: string;
    try {
      const r = await api.api!.inject({
        method: 'POST',
        url: '/v1/jobs',
        headers: ALICE,
        payload: { benign: { dataset: data.benign }, harmful: { dataset: data.harmful }, method: 'closed-form' },
      });
      assert.equal(r.statusCode, 202, r.body);
      id = r.json().id as string;
      await eventually('the failure the queue decided, not recorded', async () =>
        logs.some((l) => l.jobId === id && l.msg === 'could not record a failure decided by the queue') ? true : undefined,
      );
    } finally {
      records.startAttempt = proto.startAttempt;
      records.fail = proto.fail;
    }
    assert.equal((await doc(id)).status, 'queued', 'the record still says queued');

    assert.equal(await worker.worker!.sweepQueueFailures(), 1);
    const d = await doc(id);
    assert.equal(d.status, 'failed', JSON.stringify(d));
    assert.equal(d.error?.code, 'internal');
    assert.match(d.error!.message, /Connection is closed/);
    assert.equal(await worker.worker!.sweepQueueFailures(), 0, 'a recorded failure is not recorded again');
  });

  it('leaves completed jobs alone', async () => {
    const r = await api.api!.inject({
      method: 'POST',
      url: '/v1/jobs',
      headers: ALICE,
      payload: { benign: { dataset: data.benign }, harmful: { dataset: data.harmful }, method: 'closed-form', seed: 3 },
    });
    assert.equal(r.statusCode, 202, r.body);
    const id = r.json().id as string;
    await eventually('the job to complete', async () => ((await doc(id)).status === 'completed' ? true : undefined));
    assert.equal(await worker.worker!.sweepQueueFailures(), 0);
    assert.equal((await doc(id)).status, 'completed');
  });
});
