/**
 * npm run bench:deep — one last-block training step (forward + backward through the tail to its parameters, batch
 * 64, float32) on our native tfjs backend, beside PyTorch's on the same tails when a Python with torch is found:
 * ResNet-18 layer4 (+pool+fc) and ViT-B/16 block 11 (+LayerNorm+head). Our step is split between the native sgemm
 * kernels, the rest of tfjs and (per job step) the engine's spectral part, and set against the time the tail's GEMM
 * work takes at the sgemm rate measured in the same run.
 */
import { execFile } from 'node:child_process';
import { loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as TF from '@tensorflow/tfjs';
import { OnnxGraph } from '../models/backbones/graph.js';
import { selectBackend, type TfBackend } from '../models/deep/backend.js';
import { GEMM_KERNELS, kernelProfile, resetKernelProfile } from '../models/deep/nativeBackend.js';
import { spectralTerm } from '../models/deep/spectral.js';
import { planTail } from '../models/deep/split.js';
import { TailModel } from '../models/deep/tail.js';
import { tailShapes } from '../models/deep/trunk.js';
import { gaussian } from '../models/engine/index.js';
import { coreSelection, getThreads } from '../models/linalg/index.js';
import { batchMatMul, keepFreedMemory } from '../models/linalg/tfKernels.js';
import { resnetFixture } from './fixtures/onnxResnet.js';
import { vitFixture } from './fixtures/onnxVit.js';
import { findTorchPython, type TorchPython } from './torchPython.js';
import { handleUsage } from './usage.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BATCH = 64;
const THREADS = 2;
/** Targets: our step against PyTorch's, and against the GEMM ceiling where PyTorch is out of GEMM's reach. */
const TORCH_TARGET = 1.5;
const CEILING_TARGET = 1.2;

const say = (line = '') => process.stdout.write(line + '\n');
const sec = (s: number) => `${s.toFixed(3)} s`;
const gflops = (f: number, s: number) => `${(f / s / 1e9).toFixed(1)} GFLOP/s`;

interface TailCase {
  label: string;
  torchName: 'resnet18_layer4' | 'vit_b_16_block11';
  bytes: () => Uint8Array;
  /** The GEMM that dominates the tail (m × k times k × n), for the sgemm rate. */
  gemm: [number, number, number];
  reps: number;
}

const TAILS: TailCase[] = [
  {
    label: 'ResNet-18 layer4 (+pool+fc)',
    torchName: 'resnet18_layer4',
    bytes: () => resnetFixture({ classes: 1000, batchNorm: 'folded' }).model.bytes,
    // layer4's 3×3 512→512 convolution at 7×7 over the batch: (64·49) × (9·512) times (9·512) × 512.
    gemm: [BATCH * 49, 9 * 512, 512],
    reps: 3,
  },
  {
    label: 'ViT-B/16 block 11 (+LayerNorm+head)',
    torchName: 'vit_b_16_block11',
    bytes: () => vitFixture({ imageSize: 224, patch: 16, hidden: 768, layers: 2, heads: 12, mlp: 3072, classes: 1000 }).model.bytes,
    // The MLP's first matrix over every token of the batch: (64·197) × 768 times 768 × 3072.
    gemm: [BATCH * 197, 768, 3072],
    reps: 2,
  },
];

function randomFloats(n: number, seed: number): Float32Array {
  const next = gaussian(seed);
  return Float32Array.from({ length: n }, () => next());
}

/** sgemm's rate on one m×k by k×n product through the addon, best of three after a warm-up. */
function sgemmRate([m, k, n]: [number, number, number]): number {
  const a = randomFloats(m * k, 1);
  const b = randomFloats(k * n, 2);
  const dims = { batchA: 1, batchB: 1, m, k, n, transposeA: false, transposeB: false };
  batchMatMul(a, b, dims);
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const start = performance.now();
    batchMatMul(a, b, dims);
    best = Math.min(best, (performance.now() - start) / 1000);
  }
  return (2 * m * k * n) / best;
}

interface OurStep {
  seconds: number;
  heavySeconds: number;
  heavyFlops: number;
  /** The rest of tfjs's kernels by time, largest first. */
  others: Array<[string, number]>;
  parameters: number;
  featureDim: number;
  cutShape: readonly number[];
}

