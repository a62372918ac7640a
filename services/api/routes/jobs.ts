/** Jobs: submit, read, list, cancel/purge, follow (SSE) and download artifacts. One function per route. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest, FastifySchemaCompiler, RawServerDefault } from 'fastify';
import { CodedError } from '../../../workers/errorTable.js';
import { JobSpecSchema, parseJobSpec, type ModeJobSpec } from '../../../workers/jobSpec.js';
import { TERMINAL_STATUSES, type JobStatus } from '../../../workers/ports.js';
import { isArtifactName, ARTIFACT_TYPES } from '../../../workers/staging.js';
import { badRequest, notFound } from '../../errors.js';
import { docEventId, jobDoc, type FeedEvent, type JobDoc } from '../../jobs.js';
import { JobViews } from '../../jobViews.js';
import type { JobRecord } from '../../records.js';
import { errorResponses, IdParams, JobDocSchema, JobStatusSchema } from '../schemas.js';

type App = FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, FastifyBaseLogger, TypeBoxTypeProvider>;

const SubmitAnswer = Type.Object({ id: Type.String(), status: JobStatusSchema });
const CancelAnswer = Type.Object({ id: Type.String(), status: JobStatusSchema, purged: Type.Optional(Type.Boolean()) });

const SSE_HEARTBEAT_MS = 15_000;

function eventName(status: JobStatus): string {
  return status === 'completed' || status === 'failed' || status === 'cancelled' ? status : 'progress';
}

/**
 * The body of POST /jobs is validated by parseJobSpec, the parser the CLI uses too (its messages, invalid_spec on
 * failure); the JSON schema documents the body. A valid body is replaced by the parsed spec, defaults filled.
 * The headers are read by the handler as they are.
 */
const specValidator: FastifySchemaCompiler<unknown> = ({ httpPart }) => {
  if (httpPart !== 'body') return () => true;
  return (body: unknown) => {
    try {
      return { value: parseJobSpec(body) };
    } catch (err) {
      return { error: new CodedError('spec.INVALID', err instanceof Error ? err.message : String(err), { cause: err }) };
    }
  };
};

/** Each submission's body as sent (before parsing filled in the defaults): its Idempotency-Key is bound to it. */
const bodiesAsSent = new WeakMap<FastifyRequest, unknown>();

function submitJob(app: App): void {
  app.post(
    '/jobs',
    {
      schema: {
        tags: ['jobs'],
        summary: 'Submit a job. The same Idempotency-Key with the same body gives the same job; with another body, 409',
        headers: Type.Object({ 'idempotency-key': Type.Optional(Type.String({ description: 'makes the submission idempotent for 24 h' })) }),
        body: JobSpecSchema,
        response: { 202: SubmitAnswer, ...errorResponses(400, 401, 404, 409, 429, 503) },
      },
      validatorCompiler: specValidator,
      // The admin key is refused before its body is looked at. A callback hook: no promise a submission.
      preValidation: (req, _reply, done) => {
        try {
          app.svc.jobs.assertMaySubmit(req.principal!);
        } catch (err) {
          return done(err as Error);
        }
        bodiesAsSent.set(req, req.body);
        done();
      },
    },
    async (req, reply) => {
      const key = req.headers['idempotency-key'];
      const r = await app.svc.jobs.submit(req.principal!, {
        // specValidator has parsed it.
        spec: req.body as ModeJobSpec,
        body: bodiesAsSent.get(req),
        idempotencyKey: typeof key === 'string' ? key : undefined,
      });
      if (!r.created) void reply.header('idempotent-replayed', 'true');
      return reply.code(202).header('location', `/v1/jobs/${r.id}`).send({ id: r.id, status: r.status });
    },
  );
}

function listJobs(app: App): void {
  app.get(
    '/jobs',
    {
      schema: {
        tags: ['jobs'],
        summary: 'List jobs, newest first',
        querystring: Type.Object({
          limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }),
          cursor: Type.Optional(Type.String({ maxLength: 64 })),
          tenant: Type.Optional(Type.String({ maxLength: 64, description: 'admin key only' })),
        }),
        response: {
          200: Type.Object({ items: Type.Array(Type.Ref(JobDocSchema)), nextCursor: Type.Union([Type.String(), Type.Null()]) }),
          ...errorResponses(400, 401, 503),
        },
      },
    },
    async (req) => app.svc.jobs.list(req.principal!, req.query.limit, req.query.cursor, req.query.tenant),
  );
}

/** A document already serialized (as the route's schema serializes it) is sent as it is under this type. */
const JSON_UTF8 = 'application/json; charset=utf-8';

function getJob(app: App): void {
  const docs = new JobViews();
  app.get(
    '/jobs/:id',
    {
      schema: {
        tags: ['jobs'],
        summary: 'A job: status, progress, metrics summary, artifacts',
        params: IdParams,
        response: { 200: Type.Ref(JobDocSchema), ...errorResponses(401, 404, 503) },
      },
    },
    async (req, reply) => {
      const doc = await app.svc.jobs.mustGetView(req.principal!, req.params.id, docs, (r) => reply.serializeInput(jobDoc(r), '200') as string);
      // The schema's type is that of the document; a string under a JSON type is sent as the serialized document.
      return reply.type(JSON_UTF8).send(doc as unknown as JobDoc);
    },
  );
}

function cancelJob(app: App): void {
  app.delete(
    '/jobs/:id',
    {
      schema: {
        tags: ['jobs'],
        summary: 'Cancel a job; with purge=true also delete its record and artifacts',
        params: IdParams,
        querystring: Type.Object({ purge: Type.Boolean({ default: false }) }),
        response: { 202: CancelAnswer, ...errorResponses(401, 404, 503) },
      },
    },
    async (req, reply) => reply.code(202).send(await app.svc.jobs.cancel(req.principal!, req.params.id, req.query.purge)),
  );
}

