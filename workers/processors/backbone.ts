/** A backbone job in linear-head mode: images → features (streamed into K) → engine → artifacts, immunized.onnx among them. */
import { Backbone } from '../../models/backbones/index.js';
import { extractImageSets, type ImageSet } from '../../models/backbones/features.js';
import { immunize, type EngineInput } from '../../models/engine/index.js';
import { checkPair } from '../../models/io/index.js';
import type { BackboneJobSpec } from '../jobSpec.js';
import { engineOptions, writeArtifacts, type BackboneMetrics, type JobResult, type ProcessorDeps } from '../processorDeps.js';

/** Rows of the first benign batch replayed through the immunized checkpoint to check it. */
const CHECK_ROWS = 16;

/** A job with a backbone: images → features (streamed into K) → engine → artifacts, immunized.onnx among them. */
export async function runBackboneJob(spec: BackboneJobSpec, deps: ProcessorDeps, signal?: AbortSignal): Promise<JobResult> {
  const resolve = deps.resolve ?? ((p: string) => p);
  const observe = deps.observe;
  observe?.({ phase: 'load', message: 'loading the backbone' });
  const backbone = await Backbone.load(await resolve(spec.backbone), {
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
      warnings.push({
        field: 'checkpoint',
        reason: `immunized.onnx differs from the original beyond rounding (logits rel. ${checkpoint.maxRelLogitDiff}, features ${checkpoint.featureRoundingRatio}× the float32 bound)`,
      });
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
