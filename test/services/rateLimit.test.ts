/** The per-caller request budget: counts, headers, the 429 past it, the window's reset and the callers kept. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { rateLimiter } from '../../services/api/rateLimit.js';
import { ApiError } from '../../services/errors.js';

interface Answer {
  headers: Record<string, string>;
  error: unknown;
}

function caller(hook: ReturnType<typeof rateLimiter>, tenant: string | null, ip = '10.0.0.1'): Answer {
  const answer: Answer = { headers: {}, error: undefined };
  const reply = {
    header(name: string, value: string) {
      answer.headers[name] = value;
      return reply;
    },
  };
  let called = 0;
  hook({ principal: tenant ? { tenant, admin: false } : null, ip } as unknown as FastifyRequest, reply as unknown as FastifyReply, (err?: unknown) => {
    called++;
    answer.error = err;
  });
  assert.equal(called, 1, 'done is called once, at once');
  return answer;
}

test('counts each caller apart, says the budget on every answer and refuses past it with Retry-After', () => {
  const hook = rateLimiter(2, 60_000);
  const first = caller(hook, 'alice');
  assert.equal(first.error, undefined);
  assert.deepEqual(first.headers, { 'x-ratelimit-limit': '2', 'x-ratelimit-remaining': '1', 'x-ratelimit-reset': '60' });
  assert.equal(caller(hook, 'alice').headers['x-ratelimit-remaining'], '0');
  const refused = caller(hook, 'alice');
  assert.ok(refused.error instanceof ApiError);
  assert.equal(refused.error.statusCode, 429);
  assert.equal(refused.error.code, 'rate_limited');
  assert.match(refused.error.message, /rate limit of 2 requests per minute reached; retry in 60 s/);
  assert.equal(refused.headers['retry-after'], '60');
  assert.equal(refused.headers['x-ratelimit-remaining'], '0');
  // Another tenant, and a caller without a key (by its address), have budgets of their own.
  assert.equal(caller(hook, 'bob').error, undefined);
  assert.equal(caller(hook, null, '10.0.0.9').error, undefined);
  assert.equal(caller(hook, null, '10.0.0.9').error, undefined);
  assert.ok(caller(hook, null, '10.0.0.9').error instanceof ApiError);
});

test('a window ends after its length, and the budget is whole again', async () => {
  const hook = rateLimiter(1, 80);
  assert.equal(caller(hook, 'alice').error, undefined);
  assert.ok(caller(hook, 'alice').error instanceof ApiError);
  await sleep(100);
  const again = caller(hook, 'alice');
  assert.equal(again.error, undefined);
  assert.equal(again.headers['x-ratelimit-remaining'], '0');
  assert.equal(again.headers['x-ratelimit-reset'], '1', 'seconds left, rounded up');
});

test('past 5000 callers the one whose window started first is forgotten', () => {
  const hook = rateLimiter(1, 60_000);
  for (let i = 0; i < 5000; i++) assert.equal(caller(hook, `t${i}`).error, undefined);
  assert.ok(caller(hook, 't0').error instanceof ApiError, 't0 is still counted while 5000 are kept');
  assert.equal(caller(hook, 'newcomer').error, undefined);
  assert.equal(caller(hook, 't0').error, undefined, 't0, the oldest window, was forgotten for the newcomer');
  assert.ok(caller(hook, 't2').error instanceof ApiError, 't2 is still counted (t1 made room for t0)');
});
