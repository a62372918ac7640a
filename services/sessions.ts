/**
 * Browser sessions for the dashboard. A browser signs in with an API key once and then carries an opaque session
 * id in an HttpOnly cookie. The session lives in Redis, so signing out ends it at once, and it names its key by a
 * keyed digest, so it also ends when that key leaves the configuration.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Redis } from 'ioredis';
import { apiKeyDigest, type ApiKeys, type Principal } from './auth.js';
import type { Config } from './config.js';

export const SESSION_COOKIE = 'immunize_session';
/** Requests authenticated by the cookie that change state must echo the session's token in this header. */
export const CSRF_HEADER = 'x-csrf-token';

const SESSION_ID = /^[A-Za-z0-9_-]{43}$/;

interface StoredSession {
  key: string;
  createdAt: number;
  expiresAt: number;
}

export interface Session {
  id: string;
  principal: Principal;
  createdAt: number;
  expiresAt: number;
}

export class SessionStore {
  private readonly principals: Map<string, Principal>;

  constructor(
    private readonly redis: Redis,
    private readonly config: Pick<Config, 'redisPrefix' | 'sessionSecret' | 'sessionTtlSeconds'>,
    keys: ApiKeys,
  ) {
    this.principals = keys.digests(config.sessionSecret);
  }

  private redisKey(id: string): string {
    // Only a hash of the id is stored, so a copy of Redis does not hold live cookies.
    return `${this.config.redisPrefix}:session:${createHash('sha256').update(id).digest('base64url')}`;
  }

  /** Starts a session for a key that has already been verified. */
  async create(apiKey: string, principal: Principal): Promise<Session> {
    const id = randomBytes(32).toString('base64url');
    const createdAt = Date.now();
    const ttl = this.config.sessionTtlSeconds;
    const stored: StoredSession = { key: apiKeyDigest(apiKey, this.config.sessionSecret), createdAt, expiresAt: createdAt + ttl * 1000 };
    await this.redis.set(this.redisKey(id), JSON.stringify(stored), 'EX', ttl);
    return { id, principal, createdAt, expiresAt: stored.expiresAt };
  }

  /** The live session with this id, or null (unknown, expired, signed out, or its key was removed). */
  async get(id: string): Promise<Session | null> {
    if (!SESSION_ID.test(id)) return null;
    const raw = await this.redis.get(this.redisKey(id));
    if (raw === null) return null;
    let stored: StoredSession;
    try {
      stored = JSON.parse(raw) as StoredSession;
    } catch {
      return null;
    }
    const principal = typeof stored.key === 'string' ? this.principals.get(stored.key) : undefined;
    if (!principal || !(stored.expiresAt > Date.now())) {
      await this.redis.del(this.redisKey(id));
      return null;
    }
    return { id, principal, createdAt: stored.createdAt, expiresAt: stored.expiresAt };
  }

  async destroy(id: string): Promise<void> {
    if (SESSION_ID.test(id)) await this.redis.del(this.redisKey(id));
  }

  /** The anti-CSRF token of a session: derived, so it needs no storage, and useless without the cookie. */
  csrfToken(id: string): string {
    return createHmac('sha256', this.config.sessionSecret).update(`csrf\0${id}`).digest('base64url');
  }

  checkCsrf(id: string, presented: unknown): boolean {
    if (typeof presented !== 'string' || presented.length === 0 || presented.length > 128) return false;
    const want = Buffer.from(this.csrfToken(id));
    const got = Buffer.from(presented);
    return got.length === want.length && timingSafeEqual(got, want);
  }
}
