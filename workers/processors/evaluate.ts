/** evaluate: scores an existing θ (from a theta.safetensors file) with the same metrics, attacks and verdict. */
import { evaluateTheta } from '../../models/engine/index.js';
import { DataError } from '../../models/io/index.js';
import { readSafetensors } from '../../models/io/index.js';
import type { Mat } from '../../models/linalg/types.js';
import type { JobSpec } from '../jobSpec.js';
import { engineOptions, loadInput, writeArtifacts, type JobResult, type ProcessorDeps } from '../processorDeps.js';

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
