/**
 * Last-block jobs (mode "last-block"): the spec's paths resolved, the deep runner in models/deep, and its
 * artifacts (metrics.json, curves.json, report.html, immunized.onnx) written to the sink.
 */
import { runDeep, type DeepInput, type DeepMetrics } from '../../models/deep/run.js';
import type { ArtifactRecord } from '../artifacts.js';
import type { DataRefSpec, LastBlockJobSpec } from '../jobSpec.js';
import type { ProcessorDeps } from '../processorDeps.js';
import { renderReport, REPORT_CONTENT_TYPE } from '../report/render.js';

export interface DeepJobResult {
  metrics: DeepMetrics;
  artifacts: ArtifactRecord[];
}

export async function runLastBlockJob(spec: LastBlockJobSpec, deps: ProcessorDeps, signal?: AbortSignal): Promise<DeepJobResult> {
  const resolve = deps.resolve ?? ((p: string) => p);
  const ref = async (r: DataRefSpec) => ({ images: await resolve(r.dataset), labels: r.labels ? await resolve(r.labels) : undefined, limit: r.rowLimit });
  const input: DeepInput = {
    backbone: await resolve(spec.backbone),
    benign: await ref(spec.benign),
    harmful: await ref(spec.harmful),
    benignTest: spec.benignTest ? await ref(spec.benignTest) : undefined,
    preprocess: spec.preprocess,
  };
  const result = await runDeep(
    input,
    {
      cutTensor: spec.cutTensor,
      featureTensor: spec.featureTensor,
      steps: spec.steps,
      seed: spec.seed,
      lambdaBenign: spec.lambdaBenign,
      lambdaHarmful: spec.lambdaHarmful,
      allowSlowBackend: spec.allowSlowBackend,
      timeBudgetSeconds: spec.timeBudgetSeconds,
      kappaBudget: spec.kappaBudget,
    },
    deps.observe,
    signal,
  );
  const { metrics, curves, onnx } = result;
  const artifacts = [
    await deps.sink.put('metrics.json', Buffer.from(JSON.stringify(metrics, null, 2)), 'application/json'),
    await deps.sink.put('curves.json', Buffer.from(JSON.stringify(curves)), 'application/json'),
    await deps.sink.put('report.html', Buffer.from(renderReport(metrics, curves, { title: 'last-block mode' })), REPORT_CONTENT_TYPE),
    await deps.sink.put('immunized.onnx', Buffer.from(onnx.buffer, onnx.byteOffset, onnx.byteLength), 'application/octet-stream'),
  ];
  return { metrics, artifacts };
}