async function ourStep(backend: TfBackend, t: TailCase): Promise<OurStep> {
  const tf = backend.tf;
  const graph = OnnxGraph.parse(t.bytes(), `${t.torchName}.onnx`);
  const plan = planTail(graph);
  const shapes = await tailShapes(graph, plan, randomFloats(3 * 224 * 224, 3), [1, 3, 224, 224], { executionProvider: 'cpu' });
  const cutShape = shapes.get(plan.cut)!.slice(1);
  const tail = new TailModel(tf, plan);
  const x = tf.tensor(randomFloats(BATCH * cutShape.reduce((a, b) => a * b, 1), 4), [BATCH, ...cutShape]);
  const vars = [...tail.variables.values()];
  let featureDim = 0;
  const step = (): number => {
    const start = performance.now();
    tf.tidy(() => {
      const { value, grads } = tf.variableGrads(() => {
        const { features, logits } = tail.forward(x);
        featureDim = features.shape[1] as number;
        const weights = tf.tensor(randomFloats(logits.size, 5), logits.shape);
        return tf.sum(tf.mul(logits, weights)) as TF.Scalar;
      }, vars);
      value.dataSync();
      for (const g of Object.values(grads)) g.dataSync();
    });
    return (performance.now() - start) / 1000;
  };
  try {
    step();
    let best: { seconds: number; profile: ReturnType<typeof kernelProfile> } | null = null;
    for (let i = 0; i < t.reps; i++) {
      resetKernelProfile();
      const seconds = step();
      if (!best || seconds < best.seconds) best = { seconds, profile: kernelProfile() };
    }
    const { seconds, profile } = best!;
    const heavy = new Set<string>(GEMM_KERNELS);
    let heavySeconds = 0;
    let heavyFlops = 0;
    const others: Array<[string, number]> = [];
    for (const [name, tally] of profile) {
      if (heavy.has(name)) {
        heavySeconds += tally.seconds;
        heavyFlops += tally.flops;
        if (tally.fallbacks > 0) say(`  note: ${name} fell back to the cpu kernel ${tally.fallbacks} times`);
      } else others.push([name, tally.seconds]);
    }
    others.sort((a, b) => b[1] - a[1]);
    return { seconds, heavySeconds, heavyFlops, others, parameters: tail.parameterCount(), featureDim, cutShape };
  } finally {
    x.dispose();
    tail.dispose();
  }
}

/** One spectral term (S = FᵀF in float64, its eigenpairs, the gradient) at batch 64: a job step takes two. */
function spectralSeconds(dim: number): number {
  const next = gaussian(6);
  const F = Float32Array.from({ length: BATCH * dim }, () => Math.abs(next()));
  spectralTerm(F, BATCH, dim, 'ill');
  const start = performance.now();
  for (let i = 0; i < 3; i++) spectralTerm(F, BATCH, dim, i % 2 === 0 ? 'ill' : 'well');
  return (performance.now() - start) / 3000;
}

function torchStep(py: TorchPython, t: TailCase): Promise<{ seconds: number } | { error: string }> {
  const script = join(ROOT, 'scripts', 'benchDeepTorch.py');
  const args = [script, '--tail', t.torchName, '--threads', String(THREADS), '--batch', String(BATCH), '--reps', String(t.reps)];
  return new Promise((done) => {
    execFile(py.python, args, { timeout: 900_000 }, (err, stdout, stderr) => {
      const m = /seconds_per_step=([0-9.]+)/.exec(stdout);
      if (m) return done({ seconds: Number(m[1]) });
      done({ error: (stderr || (err ? err.message : 'no figure printed')).trim().split('\n').pop() ?? 'failed' });
    });
  });
}

const USAGE = `usage: npm run bench:deep
  one last-block training step (batch ${BATCH}, float32, ${THREADS} threads) on ResNet-18 layer4 and ViT-B/16 block 11:
  our native tfjs backend beside PyTorch (when a Python with torch is found), the split of our step, and the time
  the tail's GEMM work takes at the sgemm rate measured in the same run`;

