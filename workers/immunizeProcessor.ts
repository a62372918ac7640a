import { immunize, evaluateTheta, type EngineInput, type EngineResult, type LabelledData } from '../models/engine/immunize.js';
import type { StepObserver } from '../models/engine/progress.js';
import { checkPair, loadDataset } from '../models/io/dataset.js';
import { encodeSafetensors, readSafetensors } from '../models/io/safetensors.js';
import { DataError } from '../models/io/errors.js';
import type { Mat } from '../models/linalg/types.js';
import type { ArtifactRecord, ArtifactSink } from './artifacts.js';
import type { DataRefSpec, JobSpec } from './jobSpec.js';

export interface ProcessorDeps {
  sink: ArtifactSink;
  /** Maps a dataset reference in the spec to a readable path (an upload id for the service, a path for the CLI). */
  resolve?: (ref: string) => Promise<string> | string;
  observe?: StepObserver;
}

export interface JobResult {
  metrics: EngineResult['metrics'];
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

export async function writeArtifacts(result: EngineResult, sink: ArtifactSink): Promise<ArtifactRecord[]> {
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
  ];
}
