/**
 * npm run bench:deep — last-block step times on the tfjs backends available here (no tfjs-node): the small test
 * fixtures measured over a few real steps, and a ResNet-18-sized layer4 tail (batch 64), whose step on the cpu
 * backend takes far too long to run, extrapolated from one timed conv forward+backward of its size.
 */
import type * as TF from '@tensorflow/tfjs';
import { OnnxGraph } from '../models/backbones/graph.js';
import { selectBackend, type TfBackend } from '../models/deep/backend.js';
import { estimateStep, measureRate, tailFlops, describeSeconds } from '../models/deep/estimate.js';
import { spectralTerm } from '../models/deep/spectral.js';
import { MemoryCut } from '../models/deep/cutStore.js';
import { planTail } from '../models/deep/split.js';
import { TailModel } from '../models/deep/tail.js';
import { trainTail, TRAIN_DEFAULTS } from '../models/deep/train.js';
import { Trunk, tailShapes } from '../models/deep/trunk.js';
import { gaussian } from '../models/engine/index.js';
import { resnetFixture } from './fixtures/onnxResnet.js';
import { vitFixture } from './fixtures/onnxVit.js';
import { handleUsage } from './usage.js';

const say = (line = '') => process.stdout.write(line + '\n');
const ms = (s: number) => `${(s * 1000).toFixed(1)} ms`;

function images(n: number, size: number, seed: number, shift = 0): Float32Array {
  const next = gaussian(seed);
  return Float32Array.from({ length: n * 3 * size * size }, () => next() + shift);
}

async function fixtureSteps(name: string, bytes: Uint8Array, size: number, backend: TfBackend, steps: number): Promise<void> {
  const graph = OnnxGraph.parse(bytes, name);
  const plan = planTail(graph);
  const trunk = await Trunk.open(graph, plan, { executionProvider: 'cpu' });
  const n = 128;
  try {
    const run = async (seed: number, shift: number) => {
      const out = await trunk.runBatch(images(n, size, seed, shift), [n, 3, size, size]);
      const shape = [...out.cut.dims.slice(1)];
      const cut = new MemoryCut(
        n,
        shape.reduce((a, b) => a * b, 1),
      );
      cut.append(out.cut.data as Float32Array);
      return { cut, rows: n, cutShape: shape };
    };
    const benign = await run(1, 0);
    const harmful = await run(2, 0.5);
    const tail = new TailModel(backend.tf, plan);
    try {
      const r = trainTail(tail, harmful, benign, { ...TRAIN_DEFAULTS, steps, batchSize: 64, evalRows: 128 });
      const per = (s: number) => ms(s / steps);
      say(
        `${name.padEnd(26)} ${backend.name.padEnd(5)} step ${per(r.seconds.total).padStart(10)}   tfjs ${per(r.seconds.tfjs).padStart(10)}   engine spectral ${per(r.seconds.spectral).padStart(8)}   data ${per(r.seconds.data).padStart(8)}   (${steps} steps, batch 64, ${tail.parameterCount()} parameters)`,
      );
    } finally {
      tail.dispose();
    }
  } finally {
    await trunk.close();
  }
}

function timeConv(backend: TfBackend, batch: number, spatial: number, cin: number, cout: number): number {
  const tf = backend.tf;
  return tf.tidy(() => {
    const x = tf.randomNormal([batch, spatial, spatial, cin]) as TF.Tensor4D;
    const w = tf.randomNormal([3, 3, cin, cout]) as TF.Tensor4D;
    const start = performance.now();
    const g = tf.grads((a: TF.Tensor, b: TF.Tensor) => tf.sum(tf.conv2d(a as TF.Tensor4D, b as TF.Tensor4D, 1, 'same')))([x, w]);
    g.forEach((t) => t.dataSync());
    return (performance.now() - start) / 1000;
  });
}

