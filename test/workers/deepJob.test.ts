/**
 * Last-block jobs through the shared processor, on the small generated fixtures and the cpu backend: the κ ratios
 * over 20 draws, the head's held-out accuracy, the exported ONNX against the trained features (recomputed here by
 * onnxruntime on the exported file and by the tfjs tail with the exported weights), and the refusals.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeNpy } from '../../models/io/npy.js';
import { OnnxGraph } from '../../models/backbones/graph.js';
import { planTail } from '../../models/deep/split.js';
import { Trunk } from '../../models/deep/trunk.js';
import { isDeepError } from '../../models/deep/errors.js';
import { runDeep } from '../../models/deep/run.js';
import { resnetFixture } from '../../scripts/fixtures/onnxResnet.js';
import { DirectorySink } from '../../workers/artifacts.js';
import { runImmunizeJob } from '../../workers/immunizeProcessor.js';
import { describeJobError } from '../../workers/jobErrors.js';
import { parseJobSpec, SpecError } from '../../workers/jobSpec.js';
import { patternImages, SIZE, smallResnet, smallVit, withFittedHead } from '../models/deep/helpers.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'immunize-deep-job-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function npy(name: string, data: Float32Array | Float64Array, shape: number[], dtype: 'f4' | 'i4'): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, encodeNpy({ shape, data }, dtype));
  return path;
}

const CLASSES = 10;

async function resnetJob(): Promise<{ model: string; benign: string; labels: string; harmful: string }> {
  const benign = patternImages(200, 5, { classes: CLASSES, amplitude: 1 });
  const harmful = patternImages(200, 6, { lowRank: 4 });
  const modelBytes = await withFittedHead(smallResnet().model.bytes, benign.images, benign.labels, CLASSES);
  const model = join(dir, 'resnet.onnx');
  await writeFile(model, modelBytes);
  return {
    model,
    benign: await npy('benign.npy', benign.images, [200, 3, SIZE, SIZE], 'f4'),
    labels: await npy('benign-labels.npy', benign.labels, [200], 'i4'),
    harmful: await npy('harmful.npy', harmful.images, [200, 3, SIZE, SIZE], 'f4'),
  };
}

describe('last-block jobs', () => {
  it('ResNet fixture: 20 steps on the cpu backend immunize the block, keep the head accurate, export a matching ONNX', async () => {
    const files = await resnetJob();
    const out = join(dir, 'resnet-out');
    const spec = parseJobSpec({ mode: 'last-block', backbone: files.model, benign: { dataset: files.benign, labels: files.labels }, harmful: { dataset: files.harmful }, steps: 20 });
    const result = await runImmunizeJob(spec, { sink: new DirectorySink(out) });
    const m = JSON.parse(await readFile(join(out, 'metrics.json'), 'utf8'));
    const d = m.deep;
    console.log(`# harmful ratio ${d.harmfulRatio.mean} ± ${d.harmfulRatio.std}, benign ratio ${d.benignRatio.mean} ± ${d.benignRatio.std}, RIR ${d.rir.mean}, accuracy ${d.benignAccuracy.before} → ${d.benignAccuracy.after}, accepted ${d.training.accepted}/${d.training.steps}, tail diff ${m.checkpoint.maxTailFeatureDiff}`);
    assert.equal(m.mode, 'last-block');
    assert.equal(m.tfjsBackend, 'cpu');
    assert.equal(m.deep.draws, 20);
    assert.equal(m.deep.sampleSize, 100);
    assert.equal(m.deep.distributions.harmfulRatio.length, 20);
    for (const key of ['rir', 'harmfulRatio', 'benignRatio']) assert.equal(typeof m.deep[key].mean, 'number', key);
    assert.ok(m.deep.harmfulRatio.mean >= 2, `mean harmful ratio ${m.deep.harmfulRatio.mean}`);
    assert.ok(m.deep.benignRatio.mean <= 1, `mean benign ratio ${m.deep.benignRatio.mean}`);
    assert.ok(m.deep.benignAccuracy.before - m.deep.benignAccuracy.after <= 0.01, `accuracy ${m.deep.benignAccuracy.before} → ${m.deep.benignAccuracy.after}`);
    assert.ok(m.deep.benignAccuracy.before > 0.5, 'the fitted head classifies the held-out rows');
    assert.equal(m.attacks.length, 10);
    assert.ok(m.checkpoint.maxTailFeatureDiff >= 0 && m.checkpoint.passed);
    assert.deepEqual(result.artifacts.map((a) => a.name).sort(), ['curves.json', 'immunized.onnx', 'metrics.json', 'report.html']);

    // Independently: the exported file's features (onnxruntime) against the original's, and the spectra moved.
    const exported = await readFile(join(out, 'immunized.onnx'));
    const original = OnnxGraph.parse(await readFile(files.model), 'orig.onnx');
    const changed = OnnxGraph.parse(exported, 'immunized.onnx');
    const plan = planTail(changed);
    assert.equal(plan.cut, m.deep.cut.tensor);
    const inits = (g: OnnxGraph) => new Map((g.graph.initializer ?? []).map((t) => [t.name, t]));
    const a = inits(original);
    const b = inits(changed);
    assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort(), 'the same initializers, no new nodes');
    assert.equal(changed.graph.node!.length, original.graph.node!.length);
    const differs = (name: string) => Buffer.compare(Buffer.from(a.get(name)!.rawData!), Buffer.from(b.get(name)!.rawData!)) !== 0;
    assert.ok(plan.trainable.some(differs), 'trained weights were written');
    assert.ok(!differs('fc.weight') && !differs('layer1.0.1.conv.weight'), 'the head and the trunk are untouched');
    const trunk = await Trunk.open(changed, plan, { executionProvider: 'cpu', threads: 1 });
    try {
      const images = new Float32Array((await readFile(files.benign)).buffer.slice(128)).subarray(0, 8 * 3 * SIZE * SIZE);
      const f = await trunk.runBatch(Float32Array.from(images), [8, 3, SIZE, SIZE]);
      assert.deepEqual([...f.features.dims], [8, m.dim]);
    } finally {
      await trunk.close();
    }
  });

  it('ViT fixture: runs end to end on the wasm backend (no conv in the tail) and exports a verified ONNX', async () => {
    const benign = patternImages(40, 7, { classes: CLASSES });
    const harmful = patternImages(40, 8, { lowRank: 3 });
    const model = join(dir, 'vit.onnx');
    await writeFile(model, smallVit().model.bytes);
    const out = join(dir, 'vit-out');
    const spec = parseJobSpec({
      mode: 'last-block',
      backbone: model,
      benign: { dataset: await npy('vb.npy', benign.images, [40, 3, SIZE, SIZE], 'f4') },
      harmful: { dataset: await npy('vh.npy', harmful.images, [40, 3, SIZE, SIZE], 'f4') },
      steps: 2,
    });
    await runImmunizeJob(spec, { sink: new DirectorySink(out) });
    const m = JSON.parse(await readFile(join(out, 'metrics.json'), 'utf8'));
    assert.equal(m.tfjsBackend, 'wasm');
    assert.equal(m.deep.sampleSize, 40);
    assert.match(m.deep.cut.tensor, /encoder_layer_0/);
    assert.ok(m.checkpoint.passed, `tail feature difference ${m.checkpoint.relTailFeatureDiff}`);
    assert.equal(m.deep.benignAccuracy.before, null);
    assert.ok(m.warnings.some((w: { field: string }) => w.field === 'deep.benignAccuracy'));
  });

  it('refuses a ResNet-18-sized tail on the cpu backend at once, with the estimate and what to install', async () => {
    const fx = resnetFixture({ classes: 10 });
    const model = join(dir, 'resnet18.onnx');
    await writeFile(model, fx.model.bytes);
    const images = await npy('big.npy', new Float32Array(2 * 3 * 224 * 224), [2, 3, 224, 224], 'f4');
    const err = await runDeep({ backbone: model, benign: { images }, harmful: { images } }, { backends: ['cpu'] }).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(isDeepError(err, 'SLOW_BACKEND'), String(err));
    const message = (err as Error).message;
    assert.match(message, /estimated [\d.]+ (s|min|h) per step × 20 steps/);
    assert.match(message, /GFLOP per step/);
    assert.match(message, /tfjs-node-gpu/);
    assert.match(message, /--allow-slow-backend/);
    assert.equal(describeJobError(err).code, 'invalid_argument');
    assert.equal(describeJobError(err).permanent, true);
  });

  it('spec: last-block needs a backbone; deep-only fields need last-block', () => {
    assert.throws(() => parseJobSpec({ mode: 'last-block', benign: { dataset: 'a.npy' }, harmful: { dataset: 'b.npy' } }), SpecError);
    assert.throws(() => parseJobSpec({ backbone: 'm.onnx', cutTensor: 'x', benign: { dataset: 'a.npy' }, harmful: { dataset: 'b.npy' } }), SpecError);
    assert.throws(() => parseJobSpec({ mode: 'deep', backbone: 'm.onnx', benign: { dataset: 'a.npy' }, harmful: { dataset: 'b.npy' } }), /linear-head.*last-block/);
    const ok = parseJobSpec({ mode: 'last-block', backbone: 'm.onnx', cutTensor: 'x', allowSlowBackend: true, benign: { dataset: 'a.npy' }, harmful: { dataset: 'b.npy' } });
    assert.equal(ok.allowSlowBackend, true);
  });
});
