/**
 * One processor per job mode, registered by name with the schema of the spec it takes: features (precomputed
 * features, θ on them), backbone (θ on a backbone's features, written into immunized.onnx) and last-block (the
 * backbone's last block trained). runJob is the one entry: the queue worker, the engine thread and the CLI all
 * come through it.
 */
import type { TSchema } from '@sinclair/typebox';
import {
  BackboneJobSpecSchema,
  FeaturesJobSpecSchema,
  LastBlockJobSpecSchema,
  modeOf,
  SpecError,
  type BackboneJobSpec,
  type FeaturesJobSpec,
  type JobMode,
  type LastBlockJobSpec,
  type ModeJobSpec,
} from './jobSpec.js';
import type { JobResult, ProcessorDeps, RunOptions } from './processorDeps.js';
import { runBackboneJob } from './processors/backbone.js';
import { runFeaturesJob } from './processors/features.js';
import { runLastBlockJob } from './processors/lastBlock.js';

export interface ModeProcessor<S> {
  description: string;
  schema: TSchema;
  run(spec: S, deps: ProcessorDeps, signal?: AbortSignal, options?: RunOptions): Promise<JobResult>;
}

export const MODE_REGISTRY: {
  features: ModeProcessor<FeaturesJobSpec>;
  backbone: ModeProcessor<BackboneJobSpec>;
  'last-block': ModeProcessor<LastBlockJobSpec>;
} = {
  features: { description: 'precomputed features: a linear map θ on them', schema: FeaturesJobSpecSchema, run: runFeaturesJob },
  backbone: { description: "a backbone's features: θ written into immunized.onnx", schema: BackboneJobSpecSchema, run: runBackboneJob },
  'last-block': { description: "a backbone's last block trained (no θ)", schema: LastBlockJobSpecSchema, run: runLastBlockJob },
};

/** Startup check: every mode has a processor and an object schema. */
export function assertModes(): JobMode[] {
  const problems: string[] = [];
  for (const [mode, p] of Object.entries(MODE_REGISTRY)) {
    if (typeof p.run !== 'function') problems.push(`${mode}: no processor`);
    const schema = p.schema as { type?: unknown; properties?: unknown };
    if (schema.type !== 'object' || typeof schema.properties !== 'object') problems.push(`${mode}: the spec schema must be an object schema`);
  }
  if (problems.length > 0) throw new Error(`job mode registry check failed: ${problems.join('; ')}`);
  return Object.keys(MODE_REGISTRY) as JobMode[];
}

/**
 * Runs a parsed spec with its mode's processor. `options` (a θ to score, data already loaded, report wording) come
 * from the CLI's evaluate and demo commands and apply to features jobs only.
 */
export function runJob(spec: ModeJobSpec, deps: ProcessorDeps, signal?: AbortSignal, options: RunOptions = {}): Promise<JobResult> {
  const mode = modeOf(spec);
  if (mode !== 'features' && (options.theta !== undefined || options.input !== undefined)) {
    return Promise.reject(new SpecError(`a given θ or preloaded data apply to features jobs only, not to a ${mode} job`));
  }
  switch (mode) {
    case 'features':
      return MODE_REGISTRY.features.run(spec as FeaturesJobSpec, deps, signal, options);
    case 'backbone':
      return MODE_REGISTRY.backbone.run(spec as BackboneJobSpec, deps, signal);
    case 'last-block':
      return MODE_REGISTRY['last-block'].run(spec as LastBlockJobSpec, deps, signal);
  }
}
