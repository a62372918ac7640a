/**
 * The Redis settings the queue depends on, checked at start (and again after each reconnect, since a restarted
 * Redis may come back with another configuration). BullMQ needs `maxmemory-policy noeviction`: under any other
 * policy a Redis that reaches maxmemory evicts keys, and an evicted key is a lost job, a lost lock (the job then
 * runs twice) or a lost job record. The check only warns: the service still starts.
 */
import type { Redis } from 'ioredis';
import type { Logger } from './logger.js';

export type RedisSettingsFinding =
  { ok: true; maxmemoryPolicy: string } | { ok: false; maxmemoryPolicy: string; message: string } | { ok: false; maxmemoryPolicy: null; message: string };

const WHY =
  'BullMQ needs maxmemory-policy noeviction: under any other policy Redis evicts keys once it reaches maxmemory, ' +
  'and an evicted key loses a queued job, a running job’s lock (the job then runs twice) or a job record';
const FIX = 'start redis-server with --maxmemory-policy noeviction (or CONFIG SET maxmemory-policy noeviction and CONFIG REWRITE)';

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** CONFIG GET maxmemory-policy; where CONFIG is disabled or refused, the maxmemory_policy line of INFO memory. */
async function readPolicy(redis: Redis): Promise<{ policy: string } | { error: string }> {
  let configError: string;
  try {
    const reply = (await redis.call('CONFIG', 'GET', 'maxmemory-policy')) as unknown;
    // RESP2 answers [name, value]; a server that hides the setting answers an empty list.
    if (Array.isArray(reply) && typeof reply[1] === 'string') return { policy: reply[1] };
    configError = 'CONFIG GET maxmemory-policy gave no value';
  } catch (err) {
    configError = `CONFIG GET maxmemory-policy failed: ${errorText(err)}`;
  }
  try {
    const info = await redis.info('memory');
    const line = info.split(/\r?\n/).find((l) => l.startsWith('maxmemory_policy:'));
    if (line) return { policy: line.slice('maxmemory_policy:'.length).trim() };
    return { error: `${configError}; INFO memory has no maxmemory_policy` };
  } catch (err) {
    return { error: `${configError}; INFO memory failed: ${errorText(err)}` };
  }
}

/** Reads Redis's maxmemory-policy and says whether the queue is safe with it. */
export async function checkRedisSettings(redis: Redis): Promise<RedisSettingsFinding> {
  const read = await readPolicy(redis);
  if ('error' in read) {
    return { ok: false, maxmemoryPolicy: null, message: `could not check Redis's maxmemory-policy (${read.error}). ${WHY}; make sure it is set` };
  }
  if (read.policy === 'noeviction') return { ok: true, maxmemoryPolicy: read.policy };
  return { ok: false, maxmemoryPolicy: read.policy, message: `Redis's maxmemory-policy is ${read.policy}, not noeviction. ${WHY}; ${FIX}` };
}

/** Logs a finding: a warning when it is not ok. */
export function logRedisSettings(finding: RedisSettingsFinding, logger: Logger): void {
  if (finding.ok) logger.debug({ redis: { maxmemoryPolicy: finding.maxmemoryPolicy } }, 'Redis settings checked');
  else logger.warn({ redis: { maxmemoryPolicy: finding.maxmemoryPolicy } }, finding.message);
}

/**
 * Checks now if the client is connected, and on every (re)connect after; a finding is logged when it differs from
 * the last one logged, so that a reconnect loop does not repeat it. Returns the function that stops watching.
 */
export function watchRedisSettings(redis: Redis, logger: Logger): () => void {
  let last: string | null = null;
  let stopped = false;
  const check = () => {
    checkRedisSettings(redis).then(
      (finding) => {
        // A check cut short by a dropped connection says nothing about the settings: the next 'ready' checks again.
        if (stopped || redis.status !== 'ready') return;
        const key = finding.ok ? 'ok' : finding.message;
        if (key === last) return;
        if (finding.ok && last !== null) logger.info({ redis: { maxmemoryPolicy: finding.maxmemoryPolicy } }, "Redis's maxmemory-policy is noeviction now");
        last = key;
        logRedisSettings(finding, logger);
      },
      () => undefined,
    );
  };
  redis.on('ready', check);
  if (redis.status === 'ready') check();
  return () => {
    stopped = true;
    redis.off('ready', check);
  };
}
