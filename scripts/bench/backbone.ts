/**
 * The `backbone` bench section: the default linear-head job on a real trained backbone (a torchvision ResNet-18
 * trained on Fashion-MNIST classes 5–9 by scripts/fixtures/trainBackbone.py), run through the processor the CLI's
 * `immunize run --backbone …` calls, and reported from the metrics.json it writes.
 */
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSession, loadOrt } from '../../models/backbones/runtime.js';
import { readNpy, readNpyLabels } from '../../models/io/index.js';
import { DirectorySink } from '../../workers/artifacts.js';
import { runJob } from '../../workers/modes.js';
import { parseJobSpec } from '../../workers/jobSpec.js';
import { heading, num, seconds, table } from './format.js';

const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const DEFAULT_BACKBONE_DIR = join(PACKAGE_ROOT, 'out', 'fixtures', 'resnet18-fmnist');
/** Where the section's job writes its artifacts (metrics.json, report.html, immunized.onnx, …). */
export const BACKBONE_OUT_DIR = join(PACKAGE_ROOT, 'out', 'bench', 'backbone');
export const MAKE_FIXTURES = '/usr/bin/python3 scripts/fixtures/trainBackbone.py';

export const BACKBONE_FILES = {
  model: 'model.onnx',
  benign: 'benign.npy',
  benignLabels: 'benign_labels.npy',
  harmful: 'harmful.npy',
  harmfulLabels: 'harmful_labels.npy',
  benignTest: 'benign_test.npy',
  benignTestLabels: 'benign_test_labels.npy',
} as const;
/** Optional: torch's logits on benign_test.npy, to check the exported graph in onnxruntime. */
const REFERENCE_LOGITS = 'benign_test_logits.npy';

/** One attack row as metrics.json gives it; fields the engine adds later are kept and printed too. */
export interface AttackRow {
  attacker: string;
  data: string;
  stepsRaw?: number | null;
  stepsImmunized?: number | null;
  cap?: number | null;
  capped?: boolean;
  status?: string;
  slowdown?: number | null;
  [field: string]: unknown;
}

/** The parts of metrics.json the section prints; read loosely so that it keeps working while the engine evolves. */
export interface BackboneJobMetrics {
  method?: string;
  task?: string | null;
  verdict: string;
  verdictReasons?: string[];
  verdictNotes?: string[];
  kappaCriterion?: string;
  kappaNote?: string;
  dim?: number;
  rows?: { benign: number; harmful: number; benignTest: number | null };
  rir?: number | null;
  rirBound?: number | null;
  benignRatio?: number | null;
  harmfulRatio?: number | null;
  thetaCondition?: number | null;
  kappaBudget?: number;
  kappa?: { benign: { before: number | null; after: number | null }; harmful: { before: number | null; after: number | null } };
  benignQuality?: { metric: string | null; before: number | null; after: number | null; test?: number | null; headMaxDeviation?: number | null };
  attacks?: AttackRow[];
  optimizer?: { steps: number; stopReason: string };
  timings?: { engineSeconds: number; solveSeconds: number; metricsSeconds: number; attackSeconds: number };
  features?: { tensor: string; dim: number; source: string; seconds: number };
  checkpoint?: { passed?: boolean; maxRelLogitDiff?: number; maxFeatureDiff?: number; seconds?: number; skipped?: string };
  executionProvider?: string;
  warnings?: Array<{ field: string; reason: string }>;
}

/** The classifier's own accuracy on benign_test.npy, before (model.onnx) and after (immunized.onnx). */
export interface HeadCheck {
  images: number;
  original: number;
  immunized: number | null;
  /** max |logit| difference between model.onnx in onnxruntime and torch's logits (benign_test_logits.npy). */
  torchMaxAbsLogitDiff: number | null;
  seconds: number;
}

export type BackboneResult =
  | { status: 'missing'; dir: string; missing: string[]; hint: string }
  | {
      status: 'ran';
      dir: string;
      outDir: string;
      command: string;
      fixture: FixtureMeta | null;
      /** The job from spec to artifacts, wall clock. */
      jobSeconds: number;
      metrics: BackboneJobMetrics;
      head: HeadCheck | { error: string };
    };

interface FixtureMeta {
  model?: string;
  training?: { images?: number; epochs?: number; seconds?: number; seed?: number };
  testAccuracy?: { value?: number; images?: number };
  preprocess?: { mean?: number; std?: number; size?: number };
}

export function missingFiles(dir: string): string[] {
  return Object.values(BACKBONE_FILES).filter((f) => !existsSync(join(dir, f)));
}

/** A path relative to the working directory when it lies inside it, otherwise absolute. */
function shown(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel === '' ? '.' : rel.startsWith('..') || isAbsolute(rel) ? path : rel;
}

