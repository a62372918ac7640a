/**
 * Who is calling: a Bearer API key or the dashboard's session cookie. A request that has an Authorization header is
 * judged by that header alone. A request authenticated by the cookie that changes state must also carry the
 * session's CSRF token, which a page on another site cannot read. Operator pages (the Prometheus metrics) take the
 * admin key only.
 */
import { Signer } from '@fastify/cookie';
import { parseCookie, stringifySetCookie } from 'cookie';
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction, onRequestHookHandler } from 'fastify';
import { bearerToken } from '../auth.js';
import type { Config } from '../config.js';
import { ApiError, unauthorized } from '../errors.js';
import { CSRF_HEADER, SESSION_COOKIE, type Session, type SessionStore } from '../sessions.js';

/** required: 401 without credentials; optional: the handler sees principal null; none: nothing is checked. */
export type AuthMode = 'required' | 'optional' | 'none';

declare module 'fastify' {
  interface FastifyContextConfig {
    auth?: AuthMode;
  }
  interface FastifyRequest {
    /** The dashboard session this request came with, when the cookie authenticated it. */
    session: Session | null;
  }
  interface FastifyInstance {
    sessions: SessionStore;
  }
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

function secure(req: FastifyRequest, mode: Config['cookieSecure']): boolean {
  if (mode !== 'auto') return mode === 'always';
  const forwarded = req.headers['x-forwarded-proto'];
  const first = (Array.isArray(forwarded) ? forwarded[0] : forwarded)?.split(',')[0]?.trim().toLowerCase();
  return req.protocol === 'https' || first === 'https';
}

/**
 * The session cookie is signed with the configured secret. Cookies are read and written here, for the requests that
 * sign in, sign out or come without an API key, rather than by a plugin's hooks on every request.
 */
const signers = new Map<string, Signer>();
function signer(req: FastifyRequest): Signer {
  const secret = req.server.svc.config.sessionSecret;
  let s = signers.get(secret);
  if (s === undefined) signers.set(secret, (s = new Signer(secret)));
  return s;
}

function cookieOptions(req: FastifyRequest) {
  return { path: '/', httpOnly: true, sameSite: 'strict', secure: secure(req, req.server.svc.config.cookieSecure) } as const;
}

export function setSessionCookie(req: FastifyRequest, reply: FastifyReply, id: string, maxAgeSeconds: number): void {
  void reply.header('set-cookie', stringifySetCookie(SESSION_COOKIE, signer(req).sign(id), { ...cookieOptions(req), maxAge: maxAgeSeconds }));
}

export function clearSessionCookie(req: FastifyRequest, reply: FastifyReply): void {
  void reply.header('set-cookie', stringifySetCookie(SESSION_COOKIE, '', { ...cookieOptions(req), expires: new Date(0) }));
}

/** The session cookie as sent (signed), or undefined. */
function sessionCookie(req: FastifyRequest): string | undefined {
  const header = req.headers.cookie;
  return header ? parseCookie(header)[SESSION_COOKIE] : undefined;
}

/** The session id a signed cookie value carries, or null. */
function sessionIdFrom(req: FastifyRequest, raw: string | undefined): string | null {
  if (!raw) return null;
  const u = signer(req).unsign(raw);
  return u.valid && u.value ? u.value : null;
}

/** The session id carried by the signed cookie, or null. */
export function sessionIdFromCookie(req: FastifyRequest): string | null {
  return sessionIdFrom(req, sessionCookie(req));
}

/** Judges a request by its API key when it has one: sets req.principal, or throws a 401. Answers whether it had one. */
function byApiKey(req: FastifyRequest): boolean {
  const token = bearerToken(req.headers.authorization);
  if (!token) return false;
  const principal = req.server.svc.keys.verify(token);
  if (!principal) throw unauthorized('invalid API key');
  req.principal = principal;
  return true;
}

/** Sets req.principal (and req.session) or throws a 401/403 ApiError, as `mode` asks. */
export async function authenticate(req: FastifyRequest, reply: FastifyReply, mode: AuthMode): Promise<void> {
  if (mode === 'none' || byApiKey(req)) return;
  const raw = sessionCookie(req);
  const hasCookie = raw !== undefined;
  const id = sessionIdFrom(req, raw);
  const session = id ? await req.server.sessions.get(id) : null;
  if (!session) {
    if (hasCookie) clearSessionCookie(req, reply);
    if (mode === 'optional') return;
    throw unauthorized(
      hasCookie
        ? 'the dashboard session has ended (expired, signed out, or its key was removed): sign in again'
        : 'missing API key: send Authorization: Bearer <key>, or sign in to the dashboard',
    );
  }
  if (!SAFE_METHODS.has(req.method) && !req.server.sessions.checkCsrf(session.id, req.headers[CSRF_HEADER])) {
    throw new ApiError(
      403,
      'csrf_failed',
      `a request authenticated by the session cookie that changes state must send the session's token in the ${CSRF_HEADER} header`,
    );
  }
  req.principal = session.principal;
  req.session = session;
}

/**
 * A route's onRequest hook: authenticates as `mode` asks, then hands the request to `next` (the rate limiter). A
 * request with an API key is judged at once, without a promise; one with a session cookie waits for its session.
 */
export function authenticateThen(
  mode: AuthMode,
  next: (req: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => void,
): onRequestHookHandler {
  return (req, reply, done) => {
    let judged: boolean;
    try {
      judged = mode === 'none' || byApiKey(req);
    } catch (err) {
      return done(err as Error);
    }
    if (judged) return next(req, reply, done);
    authenticate(req, reply, mode).then(() => next(req, reply, done), done);
  };
}

/**
 * Lets the admin key through (as a Bearer header or a session signed in with it): 401 without credentials or with a
 * key that is not configured, 403 with a tenant's key. `what` names the resource in the 403's message.
 */
export async function requireAdmin(req: FastifyRequest, reply: FastifyReply, what: string): Promise<void> {
  await authenticate(req, reply, 'required');
  if (!req.principal?.admin) throw new ApiError(403, 'forbidden', `${what} is for the admin key (IMMUNIZE_ADMIN_KEY) only`);
}
