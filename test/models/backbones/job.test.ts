/**
 * A backbone job end to end, through the worker's processor and through the CLI: images → features → engine →
 * artifacts, with immunized.onnx checked here against the untouched original and the fixture's own feature graph.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import type { StepEvent } from '../../../models/engine/progress.js';
import { encodeNpy } from '../../../models/io/npy.js';
import { readSafetensors } from '../../../models/io/safetensors.js';
import { Backbone, IMMUNIZED_FEATURES } from '../../../models/backbones/index.js';
import { GraphBuilder } from '../../../scripts/fixtures/onnxBuilder.js';
import { DirectorySink } from '../../../workers/artifacts.js';
import { runJob } from '../../../workers/modes.js';
import { describeJobError } from '../../../workers/jobErrors.js';
import { parseJobSpec, SpecError } from '../../../workers/jobSpec.js';
import { assertFeaturesTimesTheta, maxRelDiff, randomImages, rejects, runModel, SIZE, smallResnet, smallVit } from '../../helpers/backbones.js';
import { lcg } from '../../helpers/reference.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');
const CLI = join(ROOT, 'dist', 'services', 'cli', 'main.js');

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      done({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'immunize-backbone-job-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function npyImages(name: string, n: number, seed: number, shift: number): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, encodeNpy({ shape: [n, 3, SIZE, SIZE], data: randomImages(n, seed, shift) }, 'f4'));
  return path;
}

async function labels(name: string, n: number, classes: number): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, encodeNpy({ shape: [n], data: Float64Array.from({ length: n }, (_, i) => i % classes) }, 'i4'));
  return path;
}

/** Noise PNGs of assorted sizes in two class folders. */
async function imageFolder(name: string, perClass: number, seed: number): Promise<string> {
  const u = lcg(seed);
  const root = join(dir, name);
  for (const cls of ['a', 'b']) {
    await mkdir(join(root, cls), { recursive: true });
    for (let i = 0; i < perClass; i++) {
      const w = 36 + Math.floor(u() * 20);
      const h = 36 + Math.floor(u() * 20);
      const tint = cls === 'a' ? 0 : 90;
      const px = Buffer.from(Array.from({ length: w * h * 3 }, (_, k) => Math.floor(u() * 160) + (k % 3 === 0 ? tint : 0)));
      await writeFile(
        join(root, cls, `${i}.png`),
        await sharp(px, { raw: { width: w, height: h, channels: 3 } })
          .png()
          .toBuffer(),
      );
    }
  }
  return root;
}

/** immunized.onnx against the original's logits and the fixture's features times the θ in theta.safetensors. */
async function checkArtifacts(out: string, fx: ReturnType<typeof smallResnet>): Promise<void> {
  const exported = await readFile(join(out, 'immunized.onnx'));
  const tensors = await readSafetensors(join(out, 'theta.safetensors'));
  const theta = { rows: fx.dim, cols: fx.dim, data: Float64Array.from(tensors.theta.data) };
  const images = randomImages(7, 1234);
  const before = await runModel(fx.model.bytes, images, 'output');
  const afterRun = await runModel(exported, images, 'output');
  assert.ok(maxRelDiff(afterRun.data, before.data) <= 1e-3, `logits moved by ${maxRelDiff(afterRun.data, before.data)} (relative)`);
  const F = await runModel(fx.features.bytes, images, fx.featureTensor);
  const G = await runModel(exported, images, IMMUNIZED_FEATURES);
  assertFeaturesTimesTheta(G.data, F.data, theta);
}