function hintFor(dir: string): string {
  return dir === DEFAULT_BACKBONE_DIR ? MAKE_FIXTURES : `${MAKE_FIXTURES} --out ${shown(dir)}`;
}

export async function runBackbone(opts: { dir?: string; outDir?: string; progress: (msg: string) => void }): Promise<BackboneResult> {
  const dir = resolve(opts.dir ?? DEFAULT_BACKBONE_DIR);
  const missing = missingFiles(dir);
  if (missing.length > 0) return { status: 'missing', dir, missing, hint: hintFor(dir) };
  const outDir = resolve(opts.outDir ?? BACKBONE_OUT_DIR);
  const f = (name: string) => join(dir, name);

  // What `immunize run --backbone … --benign-test …` builds from its flags, with the test labels added: the CLI has
  // no flag for them, the job spec (REST) does, and without them benign test accuracy is not scored.
  const spec = parseJobSpec({
    backbone: f(BACKBONE_FILES.model),
    benign: { dataset: f(BACKBONE_FILES.benign), labels: f(BACKBONE_FILES.benignLabels) },
    harmful: { dataset: f(BACKBONE_FILES.harmful), labels: f(BACKBONE_FILES.harmfulLabels) },
    benignTest: { dataset: f(BACKBONE_FILES.benignTest), labels: f(BACKBONE_FILES.benignTestLabels) },
  });
  const rel = shown;
  const command =
    `immunize run --backbone ${rel(f(BACKBONE_FILES.model))} --benign ${rel(f(BACKBONE_FILES.benign))} --benign-labels ${rel(f(BACKBONE_FILES.benignLabels))} ` +
    `--harmful ${rel(f(BACKBONE_FILES.harmful))} --harmful-labels ${rel(f(BACKBONE_FILES.harmfulLabels))} --benign-test ${rel(f(BACKBONE_FILES.benignTest))} ` +
    `(+ its labels, through the job spec) --out ${rel(outDir)}`;

  await rm(outDir, { recursive: true, force: true });
  let lastPhase = '';
  const t0 = performance.now();
  await runJob(spec, {
    sink: new DirectorySink(outDir),
    observe: (e) => {
      const what = e.message ? `${e.phase}: ${e.message}` : e.phase;
      if (what !== lastPhase) opts.progress(`backbone: ${what}`);
      lastPhase = what;
    },
  });
  const jobSeconds = (performance.now() - t0) / 1000;
  // Read back what the job wrote, so that the section prints exactly what a user of the CLI gets.
  const metrics = JSON.parse(await readFile(join(outDir, 'metrics.json'), 'utf8')) as BackboneJobMetrics;
  let fixture: FixtureMeta | null = null;
  try {
    fixture = JSON.parse(await readFile(f('meta.json'), 'utf8')) as FixtureMeta;
  } catch {
    fixture = null;
  }
  opts.progress('backbone: scoring the classifier of model.onnx and immunized.onnx on benign_test.npy');
  let head: HeadCheck | { error: string };
  try {
    head = await headCheck(dir, outDir);
  } catch (err) {
    head = { error: err instanceof Error ? err.message : String(err) };
  }
  return { status: 'ran', dir, outDir, command, fixture, jobSeconds, metrics, head };
}

/** Runs both graphs' classifiers on the held-out images in onnxruntime and scores them against the labels. */
async function headCheck(dir: string, outDir: string): Promise<HeadCheck> {
  const t0 = performance.now();
  const ort = await loadOrt();
  const images = await readNpy(join(dir, BACKBONE_FILES.benignTest));
  const labels = await readNpyLabels(join(dir, BACKBONE_FILES.benignTestLabels));
  const [n, c, h, w] = images.shape;
  const per = c * h * w;
  const logitsOf = async (path: string): Promise<{ logits: Float32Array; classes: number }> => {
    const { session } = await createSession(await readFile(path), { executionProvider: 'cpu' });
    try {
      const output = session.outputNames.includes('logits') ? 'logits' : session.outputNames.find((o) => o !== 'features_immunized')!;
      const parts: Float32Array[] = [];
      let classes = 0;
      for (let start = 0; start < n; start += 250) {
        const rows = Math.min(250, n - start);
        const batch = Float32Array.from(images.data.subarray(start * per, (start + rows) * per));
        const res = await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', batch, [rows, c, h, w]) }, [output]);
        const t = res[output];
        classes = Number(t.dims[1]);
        parts.push(Float32Array.from(t.data as Float32Array));
      }
      const logits = new Float32Array(n * classes);
      let at = 0;
      for (const p of parts) {
        logits.set(p, at);
        at += p.length;
      }
      return { logits, classes };
    } finally {
      await session.release();
    }
  };
  const accuracy = ({ logits, classes }: { logits: Float32Array; classes: number }) => {
    let correct = 0;
    for (let i = 0; i < n; i++) {
      let best = 0;
      for (let k = 1; k < classes; k++) if (logits[i * classes + k] > logits[i * classes + best]) best = k;
      if (best === labels[i]) correct++;
    }
    return correct / n;
  };
  const original = await logitsOf(join(dir, BACKBONE_FILES.model));
  const immunizedPath = join(outDir, 'immunized.onnx');
  const immunized = existsSync(immunizedPath) ? accuracy(await logitsOf(immunizedPath)) : null;
  let torchMaxAbsLogitDiff: number | null = null;
  if (existsSync(join(dir, REFERENCE_LOGITS))) {
    const ref = await readNpy(join(dir, REFERENCE_LOGITS));
    if (ref.data.length === original.logits.length) {
      torchMaxAbsLogitDiff = 0;
      for (let i = 0; i < ref.data.length; i++) torchMaxAbsLogitDiff = Math.max(torchMaxAbsLogitDiff, Math.abs(ref.data[i] - original.logits[i]));
    }
  }
  return { images: n, original: accuracy(original), immunized, torchMaxAbsLogitDiff, seconds: (performance.now() - t0) / 1000 };
}

