/**
 * The API through app.inject(), with a real Redis and an in-process worker (role "all").
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { encodeNpy } from '../../models/io/npy.js';
import { encodeOnnx } from '../../scripts/fixtures/onnxMinimal.js';
import { resnetFixture } from '../../scripts/fixtures/onnxResnet.js';
import type { RunningServer } from '../../services/server.js';
import {
  ADMIN,
  ADMIN_KEY,
  ALICE,
  ALICE_KEY,
  BOB,
  cleanup,
  eventually,
  multipart,
  randomNpy,
  requireRedis,
  start,
  type TestEnv,
  testEnv,
} from '../helpers/service.js';

// Without a Redis this file fails (it never skips).
await requireRedis();

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

interface Doc {
  id: string;
  status: string;
  progress: number;
  stage: { phase?: string; step?: number };
  attempts: number;
  artifacts: Array<{ name: string; size: number; sha256: string; contentType: string }>;
  metrics?: Record<string, unknown>;
  error?: { code: string; message: string };
}

let t: TestEnv;
let srv: RunningServer;
let api: FastifyInstance;

async function upload(headers: Record<string, string>, filename: string, content: Buffer, path = '/v1/datasets') {
  const body = multipart(filename, content);
  return api.inject({ method: 'POST', url: path, headers: { ...headers, ...body.headers }, payload: body.payload });
}

async function uploadOk(headers: Record<string, string>, filename: string, content: Buffer): Promise<string> {
  const r = await upload(headers, filename, content);
  assert.equal(r.statusCode, 201, r.body);
  return r.json().id as string;
}

async function submit(headers: Record<string, string>, spec: unknown, extra: Record<string, string> = {}) {
  return api.inject({ method: 'POST', url: '/v1/jobs', headers: { ...headers, ...extra }, payload: spec as object });
}

async function getJob(headers: Record<string, string>, id: string): Promise<Doc> {
  const r = await api.inject({ method: 'GET', url: `/v1/jobs/${id}`, headers });
  assert.equal(r.statusCode, 200, r.body);
  return r.json() as Doc;
}

function waitStatus(id: string, statuses: string[], timeoutMs = 60_000): Promise<Doc> {
  return eventually(
    `job ${id} to be ${statuses.join(' or ')}`,
    async () => {
      const d = await getJob(ALICE, id);
      return statuses.includes(d.status) ? d : undefined;
    },
    timeoutMs,
  );
}

function expectError(r: { statusCode: number; body: string }, status: number, code: string, message?: RegExp): void {
  assert.equal(r.statusCode, status, r.body);
  const body = JSON.parse(r.body) as { error?: { code: string; message: string } };
  assert.ok(body.error, `no error object in ${r.body}`);
  assert.equal(body.error.code, code, r.body);
  assert.equal(typeof body.error.message, 'string');
  assert.ok(body.error.message.length > 0);
  if (message) assert.match(body.error.message, message);
}

let benign: string;
let harmful: string;

before(async () => {
  t = await testEnv();
  srv = await start('all', t);
  api = srv.api!;
  benign = await uploadOk(ALICE, 'benign.npy', randomNpy(50, 8, 1));
  harmful = await uploadOk(ALICE, 'harmful.npy', randomNpy(60, 8, 2));
});

after(async () => {
  await srv?.close();
  if (t) await cleanup(t);
});

describe('health, docs and metrics', () => {
  it('answers /healthz, /readyz and /docs without a key, and /metrics to the admin key only', async () => {
    assert.deepEqual((await api.inject('/healthz')).json(), { status: 'ok' });
    const ready = await api.inject('/readyz');
    assert.equal(ready.statusCode, 200, ready.body);
    assert.equal(ready.json().redis, 'up');
    const anon = await api.inject('/metrics');
    expectError(anon, 401, 'unauthorized');
    assert.equal(anon.headers['www-authenticate'], 'Bearer');
    assert.doesNotMatch(anon.body, /immunize_/);
    expectError(await api.inject({ url: '/metrics', headers: { authorization: 'Bearer not-a-key-0123456789' } }), 401, 'unauthorized');
    const tenant = await api.inject({ url: '/metrics', headers: ALICE });
    expectError(tenant, 403, 'forbidden', /admin key/);
    assert.doesNotMatch(tenant.body, /immunize_/);
    const metrics = await api.inject({ url: '/metrics', headers: ADMIN });
    assert.equal(metrics.statusCode, 200, metrics.body);
    assert.match(String(metrics.headers['content-type']), /^text\/plain/);
    assert.match(metrics.body, /immunize_queue_jobs\{state="waiting"\}/);
    assert.match(metrics.body, /immunize_http_request_duration_seconds/);
    // Durations by route pattern and status; requests that match no route under one label.
    await api.inject({ url: '/v1/jobs/j0000000000000000000000000', headers: ALICE });
    await api.inject({ url: '/no/such/route' });
    const after = (await api.inject({ url: '/metrics', headers: ADMIN })).body;
    assert.match(after, /immunize_http_request_duration_seconds_count\{method="GET",route="\/v1\/jobs\/:id",status="404"\} [1-9]/);
    assert.match(after, /immunize_http_request_duration_seconds_count\{method="GET",route="unmatched",status="404"\} [1-9]/);
    assert.match(after, /immunize_http_request_duration_seconds_count\{method="GET",route="\/metrics",status="200"\} [1-9]/);
    // A dashboard session signed in with the admin key reads them too; one signed in with a tenant's key does not.
    const cookieOf = async (apiKey: string) => {
      const r = await api.inject({ method: 'POST', url: '/v1/session', payload: { apiKey } });
      assert.equal(r.statusCode, 200, r.body);
      return /^immunize_session=[^;]+/.exec(String(r.headers['set-cookie']))![0];
    };
    assert.equal((await api.inject({ url: '/metrics', headers: { cookie: await cookieOf(ADMIN_KEY) } })).statusCode, 200);
    expectError(await api.inject({ url: '/metrics', headers: { cookie: await cookieOf(ALICE_KEY) } }), 403, 'forbidden');
    const docs = await api.inject('/docs/json');
    assert.equal(docs.statusCode, 200);
    const spec = docs.json() as { openapi: string; paths: Record<string, unknown> };
    assert.match(spec.openapi, /^3\./);
    for (const p of ['/v1/datasets', '/v1/backbones', '/v1/jobs', '/v1/jobs/{id}', '/v1/jobs/{id}/events', '/v1/jobs/{id}/artifacts/{name}']) {
      assert.ok(p in spec.paths, `OpenAPI has no ${p}`);
    }
    assert.equal((await api.inject('/docs')).statusCode < 400, true);
  });

  it('echoes a request id', async () => {
    const r = await api.inject({ url: '/healthz', headers: { 'x-request-id': 'req-123' } });
    assert.equal(r.headers['x-request-id'], 'req-123');
    const generated = await api.inject('/healthz');
    assert.match(String(generated.headers['x-request-id']), /^[0-9a-f-]{36}$/);
    // Errors carry it too: an unknown route, a refused key, a failed validation.
    const id = { 'x-request-id': 'req-err' };
    for (const r of [
      await api.inject({ url: '/no/such/route', headers: id }),
      await api.inject({ url: '/v1/jobs', headers: id }),
      await api.inject({ method: 'POST', url: '/v1/jobs', headers: { ...id, ...ALICE }, payload: { benign: 7 } }),
    ]) {
      assert.ok(r.statusCode >= 400, r.body);
      assert.equal(r.headers['x-request-id'], 'req-err', `${r.statusCode} ${r.body}`);
    }
  });
});

describe('auth', () => {
  it('answers 401 for a missing or wrong key', async () => {
    expectError(await api.inject({ url: '/v1/jobs' }), 401, 'unauthorized', /missing API key/);
    expectError(await api.inject({ url: '/v1/jobs', headers: { authorization: 'Bearer not-a-key-0123456789' } }), 401, 'unauthorized', /invalid API key/);
    expectError(await api.inject({ url: '/v1/jobs', headers: { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` } }), 401, 'unauthorized');
    const r = await api.inject({ method: 'POST', url: '/v1/datasets', headers: { authorization: 'Bearer wrong-0123456789abcdef' } });
    expectError(r, 401, 'unauthorized');
  });
});

describe('uploads', () => {
  it('stores a .npy with its sha256 and shape', async () => {
    const bytes = randomNpy(7, 3, 9, 'f4');
    const r = await upload(ALICE, 'x.npy', bytes);
    assert.equal(r.statusCode, 201, r.body);
    const body = r.json();
    assert.deepEqual(Object.keys(body).sort(), ['cols', 'format', 'id', 'rows', 'sha256']);
    assert.equal(body.sha256, sha(bytes));
    assert.equal(body.format, 'npy');
    assert.equal(body.rows, 7);
    assert.equal(body.cols, 3);
    const onDisk = await readFile(join(t.dataDir, 'datasets', `${body.id}.npy`));
    assert.ok(onDisk.equals(bytes));
    const meta = await api.inject({ url: `/v1/datasets/${body.id}`, headers: ALICE });
    assert.equal(meta.json().filename, 'x.npy');
    assert.equal(meta.json().dtype, 'f4');
  });

  it('stores a .csv and an .onnx backbone', async () => {
    const csv = Buffer.from('a,b,color,y\n1,2,red,3\n4,5,blue,6\n7,8,red,9\n');
    const r = await upload(ALICE, 'table.csv', csv);
    assert.equal(r.statusCode, 201, r.body);
    assert.deepEqual({ ...(r.json() as object), id: undefined }, { id: undefined, sha256: sha(csv), format: 'csv', rows: 3, cols: 4 });
    const model = encodeOnnx({ input: 'pixels', output: 'features', shape: [1, 3, 32, 32] });
    const b = await upload(ALICE, 'resnet.onnx', model, '/v1/backbones');
    assert.equal(b.statusCode, 201, b.body);
    const body = b.json();
    assert.equal(body.sha256, sha(model));
    assert.deepEqual(body.inputs, [{ name: 'pixels', elemType: 'float32', shape: [1, 3, 32, 32] }]);
    assert.deepEqual(
      body.outputs.map((o: { name: string }) => o.name),
      ['features'],
    );
    const meta = await api.inject({ url: `/v1/backbones/${body.id}`, headers: ALICE });
    assert.equal(meta.statusCode, 200);
    assert.equal((await api.inject({ url: `/v1/datasets/${body.id}`, headers: ALICE })).statusCode, 404);
  });

  it('refuses malformed, truncated and non-finite files with a message', async () => {
    const good = randomNpy(4, 3, 1);
    const nan = encodeNpy({ rows: 2, cols: 2, data: new Float64Array([1, 2, Number.NaN, 4]) });
    const cube = encodeNpy({ shape: [2, 2, 2], data: new Float64Array(8) });
    const model = encodeOnnx({ input: 'x', output: 'y', shape: [1, 4] });
    const cases: Array<[string, Buffer, string, number, string, RegExp, string?]> = [
      ['magic', Buffer.from('hello, not numpy'), 'bad.npy', 400, 'invalid_npy', /missing the "\\x93NUMPY" magic/],
      ['truncated npy', good.subarray(0, good.length - 5), 'cut.npy', 400, 'invalid_npy', /truncated/],
      ['header only', good.subarray(0, 20), 'head.npy', 400, 'invalid_npy', /header/],
      ['NaN', nan, 'nan.npy', 400, 'non_finite', /non-finite value NaN at row 1, column 0/],
      ['3-D', cube, 'cube.npy', 400, 'invalid_npy', /\(2, 2, 2\)/],
      [
        'integer features',
        encodeNpy({ rows: 2, cols: 2, data: new Float64Array([1, 2, 3, 4]) }, 'i4'),
        'int.npy',
        400,
        'invalid_npy',
        /integer dtype i4 is accepted only for label vectors/,
      ],
      ['ragged csv', Buffer.from('a,b\n1,2\n3\n'), 'ragged.csv', 400, 'invalid_csv', /line 3 has 1 field/],
      ['inf in csv', Buffer.from('a,b\n1,2\n3,inf\n'), 'inf.csv', 400, 'non_finite', /"inf" is not a finite number/],
      ['header-only csv', Buffer.from('a,b\n'), 'empty.csv', 400, 'invalid_csv', /no data rows/],
      ['empty file', Buffer.alloc(0), 'zero.csv', 400, 'invalid_csv', /empty/],
      ['wrong extension', Buffer.from('x'), 'data.txt', 415, 'unsupported_format', /\.npy .*\.csv .* or \.tar/],
      ['truncated onnx', model.subarray(0, model.length - 7), 'cut.onnx', 400, 'invalid_onnx', /truncated|not a readable ONNX/, '/v1/backbones'],
      ['garbage onnx', Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3]), 'junk.onnx', 400, 'invalid_onnx', /ONNX/, '/v1/backbones'],
      ['npy as onnx', good, 'fake.onnx', 400, 'invalid_onnx', /ONNX/, '/v1/backbones'],
      ['npy as backbone', good, 'x.npy', 415, 'unsupported_format', /\.onnx/, '/v1/backbones'],
    ];
    for (const [what, bytes, name, status, code, message, path] of cases) {
      const r = await upload(ALICE, name, bytes, path);
      assert.equal(r.statusCode, status, `${what}: ${r.body}`);
      expectError(r, status, code, message);
    }
    const leftovers = await readdir(join(t.dataDir, 'uploads'));
    assert.deepEqual(
      leftovers.filter((f) => !f.startsWith('.probe')),
      [],
      'refused uploads leave no temporary file',
    );
  });

  it('refuses a request without a file part, or not multipart', async () => {
    const wrong = multipart('x.npy', Buffer.from('1'), 'data');
    expectError(
      await api.inject({ method: 'POST', url: '/v1/datasets', headers: { ...ALICE, ...wrong.headers }, payload: wrong.payload }),
      400,
      'missing_file',
      /"data"/,
    );
    expectError(await api.inject({ method: 'POST', url: '/v1/datasets', headers: ALICE, payload: { file: 'x' } }), 415, 'unsupported_media_type');
    // Only the upload routes read multipart bodies.
    const form = multipart('spec.json', Buffer.from('{}'));
    expectError(
      await api.inject({ method: 'POST', url: '/v1/jobs', headers: { ...ALICE, ...form.headers }, payload: form.payload }),
      415,
      'unsupported_media_type',
    );
  });

  it('deletes a dataset and its bytes', async () => {
    const id = await uploadOk(ALICE, 'gone.npy', randomNpy(3, 3, 3));
    const file = join(t.dataDir, 'datasets', `${id}.npy`);
    assert.ok(existsSync(file));
    expectError(await api.inject({ method: 'DELETE', url: `/v1/datasets/${id}`, headers: BOB }), 404, 'not_found');
    const r = await api.inject({ method: 'DELETE', url: `/v1/datasets/${id}`, headers: ALICE });
    assert.equal(r.statusCode, 204, r.body);
    assert.ok(!existsSync(file));
    expectError(await api.inject({ url: `/v1/datasets/${id}`, headers: ALICE }), 404, 'not_found');
  });
});

describe('jobs', () => {
  let completed: string;

  it('runs a job to completion with artifacts, their sha256 and the metrics summary', async () => {
    const r = await submit(ALICE, { benign: { dataset: benign }, harmful: { dataset: harmful }, method: 'closed-form' });
    assert.equal(r.statusCode, 202, r.body);
    assert.deepEqual(Object.keys(r.json()).sort(), ['id', 'status']);
    assert.equal(r.json().status, 'queued');
    completed = r.json().id;
    const doc = await waitStatus(completed, ['completed', 'failed']);
    assert.equal(doc.status, 'completed', JSON.stringify(doc.error));
    assert.equal(doc.progress, 1);
    assert.equal(doc.attempts, 1);
    const names = doc.artifacts.map((a) => a.name);
    for (const n of ['metrics.json', 'curves.json', 'theta.safetensors']) assert.ok(names.includes(n), `no ${n} in ${names.join(', ')}`);
    assert.equal(new Set(names).size, names.length, 'each artifact is listed once');
    assert.ok(doc.metrics && typeof doc.metrics.verdict === 'string');
    for (const a of doc.artifacts) {
      const dl = await api.inject({ url: `/v1/jobs/${completed}/artifacts/${a.name}`, headers: ALICE });
      assert.equal(dl.statusCode, 200);
      assert.equal(dl.headers['content-type'], a.contentType);
      assert.equal(sha(dl.rawPayload), a.sha256);
      assert.equal(dl.rawPayload.length, a.size);
    }
    const metrics = JSON.parse((await api.inject({ url: `/v1/jobs/${completed}/artifacts/metrics.json`, headers: ALICE })).body);
    assert.equal(metrics.verdict, doc.metrics!.verdict);
    assert.equal(metrics.dim, 8);
    assert.deepEqual(metrics.rows, { benign: 50, harmful: 60, benignTest: null });
    const files = await readdir(join(t.dataDir, 'jobs', completed));
    assert.deepEqual(files, ['artifacts'], 'only the committed attempt is left');
  });

  it('keeps tenants apart: another tenant gets 404', async () => {
    expectError(await api.inject({ url: `/v1/jobs/${completed}`, headers: BOB }), 404, 'not_found');
    expectError(await api.inject({ url: `/v1/jobs/${completed}/artifacts/metrics.json`, headers: BOB }), 404, 'not_found');
    expectError(await api.inject({ url: `/v1/jobs/${completed}/events`, headers: BOB }), 404, 'not_found');
    expectError(await api.inject({ method: 'DELETE', url: `/v1/jobs/${completed}`, headers: BOB }), 404, 'not_found');
    expectError(await api.inject({ url: `/v1/datasets/${benign}`, headers: BOB }), 404, 'not_found');
    expectError(await submit(BOB, { benign: { dataset: benign }, harmful: { dataset: harmful } }), 404, 'not_found', /benign\.dataset/);
    const list = (await api.inject({ url: '/v1/jobs', headers: BOB })).json();
    assert.ok(!list.items.some((j: Doc) => j.id === completed));
    // The admin key reads everyone's jobs.
    assert.equal((await api.inject({ url: `/v1/jobs/${completed}`, headers: ADMIN })).statusCode, 200);
    expectError(await submit(ADMIN, { benign: { dataset: benign }, harmful: { dataset: harmful } }), 403, 'forbidden');
  });

  it('checks the spec against the uploads at submit', async () => {
    const wide = await uploadOk(ALICE, 'wide.npy', randomNpy(40, 9, 4));
    expectError(await submit(ALICE, { benign: { dataset: benign }, harmful: { dataset: wide } }), 400, 'dimension_mismatch', /D=8 .* D=9/);
    expectError(await submit(ALICE, { benign: { dataset: benign }, harmful: { dataset: 'd0000000000000000000000000' } }), 404, 'not_found', /harmful\.dataset/);
    expectError(await submit(ALICE, { benign: { dataset: benign }, harmful: { dataset: '../../etc/passwd' } }), 404, 'not_found');
    expectError(await submit(ALICE, { benign: { dataset: benign }, harmful: { dataset: harmful }, method: 'magic' }), 400, 'invalid_spec', /method/);
    expectError(await submit(ALICE, { benign: { dataset: benign }, harmful: { dataset: harmful }, stpes: 3 }), 400, 'invalid_spec');
    expectError(await submit(ALICE, { benign: { dataset: benign } }), 400, 'invalid_spec', /harmful/);
    expectError(await submit(ALICE, { benign: { dataset: benign, labelColumn: 'y' }, harmful: { dataset: harmful } }), 400, 'invalid_spec', /only to \.csv/);
    const labels = await uploadOk(ALICE, 'labels.npy', encodeNpy({ shape: [49], data: new Float64Array(49) }));
    expectError(await submit(ALICE, { benign: { dataset: benign, labels }, harmful: { dataset: harmful } }), 400, 'label_mismatch', /49 labels for 50 rows/);
    const csv = await uploadOk(ALICE, 't.csv', Buffer.from('a,b,c,y\n1,2,3,4\n5,6,7,8\n9,1,2,3\n'));
    expectError(await submit(ALICE, { benign: { dataset: csv, labelColumn: 'price' }, harmful: { dataset: harmful } }), 400, 'missing_column', /"price"/);
    expectError(await submit(ALICE, { benign: { dataset: csv, labelColumn: 'y' }, harmful: { dataset: harmful } }), 400, 'dimension_mismatch', /D=3 .* D=8/);
    const bad = await api.inject({ method: 'POST', url: '/v1/jobs', headers: { ...ALICE, 'content-type': 'application/json' }, payload: '{"benign": ' });
    expectError(bad, 400, 'invalid_json');
  });

  it("checks a backbone job's references and image shapes at submit", async () => {
    const model = Buffer.from(resnetFixture({ imageSize: 8, widths: [4, 4, 4, 4], blocks: [1, 1, 1, 1], classes: 3 }).model.bytes);
    const b = await upload(ALICE, 'net.onnx', model, '/v1/backbones');
    assert.equal(b.statusCode, 201, b.body);
    const backbone = b.json().id as string;
    const images = (n: number, h: number) => encodeNpy({ shape: [n, 3, h, h], data: new Float64Array(n * 3 * h * h).map((_, i) => Math.sin(i)) }, 'f4');
    const small = await upload(ALICE, 'imgs.npy', images(4, 8));
    assert.equal(small.statusCode, 201, small.body);
    assert.deepEqual({ rows: small.json().rows, cols: small.json().cols }, { rows: 4, cols: 192 });
    const big = await uploadOk(ALICE, 'imgs16.npy', images(4, 16));
    const spec = (harmfulId: string, bb = backbone) => ({ backbone: bb, benign: { dataset: small.json().id }, harmful: { dataset: harmfulId } });
    expectError(await submit(ALICE, spec(big)), 400, 'image_size', /images of 3×16×16 do not fit the backbone's input 3×8×8/);
    expectError(await submit(ALICE, spec(harmful)), 400, 'invalid_spec', /harmful\.dataset: with a backbone the data are images/);
    expectError(await submit(ALICE, spec(small.json().id, 'b0000000000000000000000000')), 404, 'not_found', /backbone/);
    expectError(await submit(BOB, spec(small.json().id)), 404, 'not_found');
    expectError(
      await submit(ALICE, { benign: { dataset: small.json().id }, harmful: { dataset: small.json().id } }),
      400,
      'invalid_spec',
      /images \(give the job a backbone\)/,
    );
  });

  it('honours Idempotency-Key: same key and body → same job; other body → 409; no key → a new job', async () => {
    const spec = { benign: { dataset: benign }, harmful: { dataset: harmful }, method: 'closed-form', seed: 1 };
    const a = await submit(ALICE, spec, { 'idempotency-key': 'key-1' });
    const b = await submit(
      ALICE,
      { seed: 1, method: 'closed-form', harmful: { dataset: harmful }, benign: { dataset: benign } },
      { 'idempotency-key': 'key-1' },
    );
    assert.equal(a.statusCode, 202, a.body);
    assert.equal(b.statusCode, 202, b.body);
    assert.equal(b.json().id, a.json().id);
    assert.equal(b.headers['idempotent-replayed'], 'true');
    expectError(await submit(ALICE, { ...spec, seed: 2 }, { 'idempotency-key': 'key-1' }), 409, 'idempotency_conflict');
    // The same key is another tenant's own.
    const other = await submit(BOB, { benign: { dataset: 'd0000000000000000000000000' }, harmful: { dataset: harmful } }, { 'idempotency-key': 'key-1' });
    expectError(other, 404, 'not_found');
    const c = await submit(ALICE, spec);
    const d = await submit(ALICE, spec);
    assert.notEqual(c.json().id, a.json().id);
    assert.notEqual(c.json().id, d.json().id);
    // A refused submission does not burn its key.
    const wide = await uploadOk(ALICE, 'wide2.npy', randomNpy(40, 9, 5));
    expectError(await submit(ALICE, { benign: { dataset: benign }, harmful: { dataset: wide } }, { 'idempotency-key': 'key-2' }), 400, 'dimension_mismatch');
    assert.equal((await submit(ALICE, spec, { 'idempotency-key': 'key-2' })).statusCode, 202);
    for (const id of [a.json().id, c.json().id, d.json().id]) await waitStatus(id, ['completed']);
  });

  it('lists jobs newest first, with paging', async () => {
    const bobBenign = await uploadOk(BOB, 'b.npy', randomNpy(20, 4, 7));
    const bobHarmful = await uploadOk(BOB, 'h.npy', randomNpy(20, 4, 8));
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await submit(BOB, { benign: { dataset: bobBenign }, harmful: { dataset: bobHarmful }, method: 'closed-form', seed: i });
      ids.push(r.json().id);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const url: string = `/v1/jobs?limit=2${cursor ? `&cursor=${cursor}` : ''}`;
      const page = (await api.inject({ url, headers: BOB })).json() as { items: Doc[]; nextCursor: string | null };
      assert.ok(page.items.length <= 2);
      seen.push(...page.items.map((j) => j.id));
      cursor = page.nextCursor;
      pages++;
    } while (cursor);
    assert.equal(pages, 3);
    assert.deepEqual(seen, [...ids].reverse());
    expectError(await api.inject({ url: '/v1/jobs?limit=0', headers: BOB }), 400, 'invalid_request');
    expectError(await api.inject({ url: '/v1/jobs?cursor=zzz', headers: BOB }), 400, 'invalid_cursor');
    const admin = (await api.inject({ url: '/v1/jobs?tenant=bob&limit=100', headers: ADMIN })).json();
    assert.equal(admin.items.length, 5);
    for (const id of ids) {
      await eventually(`bob's job ${id}`, async () => {
        const d = (await api.inject({ url: `/v1/jobs/${id}`, headers: BOB })).json() as Doc;
        return d.status === 'completed' ? d : undefined;
      });
    }
  });

  it('refuses artifact names that are not artifact names, and unknown ids', async () => {
    for (const name of ['..%2F..%2Fetc%2Fpasswd', '..%2Fartifacts%2Fa0.bin', 'a0.bin', 'metrics.json%00', '%2Fetc%2Fpasswd', 'METRICS.JSON']) {
      expectError(await api.inject({ url: `/v1/jobs/${completed}/artifacts/${name}`, headers: ALICE }), 400, 'invalid_artifact_name');
    }
    const traversal = await api.inject({ url: `/v1/jobs/${completed}/artifacts/../../../etc/passwd`, headers: ALICE });
    assert.equal(traversal.statusCode, 404, traversal.body);
    expectError(await api.inject({ url: `/v1/jobs/${completed}/artifacts/immunized.onnx`, headers: ALICE }), 404, 'not_found', /no artifact immunized\.onnx/);
    expectError(await api.inject({ url: '/v1/jobs/j0000000000000000000000000', headers: ALICE }), 404, 'not_found');
    expectError(await api.inject({ url: '/v1/jobs/not-an-id', headers: ALICE }), 404, 'not_found');
    expectError(await api.inject({ url: '/v1/jobs/j0000000000000000000000000/artifacts/metrics.json', headers: ALICE }), 404, 'not_found');
    expectError(await api.inject({ method: 'DELETE', url: '/v1/jobs/j0000000000000000000000000', headers: ALICE }), 404, 'not_found');
    expectError(await api.inject({ url: '/v1/nothing-here', headers: ALICE }), 404, 'not_found');
  });

  it('cancels a running job: the engine stops at its next step', async () => {
    const b = await uploadOk(ALICE, 'long-b.npy', randomNpy(200, 32, 11));
    const h = await uploadOk(ALICE, 'long-h.npy', randomNpy(200, 32, 12));
    const r = await submit(ALICE, { benign: { dataset: b }, harmful: { dataset: h }, method: 'paper', steps: 200_000 });
    const id = r.json().id as string;
    // A second job waits behind it (one worker, concurrency 1) and is cancelled before it starts.
    const queued = (await submit(ALICE, { benign: { dataset: benign }, harmful: { dataset: harmful }, method: 'closed-form' })).json().id as string;
    await eventually('the long job to be optimizing', async () => {
      const d = await getJob(ALICE, id);
      return d.status === 'running' && d.stage.phase === 'optimize' && (d.stage.step ?? 0) > 0 ? d : undefined;
    });
    const q = await api.inject({ method: 'DELETE', url: `/v1/jobs/${queued}`, headers: ALICE });
    assert.equal(q.statusCode, 202, q.body);
    assert.deepEqual(q.json(), { id: queued, status: 'cancelled' });
    const asked = Date.now();
    const c = await api.inject({ method: 'DELETE', url: `/v1/jobs/${id}`, headers: ALICE });
    assert.equal(c.statusCode, 202, c.body);
    assert.deepEqual(c.json(), { id, status: 'running' }, 'a running job is not removed from under its worker');
    const doc = await waitStatus(id, ['cancelled', 'completed', 'failed'], 20_000);
    assert.equal(doc.status, 'cancelled');
    assert.ok(Date.now() - asked < 10_000, `cancel took ${Date.now() - asked} ms`);
    assert.equal(doc.error?.code, 'cancelled');
    assert.ok(doc.progress < 0.7, `stopped during optimization (progress ${doc.progress})`);
    assert.deepEqual(doc.artifacts, []);
    assert.ok(!existsSync(join(t.dataDir, 'jobs', id, 'artifacts')));
    await eventually('the attempt directory to be removed', async () =>
      existsSync(join(t.dataDir, 'jobs', id, 'attempts')) && (await readdir(join(t.dataDir, 'jobs', id, 'attempts'))).length > 0 ? undefined : true,
    );
    assert.equal((await getJob(ALICE, queued)).status, 'cancelled');
    // Cancelling a finished job changes nothing.
    const again = await api.inject({ method: 'DELETE', url: `/v1/jobs/${completed}`, headers: ALICE });
    assert.deepEqual(again.json(), { id: completed, status: 'completed' });
  });

  it('purges a job: the record and its bytes go', async () => {
    const r = await submit(ALICE, { benign: { dataset: benign }, harmful: { dataset: harmful }, method: 'closed-form', seed: 9 });
    const id = r.json().id as string;
    await waitStatus(id, ['completed']);
    assert.ok(existsSync(join(t.dataDir, 'jobs', id)));
    const p = await api.inject({ method: 'DELETE', url: `/v1/jobs/${id}?purge=true`, headers: ALICE });
    assert.equal(p.statusCode, 202, p.body);
    assert.deepEqual(p.json(), { id, status: 'completed', purged: true });
    expectError(await api.inject({ url: `/v1/jobs/${id}`, headers: ALICE }), 404, 'not_found');
    assert.ok(!existsSync(join(t.dataDir, 'jobs', id)));
  });

  it('releases the Idempotency-Key of a purged job: the same key and body make a new job', async () => {
    const spec = { benign: { dataset: benign }, harmful: { dataset: harmful }, method: 'closed-form', seed: 21 };
    const first = await submit(ALICE, spec, { 'idempotency-key': 'purge-key-1' });
    assert.equal(first.statusCode, 202, first.body);
    const purgedId = first.json().id as string;
    await waitStatus(purgedId, ['completed']);
    const p = await api.inject({ method: 'DELETE', url: `/v1/jobs/${purgedId}?purge=true`, headers: ALICE });
    assert.deepEqual(p.json(), { id: purgedId, status: 'completed', purged: true });
    const keyName = `${t.prefix}:idem:alice:${sha('purge-key-1')}`;
    assert.equal(await srv.services.redis.exists(keyName), 0, 'the purge released the key');

    const again = await submit(ALICE, spec, { 'idempotency-key': 'purge-key-1' });
    assert.equal(again.statusCode, 202, again.body);
    const newId = again.json().id as string;
    assert.notEqual(newId, purgedId);
    assert.equal(again.headers['idempotent-replayed'], undefined);
    assert.equal(again.headers.location, `/v1/jobs/${newId}`);
    expectError(await api.inject({ url: `/v1/jobs/${purgedId}`, headers: ALICE }), 404, 'not_found');
    assert.equal((await getJob(ALICE, newId)).id, newId);
    // The key now stands for the new job, as any key does.
    const replay = await submit(ALICE, spec, { 'idempotency-key': 'purge-key-1' });
    assert.equal(replay.json().id, newId);
    assert.equal(replay.headers['idempotent-replayed'], 'true');
    await waitStatus(newId, ['completed']);

    // A job whose key expired and was claimed again by a newer job leaves that claim alone when it is purged.
    const old = (await submit(ALICE, { ...spec, seed: 22 }, { 'idempotency-key': 'purge-key-2' })).json().id as string;
    await waitStatus(old, ['completed']);
    await srv.services.redis.del(`${t.prefix}:idem:alice:${sha('purge-key-2')}`);
    const newer = (await submit(ALICE, spec, { 'idempotency-key': 'purge-key-2' })).json().id as string;
    assert.notEqual(newer, old);
    await api.inject({ method: 'DELETE', url: `/v1/jobs/${old}?purge=true`, headers: ALICE });
    const still = await submit(ALICE, spec, { 'idempotency-key': 'purge-key-2' });
    assert.equal(still.json().id, newer);
    assert.equal(still.headers['idempotent-replayed'], 'true');
    await waitStatus(newer, ['completed']);
  });

  it('keeps job records and artifacts across an API restart', async () => {
    const before = await getJob(ALICE, completed);
    await srv.close();
    srv = await start('all', t);
    api = srv.api!;
    const after = await getJob(ALICE, completed);
    assert.deepEqual(after, before);
    const dl = await api.inject({ url: `/v1/jobs/${completed}/artifacts/theta.safetensors`, headers: ALICE });
    assert.equal(dl.statusCode, 200);
    assert.equal(sha(dl.rawPayload), before.artifacts.find((a) => a.name === 'theta.safetensors')!.sha256);
  });
});

describe('limits', () => {
  let small: RunningServer;
  let smallEnv: TestEnv;

  before(async () => {
    smallEnv = await testEnv({ IMMUNIZE_MAX_UPLOAD_BYTES: '4096', IMMUNIZE_RATE_LIMIT: '5' });
    small = await start('api', smallEnv);
  });
  after(async () => {
    await small?.close();
    if (smallEnv) await cleanup(smallEnv);
  });

  it('answers 413 payload_too_large for an oversized upload, over real HTTP too', async () => {
    const big = randomNpy(100, 8, 1);
    const body = multipart('big.npy', big);
    const r = await small.api!.inject({ method: 'POST', url: '/v1/datasets', headers: { ...ALICE, ...body.headers }, payload: body.payload });
    expectError(r, 413, 'payload_too_large', /4096 bytes/);
    // Over HTTP with a streamed body (no content-length), the limit stops the stream.
    const form = new FormData();
    form.append('file', new Blob([new Uint8Array(randomNpy(200, 8, 2))]), 'big.npy');
    const res = await fetch(`${small.url}/v1/datasets`, { method: 'POST', headers: BOB, body: form });
    assert.equal(res.status, 413);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'payload_too_large');
    assert.deepEqual(
      (await readdir(join(smallEnv.dataDir, 'uploads'))).filter((f) => !f.startsWith('.probe')),
      [],
    );
    assert.deepEqual(await readdir(join(smallEnv.dataDir, 'datasets')), []);
  });

  it('rate-limits per API key', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) statuses.push((await small.api!.inject({ url: '/v1/jobs', headers: ALICE })).statusCode);
    assert.deepEqual(
      statuses.slice(0, 4).every((s) => s === 200),
      true,
      statuses.join(),
    );
    const limited = await small.api!.inject({ url: '/v1/jobs', headers: ALICE });
    expectError(limited, 429, 'rate_limited');
    assert.match(String(limited.headers['retry-after']), /^\d+$/);
    assert.equal(limited.headers['x-ratelimit-remaining'], '0');
    // Another key has its own budget.
    assert.equal((await small.api!.inject({ url: '/v1/jobs', headers: BOB })).statusCode, 200);
  });
});
