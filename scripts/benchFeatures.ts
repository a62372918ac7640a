/**
 * `npm run bench:features`: feature throughput of ResNet-18- and ViT-B/16-sized graphs (random weights, built by
 * scripts/fixtures) on the CPU, end to end — reading the images, inference, streaming into K — against bare
 * onnxruntime-node on the same graph and against PyTorch's CPU inference of the same architecture when PyTorch is
 * installed (scripts/benchFeaturesTorch.py); otherwise against reference figures measured on a 2-core machine of the same class.
 * Then the time split between feature extraction and the engine in a full job.
 *
 * Options: --threads N (default 2) --batch N (default 32) --rounds N (default 3, best taken) --quick
 * --models resnet18,vit_b_16 --json
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import sharp from 'sharp';
import { Backbone } from '../models/backbones/index.js';
import { encodeNpy } from '../models/io/index.js';
import { DirectorySink } from '../workers/artifacts.js';
import { runJob } from '../workers/modes.js';
import type { LinearJobMetrics } from '../workers/processorDeps.js';
import { parseJobSpec } from '../workers/jobSpec.js';
import { resnetFixture, type BackboneFixture } from './fixtures/onnxResnet.js';
import { vitFixture } from './fixtures/onnxVit.js';
import { findTorchPython } from './torchPython.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Measured on a 2-core machine of the reference class at batch 32 and 2 threads (PyTorch 1.13 with oneDNN; onnxruntime-node). */
const REFERENCE_FIGURES: Record<string, { pytorch: number; bareOrt: number; wanted: number }> = {
  resnet18: { pytorch: 43, bareOrt: 87, wanted: 1.8 },
  vit_b_16: { pytorch: 5.5, bareOrt: 7.0, wanted: 1.2 },
};

interface ModelResult {
  model: string;
  featureDim: number;
  images: number;
  bareOrt: number;
  npy: { imagesPerSecond: number; readWait: number; inference: number; accumulate: number };
  jpeg: { imagesPerSecond: number; readWait: number; inference: number; accumulate: number };
  pytorch: { imagesPerSecond: number; source: 'measured' } | { imagesPerSecond: number; source: 'reference figures'; note: string };
  ratio: number;
  ratioKind: 'measured' | 'projected';
  wanted: number;
}

const fmt = (x: number, d = 1) => x.toFixed(d);

async function jpegFolder(dir: string, count: number): Promise<string> {
  // Photo-like content (smooth gradients plus grain) at a typical ImageNet size, quality 90.
  await mkdir(dir, { recursive: true });
  const width = 500;
  const height = 375;
  for (let i = 0; i < count; i++) {
    const px = Buffer.alloc(width * height * 3);
    let s = (i + 1) * 2654435761;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        s = (s * 1103515245 + 12345) >>> 0;
        const grain = (s >>> 24) / 16;
        const o = (y * width + x) * 3;
        px[o] = (x * 255) / width + grain;
        px[o + 1] = (y * 255) / height + grain;
        px[o + 2] = ((x + y + i * 37) % 256) / 2 + grain;
      }
    }
    await writeFile(
      join(dir, `${String(i).padStart(5, '0')}.jpg`),
      await sharp(px, { raw: { width, height, channels: 3 } })
        .jpeg({ quality: 90 })
        .toBuffer(),
    );
  }
  return dir;
}

type Throughput = { imagesPerSecond: number; readWait: number; inference: number; accumulate: number };

/** Times inference alone on one fixed batch, `reps` batches per round; the best round counts. */
async function bareOrt(bytes: Uint8Array, threads: number, batch: number) {
  const session = await ort.InferenceSession.create(bytes, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionProviders: ['cpu'],
  });
  const x = new Float32Array(batch * 3 * 224 * 224);
  for (let i = 0; i < x.length; i++) x[i] = Math.sin(i);
  const feed = { [session.inputNames[0]]: new ort.Tensor('float32', x, [batch, 3, 224, 224]) };
  await session.run(feed);
  return {
    async round(reps: number): Promise<number> {
      const t = performance.now();
      for (let r = 0; r < reps; r++) await session.run(feed);
      return (batch * reps) / ((performance.now() - t) / 1000);
    },
    close: () => session.release(),
  };
}

/** The job's pipeline: open the images, extract in batches into K; one warm-up batch first. */
async function pipeline(model: string, threads: number, batch: number) {
  const backbone = await Backbone.load(model, { threads, executionProvider: 'cpu' });
  let warmed = false;
  return {
    async round(images: string): Promise<Throughput> {
      if (!warmed) {
        const warm = await backbone.openImages(images, { limit: batch });
        await backbone.extract(warm, { batchSize: batch });
        await warm.close();
        warmed = true;
      }
      const source = await backbone.openImages(images);
      const ex = await backbone.extract(source, { batchSize: batch });
      await source.close();
      const s = ex.seconds;
      return { imagesPerSecond: ex.rows / s.total, readWait: s.readWait / s.total, inference: s.inference / s.total, accumulate: s.accumulate / s.total };
    },
    close: () => backbone.close(),
  };
}

