/**
 * Deep mode (last block): train the backbone's last block in tfjs against linear probing for the harmful task.
 * See split.ts (cut and tail), tail.ts/ops.ts (the tfjs computation), spectral.ts (the float64 objective),
 * train.ts (SGD with the acceptance rule), evaluate.ts (the paper's draws) and run.ts (the job).
 */
import { OnnxGraph } from '../backbones/graph.js';
import { planTail } from './split.js';

export { DeepError, isDeepError, type DeepErrorReason } from './errors.js';
export { runDeep, DEEP_DEFAULTS, type DeepInput, type DeepMetrics, type DeepOptions, type DeepResult } from './run.js';
export { FAST_BACKEND_ADVICE, selectBackend, type TfBackend } from './backend.js';

export interface TailSummary {
  cutTensor: string;
  featureTensor: string;
  ops: string[];
  trainable: number;
  description: string;
}

/**
 * Checks a backbone for last-block mode without onnxruntime or tfjs, e.g. when a job is submitted: throws the
 * BackboneError or DeepError the job would fail with (unreadable file, unknown cut tensor, unsupported operator).
 */
export function inspectTail(bytes: Uint8Array, label: string, opts: { cutTensor?: string; featureTensor?: string } = {}): TailSummary {
  const graph = OnnxGraph.parse(bytes, label);
  graph.input();
  const plan = planTail(graph, opts);
  return { cutTensor: plan.cut, featureTensor: plan.features, ops: plan.ops, trainable: plan.trainable.length, description: plan.description };
}