async function resnet18Tail(cpu: TfBackend): Promise<void> {
  say();
  say('ResNet-18-sized layer4 tail (224×224 input, cut 256×14×14 → features 512, batch 64), cpu backend:');
  const fx = resnetFixture({ classes: 1000 });
  const graph = OnnxGraph.parse(fx.model.bytes, 'resnet18.onnx');
  const plan = planTail(graph);
  const shapes = await tailShapes(graph, plan, images(1, 224, 3), [1, 3, 224, 224], { executionProvider: 'cpu' });
  const flops = tailFlops(plan, shapes);
  say(`  cut ${plan.cut} [${shapes.get(plan.cut)?.join('×')}], ${plan.description}`);
  say(`  tail forward: ${(flops / 1e9).toFixed(2)} GFLOP per image`);
  // One conv of layer4's main size (3×3, 512→512 at 7×7), forward and both gradients, at batch 1: a batch-64 one
  // does not finish in minutes on this backend, so the step is extrapolated from this rate.
  timeConv(cpu, 1, 7, 64, 64);
  const seconds = timeConv(cpu, 1, 7, 512, 512);
  const convFlops = 3 * 2 * 49 * 512 * 512 * 9;
  const rate = convFlops / seconds;
  say(`  measured: one 3×3 512→512 conv on 7×7, batch 1, forward+backward: ${ms(seconds)} → ${(rate / 1e9).toFixed(2)} GFLOP/s`);
  const est = estimateStep(flops, 64, TRAIN_DEFAULTS.evalRows, { rate, kernel: 'layer4 conv' });
  say(
    `  extrapolated step (3 passes × forward+backward at batch 64, plus ${TRAIN_DEFAULTS.evalRows}+${TRAIN_DEFAULTS.evalRows} evaluation forwards): ${(est.flopsPerStep / 1e9).toFixed(0)} GFLOP → ${describeSeconds(est.stepSeconds)} per step, ${describeSeconds(20 * est.stepSeconds)} for 20 steps (not run)`,
  );
  const small = measureRate(cpu, true);
  say(
    `  the job's own pre-start probe (${small.kernel}): ${(small.rate / 1e9).toFixed(2)} GFLOP/s → estimate ${describeSeconds(estimateStep(flops, 64, TRAIN_DEFAULTS.evalRows, small).stepSeconds)} per step`,
  );

  // The other two shares of a step at this size, measured directly.
  const next = gaussian(5);
  const F = Float32Array.from({ length: 64 * 512 }, () => Math.abs(next()));
  let t = performance.now();
  for (let i = 0; i < 3; i++) spectralTerm(F, 64, 512, i % 2 === 0 ? 'ill' : 'well');
  const spectral = (performance.now() - t) / 3000;
  const cut = new Float32Array(64 * 256 * 14 * 14);
  t = performance.now();
  for (let i = 0; i < 3; i++) {
    const x = cpu.tf.tensor(cut, [64, 256, 14, 14]);
    const f = cpu.tf.tensor(F, [64, 512]);
    f.dataSync();
    x.dispose();
    f.dispose();
  }
  const data = (performance.now() - t) / 3000;
  say(
    `  split per step: tfjs ≈ ${describeSeconds(est.stepSeconds)}, engine spectral ${ms(2 * spectral)} (two terms, D=512, float64), data movement ${ms(2 * data)} (two cut batches in, two feature batches out)`,
  );
}

const USAGE = `usage: npm run bench:deep
  prints deep-mode step times for the test fixtures (cpu and wasm backends) and a ResNet-18-sized layer4 tail`;

async function main(): Promise<void> {
  if (!handleUsage(process.argv.slice(2), {}, USAGE)) return;
  say('deep mode (last block) step times; tfjs-node / tfjs-node-gpu are not installed here');
  const cpu = await selectBackend({ only: ['cpu'] });
  const small = { imageSize: 32, classes: 10 };
  const resnet = resnetFixture({ ...small, widths: [8, 16, 24, 48], blocks: [1, 1, 1, 1] });
  const vit = vitFixture({ ...small, patch: 8, hidden: 32, layers: 2, heads: 4, mlp: 64 });
  await fixtureSteps('test ResNet fixture', resnet.model.bytes, 32, cpu, 5);
  await fixtureSteps('test ViT fixture', vit.model.bytes, 32, cpu, 5);
  const wasm = await selectBackend({ only: ['wasm'], kernels: ['BatchMatMul'] });
  await fixtureSteps('test ViT fixture', vit.model.bytes, 32, wasm, 5);
  await selectBackend({ only: ['cpu'] });
  await resnet18Tail(cpu);
}

main().catch((err) => {
  process.stderr.write(`bench:deep failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
