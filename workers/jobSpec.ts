import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

const DataRef = Type.Object(
  {
    dataset: Type.String({ minLength: 1, description: 'a .npy (N×D float32/float64) or .csv with a header row' }),
    labels: Type.Optional(Type.String({ minLength: 1, description: 'a .npy or single-column .csv of N labels' })),
    labelColumn: Type.Optional(Type.String({ minLength: 1 })),
    dropColumns: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
    rowLimit: Type.Optional(Type.Integer({ minimum: 2 })),
  },
  { additionalProperties: false },
);

/** One schema for the CLI, the API and the worker; the fields mirror the CLI's flags. */
export const JobSpecSchema = Type.Object(
  {
    backbone: Type.Optional(Type.String({ minLength: 1 })),
    benign: DataRef,
    harmful: DataRef,
    benignTest: Type.Optional(DataRef),
    task: Type.Optional(Type.Union([Type.Literal('regression'), Type.Literal('binary'), Type.Literal('multiclass')])),
    method: Type.Union([Type.Literal('closed-form'), Type.Literal('gradient'), Type.Literal('paper')], { default: 'gradient' }),
    mode: Type.Literal('linear-head', { default: 'linear-head' }),
    steps: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
    kappaBudget: Type.Number({ exclusiveMinimum: 1, default: 1e4 }),
    seed: Type.Integer({ minimum: 0, default: 0 }),
    lambdaBenign: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
    lambdaHarmful: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
    alpha: Type.Optional(Type.Number({ minimum: 0 })),
    rtol: Type.Optional(Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 1 })),
    init: Type.Union([Type.Literal('identity'), Type.Literal('random')], { default: 'identity' }),
  },
  { additionalProperties: false },
);

export type JobSpec = Static<typeof JobSpecSchema>;
export type DataRefSpec = Static<typeof DataRef>;

function describe(schema: unknown, fallback: string): string {
  const options = (schema as { anyOf?: Array<{ const?: unknown }> }).anyOf;
  if (options && options.every((o) => o.const !== undefined)) return `expected one of ${options.map((o) => JSON.stringify(o.const)).join(', ')}`;
  return fallback;
}

export class SpecError extends Error {
  readonly code = 'BAD_SPEC';
}

/** Fills defaults and validates; the error lists every problem with its path. */
export function parseJobSpec(input: unknown): JobSpec {
  const withDefaults = Value.Default(JobSpecSchema, structuredClone(input ?? {}));
  const errors = [...Value.Errors(JobSpecSchema, withDefaults)];
  if (errors.length > 0) {
    const lines = errors.slice(0, 10).map((e) => `${e.path || '/'}: ${describe(e.schema, e.message)}`);
    throw new SpecError(`invalid job spec: ${lines.join('; ')}`);
  }
  const spec = withDefaults as JobSpec;
  for (const side of ['benign', 'harmful', 'benignTest'] as const) {
    const ref = spec[side];
    if (ref?.labels && ref.labelColumn) throw new SpecError(`${side}: give labels or labelColumn, not both`);
  }
  if (spec.backbone) throw new SpecError('backbone jobs are not supported by this build: pass precomputed features (.npy or .csv)');
  return spec;
}