const best = (a: Throughput | null, b: Throughput) => (a && a.imagesPerSecond >= b.imagesPerSecond ? a : b);

async function pytorch(model: string, threads: number, batch: number, reps: number): Promise<number | null> {
  const script = join(ROOT, 'scripts', 'benchFeaturesTorch.py');
  const python = (await findTorchPython()).found?.python;
  if (!python) return null;
  return new Promise((done) => {
    execFile(
      python,
      [script, '--model', model, '--threads', String(threads), '--batch', String(batch), '--reps', String(reps)],
      { timeout: 600_000 },
      (err, stdout) => {
        if (err) return done(null);
        const m = /images_per_second=([0-9.]+)/.exec(stdout);
        done(m ? Number(m[1]) : null);
      },
    );
  });
}

const USAGE = `usage: npm run bench:features -- [--threads N] [--batch N] [--models resnet18,vit_b_16] [--rounds N] [--quick] [--json]

  --threads  onnxruntime intra-op threads (default 2)
  --batch    images per inference batch (default 32)
  --models   which graphs to time (default resnet18,vit_b_16)
  --rounds   rounds per measurement, the best counts (default 3, 1 with --quick)
  --quick    fewer images and rounds
  --json     print one JSON document instead of the text`;

class UsageError extends Error {}

