/**
 * Redis at its memory limit. Under noeviction (the policy the queue needs) Redis refuses writes once it reaches
 * maxmemory, and reads go on. A submission, an upload, a cancel or a sign-in then answers 507 insufficient_storage with Retry-After, and
 * keeps nothing: no record, no file, no claimed Idempotency-Key. Reads answer as before, and once there is room again
 * the same requests succeed. The test runs a Redis of its own and lowers its maxmemory below what it holds.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startPrivateRedis, type PrivateRedis } from '../../scripts/privateRedis.js';
import type { RunningServer } from '../../services/server.js';
import { ALICE, ALICE_KEY, multipart, randomNpy, start, testEnv, type TestEnv } from '../helpers/service.js';

let dir: string;
let redis: PrivateRedis;
let client: Redis;
let t: TestEnv;
let api: RunningServer;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'immunize-full-'));
  redis = await startPrivateRedis({ dir, args: ['--appendonly', 'no', '--maxmemory-policy', 'noeviction'] });
  client = new Redis(redis.url);
  t = await testEnv({ REDIS_URL: redis.url });
  api = await start('api', t);
});

after(async () => {
  await api?.close();
  client?.disconnect();
  await redis?.stop();
  if (t) await rm(t.dataDir, { recursive: true, force: true });
  await rm(dir, { recursive: true, force: true });
});

function upload(name: string, bytes: Buffer) {
  const body = multipart(name, bytes);
  return api.api!.inject({ method: 'POST', url: '/v1/datasets', headers: { ...ALICE, ...body.headers }, payload: body.payload });
}

function submit(spec: object, idempotencyKey?: string) {
  const headers = idempotencyKey ? { ...ALICE, 'idempotency-key': idempotencyKey } : ALICE;
  return api.api!.inject({ method: 'POST', url: '/v1/jobs', headers, payload: spec });
}

async function jobCount(): Promise<number> {
  const r = await api.api!.inject({ url: '/v1/jobs', headers: ALICE });
  assert.equal(r.statusCode, 200, r.body);
  return (r.json() as { items: unknown[] }).items.length;
}

const files = async (sub: string) => (await readdir(join(t.dataDir, sub), { recursive: true }).catch(() => [] as string[])).sort();

describe('Redis at its memory limit', () => {
  it('answers writes 507 with Retry-After and keeps nothing; reads go on; writes succeed once there is room', async () => {
    const benign = await upload('b.npy', randomNpy(50, 8, 1));
    const harmful = await upload('h.npy', randomNpy(50, 8, 2));
    assert.equal(benign.statusCode, 201, benign.body);
    assert.equal(harmful.statusCode, 201, harmful.body);
    const spec = { benign: { dataset: benign.json().id }, harmful: { dataset: harmful.json().id }, method: 'closed-form' };
    const first = await submit(spec);
    assert.equal(first.statusCode, 202, first.body);
    const jobId = first.json().id as string;
    const keysBefore = await client.dbsize();
    const filesBefore = { datasets: await files('datasets'), uploads: await files('uploads') };

    await client.config('SET', 'maxmemory', '1');
    try {
      for (const [what, r] of [
        ['a submission', await submit(spec)],
        ['a submission with an Idempotency-Key', await submit(spec, 'full-1')],
        ['an upload', await upload('c.npy', randomNpy(20, 8, 3))],
        ['a cancel', await api.api!.inject({ method: 'DELETE', url: `/v1/jobs/${jobId}`, headers: ALICE })],
        ['a sign-in', await api.api!.inject({ method: 'POST', url: '/v1/session', payload: { apiKey: ALICE_KEY } })],
      ] as const) {
        assert.equal(r.statusCode, 507, `${what}: ${r.body}`);
        assert.equal(r.json().error.code, 'insufficient_storage', what);
        assert.match(r.json().error.message, /maxmemory/, what);
        assert.equal(r.headers['retry-after'], '60', what);
      }
      assert.equal(await client.dbsize(), keysBefore, 'no key was written');
      assert.deepEqual({ datasets: await files('datasets'), uploads: await files('uploads') }, filesBefore, 'no file was left');
      const read = await api.api!.inject({ url: `/v1/jobs/${jobId}`, headers: ALICE });
      assert.equal(read.statusCode, 200, read.body);
      assert.equal(read.json().status, 'queued', 'the cancel changed nothing');
      assert.equal(await jobCount(), 1);
    } finally {
      await client.config('SET', 'maxmemory', '0');
    }

    const again = await submit(spec, 'full-1');
    assert.equal(again.statusCode, 202, again.body);
    assert.notEqual(again.json().id, jobId, 'the key was not claimed while Redis was full: it submits a new job');
    assert.equal((await upload('c.npy', randomNpy(20, 8, 3))).statusCode, 201);
    assert.equal(await jobCount(), 2);
  });
});
