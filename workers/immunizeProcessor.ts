import { Backbone, type CheckpointCheck } from '../models/backbones/index.js';
import { extractImageSets, type ImageSet, type ImageSetSummary } from '../models/backbones/features.js';
import { immunize, evaluateTheta, type EngineInput, type EngineResult, type LabelledData, type Metrics } from '../models/engine/immunize.js';
import type { StepObserver } from '../models/engine/progress.js';
import { checkPair, loadDataset } from '../models/io/dataset.js';
import { encodeSafetensors, readSafetensors } from '../models/io/safetensors.js';
import { DataError } from '../models/io/errors.js';
import type { Mat } from '../models/linalg/types.js';
import type { ArtifactRecord, ArtifactSink } from './artifacts.js';
import type { DeepMetrics } from '../models/deep/run.js';
import { runDeepJob } from './deepProcessor.js';
import type { DataRefSpec, JobSpec } from './jobSpec.js';
import { renderReport, REPORT_CONTENT_TYPE, type ReportOptions } from './report/render.js';

export interface ProcessorDeps {
  sink: ArtifactSink;
  /** Maps a dataset reference in the spec to a readable path (an upload id for the service, a path for the CLI). */
  resolve?: (ref: string) => Promise<string> | string;
  observe?: StepObserver;
}

/** What a backbone job adds to metrics.json. */
export interface BackboneMetrics {
  features: {
    tensor: string;
    dim: number;
    source: 'auto' | 'spec';
    feeds: string;
    inputs: Record<string, ImageSetSummary>;
    preprocess: Record<string, unknown> | null;
    seconds: number;
  };
  checkpoint: (CheckpointCheck & { seconds: number }) | { skipped: string };
  executionProvider: 'cpu' | 'cuda';
  executionProviderNote: string;
}

export type LinearJobMetrics = Metrics & Partial<BackboneMetrics>;

export interface JobResult {
  metrics: LinearJobMetrics | DeepMetrics;
  artifacts: ArtifactRecord[];
}

async function loadRef(ref: DataRefSpec, deps: ProcessorDeps): Promise<LabelledData> {
  const resolve = deps.resolve ?? ((p: string) => p);
  const loaded = await loadDataset({
    dataset: await resolve(ref.dataset),
    labels: ref.labels ? await resolve(ref.labels) : undefined,
    labelColumn: ref.labelColumn,
    dropColumns: ref.dropColumns,
    rowLimit: ref.rowLimit,
  });
  return { X: loaded.X, y: loaded.y };
}

export async function loadInput(spec: JobSpec, deps: ProcessorDeps): Promise<EngineInput> {
  deps.observe?.({ phase: 'load' });
  const benign = await loadRef(spec.benign, deps);
  const harmful = await loadRef(spec.harmful, deps);
  checkPair(benign.X, harmful.X, { benign: spec.benign.dataset, harmful: spec.harmful.dataset });
  const benignTest = spec.benignTest ? await loadRef(spec.benignTest, deps) : undefined;
  if (benignTest && benignTest.X.cols !== benign.X.cols) {
    throw new DataError('DIM_MISMATCH', `benign test data has D=${benignTest.X.cols}, the benign data D=${benign.X.cols}`);
  }
  return { benign, harmful, benignTest };
}

function engineOptions(spec: JobSpec) {
  return {
    method: spec.method,
    task: spec.task,
    steps: spec.steps,
    kappaBudget: spec.kappaBudget,
    seed: spec.seed,
    rtol: spec.rtol,
    lambdaBenign: spec.lambdaBenign,
    lambdaHarmful: spec.lambdaHarmful,
    alpha: spec.alpha,
    init: spec.init,
  };
}

/** The immunization job: data in, θ and its report out. The CLI calls it in-process; workers call it from the queue. */
export async function runImmunizeJob(spec: JobSpec, deps: ProcessorDeps, signal?: AbortSignal): Promise<JobResult> {
  if (spec.mode === 'last-block') return runDeepJob(spec, deps, signal);
  if (spec.backbone) return runBackboneJob(spec, deps, signal);
  const input = await loadInput(spec, deps);
  const result = immunize(input, engineOptions(spec), deps.observe, signal);
  return { metrics: result.metrics, artifacts: await writeArtifacts(result, deps.sink) };
}

/** Scores an existing θ (from a theta.safetensors file) with the same metrics, attacks and verdict. */
export async function runEvaluateJob(spec: JobSpec, thetaPath: string, deps: ProcessorDeps, signal?: AbortSignal): Promise<JobResult> {
  const input = await loadInput(spec, deps);
  const tensors = await readSafetensors(thetaPath);
  const t = tensors.theta;
  if (!t) throw new DataError('BAD_FORMAT', `${thetaPath}: no tensor named "theta" (found ${Object.keys(tensors).join(', ') || 'none'})`);
  if (t.shape.length !== 2) throw new DataError('BAD_SHAPE', `${thetaPath}: theta must be 2-D, got shape [${t.shape.join(', ')}]`);
  const D = input.benign.X.cols;
  if (t.shape[0] !== D || t.shape[1] !== D) {
    throw new DataError('DIM_MISMATCH', `${thetaPath}: theta is ${t.shape[0]}×${t.shape[1]}, the features have D=${D}`);
  }
  const theta: Mat = { rows: D, cols: D, data: t.data };
  const result = evaluateTheta(input, theta, engineOptions(spec), deps.observe, signal);
  return { metrics: result.metrics, artifacts: await writeArtifacts(result, deps.sink) };
}

