/**
 * Liveness and readiness, open to anyone (probes carry no key); Prometheus metrics, for the admin key only: they
 * show every tenant's traffic and the queue.
 */
import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { ApiError } from '../../errors.js';
import { requireAdmin } from '../authenticate.js';
import { errorResponses } from '../schemas.js';

const Healthy = Type.Object({ status: Type.Literal('ok') });
const Ready = Type.Object({ status: Type.Literal('ready'), redis: Type.String(), storage: Type.String() });

export async function healthRoutes(fastify: FastifyInstance): Promise<void> {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();

  app.get('/healthz', { schema: { tags: ['health'], summary: 'The process is alive', security: [], response: { 200: Healthy } } }, async () => ({
    status: 'ok' as const,
  }));

  app.get(
    '/readyz',
    {
      schema: { tags: ['health'], summary: 'Redis answers and the data directory is writable', security: [], response: { 200: Ready, ...errorResponses(503) } },
    },
    async () => {
      const r = await app.svc.ready();
      if (r.redis && r.storage) return { status: 'ready' as const, redis: 'up', storage: 'ok' };
      const problem = !r.redis ? 'redis_unavailable' : 'storage_unavailable';
      const message = !r.redis ? 'Redis is not answering' : `the data directory ${app.svc.config.dataDir} cannot be written`;
      throw new ApiError(503, problem, message);
    },
  );

  app.get(
    '/metrics',
    {
      schema: {
        tags: ['health'],
        summary: 'Prometheus metrics, for the admin key only (Authorization: Bearer <IMMUNIZE_ADMIN_KEY>)',
        produces: ['text/plain'],
        response: { ...errorResponses(401, 403) },
      },
      onRequest: (req, reply) => requireAdmin(req, reply, '/metrics'),
    },
    async (_req, reply) => {
      const registry = app.svc.metrics.registry;
      const text = await registry.metrics();
      return reply.type(registry.contentType).send(text);
    },
  );
}