describe('backbone job through the worker processor', () => {
  it('ResNet on .npy images: features → engine → artifacts, immunized.onnx checked, progress over both phases', async () => {
    const fx = smallResnet();
    const model = join(dir, 'resnet.onnx');
    await writeFile(model, fx.model.bytes);
    const spec = parseJobSpec({
      backbone: model,
      benign: { dataset: await npyImages('benign.npy', 150, 1, 0), labels: await labels('benign-y.npy', 150, 3) },
      harmful: { dataset: await npyImages('harmful.npy', 120, 2, 0.3), labels: await labels('harmful-y.npy', 120, 2) },
      method: 'closed-form',
    });
    const out = join(dir, 'job-resnet');
    const events: StepEvent[] = [];
    const result = await runJob(spec, { sink: new DirectorySink(out), observe: (e) => events.push(e) });
    assert.ok(result.artifacts.some((a) => a.name === 'immunized.onnx'));
    const metrics = JSON.parse(await readFile(join(out, 'metrics.json'), 'utf8'));
    assert.equal(metrics.features.tensor, fx.featureTensor);
    assert.equal(metrics.features.dim, 48);
    assert.equal(metrics.dim, 48);
    assert.deepEqual(metrics.rows, { benign: 150, harmful: 120, benignTest: null });
    assert.equal(metrics.executionProvider, 'cpu');
    assert.equal(metrics.features.inputs.benign.labels, 'file');
    assert.equal(metrics.task, 'multiclass');
    for (const k of ['maxAbsLogitDiff', 'maxRelLogitDiff', 'maxFeatureDiff']) assert.equal(typeof metrics.checkpoint[k], 'number', k);
    assert.ok(metrics.checkpoint.maxRelLogitDiff <= 1e-3);
    assert.ok(metrics.checkpoint.featureRoundingRatio <= 1);
    assert.equal(metrics.checkpoint.passed, true);
    await checkArtifacts(out, fx);

    const features = events.filter((e) => e.phase === 'statistics');
    assert.ok(features.length >= 2, 'one progress event per batch');
    assert.deepEqual([features[features.length - 1].step, features[features.length - 1].of], [270, 270]);
    assert.ok(
      features.every((e, i) => i === 0 || e.step! >= features[i - 1].step!),
      'feature progress only goes up',
    );
    const firstOptimize = events.findIndex((e) => e.phase === 'optimize');
    assert.ok(firstOptimize > events.indexOf(features[features.length - 1]), 'the engine phase follows the feature phase');
    assert.ok(
      events.some((e) => e.phase === 'load' && /onnxruntime: CPU execution provider/.test(e.message ?? '')),
      'the execution provider is logged',
    );
  });

  it('bad inputs fail the job with permanent, coded errors', async () => {
    const fx = smallResnet('none');
    const model = join(dir, 'headless.onnx');
    await writeFile(model, fx.model.bytes);
    const images = await npyImages('few.npy', 8, 3, 0);
    const spec = parseJobSpec({ backbone: model, benign: { dataset: images }, harmful: { dataset: images }, method: 'closed-form' });
    const err = await rejects(runJob(spec, { sink: new DirectorySink(join(dir, 'never')) }), 'NO_CLASSIFIER');
    assert.deepEqual(describeJobError(err), { code: 'no_classifier', message: err.message, permanent: true });
    const labelsOff = await labels('off-y.npy', 7, 2);
    const withLabels = parseJobSpec({
      backbone: join(dir, 'resnet.onnx'),
      benign: { dataset: images, labels: labelsOff },
      harmful: { dataset: images },
      method: 'closed-form',
    });
    await rejects(runJob(withLabels, { sink: new DirectorySink(join(dir, 'never')) }), 'LABELS', /7 labels for 8 images/);

    // A named output that is not N×D is caught on the first batch.
    const b = new GraphBuilder(1);
    const pooled = b.node('GlobalAveragePool', ['input'], '/pool');
    const fourD = b.build({ input: 'input', inputShape: ['N', 3, SIZE, SIZE], output: pooled, outputShape: ['N', 3, 1, 1] });
    const backbone = await Backbone.fromBytes(fourD.bytes, 'pool.onnx', { featureTensor: pooled });
    const source = await backbone.openImages(images);
    await rejects(backbone.extract(source), 'FEATURE_SHAPE', /shape \[8, 3, 1, 1\] for a batch of 8; expected float32 N×D/);
    await source.close();
    await backbone.close();
  });

  it('the job spec takes a backbone, featureTensor and preprocess, and refuses them where they do not apply', () => {
    const spec = parseJobSpec({
      backbone: 'b1',
      featureTensor: 'x',
      preprocess: { resize: 300, crop: 256 },
      benign: { dataset: 'd1' },
      harmful: { dataset: 'd2' },
    });
    assert.equal(spec.featureTensor, 'x');
    assert.throws(() => parseJobSpec({ featureTensor: 'x', benign: { dataset: 'd1' }, harmful: { dataset: 'd2' } }), SpecError);
    assert.throws(() => parseJobSpec({ backbone: 'b', benign: { dataset: 'd1', labelColumn: 'y' }, harmful: { dataset: 'd2' } }), /labels file/);
    assert.throws(() => parseJobSpec({ backbone: 'b', preprocess: { crop: 0 }, benign: { dataset: 'd1' }, harmful: { dataset: 'd2' } }), SpecError);
  });
});

