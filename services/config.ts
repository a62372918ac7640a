/**
 * The service's configuration, read from the environment once at boot. Every problem names its variable, and a
 * bad value stops the process before anything starts.
 */
import { createHmac } from 'node:crypto';
import { resolve } from 'node:path';

export interface TenantKey {
  tenant: string;
  key: string;
}

export interface Config {
  port: number;
  host: string;
  redisUrl: string;
  /** Prefix of every Redis key the service and its queue use. */
  redisPrefix: string;
  queueName: string;
  dataDir: string;
  apiKeys: TenantKey[];
  /** Reads every tenant's jobs; the only key that /metrics (API and worker) and /admin/queues accept. */
  adminKey: string | null;
  maxUploadBytes: number;
  /** Finished jobs (records and artifacts) are purged this many days after they end; 0 keeps them. */
  retentionDays: number;
  /** Requests per minute per API key. */
  rateLimit: number;
  logLevel: string;
  workerConcurrency: number;
  jobAttempts: number;
  lockDurationMs: number;
  maxStalledCount: number;
  progressIntervalMs: number;
  /** Port of the worker role's /metrics endpoint; 0 disables it. */
  workerMetricsPort: number;
  /** Signs the dashboard's session cookie and derives its CSRF tokens. */
  sessionSecret: string;
  /** Whether IMMUNIZE_SESSION_SECRET was given, rather than derived from the keys. */
  sessionSecretGiven: boolean;
  /** How long a dashboard session lasts after sign-in. */
  sessionTtlSeconds: number;
  /** The session cookie's Secure attribute: set when the request came over https (auto), always, or never. */
  cookieSecure: 'auto' | 'always' | 'never';
}

export class ConfigError extends Error {
  readonly code = 'invalid_config';
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

const TENANT = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const MIN_KEY_LENGTH = 16;
const MIN_SECRET_LENGTH = 32;
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

class Reader {
  readonly problems: string[] = [];
  constructor(private readonly env: Env) {}

  raw(name: string): string | undefined {
    const v = this.env[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  }

  string(name: string, fallback: string, pattern?: RegExp, what?: string): string {
    const v = this.raw(name) ?? fallback;
    if (pattern && !pattern.test(v)) this.problems.push(`${name}=${JSON.stringify(v)}: expected ${what ?? `a value matching ${pattern}`}`);
    return v;
  }

  int(name: string, fallback: number, min: number, max: number): number {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    const n = /^[0-9]+$/.test(v) ? Number(v) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      this.problems.push(`${name}=${JSON.stringify(v)}: expected an integer from ${min} to ${max}`);
      return fallback;
    }
    return n;
  }

