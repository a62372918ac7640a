/**
 * POST /v1/jobs: the spec is parsed once, at the route, by the parser the CLI uses; what is recorded and queued is
 * the parsed spec, and an Idempotency-Key stays bound to the body as it was sent.
 */
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import type { RunningServer } from '../../services/server.js';
import { ADMIN, ALICE, cleanup, eventually, multipart, randomNpy, requireRedis, start, type TestEnv, testEnv } from '../helpers/service.js';

await requireRedis();

let t: TestEnv;
let srv: RunningServer;
let api: FastifyInstance;
let benign: string;
let harmful: string;

async function uploadOk(filename: string, content: Buffer): Promise<string> {
  const body = multipart(filename, content);
  const r = await api.inject({ method: 'POST', url: '/v1/datasets', headers: { ...ALICE, ...body.headers }, payload: body.payload });
  assert.equal(r.statusCode, 201, r.body);
  return r.json().id as string;
}

const submit = (headers: Record<string, string>, spec: unknown, extra: Record<string, string> = {}) =>
  api.inject({ method: 'POST', url: '/v1/jobs', headers: { ...headers, ...extra }, payload: spec as object });

before(async () => {
  t = await testEnv();
  // The API alone: submitted jobs stay queued.
  srv = await start('api', t);
  api = srv.api!;
  benign = await uploadOk('benign.npy', randomNpy(20, 4, 1));
  harmful = await uploadOk('harmful.npy', randomNpy(20, 4, 2));
});

after(async () => {
  await srv?.close();
  if (t) await cleanup(t);
});

