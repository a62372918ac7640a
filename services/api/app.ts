/**
 * The API as a Fastify plugin: server.ts boots it, tests register it on a bare instance and use inject().
 * Handlers reach the services through the `svc` decoration.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { LogController } from 'fastify';
import type { FastifyBaseLogger, FastifyError, FastifyInstance, FastifyReply, FastifyRequest, FastifyServerOptions, onResponseHookHandler } from 'fastify';
import type { Principal } from '../auth.js';
import type { Services } from '../context.js';
import { errorAnswer, errorBody, isRedisFull, isRedisUnavailable } from '../errors.js';
import type { Logger } from '../logger.js';
import { SESSION_COOKIE, SessionStore } from '../sessions.js';
import { authenticateThen } from './authenticate.js';
import { rateLimiter } from './rateLimit.js';
import { enabled, requestLogger } from './requestLogger.js';
import { adminQueueRoutes, QUEUES_PATH } from './routes/adminQueues.js';
import { dashboardRoutes } from './routes/dashboard.js';
import { datasetRoutes } from './routes/datasets.js';
import { healthRoutes } from './routes/health.js';
import { jobRoutes } from './routes/jobs.js';
import { reportRoutes } from './routes/report.js';
import { sessionRoutes } from './routes/session.js';
import { BackboneDocSchema, DatasetDocSchema, ErrorSchema, JobDocSchema } from './schemas.js';

declare module 'fastify' {
  interface FastifyInstance {
    svc: Services;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
}

export interface AppOptions {
  services: Services;
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** Fastify instance options that go with this app (request ids, validation); the logger is the caller's. */
export function fastifyOptions(logger?: Logger): FastifyServerOptions & { loggerInstance?: FastifyBaseLogger } {
  return {
    ...(logger ? { loggerInstance: logger as FastifyBaseLogger, childLoggerFactory: requestLogger } : { logger: false }),
    requestIdHeader: false,
    genReqId(req: IncomingMessage) {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    bodyLimit: 1024 * 1024,
    // One access line a request, written by the duration hook, rather than Fastify's two (incoming and completed),
    // each through a child logger made for the request.
    logController: new LogController({ disableRequestLogging: true }),
    ajv: { customOptions: { removeAdditional: false, useDefaults: true, coerceTypes: 'array', allErrors: false } },
  };
}

function statusCode(err: FastifyError): number {
  const s = err.statusCode;
  return typeof s === 'number' && s >= 400 && s < 600 ? s : 500;
}

export default async function app(fastify: FastifyInstance, opts: AppOptions): Promise<void> {
  const svc = opts.services;
  fastify.decorate('svc', svc);
  fastify.decorate('sessions', new SessionStore(svc.redis, svc.config, svc.keys));
  fastify.decorateRequest('principal', null);
  fastify.decorateRequest('session', null);
  for (const schema of [ErrorSchema, JobDocSchema, DatasetDocSchema, BackboneDocSchema]) fastify.addSchema(schema);

  addResponseHooks(fastify, svc);
  await registerOpenApiDocs(fastify);
  const observeUnmatched = durationObserver(svc, 'unmatched', fastify.log);
  fastify.setNotFoundHandler((req, reply) => {
    reply.raw.once('finish', () => observeUnmatched.call(fastify, req, reply, () => undefined));
    void reply.code(404).send(errorBody('not_found', `no route ${req.method} ${req.url.split('?')[0]}`));
  });
  fastify.setErrorHandler((err: FastifyError, req, reply) => answerError(svc, err, req, reply));

  await fastify.register(healthRoutes);
  await fastify.register(dashboardRoutes);
  await fastify.register(adminQueueRoutes, { prefix: QUEUES_PATH });
  await fastify.register(async (v1) => registerV1(v1, svc), { prefix: '/v1' });
}

async function registerOpenApiDocs(fastify: FastifyInstance): Promise<void> {
  await fastify.register(swagger, {
    openapi: {
      info: {
        title: 'immunize',
        version: '1',
        description: 'Immunize features against linear probing for a harmful task: upload datasets, submit jobs, follow them, download θ and the metrics.',
      },
      components: {
        securitySchemes: {
          apiKey: { type: 'http', scheme: 'bearer', description: 'Authorization: Bearer <API key>' },
          session: {
            type: 'apiKey',
            in: 'cookie',
            name: SESSION_COOKIE,
            description: 'set by POST /v1/session; POST and DELETE also need the x-csrf-token header',
          },
        },
      },
      security: [{ apiKey: [] }, { session: [] }],
    },
  });
  await fastify.register(swaggerUi, { routePrefix: '/docs' });
}

/** Every response carries its request id, and its duration goes to the metrics. */
function addResponseHooks(fastify: FastifyInstance, svc: Services): void {
  // Hooks with callbacks rather than async functions: they run on every request, and a promise each is not free.
  // Set as the request comes in, so that every answer carries it (a 404 and an error too) without an onSend hook.
  // An event stream writes its own head and names it there.
  fastify.addHook('onRequest', (req, reply, done) => {
    reply.header('x-request-id', req.id);
    done();
  });
  // Each route gets its own duration hook, which knows its path: the request's routeOptions is an object built on
  // each read. Unmatched requests are observed by the not-found handler.
  fastify.addHook('onRoute', (route) => {
    const observe = durationObserver(svc, route.url, fastify.log);
    const own = route.onResponse;
    route.onResponse = own === undefined ? [observe] : [...(Array.isArray(own) ? own : [own]), observe];
  });
}

/**
 * An onResponse hook that observes a request's duration under `route` (with the label sets it has seen kept) and,
 * at level info, writes the request's access line.
 */
function durationObserver(svc: Services, route: string, log: FastifyBaseLogger): onResponseHookHandler {
  const labels = new Map<string, { method: string; route: string; status: string }>();
  return (req, reply, done) => {
    const key = `${req.method} ${reply.statusCode}`;
    let set = labels.get(key);
    if (set === undefined) {
      set = { method: req.method, route, status: String(reply.statusCode) };
      labels.set(key, set);
    }
    const elapsed = reply.elapsedTime;
    svc.metrics.httpDuration.observe(set, elapsed / 1000);
    if (enabled(log, 'info')) {
      // Flat fields: a nested req object would go through the logger's redaction of req.headers on every line.
      log.info({ reqId: req.id, method: req.method, url: req.url, statusCode: reply.statusCode, responseTime: elapsed }, 'request completed');
    }
    done();
  };
}

function answerError(svc: Services, err: FastifyError, req: FastifyRequest, reply: FastifyReply): FastifyReply {
  // An ApiError as raised; a domain failure (bad data, backbone or spec) by the error table, with a job's code.
  const known = errorAnswer(err);
  if (known) {
    if (known.status === 401) void reply.header('www-authenticate', 'Bearer');
    return reply.code(known.status).send(errorBody(known.code, known.message));
  }
  if (err.validation) {
    return reply
      .code(400)
      .send(
        errorBody('invalid_request', `${err.validationContext ?? 'request'} ${err.message.replace(/^(body|querystring|params|headers)\/?\s*/, '')}`.trim()),
      );
  }
  const code = err.code ?? '';
  if (code === 'FST_REQ_FILE_TOO_LARGE' || code === 'FST_ERR_CTP_BODY_TOO_LARGE' || statusCode(err) === 413) {
    return reply.code(413).send(errorBody('payload_too_large', err.message));
  }
  if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' || code === 'FST_INVALID_MULTIPART_CONTENT_TYPE') {
    return reply.code(415).send(errorBody('unsupported_media_type', err.message));
  }
  if (code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err instanceof SyntaxError) {
    return reply.code(400).send(errorBody('invalid_json', `the request body is not valid JSON: ${err.message}`));
  }
  if (isRedisFull(err)) {
    req.log.warn({ err: err.message }, 'redis is full');
    return reply
      .code(507)
      .header('retry-after', '60')
      .send(
        errorBody(
          'insufficient_storage',
          'the job store (Redis) has reached its memory limit (maxmemory), so nothing was kept; try again later, or ask the operator to raise maxmemory or delete finished jobs',
        ),
      );
  }
  if (isRedisUnavailable(err) || svc.redis.status !== 'ready') {
    req.log.warn({ err: err.message }, 'redis unavailable');
    return reply.code(503).header('retry-after', '5').send(errorBody('redis_unavailable', 'the job store (Redis) is not answering; try again shortly'));
  }
  const status = statusCode(err);
  if (status < 500) return reply.code(status).send(errorBody('invalid_request', err.message));
  req.log.error({ err }, 'request failed');
  return reply.code(500).send(errorBody('internal', 'internal error; the request id in x-request-id finds it in the logs'));
}

/** The authenticated, rate-limited API under /v1. */
async function registerV1(v1: FastifyInstance, svc: Services): Promise<void> {
  // One callback hook per route, with the route's auth mode known: authenticate, then count the request.
  const limit = rateLimiter(svc.config.rateLimit);
  v1.addHook('onRoute', (route) => {
    const guard = authenticateThen(route.config?.auth ?? 'required', limit);
    const own = route.onRequest;
    route.onRequest = own === undefined ? [guard] : [guard, ...(Array.isArray(own) ? own : [own])];
  });
  await v1.register(sessionRoutes);
  await v1.register(datasetRoutes);
  await v1.register(jobRoutes);
  await v1.register(reportRoutes);
}
