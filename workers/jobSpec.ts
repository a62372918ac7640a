import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { Value } from '@sinclair/typebox/value';
import { SpecError } from './specError.js';

export { SpecError };

const DataRef = Type.Object(
  {
    dataset: Type.String({
      minLength: 1,
      description: 'a .npy (N×D float32/float64) or .csv with a header row; with a backbone: images, as a float32 N×C×H×W .npy, a folder or a .tar of PNG/JPEG',
    }),
    labels: Type.Optional(Type.String({ minLength: 1, description: 'a .npy or single-column .csv of N labels' })),
    labelColumn: Type.Optional(Type.String({ minLength: 1 })),
    dropColumns: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
    rowLimit: Type.Optional(Type.Integer({ minimum: 2 })),
  },
  { additionalProperties: false },
);

const Preprocess = Type.Object(
  {
    resize: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 4096, description: 'shorter side after resizing (default 256, or round(S·256/224) for a model fixed at S×S)' }),
    ),
    crop: Type.Optional(Type.Integer({ minimum: 1, maximum: 4096, description: "centre crop side (default 224, or the model's fixed input size)" })),
    mean: Type.Optional(
      Type.Array(Type.Number(), { minItems: 1, maxItems: 4, description: 'per channel, on [0, 1] pixels (default ImageNet 0.485, 0.456, 0.406)' }),
    ),
    std: Type.Optional(
      Type.Array(Type.Number({ exclusiveMinimum: 0 }), { minItems: 1, maxItems: 4, description: 'per channel (default ImageNet 0.229, 0.224, 0.225)' }),
    ),
  },
  { additionalProperties: false, description: 'how image files become the backbone input; .npy images come preprocessed' },
);