describe('submitting a job', () => {
  it('records the parsed spec, with its defaults filled in', async () => {
    const r = await submit(ALICE, { benign: { dataset: benign }, harmful: { dataset: harmful } });
    assert.equal(r.statusCode, 202, r.body);
    const doc = (await api.inject({ url: `/v1/jobs/${r.json().id}`, headers: ALICE })).json();
    assert.deepEqual(doc.spec, {
      benign: { dataset: benign },
      harmful: { dataset: harmful },
      method: 'spectral',
      mode: 'linear-head',
      kappaBudget: 1e4,
      seed: 0,
      init: 'identity',
    });
  });

  it('refuses the admin key before looking at the body', async () => {
    const r = await submit(ADMIN, { benign: {} });
    assert.equal(r.statusCode, 403, r.body);
    assert.equal(r.json().error.code, 'forbidden');
  });

  it("answers a bad spec with invalid_spec and the parser's message", async () => {
    const r = await submit(ALICE, { benign: { dataset: benign }, harmful: { dataset: harmful }, mode: 'last-block' });
    assert.equal(r.statusCode, 400, r.body);
    assert.deepEqual(r.json().error, {
      code: 'invalid_spec',
      message: 'mode last-block trains a block of the backbone: give backbone (--backbone MODEL.onnx)',
    });
  });

  it('binds an Idempotency-Key to the body as sent, not to the parsed spec', async () => {
    const spec = { benign: { dataset: benign }, harmful: { dataset: harmful } };
    const first = await submit(ALICE, spec, { 'idempotency-key': 'as-sent-1' });
    assert.equal(first.statusCode, 202, first.body);
    const same = await submit(ALICE, { harmful: { dataset: harmful }, benign: { dataset: benign } }, { 'idempotency-key': 'as-sent-1' });
    assert.equal(same.statusCode, 202, same.body);
    assert.equal(same.json().id, first.json().id);
    // The same spec once parsed, but another body.
    const explicit = await submit(ALICE, { ...spec, seed: 0 }, { 'idempotency-key': 'as-sent-1' });
    assert.equal(explicit.statusCode, 409, explicit.body);
    assert.equal(explicit.json().error.code, 'idempotency_conflict');
  });

  it('writes the record before the queue entry, in one script, when there is no Idempotency-Key', async () => {
    const monitor = await srv.services.redis.monitor();
    const seen: string[] = [];
    monitor.on('monitor', (_time: string, args: string[]) => seen.push(`${String(args[0]).toLowerCase()} ${args[1] ?? ''}`));
    try {
      const ids: string[] = [];
      const answers = await Promise.all(Array.from({ length: 5 }, () => submit(ALICE, { benign: { dataset: benign }, harmful: { dataset: harmful } })));
      for (const r of answers) {
        assert.equal(r.statusCode, 202, r.body);
        ids.push(r.json().id as string);
      }
      await eventually('the monitor saw every queue entry', async () =>
        ids.every((id) => seen.some((c) => c.startsWith('hmset') && c.endsWith(`:${id}`))) ? true : undefined,
      );
      for (const id of ids) {
        const record = seen.findIndex((c) => c === `hset ${t.prefix}:job:${id}`);
        const entry = seen.findIndex((c) => c.startsWith('hmset') && c.endsWith(`:${id}`));
        assert.ok(record >= 0 && record < entry, `record at ${record}, queue entry at ${entry}`);
      }
    } finally {
      monitor.disconnect();
    }
  });

  it('queues each of many concurrent submissions exactly once, each with its record', async () => {
    const { queue, records } = srv.services;
    const before = new Set((await records.listJobIds('alice', 100)).ids);
    const answers = await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        submit(ALICE, { benign: { dataset: benign }, harmful: { dataset: harmful }, seed: i }, i % 3 === 0 ? { 'idempotency-key': `many-${i}` } : {}),
      ),
    );
    const ids = answers.map((r) => {
      assert.equal(r.statusCode, 202, r.body);
      return r.json().id as string;
    });
    assert.equal(new Set(ids).size, ids.length);
    const waiting = (await queue.queue.getJobs(['waiting'])).map((j) => j.id);
    for (const [i, id] of ids.entries()) {
      assert.equal(waiting.filter((w) => w === id).length, 1, `job ${id} is queued once`);
      const record = await records.getJob(id);
      assert.equal(record?.status, 'queued');
      assert.equal((record?.spec as { seed: number }).seed, i);
    }
    const added = (await records.listJobIds('alice', 100)).ids.filter((id) => !before.has(id));
    assert.deepEqual(added.sort(), [...ids].sort());
  });

  it('answers every submission with an error, and keeps nothing of any, when the queue refuses their entries', async () => {
    const { queue, records, redis } = srv.services;
    const jobsBefore = (await records.listJobIds('alice', 100)).ids;
    const recordsBefore = (await redis.keys(`${t.prefix}:job:*`)).sort();
    const waitingBefore = await queue.queue.getWaitingCount();
    // The queue's own add script fails on a key of the wrong type, after the record is written in the same script.
    await redis.set(queue.queue.keys.meta, 'not a hash');
    let answers;
    try {
      answers = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          submit(ALICE, { benign: { dataset: benign }, harmful: { dataset: harmful }, seed: i }, i % 2 === 0 ? { 'idempotency-key': `refused-${i}` } : {}),
        ),
      );
    } finally {
      await redis.del(queue.queue.keys.meta);
    }
    for (const r of answers) {
      assert.equal(r.statusCode, 500, r.body);
      assert.equal(r.json().error.code, 'internal');
    }
    assert.deepEqual((await records.listJobIds('alice', 100)).ids, jobsBefore, 'no job is listed');
    assert.deepEqual((await redis.keys(`${t.prefix}:job:*`)).sort(), recordsBefore, 'no record is left');
    assert.equal(await queue.queue.getWaitingCount(), waitingBefore, 'no queue entry is left');
    for (const i of [0, 2, 4]) {
      const keyHash = createHash('sha256').update(`refused-${i}`).digest('hex');
      assert.equal(await redis.exists(`${t.prefix}:idem:alice:${keyHash}`), 0, 'the key is free again');
    }
    // With the queue whole again, the same key makes a new job.
    const again = await submit(ALICE, { benign: { dataset: benign }, harmful: { dataset: harmful }, seed: 0 }, { 'idempotency-key': 'refused-0' });
    assert.equal(again.statusCode, 202, again.body);
    assert.equal(again.headers['idempotent-replayed'], undefined);
    assert.equal(await queue.state(again.json().id), 'waiting');
  });

  it('refuses a spec whose dataset was deleted since its record was read, and writes nothing', async () => {
    const { queue, records } = srv.services;
    const gone = await uploadOk('gone.npy', randomNpy(20, 4, 3));
    const spec = { benign: { dataset: benign }, harmful: { dataset: gone } };
    // Read (and remembered) by this submission's checks.
    assert.equal((await submit(ALICE, spec)).statusCode, 202);
    // Deleted as another API process would delete it: this one is not told.
    await records.deleteDataset(gone, 'alice');
    const jobsBefore = (await records.listJobIds('alice', 100)).ids;
    const waitingBefore = await queue.queue.getWaitingCount();
    for (const extra of [{}, { 'idempotency-key': 'gone-1' }] as Array<Record<string, string>>) {
      const r = await submit(ALICE, spec, extra);
      assert.equal(r.statusCode, 404, r.body);
      assert.deepEqual(r.json().error, { code: 'not_found', message: `harmful.dataset: no dataset with id ${gone}` });
    }
    assert.deepEqual((await records.listJobIds('alice', 100)).ids, jobsBefore);
    assert.equal(await queue.queue.getWaitingCount(), waitingBefore);
    const keyHash = createHash('sha256').update('gone-1').digest('hex');
    assert.equal(await srv.services.redis.exists(`${t.prefix}:idem:alice:${keyHash}`), 0);
  });

  it('documents the body with the job spec schema', async () => {
    const docs = (await api.inject('/docs/json')).json() as {
      paths: Record<
        string,
        { post?: { requestBody?: { content?: Record<string, { schema?: { properties?: Record<string, unknown>; required?: string[] } }> } } }
      >;
    };
    const schema = docs.paths['/v1/jobs'].post?.requestBody?.content?.['application/json']?.schema;
    assert.ok(schema?.properties, 'POST /v1/jobs documents its body');
    for (const field of ['backbone', 'benign', 'harmful', 'method', 'mode', 'steps', 'kappaBudget', 'seed'])
      assert.ok(field in schema.properties, `no ${field}`);
    assert.deepEqual([...(schema.required ?? [])].sort(), ['benign', 'harmful', 'init', 'kappaBudget', 'method', 'mode', 'seed']);
  });
});
