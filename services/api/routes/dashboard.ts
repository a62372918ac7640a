/** The jobs dashboard at /: one page, its script and its style sheet, all from this origin. */
import { readFile } from 'node:fs/promises';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { DASHBOARD_CSS, DASHBOARD_HTML } from '../public/page.js';

const DASHBOARD_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/** The compiled script, with its source-map comment dropped (the map is not served). */
async function loadScript(): Promise<Buffer> {
  const url = new URL('../public/dashboard.js', import.meta.url);
  let text: string;
  try {
    text = await readFile(url, 'utf8');
  } catch (err) {
    throw new Error(`the dashboard script ${url.pathname} is missing; build with npm run build (${(err as Error).message})`);
  }
  return Buffer.from(text.replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n'));
}

function send(reply: FastifyReply, type: string, body: Buffer): FastifyReply {
  return reply
    .type(type)
    .header('cache-control', 'no-cache')
    .header('content-security-policy', DASHBOARD_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('x-frame-options', 'DENY')
    .header('referrer-policy', 'same-origin')
    .send(body);
}

export async function dashboardRoutes(fastify: FastifyInstance): Promise<void> {
  const html = Buffer.from(DASHBOARD_HTML);
  const css = Buffer.from(DASHBOARD_CSS);
  const script = await loadScript();
  const hide = { schema: { hide: true }, config: { auth: 'none' as const } };
  fastify.get('/', hide, async (_req, reply) => send(reply, 'text/html; charset=utf-8', html));
  fastify.get('/dashboard.js', hide, async (_req, reply) => send(reply, 'text/javascript; charset=utf-8', script));
  fastify.get('/dashboard.css', hide, async (_req, reply) => send(reply, 'text/css; charset=utf-8', css));
}