function options() {
  try {
    return parseArgs({
      options: {
        threads: { type: 'string', default: '2' },
        batch: { type: 'string', default: '32' },
        models: { type: 'string', default: 'resnet18,vit_b_16' },
        rounds: { type: 'string' },
        quick: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
    }).values;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

async function main(): Promise<void> {
  const values = options();
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return;
  }
  const threads = Number(values.threads);
  const batch = Number(values.batch);
  const quick = values.quick!;
  const rounds = Number(values.rounds ?? (quick ? 1 : 3));
  const say = (line: string) => {
    if (!values.json) process.stdout.write(line + '\n');
  };
  const progress = (line: string) => process.stderr.isTTY && process.stderr.write(`[bench:features] ${line}\n`);
  const tmp = await mkdtemp(join(os.tmpdir(), 'immunize-bench-features-'));
  const results: ModelResult[] = [];
  try {
    say(
      `CPU ${os.cpus()[0]?.model ?? 'unknown'}, ${os.availableParallelism()} logical CPUs, load average ${os.loadavg()[0].toFixed(2)}; node ${process.version}; onnxruntime-node ${ort.env.versions.node}; CPU execution provider`,
    );
    say(
      `${threads} intra-op threads, batch ${batch}, best of ${rounds} round(s); images: 500×375 JPEG (quality 90) → resize 256, centre crop 224, ImageNet normalization`,
    );
    for (const name of values.models!.split(',')) {
      const ref = REFERENCE_FIGURES[name];
      if (!ref) throw new Error(`unknown model ${name}; expected resnet18 or vit_b_16`);
      progress(`${name}: building the graph`);
      const fx: BackboneFixture = name === 'resnet18' ? resnetFixture() : vitFixture();
      const modelPath = join(tmp, `${name}.onnx`);
      await writeFile(modelPath, fx.model.bytes);
      const count = ((name === 'resnet18' ? 6 : 2) * batch) / (quick ? 2 : 1);
      progress(`${name}: ${count} images`);
      const jpegs = await jpegFolder(join(tmp, `${name}-jpeg`), count);
      const npy = join(tmp, `${name}.npy`);
      const pixels = new Float32Array(count * 3 * 224 * 224);
      for (let i = 0; i < pixels.length; i++) pixels[i] = Math.cos(i * 0.001);
      await writeFile(npy, encodeNpy({ shape: [count, 3, 224, 224], data: pixels }, 'f4'));
      const reps = count / batch;
      // Rounds interleave the three measurements and the best of each counts: other processes on the machine
      // can only slow a round down.
      const bareRunner = await bareOrt(fx.model.bytes, threads, batch);
      const ours = await pipeline(modelPath, threads, batch);
      let bare = 0;
      let fromNpy: Throughput | null = null;
      let fromJpeg: Throughput | null = null;
      for (let round = 0; round < rounds; round++) {
        progress(`${name}: round ${round + 1}/${rounds}`);
        bare = Math.max(bare, await bareRunner.round(reps));
        fromNpy = best(fromNpy, await ours.round(npy));
        fromJpeg = best(fromJpeg, await ours.round(jpegs));
      }
      await bareRunner.close();
      await ours.close();
      if (!fromNpy || !fromJpeg) throw new Error('no rounds ran');
      progress(`${name}: PyTorch`);
      const torch = await pytorch(name, threads, batch, Math.max(2, reps));
      const keep = fromJpeg.imagesPerSecond / bare;
      const result: ModelResult = {
        model: name,
        featureDim: fx.dim,
        images: count,
        bareOrt: bare,
        npy: fromNpy,
        jpeg: fromJpeg,
        pytorch:
          torch !== null
            ? { imagesPerSecond: torch, source: 'measured' }
            : {
                imagesPerSecond: ref.pytorch,
                source: 'reference figures',
                note: `PyTorch not installed here; reference machine: PyTorch ${ref.pytorch}, bare onnxruntime-node ${ref.bareOrt} images/s`,
              },
        ratio: torch !== null ? fromJpeg.imagesPerSecond / torch : keep * (ref.bareOrt / ref.pytorch),
        ratioKind: torch !== null ? 'measured' : 'projected',
        wanted: ref.wanted,
      };
      results.push(result);
      const share = (s: Throughput) => `read wait ${fmt(100 * s.readWait)}%, inference ${fmt(100 * s.inference)}%, into K ${fmt(100 * s.accumulate)}%`;
      say('');
      say(`${name} (features ${fx.dim} wide, ${count} images)`);
      say(`  bare onnxruntime-node (inference only)      ${fmt(bare).padStart(7)} images/s`);
      say(`  pipeline, .npy input                         ${fmt(fromNpy.imagesPerSecond).padStart(7)} images/s  (${share(fromNpy)})`);
      say(
        `  pipeline, JPEG folder (end to end)           ${fmt(fromJpeg.imagesPerSecond).padStart(7)} images/s  (${share(fromJpeg)}); keeps ${fmt(100 * keep)}% of bare`,
      );
      if (torch !== null) say(`  PyTorch CPU, same architecture               ${fmt(torch).padStart(7)} images/s (measured)`);
      else say(`  PyTorch CPU: ${result.pytorch.source === 'reference figures' ? result.pytorch.note : ''}`);
      say(
        `  ratio to PyTorch: ${fmt(result.ratio, 2)}× ${result.ratioKind === 'measured' ? '(measured)' : `(projected: ${fmt(100 * keep)}% of bare here × ${ref.bareOrt}/${ref.pytorch} there)`}; wanted ≥ ${ref.wanted}× → ${result.ratio >= ref.wanted ? 'met' : 'NOT met'}`,
      );
      await rm(npy);
    }

    progress('full job');
    const jobModel = join(tmp, 'resnet18.onnx');
    const fx = resnetFixture();
    await writeFile(jobModel, fx.model.bytes);
    const perSide = quick ? 64 : 128;
    const benign = await jpegFolder(join(tmp, 'job-benign'), perSide);
    const harmful = await jpegFolder(join(tmp, 'job-harmful'), perSide);
    const spec = parseJobSpec({ backbone: jobModel, benign: { dataset: benign }, harmful: { dataset: harmful } });
    const t = performance.now();
    const job = await runJob(spec, { sink: new DirectorySink(join(tmp, 'job-out')) });
    const wall = (performance.now() - t) / 1000;
    const linear = job.metrics as LinearJobMetrics;
    const featureSeconds = linear.features!.seconds;
    const engineSeconds = linear.timings.engineSeconds;
    const checkSeconds = 'seconds' in linear.checkpoint! ? linear.checkpoint.seconds : 0;
    say('');
    say(
      `full job: ResNet-18-sized backbone, ${perSide} + ${perSide} JPEG images, method ${job.metrics.method}, D=${job.metrics.dim}, default onnxruntime threads`,
    );
    say(
      `  wall ${fmt(wall, 2)} s: features ${fmt(featureSeconds, 2)} s (${fmt((100 * featureSeconds) / wall)}%), engine ${fmt(engineSeconds, 2)} s (${fmt((100 * engineSeconds) / wall)}%), ` +
        `checkpoint export + check ${fmt(checkSeconds, 2)} s, the rest (loading, artifacts) ${fmt(wall - featureSeconds - engineSeconds - checkSeconds, 2)} s`,
    );
    if (values.json) {
      process.stdout.write(
        JSON.stringify({ threads, batch, results, job: { wall, featureSeconds, engineSeconds, checkSeconds, imagesPerSide: perSide } }, null, 2) + '\n',
      );
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

main().catch((err) => {
  if (err instanceof UsageError) {
    process.stderr.write(`bench:features: ${err.message}\n${USAGE}\n`);
    process.exitCode = 2;
    return;
  }
  process.stderr.write(`bench:features: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