describe('backbone job through the CLI', () => {
  it('ViT on PNG folders with class labels writes immunized.onnx that checks out', async () => {
    const fx = smallVit();
    const model = join(dir, 'vit.onnx');
    await writeFile(model, fx.model.bytes);
    const benign = await imageFolder('vit-benign', 24, 5);
    const harmful = await imageFolder('vit-harmful', 20, 6);
    const out = join(dir, 'cli-vit');
    const r = await cli(['run', '--backbone', model, '--benign', benign, '--harmful', harmful, '--method', 'closed-form', '--json', '--out', out]);
    assert.ok(r.code === 0 || r.code === 3, r.stderr);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.ok(lines.some((l) => l.type === 'progress' && l.phase === 'statistics' && l.step === 88 && l.of === 88));
    const result = lines[lines.length - 1];
    assert.ok(result.artifacts.some((a: { name: string }) => a.name === 'immunized.onnx'));
    const metrics = JSON.parse(await readFile(join(out, 'metrics.json'), 'utf8'));
    assert.equal(metrics.features.tensor, fx.featureTensor);
    assert.equal(metrics.features.dim, 32);
    assert.deepEqual(metrics.features.inputs.benign.classes, ['a', 'b']);
    assert.deepEqual(metrics.features.preprocess, { resize: 37, crop: 32, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] });
    assert.equal(metrics.checkpoint.passed, true);
    await checkArtifacts(out, fx);
  });

  it('bad backbones and images exit 1 with a message that says what is wrong', async () => {
    const fx = smallResnet();
    const good = join(dir, 'cli-resnet.onnx');
    await writeFile(good, fx.model.bytes);
    const cut = join(dir, 'cut.onnx');
    await writeFile(cut, fx.model.bytes.subarray(0, 5000));
    const headless = join(dir, 'cli-headless.onnx');
    await writeFile(headless, smallResnet('none').model.bytes);
    const images = await npyImages('cli.npy', 6, 4, 0);
    const wrongSize = join(dir, 'wrong.npy');
    await writeFile(wrongSize, encodeNpy({ shape: [4, 3, 16, 16], data: randomImages(4, 5, 0, 16) }, 'f4'));
    await mkdir(join(dir, 'no-images'));
    const cases: Array<[string, string[], RegExp]> = [
      ['corrupt ONNX', ['--backbone', cut, '--benign', images, '--harmful', images], /cut\.onnx is not a readable ONNX model/],
      [
        'no classifier',
        ['--backbone', headless, '--benign', images, '--harmful', images],
        /no final linear classifier.*candidate tensors: "\/Flatten_output_0"/,
      ],
      [
        'unknown tensor',
        ['--backbone', good, '--feature-tensor', 'feat', '--benign', images, '--harmful', images],
        /"feat" is not a tensor of this graph; candidate tensors/,
      ],
      ['wrong image size', ['--backbone', good, '--benign', wrongSize, '--harmful', images], /3×16×16 \(C×H×W\) but the model takes 3×32×32/],
      ['empty folder', ['--backbone', good, '--benign', join(dir, 'no-images'), '--harmful', images], /no \.png, \.jpg or \.jpeg images/],
    ];
    for (const [name, args, message] of cases) {
      const r = await cli(['run', ...args, '--out', join(dir, 'cli-bad')]);
      assert.equal(r.code, 1, `${name}: ${r.stderr}`);
      assert.match(r.stderr, message, name);
    }
  });
});
