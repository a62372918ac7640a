/**
 * What every job processor shares: its dependencies (where artifacts go, how a dataset reference becomes a path,
 * the progress observer), the result shape, loading a features job's data and writing the engine's artifacts.
 */
import type { CheckpointCheck } from '../models/backbones/index.js';
import type { ImageSetSummary } from '../models/backbones/features.js';
import type { DeepMetrics } from '../models/deep/run.js';
import type { EngineInput, EngineOptions, EngineResult, LabelledData, Metrics } from '../models/engine/index.js';
import type { StepObserver } from '../models/engine/index.js';
import { checkPair, loadDataset } from '../models/io/index.js';
import { DataError } from '../models/io/index.js';
import { encodeSafetensors } from '../models/io/index.js';
import type { ArtifactRecord, ArtifactSink } from './artifacts.js';
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

/**
 * What a caller in the same process may add to a spec, beyond what a queued job carries: the CLI's evaluate command
 * and its House Price demo. A queued job never sets these.
 */
export interface RunOptions {
  /** Score the θ in this theta.safetensors file instead of optimizing one (features jobs only). */
  theta?: string;
  /** The data, already in memory (the House Price demo's own train and test split), instead of the spec's files. */
  input?: EngineInput;
  /** How report.html presents the run. */
  report?: ReportOptions;
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

export function engineOptions(spec: JobSpec): EngineOptions {
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
