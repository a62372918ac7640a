/**
 * One failure, one code: a bad backbone is refused at submit with the code its job records when the same check
 * fails in the worker, a file refused at upload has the code a job reading it would give, and the API's error
 * handler answers domain failures from the same table.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Backbone, BackboneError, encodeModel, floatValueInfo, type ModelProto } from '../../models/backbones/index.js';
import { DataError } from '../../models/io/errors.js';
import { encodeNpy } from '../../models/io/npy.js';
import { resnetFixture } from '../../scripts/fixtures/onnxResnet.js';
import { ApiError, errorAnswer, notFound, payloadTooLarge } from '../../services/errors.js';
import type { RunningServer } from '../../services/server.js';
import { checkBackboneFile } from '../../services/storage/inspect.js';
import { codeClass, CodedError } from '../../workers/errorTable.js';
import { DirectorySink } from '../../workers/artifacts.js';
import { describeJobError } from '../../workers/jobErrors.js';
import { parseJobSpec, SpecError } from '../../workers/jobSpec.js';
import { runJob } from '../../workers/modes.js';
import { ALICE, cleanup, eventually, multipart, requireRedis, start, type TestEnv, testEnv } from '../helpers/service.js';

// Without a Redis this file fails (it never skips).
await requireRedis();

const SIZE = 32;
const SMALL = { imageSize: SIZE, widths: [8, 16, 24, 48], blocks: [1, 1, 1, 1], classes: 10, seed: 18 };

let t: TestEnv;
let api: RunningServer;
let worker: RunningServer | null = null;
let dir: string;

before(async () => {
  t = await testEnv({ IMMUNIZE_JOB_ATTEMPTS: '3' });
  // The API alone first: a job waits in the queue until the worker starts.
  api = await start('api', t);
  dir = await mkdtemp(join(tmpdir(), 'immunize-codes-'));
});

after(async () => {
  await worker?.close();
  await api?.close();
  if (t) await cleanup(t);
  if (dir) await rm(dir, { recursive: true, force: true });
});

function images(n: number, seed: number): Buffer {
  let s = seed;
  const data = new Float64Array(n * 3 * SIZE * SIZE);
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = s / 2 ** 32 - 0.5;
  }
  return encodeNpy({ shape: [n, 3, SIZE, SIZE], data }, 'f4');
}

function upload(url: string, name: string, bytes: Uint8Array) {
  const body = multipart(name, Buffer.from(bytes));
  return api.api!.inject({ method: 'POST', url, headers: { ...ALICE, ...body.headers }, payload: body.payload });
}

async function uploadOk(url: string, name: string, bytes: Uint8Array): Promise<string> {
  const r = await upload(url, name, bytes);
  assert.equal(r.statusCode, 201, r.body);
  return r.json().id as string;
}

/** The code a job records when loading this model fails, as the worker describes it. */
async function jobCode(path: string): Promise<string> {
  const err = await Backbone.load(path).then(
    () => assert.fail(`${path} loaded`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof BackboneError, String(err));
  const described = describeJobError(err);
  assert.equal(described.permanent, true);
  return described.code;
}

/** The code a features job records when it reads these files (the CLI's path and the engine thread's alike). */
async function featuresJobCode(benign: string, harmful: string, labels?: string): Promise<string> {
  const spec = parseJobSpec({ benign: { dataset: benign, labels }, harmful: { dataset: harmful }, method: 'closed-form' });
  const err = await runJob(spec, { sink: new DirectorySink(join(dir, 'never')) }).then(
    () => assert.fail(`${benign} was accepted`),
    (e: unknown) => e,
  );
  const described = describeJobError(err);
  assert.equal(described.permanent, true, described.message);
  return described.code;
}

/** A one-node model whose graph `change` breaks in a way the upload's format check catches. */
function brokenModel(change: (g: NonNullable<ModelProto['graph']>) => void): Uint8Array {
  const graph: NonNullable<ModelProto['graph']> = {
    name: 'g',
    node: [{ input: ['x'], output: ['y'], name: 'n', opType: 'Identity' }],
    input: [floatValueInfo('x', [1, 3, 8, 8])],
    output: [floatValueInfo('y', [1, 3, 8, 8])],
  };
  change(graph);
  return encodeModel({ irVersion: 8, producerName: 'test', opsetImport: [{ domain: '', version: 17 }], graph });
}

describe('one code per failure', () => {
  it('a backbone without a classifier: the same code at submit and in the job', { timeout: 120_000 }, async () => {
    const app = api.api!;
    const headless = resnetFixture({ ...SMALL, head: 'none' }).model.bytes;
    const headlessId = await uploadOk('/v1/backbones', 'headless.onnx', headless);
    const goodId = await uploadOk('/v1/backbones', 'resnet.onnx', resnetFixture({ ...SMALL, head: 'gemm' }).model.bytes);
    const imgs = await uploadOk('/v1/datasets', 'imgs.npy', images(6, 3));
    const spec = (backbone: string) => ({ backbone, benign: { dataset: imgs }, harmful: { dataset: imgs }, method: 'closed-form' });

    // At submit: refused with a 4xx before anything is queued.
    const refused = await app.inject({ method: 'POST', url: '/v1/jobs', headers: ALICE, payload: spec(headlessId) });
    assert.equal(refused.statusCode, 400, refused.body);
    const submitCode = refused.json().error.code as string;
    assert.equal(submitCode, 'no_classifier');

    // In the job: the submit check passed, then the backbone's bytes became the headless model's before a worker
    // ran it, so the check fails in the worker.
    const accepted = await app.inject({ method: 'POST', url: '/v1/jobs', headers: ALICE, payload: spec(goodId) });
    assert.equal(accepted.statusCode, 202, accepted.body);
    const id = accepted.json().id as string;
    await writeFile(join(t.dataDir, 'datasets', `${goodId}.onnx`), headless);
    worker = await start('worker', t);
    const failed = await eventually(
      `job ${id} fails`,
      async () => {
        const d = (await app.inject({ url: `/v1/jobs/${id}`, headers: ALICE })).json();
        return d.status === 'failed' || d.status === 'completed' ? d : undefined;
      },
      90_000,
    );
    assert.equal(failed.status, 'failed', JSON.stringify(failed));
    assert.equal(failed.error.code, submitCode, failed.error.message);
    assert.match(failed.error.message, /no final linear classifier/);
    assert.equal(failed.attempts, 1, 'bad input is not retried');

    // The in-process check (the CLI's path) says the same, and so does the submit check called directly.
    const path = join(dir, 'headless.onnx');
    await writeFile(path, headless);
    assert.equal(await jobCode(path), submitCode);
    const check = await checkBackboneFile(path, 'headless.onnx');
    assert.ok(!check.ok);
    assert.deepEqual([check.reason, check.code], ['backbone.NO_CLASSIFIER', submitCode]);
  });

  it('a file that is not an ONNX model: the same code at upload, at submit and in a job', async () => {
    const junk = Buffer.alloc(256, 7);
    const refused = await upload('/v1/backbones', 'junk.onnx', junk);
    assert.equal(refused.statusCode, 400, refused.body);
    assert.equal(refused.json().error.code, 'invalid_onnx');
    const empty = await upload('/v1/backbones', 'empty.onnx', Buffer.alloc(0));
    assert.equal(empty.json().error.code, 'invalid_onnx');
    const path = join(dir, 'junk.onnx');
    await writeFile(path, junk);
    assert.equal(await jobCode(path), 'invalid_onnx');
    const check = await checkBackboneFile(path, 'junk.onnx');
    assert.ok(!check.ok);
    assert.equal(check.code, 'invalid_onnx');
  });

  it('an ONNX file the upload refuses: the same code when a job (or the CLI) loads it', async () => {
    const cases: Array<[string, Uint8Array]> = [
      ['no-inputs.onnx', brokenModel((g) => (g.input = []))],
      ['no-op-type.onnx', brokenModel((g) => (g.node![0].opType = ''))],
      ['unnamed-output.onnx', brokenModel((g) => (g.output = [floatValueInfo('', [1, 3, 8, 8])]))],
    ];
    for (const [name, bytes] of cases) {
      const refused = await upload('/v1/backbones', name, bytes);
      assert.equal(refused.statusCode, 400, `${name}: ${refused.body}`);
      const path = join(dir, name);
      await writeFile(path, bytes);
      assert.equal(await jobCode(path), refused.json().error.code, name);
      const check = await checkBackboneFile(path, name);
      assert.ok(!check.ok);
      assert.equal(check.code, refused.json().error.code, name);
    }
  });

  it('a dataset the upload refuses: the same code when a job reads the file', async () => {
    const good = encodeNpy({ shape: [6, 3], data: Float64Array.from({ length: 18 }, (_, i) => Math.sin(i)) }, 'f8');
    const goodPath = join(dir, 'good.npy');
    await writeFile(goodPath, good);
    const cases: Array<[string, Buffer]> = [
      ['truncated.npy', good.subarray(0, good.length - 5)],
      ['magic.npy', Buffer.from('hello, not numpy')],
      ['cube.npy', encodeNpy({ shape: [2, 2, 2], data: new Float64Array(8) }, 'f8')],
      ['integers.npy', encodeNpy({ shape: [4, 3], data: new Float64Array(12) }, 'i4')],
      ['empty.npy', encodeNpy({ shape: [0, 3], data: new Float64Array(0) }, 'f8')],
      ['ragged.csv', Buffer.from('a,b\n1,2\n3\n')],
      ['header-only.csv', Buffer.from('a,b\n')],
      ['duplicate.csv', Buffer.from('a,a\n1,2\n3,4\n')],
    ];
    for (const [name, bytes] of cases) {
      const refused = await upload('/v1/datasets', name, bytes);
      assert.equal(refused.statusCode, 400, `${name}: ${refused.body}`);
      const path = join(dir, name);
      await writeFile(path, bytes);
      assert.equal(await featuresJobCode(path, goodPath), refused.json().error.code, name);
    }
  });

  it('data of the wrong shape for the spec: the same code at submit and in a job', async () => {
    const app = api.api!;
    const arrays = {
      'features.npy': encodeNpy({ shape: [6, 3], data: Float64Array.from({ length: 18 }, (_, i) => Math.cos(i)) }, 'f8'),
      'images.npy': images(6, 5),
      'matrix-labels.npy': encodeNpy({ shape: [6, 2], data: new Float64Array(12) }, 'f8'),
      'five-labels.npy': encodeNpy({ shape: [5], data: new Float64Array(5) }, 'f8'),
    };
    const ids: Record<string, string> = {};
    const paths: Record<string, string> = {};
    for (const [name, bytes] of Object.entries(arrays)) {
      ids[name] = await uploadOk('/v1/datasets', name, bytes);
      paths[name] = join(dir, name);
      await writeFile(paths[name], bytes);
    }
    const cases: Array<[string, string, string | undefined]> = [
      ['images where features go', 'images.npy', undefined],
      ['labels that are no vector', 'features.npy', 'matrix-labels.npy'],
      ['labels of another count', 'features.npy', 'five-labels.npy'],
    ];
    for (const [what, benign, labels] of cases) {
      const payload = {
        benign: { dataset: ids[benign], ...(labels ? { labels: ids[labels] } : {}) },
        harmful: { dataset: ids['features.npy'] },
        method: 'closed-form',
      };
      const refused = await app.inject({ method: 'POST', url: '/v1/jobs', headers: ALICE, payload });
      assert.equal(refused.statusCode, 400, `${what}: ${refused.body}`);
      const inJob = await featuresJobCode(paths[benign], paths['features.npy'], labels && paths[labels]);
      assert.equal(inJob, refused.json().error.code, what);
    }
  });

  it('keeps the documented upload and submit codes', async () => {
    const app = api.api!;
    const npy = await upload('/v1/datasets', 'flat.npy', encodeNpy({ shape: [3, 2, 2], data: new Float64Array(12) }, 'f8'));
    assert.deepEqual([npy.statusCode, npy.json().error.code], [400, 'invalid_npy']);
    const csv = await upload('/v1/datasets', 'bad.csv', Buffer.from('a,b\n1,nan\n'));
    assert.deepEqual([csv.statusCode, csv.json().error.code], [400, 'non_finite']);
    const ext = await upload('/v1/datasets', 'data.parquet', Buffer.from('x'));
    assert.deepEqual([ext.statusCode, ext.json().error.code], [415, 'unsupported_format']);
    const spec = await app.inject({ method: 'POST', url: '/v1/jobs', headers: ALICE, payload: { benign: { dataset: 'x' } } });
    assert.deepEqual([spec.statusCode, spec.json().error.code], [400, 'invalid_spec']);
  });

  it('the error handler answers domain failures from the table and hides server-side ones', () => {
    assert.deepEqual(errorAnswer(new BackboneError('NO_CLASSIFIER', 'm')), { status: 400, code: 'no_classifier', message: 'm' });
    assert.deepEqual(errorAnswer(new DataError('UNSUPPORTED_EXTENSION', 'x')), { status: 415, code: 'unsupported_format', message: 'x' });
    assert.deepEqual(errorAnswer(new DataError('NOT_FOUND', 'gone')), { status: 404, code: 'not_found', message: 'gone' });
    assert.deepEqual(errorAnswer(new SpecError('bad')), { status: 400, code: 'invalid_spec', message: 'bad' });
    assert.deepEqual(errorAnswer(new CodedError('labels.COUNT', 'n')), { status: 400, code: 'label_mismatch', message: 'n' });
    assert.deepEqual(errorAnswer(new ApiError(429, 'rate_limited', 'slow')), { status: 429, code: 'rate_limited', message: 'slow' });
    // Server-side failures may name local paths: the handler gives them its plain 500.
    assert.equal(errorAnswer(new DataError('IO_ERROR', '/srv/data/x: EIO')), null);
    assert.equal(errorAnswer(new Error('boom')), null);
    // The request-level helpers agree with the table where they share a code.
    for (const e of [notFound('n'), payloadTooLarge('p')]) {
      const c = codeClass(e.code);
      if (c) assert.equal(e.statusCode, c.status, e.code);
    }
  });
});
