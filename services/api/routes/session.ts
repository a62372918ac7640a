/** Dashboard sign-in: trade an API key for an HttpOnly session cookie, read the session, sign out. */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { ApiError, unauthorized } from '../../errors.js';
import type { Principal } from '../../auth.js';
import { CSRF_HEADER, SESSION_COOKIE, type SessionStore } from '../../sessions.js';
import { clearSessionCookie, sessionIdFromCookie, setSessionCookie } from '../authenticate.js';
import { errorResponses } from '../schemas.js';

const SessionAnswer = Type.Object({
  signedIn: Type.Boolean(),
  tenant: Type.Optional(Type.String({ description: 'the tenant the key belongs to ("*admin" for the admin key)' })),
  admin: Type.Optional(Type.Boolean()),
  via: Type.Optional(Type.Union([Type.Literal('session'), Type.Literal('bearer')])),
  csrfToken: Type.Optional(Type.String({ description: `send it in ${CSRF_HEADER} with every POST or DELETE authenticated by the cookie` })),
  expiresAt: Type.Optional(Type.String({ format: 'date-time' })),
});

function signedInWithSession(sessions: SessionStore, principal: Principal, session: { id: string; expiresAt: number }) {
  return {
    signedIn: true,
    tenant: principal.tenant,
    admin: principal.admin,
    via: 'session' as const,
    csrfToken: sessions.csrfToken(session.id),
    expiresAt: new Date(session.expiresAt).toISOString(),
  };
}

export async function sessionRoutes(fastify: FastifyInstance): Promise<void> {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();

  app.post(
    '/session',
    {
      config: { auth: 'none' },
      schema: {
        tags: ['session'],
        summary: `Sign in with an API key: sets the HttpOnly cookie ${SESSION_COOKIE}, which the dashboard, SSE and downloads accept`,
        security: [],
        body: Type.Object({ apiKey: Type.String({ minLength: 1, maxLength: 512 }) }, { additionalProperties: false }),
        response: { 200: SessionAnswer, ...errorResponses(400, 401, 403, 429, 503) },
      },
    },
    async (req, reply) => {
      // Signing a victim's browser in to the attacker's account from another site is refused.
      if (req.headers['sec-fetch-site'] === 'cross-site') throw new ApiError(403, 'forbidden', 'sign in from the dashboard itself');
      const principal = app.svc.keys.verify(req.body.apiKey);
      if (!principal) throw unauthorized('invalid API key');
      const previous = sessionIdFromCookie(req);
      if (previous) await app.sessions.destroy(previous);
      const session = await app.sessions.create(req.body.apiKey, principal);
      setSessionCookie(req, reply, session.id, app.svc.config.sessionTtlSeconds);
      void reply.header('cache-control', 'no-store');
      return signedInWithSession(app.sessions, principal, session);
    },
  );

  app.get(
    '/session',
    {
      config: { auth: 'optional' },
      schema: {
        tags: ['session'],
        summary: 'Who the caller is (signedIn false without valid credentials); for a cookie session also its CSRF token and expiry',
        response: { 200: SessionAnswer, ...errorResponses(401, 503) },
      },
    },
    async (req, reply) => {
      void reply.header('cache-control', 'no-store');
      const p = req.principal;
      if (!p) return { signedIn: false };
      const session = req.session;
      if (!session) return { signedIn: true, tenant: p.tenant, admin: p.admin, via: 'bearer' as const };
      return signedInWithSession(app.sessions, p, session);
    },
  );

  app.delete(
    '/session',
    {
      config: { auth: 'optional' },
      schema: {
        tags: ['session'],
        summary: `Sign out: ends the session and clears the cookie (with the cookie, send ${CSRF_HEADER})`,
        security: [],
        response: { 204: Type.Null(), ...errorResponses(403, 503) },
      },
    },
    async (req, reply) => {
      if (req.session) await app.sessions.destroy(req.session.id);
      clearSessionCookie(req, reply);
      return reply.code(204).header('cache-control', 'no-store').send(null);
    },
  );
}