/**
 * A slowdown as the verdict reads it: a number only when measured, "≥x" when the run stopped at a cap (a lower
 * bound), "unmeasured" when the engine says so or gives no value.
 */
export function slowdownText(a: Pick<AttackRow, 'slowdown' | 'status' | 'capped'>): string {
  if (a.status === 'unmeasured' || a.slowdown === null || a.slowdown === undefined) return 'unmeasured';
  if (a.status === 'capped' || (a.status === undefined && a.capped === true)) return `≥${num(a.slowdown)}×`;
  return `${num(a.slowdown)}×`;
}

const SHOWN_ATTACK_FIELDS = new Set(['attacker', 'data', 'target', 'stepsRaw', 'stepsImmunized', 'cap', 'capped', 'status', 'slowdown']);

function pct(x: number | null | undefined): string {
  return x === null || x === undefined ? '—' : `${(100 * x).toFixed(2)}%`;
}

function ratioLine(name: string, k: { before: number | null; after: number | null } | undefined, ratio: number | null | undefined, want: string): string {
  return `  ${name.padEnd(8)} κ ${num(k?.before, 4)} → ${num(k?.after, 4)}   ratio ${num(ratio, 4)} (${want})`;
}

export function renderBackbone(r: BackboneResult): string[] {
  if (r.status === 'missing') {
    const what =
      r.missing.length === Object.keys(BACKBONE_FILES).length ? 'no trained backbone' : `an incomplete trained backbone (missing ${r.missing.join(', ')})`;
    return ['', `backbone: skipped, ${what} in ${shown(r.dir)}; make it with: ${r.hint}`];
  }
  const m = r.metrics;
  const lines = [...heading(`Real backbone: ResNet-18 trained on Fashion-MNIST classes 5–9 (${shown(r.dir)})`)];
  const fx = r.fixture;
  if (fx) {
    const t = fx.training ?? {};
    lines.push(
      `fixture: ${fx.model ?? 'model.onnx'}, ${num(t.images ?? null, 6)} training images, ${t.epochs ?? '?'} epoch(s), seed ${t.seed ?? '?'}, ` +
        `trained in ${seconds(t.seconds ?? null)}; torch test accuracy ${pct(fx.testAccuracy?.value)} on ${num(fx.testAccuracy?.images ?? null, 6)} t10k images; ` +
        `inputs normalised with mean ${fx.preprocess?.mean ?? '?'}, std ${fx.preprocess?.std ?? '?'}`,
    );
  }
  lines.push(`job: ${r.command}`);
  lines.push('the default linear-head job (method, κ budget, steps and seed at their defaults), through the processor the CLI calls');
  if (m.features) {
    lines.push(
      `features: ${m.features.tensor} (${m.features.source}), D = ${m.features.dim}; task ${m.task ?? '—'}; rows: benign ${m.rows?.benign ?? '—'}, harmful ${m.rows?.harmful ?? '—'}, ` +
        `benign test ${m.rows?.benignTest ?? '—'}; execution provider ${m.executionProvider ?? '—'}`,
    );
  }

  lines.push('', `verdict: ${m.verdict.toUpperCase()}${m.kappaCriterion ? ` (κ criterion ${m.kappaCriterion})` : ''}`);
  for (const reason of m.verdictReasons ?? []) lines.push(`  - ${reason}`);
  if (m.kappaNote) lines.push(`  note: ${m.kappaNote}`);
  for (const note of m.verdictNotes ?? []) lines.push(`  note: ${note}`);

  lines.push(
    '',
    'κ of the linear-probing Hessians (before → after θ):',
    ratioLine('benign', m.kappa?.benign, m.benignRatio, 'want ≤ 1'),
    ratioLine('harmful', m.kappa?.harmful, m.harmfulRatio, 'want ≥ 2'),
    `  RIR ${num(m.rir, 4)}; RIR* ${num(m.rirBound, 4)}; κ(θ) ${num(m.thetaCondition, 4)} (budget ${num(m.kappaBudget ?? null, 4)})` +
      (m.method ? `; method ${m.method}` : '') +
      (m.optimizer ? `, ${m.optimizer.steps} steps (${m.optimizer.stopReason})` : ''),
  );

  const attacks = m.attacks ?? [];
  const extraKeys = [...new Set(attacks.flatMap((a) => Object.keys(a).filter((k) => !SHOWN_ATTACK_FIELDS.has(k))))];
  const showStatus = attacks.some((a) => a.status !== undefined);
  lines.push(
    '',
    'attacks (steps to the target on raw → immunized features; slowdown as metrics.json gives it: "≥" a capped run\'s lower bound):',
    ...table(
      ['attacker', 'data', 'raw', 'immunized', 'cap', 'capped', ...(showStatus ? ['status'] : []), 'slowdown', ...extraKeys],
      attacks.map((a) => [
        a.attacker,
        a.data,
        num(a.stepsRaw ?? null, 6),
        num(a.stepsImmunized ?? null, 6),
        num(a.cap ?? null, 6),
        a.capped === undefined ? '—' : String(a.capped),
        ...(showStatus ? [a.status ?? '—'] : []),
        slowdownText(a),
        ...extraKeys.map((k) => JSON.stringify(a[k]) ?? '—'),
      ]),
      ['left', 'left', 'right', 'right', 'right', 'left', ...(showStatus ? ['left' as const] : []), 'right', ...extraKeys.map(() => 'left' as const)],
    ),
  );

  const q = m.benignQuality;
  lines.push('', `benign ${q?.metric ?? 'quality'} of the best linear probe (least squares; metrics.json benignQuality):`);
  lines.push(`  train (benign.npy): ${fmtQuality(q?.before, q?.metric)} → ${fmtQuality(q?.after, q?.metric)}`);
  lines.push(
    q?.test === undefined
      ? '  test (benign_test.npy): not scored'
      : `  test (benign_test.npy): after θ ${fmtQuality(q.test, q.metric)} (metrics.json has no before value: the best probe on X·θ equals the best on X for an invertible θ)`,
  );
  if ('error' in r.head) {
    lines.push(`  the model's own classifier on benign_test.npy: not checked (${r.head.error})`);
  } else {
    const h = r.head;
    lines.push(
      `  the model's own classifier on benign_test.npy (onnxruntime, ${h.images} images): model.onnx ${pct(h.original)} → immunized.onnx ${pct(h.immunized)}` +
        (h.torchMaxAbsLogitDiff === null ? '' : `; model.onnx against torch's logits: max |Δ| ${num(h.torchMaxAbsLogitDiff, 3)}`),
    );
  }
  if (m.checkpoint) {
    lines.push(
      m.checkpoint.skipped
        ? `  immunized.onnx check: skipped (${m.checkpoint.skipped})`
        : `  immunized.onnx check: ${m.checkpoint.passed ? 'passed' : 'FAILED'} (max rel. logit diff ${num(m.checkpoint.maxRelLogitDiff ?? null, 3)}, max feature diff ${num(m.checkpoint.maxFeatureDiff ?? null, 3)})`,
    );
  }

  const t = m.timings;
  lines.push(
    '',
    `time: feature extraction ${seconds(m.features?.seconds ?? null)}; engine ${seconds(t?.engineSeconds ?? null)} ` +
      `(θ ${seconds(t?.solveSeconds ?? null)}, attacks ${seconds(t?.attackSeconds ?? null)}, all metrics incl. attacks ${seconds(t?.metricsSeconds ?? null)}); ` +
      `checkpoint check ${seconds(m.checkpoint?.seconds ?? null)}; whole job ${seconds(r.jobSeconds)}` +
      ('error' in r.head ? '' : `; classifier scoring ${seconds(r.head.seconds)}`),
  );
  const warnings = m.warnings ?? [];
  if (warnings.length > 0) {
    lines.push('warnings:');
    for (const w of warnings) lines.push(`  ${w.field}: ${w.reason}`);
  }
  lines.push(`artifacts: ${shown(r.outDir)} (metrics.json, report.html, immunized.onnx, …)`);
  return lines;
}

function fmtQuality(x: number | null | undefined, metric: string | null | undefined): string {
  return metric === 'accuracy' ? pct(x) : num(x ?? null, 4);
}
