/**
 * A backbone job through the API: upload an ONNX ResNet (a small generated fixture) and two image arrays, submit,
 * and download the immunized checkpoint next to θ and the metrics.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { encodeNpy } from '../../models/io/npy.js';
import { resnetFixture } from '../../scripts/fixtures/onnxResnet.js';
import { inspectOnnx } from '../../services/storage/onnx.js';
import type { RunningServer } from '../../services/server.js';
import { ALICE, cleanup, eventually, multipart, requireRedis, start, type TestEnv, testEnv } from './helpers.js';

// Without a Redis this file fails (it never skips).
await requireRedis();

let t: TestEnv;
let srv: RunningServer;

before(async () => {
  t = await testEnv();
  srv = await start('all', t);
});

after(async () => {
  await srv?.close();
  if (t) await cleanup(t);
});

function images(n: number, size: number, seed: number): Buffer {
  let s = seed;
  const data = new Float64Array(n * 3 * size * size);
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = s / 2 ** 32 - 0.5;
  }
  return encodeNpy({ shape: [n, 3, size, size], data }, 'f4');
}

describe('backbone job', () => {
  it('uploads a backbone and images, runs, and serves immunized.onnx', { timeout: 120_000 }, async () => {
    const api = srv.api!;
    const size = 32;
    const fixture = resnetFixture({ imageSize: size, widths: [8, 16, 24, 48], blocks: [1, 1, 1, 1], classes: 10, head: 'gemm', seed: 18 });
    const model = Buffer.from(fixture.model.bytes);
    const info = inspectOnnx(model);
    const post = async (url: string, name: string, bytes: Buffer) => {
      const body = multipart(name, bytes);
      const r = await api.inject({ method: 'POST', url, headers: { ...ALICE, ...body.headers }, payload: body.payload });
      assert.equal(r.statusCode, 201, r.body);
      return r.json();
    };
    const backbone = await post('/v1/backbones', 'resnet.onnx', model);
    assert.deepEqual(backbone.inputs, info.inputs);
    assert.equal(backbone.inputs[0].shape.slice(1).join('×'), `3×${size}×${size}`);
    const benign = await post('/v1/datasets', 'benign.npy', images(24, size, 1));
    const harmful = await post('/v1/datasets', 'harmful.npy', images(24, size, 2));
    assert.equal(benign.rows, 24);
    const r = await api.inject({
      method: 'POST',
      url: '/v1/jobs',
      headers: ALICE,
      payload: { backbone: backbone.id, benign: { dataset: benign.id }, harmful: { dataset: harmful.id }, method: 'closed-form' },
    });
    assert.equal(r.statusCode, 202, r.body);
    const id = r.json().id as string;
    const doc = await eventually('the backbone job', async () => {
      const d = (await api.inject({ url: `/v1/jobs/${id}`, headers: ALICE })).json();
      return ['completed', 'failed'].includes(d.status) ? d : undefined;
    }, 90_000);
    assert.equal(doc.status, 'completed', JSON.stringify(doc.error));
    assert.equal(doc.metrics.dim, fixture.dim);
    const onnx = doc.artifacts.find((a: { name: string }) => a.name === 'immunized.onnx');
    assert.ok(onnx, `artifacts: ${doc.artifacts.map((a: { name: string }) => a.name).join(', ')}`);
    const dl = await api.inject({ url: `/v1/jobs/${id}/artifacts/immunized.onnx`, headers: ALICE });
    assert.equal(dl.statusCode, 200);
    assert.equal(createHash('sha256').update(dl.rawPayload).digest('hex'), onnx.sha256);
    const immunized = inspectOnnx(dl.rawPayload, 'immunized.onnx');
    assert.deepEqual(immunized.inputs.map((i) => i.name), info.inputs.map((i) => i.name));
  });
});
