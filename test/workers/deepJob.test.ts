/**
 * Last-block jobs through the shared processor, on the small generated fixtures and the default (native) backend: the κ ratios
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
import { isDeepError } from '../../models/deep/errors.js';
import { runDeep } from '../../models/deep/run.js';
import { resnetFixture } from '../../scripts/fixtures/onnxResnet.js';
import { DirectorySink } from '../../workers/artifacts.js';
import { runJob } from '../../workers/modes.js';
import { describeJobError } from '../../workers/jobErrors.js';
import { CancelledError } from '../../models/engine/progress.js';
import { parseJobSpec, SpecError } from '../../workers/jobSpec.js';
import { patternImages, SIZE, smallResnet, smallVit, withFittedHead } from '../helpers/deep.js';
import { runModel } from '../helpers/backbones.js';
import { ATTACKERS } from '../../models/engine/attacks.js';

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

async function resnetJob(): Promise<{ model: string; benign: string; labels: string; harmful: string; test: string; testLabels: string }> {
  const benign = patternImages(400, 5, { classes: CLASSES, amplitude: 1 });
  const harmful = patternImages(200, 6, { lowRank: 4 });
  const modelBytes = await withFittedHead(smallResnet().model.bytes, benign.images.subarray(0, 200 * 3 * SIZE * SIZE), benign.labels.subarray(0, 200), CLASSES);
  const model = join(dir, 'resnet.onnx');
  await writeFile(model, modelBytes);
  const per = 3 * SIZE * SIZE;
  return {
    model,
    benign: await npy('benign.npy', benign.images.slice(0, 200 * per), [200, 3, SIZE, SIZE], 'f4'),
    labels: await npy('benign-labels.npy', benign.labels.slice(0, 200), [200], 'i4'),
    test: await npy('benign-test.npy', benign.images.slice(200 * per), [200, 3, SIZE, SIZE], 'f4'),
    testLabels: await npy('benign-test-labels.npy', benign.labels.slice(200), [200], 'i4'),
    harmful: await npy('harmful.npy', harmful.images, [200, 3, SIZE, SIZE], 'f4'),
  };
}

describe('last-block jobs', () => {
  it('ResNet fixture: 20 steps on the native backend immunize the block, keep the head accurate, and the metrics agree with onnxruntime on the exported file', async () => {
    const files = await resnetJob();
    const out = join(dir, 'resnet-out');
    const spec = parseJobSpec({
      mode: 'last-block',
      backbone: files.model,
      benign: { dataset: files.benign, labels: files.labels },
      benignTest: { dataset: files.test, labels: files.testLabels },
      harmful: { dataset: files.harmful },
      steps: 20,
    });
    const result = await runJob(spec, { sink: new DirectorySink(out) });
    const m = JSON.parse(await readFile(join(out, 'metrics.json'), 'utf8'));
    const d = m.deep;
    console.log(
      `# harmful ratio ${d.harmfulRatio.mean} ± ${d.harmfulRatio.std}, benign ratio ${d.benignRatio.mean} ± ${d.benignRatio.std}, RIR ${d.rir.mean}, accuracy ${d.benignAccuracy.before} → ${d.benignAccuracy.after}, accepted ${d.training.accepted}/${d.training.steps}, tail diff ${m.checkpoint.maxTailFeatureDiff}`,
    );
    assert.equal(m.mode, 'last-block');
    assert.equal(m.tfjsBackend, 'native');
    assert.equal(d.training.steps, 20);
    assert.equal(d.draws, 20);
    assert.equal(d.sampleSize, 100);
    assert.equal(m.attacks.length, ATTACKERS.length * 2);
    assert.deepEqual(result.artifacts.map((a) => a.name).sort(), ['curves.json', 'immunized.onnx', 'metrics.json', 'report.html']);

    // The paper's bar over the 20 draws, and at most one point of held-out accuracy lost.
    assert.ok(d.harmfulRatio.mean >= 2, `mean harmful ratio ${d.harmfulRatio.mean}`);
    assert.ok(d.benignRatio.mean <= 1, `mean benign ratio ${d.benignRatio.mean}`);
    assert.ok(d.benignAccuracy.before - d.benignAccuracy.after <= 0.01 + 1e-12, `accuracy ${d.benignAccuracy.before} → ${d.benignAccuracy.after}`);
    // Over all rows too: κ of the benign features falls, κ of the harmful ones rises.
    assert.ok(m.kappa.benign.after < m.kappa.benign.before && m.kappa.harmful.after > m.kappa.harmful.before);

    // The aggregates are the mean and sample standard deviation of the listed draws.
    for (const key of ['rir', 'harmfulRatio', 'benignRatio'] as const) {
      const values: number[] = d.distributions[key];
      assert.equal(values.length, 20);
      const mean = values.reduce((a, b) => a + b, 0) / values.length;
      const std = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / (values.length - 1));
      assert.ok(Math.abs(mean - d[key].mean) <= 1e-12 * Math.abs(mean) && Math.abs(std - d[key].std) <= 1e-9 * Math.max(std, 1e-300), key);
    }
    // What the acceptance rule promises on its own evaluation rows: κ_P no higher, log κ_H − 2 log κ_P no lower.
    const { start, end } = d.training.evaluation;
    assert.ok(end.kappaBenign <= start.kappaBenign);
    assert.ok(Math.log(end.kappaHarmful) - 2 * Math.log(end.kappaBenign) >= Math.log(start.kappaHarmful) - 2 * Math.log(start.kappaBenign));
    if (d.training.accepted > 0)
      assert.ok(Math.log(end.kappaHarmful) - 2 * Math.log(end.kappaBenign) > Math.log(start.kappaHarmful) - 2 * Math.log(start.kappaBenign));

    // Independently, with onnxruntime: the held-out accuracy before (original file) and after (exported file).
    const exported = await readFile(join(out, 'immunized.onnx'));
    const testImages = Float32Array.from(new Float32Array(new Uint8Array(await readFile(files.test)).slice(128).buffer));
    const testLabels = Array.from({ length: 200 }, (_, i) => (200 + i) % CLASSES);
    const acc = async (bytes: Uint8Array) => {
      const logits = (await runModel(bytes, testImages, 'output')).data;
      let hits = 0;
      for (let i = 0; i < 200; i++) {
        let best = 0;
        for (let c = 1; c < CLASSES; c++) if (logits[i * CLASSES + c] > logits[i * CLASSES + best]) best = c;
        if (best === testLabels[i]) hits++;
      }
      return hits / 200;
    };
    assert.equal(d.benignAccuracy.before, await acc(await readFile(files.model)));
    assert.equal(d.benignAccuracy.after, await acc(exported));
    assert.equal(d.benignAccuracy.heldOut, 'benignTest');
    assert.ok(d.benignAccuracy.before > 0.5, 'the fitted head classifies the held-out images');

    // The export: same graph and names, trained weights written, the head and the trunk untouched.
    assert.ok(m.checkpoint.passed && m.checkpoint.relTailFeatureDiff <= 1e-4);
    const original = OnnxGraph.parse(await readFile(files.model), 'orig.onnx');
    const changed = OnnxGraph.parse(exported, 'immunized.onnx');
    const plan = planTail(changed);
    assert.equal(plan.cut, d.cut.tensor);
    const inits = (g: OnnxGraph) => new Map((g.graph.initializer ?? []).map((t) => [t.name, t]));
    const a = inits(original);
    const b = inits(changed);
    assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
    assert.equal(changed.graph.node!.length, original.graph.node!.length);
    const differs = (name: string) => Buffer.compare(Buffer.from(a.get(name)!.rawData!), Buffer.from(b.get(name)!.rawData!)) !== 0;
    if (d.training.accepted > 0) assert.ok(plan.trainable.some(differs), 'trained weights were written');
    assert.ok(!differs('fc.weight') && !differs('layer1.0.1.conv.weight') && !differs('layer4.0.1.bn.running_mean'), 'head, trunk and BN statistics untouched');
  });

  it('ViT fixture: runs end to end on the native backend and exports a verified ONNX', async () => {
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
    await runJob(spec, { sink: new DirectorySink(out) });
    const m = JSON.parse(await readFile(join(out, 'metrics.json'), 'utf8'));
    // The same job with the activations cached on disk gives the same numbers.
    const disk = await runDeep(
      { backbone: model, benign: { images: join(dir, 'vb.npy') }, harmful: { images: join(dir, 'vh.npy') } },
      { steps: 2, activationMemoryBytes: 1024 },
    );
    assert.equal(disk.metrics.deep.activations, 'disk');
    assert.equal(m.deep.activations, 'memory');
    assert.deepEqual(disk.metrics.deep.distributions, m.deep.distributions);
    assert.equal(m.tfjsBackend, 'native');
    assert.equal(m.deep.sampleSize, 40);
    assert.match(m.deep.cut.tensor, /encoder_layer_0/);
    assert.ok(m.checkpoint.passed, `tail feature difference ${m.checkpoint.relTailFeatureDiff}`);
    assert.equal(m.deep.benignAccuracy.before, null);
    assert.ok(m.warnings.some((w: { field: string }) => w.field === 'deep.benignAccuracy'));
  });

  it('stops at the next step when cancelled', async () => {
    const benign = patternImages(24, 9, { classes: CLASSES });
    const model = join(dir, 'vit-cancel.onnx');
    await writeFile(model, smallVit().model.bytes);
    const images = await npy('vc.npy', benign.images, [24, 3, SIZE, SIZE], 'f4');
    const controller = new AbortController();
    const phases: string[] = [];
    const err = await runDeep(
      { backbone: model, benign: { images }, harmful: { images } },
      { steps: 50 },
      (e) => {
        phases.push(e.phase);
        if (e.phase === 'optimize' && e.step === 2) controller.abort();
      },
      controller.signal,
    ).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(err instanceof CancelledError, String(err));
    assert.ok(phases.includes('statistics') && phases.includes('optimize'));
    assert.equal(describeJobError(err).code, 'cancelled');
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
    assert.throws(
      () => parseJobSpec({ mode: 'deep', backbone: 'm.onnx', benign: { dataset: 'a.npy' }, harmful: { dataset: 'b.npy' } }),
      /linear-head.*last-block/,
    );
    const ok = parseJobSpec({
      mode: 'last-block',
      backbone: 'm.onnx',
      cutTensor: 'x',
      allowSlowBackend: true,
      benign: { dataset: 'a.npy' },
      harmful: { dataset: 'b.npy' },
    });
    assert.equal(ok.allowSlowBackend, true);
  });
});
