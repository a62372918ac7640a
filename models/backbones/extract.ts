/**
 * Feature extraction: images go through the backbone in batches and each batch's features stream into the
 * engine's StatsAccumulator (K = XᵀX and friends). Memory is two input batches (one decoding while the other runs)
 * plus, only when asked, the N×D float64 feature matrix.
 */
import type { InferenceSession, Tensor } from 'onnxruntime-node';
import { checkAbort } from '../engine/index.js';
import { StatsAccumulator, type SufficientStats } from '../engine/index.js';
import { DataError } from '../io/index.js';
import type { Mat } from '../linalg/types.js';
import { BackboneError } from './errors.js';
import type { ImageSource } from './images.js';
import { loadOrt } from './runtime.js';

export interface ExtractOptions {
  batchSize?: number;
  /** Keep the N×D feature matrix (for consumers that need rows, not only K). */
  keep?: boolean;
  /** Copy the first `sample` inputs with every model output for them (the checkpoint check replays them). */
  sample?: number;
  /** Outputs besides the features to fetch for the sample. */
  sampleOutputs?: string[];
  /** Called after each batch with the images done so far. */
  progress?: (done: number, total: number) => void;
  signal?: AbortSignal;
  /** Text for the error raised when the feature tensor turns out not to be N×D. */
  describeCandidates?: () => string;
}

export interface FeatureSample {
  rows: number;
  /** rows×C×H×W, as fed. */
  input: Float32Array;
  inputShape: number[];
  /** rows×D. */
  features: Float32Array;
  /** Each fetched output for the sample rows, with its shape. */
  outputs: Record<string, { data: Float32Array; dims: number[] }>;
}

export interface Extracted {
  rows: number;
  dim: number;
  stats: SufficientStats;
  X: Mat | null;
  sample: FeatureSample | null;
  seconds: { total: number; readWait: number; inference: number; accumulate: number };
}

export const DEFAULT_BATCH = 32;

export async function extractFeatures(
  session: InferenceSession,
  inputName: string,
  featureName: string,
  source: ImageSource,
  opts: ExtractOptions = {},
): Promise<Extracted> {
  const ort = await loadOrt();
  const start = performance.now();
  const total = source.count;
  const batch = Math.max(1, Math.min(opts.batchSize ?? DEFAULT_BATCH, total));
  const per = source.channels * source.height * source.width;
  const buffers: Float32Array[] = [new Float32Array(batch * per), new Float32Array(batch * per)];
  const seconds = { total: 0, readWait: 0, inference: 0, accumulate: 0 };
  const sampleRows = Math.min(opts.sample ?? 0, batch, total);
  let sample: FeatureSample | null = null;
  let acc: StatsAccumulator | null = null;
  let X: Mat | null = null;
  let scratch: Float64Array | null = null;
  let dim = 0;

  const read = (at: number, which: number) => {
    // Image files come back in a new view of the same memory (the buffer went to the decode thread and back).
    const p = source.read(at, Math.min(batch, total - at), buffers[which]).then((filled) => (buffers[which] = filled));
    // Attach a handler now: this read may fail while the previous batch is still in inference.
    p.catch(() => undefined);
    return p;
  };
  let pending = read(0, 0);
  for (let at = 0, k = 0; at < total; at += batch, k++) {
    checkAbort(opts.signal);
    const n = Math.min(batch, total - at);
    const t0 = performance.now();
    const current = await pending;
    const t1 = performance.now();
    seconds.readWait += (t1 - t0) / 1000;
    if (at + batch < total) pending = read(at + batch, (k + 1) % 2);
    const shape = [n, source.channels, source.height, source.width];
    const feed = new ort.Tensor('float32', n === batch ? current : current.subarray(0, n * per), shape);
    const fetches = k === 0 && sampleRows > 0 ? [featureName, ...(opts.sampleOutputs ?? [])] : [featureName];
    const out = await runBatch(
      session,
      { [inputName]: feed },
      fetches,
      `${source.label}: the backbone failed on images ${at}–${at + n - 1} of shape [${shape.join(', ')}]`,
    );
    const t2 = performance.now();
    seconds.inference += (t2 - t1) / 1000;
    const f = featureTensor(out, featureName, n, opts.describeCandidates);
    const data = f.data as Float32Array;
    if (k === 0) {
      dim = f.dims[1];
      acc = new StatsAccumulator(dim);
      if (opts.keep) X = { rows: total, cols: dim, data: new Float64Array(total * dim) };
      else scratch = new Float64Array(batch * dim);
      if (sampleRows > 0) sample = takeSample({ out, input: current, features: data, rows: sampleRows, dim, source, outputNames: opts.sampleOutputs ?? [] });
    } else if (f.dims[1] !== dim) {
      throw new BackboneError('FEATURE_SHAPE', `feature tensor "${featureName}" changed width between batches (${dim} then ${f.dims[1]})`);
    }
    const block = X ? X.data.subarray(at * dim, (at + n) * dim) : scratch!.subarray(0, n * dim);
    copyFinite(data, block, (i) => `${source.label}: the backbone gave a non-finite feature (${data[i]}) for image ${at + Math.floor(i / dim)}`);
    acc!.addRows({ rows: n, cols: dim, data: block });
    seconds.accumulate += (performance.now() - t2) / 1000;
    opts.progress?.(at + n, total);
  }
  seconds.total = (performance.now() - start) / 1000;
  return { rows: total, dim, stats: acc!.finish(), X, sample, seconds };
}