/** One schema for the CLI, the API and the worker; the fields mirror the CLI's flags. */
export const JobSpecSchema = Type.Object(
  {
    backbone: Type.Optional(Type.String({ minLength: 1, description: 'an ONNX backbone (opset 17, input N×C×H×W); benign and harmful are then images' })),
    featureTensor: Type.Optional(
      Type.String({ minLength: 1, description: 'the backbone tensor to take features from (default: the input of the final classifier)' }),
    ),
    preprocess: Type.Optional(Preprocess),
    benign: DataRef,
    harmful: DataRef,
    benignTest: Type.Optional(DataRef),
    task: Type.Optional(Type.Union([Type.Literal('regression'), Type.Literal('binary'), Type.Literal('multiclass')])),
    method: Type.Union([Type.Literal('spectral'), Type.Literal('closed-form'), Type.Literal('gradient'), Type.Literal('paper')], { default: 'spectral' }),
    mode: Type.Union([Type.Literal('linear-head'), Type.Literal('last-block')], {
      default: 'linear-head',
      description: "linear-head: a linear map θ on the features; last-block: train the backbone's last block (needs a backbone)",
    }),
    cutTensor: Type.Optional(
      Type.String({ minLength: 1, description: 'last-block: the tensor the trained tail starts from (default: the input of the last stage or encoder block)' }),
    ),
    allowSlowBackend: Type.Optional(
      Type.Boolean({ description: 'last-block: run even when the step-time estimate exceeds timeBudgetSeconds on the available tfjs backend' }),
    ),
    timeBudgetSeconds: Type.Optional(
      Type.Number({ exclusiveMinimum: 0, description: 'last-block: the estimated training time above which a job is refused (default 1800)' }),
    ),
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

/** The fields only a job with a backbone, or only a last-block job, may carry. */
const BACKBONE_FIELDS = ['backbone', 'featureTensor', 'preprocess'] as const;
const LAST_BLOCK_FIELDS = ['cutTensor', 'allowSlowBackend', 'timeBudgetSeconds'] as const;

/** A features job: precomputed features, a linear map θ on them. */
export const FeaturesJobSpecSchema = Type.Composite(
  [Type.Omit(JobSpecSchema, ['mode', ...BACKBONE_FIELDS, ...LAST_BLOCK_FIELDS]), Type.Object({ mode: Type.Literal('linear-head') })],
  { additionalProperties: false },
);
/** A backbone job in linear-head mode: θ on the backbone's features, written into immunized.onnx. */
export const BackboneJobSpecSchema = Type.Composite(
  [
    Type.Omit(JobSpecSchema, ['mode', 'backbone', ...LAST_BLOCK_FIELDS]),
    Type.Object({ mode: Type.Literal('linear-head'), backbone: Type.String({ minLength: 1 }) }),
  ],
  { additionalProperties: false },
);
/** A last-block job: the backbone's last block trained, no θ. */
export const LastBlockJobSpecSchema = Type.Composite(
  [Type.Omit(JobSpecSchema, ['mode', 'backbone']), Type.Object({ mode: Type.Literal('last-block'), backbone: Type.String({ minLength: 1 }) })],
  { additionalProperties: false },
);
/** A parsed spec is exactly one of the three, told apart by its mode and whether it has a backbone. */
export const ModeJobSpecSchema = Type.Union([FeaturesJobSpecSchema, BackboneJobSpecSchema, LastBlockJobSpecSchema]);

export type FeaturesJobSpec = JobSpec & { mode: 'linear-head'; backbone?: undefined };
export type BackboneJobSpec = JobSpec & { mode: 'linear-head'; backbone: string };
export type LastBlockJobSpec = JobSpec & { mode: 'last-block'; backbone: string };
export type ModeJobSpec = FeaturesJobSpec | BackboneJobSpec | LastBlockJobSpec;

export type JobMode = 'features' | 'backbone' | 'last-block';

/** Which processor runs a parsed spec. */
export function modeOf(spec: ModeJobSpec): JobMode {
  if (spec.mode === 'last-block') return 'last-block';
  return spec.backbone === undefined ? 'features' : 'backbone';
}
export type DataRefSpec = Static<typeof DataRef>;
export type PreprocessSpec = Static<typeof Preprocess>;

function describe(schema: unknown, fallback: string): string {
  const options = (schema as { anyOf?: Array<{ const?: unknown }> }).anyOf;
  if (options && options.every((o) => o.const !== undefined)) return `expected one of ${options.map((o) => JSON.stringify(o.const)).join(', ')}`;
  return fallback;
}

/** The two schemas' checks, compiled on first use (the API parses every submitted spec). */
let compiled: { spec: TypeCheck<typeof JobSpecSchema>; mode: TypeCheck<typeof ModeJobSpecSchema> } | null = null;
const checks = () => (compiled ??= { spec: TypeCompiler.Compile(JobSpecSchema), mode: TypeCompiler.Compile(ModeJobSpecSchema) });

function hasDefault(schema: unknown): boolean {
  if (Array.isArray(schema)) return schema.some(hasDefault);
  if (!schema || typeof schema !== 'object') return false;
  return Object.entries(schema).some(([k, v]) => k === 'default' || hasDefault(v));
}

/**
 * A copy of the spec with its defaults filled as Value.Default fills them; the input is left as it is. Every default
 * sits on a top-level field, so a shallow copy with the missing ones set is all it takes, without walking the schema
 * (or cloning the whole input) for each spec; should a nested field gain a default, this falls back to Value.Default
 * on a deep copy.
 */
const withDefaults: (value: unknown) => unknown = (() => {
  const fields = Object.entries(JobSpecSchema.properties as Record<string, { default?: unknown }>);
  if (fields.some(([, schema]) => Object.entries(schema).some(([k, v]) => k !== 'default' && hasDefault(v)))) {
    return (value: unknown) => Value.Default(JobSpecSchema, structuredClone(value));
  }
  const defaults = fields.filter(([, schema]) => 'default' in schema).map(([name, schema]) => [name, schema.default] as const);
  return (value: unknown) => {
    if (!value || typeof value !== 'object' || Array.isArray(value)) return value;
    const spec = Object.assign({}, value) as Record<string, unknown>;
    for (const [name, d] of defaults) if (spec[name] === undefined) spec[name] = d;
    return spec;
  };
})();

/** Fills defaults and validates; the error lists every problem with its path. */
export function parseJobSpec(input: unknown): ModeJobSpec {
  const filled = withDefaults(input ?? {});
  const errors = checks().spec.Check(filled) ? [] : [...Value.Errors(JobSpecSchema, filled)];
  if (errors.length > 0) {
    const lines = errors.slice(0, 10).map((e) => `${e.path || '/'}: ${describe(e.schema, e.message)}`);
    throw new SpecError(`invalid job spec: ${lines.join('; ')}`);
  }
  const spec = filled as JobSpec;
  const methodGiven = typeof input === 'object' && input !== null && 'method' in input;
  for (const side of ['benign', 'harmful', 'benignTest'] as const) {
    const ref = spec[side];
    if (ref?.labels && ref.labelColumn) throw new SpecError(`${side}: give labels or labelColumn, not both`);
  }
  if (spec.mode === 'last-block') {
    if (!spec.backbone) throw new SpecError('mode last-block trains a block of the backbone: give backbone (--backbone MODEL.onnx)');
    // Last-block mode trains the block by gradient steps; the linear-head default (spectral) does not apply to it.
    if (!methodGiven) spec.method = 'gradient';
    if (spec.method !== 'gradient')
      throw new SpecError(`mode last-block trains by gradient steps; method ${JSON.stringify(spec.method)} applies to linear-head mode only`);
  } else if (spec.cutTensor !== undefined || spec.allowSlowBackend !== undefined || spec.timeBudgetSeconds !== undefined) {
    throw new SpecError('cutTensor, allowSlowBackend and timeBudgetSeconds apply only to mode last-block');
  }
  if (!spec.backbone) {
    if (spec.featureTensor !== undefined || spec.preprocess !== undefined)
      throw new SpecError('featureTensor and preprocess apply only to jobs with a backbone');
  } else {
    for (const side of ['benign', 'harmful', 'benignTest'] as const) {
      const ref = spec[side];
      if (ref && (ref.labelColumn !== undefined || ref.dropColumns !== undefined)) {
        throw new SpecError(`${side}: with a backbone the data are images; give labels as a labels file (or class folders), not labelColumn/dropColumns`);
      }
    }
  }
  // The checks above leave exactly one of the three shapes; this says so to the type checker and guards the rules.
  if (!checks().mode.Check(spec)) throw new SpecError(`invalid job spec: it is none of a features, backbone or last-block job`);
  return spec as ModeJobSpec;
}