export async function writeArtifacts(result: EngineResult, sink: ArtifactSink, report: ReportOptions = {}): Promise<ArtifactRecord[]> {
  const tensors: Record<string, { shape: number[]; data: Float64Array }> = {
    theta: { shape: [result.theta.rows, result.theta.cols], data: result.theta.data },
  };
  if (result.head) {
    tensors.head = { shape: [result.head.weights.rows, result.head.weights.cols], data: result.head.weights.data };
    tensors.head_bias = { shape: [result.head.bias.length], data: result.head.bias };
  }
  const metadata = { layout: 'features become X·theta; logits = (X·theta)·head + head_bias', verdict: result.metrics.verdict };
  return [
    await sink.put('metrics.json', Buffer.from(JSON.stringify(result.metrics, null, 2)), 'application/json'),
    await sink.put('curves.json', Buffer.from(JSON.stringify(result.curves)), 'application/json'),
    await sink.put('theta.safetensors', encodeSafetensors(tensors, metadata), 'application/octet-stream'),
    await sink.put('report.html', Buffer.from(renderReport(result.metrics, result.curves, report)), REPORT_CONTENT_TYPE),
  ];
}

/** Rows of the first benign batch replayed through the immunized checkpoint to check it. */
const CHECK_ROWS = 16;

/** A job with a backbone: images → features (streamed into K) → engine → artifacts, immunized.onnx among them. */
async function runBackboneJob(spec: JobSpec, deps: ProcessorDeps, signal?: AbortSignal): Promise<JobResult> {
  const resolve = deps.resolve ?? ((p: string) => p);
  const observe = deps.observe;
  observe?.({ phase: 'load', message: 'loading the backbone' });
  const backbone = await Backbone.load(await resolve(spec.backbone!), {
    featureTensor: spec.featureTensor,
    log: (message) => observe?.({ phase: 'load', message }),
  });
  try {
    const sets: ImageSet[] = [];
    for (const role of ['benign', 'harmful', 'benignTest'] as const) {
      const ref = spec[role];
      if (ref) sets.push({ role, images: await resolve(ref.dataset), labels: ref.labels ? await resolve(ref.labels) : undefined, limit: ref.rowLimit });
    }
    const phase = await extractImageSets(backbone, sets, {
      preprocess: spec.preprocess,
      sampleRows: CHECK_ROWS,
      signal,
      progress: (done, of, role) => observe?.({ phase: 'statistics', step: done, of, message: `features ${role}` }),
    });
    const input: EngineInput = { benign: phase.data.benign, harmful: phase.data.harmful, benignTest: phase.data.benignTest };
    checkPair(input.benign.X, input.harmful.X, { benign: spec.benign.dataset, harmful: spec.harmful.dataset });
    const result = immunize(input, engineOptions(spec), observe, signal);

    const checkStart = performance.now();
    let checkpoint: BackboneMetrics['checkpoint'];
    let onnx: Uint8Array | null = null;
    try {
      onnx = backbone.immunized(result.theta);
    } catch (err) {
      checkpoint = { skipped: `θ could not be compensated into the classifier: ${err instanceof Error ? err.message : String(err)}` };
    }
    if (onnx && phase.sample) {
      observe?.({ phase: 'evaluate', message: 'checking immunized.onnx against the original' });
      checkpoint = { ...(await backbone.check(onnx, result.theta, phase.sample)), seconds: (performance.now() - checkStart) / 1000 };
    }
    checkpoint ??= { skipped: 'no sample to check on' };
    const warnings = [...result.metrics.warnings];
    if ('passed' in checkpoint && !checkpoint.passed) {
      warnings.push({ field: 'checkpoint', reason: `immunized.onnx differs from the original beyond rounding (logits rel. ${checkpoint.maxRelLogitDiff}, features ${checkpoint.featureRoundingRatio}× the float32 bound)` });
    }
    if ('skipped' in checkpoint) warnings.push({ field: 'checkpoint', reason: checkpoint.skipped });
    const pre = sets.some((s) => phase.summary[s.role].kind !== 'npy') ? backbone.preprocessFor(spec.preprocess) : null;
    const metrics: JobResult['metrics'] = {
      ...result.metrics,
      warnings,
      features: {
        tensor: backbone.site.tensor,
        dim: phase.dim,
        source: backbone.site.source,
        feeds: backbone.site.description,
        inputs: phase.summary,
        preprocess: pre ? { ...pre } : null,
        seconds: phase.seconds,
      },
      checkpoint,
      executionProvider: backbone.runtime.provider,
      executionProviderNote: backbone.runtime.note,
    };
    const artifacts = await writeArtifacts({ ...result, metrics }, deps.sink);
    if (onnx) artifacts.push(await deps.sink.put('immunized.onnx', Buffer.from(onnx.buffer, onnx.byteOffset, onnx.byteLength), 'application/octet-stream'));
    return { metrics, artifacts };
  } finally {
    await backbone.close();
  }
}
