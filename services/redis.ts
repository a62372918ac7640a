/**
 * Redis connections. The API's command connection fails fast when Redis is away (no offline queue, a command
 * timeout), so that a request gets a 503 rather than hanging; the queue's blocking connections retry forever.
 */
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from './logger.js';

export function redisOptionsFromUrl(url: string): RedisOptions {
  const u = new URL(url);
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0;
  return {
    host: u.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(Number.isInteger(db) && db > 0 ? { db } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

const reconnect = (times: number) => Math.min(100 * times, 2000);

/** For the queue's workers and event listeners: commands wait for a reconnect instead of failing. */
export function blockingOptions(url: string): RedisOptions {
  return { ...redisOptionsFromUrl(url), maxRetriesPerRequest: null, enableReadyCheck: true, retryStrategy: reconnect };
}

/** Logs connection errors once per outage instead of once per reconnect attempt. */
function quietErrors(client: Redis, logger: Logger | undefined, name: string): void {
  let down = false;
  client.on('error', (err: Error) => {
    if (!down) logger?.warn({ redis: name, err: err.message }, 'redis connection error');
    down = true;
  });
  client.on('ready', () => {
    if (down) logger?.info({ redis: name }, 'redis connection back');
    down = false;
  });
}

/** The API's command connection: fails fast while Redis is away. */
export function createCommandClient(url: string, logger?: Logger, name = 'command'): Redis {
  const client = new Redis({
    ...redisOptionsFromUrl(url),
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 3000,
    connectTimeout: 3000,
    retryStrategy: reconnect,
  });
  quietErrors(client, logger, name);
  return client;
}

/** A subscriber connection (pub/sub): waits through outages and resubscribes on reconnect. */
export function createSubscriber(url: string, logger?: Logger): Redis {
  const client = new Redis({ ...blockingOptions(url), autoResubscribe: true });
  quietErrors(client, logger, 'subscriber');
  return client;
}

/** Resolves when the client is connected, or rejects after `ms`. */
export function waitReady(client: Redis, ms: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('ready', onReady);
      reject(new Error(`Redis did not answer within ${ms} ms`));
    }, ms);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    client.once('ready', onReady);
  });
}

/** Deletes every key under a prefix (tests and benchmarks clean up after themselves with it). */
export async function deleteByPrefix(client: Redis, prefix: string): Promise<number> {
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) deleted += await client.unlink(...keys);
  } while (cursor !== '0');
  return deleted;
}
