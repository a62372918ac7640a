/** The API writes one access line a request at level info (none below it), with the request id it answered with. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { startServer, type RunningServer } from '../../services/server.js';
import { ALICE, cleanup, requireRedis, type TestEnv, testEnv } from '../helpers/service.js';

await requireRedis();

function capture(level: string) {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const text of chunk.toString().split('\n')) if (text) lines.push(JSON.parse(text) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level }, stream), lines };
}

const flushed = () => new Promise((r) => setImmediate(r));

describe('access lines', () => {
  let t: TestEnv;
  before(async () => {
    t = await testEnv();
  });
  after(() => cleanup(t));

  for (const level of ['info', 'warn'] as const) {
    it(`at level ${level}: ${level === 'info' ? 'one line a request, matched or not' : 'none'}`, async () => {
      const { logger, lines } = capture(level);
      const srv: RunningServer = await startServer('api', t.env, logger);
      try {
        const api = srv.api!;
        const answers = [
          await api.inject({ method: 'GET', url: '/healthz' }),
          await api.inject({ method: 'GET', url: '/v1/jobs/j_no_such_job', headers: ALICE }),
          await api.inject({ method: 'GET', url: '/v1/jobs', headers: { authorization: 'Bearer wrong-key-000000000000' } }),
          await api.inject({ method: 'GET', url: '/no/such/route' }),
        ];
        await flushed();
        const access = lines.filter((l) => l.msg === 'request completed');
        assert.equal(lines.filter((l) => l.msg === 'incoming request').length, 0);
        if (level === 'warn') {
          assert.equal(access.length, 0);
          return;
        }
        assert.deepEqual(
          access.map((l) => [l.reqId, l.method, l.url, l.statusCode]),
          answers.map((r, i) => [r.headers['x-request-id'], 'GET', ['/healthz', '/v1/jobs/j_no_such_job', '/v1/jobs', '/no/such/route'][i], r.statusCode]),
        );
        assert.deepEqual(
          answers.map((r) => r.statusCode),
          [200, 404, 401, 404],
        );
        for (const l of access) assert.ok(typeof l.responseTime === 'number' && l.responseTime >= 0);
      } finally {
        await srv.close();
      }
    });
  }
});