async function main(): Promise<void> {
  if (!handleUsage(process.argv.slice(2), {}, USAGE)) return;
  const core = coreSelection();
  say(
    `deep mode step, batch ${BATCH}, float32; OpenBLAS ${core.core} (OPENBLAS_CORETYPE ${core.requested ?? 'unset'}, ${core.source}), ${getThreads()} threads; load average at start ${loadavg()[0].toFixed(1)}`,
  );
  if (getThreads() !== THREADS) say(`  note: OpenBLAS runs ${getThreads()} threads here, not ${THREADS}; PyTorch is given ${THREADS}`);
  const backend = await selectBackend({ only: ['native'] });
  // As a last-block job does while it trains.
  keepFreedMemory();
  const py = await findTorchPython();
  say(
    py.found
      ? `PyTorch: ${py.found.torch} (torchvision ${py.found.torchvision}) via ${py.found.python}`
      : `PyTorch: not found (tried ${py.tried.join(', ')}); its side is unmeasured`,
  );
  say();

  for (const t of TAILS) {
    say(`${t.label}`);
    const before = sgemmRate(t.gemm);
    const ours = await ourStep(backend, t);
    // Measured on both sides of our step, the better one counts: on a shared machine a burst from another process
    // would otherwise lower the ceiling.
    const rate = Math.max(before, sgemmRate(t.gemm));
    say(`  sgemm ${t.gemm.join('×')}: ${(rate / 1e9).toFixed(1)} GFLOP/s (this run, best of 6)`);
    const spectral = spectralSeconds(ours.featureDim);
    const rest = ours.seconds - ours.heavySeconds;
    const ceiling = ours.heavyFlops / rate;
    say(
      `  cut ${BATCH}×${ours.cutShape.join('×')}, ${(ours.parameters / 1e6).toFixed(2)} M parameters, ${(ours.heavyFlops / 1e9).toFixed(1)} GFLOP of GEMM per step`,
    );
    say(`  ours (native):  ${sec(ours.seconds)} per step`);
    say(`    native sgemm kernels ${sec(ours.heavySeconds)} (${gflops(ours.heavyFlops, ours.heavySeconds)}), rest of tfjs ${sec(rest)}`);
    say(
      `    largest of the rest: ${ours.others
        .slice(0, 5)
        .map(([k, s]) => `${k} ${s.toFixed(3)}`)
        .join(', ')}`,
    );
    say(`    engine spectral part: ${sec(spectral)} per term (D=${ours.featureDim}, float64), ${sec(2 * spectral)} in a job step (two terms)`);
    say(
      `  GEMM ceiling: ${sec(ceiling)} (the step's GEMM FLOPs at the sgemm rate above); ours / ceiling = ${(ours.seconds / ceiling).toFixed(2)}× (target ≤ ${CEILING_TARGET}×: ${ours.seconds / ceiling <= CEILING_TARGET ? 'met' : 'NOT met'})`,
    );
    if (!py.found) {
      say(`  PyTorch: unmeasured (no Python with torch); ratio unmeasured`);
    } else {
      const torch = await torchStep(py.found, t);
      if ('error' in torch) say(`  PyTorch: failed (${torch.error}); ratio unmeasured`);
      else {
        const ratio = ours.seconds / torch.seconds;
        say(`  PyTorch ${py.found.torch}: ${sec(torch.seconds)} per step (${gflops(ours.heavyFlops, torch.seconds)} on the same GEMM work)`);
        say(`  ours / PyTorch = ${ratio.toFixed(2)}× (target ≤ ${TORCH_TARGET}×: ${ratio <= TORCH_TARGET ? 'met' : 'NOT met'})`);
        if (ratio > TORCH_TARGET && torch.seconds < ceiling) {
          say(
            `  PyTorch is ${(ceiling / torch.seconds).toFixed(2)}× faster than this sgemm could do the same GEMM work: it does less arithmetic (Winograd) or runs faster kernels`,
          );
        }
      }
    }
    say();
  }
  say(`load average at the end ${loadavg()[0].toFixed(1)} (figures taken on a busy machine are slower on both sides)`);
}

main().catch((err) => {
  process.stderr.write(`bench:deep failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
