import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { openImages } from '../../models/backbones/images.js';
import { readNpy } from '../../models/io/npy.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const CLI = join(ROOT, 'dist', 'services', 'cli', 'main.js');
const BUNDLED = join(ROOT, 'data', 'backbone', 'vit-fmnist');
const FIRST_ORDER = ['gd', 'gd-exact', 'gd-exact-standardized', 'adam', 'adam-standardized'];

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 1_200_000, maxBuffer: 1 << 24 }, (err, stdout, stderr) => {
      done({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

/** theta from theta.safetensors, read here from the format's definition: u64 header length, JSON header, raw data. */
function safetensorsMatrix(buf: Buffer, name: string): { rows: number; cols: number; data: Float64Array } {
  const headerLength = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + headerLength).toString('utf8'));
  const entry = header[name] as { dtype: string; shape: number[]; data_offsets: [number, number] };
  assert.equal(entry.dtype, 'F64');
  const start = 8 + headerLength + entry.data_offsets[0];
  const bytes = buf.subarray(start, 8 + headerLength + entry.data_offsets[1]);
  const data = new Float64Array(bytes.byteLength / 8);
  for (let i = 0; i < data.length; i++) data[i] = bytes.readDoubleLE(i * 8);
  return { rows: entry.shape[0], cols: entry.shape[1], data };
}

async function run(model: string, input: Float32Array, n: number, outputs: string[]): Promise<Record<string, Float32Array>> {
  const session = await ort.InferenceSession.create(model);
  try {
    const result = await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', input, [n, 3, 32, 32]) }, outputs);
    return Object.fromEntries(outputs.map((o) => [o, result[o].data as Float32Array]));
  } finally {
    await session.release();
  }
}

const maxAbs = (a: ArrayLike<number>) => Array.from(a).reduce((m, x) => Math.max(m, Math.abs(x)), 0);
const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

function argmaxAccuracy(logits: Float32Array, labels: ArrayLike<number>, classes: number): number {
  let right = 0;
  for (let i = 0; i < labels.length; i++) {
    const row = logits.subarray(i * classes, (i + 1) * classes);
    if (row.indexOf(Math.max(...row)) === labels[i]) right++;
  }
  return right / labels.length;
}

function chartCounts(html: string): Map<string, number[]> {
  const charts = new Map<string, number[]>();
  for (const m of html.matchAll(/<svg[^>]*data-chart="([a-z-]+)" data-points="(\d+)"/g)) charts.set(m[1], [...(charts.get(m[1]) ?? []), Number(m[2])]);
  return charts;
}

test('the bundled ViT export reproduces the logits and features torch recorded for it', async () => {
  const check = await readNpy(join(BUNDLED, 'check.npy'));
  const n = check.shape[0];
  const torchLogits = (await readNpy(join(BUNDLED, 'check_logits.npy'))).data;
  const original = await run(join(BUNDLED, 'model.onnx'), Float32Array.from(check.data), n, ['logits']);
  assert.ok(maxAbsDiff(original.logits, torchLogits) <= 1e-4 * maxAbs(torchLogits), 'model.onnx in onnxruntime differs from torch');
  const meta = JSON.parse(await readFile(join(BUNDLED, 'meta.json'), 'utf8'));
  assert.match(meta.training.torch, /^1\.13/);
  assert.ok(meta.testAccuracy.value > 0.5, `the bundled model's test accuracy is ${meta.testAccuracy.value}`);
});

test('demo backbone --quick: both jobs write a checkpoint that does what metrics.json says, and a report with its charts', async () => {
  const out = await mkdtemp(join(tmpdir(), 'immunize-demo-backbone-'));
  const r = await cli(['demo', 'backbone', '--quick', '--out', out]);
  const linear = JSON.parse(await readFile(join(out, 'linear-head', 'metrics.json'), 'utf8'));
  const deep = JSON.parse(await readFile(join(out, 'last-block', 'metrics.json'), 'utf8'));
  // The linear head is immunized on this backbone, with every first-order attacker measured or a capped lower bound.
  assert.equal(linear.verdict, 'immunized', JSON.stringify(linear.verdictReasons));
  for (const a of linear.attacks) if (a.attacker !== 'newton') assert.notEqual(a.status, 'unmeasured', `${a.attacker} on ${a.data}`);
  const allImmunized = linear.verdict === 'immunized' && deep.verdict === 'immunized';
  assert.equal(r.code, allImmunized ? 0 : 3, r.stderr);

  // What it prints: each verdict, every first-order attacker on both sides, accuracy before → after, the check, the paths.
  assert.equal(r.stdout.match(/^verdict: (IMMUNIZED|WEAK|INFEASIBLE)/gm)?.length, 2, r.stdout);
  for (const attacker of FIRST_ORDER) assert.equal(r.stdout.match(new RegExp(`^  ${attacker} +\\d+ → \\d+ steps .*\\d+ → \\d+ steps`, 'gm'))?.length, 2);
  assert.equal(r.stdout.match(/benign accuracy .*: \d+\.\d% → \d+\.\d%/g)?.length, 2);
  assert.equal(r.stdout.match(/^checkpoint check .*: passed$/gm)?.length, 2, r.stdout);
  for (const job of ['linear-head', 'last-block']) {
    for (const file of ['immunized.onnx', 'report.html']) assert.ok(r.stdout.includes(`wrote ${join(out, job, file)}`), `${job}/${file} not printed`);
  }

  const check = await readNpy(join(BUNDLED, 'check.npy'));
  const n = check.shape[0];
  const input = Float32Array.from(check.data);
  const torchFeatures = await readNpy(join(BUNDLED, 'check_features.npy'));
  const original = await run(join(BUNDLED, 'model.onnx'), input, n, ['logits']);

  // Linear head: the logits survive θ, and features_immunized is the original features times θ.
  assert.equal(linear.checkpoint.passed, true);
  assert.ok(linear.checkpoint.maxRelLogitDiff <= 1e-3);
  const immunized = await run(join(out, 'linear-head', 'immunized.onnx'), input, n, ['logits', 'features_immunized']);
  const relLogit = maxAbsDiff(immunized.logits, original.logits) / maxAbs(original.logits);
  assert.ok(relLogit <= 1e-3, `recomputed max |Δlogit| / max |logit| ${relLogit}`);
  assert.ok(relLogit <= 100 * Math.max(linear.checkpoint.maxRelLogitDiff, 1e-6), `recomputed ${relLogit}, claimed ${linear.checkpoint.maxRelLogitDiff}`);
  const theta = safetensorsMatrix(await readFile(join(out, 'linear-head', 'theta.safetensors')), 'theta');
  const d = torchFeatures.shape[1];
  assert.equal(theta.rows, d);
  const expected = new Float64Array(n * theta.cols);
  for (let i = 0; i < n; i++)
    for (let k = 0; k < d; k++) {
      const f = torchFeatures.data[i * d + k];
      for (let j = 0; j < theta.cols; j++) expected[i * theta.cols + j] += f * theta.data[k * theta.cols + j];
    }
  const relFeature = maxAbsDiff(immunized.features_immunized, expected) / maxAbs(expected);
  assert.ok(relFeature <= 1e-4, `features_immunized vs torch features · θ: relative ${relFeature}`);

  // Last block: the trained checkpoint's own head scores what metrics.json claims on the held-out images.
  assert.equal(deep.checkpoint.passed, true);
  const heldOut = await openImages(join(BUNDLED, 'benign_test.tar'), { channels: 3, height: 32, width: 32 });
  const pixels = await heldOut.read(0, heldOut.count, new Float32Array(heldOut.count * 3 * 32 * 32));
  const labels = heldOut.labels!;
  await heldOut.close();
  for (const [model, claimed] of [
    [join(BUNDLED, 'model.onnx'), deep.deep.benignAccuracy.before],
    [join(out, 'last-block', 'immunized.onnx'), deep.deep.benignAccuracy.after],
  ] as const) {
    const { logits } = await run(model, pixels, heldOut.count, ['logits']);
    assert.equal(deep.deep.benignAccuracy.rows, heldOut.count);
    assert.ok(Math.abs(argmaxAccuracy(logits, labels, 5) - claimed) <= 1 / heldOut.count, `${model}: accuracy claimed ${claimed}`);
  }

  for (const job of ['linear-head', 'last-block']) {
    const charts = chartCounts(await readFile(join(out, job, 'report.html'), 'utf8'));
    for (const family of ['summary', 'spectra', 'kappa-steps', 'attacks']) {
      assert.ok(
        (charts.get(family) ?? []).some((points) => points > 0),
        `${job}/report.html has no ${family} chart with points`,
      );
    }
    assert.ok(charts.get('attacks')!.length >= 2 * FIRST_ORDER.length, `${job}/report.html: ${charts.get('attacks')!.length} attack charts`);
  }
});
