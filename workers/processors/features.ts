/**
 * A features job: precomputed feature matrices (.npy or .csv) in, θ and its report out. The evaluate path is the
 * same job with θ read from a file instead of optimized.
 */
import { evaluateTheta, immunize } from '../../models/engine/index.js';
import type { FeaturesJobSpec } from '../jobSpec.js';
import { engineOptions, loadInput, writeArtifacts, type JobResult, type ProcessorDeps, type RunOptions } from '../processorDeps.js';
import { readTheta } from './evaluate.js';

export async function runFeaturesJob(spec: FeaturesJobSpec, deps: ProcessorDeps, signal?: AbortSignal, options: RunOptions = {}): Promise<JobResult> {
  const input = options.input ?? (await loadInput(spec, deps));
  const result = options.theta
    ? evaluateTheta(input, await readTheta(options.theta, input.benign.X.cols), engineOptions(spec), deps.observe, signal)
    : immunize(input, engineOptions(spec), deps.observe, signal);
  return { metrics: result.metrics, artifacts: await writeArtifacts(result, deps.sink, options.report) };
}
