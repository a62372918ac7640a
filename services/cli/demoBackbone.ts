/**
 * `immunize demo backbone`: the bundled small Vision Transformer (data/backbone/vit-fmnist, trained on Fashion-MNIST
 * classes 5–9) immunized against linear probing on classes 0–4, first in linear-head mode (θ on the class token),
 * then in last-block mode (its last encoder block trained). Both jobs go through runJob, as the worker's do.
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { slowdownText, type Metrics, type StepObserver } from '../../models/engine/index.js';

type AttackOutcome = Metrics['attacks'][number];
import { DirectorySink } from '../../workers/artifacts.js';
import { parseJobSpec, type ModeJobSpec } from '../../workers/jobSpec.js';
import { runJob } from '../../workers/modes.js';
import type { JobResult } from '../../workers/processorDeps.js';

export const BACKBONE_DEMO_DIR = join(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..'), 'data', 'backbone', 'vit-fmnist');

/** Gradient steps on the last block: the full demo stays near a minute on 2 cores; --quick only checks the path. */
const LAST_BLOCK_STEPS = { full: 4, quick: 2 };

export interface DemoJob {
  name: 'linear-head' | 'last-block';
  title: string;
  spec: ModeJobSpec;
}

export function backboneDemoJobs(dir: string, quick: boolean): DemoJob[] {
  const data = {
    backbone: join(dir, 'model.onnx'),
    benign: { dataset: join(dir, 'benign.tar') },
    harmful: { dataset: join(dir, 'harmful.tar') },
    benignTest: { dataset: join(dir, 'benign_test.tar') },
  };
  return [
    { name: 'linear-head', title: 'linear head: θ on the class token, written into immunized.onnx', spec: parseJobSpec({ ...data }) },
    {
      name: 'last-block',
      title: 'last block: the last encoder block trained, no separate map to strip off',
      spec: parseJobSpec({ ...data, mode: 'last-block', steps: quick ? LAST_BLOCK_STEPS.quick : LAST_BLOCK_STEPS.full }),
    },
  ];
}

const fmt = (x: number | null | undefined, digits = 3) => (x === null || x === undefined ? 'n/a' : Number(x.toPrecision(digits)).toString());
const pct = (x: number | null | undefined) => (x === null || x === undefined ? 'n/a' : `${(100 * x).toFixed(1)}%`);

interface DeepFields {
  deep?: { benignAccuracy: { before: number; after: number; rows: number } };
  checkpoint?: {
    maxTailFeatureDiff?: number;
    relTailFeatureDiff?: number;
    maxRelLogitDiff?: number | null;
    featureRoundingRatio?: number;
    sampleRows?: number;
    rows?: number;
    passed?: boolean;
    skipped?: string;
  };
  tfjsBackend?: string;
}

function attackTable(attacks: AttackOutcome[]): string[] {
  const lines = [`  ${'attacker'.padEnd(23)}${'harmful (≥ ×2 wanted)'.padEnd(34)}benign (≤ ×1.25 wanted)`];
  const side = (a: AttackOutcome | undefined) => (a ? `${a.stepsRaw} → ${a.stepsImmunized} steps ${slowdownText(a)}` : 'n/a');
  for (const attacker of [...new Set(attacks.map((a) => a.attacker))]) {
    const harmful = attacks.find((a) => a.attacker === attacker && a.data === 'harmful');
    const benign = attacks.find((a) => a.attacker === attacker && a.data === 'benign');
    const limit = attacker === 'newton' ? '  (the limit: not counted)' : '';
    lines.push(`  ${attacker.padEnd(23)}${side(harmful).padEnd(34)}${side(benign)}${limit}`);
  }
  return lines;
}

function accuracyLine(m: JobResult['metrics'] & DeepFields): string {
  if (m.deep) {
    const a = m.deep.benignAccuracy;
    return `benign accuracy of the model's own head on ${a.rows} held-out images: ${pct(a.before)} → ${pct(a.after)}`;
  }
  const q = m.benignQuality;
  return (
    `benign accuracy of the best linear probe on the ${m.rows.benign} benign images: ${pct(q.before)} → ${pct(q.after)}` +
    (q.test != null ? `; on ${m.rows.benignTest ?? 'the'} held-out images, after θ: ${pct(q.test)}` : '')
  );
}

