import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import { ConfigError, loadConfig } from '../../services/config.js';
import { ApiKeys, bearerToken, canAccess } from '../../services/auth.js';

const KEYS = 'alice:alice-key-0123456789abcdef,bob:bob-key-0123456789abcdef';

function problems(env: Record<string, string>, role: 'api' | 'worker' | 'all' = 'all'): string[] {
  try {
    loadConfig(env, role);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.problems;
  }
  return [];
}

describe('config', () => {
  it('has the documented defaults', () => {
    const c = loadConfig({ IMMUNIZE_API_KEYS: KEYS });
    assert.equal(c.port, 8080);
    assert.equal(c.redisUrl, 'redis://127.0.0.1:6379');
    assert.equal(c.maxUploadBytes, 512 * 1024 * 1024);
    assert.equal(c.retentionDays, 30);
    assert.equal(c.rateLimit, 600);
    assert.equal(c.adminKey, null);
    assert.deepEqual(
      c.apiKeys.map((k) => k.tenant),
      ['alice', 'bob'],
    );
  });

  it('names the variable of each bad value', () => {
    const p = problems({
      IMMUNIZE_API_KEYS: KEYS,
      PORT: 'eighty',
      REDIS_URL: 'http://localhost',
      IMMUNIZE_MAX_UPLOAD_BYTES: '-5',
      IMMUNIZE_RETENTION_DAYS: '1.5',
      IMMUNIZE_RATE_LIMIT: '0',
      IMMUNIZE_LOG_LEVEL: 'loud',
    });
    for (const name of ['PORT', 'REDIS_URL', 'IMMUNIZE_MAX_UPLOAD_BYTES', 'IMMUNIZE_RETENTION_DAYS', 'IMMUNIZE_RATE_LIMIT', 'IMMUNIZE_LOG_LEVEL']) {
      assert.ok(
        p.some((line) => line.startsWith(name)),
        `no problem names ${name}: ${p.join(' | ')}`,
      );
    }
  });

  it('requires API keys where an API runs, and checks their form', () => {
    assert.match(problems({}, 'api').join(), /IMMUNIZE_API_KEYS is not set/);
    assert.deepEqual(problems({}, 'worker'), []);
    assert.match(problems({ IMMUNIZE_API_KEYS: 'alice:short' }).join(), /IMMUNIZE_API_KEYS: the key of tenant alice must be at least 16/);
    assert.match(problems({ IMMUNIZE_API_KEYS: 'no-colon-here-0123456789' }).join(), /IMMUNIZE_API_KEYS: entry 1/);
    assert.match(problems({ IMMUNIZE_API_KEYS: 'a:same-key-0123456789abc,b:same-key-0123456789abc' }).join(), /used twice/);
    assert.match(problems({ IMMUNIZE_API_KEYS: KEYS, IMMUNIZE_ADMIN_KEY: 'alice-key-0123456789abcdef' }).join(), /IMMUNIZE_ADMIN_KEY: must differ/);
  });

  it('reads sizes with units', () => {
    assert.equal(loadConfig({ IMMUNIZE_API_KEYS: KEYS, IMMUNIZE_MAX_UPLOAD_BYTES: '64M' }).maxUploadBytes, 64 * 1024 * 1024);
    assert.equal(loadConfig({ IMMUNIZE_API_KEYS: KEYS, IMMUNIZE_MAX_UPLOAD_BYTES: '2048' }).maxUploadBytes, 2048);
  });

  it('stops the server process with a message naming the variable', () => {
    const server = fileURLToPath(new URL('../../services/server.js', import.meta.url));
    const r = spawnSync(process.execPath, [server, '--role', 'api'], {
      env: { PATH: process.env.PATH, IMMUNIZE_API_KEYS: KEYS, PORT: '99999' },
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /PORT="99999": expected an integer from 0 to 65535/);
  });
});

describe('API keys', () => {
  const keys = new ApiKeys(
    [
      { tenant: 'alice', key: 'alice-key-0123456789abcdef' },
      { tenant: 'bob', key: 'bob-key-0123456789abcdef' },
    ],
    'admin-key-0123456789abcdef',
  );

  it('maps a key to its tenant and refuses others', () => {
    assert.deepEqual(keys.verify('alice-key-0123456789abcdef'), { tenant: 'alice', admin: false });
    assert.deepEqual(keys.verify('bob-key-0123456789abcdef'), { tenant: 'bob', admin: false });
    assert.equal(keys.verify('alice-key-0123456789abcdeF'), null);
    assert.equal(keys.verify(''), null);
    assert.equal(keys.verify('admin-key-0123456789abcdef')?.admin, true);
  });

  it('keeps no key in plain text', () => {
    assert.ok(!JSON.stringify(keys).includes('alice-key'));
  });

  it('remembers a key that matched, and shows it neither in JSON nor in inspect', () => {
    const fresh = new ApiKeys([{ tenant: 'carol', key: 'carol-key-0123456789abcdef' }], null);
    for (let i = 0; i < 3; i++) assert.deepEqual(fresh.verify('carol-key-0123456789abcdef'), { tenant: 'carol', admin: false });
    assert.equal(fresh.verify('carol-key-0123456789abcdeF'), null);
    assert.equal(fresh.verify('carol-key-0123456789abcde'), null);
    for (const shown of [JSON.stringify(fresh), inspect(fresh, { showHidden: true, depth: 10 })]) assert.ok(!shown.includes('carol-key'), shown);
  });

  it('parses bearer headers', () => {
    assert.equal(bearerToken('Bearer abc'), 'abc');
    assert.equal(bearerToken('bearer   abc '), 'abc');
    assert.equal(bearerToken('Basic abc'), null);
    assert.equal(bearerToken(undefined), null);
    assert.equal(bearerToken('Bearer a b'), null);
  });

  it('lets a tenant see only its own resources', () => {
    assert.equal(canAccess({ tenant: 'alice', admin: false }, 'alice'), true);
    assert.equal(canAccess({ tenant: 'alice', admin: false }, 'bob'), false);
    assert.equal(canAccess({ tenant: '*admin', admin: true }, 'bob'), true);
  });
});
