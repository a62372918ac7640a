/**
 * A backbone job through the API: upload an ONNX ResNet (a small generated fixture) and two image arrays, submit,
 * and download the immunized checkpoint next to θ and the metrics.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { encodeNpy } from '../../models/io/npy.js';
import { tarOf } from '../helpers/backbones.js';
import { unsupportedTailModel } from '../helpers/deep.js';
import { resnetFixture } from '../../scripts/fixtures/onnxResnet.js';
import { inspectOnnx } from '../../services/storage/onnx.js';
import type { RunningServer } from '../../services/server.js';
import { ALICE, cleanup, eventually, multipart, requireRedis, start, type TestEnv, testEnv } from '../helpers/service.js';

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

/** POSTs one file as the multipart upload the API takes. */
function upload(url: string, name: string, bytes: Buffer | Uint8Array) {
  const body = multipart(name, Buffer.from(bytes));
  return srv.api!.inject({ method: 'POST', url, headers: { ...ALICE, ...body.headers }, payload: body.payload });
}

/** An upload that must be accepted; its document. */
async function uploadOk(url: string, name: string, bytes: Buffer | Uint8Array) {
  const r = await upload(url, name, bytes);
  assert.equal(r.statusCode, 201, r.body);
  return r.json();
}

describe('backbone job', () => {
  it('uploads a backbone and images, runs, and serves immunized.onnx', { timeout: 120_000 }, async () => {
    const api = srv.api!;
    const size = 32;
    const fixture = resnetFixture({ imageSize: size, widths: [8, 16, 24, 48], blocks: [1, 1, 1, 1], classes: 10, head: 'gemm', seed: 18 });
    const model = Buffer.from(fixture.model.bytes);
    const info = inspectOnnx(model);
    const backbone = await uploadOk('/v1/backbones', 'resnet.onnx', model);
    assert.deepEqual(backbone.inputs, info.inputs);
    assert.equal(backbone.inputs[0].shape.slice(1).join('×'), `3×${size}×${size}`);
    const benign = await uploadOk('/v1/datasets', 'benign.npy', images(24, size, 1));
    const harmful = await uploadOk('/v1/datasets', 'harmful.npy', images(24, size, 2));
    assert.equal(benign.rows, 24);
    const r = await api.inject({
      method: 'POST',
      url: '/v1/jobs',
      headers: ALICE,
      payload: { backbone: backbone.id, benign: { dataset: benign.id }, harmful: { dataset: harmful.id }, method: 'closed-form' },
    });
    assert.equal(r.statusCode, 202, r.body);
    const id = r.json().id as string;
    const doc = await eventually(
      'the backbone job',
      async () => {
        const d = (await api.inject({ url: `/v1/jobs/${id}`, headers: ALICE })).json();
        return ['completed', 'failed'].includes(d.status) ? d : undefined;
      },
      90_000,
    );
    assert.equal(doc.status, 'completed', JSON.stringify(doc.error));
    assert.equal(doc.metrics.dim, fixture.dim);
    const onnx = doc.artifacts.find((a: { name: string }) => a.name === 'immunized.onnx');
    assert.ok(onnx, `artifacts: ${doc.artifacts.map((a: { name: string }) => a.name).join(', ')}`);
    const dl = await api.inject({ url: `/v1/jobs/${id}/artifacts/immunized.onnx`, headers: ALICE });
    assert.equal(dl.statusCode, 200);
    assert.equal(createHash('sha256').update(dl.rawPayload).digest('hex'), onnx.sha256);
    const immunized = inspectOnnx(dl.rawPayload, 'immunized.onnx');
    assert.deepEqual(
      immunized.inputs.map((i) => i.name),
      info.inputs.map((i) => i.name),
    );
  });

  it('refuses at submit, with a 4xx that says why: no classifier, an unknown tensor, images of the wrong size, no images', { timeout: 60_000 }, async () => {
    const api = srv.api!;
    const size = 32;
    const small = { imageSize: size, widths: [8, 16, 24, 48], blocks: [1, 1, 1, 1], classes: 10, seed: 18 };
    const submit = (spec: Record<string, unknown>) => api.inject({ method: 'POST', url: '/v1/jobs', headers: ALICE, payload: spec });
    const expect400 = (r: { statusCode: number; json(): { error: { code: string; message: string } } }, code: string, message: RegExp) => {
      assert.equal(r.statusCode, 400, JSON.stringify(r.json()));
      assert.equal(r.json().error.code, code);
      assert.match(r.json().error.message, message);
    };
    const headless = (await uploadOk('/v1/backbones', 'headless.onnx', resnetFixture({ ...small, head: 'none' }).model.bytes)).id as string;
    const withHead = (await uploadOk('/v1/backbones', 'resnet.onnx', resnetFixture({ ...small, head: 'gemm' }).model.bytes)).id as string;
    const good = (await uploadOk('/v1/datasets', 'good.npy', images(4, size, 3))).id as string;
    const wrongSize = (await uploadOk('/v1/datasets', 'big.npy', images(4, size + 8, 4))).id as string;

    expect400(
      await submit({ backbone: headless, benign: { dataset: good }, harmful: { dataset: good } }),
      'no_classifier',
      /classifier[\s\S]*candidate|Flatten/i,
    );
    expect400(
      await submit({ backbone: withHead, featureTensor: 'no/such/tensor', benign: { dataset: good }, harmful: { dataset: good } }),
      'unknown_tensor',
      /no\/such\/tensor/,
    );
    expect400(
      await submit({ backbone: withHead, benign: { dataset: wrongSize }, harmful: { dataset: wrongSize } }),
      'image_size',
      new RegExp(`3×${size + 8}×${size + 8} do not fit the backbone's input 3×${size}×${size}`),
    );
    const empty = await upload('/v1/datasets', 'empty.npy', encodeNpy({ shape: [0, 3, size, size], data: new Float64Array(0) }, 'f4'));
    assert.equal(empty.statusCode, 400, empty.body);
    assert.equal(empty.json().error.code, 'invalid_npy');
    assert.match(empty.json().error.message, /holds no|N×C×H×W/);
    // The same spec with the right images is taken.
    const ok = await submit({ backbone: withHead, benign: { dataset: good }, harmful: { dataset: good }, method: 'closed-form' });
    assert.equal(ok.statusCode, 202, ok.body);
    await api.inject({ method: 'DELETE', url: `/v1/jobs/${ok.json().id}`, headers: ALICE });
  });

  it('refuses a last-block job whose tail cannot be trained, with a 4xx that names the operator or tensor', { timeout: 60_000 }, async () => {
    const api = srv.api!;
    const odd = unsupportedTailModel();
    const backbone = (await uploadOk('/v1/backbones', 'odd.onnx', odd)).id as string;
    const imgs = (await uploadOk('/v1/datasets', 'imgs.npy', images(4, 8, 5))).id as string;
    const submit = (spec: Record<string, unknown>) => api.inject({ method: 'POST', url: '/v1/jobs', headers: ALICE, payload: spec });
    const linear = await submit({ backbone, benign: { dataset: imgs }, harmful: { dataset: imgs }, method: 'closed-form' });
    assert.equal(linear.statusCode, 202, linear.body);
    await api.inject({ method: 'DELETE', url: `/v1/jobs/${linear.json().id}?purge=true`, headers: ALICE });
    const deep = await submit({ backbone, mode: 'last-block', benign: { dataset: imgs }, harmful: { dataset: imgs } });
    assert.equal(deep.statusCode, 400, deep.body);
    assert.equal(deep.json().error.code, 'unsupported_operator');
    assert.match(deep.json().error.message, /HardSigmoid/);
    const resnet = (
      await uploadOk('/v1/backbones', 'resnet.onnx', resnetFixture({ imageSize: 8, widths: [4, 4, 4, 4], blocks: [1, 1, 1, 1], classes: 3 }).model.bytes)
    ).id as string;
    const cut = await submit({ backbone: resnet, mode: 'last-block', cutTensor: 'nope', benign: { dataset: imgs }, harmful: { dataset: imgs } });
    assert.equal(cut.statusCode, 400, cut.body);
    assert.equal(cut.json().error.code, 'cut_tensor');
    assert.match(cut.json().error.message, /"nope"/);
  });

  it('takes image archives: a .tar of PNG files runs a backbone job; an archive without images is refused at upload', { timeout: 120_000 }, async () => {
    const api = srv.api!;
    const size = 32;
    const fixture = resnetFixture({ imageSize: size, widths: [8, 16, 24, 48], blocks: [1, 1, 1, 1], classes: 10, head: 'gemm', seed: 18 });
    const png = (seed: number) => {
      const px = Buffer.alloc(40 * 40 * 3);
      let s = seed;
      for (let i = 0; i < px.length; i++) px[i] = (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 24;
      return sharp(px, { raw: { width: 40, height: 40, channels: 3 } })
        .png()
        .toBuffer();
    };
    const archive = async (offset: number) =>
      tarOf(await Promise.all(Array.from({ length: 6 }, async (_, i) => [`set/${i % 2 ? 'cat' : 'dog'}/${i}.png`, await png(offset + i)] as [string, Buffer])));
    const backbone = await uploadOk('/v1/backbones', 'resnet.onnx', fixture.model.bytes);
    const benign = await uploadOk('/v1/datasets', 'benign.tar', await archive(1));
    assert.equal(benign.format, 'tar');
    assert.equal(benign.rows, 6);
    assert.deepEqual(benign.classes, ['cat', 'dog']);
    const harmful = await uploadOk('/v1/datasets', 'harmful.tar', await archive(50));

    const empty = await upload('/v1/datasets', 'empty.tar', tarOf([['set/readme.txt', Buffer.from('no images here')]]));
    assert.equal(empty.statusCode, 400, empty.body);
    assert.equal(empty.json().error.code, 'images_empty');
    assert.match(empty.json().error.message, /no \.png, \.jpg or \.jpeg images/);
    const junk = await upload('/v1/datasets', 'junk.tar', Buffer.alloc(2048, 7));
    assert.equal(junk.statusCode, 400, junk.body);
    assert.equal(junk.json().error.code, 'invalid_tar');
    const noBackbone = await api.inject({
      method: 'POST',
      url: '/v1/jobs',
      headers: ALICE,
      payload: { benign: { dataset: benign.id }, harmful: { dataset: harmful.id } },
    });
    assert.equal(noBackbone.statusCode, 400, noBackbone.body);
    assert.match(noBackbone.json().error.message, /archive of images; give the job a backbone/);

    const r = await api.inject({
      method: 'POST',
      url: '/v1/jobs',
      headers: ALICE,
      payload: {
        backbone: backbone.id,
        benign: { dataset: benign.id },
        harmful: { dataset: harmful.id },
        method: 'closed-form',
        preprocess: { resize: 36, crop: size },
      },
    });
    assert.equal(r.statusCode, 202, r.body);
    const doc = await eventually(
      'the archive job',
      async () => {
        const d = (await api.inject({ url: `/v1/jobs/${r.json().id}`, headers: ALICE })).json();
        return ['completed', 'failed'].includes(d.status) ? d : undefined;
      },
      90_000,
    );
    assert.equal(doc.status, 'completed', JSON.stringify(doc.error));
    assert.equal(doc.metrics.dim, fixture.dim);
    assert.ok(doc.artifacts.some((a: { name: string }) => a.name === 'immunized.onnx'));
  });
});
