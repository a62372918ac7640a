/**
 * The job registry: every job the queue can carry, by name, with the schema of its payload, the function that
 * validates it and the processor that runs it. The API documents submissions with its schema, the worker and the
 * engine thread look processors up in it, and both check it once at startup.
 */
import type { TSchema } from '@sinclair/typebox';
import { CodedError } from './errorTable.js';
import { JobSpecSchema, parseJobSpec, type JobSpec, type ModeJobSpec } from './jobSpec.js';
import { assertModes, runJob } from './modes.js';
import type { JobResult, ProcessorDeps } from './processorDeps.js';
import type { DatasetRef } from './ports.js';

export interface JobDefinition<P> {
  /** One line for people (logs, OpenAPI). */
  description: string;
  /** The TypeBox schema of the payload, as documented. */
  schema: TSchema;
  /** Validates and fills defaults; throws an error carrying a message that says what is wrong. */
  parse(input: unknown): P;
  /** Dataset ids the payload refers to, with the field each one came from (e.g. "benign.dataset"). */
  datasetRefs(payload: P): DatasetRef[];
  /** Runs the job; called inside the engine thread, never on a worker's event loop. */
  run(payload: P, deps: ProcessorDeps, signal: AbortSignal): Promise<JobResult>;
}

function immunizeRefs(spec: JobSpec): DatasetRef[] {
  const refs: DatasetRef[] = [];
  if (spec.backbone) refs.push({ field: 'backbone', id: spec.backbone, role: 'backbone' });
  for (const side of ['benign', 'harmful', 'benignTest'] as const) {
    const ref = spec[side];
    if (!ref) continue;
    refs.push({ field: `${side}.dataset`, id: ref.dataset, role: 'features' });
    if (ref.labels) refs.push({ field: `${side}.labels`, id: ref.labels, role: 'labels' });
  }
  return refs;
}

const immunizeJob: JobDefinition<ModeJobSpec> = {
  description: 'immunize features against linear probing for the harmful task',
  schema: JobSpecSchema,
  parse: parseJobSpec,
  datasetRefs: immunizeRefs,
  // One entry for every mode: the spec's mode picks the processor (see modes.ts).
  run: (spec, deps, signal) => runJob(spec, deps, signal),
};

export const JOB_REGISTRY = {
  immunize: immunizeJob,
} as const;

export type JobName = keyof typeof JOB_REGISTRY;
export type JobPayload<N extends JobName> = (typeof JOB_REGISTRY)[N] extends JobDefinition<infer P> ? P : never;

export class UnknownJobError extends Error {
  readonly code = 'UNKNOWN_JOB';
  constructor(name: string) {
    super(`unknown job name ${JSON.stringify(name)}; known jobs: ${Object.keys(JOB_REGISTRY).join(', ')}`);
  }
}

export function isJobName(name: string): name is JobName {
  return Object.hasOwn(JOB_REGISTRY, name);
}

/**
 * Validates a payload for the named job once, where it enters (a job's bytes from Redis are untrusted); what it
 * returns travels on typed, to the engine thread and the processor, and is not parsed again. A payload that does
 * not parse fails for good, as invalid_spec.
 */
export function parseJobPayload<N extends JobName>(name: N, payload: unknown): JobPayload<N> {
  try {
    return JOB_REGISTRY[name].parse(payload) as JobPayload<N>;
  } catch (err) {
    throw new CodedError('spec.INVALID', err instanceof Error ? err.message : String(err), { cause: err });
  }
}

export function jobDefinition(name: string): JobDefinition<unknown> {
  if (!isJobName(name)) throw new UnknownJobError(name);
  return JOB_REGISTRY[name] as unknown as JobDefinition<unknown>;
}

const NAME_PATTERN = /^[a-z][a-z0-9-]{0,31}$/;

/**
 * Startup check: every entry is complete and its schema is an object schema. Throws with the list of
 * problems, so that a worker or an API built with a broken registry refuses to start.
 */
export function assertRegistry(registry: Record<string, JobDefinition<unknown>> = JOB_REGISTRY as unknown as Record<string, JobDefinition<unknown>>): string[] {
  assertModes();
  const problems: string[] = [];
  const names = Object.keys(registry);
  if (names.length === 0) problems.push('the job registry is empty');
  for (const name of names) {
    const def = registry[name];
    if (!NAME_PATTERN.test(name)) problems.push(`${name}: a job name must match ${NAME_PATTERN}`);
    if (!def || typeof def !== 'object') {
      problems.push(`${name}: no definition`);
      continue;
    }
    for (const fn of ['parse', 'datasetRefs', 'run'] as const) {
      if (typeof def[fn] !== 'function') problems.push(`${name}: ${fn} is not a function`);
    }
    const schema = def.schema as { type?: unknown; properties?: unknown } | undefined;
    if (!schema || schema.type !== 'object' || typeof schema.properties !== 'object') {
      problems.push(`${name}: the payload schema must be an object schema`);
    }
    if (typeof def.description !== 'string' || def.description.length === 0) problems.push(`${name}: no description`);
  }
  if (problems.length > 0) throw new Error(`job registry check failed: ${problems.join('; ')}`);
  return names;
}
