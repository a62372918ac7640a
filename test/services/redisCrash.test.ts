/**
 * A Redis crash under load (scripts/soakRedisCrash.ts, small): a Redis of the test's own, with appendonly yes and
 * appendfsync always, is SIGKILLed while clients submit jobs and workers run them, then started again from its AOF.
 * No acknowledged job is lost, none runs twice, and every artifact matches its recorded sha256, for clients that
 * give up on a refused submit and for clients that send it again with the same Idempotency-Key.
 *
 * The states a crash can cut a submission into are also set up one by one against the test Redis: a record with
 * its key claimed but never queued, and (as earlier versions could leave) a claimed key with no record.
 */
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { newId } from '../../services/ids.js';
import { canonicalJson } from '../../services/jobs.js';
import type { RunningServer } from '../../services/server.js';
import { describeRedisCrash, soakRedisCrash, type RedisCrashOptions } from '../../scripts/soakRedisCrash.js';
import { ALICE, cleanup, multipart, randomNpy, requireRedis, start, type TestEnv, testEnv } from '../helpers/service.js';

const base: RedisCrashOptions = {
  jobs: 40,
  appendfsync: 'always',
  kills: 1,
  downMs: 1000,
  clients: 4,
  retry: false,
  workers: 2,
  concurrency: 1,
  lockMs: 2000,
  timeoutMs: 120_000,
  log: () => undefined,
};

describe('Redis SIGKILLed mid-run', { timeout: 180_000 }, () => {
  it('loses no acknowledged job, runs none twice, and keeps every artifact whole', async () => {
    const report = await soakRedisCrash(base);
    const { lines, ok } = describeRedisCrash(report);
    assert.ok(ok, lines.join('\n'));
    assert.equal(report.kills.length, 1);
    assert.ok(report.acknowledged >= base.jobs / 2, lines.join('\n'));
    assert.equal(report.completed, report.acknowledged);
  });

  it('loses nothing either for a client that sends a refused submit again with the same Idempotency-Key', async () => {
    const report = await soakRedisCrash({ ...base, retry: true, clients: 8 });
    const { lines, ok } = describeRedisCrash(report);
    assert.ok(ok, lines.join('\n'));
    // Retrying clients get every job acknowledged in the end.
    assert.equal(report.acknowledged, base.jobs, lines.join('\n'));
    assert.equal(report.unacknowledgedRecords, 0, lines.join('\n'));
  });
});

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

describe('a submission cut off by a crash, sent again with its Idempotency-Key', () => {
  let t: TestEnv;
  let srv: RunningServer;
  let api: FastifyInstance;
  let spec: { benign: { dataset: string }; harmful: { dataset: string }; method: string; seed: number };

  const upload = async (name: string, bytes: Buffer) => {
    const body = multipart(name, bytes);
    const r = await api.inject({ method: 'POST', url: '/v1/datasets', headers: { ...ALICE, ...body.headers }, payload: body.payload });
    assert.equal(r.statusCode, 201, r.body);
    return r.json().id as string;
  };
  const submit = (key: string, body: unknown = spec) =>
    api.inject({ method: 'POST', url: '/v1/jobs', headers: { ...ALICE, 'idempotency-key': key }, payload: body as object });
  const claimFor = (key: string, body: unknown = spec) => ({ keyHash: sha256(key), bodyHash: sha256(canonicalJson(body)), ttlSeconds: 3600 });

  before(async () => {
    await requireRedis();
    t = await testEnv();
    // The API alone: a queued job stays in the queue, where the test can see it.
    srv = await start('api', t);
    api = srv.api!;
    spec = {
      benign: { dataset: await upload('b.npy', randomNpy(20, 4, 1)) },
      harmful: { dataset: await upload('h.npy', randomNpy(20, 4, 2)) },
      method: 'closed-form',
      seed: 3,
    };
  });

  after(async () => {
    await srv?.close();
    if (t) await cleanup(t);
  });

  /** What a submission cut off between its record and its queue entry leaves: the key's claim and the record. */
  const writeUnqueued = async (key: string) => {
    const { records, redis } = srv.services;
    const id = newId('job');
    const claim = claimFor(key);
    await records.createJob({ id, tenant: 'alice', name: 'immunize', spec, createdAt: Date.now() });
    await redis.hset(records.jobKey(id), 'idemKey', claim.keyHash);
    await redis.set(`${t.prefix}:idem:alice:${claim.keyHash}`, JSON.stringify({ bodyHash: claim.bodyHash, jobId: id }));
    return id;
  };

  it('queues a job whose record and key were written but which never reached the queue', async () => {
    const { queue } = srv.services;
    const id = await writeUnqueued('cut-1');
    assert.equal(await queue.state(id), null);

    const again = await submit('cut-1');
    assert.equal(again.statusCode, 202, again.body);
    assert.equal(again.json().id, id);
    assert.equal(again.headers['idempotent-replayed'], 'true');
    assert.equal(await queue.state(id), 'waiting');
    // Once more: the queue already holds it, and still holds it once.
    assert.equal((await submit('cut-1')).json().id, id);
    assert.equal((await queue.queue.getJobs(['waiting'])).filter((j) => j.id === id).length, 1);
  });

  it('makes a new job for a key that stands for a job with no record', async () => {
    const { redis, queue } = srv.services;
    const ghost = newId('job');
    await redis.set(`${t.prefix}:idem:alice:${sha256('cut-2')}`, JSON.stringify({ bodyHash: claimFor('cut-2').bodyHash, jobId: ghost }));
    const r = await submit('cut-2');
    assert.equal(r.statusCode, 202, r.body);
    const id = r.json().id as string;
    assert.notEqual(id, ghost);
    assert.equal(r.headers['idempotent-replayed'], undefined);
    assert.equal((await api.inject({ url: `/v1/jobs/${id}`, headers: ALICE })).statusCode, 200);
    assert.equal(await queue.state(id), 'waiting');
    assert.equal((await submit('cut-2')).json().id, id);
  });

  it('keeps neither key nor record of a job it could not queue, and a late take-back spares a replayed job', async () => {
    const { records, redis, queue } = srv.services;
    const jobsBefore = (await records.listJobIds('alice', 100)).ids;
    const entry = queue.entry.bind(queue);
    queue.entry = () => {
      throw new Error('Connection is closed.');
    };
    try {
      const r = await submit('cut-3');
      assert.equal(r.statusCode, 503, r.body);
    } finally {
      queue.entry = entry;
    }
    assert.equal(await redis.exists(`${t.prefix}:idem:alice:${sha256('cut-3')}`), 0, 'the key is free again');
    assert.deepEqual((await records.listJobIds('alice', 100)).ids, jobsBefore, 'no record is left');

    // A replay marks the record, and a late take-back leaves it alone.
    const id = await writeUnqueued('cut-4');
    assert.equal((await submit('cut-4')).json().id, id);
    assert.equal(await records.abandonJob(id, 'alice', sha256('cut-4')), false);
    assert.notEqual(await records.getJob(id), null);
    assert.equal(await queue.state(id), 'waiting');
  });

  it('answers a used key with its job even when the spec no longer passes, and refuses a new key', async () => {
    const first = await submit('cut-5');
    assert.equal(first.statusCode, 202, first.body);
    await api.inject({ method: 'DELETE', url: `/v1/datasets/${spec.harmful.dataset}`, headers: ALICE });
    const again = await submit('cut-5');
    assert.equal(again.statusCode, 202, again.body);
    assert.equal(again.json().id, first.json().id);
    assert.equal((await submit('cut-6')).statusCode, 404);
  });
});
