/** A features job: precomputed feature matrices (.npy or .csv) in, θ and its report out. */
import { immunize } from '../../models/engine/index.js';
import type { FeaturesJobSpec } from '../jobSpec.js';
import { engineOptions, loadInput, writeArtifacts, type JobResult, type ProcessorDeps } from '../processorDeps.js';

export async function runFeaturesJob(spec: FeaturesJobSpec, deps: ProcessorDeps, signal?: AbortSignal): Promise<JobResult> {
  const input = await loadInput(spec, deps);
  const result = immunize(input, engineOptions(spec), deps.observe, signal);
  return { metrics: result.metrics, artifacts: await writeArtifacts(result, deps.sink) };
}
