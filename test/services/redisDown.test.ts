/**
 * Redis going away under a running API: /readyz says so and a submit answers 503 at once, not a hang; once Redis
 * is back, so is the API. Redis is reached through a TCP relay that the test can cut.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { RunningServer } from '../../services/server.js';
import { ADMIN, ALICE, cleanup, eventually, multipart, randomNpy, REDIS_URL, requireRedis, start, type TestEnv, testEnv } from '../helpers/service.js';

// Without a Redis this file fails (it never skips).
await requireRedis();

class Relay {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  port = 0;
  constructor(private readonly target: { host: string; port: number }) {}

  async open(port = 0): Promise<void> {
    this.server = createServer((client) => {
      const upstream = connect(this.target.port, this.target.host);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((ok) => this.server!.listen(port, '127.0.0.1', ok));
    this.port = (this.server.address() as { port: number }).port;
  }

  async cut(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise<void>((ok) => server.close(() => ok()));
  }
}

let t: TestEnv;
let srv: RunningServer;
let relay: Relay;

before(async () => {
  const u = new URL(REDIS_URL);
  relay = new Relay({ host: u.hostname, port: Number(u.port || 6379) });
  await relay.open();
  t = await testEnv({ REDIS_URL: `redis://127.0.0.1:${relay.port}${u.pathname}` });
  srv = await start('api', t);
});

after(async () => {
  await srv?.close();
  await relay?.cut();
  if (t) await cleanup(t);
});

describe('Redis unavailable', () => {
  it('readyz says so, submit answers 503 quickly, and both recover', async () => {
    const api = srv.api!;
    const body = multipart('x.npy', randomNpy(10, 3, 1));
    const b = await api.inject({ method: 'POST', url: '/v1/datasets', headers: { ...ALICE, ...body.headers }, payload: body.payload });
    assert.equal(b.statusCode, 201, b.body);
    const h = await api.inject({ method: 'POST', url: '/v1/datasets', headers: { ...ALICE, ...body.headers }, payload: body.payload });
    const spec = { benign: { dataset: b.json().id }, harmful: { dataset: h.json().id }, method: 'closed-form' };
    assert.equal((await api.inject('/readyz')).statusCode, 200);

    await relay.cut();
    const down = await eventually(
      'readyz to report Redis down',
      async () => {
        const r = await api.inject('/readyz');
        return r.statusCode === 503 ? r : undefined;
      },
      15_000,
    );
    assert.equal(down.json().error.code, 'redis_unavailable');

    const started = Date.now();
    const r = await api.inject({ method: 'POST', url: '/v1/jobs', headers: ALICE, payload: spec });
    const took = Date.now() - started;
    assert.equal(r.statusCode, 503, r.body);
    assert.equal(r.json().error.code, 'redis_unavailable');
    assert.ok(took < 5000, `submit took ${took} ms to fail`);
    assert.equal(r.headers['retry-after'], '5');
    const g = await api.inject({ url: '/v1/jobs', headers: ALICE });
    assert.equal(g.statusCode, 503);
    // Liveness and the metrics page do not depend on Redis (a Bearer key is checked in memory).
    assert.equal((await api.inject('/healthz')).statusCode, 200);
    assert.equal((await api.inject({ url: '/metrics', headers: ADMIN })).statusCode, 200);

    await relay.open(relay.port);
    await eventually('readyz to recover', async () => ((await api.inject('/readyz')).statusCode === 200 ? true : undefined), 20_000);
    const ok = await api.inject({ method: 'POST', url: '/v1/jobs', headers: ALICE, payload: spec });
    assert.equal(ok.statusCode, 202, ok.body);
  });
});