/** The SSE reconnection delay a stream asks of its client, in ms; also the Retry-After of an outage. */
const SSE_RETRY_MS = 5000;

/**
 * Follows a job on an open event stream. The first event is the job's current state (the record the route has just
 * read); after it, each change the job's feed reads, until the job ends, is purged or the client goes.
 *
 * While Redis is not answering, the stream says so once (`event: unavailable`: the last state sent, with an
 * `unavailable` member that gives the code and the retry hint) and stays open; the feed keeps reading, and the
 * first read that succeeds is sent whether or not it changed. Each state event has an id (a digest of the
 * document); a client that reconnects, with Last-Event-ID or without, is sent the job's current state first.
 */
function streamJobEvents(app: App, first: JobRecord, res: ServerResponse): void {
  const id = first.id;
  let last = JSON.stringify(jobDoc(first));
  let paused = false;
  let done = false;
  let stopFollowing = () => undefined as void;
  const finish = () => {
    if (done) return;
    done = true;
    stopFollowing();
    clearInterval(beat);
    res.end();
  };
  const send = (status: JobStatus, data: string, eventId = docEventId(data)) => {
    res.write(`id: ${eventId}\nevent: ${eventName(status)}\ndata: ${data}\n\n`);
    if (TERMINAL_STATUSES.has(status)) finish();
  };
  const onFeed = (e: FeedEvent) => {
    if (done) return;
    if (e.kind === 'gone') {
      res.write(`event: cancelled\ndata: ${JSON.stringify({ id, status: 'cancelled', purged: true })}\n\n`);
      finish();
    } else if (e.kind === 'unavailable') {
      if (paused) return;
      paused = true;
      const unavailable = e.redis
        ? { code: 'redis_unavailable', message: 'the job store (Redis) is not answering; this stream resumes when it is back', retryAfter: SSE_RETRY_MS / 1000 }
        : { code: 'internal', message: 'the job could not be read; this stream tries again', retryAfter: SSE_RETRY_MS / 1000 };
      res.write(`retry: ${SSE_RETRY_MS}\nevent: unavailable\ndata: ${JSON.stringify({ ...(JSON.parse(last) as object), unavailable })}\n\n`);
    } else if (e.data !== last || paused) {
      paused = false;
      last = e.data;
      send(e.status, e.data, e.eventId);
    }
  };
  const beat = setInterval(() => {
    if (!done) res.write(': keep-alive\n\n');
  }, SSE_HEARTBEAT_MS);
  res.on('close', finish);
  res.write(`retry: ${SSE_RETRY_MS}\n: connected\n\n`);
  send(first.status, last);
  if (!done) stopFollowing = app.svc.jobs.follow(id, onFeed);
}

function followJob(app: App): void {
  app.get(
    '/jobs/:id/events',
    {
      schema: {
        tags: ['jobs'],
        summary:
          'Server-Sent Events: the current state, progress, then completed, failed or cancelled; each carries the job document. ' +
          'While Redis is away the stream sends `unavailable` and resumes when it is back; a new request (Last-Event-ID or not) starts with the current state',
        params: IdParams,
        headers: Type.Object({ 'last-event-id': Type.Optional(Type.String({ description: 'accepted; the stream always starts with the current state' })) }),
        produces: ['text/event-stream'],
        response: { ...errorResponses(401, 404, 503) },
      },
    },
    async (req, reply) => {
      const first = await app.svc.jobs.mustGet(req.principal!, req.params.id);
      reply.hijack();
      reply.raw.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
        'x-request-id': req.id,
      });
      streamJobEvents(app, first, reply.raw);
    },
  );
}

function downloadArtifact(app: App): void {
  app.get(
    '/jobs/:id/artifacts/:name',
    {
      schema: {
        tags: ['jobs'],
        summary: `Download an artifact: ${Object.keys(ARTIFACT_TYPES).join(', ')}`,
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }), name: Type.String({ minLength: 1, maxLength: 256 }) }),
        response: { ...errorResponses(400, 401, 404, 503) },
      },
    },
    async (req, reply) => {
      const { id, name } = req.params;
      if (!isArtifactName(name)) {
        throw badRequest(
          'invalid_artifact_name',
          `${JSON.stringify(name)} is not an artifact name; artifacts are named ${Object.keys(ARTIFACT_TYPES).join(', ')}`,
        );
      }
      const r = await app.svc.jobs.mustGet(req.principal!, id);
      const artifact = r.artifacts.find((a) => a.name === name);
      if (!artifact) throw notFound(`job ${id} has no artifact ${name}${r.status === 'completed' ? '' : ` (the job is ${r.status})`}`);
      let opened;
      try {
        opened = await app.svc.store.openArtifact(r.id, artifact.file);
      } catch {
        throw notFound(`the bytes of artifact ${name} of job ${id} are gone`);
      }
      return reply
        .type(artifact.contentType)
        .header('content-length', String(opened.size))
        .header('etag', `"${artifact.sha256}"`)
        .header('x-content-sha256', artifact.sha256)
        .header('content-disposition', `attachment; filename="${name}"`)
        .header('x-content-type-options', 'nosniff')
        .header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox")
        .send(opened.stream);
    },
  );
}

export async function jobRoutes(fastify: FastifyInstance): Promise<void> {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  for (const route of [submitJob, listJobs, getJob, cancelJob, followJob, downloadArtifact]) route(app);
}
