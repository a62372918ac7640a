/**
 * POST /v1/jobs: the spec is parsed once, at the route, by the parser the CLI uses; what is recorded and queued is
 * the parsed spec, and an Idempotency-Key stays bound to the body as it was sent.
 */
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

  it('writes the record before the queue entry, in one round trip, when there is no Idempotency-Key', async () => {
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