function checkpointLine(m: JobResult['metrics'] & DeepFields): string {
  const c = m.checkpoint;
  if (!c) return 'checkpoint check: n/a';
  if (c.skipped) return `checkpoint check: skipped (${c.skipped})`;
  const verdict = c.passed ? 'passed' : 'FAILED';
  if (c.maxTailFeatureDiff !== undefined) {
    return `checkpoint check (immunized.onnx in onnxruntime vs the trained block, ${c.rows} images): max |Δfeature| ${fmt(c.maxTailFeatureDiff)}, relative ${fmt(c.relTailFeatureDiff)} (≤ 1e-4): ${verdict}`;
  }
  return (
    `checkpoint check (immunized.onnx vs the original, ${c.sampleRows} images): max |Δlogit| / max |logit| ${fmt(c.maxRelLogitDiff)} (≤ 1e-3), ` +
    `features_immunized vs features·θ at ${fmt(c.featureRoundingRatio)}× the float32 rounding bound: ${verdict}`
  );
}

/** The lines the demo prints for one finished job. */
export function demoJobLines(job: DemoJob, result: JobResult, out: string): string[] {
  const m = result.metrics as JobResult['metrics'] & DeepFields;
  const lines = [
    `== ${job.title}`,
    `verdict: ${m.verdict.toUpperCase()}   harmful κ ratio ${fmt(m.harmfulRatio)} (≥ 2 wanted), benign κ ratio ${fmt(m.benignRatio)} (≤ 1 wanted), RIR ${fmt(m.rir)}`,
    ...m.verdictReasons.map((r) => `  - ${r}`),
    ...(m.verdictNotes ?? []).map((n) => `  note: ${n}`),
    'linear-probing attackers, steps to target on raw → immunized features (≥: a lower bound from a capped run):',
    ...attackTable(m.attacks),
    accuracyLine(m),
    checkpointLine(m),
    `engine time ${m.timings.engineSeconds.toFixed(1)} s${m.tfjsBackend ? ` (tfjs backend ${m.tfjsBackend})` : ''}`,
    ...['immunized.onnx', 'report.html'].filter((n) => result.artifacts.some((a) => a.name === n)).map((n) => `wrote ${join(out, n)}`),
  ];
  return lines;
}

export interface BackboneDemoOptions {
  out: string;
  quick: boolean;
  dir?: string;
  observe?: StepObserver;
  print: (line: string) => void;
}

/** Runs both jobs in turn; the results come back in the order of backboneDemoJobs. */
export async function runBackboneDemo(opts: BackboneDemoOptions): Promise<Array<{ job: DemoJob; result: JobResult; out: string }>> {
  const dir = opts.dir ?? BACKBONE_DEMO_DIR;
  const done: Array<{ job: DemoJob; result: JobResult; out: string }> = [];
  opts.print(
    `backbone demo: ${join(dir, 'model.onnx')} (a torchvision VisionTransformer trained on Fashion-MNIST classes 5–9); ` +
      'benign: classes 5–9, harmful: classes 0–4',
  );
  for (const job of backboneDemoJobs(dir, opts.quick)) {
    const out = join(opts.out, job.name);
    const result = await runJob(job.spec, { sink: new DirectorySink(out), observe: opts.observe });
    for (const line of demoJobLines(job, result, out)) opts.print(line);
    done.push({ job, result, out });
  }
  return done;
}

/** The CLI command: prints each job's lines (or, with --json, one result object per job) and returns the exit code. */
export async function backboneDemoCommand(cmd: { out?: string; quick?: boolean; json: boolean }, observe?: StepObserver): Promise<number> {
  const write = (line: string) => process.stdout.write(line + '\n');
  const runs = await runBackboneDemo({ out: cmd.out!, quick: cmd.quick ?? false, observe, print: cmd.json ? () => undefined : write });
  if (cmd.json) {
    for (const { job, result, out } of runs) {
      const m = result.metrics;
      write(
        JSON.stringify({
          type: 'result',
          job: job.name,
          out,
          verdict: m.verdict,
          rir: m.rir,
          benignRatio: m.benignRatio,
          harmfulRatio: m.harmfulRatio,
          artifacts: result.artifacts,
        }),
      );
    }
  }
  const weak = runs.filter((r) => r.result.metrics.verdict !== 'immunized');
  for (const { job, result } of weak) {
    process.stderr.write(`WARNING: ${job.name}: verdict is ${result.metrics.verdict.toUpperCase()} (${result.metrics.verdictReasons.join('; ')})\n`);
  }
  return weak.length > 0 ? 3 : 0;
}