  bytes(name: string, fallback: number): number {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    const m = /^([0-9]+)\s*([kmg]i?b?)?$/i.exec(v);
    const unit = (m?.[2] ?? '').toLowerCase().replace(/b$/, '').replace(/i$/, '');
    const scale = unit === '' ? 1 : unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : 1024 ** 3;
    const n = m ? Number(m[1]) * scale : Number.NaN;
    if (!Number.isSafeInteger(n) || n < 1024) {
      this.problems.push(`${name}=${JSON.stringify(v)}: expected a size of at least 1024 bytes, e.g. 536870912 or 512M`);
      return fallback;
    }
    return n;
  }
}

function parseKeys(r: Reader, name: string, value: string | undefined, required: boolean): TenantKey[] {
  if (value === undefined) {
    if (required) r.problems.push(`${name} is not set: expected comma-separated tenant:key pairs, e.g. acme:0123456789abcdef0123`);
    return [];
  }
  const keys: TenantKey[] = [];
  const seenKeys = new Set<string>();
  value.split(',').forEach((pair, i) => {
    const item = pair.trim();
    const colon = item.indexOf(':');
    const tenant = colon > 0 ? item.slice(0, colon) : '';
    const key = colon > 0 ? item.slice(colon + 1) : '';
    if (!TENANT.test(tenant)) {
      r.problems.push(`${name}: entry ${i + 1} has no valid tenant name before ':' (expected letters, digits, '_', '.', '-', at most 64)`);
      return;
    }
    if (key.length < MIN_KEY_LENGTH || /\s/.test(key)) {
      r.problems.push(`${name}: the key of tenant ${tenant} must be at least ${MIN_KEY_LENGTH} characters with no spaces`);
      return;
    }
    if (seenKeys.has(key)) {
      r.problems.push(`${name}: the key of tenant ${tenant} is used twice`);
      return;
    }
    seenKeys.add(key);
    keys.push({ tenant, key });
  });
  return keys;
}

export type Role = 'api' | 'worker' | 'all';

/**
 * Without IMMUNIZE_SESSION_SECRET, every API process with the same keys derives the same secret, so a session
 * started on one replica is honoured by the others; changing any key changes it and ends every session.
 */
function deriveSessionSecret(keys: TenantKey[], adminKey: string | null): string {
  const h = createHmac('sha256', 'immunize session secret v1');
  for (const k of [...keys].sort((a, b) => (a.tenant < b.tenant ? -1 : a.tenant > b.tenant ? 1 : 0))) h.update(`${k.tenant}\0${k.key}\0`);
  h.update(`admin\0${adminKey ?? ''}`);
  return h.digest('base64url');
}

const COOKIE_SECURE: Record<string, Config['cookieSecure']> = { auto: 'auto', true: 'always', always: 'always', false: 'never', never: 'never' };

/** Reads and validates the environment. The API keys are required only where an API runs. */
export function loadConfig(env: Env = process.env, role: Role = 'all'): Config {
  const r = new Reader(env);
  const redisUrl = r.string('REDIS_URL', 'redis://127.0.0.1:6379', /^rediss?:\/\/[^\s]+$/, 'a redis:// or rediss:// URL');
  if (/^rediss?:\/\//.test(redisUrl)) {
    try {
      new URL(redisUrl);
    } catch {
      r.problems.push(`REDIS_URL=${JSON.stringify(redisUrl)}: not a valid URL`);
    }
  }
  const apiKeys = parseKeys(r, 'IMMUNIZE_API_KEYS', r.raw('IMMUNIZE_API_KEYS'), role !== 'worker');
  const adminKey = r.raw('IMMUNIZE_ADMIN_KEY') ?? null;
  if (adminKey !== null && adminKey.length < MIN_KEY_LENGTH) {
    r.problems.push(`IMMUNIZE_ADMIN_KEY: must be at least ${MIN_KEY_LENGTH} characters`);
  }
  if (adminKey !== null && apiKeys.some((k) => k.key === adminKey)) {
    r.problems.push('IMMUNIZE_ADMIN_KEY: must differ from every key in IMMUNIZE_API_KEYS');
  }
  const lockDurationMs = r.int('IMMUNIZE_LOCK_MS', 30_000, 500, 3_600_000);
  const givenSecret = r.raw('IMMUNIZE_SESSION_SECRET');
  if (givenSecret !== undefined && (givenSecret.length < MIN_SECRET_LENGTH || /\s/.test(givenSecret))) {
    r.problems.push(`IMMUNIZE_SESSION_SECRET: must be at least ${MIN_SECRET_LENGTH} characters with no spaces (e.g. the output of openssl rand -base64 48)`);
  }
  if (givenSecret !== undefined && (givenSecret === adminKey || apiKeys.some((k) => k.key === givenSecret))) {
    r.problems.push('IMMUNIZE_SESSION_SECRET: must differ from every API key and the admin key');
  }
  const secureValue = (r.raw('IMMUNIZE_COOKIE_SECURE') ?? 'auto').toLowerCase();
  const cookieSecure = Object.hasOwn(COOKIE_SECURE, secureValue) ? COOKIE_SECURE[secureValue] : undefined;
  if (cookieSecure === undefined) r.problems.push(`IMMUNIZE_COOKIE_SECURE=${JSON.stringify(secureValue)}: expected auto, true or false`);
  const config: Config = {
    port: r.int('PORT', 8080, 0, 65535),
    host: r.string('HOST', '0.0.0.0', /^[A-Za-z0-9.:[\]-]+$/, 'a host name or address'),
    redisUrl,
    redisPrefix: r.string('IMMUNIZE_REDIS_PREFIX', 'immunize', /^[A-Za-z0-9_.-]{1,64}$/, "letters, digits, '_', '.', '-' (at most 64)"),
    queueName: r.string('IMMUNIZE_QUEUE', 'immunize', /^[A-Za-z0-9_.-]{1,64}$/, "letters, digits, '_', '.', '-' (at most 64)"),
    dataDir: resolve(r.raw('IMMUNIZE_DATA_DIR') ?? 'immunize-data'),
    apiKeys,
    adminKey,
    maxUploadBytes: r.bytes('IMMUNIZE_MAX_UPLOAD_BYTES', 512 * 1024 * 1024),
    retentionDays: r.int('IMMUNIZE_RETENTION_DAYS', 30, 0, 36_500),
    rateLimit: r.int('IMMUNIZE_RATE_LIMIT', 600, 1, 100_000_000),
    logLevel: r.string('IMMUNIZE_LOG_LEVEL', 'info', new RegExp(`^(${LOG_LEVELS.join('|')})$`), LOG_LEVELS.join(', ')),
    workerConcurrency: r.int('IMMUNIZE_WORKER_CONCURRENCY', 1, 1, 64),
    jobAttempts: r.int('IMMUNIZE_JOB_ATTEMPTS', 3, 1, 100),
    lockDurationMs,
    maxStalledCount: r.int('IMMUNIZE_MAX_STALLED', 3, 0, 100),
    progressIntervalMs: r.int('IMMUNIZE_PROGRESS_MS', 250, 0, 60_000),
    workerMetricsPort: r.int('IMMUNIZE_WORKER_METRICS_PORT', 0, 0, 65535),
    sessionSecret: givenSecret ?? deriveSessionSecret(apiKeys, adminKey),
    sessionSecretGiven: givenSecret !== undefined,
    sessionTtlSeconds: r.int('IMMUNIZE_SESSION_HOURS', 12, 1, 24 * 30) * 3600,
    cookieSecure: cookieSecure ?? 'auto',
  };
  if (r.raw('IMMUNIZE_DATA_DIR') !== undefined && /\0/.test(r.raw('IMMUNIZE_DATA_DIR')!)) {
    r.problems.push('IMMUNIZE_DATA_DIR: contains a NUL character');
  }
  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return config;
}
