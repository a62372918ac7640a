/** Last-block checks that need neither onnxruntime nor tfjs, for submit time. */
import { OnnxGraph } from '../backbones/graph.js';
import { planTail } from './split.js';

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
