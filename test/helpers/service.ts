/**
 * Shared by the service and worker tests. They run against a real Redis (REDIS_URL, default 127.0.0.1:6379) with a
 * random key prefix and queue name per test file, and fail loudly when no Redis answers.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { encodeNpy } from '../../models/io/npy.js';
import { createLogger } from '../../services/logger.js';
import { deleteByPrefix } from '../../services/redis.js';
import { sseBlocks } from '../../services/sse.js';
import { startServer, type RunningServer } from '../../services/server.js';
import type { Role } from '../../services/config.js';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
export const ALICE_KEY = 'alice-key-0123456789abcdef';
export const BOB_KEY = 'bob-key-0123456789abcdef';
export const ADMIN_KEY = 'admin-key-0123456789abcdef';
export const ALICE = { authorization: `Bearer ${ALICE_KEY}` };
export const BOB = { authorization: `Bearer ${BOB_KEY}` };
export const ADMIN = { authorization: `Bearer ${ADMIN_KEY}` };

/** Throws (the test fails) unless Redis answers a PING within a few seconds. These tests never skip. */
export async function requireRedis(url = REDIS_URL): Promise<void> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 3000, retryStrategy: () => null });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const pong = await client.ping();
    if (pong !== 'PONG') throw new Error(`unexpected PING answer ${pong}`);
  } catch (err) {
    throw new Error(
      `no Redis answers at ${url} (${err instanceof Error ? err.message : String(err)}): the service tests need a real one; ` +
        'start it with `redis-server --daemonize yes` or scripts/ensure-redis.sh',
    );
  } finally {
    client.disconnect();
  }
}

export interface TestEnv {
  env: Record<string, string>;
  prefix: string;
  dataDir: string;
}

/** A private prefix, queue name and data directory; fast lock and progress settings. */
export async function testEnv(overrides: Record<string, string> = {}): Promise<TestEnv> {
  const tag = randomBytes(5).toString('hex');
  const dataDir = await mkdtemp(join(tmpdir(), 'immunize-svc-'));
  const prefix = `immunize-test-${tag}`;
  const env: Record<string, string> = {
    REDIS_URL,
    IMMUNIZE_REDIS_PREFIX: prefix,
    IMMUNIZE_QUEUE: `q-${tag}`,
    IMMUNIZE_DATA_DIR: dataDir,
    IMMUNIZE_API_KEYS: `alice:${ALICE_KEY},bob:${BOB_KEY}`,
    IMMUNIZE_ADMIN_KEY: ADMIN_KEY,
    IMMUNIZE_LOG_LEVEL: 'silent',
    IMMUNIZE_LOCK_MS: '2000',
    IMMUNIZE_PROGRESS_MS: '50',
    IMMUNIZE_RATE_LIMIT: '100000',
    IMMUNIZE_RETENTION_DAYS: '0',
    PORT: '0',
    HOST: '127.0.0.1',
    ...overrides,
  };
  return { env, prefix, dataDir };
}

export function start(role: Role, t: TestEnv): Promise<RunningServer> {
  return startServer(role, t.env, createLogger(t.env.IMMUNIZE_LOG_LEVEL ?? 'silent', false));
}

export interface LogLine {
  msg: string;
  jobId?: string;
}

/** A worker whose log lines at level info and above are kept, in order, in `logs`: for tests of what it says. */
export async function startLoggedWorker(t: TestEnv): Promise<{ worker: RunningServer; logs: LogLine[] }> {
  const logs: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) logs.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  return { worker: await startServer('worker', t.env, pino({ level: 'info' }, sink)), logs };
}

/** Uploads a file as Alice through the API; returns the upload's id. */
export async function uploadAs(api: RunningServer, name: string, bytes: Buffer): Promise<string> {
  const body = multipart(name, bytes);
  const r = await api.api!.inject({ method: 'POST', url: '/v1/datasets', headers: { ...ALICE, ...body.headers }, payload: body.payload });
  if (r.statusCode !== 201) throw new Error(`upload of ${name}: ${r.statusCode} ${r.body}`);
  return (r.json() as { id: string }).id;
}

export async function cleanup(t: TestEnv): Promise<void> {
  const client = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  client.on('error', () => undefined);
  try {
    await deleteByPrefix(client, t.prefix);
  } finally {
    client.disconnect();
  }
  await rm(t.dataDir, { recursive: true, force: true });
}

/** A seeded N×D matrix of uniform values in [-0.5, 0.5), as an .npy file. */
export function randomNpy(rows: number, cols: number, seed: number, dtype: 'f8' | 'f4' = 'f8'): Buffer {
  let s = seed >>> 0 || 1;
  const data = new Float64Array(rows * cols);
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = s / 2 ** 32 - 0.5;
  }
  return encodeNpy({ rows, cols, data }, dtype);
}

/** A multipart/form-data body with one file part, for inject(). */
export function multipart(filename: string, content: Buffer, field = 'file'): { payload: Buffer; headers: Record<string, string> } {
  const boundary = `----immunize${randomBytes(8).toString('hex')}`;
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="${field}"; filename="${filename}"\r\nContent-Type: application/octet-stream\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  return { payload: Buffer.concat([head, content, tail]), headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
}

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 30_000, everyMs = 50): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface SseEvent {
  event: string;
  data: unknown;
}

/** Reads a Server-Sent Events stream to its end (or until `stop` says so). */
export async function readSse(url: string, headers: Record<string, string>, stop?: (e: SseEvent) => boolean, timeoutMs = 60_000): Promise<SseEvent[]> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const events: SseEvent[] = [];
  try {
    const res = await fetch(url, { headers, signal: controller.signal });
    if (res.status !== 200) throw new Error(`SSE answered ${res.status}: ${await res.text()}`);
    if (!res.headers.get('content-type')?.startsWith('text/event-stream')) throw new Error(`SSE content-type is ${res.headers.get('content-type')}`);
    for await (const block of sseBlocks(res.body as unknown as AsyncIterable<Uint8Array>)) {
      const e = { event: block.event, data: JSON.parse(block.data) as unknown };
      events.push(e);
      if (stop?.(e)) {
        controller.abort();
        return events;
      }
    }
    return events;
  } catch (err) {
    if (controller.signal.aborted && events.length > 0 && stop?.(events[events.length - 1])) return events;
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
