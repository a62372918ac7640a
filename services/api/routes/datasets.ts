/** Uploads: POST /v1/datasets (.npy, .csv) and POST /v1/backbones (.onnx), with their GET and DELETE. */
import multipart from '@fastify/multipart';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { datasetDoc } from '../../datasets.js';
import { ApiError, badRequest } from '../../errors.js';
import { BackboneDocSchema, DatasetDocSchema, errorResponses, IdParams } from '../schemas.js';

type Kind = 'dataset' | 'backbone';

/** Room for the multipart envelope around the file. */
const MULTIPART_OVERHEAD = 64 * 1024;

async function receiveUpload(app: FastifyInstance, req: FastifyRequest, kind: Kind) {
  if (req.principal!.admin) throw new ApiError(403, 'forbidden', 'the admin key can read and delete; upload with a tenant key');
  const limit = app.svc.config.maxUploadBytes;
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit + MULTIPART_OVERHEAD) {
    throw new ApiError(413, 'payload_too_large', `the upload (${declared} bytes) is larger than the limit of ${limit} bytes (IMMUNIZE_MAX_UPLOAD_BYTES)`);
  }
  if (!req.isMultipart()) {
    throw new ApiError(415, 'unsupported_media_type', 'expected multipart/form-data with the file in a field named "file"');
  }
  const part = await req.file();
  if (!part) throw badRequest('missing_file', 'no file in the request; expected multipart/form-data with a field named "file"');
  if (part.fieldname !== 'file') {
    part.file.resume();
    throw badRequest('missing_file', `the file came in a field named ${JSON.stringify(part.fieldname)}; expected "file"`);
  }
  try {
    return await app.svc.datasets.ingest(req.principal!, kind, { filename: part.filename, stream: part.file });
  } finally {
    // Whatever was not read (a refused upload) is drained so that the client gets the answer.
    part.file.resume();
  }
}

const consumes = ['multipart/form-data'];
const uploadBody = (what: string) => Type.Object({ file: Type.String({ format: 'binary', description: what }) }, { description: 'multipart/form-data' });

/** The upload routes, with the multipart parser: registered here only, its hooks run for these routes alone. */
export async function datasetRoutes(fastify: FastifyInstance): Promise<void> {
  const limit = fastify.svc.config.maxUploadBytes;
  await fastify.register(multipart, { limits: { fileSize: limit, files: 1, fields: 8, parts: 10, fieldSize: 4096, headerPairs: 100 } });
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const noValidation = () => () => true;

  app.post(
    '/datasets',
    {
      schema: {
        tags: ['datasets'],
        summary:
          'Upload a dataset: .npy (N×D float32/float64 features, N×C×H×W float32 images, or a label vector), .csv with a header row, or an uncompressed .tar of PNG/JPEG images',
        consumes,
        body: uploadBody('the dataset file; its name must end in .npy, .csv or .tar'),
        response: {
          201: Type.Object({
            id: Type.String(),
            sha256: Type.String(),
            format: Type.String(),
            rows: Type.Integer(),
            cols: Type.Optional(Type.Integer()),
            classes: Type.Optional(Type.Array(Type.String())),
          }),
          ...errorResponses(400, 401, 413, 415, 429, 503, 507),
        },
      },
      validatorCompiler: noValidation,
    },
    async (req, reply) => {
      const r = await receiveUpload(app, req, 'dataset');
      return reply.code(201).send({ id: r.id, sha256: r.sha256, format: r.format, rows: r.rows!, cols: r.cols, ...(r.classes ? { classes: r.classes } : {}) });
    },
  );

  app.post(
    '/backbones',
    {
      schema: {
        tags: ['backbones'],
        summary: 'Upload a backbone (.onnx)',
        consumes,
        body: uploadBody('the ONNX model; its name must end in .onnx'),
        response: {
          201: Type.Object({ id: Type.String(), sha256: Type.String(), inputs: Type.Array(Type.Unknown()), outputs: Type.Array(Type.Unknown()) }),
          ...errorResponses(400, 401, 413, 415, 429, 503, 507),
        },
      },
      validatorCompiler: noValidation,
    },
    async (req, reply) => {
      const r = await receiveUpload(app, req, 'backbone');
      return reply.code(201).send({ id: r.id, sha256: r.sha256, inputs: r.inputs ?? [], outputs: r.outputs ?? [] });
    },
  );

  for (const kind of ['dataset', 'backbone'] as const) {
    const path = `/${kind}s/:id`;
    app.get(
      path,
      {
        schema: {
          tags: [`${kind}s`],
          summary: `A ${kind}'s metadata`,
          params: IdParams,
          response: { 200: Type.Ref(kind === 'dataset' ? DatasetDocSchema : BackboneDocSchema), ...errorResponses(401, 404) },
        },
      },
      async (req, reply) => reply.send(datasetDoc(await app.svc.datasets.mustGet(req.principal!, kind, req.params.id)) as never),
    );
    app.delete(
      path,
      {
        schema: {
          tags: [`${kind}s`],
          summary: `Delete a ${kind}: its bytes and its record`,
          params: IdParams,
          response: { 204: Type.Null(), ...errorResponses(401, 404) },
        },
      },
      async (req, reply) => {
        await app.svc.datasets.remove(req.principal!, kind, req.params.id);
        return reply.code(204).send(null);
      },
    );
  }
}
