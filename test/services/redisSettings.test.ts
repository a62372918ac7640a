/**
 * The Redis settings check at start: against a Redis of the test's own (never the shared one) whose
 * maxmemory-policy is allkeys-lru, the API and the worker warn, saying why it matters; with noeviction, neither does.
 * Where CONFIG is disabled the policy is read from INFO; where nothing can be read, the warning says so.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import type { Logger } from '../../services/logger.js';
import { checkRedisSettings } from '../../services/redisSettings.js';
import { startServer } from '../../services/server.js';
import type { Role } from '../../services/config.js';
import { startPrivateRedis, type PrivateRedis } from '../../scripts/privateRedis.js';
import { cleanup, eventually, testEnv, type TestEnv } from '../helpers/service.js';

interface LogLine {
  level: number;
  msg: string;
  redis?: { maxmemoryPolicy: string | null };
}

const WARN = 40;

function capture(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as LogLine);
      done();
    },
  });
  return { logger: pino<never>({ level: 'debug' }, sink), lines };
}

const settingsLines = (lines: LogLine[]) => lines.filter((l) => l.redis && 'maxmemoryPolicy' in l.redis);

let dir: string;
const servers: PrivateRedis[] = [];
const envs: TestEnv[] = [];

async function privateRedis(...args: string[]): Promise<PrivateRedis> {
  const sub = await mkdtemp(join(dir, 'r-'));
  const r = await startPrivateRedis({ dir: sub, args: ['--appendonly', 'no', ...args] });
  servers.push(r);
  return r;
}

/** Starts a role against `url`, waits for its settings check to be logged, closes it; returns the check's lines. */
async function startAndCheck(role: Role, url: string): Promise<LogLine[]> {
  const t = await testEnv({ REDIS_URL: url, IMMUNIZE_LOG_LEVEL: 'debug' });
  envs.push(t);
  const { logger, lines } = capture();
  const srv = await startServer(role, t.env, logger);
  try {
    return await eventually(`the ${role}'s Redis settings check`, async () => (settingsLines(lines).length > 0 ? settingsLines(lines) : undefined), 10_000);
  } finally {
    await srv.close();
  }
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'immunize-redis-settings-'));
});

after(async () => {
  for (const r of servers) await r.stop();
  for (const t of envs) await cleanup(t).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
});

describe('Redis settings at start', { timeout: 120_000 }, () => {
  it('warns from the API and the worker when maxmemory-policy is allkeys-lru, and not with noeviction', async () => {
    const redis = await privateRedis('--maxmemory-policy', 'allkeys-lru');
    for (const role of ['api', 'worker'] as const) {
      const lines = await startAndCheck(role, redis.url);
      const warnings = lines.filter((l) => l.level === WARN);
      assert.equal(warnings.length, 1, JSON.stringify(lines));
      assert.equal(warnings[0].redis?.maxmemoryPolicy, 'allkeys-lru');
      assert.match(warnings[0].msg, /maxmemory-policy is allkeys-lru, not noeviction/);
      assert.match(warnings[0].msg, /evict/);
      assert.match(warnings[0].msg, /queued job/);
      assert.match(warnings[0].msg, /lock/);
    }

    const admin = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    try {
      await admin.config('SET', 'maxmemory-policy', 'noeviction');
    } finally {
      admin.disconnect();
    }
    for (const role of ['api', 'worker'] as const) {
      const lines = await startAndCheck(role, redis.url);
      assert.deepEqual(
        lines.map((l) => [l.level, l.redis?.maxmemoryPolicy]),
        [[20, 'noeviction']],
        JSON.stringify(lines),
      );
    }
  });

  it('reads the policy from INFO where CONFIG is disabled, and says when it cannot be checked at all', async () => {
    const noConfig = await privateRedis('--maxmemory-policy', 'volatile-lru', '--rename-command', 'CONFIG', '');
    const client = new Redis(noConfig.url, { maxRetriesPerRequest: 1 });
    try {
      const finding = await checkRedisSettings(client);
      assert.equal(finding.ok, false);
      assert.equal(finding.maxmemoryPolicy, 'volatile-lru');
    } finally {
      client.disconnect();
    }

    const blind = await privateRedis('--rename-command', 'CONFIG', '', '--rename-command', 'INFO', '');
    // No ready check: ioredis's sends INFO.
    const c2 = new Redis(blind.url, { enableReadyCheck: false, maxRetriesPerRequest: 1 });
    try {
      const finding = await checkRedisSettings(c2);
      assert.equal(finding.ok, false);
      assert.equal(finding.maxmemoryPolicy, null);
      assert.match(!finding.ok ? finding.message : '', /could not check Redis's maxmemory-policy \(CONFIG GET maxmemory-policy failed: .*unknown command/);
      assert.match(!finding.ok ? finding.message : '', /evict/);
    } finally {
      c2.disconnect();
    }
  });
});
