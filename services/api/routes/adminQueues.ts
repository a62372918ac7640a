/**
 * bull-board for operators, at /admin/queues: the admin key only, as a Bearer header or a dashboard session signed
 * in with it. Without credentials the answer is 401; with a tenant's, the board does not exist (404). The board is
 * read-only: retrying or removing a job there would bypass the job records.
 */
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { FastifyInstance } from 'fastify';
import { ApiError, errorBody } from '../../errors.js';
import { authenticate } from '../authenticate.js';

export const QUEUES_PATH = '/admin/queues';

// The board's page links a web font from a CDN. The link is cut from the page, and the policy keeps anything else
// that would leave the machine from loading.
const QUEUES_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; " +
  "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'";

/** Register with the prefix QUEUES_PATH. */
export async function adminQueueRoutes(fastify: FastifyInstance): Promise<void> {
  fastify.addHook('onRequest', async (req, reply) => {
    try {
      await authenticate(req, reply, 'required');
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      if (err.statusCode === 401) void reply.header('www-authenticate', 'Bearer');
      return reply.code(err.statusCode).send(errorBody(err.code, err.message));
    }
    if (!req.principal?.admin) return reply.code(404).send(errorBody('not_found', `no route ${req.method} ${req.url.split('?')[0]}`));
  });
  fastify.addHook('onSend', async (_req, reply, payload) => {
    void reply.header('content-security-policy', QUEUES_CSP).header('x-frame-options', 'DENY').header('cache-control', 'no-store');
    if (typeof payload === 'string' && String(reply.getHeader('content-type')).startsWith('text/html')) {
      return payload.replace(/<link\b[^>]*\bhref="https?:\/\/[^"]*"[^>]*>/gi, '');
    }
    return payload;
  });

  const board = new FastifyAdapter();
  createBullBoard({
    queues: [new BullMQAdapter(fastify.svc.queue.queue, { readOnlyMode: true })],
    serverAdapter: board,
    options: { uiConfig: { boardTitle: 'immunize queues' } },
  });
  board.setBasePath(QUEUES_PATH);
  await fastify.register(board.registerPlugin());
}
