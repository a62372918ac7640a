/** Schemas shared by several routes (each route's own schema sits next to its handler). */
import { Type } from '@sinclair/typebox';

export const ErrorSchema = Type.Object(
  {
    error: Type.Object({
      code: Type.String({ description: 'stable, lower_snake_case: invalid_npy, dimension_mismatch, not_found, payload_too_large, redis_unavailable, …' }),
      message: Type.String({ description: 'what was wrong, for people' }),
    }),
  },
  { $id: 'Error', title: 'Error' },
);

export const errorResponses = (...codes: number[]) =>
  Object.fromEntries(codes.map((c) => [c, Type.Ref(ErrorSchema)])) as Record<number, ReturnType<typeof Type.Ref>>;

export const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });

export const ArtifactSchema = Type.Object({
  name: Type.String(),
  size: Type.Integer(),
  sha256: Type.String(),
  contentType: Type.String(),
});

export const JobStatusSchema = Type.Union(
  [Type.Literal('queued'), Type.Literal('running'), Type.Literal('completed'), Type.Literal('failed'), Type.Literal('cancelled')],
  { description: 'queued, running, completed, failed or cancelled' },
);

const JobErrorSchema = Type.Object({ code: Type.String(), message: Type.String() });

export const JobDocSchema = Type.Object(
  {
    id: Type.String(),
    status: JobStatusSchema,
    progress: Type.Number({ minimum: 0, maximum: 1 }),
    stage: Type.Object({}, { additionalProperties: true, description: 'the engine phase and step the progress comes from' }),
    attempts: Type.Integer({ description: 'attempts started so far (a worker that died and a retry each count)' }),
    createdAt: Type.String({ format: 'date-time' }),
    startedAt: Type.Optional(Type.String({ format: 'date-time' })),
    finishedAt: Type.Optional(Type.String({ format: 'date-time' })),
    metrics: Type.Optional(Type.Object({}, { additionalProperties: true, description: 'summary; the full document is the metrics.json artifact' })),
    artifacts: Type.Array(ArtifactSchema),
    error: Type.Optional(JobErrorSchema),
    lastError: Type.Optional(JobErrorSchema),
    cancelRequested: Type.Optional(Type.Boolean()),
    spec: Type.Unknown(),
  },
  { $id: 'Job', title: 'Job' },
);

export const DatasetDocSchema = Type.Object(
  {
    id: Type.String(),
    sha256: Type.String(),
    format: Type.String(),
    rows: Type.Integer({ description: 'rows, or images for an image archive' }),
    cols: Type.Optional(Type.Integer({ description: 'columns (absent for an image archive)' })),
    bytes: Type.Integer(),
    filename: Type.String(),
    createdAt: Type.String({ format: 'date-time' }),
    dtype: Type.Optional(Type.String()),
    shape: Type.Optional(Type.Array(Type.Integer())),
    header: Type.Optional(Type.Array(Type.String())),
    classes: Type.Optional(Type.Array(Type.String(), { description: 'image archive: the class folders, which give the labels' })),
  },
  { $id: 'Dataset', title: 'Dataset' },
);

const TensorInfo = Type.Object({
  name: Type.String(),
  elemType: Type.Union([Type.String(), Type.Null()]),
  shape: Type.Union([Type.Array(Type.Union([Type.Integer(), Type.String(), Type.Null()])), Type.Null()]),
});

export const BackboneDocSchema = Type.Object(
  {
    id: Type.String(),
    sha256: Type.String(),
    format: Type.String(),
    bytes: Type.Integer(),
    filename: Type.String(),
    createdAt: Type.String({ format: 'date-time' }),
    inputs: Type.Array(TensorInfo),
    outputs: Type.Array(TensorInfo),
  },
  { $id: 'Backbone', title: 'Backbone' },
);