async function runBatch(
  session: InferenceSession,
  feeds: InferenceSession.FeedsType,
  fetches: string[],
  what: string,
): Promise<InferenceSession.OnnxValueMapType> {
  try {
    return await session.run(feeds, fetches);
  } catch (err) {
    const detail = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new BackboneError('INFERENCE_FAILED', `${what} (${detail})`, { cause: err });
  }
}

/** The batch's features, which must be float32 N×D with one row per image. */
function featureTensor(out: InferenceSession.OnnxValueMapType, featureName: string, n: number, describeCandidates?: () => string): Tensor {
  const f = out[featureName] as Tensor;
  if (f.type !== 'float32' || f.dims.length !== 2 || f.dims[0] !== n) {
    throw new BackboneError(
      'FEATURE_SHAPE',
      `feature tensor "${featureName}" is ${f.type} of shape [${f.dims.join(', ')}] for a batch of ${n}; expected float32 N×D` +
        (describeCandidates ? `; ${describeCandidates()}` : ''),
    );
  }
  return f;
}

/** Copies of the first batch's first rows: its input, its features and each requested float32 output. */
function takeSample(o: {
  out: InferenceSession.OnnxValueMapType;
  input: Float32Array;
  features: Float32Array;
  rows: number;
  dim: number;
  source: ImageSource;
  outputNames: string[];
}): FeatureSample {
  const { rows, source } = o;
  const per = source.channels * source.height * source.width;
  const outputs: FeatureSample['outputs'] = {};
  for (const name of o.outputNames) {
    const t = o.out[name] as Tensor;
    if (t.type !== 'float32') continue;
    const rowSize = t.dims.slice(1).reduce((a, b) => a * b, 1);
    outputs[name] = { data: (t.data as Float32Array).slice(0, rows * rowSize), dims: [rows, ...t.dims.slice(1)] };
  }
  return {
    rows,
    input: o.input.slice(0, rows * per),
    inputShape: [rows, source.channels, source.height, source.width],
    features: o.features.slice(0, rows * o.dim),
    outputs,
  };
}

/** Widens the features into block, refusing the first non-finite one. */
function copyFinite(data: Float32Array, block: Float64Array, nonFinite: (i: number) => string): void {
  for (let i = 0; i < block.length; i++) {
    const v = data[i];
    if (!Number.isFinite(v)) throw new DataError('NON_FINITE', nonFinite(i));
    block[i] = v;
  }
}
